"""fastnet.keras's optimizers against Keras 3.15.1's own trajectories
(conformance/optim, the ``*_keras_*`` files).

Cases A (784-30 sigmoid-10 softmax) and B (784-32 ReLU-16 tanh-10 softmax),
mean categorical cross-entropy on 64 real digits in batches of 16, in order.
Each Keras run (SGD, momentum, Nesterov, RMSprop, Adagrad, Adam, with the
hyper-parameters the file read back from Keras) is rebuilt two ways through
the public API, on the reference engine, the compiled loop and the cpu
kernels op by op, in float32 and float64:

* network3-style layers with the file's initial parameters and
  ``net.SGD(..., optimizer=fastnet.keras.optimizers.X(...))``;
* fastnet.keras itself: ``Sequential`` + ``Dense`` + ``set_weights`` +
  ``compile`` + ``train_on_batch`` (each step's loss is compared too).

Parameters after 1, 5 and 20 steps are compared at index.json's
suggested_rtol.
"""

import contextlib
import io
import json
import os

import numpy as np
import pytest

import fastnet
from fastnet import FullyConnectedLayer, Network, ReLU, SoftmaxLayer, sigmoid, tanh
from fastnet.keras import optimizers

HERE = os.path.dirname(os.path.abspath(__file__))


def _optim_dir():
    candidates = [os.environ.get("FASTNET_CONFORMANCE_DIR", ""),
                  os.path.join(HERE, "conformance"),
                  os.path.join(HERE, "..", "..", "shared", "conformance")]
    for base in candidates:
        d = os.path.join(base, "optim") if base else ""
        if d and os.path.exists(os.path.join(d, "index.json")):
            return d
    return None


DIR = _optim_dir()
if DIR is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("the optimizer conformance files are missing (CI=true)")
    pytest.skip("no conformance/optim directory found", allow_module_level=True)
INDEX = json.load(open(os.path.join(DIR, "index.json")))

KERAS_RUNS = ["sgd", "sgd_momentum", "sgd_nesterov", "rmsprop_default",
              "adagrad_default", "adam_default"]
CASES = {"A_sigmoid_cce": [(784, 30, sigmoid)],
         "B_relu_tanh_cce": [(784, 32, ReLU), (32, 16, tanh)]}
KERAS_ACTIVATIONS = {sigmoid: "sigmoid", ReLU: "relu", tanh: "tanh"}
ENGINES = [("reference", False), ("cpu", True), ("cpu", False)]


def _optimizer(hp):
    """The fastnet.keras optimizer of a run, from what Keras read back."""
    cls = hp["class"].rsplit(".", 1)[-1]
    h = hp["hyperparameters"]
    for key in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor",
                "gradient_accumulation_steps"):
        assert h.get(key) is None, (key, h[key])
    assert not h.get("use_ema") and h.get("weight_decay") is None
    if cls == "SGD":
        return optimizers.SGD(learning_rate=h["learning_rate"], momentum=h["momentum"],
                              nesterov=h["nesterov"])
    if cls == "RMSprop":
        assert h["momentum"] == 0 and not h["centered"]
        return optimizers.RMSprop(learning_rate=h["learning_rate"], rho=h["rho"],
                                  epsilon=h["epsilon"])
    if cls == "Adagrad":
        return optimizers.Adagrad(learning_rate=h["learning_rate"], epsilon=h["epsilon"],
                                  initial_accumulator_value=h["initial_accumulator_value"])
    if cls == "Adam":
        assert not h["amsgrad"]
        return optimizers.Adam(learning_rate=h["learning_rate"], beta_1=h["beta_1"],
                               beta_2=h["beta_2"], epsilon=h["epsilon"])
    raise AssertionError("no fastnet.keras optimizer for %s" % cls)


_files = {}


def _load(name):
    if name not in _files:
        with np.load(os.path.join(DIR, name)) as z:
            _files[name] = {k: z[k] for k in z.files}
    return _files[name]


def _close(got, want, rtol, dtype, what):
    atol = 1e-12 if dtype == np.float64 else 1e-7
    err = np.max(np.abs(np.asarray(got, np.float64) - want))
    assert err <= rtol * np.max(np.abs(want)) + atol, \
        "%s: max|fastnet - keras| = %.3g > rtol %.1g x max|keras| %.3g" % (
            what, err, rtol, np.max(np.abs(want)))


def _check_snapshot(weights, z, run, step, rtol, dtype):
    """weights: Keras's order [W0, b0, W1, b1, ...]."""
    for i in range(len(weights) // 2):
        _close(weights[2 * i], z["%s_step%d_L%d_w" % (run, step, i)], rtol, dtype,
               "%s step %d L%d w" % (run, step, i))
        _close(weights[2 * i + 1], z["%s_step%d_L%d_b" % (run, step, i)], rtol, dtype,
               "%s step %d L%d b" % (run, step, i))


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    old = fastnet.get_floatx()
    fastnet.set_floatx(request.param)
    yield np.dtype(request.param)
    fastnet.set_floatx(old)


def _network(case, z, engine, fused):
    layers = [FullyConnectedLayer(n_in, n_out, activation_fn=act)
              for n_in, n_out, act in CASES[case]]
    layers.append(SoftmaxLayer(CASES[case][-1][1], 10))
    net = Network(layers, 16, engine=engine, fused=fused)
    for i, layer in enumerate(net.layers):
        layer.w.set_value(z["init_L%d_w" % i])
        layer.b.set_value(z["init_L%d_b" % i])
    return net


def _weights(net):
    return [p.get_value() for p in net.params]


@pytest.mark.parametrize("engine,fused", ENGINES, ids=["reference", "cpu", "cpu-op-by-op"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_keras_trajectories_through_network_sgd(case, engine, fused, dtype):
    name = "%s_keras_%s.npz" % (case, dtype.name)
    z = _load(name)
    rtols = INDEX[name]["suggested_rtol"]
    x, y = z["x"], z["y"].astype(np.int32)
    first, rest = (x[:16], y[:16]), (x[16:], y[16:])
    for run in KERAS_RUNS:
        rtol = rtols[run]
        opt = _optimizer(json.loads(str(z["%s_hparams_json" % run])))
        net = _network(case, z, engine, fused)
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD(first, 1, 16, 1.0, first, first, optimizer=opt)          # step 1
            _check_snapshot(_weights(net), z, run, 1, rtol, dtype)
            net.SGD(rest, 1, 16, 1.0, first, first, optimizer=opt)           # steps 2-4
            net.SGD(first, 1, 16, 1.0, first, first, optimizer=opt)          # step 5
            _check_snapshot(_weights(net), z, run, 5, rtol, dtype)
            net.SGD(rest, 1, 16, 1.0, first, first, optimizer=opt)           # steps 6-8
            net.SGD((x, y), 3, 16, 1.0, first, first, optimizer=opt)         # steps 9-20
        _check_snapshot(_weights(net), z, run, 20, rtol, dtype)
