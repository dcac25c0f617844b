"""The cuda engine's kernels, run by Numba's CUDA simulator, against the
NumPy reference (float32 rtol 1e-5, float64 rtol 1e-12).

NUMBA_ENABLE_CUDASIM must be set before numba is imported, and the rest of
the suite imports numba normally, so under a plain ``python -m pytest tests/``
this module runs itself again in a subprocess with the simulator on and
reports that run as one test (its output is shown when it fails).  Run it
directly, test by test, with:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_kernels.py

The simulator runs a Python thread per CUDA thread, so shapes are tiny; they
are picked to cross the (simulator-sized) tile edges, to take the split
reductions' "last block" path, and to hold pool ties and an ignored border.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import conformance_util as cu  # noqa: E402

cu.import_or_skip("numba_cuda", "the CUDA tests need the cuda extra: pip install '.[cuda]'")

IN_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_under_simulator(path, timeout=900):
    """Run the pytest module ``path`` with NUMBA_ENABLE_CUDASIM=1; assert it passed."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-W", "error::RuntimeWarning", path]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    tail = (r.stdout[-20000:] + "\n" + r.stderr[-5000:]).strip()
    print("%s under the simulator: %.1f s\n%s" % (os.path.basename(path),
                                                   time.perf_counter() - t0, tail))
    assert r.returncode == 0, "simulator run failed (exit %d):\n%s" % (r.returncode, tail)


if not IN_SIMULATOR:
    @pytest.mark.slow    # a minute or more: -m "not slow" leaves it out
    def test_kernels_under_cuda_simulator():
        run_under_simulator(os.path.abspath(__file__))

else:
    from fastnet.activations import LINEAR, RELU, SIGMOID, TANH
    from fastnet.engines import cuda as E
    from fastnet.engines import reference as R
    from fastnet.engines.cuda import common, conv, pool

    ACTS = {"sigmoid": SIGMOID, "tanh": TANH, "ReLU": RELU, "linear": LINEAR}
    DTYPES = [np.float32, np.float64]
    RTOL = {np.float32: 1e-5, np.float64: 1e-12}

    @pytest.fixture(params=DTYPES, ids=["float32", "float64"])
    def dt(request):
        return request.param

    def rng(seed=0):
        return np.random.default_rng(seed)

    def normal(shape, dt, seed=0):
        return rng(seed).standard_normal(shape).astype(dt)

    def dev(a):
        return E.to_device(a)

    def host(a):
        return E.to_host(a)

    def check(name, got, want):
        """got (device or host) equals want within the dtype's rtol; atol is
        rtol * max|want| so that near-zero sums are judged on their scale."""
        got = host(got) if not isinstance(got, np.ndarray) else got
        assert got.shape == want.shape, "%s: shape %s != %s" % (name, got.shape, want.shape)
        assert got.dtype == want.dtype, "%s: dtype %s != %s" % (name, got.dtype, want.dtype)
        rtol = RTOL.get(want.dtype.type, 0)
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale,
                                   err_msg=name)

    # ------------------------------------------------------------------
    # engine surface
    # ------------------------------------------------------------------
    def test_engine_surface_matches_reference():
        for fname in ("empty", "to_device", "to_host", "synchronize", "conv_forward",
                      "conv_backward", "pool_forward", "pool_backward", "dense_forward",
                      "dense_backward", "dropout_bits", "keep_threshold",
                      "dropout_forward", "dropout_backward", "softmax_forward",
                      "softmax_nll", "softmax_argmax", "sgd_update", "sum_of_squares"):
            assert callable(getattr(E, fname)), fname
        assert E.name == "cuda" and E.device_resident
        assert E.info().simulated
        assert not common.USE_WARP_SHUFFLE     # the simulator has no shuffles

    def test_memory_round_trip_slices_and_reshape(dt):
        a = normal((6, 12), dt)
        d = dev(a)
        check("round trip", d, a)
        part = d[2:4].reshape(2, 3, 2, 2)         # a mini-batch view, as the layers take it
        check("slice+reshape", part, a[2:4].reshape(2, 3, 2, 2))
        out = np.zeros((6, 12), dt)
        assert E.to_host(d, out=out) is out
        check("to_host(out=)", out, a)
        e = E.empty((3, 4), np.int32)
        assert e.shape == (3, 4) and e.dtype == np.int32
        E.synchronize()

    # ------------------------------------------------------------------
    # conv
    # ------------------------------------------------------------------
    def test_conv_forward(dt):
        # 3 tiles of output positions, 2 of filters, 2 K-steps (sim tile sizes)
        x = normal((2, 2, 6, 7), dt, 1)
        w = normal((5, 2, 3, 2), dt, 2)
        want = np.empty((2, 5, 4, 6), dt)
        R.conv_forward(x, w, want)
        # the batch is a slice of a longer device array, as in training
        xs = dev(np.concatenate([normal((1, 2, 6, 7), dt, 9), x]))
        out = E.empty(want.shape, dt)
        E.conv_forward(xs[1:3].reshape(2, 2, 6, 7), dev(w), out)
        check("conv_forward", out, want)

    def test_conv_backward_split_and_no_dx(dt):
        x = normal((3, 2, 7, 6), dt, 3)
        w = normal((5, 2, 3, 2), dt, 4)
        dout = normal((3, 5, 5, 5), dt, 5)
        splits = conv.backward_plan(x.shape, w.shape, True)[2]
        assert splits > 1, "the shape must take the split-dW path"
        dw, dx = np.empty_like(w), np.empty_like(x)
        R.conv_backward(x, w, dout, dw, dx)
        xd, wd, dd = dev(x), dev(w), dev(dout)
        dwd, dxd = E.empty(w.shape, dt), E.empty(x.shape, dt)
        for _ in range(2):       # twice: the split counters reset themselves
            E.conv_backward(xd, wd, dd, dwd, dxd)
            check("conv dw", dwd, dw)
            check("conv dx", dxd, dx)
        dwd2 = E.empty(w.shape, dt)
        E.conv_backward(xd, wd, dd, dwd2, None)
        check("conv dw (no dx)", dwd2, dw)
        check("dout untouched", dd, dout)

    # ------------------------------------------------------------------
    # pool
    # ------------------------------------------------------------------
    def tied_conv(shape, dt, seed):
        """Small integers: many windows hold their maximum twice or more."""
        return rng(seed).integers(-2, 3, shape).astype(dt)

    @pytest.mark.parametrize("act", ["ReLU", "tanh"])
    @pytest.mark.parametrize("poolsize", [(2, 2), (3, 2)], ids=["2x2", "3x2"])
    def test_pool_forward_backward_ties_border(dt, act, poolsize):
        code = ACTS[act]
        conv_out = tied_conv((3, 2, 7, 9), dt, 6)    # 7x9: a border row/column is ignored
        ph, pw = poolsize
        oshape = (3, 2, 7 // ph, 9 // pw)
        win = conv_out[:, :, :oshape[2] * ph, :oshape[3] * pw].reshape(
            3, 2, oshape[2], ph, oshape[3], pw)
        ties = (win == win.max(axis=(3, 5), keepdims=True)).sum(axis=(3, 5))
        assert (ties > 1).sum() >= 5, "the input must hold tied maxima"
        if poolsize == (2, 2):
            assert pool.backward_plan(oshape)[2] > 1, "the split-db path must run"
        b = normal((2,), dt, 7)
        out = np.empty(oshape, dt)
        R.pool_forward(conv_out, b, code, poolsize, out)
        cd, bd, od = dev(conv_out), dev(b), E.empty(oshape, dt)
        E.pool_forward(cd, bd, code, poolsize, od)
        check("pool_forward", od, out)

        dout = normal(oshape, dt, 8)
        dconv, db = np.empty_like(conv_out), np.empty_like(b)
        dz = dout.copy()
        R.pool_backward(conv_out, out, dz, code, poolsize, dconv, db)
        dconv_d = dev(np.full(conv_out.shape, 7, dt))   # stale values must be cleared
        for _ in range(2):        # twice: the split counters reset themselves
            dd, dbd = dev(dout), E.empty(b.shape, dt)
            E.pool_backward(cd, od, dd, code, poolsize, dconv_d, dbd)
            check("pool dconv", dconv_d, dconv)
            check("pool db", dbd, db)
            check("pool dout -> dz", dd, dz)

    # ------------------------------------------------------------------
    # dense and dropout
    # ------------------------------------------------------------------
    @pytest.mark.parametrize("act", list(ACTS))
    def test_dense_forward_backward(dt, act):
        code = ACTS[act]
        # N < tile, I and O just over one tile (simulator tiles are 8 wide)
        x, w, b = normal((3, 9), dt, 10), normal((9, 10), dt, 11) * 0.5, normal((10,), dt, 12)
        xd, wd, bd = dev(x), dev(w), dev(b)
        for scale in (0.5, 1.0):
            out = np.empty((3, 10), dt)
            R.dense_forward(x, w, b, code, scale, out)
            od = E.empty(out.shape, dt)
            E.dense_forward(xd, wd, bd, code, scale, od)
            check("dense_forward scale=%g" % scale, od, out)
        dout = normal(out.shape, dt, 13)
        dz = dout.copy()
        dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
        R.dense_backward(x, w, out, dz, code, dw, db, dx)
        dwd, dbd, dxd = E.empty(w.shape, dt), E.empty(b.shape, dt), E.empty(x.shape, dt)
        for _ in range(2):        # twice: the dz ticket resets itself
            dd = dev(dout)
            E.dense_backward(xd, wd, od, dd, code, dwd, dbd, dxd)
            check("dense dw", dwd, dw)
            check("dense db", dbd, db)
            check("dense dx", dxd, dx)
            check("dense dout -> dz", dd, dz)
        dd = dev(dout)
        E.dense_backward(xd, wd, od, dd, code, dwd, dbd, None)
        check("dense dw (no dx)", dwd, dw)
        check("dense dout -> dz (no dx)", dd, dz)

    @pytest.mark.parametrize("seed,counter,n", [(0, 0, 1), (12345, 3, 100),
                                                (2 ** 64 - 1, 2 ** 40 + 7, 70)])
    def test_dropout_bits_bit_identical(seed, counter, n):
        got = host(E.dropout_bits(seed, counter, n))
        want = R.dropout_bits(seed, counter, n)
        assert got.dtype == np.uint32
        np.testing.assert_array_equal(got, want)

    @pytest.mark.parametrize("p", [0.2, 0.5])
    def test_dropout_forward_backward_bit_identical(dt, p):
        x = normal((4, 13), dt, 14)
        seed, counter = 0x9E3779B97F4A7C15 ^ 0xDEADBEEF, 17
        mask, out = np.empty(x.shape, np.uint8), np.empty_like(x)
        R.dropout_forward(x, p, seed, counter, mask, out)
        assert 0 < mask.sum() < mask.size, "the mask must drop some and keep some"
        md, od = E.empty(x.shape, np.uint8), E.empty(x.shape, dt)
        E.dropout_forward(dev(x), p, seed, counter, md, od)
        np.testing.assert_array_equal(host(md), mask)
        np.testing.assert_array_equal(host(od), out)
        dout = normal(x.shape, dt, 15)
        dx = np.empty_like(x)
        R.dropout_backward(dout, mask, dx)
        dxd = E.empty(x.shape, dt)
        E.dropout_backward(dev(dout), md, dxd)
        np.testing.assert_array_equal(host(dxd), dx)

    def test_keep_threshold_is_the_reference():
        assert E.keep_threshold(0.0) == R.keep_threshold(0.0) == 2 ** 32
        assert E.keep_threshold(0.5) == R.keep_threshold(0.5)

    # ------------------------------------------------------------------
    # softmax
    # ------------------------------------------------------------------
    def test_softmax_forward_nll_argmax(dt):
        logits = normal((5, 4), dt, 16) * 3
        logits[2] = [1, 4, 4, 0]                     # a tie: the first maximum wins
        y = np.array([0, 3, 2, 1, 3], np.int32)
        probs, dlogits = np.empty_like(logits), np.empty_like(logits)
        cost = R.softmax_nll(logits, y, probs, dlogits)
        ld, yd = dev(logits), dev(y)
        pd, dld = E.empty(logits.shape, dt), E.empty(logits.shape, dt)
        c = E.softmax_nll(ld, yd, pd, dld)
        assert not isinstance(c, float)              # a device scalar, read on demand
        np.testing.assert_allclose(float(c), cost, rtol=RTOL[dt])
        check("nll probs", pd, probs)
        check("nll dlogits", dld, dlogits)
        R.softmax_forward(logits, probs)
        E.softmax_forward(ld, pd)
        check("softmax_forward", pd, probs)
        yout = np.empty(5, np.int32)
        R.softmax_argmax(probs, yout)
        assert yout[2] == 1
        yd_out = E.empty((8,), np.int32)
        E.softmax_argmax(pd, yd_out[2:7])           # into a slice, as the Network does
        np.testing.assert_array_equal(host(yd_out)[2:7], yout)

    # ------------------------------------------------------------------
    # update
    # ------------------------------------------------------------------
    @pytest.mark.parametrize("shape", [(7,), (9, 10), (2, 3, 4), (3, 2, 3, 3)],
                             ids=["1d", "2d", "3d", "4d"])
    def test_sgd_update_and_sum_of_squares(dt, shape):
        p, g = normal(shape, dt, 17), normal(shape, dt, 18)
        pd, gd = dev(p), dev(g)
        for eta, l2 in ((0.1, 0.0), (0.25, 0.003)):
            R.sgd_update(p, g, eta, l2)
            E.sgd_update(pd, gd, eta, l2)
            check("sgd_update eta=%g l2=%g" % (eta, l2), pd, p)
        s = E.sum_of_squares(pd)
        np.testing.assert_allclose(float(s), R.sum_of_squares(p), rtol=RTOL[dt])

    @pytest.mark.parametrize("shape", [(4, 1), (9, 3)], ids=["4x1", "9x3"])
    def test_sigmoid_bce_and_mse(dt, shape):
        z = normal(shape, dt, 40) * dt(3)
        z[0, 0] = 40
        t = np.abs(normal(shape, dt, 41)) % 1
        want = [np.empty_like(z) for _ in range(2)]
        got = [E.empty(shape, dt) for _ in range(2)]
        c_want = R.sigmoid_bce(z, t, *want)
        c_got = E.sigmoid_bce(dev(z), dev(t), *got)
        np.testing.assert_allclose(float(c_got), c_want, rtol=RTOL[dt])
        check("sigmoid_bce probs", got[0], want[0])
        check("sigmoid_bce dlogits", got[1], want[1])
        c_want = R.mse_loss(z, t, want[0])
        c_got = E.mse_loss(dev(z), dev(t), got[0])
        np.testing.assert_allclose(float(c_got), c_want, rtol=RTOL[dt])
        check("mse dout", got[0], want[0])

    OPTIMIZER_CALLS = [
        ("momentum_update", 1, [(0.1, 0.9, 0.0, 0.0, 0.0), (0.05, 0.9, 0.3, 1e-3, 0.0),
                                (0.1, 0.8, 0.0, 0.0, 1.0)]),
        ("rmsprop_update", 1, [(1e-2, 0.99, 1e-8, 0.0), (1e-3, 0.9, 1e-7, 1e-2)]),
        ("adagrad_update", 1, [(1e-2, 0.0, 1e-10, 0.0), (1e-2, 0.1, 1e-10, 1e-3)]),
        ("adam_update", 2, [(1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0),
                            (1e-3, 0.9, 0.999, 1e-8, 1e-2, 1.0),
                            (1e-3, 0.8, 0.99, 1e-8, 1e-2, 0.0)]),
    ]
    STEPPED = ("momentum_update", "adagrad_update", "adam_update")

    @pytest.mark.parametrize("name,n_state,calls", OPTIMIZER_CALLS,
                             ids=[c[0] for c in OPTIMIZER_CALLS])
    def test_optimizer_kernels(dt, name, n_state, calls):
        """Each optimizer's kernel, three steps in a row (its first-step
        case and its state carried), equals the reference's update."""
        for hyper in calls:
            p = normal((301,), dt, 21)
            pd = dev(p)
            state = [np.abs(normal((301,), dt, 22 + i)) * 0 for i in range(n_state)]
            sd = [dev(a) for a in state]
            for step in (1, 2, 3):
                g = normal((301,), dt, 30 + step)
                h = hyper + ((float(step),) if name in STEPPED else ())
                getattr(R, name)(p, g, *state, *h)
                getattr(E, name)(pd, dev(g), *sd, *h)
                check("%s %r step %d" % (name, hyper, step), pd, p)
                for a, ad in zip(state, sd):
                    check("%s state step %d" % (name, step), ad, a)

    SUBNORMAL_CASES = [
        ("momentum_update", 1, (0.1, 0.9, 0.0, 0.0, 0.0, 2.0)),
        ("rmsprop_update", 1, (1e-3, 0.9, 1e-7, 0.0)),
        ("adagrad_update", 1, (1e-2, 0.0, 1e-10, 0.0, 2.0)),
        ("adam_update", 2, (1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 2.0)),
        ("keras_sgd_update", 1, (0.01, 0.9, 0.0, 0.0)),
        ("keras_rmsprop_update", 1, (1e-3, 0.9, 1e-7, 0.0)),
        ("keras_adagrad_update", 1, (1e-3, 1e-7, 0.0)),
        ("keras_adam_update", 2, (1e-3, 0.9, 0.999, 1e-7, 0.0, 2.0)),
    ]

    def test_optimizer_state_never_goes_subnormal(dt):
        """State below the smallest normal number is stored as +0, as the
        reference and compiled engines do (csrc/update.pxd's normal_or_zero)."""
        tiny = np.finfo(dt).tiny
        for name, n_state, hyper in SUBNORMAL_CASES:
            start = np.array([tiny * 1.0001, tiny / 2, 1.0, 0.0, 0.5], dt)
            p = np.linspace(-1, 1, start.size).astype(dt)
            g = np.zeros(start.size, dt)
            state = [start.copy() for _ in range(n_state)]
            pd, sd = dev(p), [dev(a) for a in state]
            getattr(R, name)(p, g, *state, *hyper)
            getattr(E, name)(pd, dev(g), *sd, *hyper)
            for a, ad in zip(state, sd):
                got = E.to_host(ad)
                assert np.array_equal(got, a), "%s: %r vs %r" % (name, got, a)
                assert got[1] == 0, name
            assert np.array_equal(E.to_host(pd), p), name

    def test_optimizer_kernel_refuses_bad_arrays(dt):
        with pytest.raises(ValueError, match="flat"):
            E.adam_update(dev(normal((3, 2), dt)), dev(normal((3, 2), dt)),
                          dev(normal((3, 2), dt)), dev(normal((3, 2), dt)),
                          1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 1.0)
        with pytest.raises(ValueError, match="shape"):
            E.rmsprop_update(dev(normal((5,), dt)), dev(normal((4,), dt)),
                             dev(normal((5,), dt)), 1e-3, 0.9, 1e-7, 0.0)

    def test_sum_of_squares_many_blocks(dt):
        w = normal((40, 50), dt, 19)
        wd = dev(w)
        for _ in range(2):        # the last-block ticket resets itself
            np.testing.assert_allclose(float(E.sum_of_squares(wd)), R.sum_of_squares(w),
                                       rtol=RTOL[dt])

    def test_device_scalar_overwritten_raises(dt):
        s = E.sum_of_squares(dev(normal((3,), dt)))
        ring = E._ring(np.dtype(dt))
        ring.generation[s._slot] += 1                # as if RING_SLOTS calls later
        with pytest.raises(RuntimeError, match="overwritten"):
            float(s)

    # ------------------------------------------------------------------
    # errors
    # ------------------------------------------------------------------
    def test_a_planned_call_still_checks_every_array():
        """A launch plan is built (and its arrays checked) per signature of
        all the call's arrays: after a good call, the same leading arrays
        with a mismatched other one are refused, never launched."""
        f4 = np.float32

        def z(*shape, dtype=f4):
            return dev(np.zeros(shape, dtype))

        x, w, b = z(2, 3), z(3, 4), z(4)
        calls = [
            (lambda out: E.dense_forward(x, w, b, RELU, 1.0, out), z(2, 4), z(2, 5)),
            (lambda dw: E.dense_backward(x, w, z(2, 4), z(2, 4), RELU, dw, z(4), z(2, 3)),
             z(3, 4), z(4, 4)),
            (lambda mask: E.dropout_forward(x, 0.5, 1, 0, mask, z(2, 3)),
             z(2, 3, dtype=np.uint8), z(2, 2, dtype=np.uint8)),
            (lambda dx: E.dropout_backward(x, z(2, 3, dtype=np.uint8), dx), z(2, 3), z(3, 3)),
            (lambda probs: E.softmax_forward(x, probs), z(2, 3), z(1, 3)),
            (lambda y: E.softmax_nll(x, y, z(2, 3), z(2, 3)),
             z(2, dtype=np.int32), z(1, dtype=np.int32)),
            (lambda yout: E.softmax_argmax(x, yout), z(2, dtype=np.int32), z(3, dtype=np.int32)),
            (lambda t: E.mse_loss(x, t, z(2, 3)), z(2, 3), z(2, 2)),
            (lambda g: E.sgd_update(w, g, 0.1, 0.0), z(3, 4), z(4, 3)),
            (lambda g: E.sgd_update(w, g, 0.1, 0.0), z(3, 4), z(3, 4, dtype=np.float64)),
            (lambda out: E.conv_forward(z(1, 1, 4, 4), z(2, 1, 3, 3), out),
             z(1, 2, 2, 2), z(1, 2, 2, 3)),
            (lambda dw: E.conv_backward(z(1, 1, 4, 4), z(2, 1, 3, 3), z(1, 2, 2, 2), dw, None),
             z(2, 1, 3, 3), z(2, 1, 3, 2)),
            (lambda out: E.pool_forward(z(1, 2, 4, 4), z(2), RELU, (2, 2), out),
             z(1, 2, 2, 2), z(1, 2, 2, 1)),
            (lambda db: E.pool_backward(z(1, 2, 4, 4), z(1, 2, 2, 2), z(1, 2, 2, 2), RELU,
                                        (2, 2), z(1, 2, 4, 4), db), z(2), z(3)),
            (lambda s: E.rmsprop_update(z(5), z(5), s, 1e-3, 0.9, 1e-7, 0.0), z(5), z(4)),
        ]
        for i, (call, good, bad) in enumerate(calls):
            call(good)
            with pytest.raises(ValueError, match="shape|dtype"):
                call(bad)
            with pytest.raises(ValueError, match="device array"):
                call(np.zeros(1, f4))

    def test_bad_arguments_raise_value_error():
        x, w = np.zeros((1, 1, 4, 4), np.float32), np.zeros((2, 1, 3, 3), np.float32)
        with pytest.raises(ValueError, match="device array"):
            E.conv_forward(x, dev(w), E.empty((1, 2, 2, 2), np.float32))
        with pytest.raises(ValueError, match="shape"):
            E.conv_forward(dev(x[:, :, :, :]), dev(w), E.empty((1, 2, 3, 3), np.float32))
        xd = dev(np.zeros((2, 3), np.float64))
        with pytest.raises(ValueError, match="dtype"):
            E.dense_forward(xd, dev(np.zeros((3, 4), np.float32)), dev(np.zeros(4)),
                            RELU, 1.0, E.empty((2, 4), np.float64))
        with pytest.raises(ValueError, match="activation"):
            E.dense_forward(xd, dev(np.zeros((3, 4))), dev(np.zeros(4)), 99, 1.0,
                            E.empty((2, 4), np.float64))
        with pytest.raises(ValueError, match="float32 or float64"):
            E.empty((2,), np.float16)
