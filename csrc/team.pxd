# team: how many of the user's threads the compiled training loop runs a
# step on, chosen by measuring the steps themselves.
#
# Why: on free cores every thread helps (a conv step at mini-batch 10 is
# 1.7x faster on 2 threads than on 1); when another process holds a core,
# a team as big as the machine waits at every join for a thread the
# scheduler has put aside, and the step gets 2-3x slower than on one
# thread.  Small steps (the FC net at mini-batch 10) are faster on one
# thread even on free cores.  No rule known in advance gets all three
# right, so the loop measures: it runs a window of steps (~10 ms) at the
# count believed fastest, now and then one window at a neighbouring count
# (a probe), and moves when the probe is faster.  Probes back off while
# they keep confirming the choice (after 2, 8, 32, then every 128 windows:
# < 1 % of the time on free cores) and come at once when a window is much
# slower than the count's record, which is what a process taking a core
# looks like.
#
# Changing the count changes no result: every kernel of the loop splits
# its work in pieces fixed by the sizes (conv.pxd's conv_blocks,
# softmax.pxd's COST_BLOCKS) or, for BLAS products, by the program's thread
# count (blas.pxd's gemm_parallel: n_blocks), never by the team's count, so
# the weights are bitwise those of every step on all the threads
# (tests/test_trainer.py, test_adaptive_team_changes_no_result).

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef enum:
    TEAM_MAX = 256          # counts above this are not adapted (the user's count runs)
    TEAM_MIN_PERIOD = 2     # windows at the best count before the next probe,
    TEAM_MAX_PERIOD = 128   #   x4 from MIN up to MAX while probes confirm it

cdef extern from *:
    """
    /* a probe must beat the best count's record by this fraction to take
       over (no flapping between two counts that are equally fast) */
    #define FN_TEAM_MARGIN 0.02
    /* a window this much slower than its count's record probes at once */
    #define FN_TEAM_SLOWER 1.25
    /* seconds of steps per window: long against a scheduler's time slice
       on a busy machine (a few ms), short against an epoch */
    #define FN_TEAM_WINDOW_S 0.01
    """
    double TEAM_MARGIN "FN_TEAM_MARGIN"
    double TEAM_SLOWER "FN_TEAM_SLOWER"
    double TEAM_WINDOW_S "FN_TEAM_WINDOW_S"


cdef struct Team:
    int max_threads     # the user's count: never more
    int adaptive        # 0: always max_threads
    int threads         # the count the current window runs at
    int best            # the count measured fastest
    int probing         # the current window tries another count
    int direction       # the next probe: best - 1 or best + 1
    int period          # windows at best between probes
    int countdown       # windows left before the next probe
    double window_s     # a window's length in seconds
    double elapsed      # seconds of steps in the current window so far
    double t0           # when the current run of steps (re)started the clock
    long steps          # steps in the current window so far
    long windows, probes, switches   # what happened, for info
    double per_step[TEAM_MAX + 1]    # seconds per step by count; 0: not measured


cdef inline double team_clock() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + 1e-9 * <double>ts.tv_nsec


cdef inline void team_init(Team* t, int max_threads, int adaptive,
                           double window_s) noexcept nogil:
    cdef int k
    t.max_threads = max_threads if max_threads >= 1 else 1
    t.adaptive = 1 if (adaptive and 1 < t.max_threads <= TEAM_MAX) else 0
    t.threads = t.best = t.max_threads
    t.probing = 0
    t.direction = -1
    t.period = TEAM_MIN_PERIOD
    t.countdown = 1         # the first probe after the first window measured
    t.window_s = window_s if window_s > 0 else TEAM_WINDOW_S
    t.elapsed = 0
    t.t0 = 0
    t.steps = 0
    t.windows = t.probes = t.switches = 0
    for k in range(TEAM_MAX + 1):
        t.per_step[k] = 0


cdef inline void team_window(Team* t, double per_step) noexcept nogil:
    """A window at t.threads ended, at per_step seconds a step: record it
    and choose the count of the next window."""
    cdef double old
    cdef int c
    t.windows += 1
    if not t.adaptive or t.windows == 1:
        return      # the first window pays for cold caches and page faults
    if t.probing:
        t.per_step[t.threads] = per_step
        t.probing = 0
        if per_step < t.per_step[t.best] * (1 - TEAM_MARGIN):
            t.best = t.threads
            t.switches += 1
            t.period = TEAM_MIN_PERIOD      # a new regime: look around again soon
        else:
            t.direction = -t.direction
            t.period = t.period * 4 if t.period * 4 < TEAM_MAX_PERIOD else TEAM_MAX_PERIOD
        t.countdown = t.period
    else:
        old = t.per_step[t.best]
        t.per_step[t.best] = per_step if old == 0 else 0.5 * (old + per_step)
        t.countdown -= 1
        if old > 0 and per_step > old * TEAM_SLOWER and t.best > 1:
            # the machine changed: try fewer threads now (more would not
            # help a step that another process slows down)
            t.countdown = 0
            t.direction = -1
    t.threads = t.best
    if t.countdown <= 0:
        c = t.best + t.direction
        if c < 1 or c > t.max_threads:
            t.direction = -t.direction
            c = t.best + t.direction
        if 1 <= c <= t.max_threads:
            t.threads = c
            t.probing = 1
            t.probes += 1


cdef inline void team_start(Team* t) noexcept nogil:
    """A run of steps begins (time outside runs is not a step's)."""
    t.t0 = team_clock()


cdef inline void team_step_done(Team* t) noexcept nogil:
    cdef double now
    if not t.adaptive:
        return
    now = team_clock()
    t.steps += 1
    t.elapsed += now - t.t0
    t.t0 = now
    if t.elapsed >= t.window_s:
        team_window(t, t.elapsed / <double>t.steps)
        t.elapsed = 0
        t.steps = 0
