# trainer: a training step of any fastnet network, as a compiled op list.
#
# fastnet/plan.py compiles a network into op lists (kernel names and their
# arguments in the reference engine's signatures) and fuses them for this
# engine (Plan.fused_ops).  Program translates that list once into an array
# of op records -- an opcode, raw pointers to the plan's arrays, sizes --
# and Program.run interprets it for a run of mini-batches without the GIL:
# no allocation and no Python per step.  The kernels are the inline ones of
# conv.pxd, pool.pxd, dense.pxd, softmax.pxd and update.pxd, so the step is
# the same arithmetic as the ops called one by one.
#
# Opcodes (the plan's kernel names):
#   dropout_forward, dense_forward, softmax_nll (returns the cost),
#   dense_backward, dropout_backward, sgd_update (an optimizer's per-element
#   update; more optimizers add their codes to apply_update);
#   and the two fused ops:
#   conv_run_forward / conv_run_backward -- a run of conv layers, each
#     sample carried through all of them by one thread (conv, then pool +
#     bias + activation; backward in reverse), the threads meeting twice a
#     step instead of at every kernel; gradient sums per thread, added in
#     thread order (gb in double);
#   backward_update -- dense_backward followed at once by the update of that
#     layer's parameters, block of rows by block of rows for a big layer
#     (dx with the old rows, then their gradient and update while they are
#     in cache), so w crosses from memory once in the backward pass.
# Augmentation (fastnet/augment.py): when the run is given a transform
# table, each step's rows are first distorted into a buffer of the program
# (augment.pxd's kernel, parallel over samples, keyed by the step's counter
# like dropout) and the step trains on that buffer.
# Per-step arguments: an array argument may be the step's input rows
# (rows_mask), the labels are the step's, the dropout counter is
# counter0 + (i - first), and each hyper-parameter is an index into the
# run's hyper array (update records).
#
# Arguments are checked by the Python side (fastnet/engines/cpu.py) before
# Program.run is called; run itself checks only what memory safety needs.

from libc.stdint cimport int32_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from cython.parallel cimport prange, threadid
cimport numpy as cnp

from common cimport floating, LINEAR
from blas cimport gemm_parallel
from common cimport scale_by_activation_grad
from conv cimport (conv_forward_sample, conv_backward_sample, conv_dw_reduce, conv_blocks,
                   CONV_BLOCKS,
                   conv_sample_workspace, conv_dw_size, padded_positions)
from pool cimport pool_forward_plane, pool_backward_plane
from common cimport padded
from dense cimport (dense_forward_kernel, dense_backward_kernel,
                    dropout_forward_kernel, dropout_backward_kernel, dense_threads,
                    dense_streams, dense_backward_rows, DENSE_ROW_BLOCK)
from softmax cimport softmax_nll_kernel, sigmoid_bce_kernel, mse_kernel
from update cimport optimizer_update
from augment cimport augment_kernel, AUG_PIXELS, AUG_SCRATCH, AUG_WIDTH, AUG_MAX_OPS
from team cimport (Team, team_init, team_start, team_step_done, team_window,
                  TEAM_MAX, TEAM_WINDOW_S)

cnp.import_array()

cdef enum:
    # bytes of patches a conv layer may keep from forward to backward: within
    # L2 they save the backward its im2col (+1.5 % at mini-batch 10); a
    # mini-batch of 128 keeps 16 MB, which measured 8 % slower than redoing it
    KEEP_COLS_MAX = 2 << 20

cdef enum:
    OP_DROPOUT_FORWARD = 1
    OP_DENSE_FORWARD = 2
    OP_SOFTMAX_NLL = 3
    OP_DENSE_BACKWARD = 4
    OP_DROPOUT_BACKWARD = 5
    OP_UPDATE = 6
    OP_BACKWARD_UPDATE = 7
    OP_CONV_RUN_FORWARD = 8
    OP_CONV_RUN_BACKWARD = 9
    OP_SIGMOID_BCE = 10
    OP_MSE_LOSS = 11


OPCODES = {"dropout_forward": OP_DROPOUT_FORWARD, "dense_forward": OP_DENSE_FORWARD,
           "softmax_nll": OP_SOFTMAX_NLL, "dense_backward": OP_DENSE_BACKWARD,
           "dropout_backward": OP_DROPOUT_BACKWARD, "backward_update": OP_BACKWARD_UPDATE,
           "conv_run_forward": OP_CONV_RUN_FORWARD,
           "conv_run_backward": OP_CONV_RUN_BACKWARD, "sigmoid_bce": OP_SIGMOID_BCE,
           "mse_loss": OP_MSE_LOSS}
# the optimizers' kernels (update.pxd), by name: update.pyx's table
from fastnet._cpu.update import OPTIMIZERS

DEF MAX_ARGS = 8
DEF MAX_STATE = 4
DEF MAX_HYPER = 8


cdef struct Rec:
    int code
    int act
    int rows_mask       # bit k: argument k is the step's input rows
    void* a[MAX_ARGS]   # array arguments, NULL for None
    Py_ssize_t nrow, nin, nout  # dense: rows, inputs, outputs; update: nout elements
    double scale
    uint64_t seed, threshold
    int first, last     # conv runs: layers of the program's conv table;
                        # backward_update: its update records
    # update records
    int opt
    int n_state
    int n_hyper
    int hyper[MAX_HYPER]


cdef struct ConvLayer:
    int act
    int need_dx
    # input (C, H, W), F filters KH x KW, conv output (CH, CW), pool ph x pw
    Py_ssize_t C, H, W, F, KH, KW, CH, CW, ph, pw
    Py_ssize_t NI, NO   # per sample: I = C*H*W inputs, O = F*PH*PW outputs
    void* x             # the input, or NULL: the step's rows
    void* w
    void* b
    void* gw
    void* gb
    void* conv_out      # (N, F, CH, CW)
    void* dconv         # (N, F, CH, CW)
    void* out           # (N, O)
    void* dout          # (N, O): gradient w.r.t. out (overwritten)
    void* dx            # (N, I), or NULL
    # the gradients' partial sums, one per block of samples (conv.pxd's
    # CONV_BLOCKS); threads up to max_threads (scratch)
    int max_threads
    Py_ssize_t acc_size # elements of one block's weight-gradient partial sum
    void* accs          # (CONV_BLOCKS, acc_size)
    double* gbpart      # (CONV_BLOCKS, F)
    void* cols          # (N, cols_size): each sample's patches from forward
    Py_ssize_t cols_size  # to backward, or NULL (the backward redoes them)


# ---------------------------------------------------------------------------
# runs of conv layers, sample by sample
# ---------------------------------------------------------------------------
# The arithmetic is conv.pxd's and pool.pxd's per-sample kernels; gradient
# sums are per block of samples (conv_blocks: fixed by the batch size), then
# added in block order (conv_dw_reduce; gb in double), so the result does
# not depend on the thread count.

cdef inline int run_threads(int T, Py_ssize_t N, int max_threads) noexcept nogil:
    if T > N:
        T = <int>N
    if T > max_threads:
        T = max_threads
    return T if T >= 1 else 1


cdef void conv_run_forward(ConvLayer* L, int first, int last, const floating* xb,
                           Py_ssize_t N, floating* work, Py_ssize_t per,
                           int T) noexcept nogil:
    """Layers first..last-1 (all conv) on the mini-batch xb (N, L[first].NI)."""
    cdef Py_ssize_t n, n0, n1, f, PHW
    cdef const floating* xin
    cdef floating* conv_n
    cdef ConvLayer* s
    cdef int t, i
    T = run_threads(T, N, L[first].max_threads)
    for t in prange(T, num_threads=T, schedule='static'):
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for n in range(n0, n1):
            xin = xb + n * L[first].NI
            for i in range(first, last):
                s = &L[i]
                PHW = (s.CH // s.ph) * (s.CW // s.pw)
                conv_n = <floating*>s.conv_out + n * s.F * s.CH * s.CW
                conv_forward_sample(xin, <floating*>s.w, conv_n, work + t * per,
                                    (<floating*>s.cols + n * s.cols_size)
                                    if s.cols != NULL else NULL,
                                    s.C, s.H, s.W, s.F, s.KH, s.KW)
                for f in range(s.F):
                    pool_forward_plane(conv_n + f * s.CH * s.CW,
                                       <floating*>s.out + (n * s.F + f) * PHW,
                                       (<floating*>s.b)[f], s.act, s.ph, s.pw, s.CH, s.CW)
                xin = <floating*>s.out + n * s.NO


cdef void conv_run_backward(ConvLayer* L, int first, int last, const floating* xb,
                            Py_ssize_t N, floating* work, Py_ssize_t per,
                            int T) noexcept nogil:
    """Gradients of conv_run_forward: gw, gb of every layer of the run, and
    dx of those that need it.  Each layer's dout (N, O) is overwritten."""
    cdef Py_ssize_t n, n0, n1, f, PHW, CHW
    cdef const floating* xin
    cdef floating* conv_n
    cdef floating* dconv_n
    cdef double* gbp
    cdef ConvLayer* s
    cdef int i
    cdef Py_ssize_t b, u, B = conv_blocks(N)
    cdef double sb
    T = run_threads(T, B, L[first].max_threads)
    for b in prange(B, num_threads=T, schedule='static'):
        n0 = b * N // B
        n1 = (b + 1) * N // B
        for i in range(first, last):
            for f in range(L[i].F):
                L[i].gbpart[b * L[i].F + f] = 0
        for n in range(n0, n1):
            for i in range(last - 1, first - 1, -1):
                s = &L[i]
                PHW = (s.CH // s.ph) * (s.CW // s.pw)
                CHW = s.CH * s.CW
                xin = (xb + n * s.NI) if i == first else (<floating*>L[i - 1].out + n * s.NI)
                conv_n = <floating*>s.conv_out + n * s.F * CHW
                dconv_n = <floating*>s.dconv + n * s.F * CHW
                gbp = s.gbpart + b * s.F
                # max-pool gradient to every tied maximum; gb partial sums
                for f in range(s.F):
                    gbp[f] = gbp[f] + pool_backward_plane(
                        conv_n + f * CHW, <floating*>s.out + (n * s.F + f) * PHW,
                        <floating*>s.dout + (n * s.F + f) * PHW, dconv_n + f * CHW,
                        s.act, s.ph, s.pw, s.CH, s.CW)
                conv_backward_sample(xin, <floating*>s.w, dconv_n,
                                     <floating*>s.accs + b * s.acc_size, n > n0,
                                     (<floating*>s.dx + n * s.NI) if s.need_dx else NULL,
                                     work + threadid() * per,
                                     (<floating*>s.cols + n * s.cols_size)
                                     if s.cols != NULL else NULL,
                                     s.C, s.H, s.W, s.F, s.KH, s.KW)
    for i in range(first, last):
        s = &L[i]
        conv_dw_reduce(<floating*>s.gw, <floating*>s.accs, s.acc_size, B, s.F,
                       s.C * s.KH * s.KW)
        for f in range(s.F):
            sb = 0
            for u in range(B):
                sb = sb + s.gbpart[u * s.F + f]
            (<floating*>s.gb)[f] = <floating>sb



# Every parallel region is a fork and a join; on 2 cores a join waits for a
# whole time slice when another process holds the other core.  Small
# products (dense.pxd's dense_threads) and updates therefore run on the
# calling thread.
cdef inline int update_threads(int T, Py_ssize_t n) noexcept nogil:
    return T if n >= (1 << 18) else 1


cdef enum:
    # dense layers with at least this many weights take the blocked backward
    # pass (dense.pxd's DENSE_ROW_BLOCK rows of w and of its gradient stay in
    # L2 together); a few rows through a big layer always do (dense_streams)
    BLOCKED_MIN = 1 << 18


cdef inline void* arg(Rec* r, int k, void* rows) noexcept nogil:
    return rows if (r.rows_mask >> k) & 1 else r.a[k]


cdef void apply_update(Rec* u, floating* param, Py_ssize_t off, Py_ssize_t n,
                       const double* hyper, int T) noexcept nogil:
    """An optimizer's per-element update of elements off..off+n-1 of the
    record's parameter (``param``, its a[0]), gradient and state arrays."""
    cdef double h[MAX_HYPER]
    cdef int k
    for k in range(u.n_hyper):
        h[k] = hyper[u.hyper[k]]
    optimizer_update(u.opt, param + off, <floating*>u.a[1] + off,
                     <floating*>u.a[2] + off if u.n_state > 0 else NULL,
                     <floating*>u.a[3] + off if u.n_state > 1 else NULL, n, h, T)


cdef void backward_update(Rec* r, floating* w, Rec* upd, void* rows,
                          const double* hyper, int P, int T) noexcept nogil:
    """dense_backward (r) and the update of its parameters (upd[r.first],
    the weights, and upd[r.first + 1], the biases) in one pass:
    dz = dout * act'(out);  dx = dz @ w.T (with the old w);  gw = x.T @ dz,
    gb = sum_n dz (in double); then the update, while w and gw are in cache."""
    cdef Py_ssize_t n, o, I = r.nin, O = r.nout, N = r.nrow, nb, k, i0, ib
    cdef floating* x = <floating*>arg(r, 0, rows)
    cdef floating* out = <floating*>r.a[2]
    cdef floating* dout = <floating*>r.a[3]
    cdef floating* gw = <floating*>r.a[4]
    cdef floating* gb = <floating*>r.a[5]
    cdef floating* dx = <floating*>r.a[6]
    cdef Rec* uw = &upd[r.first]
    cdef Rec* ub = &upd[r.first + 1]
    cdef double acc
    if r.act != LINEAR:
        scale_by_activation_grad(dout, out, N * O, r.act)
    for o in range(O):
        acc = 0
        for n in range(N):
            acc = acc + dout[n * O + o]
        gb[o] = <floating>acc
    if dense_streams(N, I, O) or I * O >= BLOCKED_MIN:
        # a big layer: block of rows of w by block of rows -- dx with the
        # old rows, then their gradient and update while they are in cache
        nb = (I + DENSE_ROW_BLOCK - 1) // DENSE_ROW_BLOCK
        for k in prange(nb, num_threads=T if T < nb else <int>nb, schedule='static'):
            i0 = k * DENSE_ROW_BLOCK
            ib = I - i0 if I - i0 < DENSE_ROW_BLOCK else DENSE_ROW_BLOCK
            dense_backward_rows(x, w, dout, gw, dx, i0, ib, N, I, O)
            apply_update(uw, w, i0 * O, ib * O, hyper, 1)
        apply_update(ub, <floating*>ub.a[0], 0, O, hyper, 1)
        return
    if dx != NULL:
        # dx = dz @ w.T:  column-major (I x N) = w.T (I x O) @ dz (O x N)
        gemm_parallel(c'T', c'N', <int>I, <int>N, <int>O, <floating>1,
                      w, <int>O, dout, <int>O, <floating>0, dx, <int>I, P, T)
    # gw = x.T @ dz:  column-major (O x I) = dz (O x N) @ x.T (N x I)
    gemm_parallel(c'N', c'T', <int>O, <int>I, <int>N, <floating>1, dout, <int>O,
                  x, <int>I, <floating>0, gw, <int>O, P, T)
    # a product big enough for threads: so is its update
    apply_update(uw, w, 0, I * O, hyper, T if T > 1 else 1)
    apply_update(ub, <floating*>ub.a[0], 0, O, hyper, 1)


cdef void run_step(Rec* ops, int n_ops, ConvLayer* conv, Rec* upd, const floating* xb,
                   const void* yb, uint64_t counter, const double* hyper,
                   floating* work, Py_ssize_t per, int P, int T,
                   double* cost) noexcept nogil:
    """One training step: the program's records in order, on the mini-batch
    xb (N, n_in) with labels yb (N,) int32 or targets (N, K) floating, on T
    threads; BLAS products cut into P blocks (gemm_parallel), P the
    program's thread count whatever T the team chose."""
    cdef int k
    cdef Rec* r
    cdef void* rows = <void*>xb
    cdef const floating* xin
    for k in range(n_ops):
        r = &ops[k]
        if r.code == OP_CONV_RUN_FORWARD:
            xin = <floating*>(rows if conv[r.first].x == NULL else conv[r.first].x)
            conv_run_forward(conv, r.first, r.last, xin, r.nrow, work, per, T)
        elif r.code == OP_CONV_RUN_BACKWARD:
            xin = <floating*>(rows if conv[r.first].x == NULL else conv[r.first].x)
            conv_run_backward(conv, r.first, r.last, xin, r.nrow, work, per, T)
        elif r.code == OP_DROPOUT_FORWARD:
            dropout_forward_kernel(<floating*>arg(r, 0, rows), r.threshold, r.seed,
                                   counter, <uint8_t*>r.a[1], <floating*>r.a[2],
                                   r.nrow * r.nin, T)
        elif r.code == OP_DENSE_FORWARD:
            dense_forward_kernel(<floating*>arg(r, 0, rows), <floating*>r.a[1],
                                 <floating*>r.a[2], r.act, <floating>r.scale,
                                 <floating*>r.a[3], r.nrow, r.nin, r.nout,
                                 dense_threads(P, r.nrow, r.nin, r.nout),
                                 dense_threads(T, r.nrow, r.nin, r.nout))
        elif r.code == OP_SOFTMAX_NLL:
            cost[0] = softmax_nll_kernel(<floating*>r.a[0], <const int32_t*>yb,
                                         <floating*>r.a[1], <floating*>r.a[2], r.nrow,
                                         r.nout, T)
        elif r.code == OP_SIGMOID_BCE:
            cost[0] = sigmoid_bce_kernel(<floating*>r.a[0], <const floating*>yb,
                                         <floating*>r.a[1], <floating*>r.a[2],
                                         r.nrow * r.nout)
        elif r.code == OP_MSE_LOSS:
            cost[0] = mse_kernel(<floating*>r.a[0], <const floating*>yb,
                                 <floating*>r.a[1], r.nrow * r.nout)
        elif r.code == OP_DENSE_BACKWARD:
            dense_backward_kernel(<floating*>arg(r, 0, rows), <floating*>r.a[1],
                                  <floating*>r.a[2], <floating*>r.a[3], r.act,
                                  <floating*>r.a[4], <floating*>r.a[5],
                                  <floating*>r.a[6], r.nrow, r.nin, r.nout,
                                  dense_threads(P, r.nrow, r.nin, r.nout),
                                  dense_threads(T, r.nrow, r.nin, r.nout))
        elif r.code == OP_BACKWARD_UPDATE:
            backward_update(r, <floating*>r.a[1], upd, rows, hyper,
                            dense_threads(P, r.nrow, r.nin, r.nout),
                            dense_threads(T, r.nrow, r.nin, r.nout))
        elif r.code == OP_DROPOUT_BACKWARD:
            dropout_backward_kernel(<floating*>r.a[0], <uint8_t*>r.a[1],
                                    <floating*>r.a[2], r.nrow * r.nin, T)
        elif r.code == OP_UPDATE:
            apply_update(&upd[r.first], <floating*>upd[r.first].a[0], 0, upd[r.first].nout,
                         hyper, update_threads(T, upd[r.first].nout))


cdef void run_steps(Rec* ops, int n_ops, ConvLayer* conv, Rec* upd, const floating* x,
                    const char* y, Py_ssize_t y_row, Py_ssize_t N, Py_ssize_t n_in,
                    Py_ssize_t first,
                    Py_ssize_t stop, uint64_t counter0, double* hyper, int step_slot,
                    floating* work, Py_ssize_t per, Team* team, double* cost,
                    const double* aug_table, int aug_n, uint64_t aug_seed,
                    floating* aug_buf, double* aug_scratch) noexcept nogil:
    """Steps first..stop-1, each on team.threads threads (team.pxd);
    hyper[step_slot] (if >= 0) is the optimizer's step number t of step
    ``first``, counted up step by step.  With aug_n transforms (aug_table),
    each step trains on its rows distorted into aug_buf (N, n_in = 784)."""
    cdef Py_ssize_t i
    cdef double t0 = hyper[step_slot] if step_slot >= 0 else 0
    cdef const floating* xb
    cdef uint64_t counter
    cdef int T
    team_start(team)
    for i in range(first, stop):
        T = team.threads
        if step_slot >= 0:
            hyper[step_slot] = t0 + <double>(i - first)
        xb = x + i * N * n_in
        counter = counter0 + <uint64_t>(i - first)
        if aug_n > 0:
            augment_kernel(xb, aug_buf, N, aug_table, aug_n, aug_seed, counter,
                           aug_scratch, T)
            xb = aug_buf
        run_step(ops, n_ops, conv, upd, xb, y + i * N * y_row, counter, hyper, work,
                 per, team.max_threads, T, cost)
        team_step_done(team)


cdef inline void* ptr(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


class _Rows(object):
    """Stands for the step's input rows while a program is built."""


cdef class Program:
    """A plan's fused op list as op records, with the buffers the fusions
    need (per-thread sums, kept patches).  Built by fastnet.engines.cpu
    (compile_program); ``run`` trains a run of mini-batches."""
    cdef Rec* ops
    cdef int n_ops
    cdef Rec* upd
    cdef int n_upd
    cdef ConvLayer* conv
    cdef int n_conv
    cdef readonly Py_ssize_t mbs, n_in, n_classes
    cdef readonly int typenum, n_threads
    cdef readonly object dtype
    cdef readonly list arrays          # keeps every buffer alive
    cdef readonly list hyper_names     # the run's hyper array, by index
    cdef readonly object workspace
    cdef readonly Py_ssize_t conv_per   # conv scratch elements per thread
    cdef readonly double last_cost
    cdef readonly list opcodes         # the records' kernel names, in order
    cdef readonly Py_ssize_t target_width  # 0: int32 labels; K: float targets (N, K)
    cdef readonly object aug_buffer    # (mbs, 784): a step's distorted rows
    cdef readonly object aug_scratch   # per-thread scratch of the augment kernel
    cdef Team _team                    # how many of the n_threads a step runs on

    def __cinit__(self):
        self.ops = NULL
        self.upd = NULL
        self.conv = NULL

    def __dealloc__(self):
        free(self.ops)
        free(self.upd)
        free(self.conv)

    def __init__(self, list ops, Py_ssize_t mbs, Py_ssize_t n_in, Py_ssize_t n_classes,
                 dtype, int n_threads, object is_token, object keep_threshold,
                 bint adaptive=True, window_s=None):
        """ops: the fused op list (fastnet.plan.Op); is_token(a, name) tells
        a per-step token; keep_threshold(p) the dropout threshold; adaptive:
        each step runs on the count of threads (<= n_threads) measured
        fastest (team.pxd), else on n_threads; window_s: the team's window
        in seconds (None: TEAM_WINDOW_S)."""
        import numpy as np
        self.dtype = np.dtype(dtype)
        if self.dtype == np.float32:
            self.typenum = cnp.NPY_FLOAT32
        elif self.dtype == np.float64:
            self.typenum = cnp.NPY_FLOAT64
        else:
            raise ValueError("Program: dtype must be float32 or float64, got %s" % self.dtype)
        self.mbs, self.n_in, self.n_classes = mbs, n_in, n_classes
        self.n_threads = n_threads if n_threads >= 1 else 1
        team_init(&self._team, self.n_threads, adaptive,
                  TEAM_WINDOW_S if window_s is None else float(window_s))
        self.arrays = []
        self.hyper_names = []
        self.opcodes = []
        self.last_cost = float("nan")
        self.target_width = -1
        self._is_token = is_token
        self._keep_threshold = keep_threshold
        n_updates = 0
        n_convs = 0
        for op in ops:
            if op.kernel in OPTIMIZERS:
                n_updates += 1
            elif op.kernel == "backward_update":
                n_updates += len(op.args) - 1
            elif op.kernel == "conv_run_forward":
                n_convs += len(op.args)
        self.ops = <Rec*>calloc(max(len(ops), 1), sizeof(Rec))
        self.upd = <Rec*>calloc(max(n_updates, 1), sizeof(Rec))
        self.conv = <ConvLayer*>calloc(max(n_convs, 1), sizeof(ConvLayer))
        if self.ops == NULL or self.upd == NULL or self.conv == NULL:
            raise MemoryError()
        self.n_ops = self.n_upd = self.n_conv = 0
        self._conv_by_w = {}
        cdef Py_ssize_t ws = 0
        for op in ops:
            ws = max(ws, self._add(op))
        self.conv_per = ws
        self.workspace = np.zeros(max(ws * self.n_threads, 1), dtype=self.dtype)

    cdef object _is_token
    cdef object _keep_threshold
    cdef dict _conv_by_w

    cdef void* _array(self, Rec* r, int k, object a, object want=None) except? NULL:
        import numpy as np
        if a is None:
            r.a[k] = NULL
            return NULL
        if self._is_token(a, "rows"):
            r.rows_mask |= 1 << k
            r.a[k] = NULL
            return NULL
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
            raise ValueError("Program: argument %d of a %s op must be a C-contiguous "
                             "ndarray" % (k, self.opcodes[len(self.opcodes) - 1] if self.opcodes else "?"))
        if a.dtype != (self.dtype if want is None else want):
            raise ValueError("Program: argument %d has dtype %s, expected %s"
                             % (k, a.dtype, self.dtype if want is None else want))
        self.arrays.append(a)
        r.a[k] = ptr(a)
        return r.a[k]

    cdef int _hyper(self, object token) except -1:
        if not self._is_token(token, "hyper"):
            raise ValueError("Program: an update's hyper-parameter must be a Hyper token")
        if token.name not in self.hyper_names:
            self.hyper_names.append(token.name)
        if len(self.hyper_names) > MAX_HYPER:
            raise ValueError("Program: more than %d hyper-parameters" % MAX_HYPER)
        return self.hyper_names.index(token.name)

    cdef int _update(self, object op) except -1:
        """An optimizer op as an update record; returns its index."""
        cdef Rec* u = &self.upd[self.n_upd]
        code, n_state, n_hyper = OPTIMIZERS[op.kernel]
        if len(op.args) != 2 + n_state + n_hyper:
            raise ValueError("Program: %s takes %d arguments, got %d"
                             % (op.kernel, 2 + n_state + n_hyper, len(op.args)))
        u.opt = code
        u.n_state = n_state
        for k in range(2 + n_state):
            self._array(u, k, op.args[k])
        u.nout = op.args[0].size
        u.n_hyper = n_hyper
        for k in range(n_hyper):
            u.hyper[k] = self._hyper(op.args[2 + n_state + k])
        self.n_upd += 1
        return self.n_upd - 1

    cdef int _targets(self, Py_ssize_t width, str name) except -1:
        """The step's labels: int32 labels (width 0) or float targets of
        ``width`` columns -- one kind per program."""
        if self.target_width >= 0 and self.target_width != width:
            raise ValueError("Program: two cost ops disagree on the targets (%s)" % name)
        self.target_width = width
        return 0

    cdef void _dense(self, Rec* r, object x, object w):
        r.nrow = x.shape[0]
        r.nin, r.nout = w.shape[0], w.shape[1]

    cdef Py_ssize_t _add(self, object op) except -1:
        """Translate one op; returns the conv scratch it needs per thread."""
        import numpy as np
        cdef Rec* r
        cdef ConvLayer* s
        cdef Py_ssize_t ws = 0, need
        name = op.kernel
        if name in OPTIMIZERS:
            r = &self.ops[self.n_ops]
            r.code = OP_UPDATE
            r.first = self._update(op)
            self.n_ops += 1
            self.opcodes.append(name)
            return 0
        if name not in OPCODES:
            raise ValueError("Program: no compiled kernel for op %r" % (name,))
        r = &self.ops[self.n_ops]
        r.code = OPCODES[name]
        self.opcodes.append(name)
        a = op.args
        if name == "dropout_forward":       # (x, p, seed, counter, mask, out)
            self._array(r, 0, a[0]); self._array(r, 1, a[4], np.uint8)
            self._array(r, 2, a[5])
            r.nrow, r.nin = a[5].shape[0], a[5].size // a[5].shape[0]
            r.seed = <uint64_t>(int(a[2]) % (1 << 64))
            r.threshold = <uint64_t>int(self._keep_threshold(a[1]))
        elif name == "dense_forward":       # (x, w, b, act, scale, out)
            self._array(r, 0, a[0]); self._array(r, 1, a[1]); self._array(r, 2, a[2])
            self._array(r, 3, a[5])
            r.act, r.scale = a[3], a[4]
            self._dense(r, a[5], a[1])
        elif name == "softmax_nll":         # (logits, labels, probs, dlogits)
            self._array(r, 0, a[0]); self._array(r, 1, a[2]); self._array(r, 2, a[3])
            r.nrow, r.nout = a[0].shape[0], a[0].shape[1]
            self._targets(0, name)
        elif name == "sigmoid_bce":         # (logits, targets, probs, dlogits)
            self._array(r, 0, a[0]); self._array(r, 1, a[2]); self._array(r, 2, a[3])
            r.nrow, r.nout = a[0].shape[0], a[0].shape[1]
            self._targets(r.nout, name)
        elif name == "mse_loss":            # (out, targets, dout)
            self._array(r, 0, a[0]); self._array(r, 1, a[2])
            r.nrow, r.nout = a[0].shape[0], a[0].shape[1]
            self._targets(r.nout, name)
        elif name == "dense_backward":      # (x, w, out, dout, act, dw, db, dx)
            self._dense_backward(r, a)
        elif name == "dropout_backward":    # (dout, mask, dx)
            self._array(r, 0, a[0]); self._array(r, 1, a[1], np.uint8)
            self._array(r, 2, a[2])
            r.nrow, r.nin = a[0].shape[0], a[0].size // a[0].shape[0]
        elif name == "backward_update":     # (dense_backward op, update w, update b)
            if len(a) != 3 or a[0].kernel != "dense_backward":
                raise ValueError("Program: backward_update takes a dense_backward op "
                                 "and the two updates of its parameters")
            self._dense_backward(r, a[0].args)
            r.first = self._update(a[1])
            self._update(a[2])
        elif name == "conv_run_forward":
            r.first = self.n_conv
            for layer_ops in a:
                ws = max(ws, self._conv_forward(layer_ops))
            r.last = self.n_conv
            r.nrow = self.mbs
        elif name == "conv_run_backward":
            r.first, r.last = self._conv_backward(a)
            r.nrow = self.mbs
        self.n_ops += 1
        return ws

    cdef void _dense_backward(self, Rec* r, tuple a) except *:
        self._array(r, 0, a[0]); self._array(r, 1, a[1]); self._array(r, 2, a[2])
        self._array(r, 3, a[3]); self._array(r, 4, a[5]); self._array(r, 5, a[6])
        self._array(r, 6, a[7])
        r.act = a[4]
        self._dense(r, a[2], a[1])

    cdef Py_ssize_t _conv_forward(self, list layer_ops) except -1:
        """[conv_forward(x, w, conv_out), pool_forward(conv_out, b, act,
        poolsize, out)] as a conv table entry."""
        import numpy as np
        cf, pf = layer_ops
        x, w, conv_out = cf.args
        _, b, act, poolsize, out = pf.args
        cdef ConvLayer* s = &self.conv[self.n_conv]
        s.F, s.C, s.KH, s.KW = w.shape
        s.H, s.W = x.shape[2], x.shape[3]
        s.CH, s.CW = conv_out.shape[2], conv_out.shape[3]
        s.ph, s.pw = poolsize
        s.act = act
        s.NI = s.C * s.H * s.W
        s.NO = out.size // out.shape[0]
        s.x = NULL if self._is_token(x, "rows") else self._keep(x)
        s.w, s.b = self._keep(w), self._keep(b)
        s.conv_out, s.out = self._keep(conv_out), self._keep(out)
        self._conv_by_w[<size_t>s.w] = self.n_conv
        s.max_threads = self.n_threads
        s.acc_size = padded(conv_dw_size(s.F, s.C * s.KH * s.KW))
        accs = np.zeros(CONV_BLOCKS * s.acc_size, self.dtype)
        gbpart = np.zeros(CONV_BLOCKS * s.F, np.float64)
        self.arrays += [accs, gbpart]
        s.accs = ptr(accs)
        s.gbpart = <double*>ptr(gbpart)
        # the patches of every sample, kept from forward to backward while
        # they fit KEEP_COLS_MAX bytes per layer
        s.cols_size = padded(s.C * s.KH * s.KW * padded_positions(s.CH * s.CW))
        if self.mbs * s.cols_size * self.dtype.itemsize <= KEEP_COLS_MAX:
            cols = np.zeros(self.mbs * s.cols_size, self.dtype)
            self.arrays.append(cols)
            s.cols = ptr(cols)
        self.n_conv += 1
        return max(conv_sample_workspace(s.C, s.H, s.W, s.F, s.KH, s.KW, False, False),
                   conv_sample_workspace(s.C, s.H, s.W, s.F, s.KH, s.KW, True, True))

    cdef tuple _conv_backward(self, tuple runs):
        """[pool_backward(conv_out, out, dout, act, poolsize, dconv, gb),
        conv_backward(x, w, dconv, gw, dx)] per layer, first layer first:
        completes the entries of the matching conv_run_forward."""
        cdef ConvLayer* s
        idx = []
        for pb, cb in runs:
            x, w, dconv, gw, dx = cb.args
            key = <size_t>ptr(w)
            if key not in self._conv_by_w:
                raise ValueError("Program: conv_run_backward of a layer no "
                                 "conv_run_forward ran")
            i = self._conv_by_w[key]
            idx.append(i)
            s = &self.conv[<int>i]
            s.dout = self._keep(pb.args[2])
            s.dconv = self._keep(dconv)
            s.gb = self._keep(pb.args[6])
            s.gw = self._keep(gw)
            s.dx = self._keep(dx) if dx is not None else NULL
            s.need_dx = dx is not None
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise ValueError("Program: conv_run_backward's layers are not one run")
        return idx[0], idx[len(idx) - 1] + 1

    cdef void* _keep(self, object a) except NULL:
        import numpy as np
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.dtype != self.dtype:
            raise ValueError("Program: a conv layer's arrays must be C-contiguous %s "
                             "ndarrays" % self.dtype)
        self.arrays.append(a)
        return ptr(a)

    def run(self, cnp.ndarray x, cnp.ndarray y, Py_ssize_t first, Py_ssize_t stop,
            hyper, uint64_t counter0, cnp.ndarray aug_table=None, uint64_t aug_seed=0):
        """Train mini-batches first..stop-1 (arguments checked by the caller;
        re-checked here only as far as memory safety needs); ``hyper`` maps
        every name of ``hyper_names`` to its value; ``aug_table`` (float64
        (n, AUG_WIDTH), fastnet.augment's table) distorts each step's rows
        first, with ``aug_seed``.  Returns the cost of the last mini-batch."""
        import numpy as np
        cdef Py_ssize_t N = self.mbs
        cdef double h[MAX_HYPER]
        cdef int k
        cdef int aug_n = 0
        cdef const double* ptab = NULL
        cdef void* pbuf = NULL
        cdef double* pscr = NULL
        if aug_table is not None:
            if (cnp.PyArray_TYPE(aug_table) != cnp.NPY_FLOAT64
                    or cnp.PyArray_NDIM(aug_table) != 2
                    or cnp.PyArray_DIM(aug_table, 1) != AUG_WIDTH
                    or cnp.PyArray_DIM(aug_table, 0) > AUG_MAX_OPS
                    or not cnp.PyArray_IS_C_CONTIGUOUS(aug_table)):
                raise ValueError("Program.run: aug_table does not match the kernel")
            if self.n_in != AUG_PIXELS:
                raise ValueError("Program.run: augmentation needs 784-wide rows")
            aug_n = <int>cnp.PyArray_DIM(aug_table, 0)
            if self.aug_buffer is None:
                self.aug_buffer = np.zeros((N, AUG_PIXELS), dtype=self.dtype)
            if (self.aug_scratch is None
                    or self.aug_scratch.size < self.n_threads * AUG_SCRATCH):
                self.aug_scratch = np.zeros(self.n_threads * AUG_SCRATCH, np.float64)
            ptab = <const double*>cnp.PyArray_DATA(aug_table)
            pbuf = cnp.PyArray_DATA(<cnp.ndarray>self.aug_buffer)
            pscr = <double*>cnp.PyArray_DATA(<cnp.ndarray>self.aug_scratch)
        if (cnp.PyArray_TYPE(x) != self.typenum or cnp.PyArray_NDIM(x) != 2
                or cnp.PyArray_DIM(x, 1) != self.n_in
                or not cnp.PyArray_IS_C_CONTIGUOUS(x)):
            raise ValueError("Program.run: x does not match the program")
        if self.target_width <= 0:
            ok = (cnp.PyArray_TYPE(y) == cnp.NPY_INT32 and cnp.PyArray_NDIM(y) == 1)
        else:
            ok = (cnp.PyArray_TYPE(y) == self.typenum and cnp.PyArray_NDIM(y) == 2
                  and cnp.PyArray_DIM(y, 1) == self.target_width)
        if (not ok or cnp.PyArray_DIM(y, 0) != cnp.PyArray_DIM(x, 0)
                or not cnp.PyArray_IS_C_CONTIGUOUS(y)):
            raise ValueError("Program.run: y does not match x")
        cdef Py_ssize_t y_row = (4 if self.target_width <= 0 else
                                 self.target_width * self.dtype.itemsize)
        if first < 0 or stop < first or stop > cnp.PyArray_DIM(x, 0) // N:
            raise ValueError("Program.run: first/stop out of range")
        for k in range(len(self.hyper_names)):
            h[k] = hyper[self.hyper_names[k]]
        cdef int step_slot = (self.hyper_names.index("hyper:step")
                              if "hyper:step" in self.hyper_names else -1)
        cdef void* px = cnp.PyArray_DATA(x)
        cdef const char* py = <const char*>cnp.PyArray_DATA(y)
        cdef void* pw = cnp.PyArray_DATA(<cnp.ndarray>self.workspace)
        cdef double cost = self.last_cost
        if stop == first:
            return cost
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                run_steps(self.ops, self.n_ops, self.conv, self.upd, <const float*>px, py,
                          y_row, N, self.n_in, first, stop, counter0, h, step_slot, <float*>pw,
                          self.conv_per, &self._team, &cost, ptab, aug_n, aug_seed, <float*>pbuf,
                          pscr)
            else:
                run_steps(self.ops, self.n_ops, self.conv, self.upd, <const double*>px, py,
                          y_row, N, self.n_in, first, stop, counter0, h, step_slot, <double*>pw,
                          self.conv_per, &self._team, &cost, ptab, aug_n, aug_seed, <double*>pbuf,
                          pscr)
        self.last_cost = cost
        return cost

    @property
    def team_threads(self):
        """The thread count the team now measures fastest."""
        return self._team.best

    def team(self):
        """What the thread team did (team.pxd): ``threads`` (the count now
        measured fastest), ``max_threads``, ``adaptive``, ``windows``,
        ``probes``, ``switches``, and ``steps_per_s`` by count measured."""
        return team_dict(&self._team)


cdef dict team_dict(Team* t):
    return {"threads": t.best, "max_threads": t.max_threads, "adaptive": bool(t.adaptive),
            "windows": t.windows, "probes": t.probes, "switches": t.switches,
            "steps_per_s": {k: 1.0 / t.per_step[k] for k in range(1, t.max_threads + 1)
                            if k <= TEAM_MAX and t.per_step[k] > 0}}


cdef class ThreadTeam:
    """team.pxd's controller on its own, fed window times by hand: how
    tests drive it through load changes without a clock."""
    cdef Team t

    def __init__(self, int max_threads, bint adaptive=True, window_s=None):
        team_init(&self.t, max_threads, adaptive,
                  TEAM_WINDOW_S if window_s is None else float(window_s))

    @property
    def threads(self):
        """The count the next window runs at."""
        return self.t.threads

    @property
    def best(self):
        """The count measured fastest."""
        return self.t.best

    @property
    def window_s(self):
        """Seconds of steps per window."""
        return self.t.window_s

    @property
    def probing(self):
        """Whether the next window is a probe."""
        return bool(self.t.probing)

    def window(self, double seconds_per_step):
        """A window at ``threads`` ended at this many seconds a step."""
        if not seconds_per_step > 0:
            raise ValueError("ThreadTeam.window: seconds_per_step must be > 0, got %r"
                             % seconds_per_step)
        team_window(&self.t, seconds_per_step)

    def state(self):
        return team_dict(&self.t)
