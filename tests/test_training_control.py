"""SGD's training control (all off by default, so network3's behaviour and
log lines are unchanged): early stopping (patience), learning-rate schedules
(ReduceOnPlateau and a function of the epoch), training cost and accuracy in
the history -- on scripted validation sequences, and resumed bitwise from a
checkpoint with each keyword.
"""

import contextlib
import io

import numpy as np
import pytest

from fastnet import FullyConnectedLayer, Network, ReLU, SoftmaxLayer
from fastnet.schedules import ReduceOnPlateau

MBS = 5


def _net(seed=1):
    np.random.seed(seed)
    return Network([FullyConnectedLayer(12, 8, activation_fn=ReLU), SoftmaxLayer(8, 3)], MBS)


def _data(n=60, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.rand(n, 12).astype("float32")
    return x, x[:, :3].argmax(axis=1).astype(np.int32)


def _script(monkeypatch, net, accuracies):
    """The validation accuracies SGD sees, epoch by epoch (test: 0.5)."""
    seq = iter(accuracies)
    real = net._batch_accuracies

    def fake(x_e, y, n_batches):
        if n_batches == 2:                           # validation: 10 rows
            return np.array([next(seq)])
        return real(x_e, y, n_batches)
    monkeypatch.setattr(net, "_batch_accuracies", fake)


def _sgd(net, epochs, **kw):
    x, y = _data()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        h = net.SGD((x, y), epochs, MBS, 0.1, (x[:10], y[:10]), (x[:15], y[:15]), **kw)
    return h, out.getvalue()


def test_patience_stops_and_restores_the_best_epoch(monkeypatch):
    ref = _net()
    _sgd(ref, 2)                                     # the weights after epoch 1
    net = _net()
    # best at epoch 1 (0.6); equal at 2 counts as new best (network3's >=);
    # then 3 epochs without: stop after epoch 5
    _script(monkeypatch, net, [0.5, 0.6, 0.6, 0.55, 0.5, 0.58, 0.9, 0.9])
    h, log = _sgd(net, 8, patience=3)
    assert h.stopped_early and len(h.epochs) == 6
    assert "Stopping early: no new best validation accuracy in 3 epochs." in log
    assert h.best_iteration == 3 * 12 - 1           # epoch 2's last mini-batch
    after2 = _net()
    _sgd(after2, 3)
    for p, q in zip(net.params, after2.params):     # epoch 2's weights came back
        np.testing.assert_array_equal(p.get_value(), q.get_value())


def test_reduce_on_plateau_schedule():
    s = ReduceOnPlateau(factor=2, patience=2, min_eta=0.1 / 8)
    recs = lambda vs: [{"validation_accuracy": v} for v in vs]  # noqa: E731
    assert s.eta(0.1, recs([])) == 0.1
    assert s.eta(0.1, recs([0.5, 0.6, 0.6])) == 0.1           # equal is a new best
    assert s.eta(0.1, recs([0.5, 0.6, 0.5, 0.55])) == 0.05    # 2 without: halve
    assert s.eta(0.1, recs([0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])) == 0.0125
    assert s.eta(0.1, recs([0.5] + [0.4] * 8)) is None         # below the floor: stop
    for bad in (dict(factor=1), dict(patience=0), dict(min_eta=-1)):
        with pytest.raises(ValueError):
            ReduceOnPlateau(**bad)


def test_schedules_set_each_epochs_eta(monkeypatch):
    net = _net()
    _script(monkeypatch, net, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])
    h, log = _sgd(net, 10, eta_schedule=ReduceOnPlateau(factor=2, patience=1, min_eta=0.02))
    assert [e["eta"] for e in h.epochs] == [0.1, 0.1, 0.05, 0.025]
    assert h.stopped_early and "schedule reached its floor" in log
    net2 = _net()
    h2, _ = _sgd(net2, 3, eta_schedule=lambda epoch: 0.1 / (epoch + 1))
    assert [e["eta"] for e in h2.epochs] == [0.1, 0.05, 0.1 / 3]
    with pytest.raises(ValueError, match="eta_schedule"):
        _sgd(_net(), 1, eta_schedule=lambda epoch: -1.0)


def test_a_schedule_of_constant_eta_changes_nothing():
    a, b = _net(), _net()
    _sgd(a, 3)
    _sgd(b, 3, eta_schedule=lambda epoch: 0.1)
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p.get_value(), q.get_value())


def test_monitor_training_records_cost_and_accuracy():
    net = _net()
    h, log = _sgd(net, 2, monitor_training=True)
    x, y = _data()
    for e in h.epochs:
        assert np.isfinite(e["training_cost"]) and 0 <= e["training_accuracy"] <= 1
    assert h.epochs[-1]["training_cost"] == pytest.approx(net.evaluate_batches(x, y)[0])
    plain, log2 = _sgd(_net(), 2)
    assert "training_cost" not in plain.epochs[0]
    assert log.splitlines() == log2.splitlines()     # network3's log lines unchanged


@pytest.mark.parametrize("kw", [dict(patience=2),
                                dict(eta_schedule=ReduceOnPlateau(patience=1)),
                                dict(monitor_training=True)], ids=["patience", "schedule",
                                                                   "monitor"])
def test_resume_bitwise_with_each_keyword(tmp_path, kw):
    whole = _net()
    h_whole, _ = _sgd(whole, 6, **kw)
    dying = _net()
    real = dying._batch_accuracies
    calls = []

    def die(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real(*args)
    dying._batch_accuracies = die
    ck = str(tmp_path / "ck.npz")
    with pytest.raises(RuntimeError):
        _sgd(dying, 6, checkpoint=ck, **kw)
    resumed = _net()
    h, _ = _sgd(resumed, 6, checkpoint=ck, **kw)
    assert [e["validation_accuracy"] for e in h.epochs] == \
        [e["validation_accuracy"] for e in h_whole.epochs]
    assert h.stopped_early == h_whole.stopped_early
    for p, q in zip(whole.params, resumed.params):
        np.testing.assert_array_equal(p.get_value(), q.get_value())


def test_bad_patience():
    with pytest.raises(ValueError, match="patience"):
        _sgd(_net(), 1, patience=0)
