"""The compiled training loop's thread team (csrc/team.pxd): which count of
threads it runs steps on, driven here with made-up window times (seconds
per step at each count) instead of a clock, through load changes.

What it must do: stay on the count that is fastest while probing others
rarely (free cores cost ~1 %), move within a window or two when a window
gets much slower (another process took a core), come back when the load
goes, settle on one thread where one thread is fastest, climb to the best
count of a bigger machine, and never adapt when told not to.  That the
counts it picks change no result is tests/test_trainer.py's
test_adaptive_team_changes_no_result.
"""

import os

import pytest

try:
    from fastnet.engines import cpu as _cpu
except ImportError as e:  # the compiled engine is not built
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the compiled engine is not available: %s" % e, allow_module_level=True)

ThreadTeam = _cpu._trainer.ThreadTeam


def drive(team, seconds, windows):
    """Feed `windows` windows; seconds(k) is a step's time on k threads.
    Returns the count of each window."""
    counts = []
    for _ in range(windows):
        k = team.threads
        counts.append(k)
        team.window(seconds(k))
    return counts


FREE = {1: 1.7e-3, 2: 1.0e-3}        # a conv step: 2 threads 1.7x faster
BUSY = {1: 1.7e-3, 2: 3.0e-3}        # another process holds one of the 2 cores


def test_stays_on_the_faster_count_and_probes_rarely():
    team = ThreadTeam(2)
    counts = drive(team, FREE.get, 1000)
    assert team.threads == 2 and team.state()["threads"] == 2
    ones = counts.count(1)
    # probes back off to one window in 129: about 1 % of the time off the best
    assert 0 < ones <= 1000 // 128 + 10, ones
    assert counts[-300:].count(1) <= 300 // 128 + 1
    assert team.state()["switches"] == 0


def test_moves_off_a_taken_core_at_once_and_comes_back():
    team = ThreadTeam(2)
    drive(team, FREE.get, 500)
    # the first slow window probes one thread at once, which wins
    first = drive(team, BUSY.get, 3)
    assert team.state()["threads"] == 1, first
    busy = drive(team, BUSY.get, 200)
    assert busy[-100:].count(2) <= 100 // 8, busy[-100:]
    assert team.state()["threads"] == 1
    free = drive(team, FREE.get, 300)
    back = free.index(2)
    assert back <= 129, back
    assert free[-100:].count(1) <= 100 // 32, free[-100:]
    assert team.state()["threads"] == 2


def test_small_steps_settle_on_one_thread():
    # the FC net at mini-batch 10: one thread beats two even on free cores
    team = ThreadTeam(2)
    counts = drive(team, {1: 5.4e-5, 2: 6.5e-5}.get, 300)
    assert counts[:4] == [2, 2, 1, 1]    # the first window (cold) is not measured
    assert team.state()["threads"] == 1
    assert counts[-100:].count(2) <= 100 // 32 + 1


def test_slow_windows_on_one_thread_do_not_probe_more():
    # on one thread a slow window means a busier machine: more threads would
    # not help, so only the backed-off schedule probes two
    team = ThreadTeam(2)
    drive(team, {1: 5.4e-5, 2: 6.5e-5}.get, 300)
    before = team.state()["probes"]
    noisy = iter([5.4e-5, 5.4e-5, 5.4e-5, 7.0e-5] * 100)   # every 4th 1.3x slower
    counts = drive(team, lambda k: next(noisy) if k == 1 else 6.5e-5, 300)
    assert team.state()["probes"] - before <= 300 // 128 + 1
    assert counts.count(2) <= 300 // 128 + 1


def test_equal_counts_do_not_flap():
    team = ThreadTeam(2)
    drive(team, lambda k: 1e-3 * (1 + 0.005 * (k == 1)), 400)
    assert team.state()["switches"] == 0


def test_climbs_to_the_best_count_of_a_bigger_machine():
    # 8 threads allowed; a step costs 8/k + 0.5 k (best at 4 threads)
    team = ThreadTeam(8)
    counts = drive(team, lambda k: (8.0 / k + 0.5 * k) * 1e-4, 400)
    assert team.state()["threads"] == 4
    assert counts[-100:].count(4) >= 90
    assert set(counts) <= set(range(1, 9))


@pytest.mark.parametrize("max_threads, adaptive", [(1, True), (4, False)])
def test_a_pinned_team_never_moves(max_threads, adaptive):
    team = ThreadTeam(max_threads, adaptive)
    counts = drive(team, lambda k: 1e-3 * k, 200)
    assert set(counts) == {max_threads}
    state = team.state()
    assert state["probes"] == 0 and not team.probing
    assert state["adaptive"] is (max_threads > 1 and adaptive)


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan")])
def test_window_time_must_be_positive(bad):
    with pytest.raises(ValueError, match="seconds_per_step"):
        ThreadTeam(2).window(bad)


def test_set_adaptive_threads_is_checked_and_reported(cpu_threads):
    with pytest.raises(ValueError, match="True or False"):
        cpu_threads.set_adaptive_threads(1)
    cpu_threads.set_adaptive_threads(False)
    assert cpu_threads.get_adaptive_threads() is False
    assert cpu_threads.info()["adaptive_threads"] is False
    cpu_threads.set_adaptive_threads(True)
    assert cpu_threads.info()["adaptive_threads"] is True


def test_forward_kernels_follow_the_training_loops_measurement(cpu_threads, monkeypatch):
    """Evaluations between training runs (and predict right after) run their
    forward kernels on the count the training loop measured fastest while
    that measurement is fresh; never more than set_num_threads."""
    from fastnet._cpu import threads
    from fastnet import Network, FullyConnectedLayer, SoftmaxLayer
    import contextlib
    import io
    import numpy as np
    monkeypatch.setattr(threads, "measured", {"threads": None, "at": 0.0})
    cpu_threads.set_num_threads(3)
    cpu_threads.set_adaptive_threads(True)
    assert threads.for_inference() == 3
    threads.note_measured(1)
    assert threads.for_inference() == 1
    cpu_threads.set_adaptive_threads(False)
    assert threads.for_inference() == 3
    cpu_threads.set_adaptive_threads(True)
    threads.note_measured(5)                 # more than allowed: the user's count
    assert threads.for_inference() == 3
    threads.note_measured(1)
    monkeypatch.setattr(threads, "MEASURED_FRESH_S", 0.0)
    assert threads.for_inference() == 3      # stale
    monkeypatch.setattr(threads, "MEASURED_FRESH_S", 5.0)
    # a training run records what its team measured
    np.random.seed(2)
    net = Network([FullyConnectedLayer(6, 5), SoftmaxLayer(5, 3)], 4, engine="cpu")
    x = np.random.rand(16, 6).astype(net.dtype)
    y = (np.arange(16) % 3).astype(np.int32)
    with contextlib.redirect_stdout(io.StringIO()):
        net.SGD((x, y), 1, 4, 0.1, (x, y), (x, y))
    assert threads.measured["threads"] == net.thread_team()["threads"]


def test_train_batch_steps_have_a_team_too(cpu_threads):
    """Network.train_batch (fastnet.keras's fit) runs its kernels one by one
    from Python; a StepTeam times those steps with the same controller and
    sets their kernels' count for the calling thread only.  With a window of
    one step it probes all the time, and the weights are bitwise those of
    every step on all 3 threads (the 20 x 48 x 300 products are cut into
    3 blocks either way: gemm_parallel)."""
    import numpy as np
    from fastnet import Network, FullyConnectedLayer, SoftmaxLayer, ConvPoolLayer, ReLU
    from fastnet._cpu import threads
    from fastnet.optim import Adam

    def run(n, adaptive):
        cpu_threads.set_num_threads(n)
        cpu_threads.set_adaptive_threads(adaptive)
        cpu_threads.team_window_s = 1e-9
        np.random.seed(5)
        net = Network([ConvPoolLayer((3, 1, 5, 5), (20, 1, 12, 12), activation_fn=ReLU),
                       FullyConnectedLayer(3 * 4 * 4, 300, activation_fn=ReLU, p_dropout=0.2),
                       SoftmaxLayer(300, 10)], 20, engine="cpu")
        rs = np.random.RandomState(0)
        x = rs.rand(200, 144).astype(net.dtype)
        y = rs.randint(0, 10, 200).astype(np.int32)
        opt = Adam(lr=1e-3)
        losses = [net.train_batch(x[i:i + 20], y[i:i + 20], optimizer=opt)
                  for i in range(0, 200, 20) for _ in range(3)]
        return net, losses, [p.get_value() for p in net.params]

    fixed_net, fixed_losses, fixed = run(3, False)
    team_net, team_losses, moved = run(3, True)
    team = team_net.thread_team()
    # 30 steps, a window each: probes at windows 3 and 12 at least
    assert team["adaptive"] and team["max_threads"] == 3 and team["probes"] >= 2, team
    assert fixed_net.thread_team() is None          # pinned: no team
    assert team_losses == fixed_losses
    for i, (a, b) in enumerate(zip(fixed, moved)):
        assert np.array_equal(a, b), "param %d: step team vs pinned" % i
    assert not threads.step_running()               # set only while a step runs
    assert threads.for_step() == 3


def test_step_team_sets_the_count_for_its_own_thread_only(cpu_threads):
    import threading
    from fastnet._cpu import threads
    cpu_threads.set_num_threads(2)
    cpu_threads.set_adaptive_threads(True)
    team = cpu_threads.StepTeam()
    seen = {}
    with team.step():
        inside = threads.for_step()
        t = threading.Thread(target=lambda: seen.update(other=threads.for_step()))
        t.start()
        t.join()
        with team.step():                   # nested: the running step's count
            assert threads.for_step() == inside
    assert inside in (1, 2) and seen["other"] == 2
    assert threads.for_step() == 2 and not threads.step_running()
    cpu_threads.set_adaptive_threads(False)
    with team.step():
        assert not threads.step_running()
