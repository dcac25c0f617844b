"""A whole network on the cuda engine (under Numba's CUDA simulator) trains
to the same parameters as the NumPy reference engine.

Like tests/test_cuda_kernels.py, under a plain ``python -m pytest tests/``
this module runs itself again in a subprocess with NUMBA_ENABLE_CUDASIM=1
(set before numba is imported) and reports that run as one test.  Directly:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_network.py

The net is the book's conv2 net in miniature -- two ConvPoolLayers, a ReLU
FullyConnectedLayer, a SoftmaxLayer -- with dropout on the last two layers,
so every engine function runs (conv dx included), and the dropout masks
must be bit-identical on both engines for the parameters to agree.
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


if not IN_SIMULATOR:
    @pytest.mark.slow    # a minute or more: -m "not slow" leaves it out
    def test_network_under_cuda_simulator():
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               os.path.abspath(__file__)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=900)
        tail = (r.stdout[-20000:] + "\n" + r.stderr[-5000:]).strip()
        print("under the simulator: %.1f s\n%s" % (time.perf_counter() - t0, tail))
        assert r.returncode == 0, "simulator run failed (exit %d):\n%s" % (r.returncode, tail)

else:
    import fastnet
    from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer
    from fastnet.engines import cuda as E

    MBS = 2
    RTOL = {"float32": 1e-5, "float64": 1e-12}

    @pytest.fixture(params=["float32", "float64"])
    def floatx(request):
        old = fastnet.get_floatx()
        fastnet.set_floatx(request.param)
        yield request.param
        fastnet.set_floatx(old)

    def build(seed, dropout=True, **where):
        """conv(2@3x3) pool 2 -> conv(3@3x3) pool 1 -> FC 12->5 ReLU -> softmax 3."""
        np.random.seed(seed)
        p = 0.5 if dropout else 0.0
        layers = [
            ConvPoolLayer(filter_shape=(2, 1, 3, 3), image_shape=(MBS, 1, 10, 10),
                          poolsize=(2, 2), activation_fn=ReLU),
            ConvPoolLayer(filter_shape=(3, 2, 3, 3), image_shape=(MBS, 2, 4, 4),
                          poolsize=(1, 1), activation_fn=ReLU),
            FullyConnectedLayer(n_in=3 * 2 * 2, n_out=5, activation_fn=ReLU, p_dropout=p),
            SoftmaxLayer(n_in=5, n_out=3, p_dropout=p * 0.4),
        ]
        return Network(layers, MBS, **where)

    def data(n, seed):
        r = np.random.default_rng(seed)
        return r.random((n, 100)), r.integers(0, 3, n)

    def params(net):
        return [p.get_value() for layer in net.layers for p in (layer.w, layer.b)]

    def assert_same_params(got, want, rtol):
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.dtype == w.dtype
            scale = float(np.max(np.abs(w)))
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale,
                                       err_msg="parameter %d" % i)

    def test_sgd_matches_reference_engine(floatx, capsys):
        train, valid, test = data(2 * MBS, 1), data(MBS, 2), data(MBS, 3)
        results = {}
        for where in ({"engine": "reference"}, {"device": "cuda"}):
            net = build(5, **where)
            before = params(net)
            hist = net.SGD(train, 1, MBS, 0.5, valid, test, lmbda=0.3)
            out = capsys.readouterr().out
            results[net.engine.name] = (params(net), hist, out)
            assert not all(np.array_equal(a, b) for a, b in zip(before, params(net)))
        want, hist_r, out_r = results["reference"]
        got, hist_c, out_c = results["cuda"]
        assert_same_params(got, want, RTOL[floatx])
        assert hist_c.epochs[0]["validation_accuracy"] == hist_r.epochs[0]["validation_accuracy"]
        assert hist_c.test_accuracy == hist_r.test_accuracy
        assert out_c == out_r             # network3's log lines, word for word

    def test_cost_and_grads_match_reference_engine(floatx):
        x, y = data(MBS, 4)
        ref = build(6, engine="reference")
        cud = build(6, device="cuda")
        # move off the zero softmax init so every gradient is non-trivial
        for net in (ref, cud):
            net.layers[-1].w.set_value(np.linspace(-1, 1, 15).reshape(5, 3))
        c_ref, g_ref = ref.cost_and_grads(x, y, lmbda=0.2, num_training_batches=3)
        c_cud, g_cud = cud.cost_and_grads(x, y, lmbda=0.2, num_training_batches=3)
        np.testing.assert_allclose(c_cud, c_ref, rtol=RTOL[floatx])
        assert_same_params(g_cud, g_ref, RTOL[floatx])

    @pytest.mark.parametrize("dropout,expected", [(False, 15), (True, 19)])
    def test_launches_per_training_step(dropout, expected):
        """The book's conv2 net shape (conv-pool x2, FC ReLU, softmax): 15
        kernel launches per SGD step without dropout -- 12 forward/backward +
        1 NLL + 2 parameter updates (all weights in one flat array, all
        biases in another) -- and 4 more with dropout on the FC and softmax
        layers (mask forward, routing backward).  Measured through the public
        SGD as the difference between 2 and 1 training mini-batches."""
        valid, test = data(MBS, 2), data(MBS, 3)
        counts = []
        for n_batches in (1, 2):
            net = build(7, dropout=dropout, device="cuda")
            start = E.launch_count()
            net.SGD(data(n_batches * MBS, 1), 1, MBS, 0.1, valid, test)
            counts.append(E.launch_count() - start)
        assert counts[1] - counts[0] == expected


if IN_SIMULATOR:
    from fastnet import DenseOutputLayer, optim, tanh, sigmoid

    @pytest.mark.parametrize("loss", ["binary_crossentropy", "mse"])
    def test_optimizers_and_dense_output_match_reference(floatx, loss, capsys):
        """XOR-sized: 2-4 tanh-1 sigmoid, Adam then Nesterov momentum through
        the public SGD (state carried between the calls), train_batch with a
        partial batch, evaluate_batches: the cuda engine equals the reference."""
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=floatx)
        t = np.array([[0], [1], [1], [0]], dtype=floatx)
        results = []
        for where in ({"engine": "reference"}, {"device": "cuda"}):
            np.random.seed(3)
            net = Network([FullyConnectedLayer(2, 4, activation_fn=tanh),
                           DenseOutputLayer(4, 1, activation_fn=sigmoid, loss=loss)], 4, **where)
            adam = optim.Adam(lr=0.05)
            net.SGD((x, t), 1, 4, 0.05, (x, t), (x, t), optimizer=adam)
            net.SGD((x, t), 1, 4, 0.05, (x, t), (x, t), optimizer=adam)
            loss_b, acc_b = net.train_batch(x[:3], t[:3], optim.SGD(0.1, momentum=0.9,
                                                                    nesterov=True))
            results.append((params(net), loss_b, net.evaluate_batches(x, t)))
        capsys.readouterr()
        (p_ref, l_ref, e_ref), (p_cud, l_cud, e_cud) = results
        assert_same_params(p_cud, p_ref, RTOL[floatx])
        np.testing.assert_allclose(l_cud, l_ref, rtol=RTOL[floatx])
        np.testing.assert_allclose(e_cud, e_ref, rtol=RTOL[floatx])
