"""fastnet/progress.py: a tqdm bar on a terminal, plain lines elsewhere, and
what ``Network.SGD(progress=True)`` writes to stderr."""

import io
import re

import numpy as np
import pytest

import conformance_util as cu
import fastnet
from fastnet import progress as P


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def no_throttle(monkeypatch):
    """Plain lines at every quarter, however fast the epoch."""
    monkeypatch.setattr(P, "LOG_MIN_SECONDS", 0.0)


def test_plain_lines_when_not_a_terminal(no_throttle):
    out = io.StringIO()
    p = P.EpochProgress(3, 100, 10, stream=out)
    for done in range(10, 101, 10):
        p.update(done)
    p.update(100)                       # after the end: nothing more
    lines = out.getvalue().splitlines()
    # a line per quarter at most, and one at the end of the epoch
    assert [int(re.match(r"epoch 3: (\d+)/100 mini-batches", line).group(1))
            for line in lines] == [30, 60, 90, 100], lines
    assert re.fullmatch(r"epoch 3: 100/100 mini-batches \(100%\), \d+\.\d s, \d+ samples/s",
                        lines[-1])


def test_plain_lines_are_throttled_in_time(monkeypatch):
    monkeypatch.setattr(P, "LOG_MIN_SECONDS", 3600.0)
    out = io.StringIO()
    p = P.EpochProgress(0, 100, 10, stream=out)
    for done in range(1, 101):
        p.update(done)
    assert len(out.getvalue().splitlines()) == 1     # the end-of-epoch line only


def test_bar_on_a_terminal():
    cu.import_or_skip("tqdm", "the test extra installs it: pip install '.[test]'")
    term = FakeTerminal()
    p = P.EpochProgress(1, 50, 10, stream=term)
    assert p._bar is not None
    for done in (10, 20, 50):
        p.update(done)
    text = term.getvalue()
    assert "\r" in text and "epoch 1" in text and "50/50 mini-batches" in text
    assert "samples/s" in text and text.endswith("\n")


def test_without_tqdm_a_terminal_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(P, "_tqdm", lambda: None)
    term = FakeTerminal()
    p = P.EpochProgress(0, 4, 10, stream=term)
    p.update(4)
    assert term.getvalue().startswith("epoch 0: 4/4 mini-batches (100%)")
    with pytest.raises(ImportError, match=r"fastnet\[progress\]"):
        P.EpochProgress(0, 4, 10, stream=term, bar=True)


def test_an_unfinished_bar_is_closed_by_the_next_epoch():
    cu.import_or_skip("tqdm", "the test extra installs it: pip install '.[test]'")
    term = FakeTerminal()
    run = P.Progress(10, stream=term)
    run.update(0, 5, 20, t0=1.0)        # epoch 0 stops early (an exception in SGD)
    first = run.current
    run.update(1, 20, 20, t0=2.0)
    assert first.finished and run.current.epoch == 1 and run.current.finished


def test_sgd_progress_writes_a_line_per_epoch(capsys):
    """stderr under pytest is not a terminal: plain lines, one per short epoch,
    and network3's own log on stdout is untouched."""
    fastnet.set_floatx("float32")
    rs = np.random.RandomState(0)
    x = rs.rand(200, 20).astype(np.float32)
    y = rs.randint(0, 3, 200)
    np.random.seed(1)
    net = fastnet.Network([fastnet.FullyConnectedLayer(n_in=20, n_out=8),
                           fastnet.SoftmaxLayer(n_in=8, n_out=3)], 10, engine="reference")
    net.SGD((x, y), 2, 10, 0.1, (x[:50], y[:50]), (x[:50], y[:50]), progress=True)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2, captured.err
    for epoch, line in enumerate(lines):
        assert re.fullmatch(r"epoch %d: 20/20 mini-batches \(100%%\), \d+\.\d s, \d+ samples/s"
                            % epoch, line), line
    assert "epoch" not in captured.out and captured.out.startswith("Training mini-batch number 0")
