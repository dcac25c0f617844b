"""fastnet.optim against PyTorch 2.13's own trajectories (conformance/optim).

Cases A (784-30 sigmoid-10 softmax) and B (784-32 ReLU-16 tanh-10 softmax),
mean cross-entropy on 64 real digits in mini-batches of 16, in order: exactly
network3's SGD loop, so each run is rebuilt through the public API --
network3-style layers with the file's initial parameters (``set_value``),
``net.SGD(..., optimizer=fastnet.optim.X(...))`` -- on every engine (the
NumPy reference, the compiled loop, the cpu kernels called op by op), and
compared with the parameters PyTorch had after 1, 5 and 20 steps, and with
its first gradient and loss, at the tolerances of the README (index.json's
suggested_rtol).  The optimizer state carries over from one SGD call to the
next with the same optimizer object, which is how steps 1 and 5 are reached.
"""

import contextlib
import io
import json

import numpy as np
import pytest

import fastnet
from fastnet import (DenseOutputLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer,
                     optim, sigmoid, tanh)

import conformance_util as cu  # noqa: E402


INDEX = cu.optim_index()

# the torch runs and the fastnet.optim call that makes each, from its hparams
TORCH_RUNS = ["sgd", "sgd_momentum", "sgd_nesterov", "sgd_wd", "rmsprop_keraslike",
              "rmsprop_default", "adagrad", "adam", "adamw"]
CASES = {"A_sigmoid_cce": [(784, 30, sigmoid)],
         "B_relu_tanh_cce": [(784, 32, ReLU), (32, 16, tanh)],
         "C_xor_bce": [(2, 4, tanh)], "C_xor_mse": [(2, 4, tanh)]}
# the output layer of each case: softmax (A, B) or one sigmoid unit (C)
OUTPUT = {"C_xor_bce": "binary_crossentropy", "C_xor_mse": "mse"}


def _optimizer(hp):
    cls = hp["class"].rsplit(".", 1)[-1]
    h = hp["hyperparameters"]
    if cls == "SGD":
        return optim.SGD(lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"],
                         weight_decay=h["weight_decay"], nesterov=h["nesterov"])
    if cls == "RMSprop":
        return optim.RMSprop(lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                             weight_decay=h["weight_decay"])
    if cls == "Adagrad":
        return optim.Adagrad(lr=h["lr"], lr_decay=h["lr_decay"], eps=h["eps"],
                             weight_decay=h["weight_decay"],
                             initial_accumulator_value=h["initial_accumulator_value"])
    if cls in ("Adam", "AdamW"):
        return getattr(optim, cls)(lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                                   weight_decay=h["weight_decay"])
    raise AssertionError("no fastnet.optim class for %s" % cls)


_load = cu.optim_file


def _build(case, z, engine, fused):
    layers = [FullyConnectedLayer(n_in, n_out, activation_fn=act)
              for n_in, n_out, act in CASES[case]]
    last = CASES[case][-1][1]
    if case in OUTPUT:
        layers.append(DenseOutputLayer(last, 1, activation_fn=sigmoid, loss=OUTPUT[case]))
    else:
        layers.append(SoftmaxLayer(last, 10))
    net = Network(layers, 4 if case in OUTPUT else 16, engine=engine, fused=fused)
    for i, layer in enumerate(net.layers):
        layer.w.set_value(z["init_L%d_w" % i])
        layer.b.set_value(z["init_L%d_b" % i])
    return net


def _close(got, want, rtol, dtype, what):
    atol = 1e-12 if dtype == np.float64 else 1e-7
    err = np.max(np.abs(got - want))
    assert err <= rtol * np.max(np.abs(want)) + atol, \
        "%s: max|fastnet - torch| = %.3g > rtol %.1g x max|torch| %.3g" % (
            what, err, rtol, np.max(np.abs(want)))


def _snapshot(net, z, run, step, rtol, dtype):
    for i, layer in enumerate(net.layers):
        _close(layer.w.get_value(), z["%s_step%d_L%d_w" % (run, step, i)], rtol, dtype,
               "%s step %d L%d w" % (run, step, i))
        _close(layer.b.get_value(), z["%s_step%d_L%d_b" % (run, step, i)], rtol, dtype,
               "%s step %d L%d b" % (run, step, i))


ENGINES = [("reference", False), ("cpu", True), ("cpu", False)]


@pytest.fixture
def dtype(floatx):
    """conftest's floatx, named as these tests read it."""
    return floatx


@pytest.mark.parametrize("engine,fused", ENGINES, ids=["reference", "cpu", "cpu-op-by-op"])
@pytest.mark.parametrize("case", ["A_sigmoid_cce", "B_relu_tanh_cce"])
def test_torch_trajectories(case, engine, fused, dtype):
    name = "%s_torch_%s.npz" % (case, dtype.name)
    z = _load(name)
    rtols = INDEX[name]["suggested_rtol"]
    x, y = z["x"], z["y"].astype(np.int32)
    out = io.StringIO()
    for run in TORCH_RUNS:
        rtol = rtols[run]
        hp = json.loads(str(z["%s_hparams_json" % run]))
        opt = _optimizer(hp)
        net = _build(case, z, engine, fused)
        # the gradient and loss of step 1, before any update
        cost, grads = net.cost_and_grads(x[:16], y[:16])
        assert abs(cost - z["%s_loss" % run][0]) <= rtol * abs(z["%s_loss" % run][0]) + 1e-7
        for i in range(len(net.layers)):
            _close(grads[2 * i], z["grad1_L%d_w" % i], rtol, dtype, "grad1 L%d w" % i)
            _close(grads[2 * i + 1], z["grad1_L%d_b" % i], rtol, dtype, "grad1 L%d b" % i)
        lr = opt.lr
        first, rest = (x[:16], y[:16]), (x[16:], y[16:])
        with contextlib.redirect_stdout(out):
            net.SGD(first, 1, 16, lr, first, first, optimizer=opt)          # step 1
            _snapshot(net, z, run, 1, rtol, dtype)
            net.SGD(rest, 1, 16, lr, first, first, optimizer=opt)           # steps 2-4
            net.SGD(first, 1, 16, lr, first, first, optimizer=opt)          # step 5
            _snapshot(net, z, run, 5, rtol, dtype)
            net.SGD(rest, 1, 16, lr, first, first, optimizer=opt)           # steps 6-8
            net.SGD((x, y), 3, 16, lr, first, first, optimizer=opt)         # steps 9-20
        _snapshot(net, z, run, 20, rtol, dtype)


@pytest.mark.parametrize("engine,fused", ENGINES, ids=["reference", "cpu", "cpu-op-by-op"])
@pytest.mark.parametrize("case", sorted(OUTPUT))
def test_torch_xor_trajectories(case, engine, fused, dtype):
    """XOR, 2-4 tanh-1 sigmoid, all four points every step for 200 steps,
    with binary cross-entropy or the mean squared error (DenseOutputLayer)."""
    name = "%s_torch_%s.npz" % (case, dtype.name)
    z = _load(name)
    rtols = INDEX[name]["suggested_rtol"]
    x, t = z["x"], z["y_target"]
    out = io.StringIO()
    for run in TORCH_RUNS:
        rtol = rtols[run]
        opt = _optimizer(json.loads(str(z["%s_hparams_json" % run])))
        net = _build(case, z, engine, fused)
        cost, grads = net.cost_and_grads(x, t)
        assert abs(cost - z["%s_loss" % run][0]) <= rtol * abs(z["%s_loss" % run][0]) + 1e-7
        for i in range(len(net.layers)):
            _close(grads[2 * i], z["grad1_L%d_w" % i], rtol, dtype, "grad1 L%d w" % i)
            _close(grads[2 * i + 1], z["grad1_L%d_b" % i], rtol, dtype, "grad1 L%d b" % i)
        with contextlib.redirect_stdout(out):
            net.SGD((x, t), 1, 4, opt.lr, (x, t), (x, t), optimizer=opt)
            _snapshot(net, z, run, 1, rtol, dtype)
            net.SGD((x, t), 49, 4, opt.lr, (x, t), (x, t), optimizer=opt)
            _snapshot(net, z, run, 50, rtol, dtype)
            net.SGD((x, t), 150, 4, opt.lr, (x, t), (x, t), optimizer=opt)
        _snapshot(net, z, run, 200, rtol, dtype)


def test_train_batch_follows_torch_with_partial_batches():
    """train_batch at a smaller batch than the network's: A's Adam run, 16
    rows per step through a network built for 32 (the plan's buffers at 16
    rows), equals PyTorch's trajectory; the returned loss is PyTorch's."""
    z = _load("A_sigmoid_cce_torch_float64.npz")
    old = fastnet.get_floatx()
    fastnet.set_floatx("float64")
    try:
        layers = [FullyConnectedLayer(784, 30, activation_fn=sigmoid), SoftmaxLayer(30, 10)]
        net = Network(layers, 32)
        for i, layer in enumerate(net.layers):
            layer.w.set_value(z["init_L%d_w" % i])
            layer.b.set_value(z["init_L%d_b" % i])
        opt = optim.Adam(lr=1e-3)
        x, y = z["x"], z["y"].astype(np.int32)
        rtol = INDEX["A_sigmoid_cce_torch_float64.npz"]["suggested_rtol"]["adam"]
        for step in range(1, 6):
            k = (step - 1) % 4
            loss, acc = net.train_batch(x[16 * k:16 * k + 16], y[16 * k:16 * k + 16], opt)
            assert abs(loss - z["adam_loss"][step - 1]) <= rtol * abs(z["adam_loss"][step - 1])
            assert 0.0 <= acc <= 1.0
        _snapshot(net, z, "adam", 5, rtol, np.dtype(np.float64))
        loss, acc = net.evaluate_batches(x, y)
        assert np.isfinite(loss) and 0 <= acc <= 1
    finally:
        fastnet.set_floatx(old)


@pytest.mark.parametrize("make", [lambda: optim.Adam(),
                                  lambda: optim.SGD(0.1, momentum=0.9, nesterov=True),
                                  lambda: optim.Adagrad(initial_accumulator_value=0.1)],
                         ids=["adam", "nesterov", "adagrad"])
def test_optimizer_state_resumes_bitwise_from_a_checkpoint(tmp_path, make):
    """The moments and the step count are in the checkpoint: a run that
    dies after its first epoch and is resumed by a new network with a new
    optimizer object trains the same weights, bit for bit, as a run that
    did not die."""
    z = _load("A_sigmoid_cce_torch_float32.npz")
    x, y = z["x"], z["y"].astype(np.int32)
    ck = str(tmp_path / "ck.npz")
    with contextlib.redirect_stdout(io.StringIO()):
        whole = _build("A_sigmoid_cce", z, "cpu", True)
        opt = make()
        whole.SGD((x, y), 3, 16, opt.lr, (x, y), (x, y), optimizer=opt)
        dying = _build("A_sigmoid_cce", z, "cpu", True)
        real = dying._batch_accuracies
        calls = []

        def die_in_epoch_1(*args):
            calls.append(1)
            if len(calls) == 3:        # epoch 0: validation + test; epoch 1: dies
                raise RuntimeError("killed")
            return real(*args)
        dying._batch_accuracies = die_in_epoch_1
        opt = make()
        with pytest.raises(RuntimeError, match="killed"):
            dying.SGD((x, y), 3, 16, opt.lr, (x, y), (x, y), optimizer=opt, checkpoint=ck)
        from fastnet import persist
        meta, arrays = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
        assert meta["optimizer_step"] == 4 and meta["state"]["epoch"] == 1
        n_state = make().n_state
        assert sum(k.startswith("opt_") for k in arrays) == 2 * n_state
        resumed = _build("A_sigmoid_cce", z, "cpu", True)
        opt = make()
        resumed.SGD((x, y), 3, 16, opt.lr, (x, y), (x, y), optimizer=opt, checkpoint=ck)
    for p, q in zip(whole.params, resumed.params):
        np.testing.assert_array_equal(p.get_value(), q.get_value())
    # another optimizer's checkpoint is not silently mixed in
    with contextlib.redirect_stdout(io.StringIO()):
        other = _build("A_sigmoid_cce", z, "cpu", True)
        with pytest.raises(ValueError, match="different SGD call"):
            other.SGD((x, y), 3, 16, 0.5, (x, y), (x, y), optimizer=optim.SGD(0.5),
                      checkpoint=ck)


@pytest.mark.parametrize("bad, match", [
    (dict(lr=0), "lr must be"), (dict(lr=float("nan")), "lr must be"),
    (dict(momentum=-1), "momentum must be"), (dict(nesterov=True), "Nesterov"),
    (dict(weight_decay="x"), "weight_decay must be a number")])
def test_bad_hyper_parameters_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        optim.SGD(**bad)


def test_unsupported_options_say_so():
    with pytest.raises(NotImplementedError, match="amsgrad"):
        optim.Adam(amsgrad=True)
    with pytest.raises(NotImplementedError, match="centered"):
        optim.RMSprop(centered=True)


def test_eta_and_lmbda_with_an_optimizer():
    z = _load("A_sigmoid_cce_torch_float32.npz")
    x, y = z["x"], z["y"].astype(np.int32)
    net = _build("A_sigmoid_cce", z, "cpu", True)
    with contextlib.redirect_stdout(io.StringIO()):
        with pytest.raises(ValueError, match="weight_decay"):
            net.SGD((x, y), 1, 16, 1e-3, (x, y), (x, y), lmbda=0.1, optimizer=optim.Adam())
        with pytest.warns(UserWarning, match="eta=0.5 is ignored"):
            net.SGD((x, y), 1, 16, 0.5, (x, y), (x, y), optimizer=optim.Adam())
        with pytest.raises(ValueError, match="fastnet.optim optimizer"):
            net.SGD((x, y), 1, 16, 0.5, (x, y), (x, y), optimizer="adam")
