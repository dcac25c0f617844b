"""fastnet.keras's optimizers against Keras 3.15.1's own trajectories
(conformance/optim, the ``*_keras_*`` files).

Cases A (784-30 sigmoid-10 softmax) and B (784-32 ReLU-16 tanh-10 softmax),
mean categorical cross-entropy on 64 real digits in batches of 16, in order;
cases C (XOR, 2-4 tanh-1 sigmoid, all 4 points each step, 200 steps) with
binary cross-entropy and with mean squared error.
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

import numpy as np
import pytest

from fastnet import (DenseOutputLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer,
                     sigmoid, tanh)
from fastnet import keras
from fastnet.keras import optimizers

import conformance_util as cu  # noqa: E402


INDEX = cu.optim_index()

KERAS_RUNS = ["sgd", "sgd_momentum", "sgd_nesterov", "rmsprop_default",
              "adagrad_default", "adam_default"]
CASES = {"A_sigmoid_cce": [(784, 30, sigmoid)],
         "B_relu_tanh_cce": [(784, 32, ReLU), (32, 16, tanh)],
         "C_xor_bce": [(2, 4, tanh)], "C_xor_mse": [(2, 4, tanh)]}
# case -> (Keras loss, output units, output activation)
OUTPUT = {"A_sigmoid_cce": ("categorical_crossentropy", 10, "softmax"),
          "B_relu_tanh_cce": ("categorical_crossentropy", 10, "softmax"),
          "C_xor_bce": ("binary_crossentropy", 1, "sigmoid"),
          "C_xor_mse": ("mse", 1, "sigmoid")}
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


_load = cu.optim_file


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


@pytest.fixture
def dtype(floatx):
    """conftest's floatx, named as these tests read it."""
    return floatx


def _network(case, z, engine, fused):
    layers = [FullyConnectedLayer(n_in, n_out, activation_fn=act)
              for n_in, n_out, act in CASES[case]]
    loss, units, _ = OUTPUT[case]
    if loss == "categorical_crossentropy":
        layers.append(SoftmaxLayer(CASES[case][-1][1], units))
    else:
        layers.append(DenseOutputLayer(CASES[case][-1][1], units, sigmoid, loss=loss))
    net = Network(layers, len(z["x"]) if case.startswith("C") else 16, engine=engine,
                  fused=fused)
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
    if case.startswith("C"):
        return _xor_through_network_sgd(case, z, engine, fused, dtype, rtols)
    x, y = z["x"], z["y"].astype(np.int32)
    first, rest = (x[:16], y[:16]), (x[16:], y[16:])
    for run in KERAS_RUNS:
        rtol = rtols[run]
        opt = _optimizer(json.loads(str(z["%s_hparams_json" % run])))
        net = _network(case, z, engine, fused)
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD(first, 1, 16, opt.learning_rate, first, first, optimizer=opt)          # step 1
            _check_snapshot(_weights(net), z, run, 1, rtol, dtype)
            net.SGD(rest, 1, 16, opt.learning_rate, first, first, optimizer=opt)           # steps 2-4
            net.SGD(first, 1, 16, opt.learning_rate, first, first, optimizer=opt)          # step 5
            _check_snapshot(_weights(net), z, run, 5, rtol, dtype)
            net.SGD(rest, 1, 16, opt.learning_rate, first, first, optimizer=opt)           # steps 6-8
            net.SGD((x, y), 3, 16, opt.learning_rate, first, first, optimizer=opt)         # steps 9-20
        _check_snapshot(_weights(net), z, run, 20, rtol, dtype)


def _xor_through_network_sgd(case, z, engine, fused, dtype, rtols):
    """C: every step is the 4 points; one SGD call of k epochs is k steps."""
    data = (z["x"], z["y_target"])
    for run in KERAS_RUNS:
        rtol = rtols[run]
        opt = _optimizer(json.loads(str(z["%s_hparams_json" % run])))
        net = _network(case, z, engine, fused)
        done = 0
        with contextlib.redirect_stdout(io.StringIO()):
            for step in (1, 50, 200):
                net.SGD(data, step - done, 4, opt.learning_rate, data, data, optimizer=opt)
                done = step
                _check_snapshot(_weights(net), z, run, step, rtol, dtype)


def _keras_model(case, z, engine, fused, optimizer):
    """The case's model through fastnet.keras, from the file's initial weights."""
    model = keras.Sequential()
    for i, (n_in, n_out, act) in enumerate(CASES[case]):
        kw = {"input_shape": (n_in,)} if i == 0 else {}
        model.add(keras.layers.Dense(n_out, activation=KERAS_ACTIVATIONS[act], **kw))
    loss, units, act = OUTPUT[case]
    model.add(keras.layers.Dense(units, activation=act))
    # built by the first Dense's input_shape: set_weights works before compile
    model.set_weights([z["init_L%d_%s" % (i, k)] for i in range(len(CASES[case]) + 1)
                       for k in "wb"])
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], engine=engine,
                  fused=fused)
    return model


@pytest.mark.parametrize("engine,fused", ENGINES[:2], ids=["reference", "cpu"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_keras_trajectories_through_fastnet_keras(case, engine, fused, dtype):
    """Sequential + Dense + compile + train_on_batch, step by step as the
    golden runs were made: each step's loss and the snapshots."""
    name = "%s_keras_%s.npz" % (case, dtype.name)
    z = _load(name)
    rtols = INDEX[name]["suggested_rtol"]
    cfg = json.loads(str(z["config_json"]))
    x = z["x"]
    t = z["y_target"] if case.startswith("C") else z["y_onehot"]
    batch = cfg["batch"]
    for run in KERAS_RUNS:
        rtol = rtols[run]
        model = _keras_model(case, z, engine, fused,
                             _optimizer(json.loads(str(z["%s_hparams_json" % run]))))
        assert model.get_weights()[0].dtype == dtype
        losses = []
        for s in range(1, cfg["steps"] + 1):
            k = (s - 1) % (len(x) // batch)
            rows = slice(k * batch, (k + 1) * batch)
            loss, _ = model.train_on_batch(x[rows], t[rows])
            losses.append(loss)
            if s in cfg["snapshots"]:
                _check_snapshot(model.get_weights(), z, run, s, rtol, dtype)
        _close(np.array(losses), z["%s_loss" % run], rtol, dtype, "%s losses" % run)


@pytest.mark.parametrize("run", ["adam_default", "sgd_nesterov"])
def test_keras_fit_without_shuffle_is_the_golden_run(run, dtype):
    """fit(batch_size=16, epochs=5, shuffle=False) is the 20 steps of the
    golden run; the epoch's loss is the mean of its 4 steps' losses (Keras's)."""
    case = "A_sigmoid_cce"
    name = "%s_keras_%s.npz" % (case, dtype.name)
    z = _load(name)
    rtol = INDEX[name]["suggested_rtol"][run]
    model = _keras_model(case, z, "cpu", True,
                         _optimizer(json.loads(str(z["%s_hparams_json" % run]))))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        history = model.fit(z["x"], z["y_onehot"], batch_size=16, epochs=5, shuffle=False,
                            verbose=2)
    _check_snapshot(model.get_weights(), z, run, 20, rtol, dtype)
    epoch_losses = z["%s_loss" % run].reshape(5, 4).mean(axis=1)
    _close(np.array(history.history["loss"]), epoch_losses, rtol, dtype, "epoch losses")
    assert sorted(history.history) == ["accuracy", "loss"]
    assert out.getvalue().count("Epoch ") == 5 and "4/4 - " in out.getvalue()
