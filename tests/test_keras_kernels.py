"""The Keras optimizers' kernels (keras_sgd_update, keras_rmsprop_update,
keras_adagrad_update, keras_adam_update) of the compiled engine and of the
cuda engine (under Numba's CUDA simulator) against the NumPy reference:
three steps in a row from Keras's initial state (zeros; Adagrad's 0.1), with
and without the decoupled weight decay, large enough arrays to take the
compiled engine's threaded path.
"""

import os

import numpy as np
import pytest

IN_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

# name, state arrays, the state's initial value, hyper-parameter tuples
# (reference signature order, the step appended for keras_adam_update)
KERAS_CALLS = [
    ("keras_sgd_update", 1, 0.0, [(0.01, 0.0, 0.0, 1e-3), (0.1, 0.9, 0.0, 0.0),
                                  (0.1, 0.9, 1.0, 0.0), (0.05, 0.8, 1.0, 4e-3)]),
    ("keras_rmsprop_update", 1, 0.0, [(1e-3, 0.9, 1e-7, 0.0), (1e-2, 0.99, 1e-6, 4e-3)]),
    ("keras_adagrad_update", 1, 0.1, [(1e-3, 1e-7, 0.0), (1e-2, 1e-7, 4e-3)]),
    ("keras_adam_update", 2, 0.0, [(1e-3, 0.9, 0.999, 1e-7, 0.0),
                                   (1e-3, 0.8, 0.99, 1e-7, 4e-3)]),
]
STEPPED = ("keras_adam_update",)
IDS = [c[0] for c in KERAS_CALLS]


def _three_steps(engine, to_engine, to_host, name, n_state, init, hyper, n, dtype):
    """Runs the reference and ``engine`` side by side; yields
    (step, engine param, reference param, engine state, reference state)."""
    from fastnet.engines import reference as R
    rng = np.random.default_rng(21)
    p = rng.standard_normal(n).astype(dtype)
    state = [np.full(n, init, dtype) for _ in range(n_state)]
    mine_p, mine_s = to_engine(p), [to_engine(a) for a in state]
    for step in (1, 2, 3):
        g = rng.standard_normal(n).astype(dtype)
        h = hyper + ((float(step),) if name in STEPPED else ())
        getattr(R, name)(p, g, *state, *h)
        getattr(engine, name)(mine_p, to_engine(g), *mine_s, *h)
        yield step, to_host(mine_p), p, [to_host(a) for a in mine_s], state


if not IN_SIMULATOR:
    @pytest.mark.parametrize("n", [1, 37, 70001], ids=["one", "odd", "threaded"])
    @pytest.mark.parametrize("name,n_state,init,calls", KERAS_CALLS, ids=IDS)
    def test_keras_optimizer_kernels(kernel_engine, float_dtype, name, n_state, init,
                                     calls, n):
        rtol = 1e-12 if float_dtype == np.float64 else 2e-6
        same = lambda a: a  # noqa: E731
        for hyper in calls:
            for step, got, want, got_s, want_s in _three_steps(
                    kernel_engine, same, same, name, n_state, init, hyper, n, float_dtype):
                np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max(),
                                           err_msg="%s %r step %d" % (name, hyper, step))
                for a, b in zip(got_s, want_s):
                    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())

    def test_keras_kernels_differ_from_torch_ones(kernel_engine):
        """A check that can fail: Keras's RMSprop (epsilon inside the root)
        and PyTorch's (outside) give different parameters for one step."""
        from fastnet.engines import reference as R
        g = np.array([1e-4, -2e-4, 3e-3])
        p1, p2 = np.zeros(3), np.zeros(3)
        kernel_engine.keras_rmsprop_update(p1, g, np.zeros(3), 1e-3, 0.9, 1e-7, 0.0)
        R.rmsprop_update(p2, g, np.zeros(3), 1e-3, 0.9, 1e-7, 0.0)
        assert np.all(np.abs(p1 - p2) > 1e-5)
        # Keras's first RMSprop step: lr * g / sqrt(0.1 g^2 + eps)
        np.testing.assert_allclose(p1, -1e-3 * g / np.sqrt(0.1 * g * g + 1e-7), rtol=1e-14)

    def test_keras_kernel_bad_arguments(kernel_engine):
        p = np.zeros(5, np.float32)
        with pytest.raises(ValueError, match="grad"):
            kernel_engine.keras_adam_update(p, np.zeros(4, np.float32), p.copy(), p.copy(),
                                            1e-3, 0.9, 0.999, 1e-7, 0.0, 1.0)
        with pytest.raises(ValueError, match="state 0"):
            kernel_engine.keras_sgd_update(p, p.copy(), np.zeros(5), 0.1, 0.9, 0.0, 0.0)
        with pytest.raises(TypeError, match="takes 7 arguments, got 5"):
            kernel_engine.keras_rmsprop_update(p, p.copy(), p.copy(), 1e-3, 0.9)

    def test_keras_kernels_under_cuda_simulator():
        pytest.importorskip("numba_cuda", reason="numba-cuda is not installed "
                            "(pip install 'numba-cuda[cu13]>=0.30,<0.31')")
        from test_cuda_kernels import run_under_simulator
        run_under_simulator(os.path.abspath(__file__))

else:
    @pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
    @pytest.mark.parametrize("name,n_state,init,calls", KERAS_CALLS, ids=IDS)
    def test_keras_optimizer_kernels_cuda(dt, name, n_state, init, calls):
        from fastnet.engines import cuda as E
        rtol = 1e-12 if dt == np.float64 else 1e-5
        for hyper in calls:
            for step, got, want, got_s, want_s in _three_steps(
                    E, E.to_device, E.to_host, name, n_state, init, hyper, 301, dt):
                np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max(),
                                           err_msg="%s %r step %d" % (name, hyper, step))
                for a, b in zip(got_s, want_s):
                    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
