"""The compiled training loop (csrc/trainer.pyx, fastnet/engines/cpu.py's
compile_program / run_program) against the plan's ops run one by one.

The fused path (Network(..., engine="cpu"), the plan's fused op list run in
C, whole runs of mini-batches per call) must train the same weights as the
unfused list called kernel by kernel (fused=False) and as the NumPy
reference engine, in float32 and float64, with conv, dense and dropout
layers; each fused op's expansion is what the other engines run; and
run_program must reject bad arguments with ValueError.
"""

import contextlib
import io
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fastnet import (Network, ConvPoolLayer, FullyConnectedLayer,  # noqa: E402
                     SoftmaxLayer, ReLU, sigmoid, tanh)

from fastnet.optim import Network3SGD  # noqa: E402
from fastnet.plan import Op  # noqa: E402

try:
    from fastnet.engines import cpu as _cpu
except ImportError as e:  # the compiled engine is not built
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the compiled engine is not available: %s" % e, allow_module_level=True)


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


def _hyper(eta, l2):
    return Network3SGD().hyper(eta, l2)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_fused_matches_step_by_step_and_reference(kind, floatx):
    fused_net, fused = _train(kind, "cpu", True, floatx)
    assert fused_net._program is not None, "the fused path was not taken"
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


@pytest.mark.parametrize("mbs", [7, 13, 50])   # 2, 4 and 16 blocks (conv.pxd's conv_blocks)
def test_results_do_not_depend_on_the_thread_count(cpu_threads, floatx, mbs):
    """The compiled loop's conv gradients are summed in blocks fixed by the
    batch size: 1, 2, 3 and 5 threads train to the same weights bitwise."""
    runs = []
    for threads in (1, 2, 3, 5):
        cpu_threads.set_num_threads(threads)
        np.random.seed(7)
        net = Network([ConvPoolLayer((3, 1, 5, 5), (mbs, 1, 12, 12), activation_fn=ReLU),
                       ConvPoolLayer((4, 3, 3, 3), (mbs, 3, 4, 4), activation_fn=sigmoid),
                       FullyConnectedLayer(4, 7, activation_fn=ReLU, p_dropout=0.3),
                       SoftmaxLayer(7, 10)], mbs, engine="cpu")
        x, y = _data(net.n_in, net.n_classes, n=2 * mbs)
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD((x.astype(floatx), y), 2, mbs, 0.5, (x[:mbs].astype(floatx), y[:mbs]),
                    (x[:mbs].astype(floatx), y[:mbs]), lmbda=0.7)
        assert net._program is not None
        runs.append([p.get_value() for p in net.params])
    for k, threads in ((1, 2), (2, 3), (3, 5)):
        for i, (a, b) in enumerate(zip(runs[0], runs[k])):
            assert np.array_equal(a, b), "param %d: %d threads vs 1" % (i, threads)


def test_fused_ops_and_their_expansion():
    """The plan emits the two fusions for the cpu engine: a run of conv
    layers as conv_run_forward / conv_run_backward, a dense layer's backward
    with its update (backward_update); each expands to exactly the unfused
    ops, and every unfused op appears once."""
    np.random.seed(4)
    net = Network(_conv_net(0.4), MBS, engine="cpu")
    plan = net._plan
    train, backward, update = plan.fused_ops()
    kernels = [op.kernel for op in train + backward + update]
    assert kernels == ["conv_run_forward",
                       "dropout_forward", "dense_forward",
                       "dropout_forward", "dense_forward", "softmax_nll",
                       "backward_update", "dropout_backward",
                       "backward_update", "dropout_backward",
                       "conv_run_backward", "sgd_update", "sgd_update"], kernels
    expanded = [o for op in train + backward + update for o in op.unfused()]
    unfused = plan.train + plan.backward + plan.update
    # the same kernel calls on the same arrays, the updates split by layer
    assert sorted(o.kernel for o in expanded if o.kernel != "sgd_update") == \
        sorted(o.kernel for o in unfused if o.kernel != "sgd_update")
    n_upd = sum(np.asarray(o.args[0]).size for o in expanded if o.kernel == "sgd_update")
    assert n_upd == sum(p.get_value().size for p in net.params)
    assert [o.kernel for o in train[0].unfused()] == ["conv_forward", "pool_forward"] * 2
    assert [o.kernel for o in backward[-1].unfused()] == ["pool_backward", "conv_backward"] * 2


@pytest.mark.parametrize("kind", ["conv_dropout", "conv_odd", "fc_big", "fc_dropout"])
def test_compiled_program_matches_expansion_on_reference(kind, floatx):
    """The compiled fused list against its expansion called op by op on the
    NumPy reference (what the reference and cuda engines run)."""
    from fastnet.engines import get_engine
    from fastnet.plan import _Env, run_ops
    np.random.seed(5)
    a = Network(NETS[kind](), MBS, engine="cpu")
    np.random.seed(5)
    b = Network(NETS[kind](), MBS, engine="cpu", fused=False)
    x, y = _data(a.n_in, a.n_classes)
    x = np.ascontiguousarray(x.astype(floatx))
    program = _cpu.compile_program(a._plan)
    _cpu.run_program(program, x, y, 0, 11, _hyper(0.4, 0.02), 3)
    R = get_engine("reference")
    train, backward, update = b._plan.fused_ops()
    for i in range(11):
        env = _Env(x[i * MBS:(i + 1) * MBS], y[i * MBS:(i + 1) * MBS], 3 + i,
                   _hyper(0.4, 0.02))
        for part in (train, backward, update):
            run_ops(R, [o for op in part for o in op.unfused()], env)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), **_tol(floatx, kind))


def test_run_program_directly_matches_steps_and_counter(floatx):
    """run_program over a range with a counter0 == the same steps one by one."""
    np.random.seed(1)
    a = Network(_fc_net(0.5), MBS, engine="cpu", fused=False)
    np.random.seed(1)
    b = Network(_fc_net(0.5), MBS, engine="cpu", fused=False)
    x, y = _data(a.n_in, a.n_classes)
    x = np.ascontiguousarray(x.astype(floatx))
    a.step_count = 5
    a._train_batches(x, y, 2, 7, _hyper(0.3, 0.01))
    program = _cpu.compile_program(b._plan)
    cost = _cpu.run_program(program, x, y, 2, 7, _hyper(0.3, 0.01), 5)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), **_tol(floatx))
    assert np.isfinite(program.last_cost) and cost == program.last_cost
    # an empty range changes nothing
    before = [p.get_value().copy() for p in b.params]
    _cpu.run_program(program, x, y, 3, 3, _hyper(0.3, 0.01), 0)
    for p, q in zip(before, b.params):
        np.testing.assert_array_equal(p, q.get_value())


def test_program_follows_parameter_buffers():
    """set_value between runs is seen by the program (the flat arrays are
    updated in place)."""
    np.random.seed(2)
    net = Network(_fc_net(), MBS, engine="cpu")
    x, y = _data(net.n_in, net.n_classes)
    x = x.astype(net.dtype)
    program = _cpu.compile_program(net._plan)
    net.layers[0].w.set_value(np.zeros_like(net.layers[0].w.get_value()))
    _cpu.run_program(program, x, y, 0, 1, _hyper(0.0, 0.0), 0)
    assert not np.any(net.layers[0].w.get_value())


def test_unaligned_input_is_copied_not_refused():
    """An unaligned or strided x trains like its contiguous copy."""
    np.random.seed(2)
    net = Network(_fc_net(), MBS, engine="cpu")
    x, y = _data(net.n_in, net.n_classes)
    x = x.astype(net.dtype)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    odd = raw[1:].view(x.dtype).reshape(x.shape)
    odd[...] = x
    assert not odd.flags.aligned
    before = [p.get_value() for p in net.params]
    program = _cpu.compile_program(net._plan)
    _cpu.run_program(program, odd, y, 0, 3, _hyper(0.1, 0.0), 0)
    got = [p.get_value() for p in net.params]
    for p, v in zip(net.params, before):
        p.set_value(v)
    _cpu.run_program(program, x, y, 0, 3, _hyper(0.1, 0.0), 0)
    for p, g in zip(net.params, got):
        np.testing.assert_array_equal(p.get_value(), g)


@pytest.fixture
def program_xy():
    np.random.seed(3)
    net = Network(_fc_net(), MBS, engine="cpu")
    x, y = _data(net.n_in, net.n_classes)
    return net, _cpu.compile_program(net._plan), x.astype(net.dtype), y


@pytest.mark.parametrize("change, word", [
    (dict(program="nope"), "program"),
    (dict(x=[[0.0]]), "x"),
    (dict(x="float64"), "x"),
    (dict(x="wide"), "x"),
    (dict(y="int64"), "y"),
    (dict(y="short"), "y"),
    (dict(y="label"), "y"),
    (dict(first=-1), "first"),
    (dict(first=1.5), "first"),
    (dict(first=5, stop=4), "stop"),
    (dict(stop=12), "stop"),
    (dict(hyper={"eta": float("nan"), "l2": 0.0, "zero": 0.0}), "eta"),
    (dict(hyper={"eta": "0.1", "l2": 0.0, "zero": 0.0}), "eta"),
    (dict(hyper={"eta": 0.1, "l2": float("inf"), "zero": 0.0}), "l2"),
    (dict(hyper={"eta": 0.1, "zero": 0.0}), "l2"),
    (dict(hyper=[0.1]), "hyper"),
    (dict(counter0=-1), "counter0"),
    (dict(counter0=2.0), "counter0"),
])
def test_run_program_bad_arguments(program_xy, change, word):
    net, program, x, y = program_xy
    args = dict(program=program, x=x, y=y, first=0, stop=2, hyper=_hyper(0.1, 0.0),
                counter0=0)
    args.update(change)
    if args["x"] is not x and isinstance(args["x"], str):
        args["x"] = {"float64": x.astype(np.float64) if x.dtype == np.float32 else x.astype(np.float32),
                     "wide": np.zeros((x.shape[0], x.shape[1] + 1), x.dtype)}[args["x"]]
    if args["y"] is not y and isinstance(args["y"], str):
        args["y"] = {"int64": y.astype(np.int64), "short": y[:-1],
                     "label": np.full_like(y, 10)}[args["y"]]
    before = [p.get_value().copy() for p in net.params]
    with pytest.raises(ValueError, match=word):
        _cpu.run_program(**args)
    for p, q in zip(before, net.params):
        np.testing.assert_array_equal(p, q.get_value())


def test_compile_program_bad_plan():
    with pytest.raises(ValueError, match="plan"):
        _cpu.compile_program(object())


def test_program_refuses_unknown_op():
    """An op with no compiled kernel is a clear error, not a silent skip."""
    from fastnet.engines.reference import keep_threshold
    from fastnet._cpu import trainer
    with pytest.raises(ValueError, match="no compiled kernel for op 'frobnicate'"):
        trainer.Program([Op("frobnicate")], 4, 3, 2, np.float32, 1,
                        lambda a, k: False, keep_threshold)


def test_adaptive_team_changes_no_result(cpu_threads, floatx):
    """The thread team (csrc/team.pxd) moves steps between thread counts as
    it measures them; with a window of one step it probes all the time, and
    the weights and the cost are still bitwise those of every step on all
    the threads: conv blocks, dropout and the cost do not depend on the
    count, and BLAS products (the 300 x 400 layer at mini-batch 50 is cut in
    row blocks) are cut by the thread count set, not by the team's."""
    def run(threads, adaptive):
        cpu_threads.set_num_threads(threads)
        cpu_threads.set_adaptive_threads(adaptive)
        cpu_threads.team_window_s = 1e-9
        np.random.seed(11)
        mbs = 50
        net = Network([ConvPoolLayer((3, 1, 5, 5), (mbs, 1, 12, 12), activation_fn=ReLU),
                       FullyConnectedLayer(3 * 4 * 4, 300, activation_fn=ReLU, p_dropout=0.2),
                       FullyConnectedLayer(300, 400, activation_fn=sigmoid),
                       SoftmaxLayer(400, 10)], mbs, engine="cpu")
        x, y = _data(net.n_in, net.n_classes, n=30 * mbs)
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD((x.astype(floatx), y), 2, mbs, 0.5, (x[:mbs].astype(floatx), y[:mbs]),
                    (x[:mbs].astype(floatx), y[:mbs]), lmbda=0.7)
        return net, [p.get_value() for p in net.params]

    # 60 steps, a window each: probes at windows 3, 12 and 45 at least
    for threads in (2, 3):
        pinned_net, pinned = run(threads, False)
        team_net, moved = run(threads, True)
        team = team_net.thread_team()
        assert team["adaptive"] and team["max_threads"] == threads
        assert team["probes"] >= 3, team     # steps really ran on other counts
        assert not pinned_net.thread_team()["adaptive"]
        for i, (a, b) in enumerate(zip(pinned, moved)):
            assert np.array_equal(a, b), "param %d: adaptive team vs pinned, %d threads" % (
                i, threads)
        assert team_net._program.last_cost == pinned_net._program.last_cost
    assert Network([FullyConnectedLayer(4, 3), SoftmaxLayer(3, 2)], 5,
                   engine="cpu").thread_team() is None
