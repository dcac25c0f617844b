"""The compiled training loop (csrc/trainer.pyx, fastnet/engines/cpu_trainer.py).

The fused path (Network(..., engine="cpu"), whole runs of mini-batches in one
compiled call) must train the same weights as the step-by-step path
(fused=False, the layers calling the kernels one by one) and as the NumPy
reference engine, in float32 and float64, with conv, dense and dropout
layers; and train_steps must reject bad arguments with ValueError.
"""

import contextlib
import io
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastnet  # noqa: E402
from fastnet import (Network, ConvPoolLayer, FullyConnectedLayer,  # noqa: E402
                     SoftmaxLayer, ReLU, sigmoid, tanh)

try:
    from fastnet.engines import cpu as _cpu
    from fastnet.engines import cpu_trainer
except ImportError as e:  # the compiled engine is not built
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the compiled engine is not available: %s" % e, allow_module_level=True)


@pytest.fixture(autouse=True)
def wired(monkeypatch):
    """The cpu engine with the compiled trainer (whether or not cpu.py
    imports it already)."""
    if not hasattr(_cpu, "train_steps"):
        monkeypatch.setattr(_cpu, "make_plan", cpu_trainer.make_plan, raising=False)
        monkeypatch.setattr(_cpu, "train_steps", cpu_trainer.train_steps, raising=False)


@pytest.fixture(params=["float32", "float64"])
def floatx(request):
    old = fastnet.get_floatx()
    fastnet.set_floatx(request.param)
    yield np.dtype(request.param)
    fastnet.set_floatx(old)


def _tol(dtype, kind=None):
    if dtype == np.float64:
        return dict(rtol=1e-10, atol=1e-12)
    # fc_big's 600 x 500 float32 layers at eta 0.5 move a few weights by
    # ~2e-6 between ANY two engines (step-by-step vs reference alike)
    return dict(rtol=1e-5, atol=1e-5 if kind == "fc_big" else 1e-6)


MBS = 4


def _conv_net(p=0.0):
    return [ConvPoolLayer((3, 1, 5, 5), (MBS, 1, 12, 12), activation_fn=ReLU),
            ConvPoolLayer((4, 3, 3, 3), (MBS, 3, 4, 4), activation_fn=sigmoid),
            FullyConnectedLayer(4, 7, activation_fn=ReLU, p_dropout=p),
            SoftmaxLayer(7, 10, p_dropout=p)]


def _conv_odd():
    # odd sizes: pool borders ignored, 3x2 pool, tanh
    return [ConvPoolLayer((2, 1, 4, 3), (MBS, 1, 13, 11), poolsize=(3, 2),
                          activation_fn=tanh),
            FullyConnectedLayer(2 * 3 * 4, 5, activation_fn=sigmoid),
            SoftmaxLayer(5, 3)]


def _fc_net(p=0.0):
    return [FullyConnectedLayer(144, 20, activation_fn=sigmoid, p_dropout=p),
            FullyConnectedLayer(20, 15, activation_fn=ReLU, p_dropout=p),
            SoftmaxLayer(15, 10, p_dropout=p)]


def _fc_big(p=0.5):
    # 600 x 500 weights: the blocked backward pass of big dense layers
    # (600 rows: a partial last block)
    return [FullyConnectedLayer(144, 600, activation_fn=ReLU, p_dropout=p),
            FullyConnectedLayer(600, 500, activation_fn=tanh, p_dropout=p),
            SoftmaxLayer(500, 10, p_dropout=p)]


NETS = {"fc_big": _fc_big, "conv": lambda: _conv_net(), "conv_dropout": lambda: _conv_net(0.4),
        "conv_odd": _conv_odd, "fc": lambda: _fc_net(), "fc_dropout": lambda: _fc_net(0.5)}


def _data(n_in, n_classes, n=44, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.rand(n, n_in)
    y = rs.randint(0, n_classes, n).astype(np.int32)
    return x, y


def _train(kind, engine, fused, dtype, epochs=2):
    np.random.seed(7)
    net = Network(NETS[kind](), MBS, engine=engine, fused=fused)
    x, y = _data(net.n_in, net.n_classes)
    x = x.astype(dtype)
    with contextlib.redirect_stdout(io.StringIO()):
        net.SGD((x, y), epochs, MBS, 0.5, (x[:8], y[:8]), (x[:8], y[:8]), lmbda=0.7)
    return net, [p.get_value().copy() for p in net.params]


@pytest.mark.parametrize("kind", sorted(NETS))
def test_fused_matches_step_by_step_and_reference(kind, floatx):
    fused_net, fused = _train(kind, "cpu", True, floatx)
    assert fused_net._plan is not None, "the fused path was not taken"
    _, steps = _train(kind, "cpu", False, floatx)
    _, ref = _train(kind, "reference", False, floatx)
    for i, (a, b, c) in enumerate(zip(fused, steps, ref)):
        assert a.dtype == floatx
        np.testing.assert_allclose(a, b, err_msg="param %d: fused vs step-by-step" % i,
                                   **_tol(floatx, kind))
        np.testing.assert_allclose(a, c, err_msg="param %d: fused vs reference" % i,
                                   **_tol(floatx, kind))


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_any_thread_count(threads, cpu_threads, floatx):
    cpu_threads.set_num_threads(threads)
    _, fused = _train("conv_dropout", "cpu", True, floatx, epochs=1)
    _, ref = _train("conv_dropout", "reference", False, floatx, epochs=1)
    for a, c in zip(fused, ref):
        np.testing.assert_allclose(a, c, **_tol(floatx))


@pytest.mark.parametrize("fuse_update", [0, 1, 2])
@pytest.mark.parametrize("kind", ["conv_dropout", "conv_odd", "fc_big"])
def test_plan_options_match_reference(kind, fuse_update, floatx):
    """Every variant of the compiled step (where the SGD step happens)
    trains the reference's weights."""
    np.random.seed(5)
    a = Network(NETS[kind](), MBS, engine="cpu", fused=False)
    np.random.seed(5)
    b = Network(NETS[kind](), MBS, engine="reference", fused=False)
    x, y = _data(a.n_in, a.n_classes)
    x = np.ascontiguousarray(x.astype(floatx))
    plan = cpu_trainer.make_plan(a, fuse_update=fuse_update)
    assert plan._c.fuse_update == fuse_update
    cpu_trainer.train_steps(plan, x, y, 0, 11, 0.4, 0.02, 3)
    b.step_count = 3
    b._train_batches(x, y, 0, 11, 0.4, 0.02)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), **_tol(floatx, kind))


def test_train_steps_directly_matches_steps_and_counter(floatx):
    """train_steps over a range with a counter0 == the same steps one by one."""
    np.random.seed(1)
    a = Network(_fc_net(0.5), MBS, engine="cpu", fused=False)
    np.random.seed(1)
    b = Network(_fc_net(0.5), MBS, engine="cpu", fused=False)
    x, y = _data(a.n_in, a.n_classes)
    x = np.ascontiguousarray(x.astype(floatx))
    a.step_count = 5
    a._train_batches(x, y, 2, 7, 0.3, 0.01)
    plan = cpu_trainer.make_plan(b)
    cpu_trainer.train_steps(plan, x, y, 2, 7, 0.3, 0.01, 5)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), **_tol(floatx))
    assert np.isfinite(plan.last_cost)
    # an empty range changes nothing
    before = [p.get_value().copy() for p in b.params]
    cpu_trainer.train_steps(plan, x, y, 3, 3, 0.3, 0.01, 0)
    for p, q in zip(before, b.params):
        np.testing.assert_array_equal(p, q.get_value())


def test_plan_follows_parameter_buffers():
    """set_value between runs is seen by the plan (buffers updated in place)."""
    np.random.seed(2)
    net = Network(_fc_net(), MBS, engine="cpu")
    x, y = _data(net.n_in, net.n_classes)
    x = x.astype(net.dtype)
    plan = cpu_trainer.make_plan(net)
    net.layers[0].w.set_value(np.zeros_like(net.layers[0].w.get_value()))
    cpu_trainer.train_steps(plan, x, y, 0, 1, 0.0, 0.0, 0)
    assert not np.any(net.layers[0].w.get_value())


@pytest.fixture
def plan_xy():
    np.random.seed(3)
    net = Network(_fc_net(), MBS, engine="cpu")
    x, y = _data(net.n_in, net.n_classes)
    return cpu_trainer.make_plan(net), x.astype(net.dtype), y


@pytest.mark.parametrize("change, word", [
    (dict(plan="nope"), "plan"),
    (dict(x=[[0.0]]), "x"),
    (dict(x="float64"), "x"),
    (dict(x="wide"), "x"),
    (dict(x="fortran"), "x"),
    (dict(y="int64"), "y"),
    (dict(y="short"), "y"),
    (dict(y="label"), "y"),
    (dict(y="strided"), "y"),
    (dict(first=-1), "first"),
    (dict(first=1.5), "first"),
    (dict(first=5, stop=4), "stop"),
    (dict(stop=12), "stop"),
    (dict(eta=float("nan")), "eta"),
    (dict(eta="0.1"), "eta"),
    (dict(l2=float("inf")), "l2"),
    (dict(counter0=-1), "counter0"),
    (dict(counter0=2.0), "counter0"),
])
def test_train_steps_bad_arguments(plan_xy, change, word):
    plan, x, y = plan_xy
    args = dict(plan=plan, x=x, y=y, first=0, stop=2, eta=0.1, l2=0.0, counter0=0)
    args.update(change)
    if args["x"] is not x and isinstance(args["x"], str):
        args["x"] = {"float64": x.astype(np.float64) if x.dtype == np.float32 else x.astype(np.float32),
                     "wide": np.zeros((x.shape[0], x.shape[1] + 1), x.dtype),
                     "fortran": np.asfortranarray(x)}[args["x"]]
    if args["y"] is not y and isinstance(args["y"], str):
        args["y"] = {"int64": y.astype(np.int64), "short": y[:-1],
                     "label": np.full_like(y, 10), "strided": np.repeat(y, 2)[::2]}[args["y"]]
    before = [p.get_value().copy() for p in plan.layers[0].params]
    with pytest.raises(ValueError, match=word):
        cpu_trainer.train_steps(**args)
    for p, q in zip(before, plan.layers[0].params):
        np.testing.assert_array_equal(p, q.get_value())


def test_make_plan_bad_network():
    with pytest.raises(ValueError, match="net"):
        cpu_trainer.make_plan(object())
