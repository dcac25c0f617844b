# trainer: the whole SGD step of a network3-style network in compiled code.
#
# make_plan (fastnet/engines/cpu_trainer.py) reads the layers and builds a
# Plan: one LayerSpec per layer with raw pointers to the live parameter
# buffers (updated in place), gradient buffers and activations, and one
# workspace, all allocated once.  Plan.run trains mini-batches first..stop-1
# without the GIL: forward, softmax + NLL gradient, backward, SGD + L2, step
# after step.  No allocation and no Python per step.
#
# The mathematics is the step-by-step path's (Network(..., fused=False)),
# kernel for kernel and in the same order, using the inline kernels of
# conv.pxd, pool.pxd, dense.pxd, softmax.pxd and update.pxd -- arranged
# differently in two places: a run of conv layers goes sample by sample
# through all its layers in one parallel region (conv_run_forward /
# conv_run_backward below; gb's double sums are then grouped by thread
# before they are added), and a dense layer's SGD step follows its
# gradient block by block (dense_backward_update).  Both agree with the
# step-by-step path to rounding (tests/test_trainer.py):
#   conv layer:   conv_forward -> pool_forward (max, + b, act)
#   dense layer:  [dropout_forward] -> dense_forward (x @ w + b, act)
#   softmax:      [dropout_forward] -> dense_forward (linear) -> softmax_nll
#   backward in reverse: dense_backward [-> dropout_backward];
#                        pool_backward -> conv_backward
#   then every layer: w -= eta * (gw + l2 * w);  b -= eta * gb
# Dropout masks: the splitmix64 counter formula of dense.pxd with counter
# counter0 + (i - first) for step i, as the step-by-step path draws them.
#
# Arguments are checked by the Python side (cpu_trainer.train_steps) before
# Plan.run is called; Plan.run itself checks only what it needs to stay
# memory-safe (dtype, sizes, range of first/stop).

from libc.stdint cimport int32_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from cython.parallel cimport prange
cimport numpy as cnp

from common cimport floating, LINEAR
from blas cimport gemm_parallel
from common cimport scale_by_activation_grad
from conv cimport (conv_forward_sample, conv_backward_sample, conv_dw_reduce,
                   conv_sample_workspace, conv_dw_size, padded_positions)
from pool cimport pool_forward_plane, pool_backward_plane
from common cimport padded
from dense cimport (dense_forward_kernel, dense_backward_kernel,
                    dropout_forward_kernel, dropout_backward_kernel, dense_threads,
                    dense_streams, dense_backward_rows, DENSE_ROW_BLOCK)
from softmax cimport softmax_nll_kernel
from update cimport sgd_update_kernel

cnp.import_array()

cdef enum:
    # bytes of patches a conv layer may keep from forward to backward: within
    # L2 they save the backward its im2col (+1.5 % at mini-batch 10); a
    # mini-batch of 128 keeps 16 MB, which measured 8 % slower than redoing it
    KEEP_COLS_MAX = 2 << 20

cdef enum:
    KIND_CONV = 0
    KIND_DENSE = 1
    KIND_SOFTMAX = 2


cdef struct LayerSpec:
    int kind
    int act
    int need_dx
    int dropout
    # conv: input (C, H, W), F filters KH x KW, conv output (CH, CW), pool ph x pw
    Py_ssize_t C, H, W, F, KH, KW, CH, CW, ph, pw
    # dense: I inputs, O outputs (conv: I = C*H*W, O = F*PH*PW)
    Py_ssize_t NI, NO
    uint64_t seed, threshold
    void* w
    void* b
    void* gw
    void* gb
    void* conv_out     # conv (N, F, CH, CW)
    void* dconv        # conv (N, F, CH, CW)
    void* out          # (N, O): activations; softmax: logits
    void* dout         # (N, O): gradient w.r.t. out (softmax: dlogits; else the next layer's dx)
    void* dx           # (N, I): gradient w.r.t. the input, or NULL (layer 0)
    void* probs        # softmax (N, O)
    uint8_t* mask      # dropout (N, I)
    void* x_drop       # dropout (N, I)
    void* dx_drop      # dropout (N, I), or NULL
    void* x_in         # set while running: the input the product saw
    # conv: per-thread partial sums of the gradients (max_threads of each)
    int max_threads
    Py_ssize_t acc_size  # elements of one thread's weight-gradient partial sum
    void* accs         # (max_threads, acc_size)
    double* gbpart     # (max_threads, F)
    void* cols         # (N, cols_size): each sample's patches from forward to
    Py_ssize_t cols_size  # backward, or NULL (the backward makes them again)
    int fuse_update    # dense: 0 separate update pass; 1 update right after the
                       # gradient GEMM (same rounding); 2 inside it (GEMM beta)


# ---------------------------------------------------------------------------
# runs of conv layers, sample by sample
# ---------------------------------------------------------------------------
# A run of consecutive conv layers (the book's nets open with one) is one
# parallel region forward and one backward: each thread takes its block of
# samples and carries every sample through all the run's layers (conv,
# then pool + bias + activation), so a sample's activations stay in the
# core's cache and the threads meet twice a step instead of at every
# kernel.  The arithmetic is conv.pxd's and pool.pxd's per-sample kernels;
# gradient sums are per thread, then added in thread order (conv_dw_reduce;
# gb in double), so the result depends only on the thread count.

cdef inline int run_threads(int T, Py_ssize_t N, int max_threads) noexcept nogil:
    if T > N:
        T = <int>N
    if T > max_threads:
        T = max_threads
    return T if T >= 1 else 1


cdef void conv_run_forward(LayerSpec* L, int first, int last, const floating* xb,
                           Py_ssize_t N, floating* work, Py_ssize_t per,
                           int T) noexcept nogil:
    """Layers first..last-1 (all conv) on the mini-batch xb (N, L[first].NI)."""
    cdef Py_ssize_t n, n0, n1, f, PHW
    cdef const floating* xin
    cdef floating* conv_n
    cdef LayerSpec* s
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


cdef void conv_run_backward(LayerSpec* L, int first, int last, const floating* xb,
                            Py_ssize_t N, floating* work, Py_ssize_t per,
                            int T) noexcept nogil:
    """Gradients of conv_run_forward: gw, gb of every layer of the run, and
    dx of those that need it.  Each layer's dout (N, O) is overwritten."""
    cdef Py_ssize_t n, n0, n1, f, PHW, CHW
    cdef const floating* xin
    cdef floating* conv_n
    cdef floating* dconv_n
    cdef double* gbp
    cdef LayerSpec* s
    cdef int t, i, u
    cdef double sb
    T = run_threads(T, N, L[first].max_threads)
    for t in prange(T, num_threads=T, schedule='static'):
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for i in range(first, last):
            for f in range(L[i].F):
                L[i].gbpart[t * L[i].F + f] = 0
        for n in range(n0, n1):
            for i in range(last - 1, first - 1, -1):
                s = &L[i]
                PHW = (s.CH // s.ph) * (s.CW // s.pw)
                CHW = s.CH * s.CW
                xin = (xb + n * s.NI) if i == first else (<floating*>L[i - 1].out + n * s.NI)
                conv_n = <floating*>s.conv_out + n * s.F * CHW
                dconv_n = <floating*>s.dconv + n * s.F * CHW
                gbp = s.gbpart + t * s.F
                # max-pool gradient to every tied maximum; gb partial sums
                for f in range(s.F):
                    gbp[f] = gbp[f] + pool_backward_plane(
                        conv_n + f * CHW, <floating*>s.out + (n * s.F + f) * PHW,
                        <floating*>s.dout + (n * s.F + f) * PHW, dconv_n + f * CHW,
                        s.act, s.ph, s.pw, s.CH, s.CW)
                conv_backward_sample(xin, <floating*>s.w, dconv_n,
                                     <floating*>s.accs + t * s.acc_size, n > n0,
                                     (<floating*>s.dx + n * s.NI) if s.need_dx else NULL,
                                     work + t * per,
                                     (<floating*>s.cols + n * s.cols_size)
                                     if s.cols != NULL else NULL,
                                     s.C, s.H, s.W, s.F, s.KH, s.KW)
    for i in range(first, last):
        s = &L[i]
        conv_dw_reduce(<floating*>s.gw, <floating*>s.accs, s.acc_size, T, s.F,
                       s.C * s.KH * s.KW)
        for f in range(s.F):
            sb = 0
            for u in range(T):
                sb = sb + s.gbpart[u * s.F + f]
            (<floating*>s.gb)[f] = <floating>sb


cdef inline int conv_run_end(LayerSpec* L, int nl, int first) noexcept nogil:
    """One past the last conv layer of the run that starts at first."""
    cdef int j = first
    while j < nl and L[j].kind == KIND_CONV:
        j += 1
    return j


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


cdef void dense_backward_update(LayerSpec* s, floating* dx, Py_ssize_t N,
                                floating eta, floating l2, int T) noexcept nogil:
    """dense_backward_kernel and the SGD step of this layer in one pass:
    dz = dout * act'(out);  dx = dz @ w.T (with the old w);
    w -= eta * (x.T @ dz + l2 * w) (fuse_update 1: the step-by-step path's
    rounding), or w = (1 - eta*l2) * w - eta * (x.T @ dz) in one GEMM with
    beta (fuse_update 2);  b -= eta * sum_n dz (summed in double)."""
    cdef Py_ssize_t n, o, I = s.NI, O = s.NO, nb, k, i0, ib
    cdef floating* dout = <floating*>s.dout
    cdef floating* gb = <floating*>s.gb
    cdef floating* b = <floating*>s.b
    cdef double acc
    cdef int act = LINEAR if s.kind == KIND_SOFTMAX else s.act
    if act != LINEAR:
        scale_by_activation_grad(dout, <floating*>s.out, N * O, act)
    for o in range(O):
        acc = 0
        for n in range(N):
            acc = acc + dout[n * O + o]
        gb[o] = <floating>acc
    if s.fuse_update == 1 and (dense_streams(N, I, O) or I * O >= BLOCKED_MIN):
        # a big layer: block of rows of w by block of rows -- dx with the
        # old rows, then their gradient and update while they are in cache
        # -- so w crosses from memory once in the backward pass
        nb = (I + DENSE_ROW_BLOCK - 1) // DENSE_ROW_BLOCK
        for k in prange(nb, num_threads=T if T < nb else <int>nb, schedule='static'):
            i0 = k * DENSE_ROW_BLOCK
            ib = I - i0 if I - i0 < DENSE_ROW_BLOCK else DENSE_ROW_BLOCK
            dense_backward_rows(<floating*>s.x_in, <floating*>s.w, dout,
                                <floating*>s.gw, dx, i0, ib, N, I, O)
            sgd_serial(<floating*>s.w + i0 * O, <floating*>s.gw + i0 * O, ib * O, eta, l2)
        for o in range(O):
            b[o] = b[o] - eta * gb[o]
        return
    if dx != NULL:
        # dx = dz @ w.T:  column-major (I x N) = w.T (I x O) @ dz (O x N)
        gemm_parallel(c'T', c'N', <int>I, <int>N, <int>O, <floating>1,
                      <floating*>s.w, <int>O, dout, <int>O, <floating>0, dx, <int>I, T)
    if s.fuse_update == 2:
        # w = (1 - eta*l2) w - eta x.T @ dz in the GEMM (beta = 1 - eta*l2):
        #   column-major (O x I) = dz (O x N) @ x.T (N x I)
        gemm_parallel(c'N', c'T', <int>O, <int>I, <int>N, -eta, dout, <int>O,
                      <floating*>s.x_in, <int>I, <floating>1 - eta * l2,
                      <floating*>s.w, <int>O, T)
    else:
        # gw = x.T @ dz, then at once (gw and w still in cache) the update
        # with the step-by-step path's rounding: w -= eta * (gw + l2 * w)
        gemm_parallel(c'N', c'T', <int>O, <int>I, <int>N, <floating>1, dout, <int>O,
                      <floating*>s.x_in, <int>I, <floating>0, <floating*>s.gw, <int>O, T)
        if T > 1:
            # a product big enough for threads: so is its update
            sgd_update_kernel(<floating*>s.w, <floating*>s.gw, I * O, eta, l2, T)
        else:
            sgd_serial(<floating*>s.w, <floating*>s.gw, I * O, eta, l2)
    for o in range(O):
        b[o] = b[o] - eta * gb[o]


cdef inline void sgd_serial(floating* w, const floating* g, Py_ssize_t n,
                            floating eta, floating l2) noexcept nogil:
    """update.pxd's sgd_update_kernel on the calling thread (same arithmetic)."""
    cdef Py_ssize_t i
    if l2 != 0:
        for i in range(n):
            w[i] = w[i] - eta * (g[i] + l2 * w[i])
    else:
        for i in range(n):
            w[i] = w[i] - eta * g[i]


cdef void forward_backward_update(LayerSpec* L, int nl, const floating* xb,
                                  const int32_t* yb, Py_ssize_t N, floating eta,
                                  floating l2, uint64_t counter, floating* work,
                                  Py_ssize_t per, int T, double* cost) noexcept nogil:
    """One training step on one mini-batch (xb (N, n_in), yb (N,)); work:
    per elements of conv scratch for each of T threads."""
    cdef int i, j, k
    cdef LayerSpec* s
    cdef const floating* xin = xb
    cdef floating* dx
    # ---- forward ----
    i = 0
    while i < nl:
        s = &L[i]
        if s.kind == KIND_CONV:
            j = conv_run_end(L, nl, i)
            for k in range(i, j):
                L[k].x_in = <void*>(xin if k == i else <floating*>L[k - 1].out)
            conv_run_forward(L, i, j, xin, N, work, per, T)
            xin = <floating*>L[j - 1].out
            i = j
            continue
        else:
            if s.dropout:
                dropout_forward_kernel(xin, s.threshold, s.seed, counter, s.mask,
                                       <floating*>s.x_drop, N * s.NI, T)
                xin = <floating*>s.x_drop
            s.x_in = <void*>xin
            dense_forward_kernel(xin, <floating*>s.w, <floating*>s.b,
                                 LINEAR if s.kind == KIND_SOFTMAX else s.act,
                                 <floating>1, <floating*>s.out, N, s.NI, s.NO,
                                 dense_threads(T, N, s.NI, s.NO))
        xin = <floating*>s.out
        i += 1
    s = &L[nl - 1]
    cost[0] = softmax_nll_kernel(<floating*>s.out, yb, <floating*>s.probs,
                                 <floating*>s.dout, N, s.NO, T)
    # ---- backward ----
    i = nl - 1
    while i >= 0:
        s = &L[i]
        if s.kind == KIND_CONV:
            j = i
            while j > 0 and L[j - 1].kind == KIND_CONV:
                j -= 1
            conv_run_backward(L, j, i + 1, <floating*>L[j].x_in, N, work, per, T)
            i = j - 1
            continue
        else:
            dx = <floating*>s.dx
            if s.need_dx and s.dropout:
                dx = <floating*>s.dx_drop
            if s.fuse_update:
                dense_backward_update(s, dx, N, eta, l2, dense_threads(T, N, s.NI, s.NO))
            else:
                dense_backward_kernel(<floating*>s.x_in, <floating*>s.w,
                                      <floating*>s.out, <floating*>s.dout,
                                      LINEAR if s.kind == KIND_SOFTMAX else s.act,
                                      <floating*>s.gw, <floating*>s.gb, dx, N, s.NI, s.NO,
                                      dense_threads(T, N, s.NI, s.NO))
            if s.need_dx and s.dropout:
                dropout_backward_kernel(dx, s.mask, <floating*>s.dx, N * s.NI, T)
        i -= 1
    # ---- update ----
    for i in range(nl):
        s = &L[i]
        if s.kind == KIND_CONV:
            sgd_update_kernel(<floating*>s.w, <floating*>s.gw, s.F * s.C * s.KH * s.KW,
                              eta, l2, update_threads(T, s.F * s.C * s.KH * s.KW))
            sgd_update_kernel(<floating*>s.b, <floating*>s.gb, s.F, eta, <floating>0, 1)
        elif not s.fuse_update:
            sgd_update_kernel(<floating*>s.w, <floating*>s.gw, s.NI * s.NO, eta, l2,
                              update_threads(T, s.NI * s.NO))
            sgd_update_kernel(<floating*>s.b, <floating*>s.gb, s.NO, eta, <floating>0, 1)


cdef void run_steps(LayerSpec* L, int nl, const floating* x, const int32_t* y,
                    Py_ssize_t N, Py_ssize_t n_in, Py_ssize_t first, Py_ssize_t stop,
                    floating eta, floating l2, uint64_t counter0, floating* work,
                    Py_ssize_t per, int T, double* cost) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(first, stop):
        forward_backward_update(L, nl, x + i * N * n_in, y + i * N, N, eta, l2,
                                counter0 + <uint64_t>(i - first), work, per, T, cost)


cdef inline void* ptr(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef class Plan:
    """The compiled side of a training plan: layer specs and buffers.

    Built by fastnet.engines.cpu_trainer.make_plan; use train_steps to run.
    """
    cdef LayerSpec* specs
    cdef int nl
    cdef readonly Py_ssize_t mbs, n_in, n_classes
    cdef readonly int typenum, n_threads
    cdef readonly object dtype
    cdef readonly list arrays          # keeps every buffer alive
    cdef readonly object workspace
    cdef readonly Py_ssize_t conv_per   # conv scratch elements per thread
    cdef readonly double last_cost

    def __cinit__(self):
        self.specs = NULL
        self.nl = 0

    def __dealloc__(self):
        if self.specs != NULL:
            free(self.specs)
            self.specs = NULL

    cdef readonly int fuse_update

    def __init__(self, list layers, Py_ssize_t mbs, dtype, int n_threads,
                 int fuse_update=1):
        """layers: one dict per layer (see cpu_trainer.make_plan)."""
        import numpy as np
        cdef int i
        cdef LayerSpec* s
        cdef Py_ssize_t ws = 0, need
        if not layers:
            raise ValueError("Plan: no layers")
        self.dtype = np.dtype(dtype)
        if self.dtype == np.float32:
            self.typenum = cnp.NPY_FLOAT32
        elif self.dtype == np.float64:
            self.typenum = cnp.NPY_FLOAT64
        else:
            raise ValueError("Plan: dtype must be float32 or float64, got %s" % self.dtype)
        self.mbs = mbs
        self.fuse_update = fuse_update
        self.n_threads = n_threads if n_threads >= 1 else 1
        self.arrays = []
        self.nl = len(layers)
        self.specs = <LayerSpec*>calloc(self.nl, sizeof(LayerSpec))
        if self.specs == NULL:
            raise MemoryError()
        for i in range(self.nl):
            d = layers[i]
            s = &self.specs[i]
            s.kind = {"conv": KIND_CONV, "dense": KIND_DENSE, "softmax": KIND_SOFTMAX}[d["kind"]]
            s.act = d["act"]
            s.need_dx = 1 if d["dx"] is not None else 0
            s.fuse_update = fuse_update
            s.dropout = 1 if d.get("mask") is not None else 0
            s.NI = d["I"]
            s.NO = d["O"]
            if s.kind == KIND_CONV:
                s.C, s.H, s.W = d["C"], d["H"], d["W"]
                s.F, s.KH, s.KW = d["F"], d["KH"], d["KW"]
                s.CH, s.CW = d["CH"], d["CW"]
                s.ph, s.pw = d["ph"], d["pw"]
                need = max(conv_sample_workspace(s.C, s.H, s.W, s.F, s.KH, s.KW,
                                                 False, False),
                           conv_sample_workspace(s.C, s.H, s.W, s.F, s.KH, s.KW,
                                                 True, s.need_dx))
                ws = max(ws, need)
                s.max_threads = self.n_threads
                s.acc_size = padded(conv_dw_size(s.F, s.C * s.KH * s.KW))
                accs = np.zeros(self.n_threads * s.acc_size, self.dtype)
                gbpart = np.zeros(self.n_threads * s.F, np.float64)
                self.arrays += [accs, gbpart]
                s.accs = ptr(accs)
                s.gbpart = <double*>ptr(gbpart)
                # the patches of every sample, kept from forward to backward
                # while they fit KEEP_COLS_MAX bytes per layer
                s.cols_size = padded(s.C * s.KH * s.KW * padded_positions(s.CH * s.CW))
                if mbs * s.cols_size * self.dtype.itemsize <= KEEP_COLS_MAX:
                    cols = np.zeros(mbs * s.cols_size, self.dtype)
                    self.arrays.append(cols)
                    s.cols = ptr(cols)
            if s.dropout:
                s.seed = <uint64_t>d["seed"]
                s.threshold = <uint64_t>d["threshold"]
            for name in ("w", "b", "gw", "gb", "conv_out", "dconv", "out", "dout",
                         "dx", "probs", "x_drop", "dx_drop", "mask"):
                a = d.get(name)
                if a is not None:
                    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                        raise ValueError("Plan: layer %d: %s must be a C-contiguous "
                                         "ndarray" % (i, name))
                    if name != "mask" and a.dtype != self.dtype:
                        raise ValueError("Plan: layer %d: %s has dtype %s, expected %s"
                                         % (i, name, a.dtype, self.dtype))
                    self.arrays.append(a)
            s.w = ptr(d["w"]); s.b = ptr(d["b"]); s.gw = ptr(d["gw"]); s.gb = ptr(d["gb"])
            s.conv_out = ptr(d.get("conv_out")); s.dconv = ptr(d.get("dconv"))
            s.out = ptr(d["out"]); s.dout = ptr(d["dout"]); s.dx = ptr(d["dx"])
            s.probs = ptr(d.get("probs"))
            s.mask = <uint8_t*>ptr(d.get("mask"))
            s.x_drop = ptr(d.get("x_drop")); s.dx_drop = ptr(d.get("dx_drop"))
        self.n_in = self.specs[0].NI
        self.n_classes = self.specs[self.nl - 1].NO
        if self.specs[self.nl - 1].kind != KIND_SOFTMAX or self.specs[self.nl - 1].probs == NULL:
            raise ValueError("Plan: the last layer must be a softmax layer")
        self.conv_per = ws
        self.workspace = np.zeros(max(ws * self.n_threads, 1), dtype=self.dtype)
        self.last_cost = float("nan")

    def run(self, cnp.ndarray x, cnp.ndarray y, Py_ssize_t first, Py_ssize_t stop,
            double eta, double l2, uint64_t counter0):
        """Train mini-batches first..stop-1 (arguments checked by the caller;
        re-checked here only as far as memory safety needs)."""
        cdef Py_ssize_t N = self.mbs
        if (cnp.PyArray_TYPE(x) != self.typenum or cnp.PyArray_NDIM(x) != 2
                or cnp.PyArray_DIM(x, 1) != self.n_in
                or not cnp.PyArray_IS_C_CONTIGUOUS(x)):
            raise ValueError("Plan.run: x does not match the plan")
        if (cnp.PyArray_TYPE(y) != cnp.NPY_INT32 or cnp.PyArray_NDIM(y) != 1
                or cnp.PyArray_DIM(y, 0) != cnp.PyArray_DIM(x, 0)
                or not cnp.PyArray_IS_C_CONTIGUOUS(y)):
            raise ValueError("Plan.run: y does not match x")
        if first < 0 or stop < first or stop > cnp.PyArray_DIM(x, 0) // N:
            raise ValueError("Plan.run: first/stop out of range")
        cdef void* px = cnp.PyArray_DATA(x)
        cdef const int32_t* py = <const int32_t*>cnp.PyArray_DATA(y)
        cdef void* pw = cnp.PyArray_DATA(<cnp.ndarray>self.workspace)
        cdef double cost = self.last_cost
        cdef int T = self.n_threads
        if stop == first:
            return
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                run_steps(self.specs, self.nl, <const float*>px, py, N, self.n_in,
                          first, stop, <float>eta, <float>l2, counter0,
                          <float*>pw, self.conv_per, T, &cost)
            else:
                run_steps(self.specs, self.nl, <const double*>px, py, N, self.n_in,
                          first, stop, eta, l2, counter0, <double*>pw, self.conv_per,
                          T, &cost)
        self.last_cost = cost
