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
# conv.pxd, pool.pxd, dense.pxd, softmax.pxd and update.pxd:
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
from blas cimport gemm, gemm_parallel
from common cimport scale_by_activation_grad
from conv cimport (conv_forward_kernel, conv_backward_kernel, conv_workspace_size,
                   padded_positions)
from pool cimport (pool_forward_kernel, pool_backward_kernel, pool_forward_plane,
                   pool_backward_plane)
from dense cimport (dense_forward_kernel, dense_backward_kernel,
                    dropout_forward_kernel, dropout_backward_kernel)
from softmax cimport softmax_nll_kernel
from update cimport sgd_update_kernel

cnp.import_array()

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
    # batch-folded conv (fold == 1): positions of all samples side by side,
    # M = N * PP columns (PP = P padded to TIE_PAD; the padding stays zero)
    int fold
    Py_ssize_t PP, M
    void* cols         # (K, M)  im2col of the whole batch, kept for backward
    void* convf        # (F, M)  conv output
    void* dconvf       # (F, M)  its gradient
    void* dcols        # (K, M)  gradient of cols, or NULL (layer 0)
    int fuse_update    # dense: 0 separate update pass; 1 update right after the
                       # gradient GEMM (same rounding); 2 inside it (GEMM beta)
    int max_threads    # threads the partial sums below have room for
    void* gwpart       # (max_threads - 1, F, K)  per-thread gw partial sums
    double* gbpart     # (max_threads, F)  per-thread gb partial sums


# ---------------------------------------------------------------------------
# batch-folded convolution: one GEMM per thread over all its samples
# ---------------------------------------------------------------------------
cdef inline void im2col_ld(const floating* x, floating* cols, Py_ssize_t ld,
                           Py_ssize_t PP, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t KH, Py_ssize_t KW) noexcept nogil:
    """cols[(c,p,q), i*OW+j] = x[c, i+KH-1-p, j+KW-1-q] for one sample, rows
    ld apart; columns OH*OW .. PP of each row zeroed (conv.pxd's im2col with
    the kernel flip, for a block of columns of a wider matrix)."""
    cdef Py_ssize_t OH = H - KH + 1, OW = W - KW + 1
    cdef Py_ssize_t c, p, q, i, j
    cdef floating* row
    cdef const floating* src
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = cols + ((c * KH + p) * KW + q) * ld
                src = x + (c * H + KH - 1 - p) * W + (KW - 1 - q)
                for i in range(OH):
                    for j in range(OW):
                        row[i * OW + j] = src[i * W + j]
                for j in range(OH * OW, PP):
                    row[j] = 0


cdef inline void col2im_ld(const floating* dcols, Py_ssize_t ld, floating* dx,
                           Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                           Py_ssize_t KW) noexcept nogil:
    """dx = adjoint of im2col_ld for one sample (dx zeroed first)."""
    cdef Py_ssize_t OH = H - KH + 1, OW = W - KW + 1
    cdef Py_ssize_t c, p, q, i, j
    cdef const floating* row
    cdef floating* dst
    memset(dx, 0, C * H * W * sizeof(floating))
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = dcols + ((c * KH + p) * KW + q) * ld
                dst = dx + (c * H + KH - 1 - p) * W + (KW - 1 - q)
                for i in range(OH):
                    for j in range(OW):
                        dst[i * W + j] = dst[i * W + j] + row[i * OW + j]


cdef void conv_pool_forward_folded(LayerSpec* s, const floating* x, Py_ssize_t N,
                                   int T) noexcept nogil:
    """conv (batch folded) then max-pool + bias + activation into s.out."""
    cdef Py_ssize_t K = s.C * s.KH * s.KW, PP = s.PP, M = s.M
    cdef Py_ssize_t CHW = s.C * s.H * s.W
    cdef Py_ssize_t PH = s.CH // s.ph, PW = s.CW // s.pw
    cdef Py_ssize_t n, n0, n1, f
    cdef floating* cols = <floating*>s.cols
    cdef floating* convf = <floating*>s.convf
    cdef floating* out = <floating*>s.out
    cdef const floating* b = <floating*>s.b
    cdef int t
    if T > N:
        T = <int>N
    for t in prange(T, num_threads=T, schedule='static'):
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for n in range(n0, n1):
            im2col_ld(x + n * CHW, cols + n * PP, M, PP, s.C, s.H, s.W, s.KH, s.KW)
        # convf[:, n0*PP:n1*PP] = w (F, K) @ cols[:, n0*PP:n1*PP]
        #   column-major ((n1-n0)*PP x F) = cols (.. x K) @ w (K x F)
        gemm(c'N', c'N', <int>((n1 - n0) * PP), <int>s.F, <int>K, <floating>1,
             cols + n0 * PP, <int>M, <floating*>s.w, <int>K, <floating>0,
             convf + n0 * PP, <int>M)
        for n in range(n0, n1):
            for f in range(s.F):
                pool_forward_plane(convf + f * M + n * PP, out + (n * s.F + f) * PH * PW,
                                   b[f], s.act, s.ph, s.pw, s.CH, s.CW)


cdef void conv_pool_backward_folded(LayerSpec* s, const floating* tag, Py_ssize_t N,
                                    int T) noexcept nogil:
    """Gradients of conv_pool_forward_folded: s.gb, s.gw, and s.dx if wanted.
    s.dout (N, F, PH, PW) is overwritten with dz.

    One parallel region: each thread takes a block of samples, routes their
    pool gradient, sums their part of gb (double) and gw (thread 0 straight
    into gw, the others into s.gwpart) and computes their dx; the partial
    sums are then added in thread order, so the result depends only on T."""
    cdef Py_ssize_t K = s.C * s.KH * s.KW, PP = s.PP, M = s.M
    cdef Py_ssize_t CHW = s.C * s.H * s.W
    cdef Py_ssize_t PH = s.CH // s.ph, PW = s.CW // s.pw
    cdef Py_ssize_t F = s.F, FK = s.F * K
    cdef Py_ssize_t n, n0, n1, f, i
    cdef floating* convf = <floating*>s.convf
    cdef floating* dconvf = <floating*>s.dconvf
    cdef floating* cols = <floating*>s.cols
    cdef floating* dcols = <floating*>s.dcols
    cdef floating* out = <floating*>s.out
    cdef floating* dout = <floating*>s.dout
    cdef floating* gw = <floating*>s.gw
    cdef floating* gwpart = <floating*>s.gwpart
    cdef floating* gb = <floating*>s.gb
    cdef floating* acc
    cdef double* gbp
    cdef double sb
    cdef floating sw
    cdef int t, u
    if T > N:
        T = <int>N
    if T > s.max_threads:
        T = s.max_threads
    for t in prange(T, num_threads=T, schedule='static'):
        n0 = t * N // T
        n1 = (t + 1) * N // T
        gbp = s.gbpart + t * F
        for f in range(F):
            gbp[f] = 0
        # max-pool gradient to every tied maximum; gb partial sums
        for n in range(n0, n1):
            for f in range(F):
                gbp[f] = gbp[f] + pool_backward_plane(
                    convf + f * M + n * PP, out + (n * F + f) * PH * PW,
                    dout + (n * F + f) * PH * PW, dconvf + f * M + n * PP,
                    s.act, s.ph, s.pw, s.CH, s.CW)
        # gw (F, K) (+)= dconvf[:, block] @ cols[:, block].T
        #   column-major (K x F) = cols.T (K x Mt) @ dconvf (Mt x F)
        acc = gw if t == 0 else gwpart + (t - 1) * FK
        gemm(c'T', c'N', <int>K, <int>F, <int>((n1 - n0) * PP), <floating>1,
             cols + n0 * PP, <int>M, dconvf + n0 * PP, <int>M, <floating>0,
             acc, <int>K)
        if s.need_dx:
            # dcols[:, block] = w.T (K, F) @ dconvf[:, block]
            #   column-major (Mt x K) = dconvf (Mt x F) @ w.T (F x K)
            gemm(c'N', c'T', <int>((n1 - n0) * PP), <int>K, <int>F, <floating>1,
                 dconvf + n0 * PP, <int>M, <floating*>s.w, <int>K, <floating>0,
                 dcols + n0 * PP, <int>M)
            for n in range(n0, n1):
                col2im_ld(dcols + n * PP, M, <floating*>s.dx + n * CHW,
                          s.C, s.H, s.W, s.KH, s.KW)
    for f in range(F):
        sb = 0
        for u in range(T):
            sb = sb + s.gbpart[u * F + f]
        gb[f] = <floating>sb
    if T > 1:
        for i in range(FK):
            sw = gw[i]
            for u in range(1, T):
                sw = sw + gwpart[(u - 1) * FK + i]
            gw[i] = sw


# Every parallel region is a fork and a join; on 2 cores a join waits for a
# whole time slice when another process holds the other core.  Small
# products and updates therefore run on the calling thread.
cdef inline int dense_threads(int T, Py_ssize_t work) noexcept nogil:
    return T if work >= (1 << 22) else 1


cdef inline int update_threads(int T, Py_ssize_t n) noexcept nogil:
    return T if n >= (1 << 18) else 1


cdef enum:
    # dense layers with at least this many weights take the blocked backward
    # pass; ROW_BLOCK rows of w (and of its gradient) stay in L2 together
    BLOCKED_MIN = 1 << 18
    ROW_BLOCK = 64


cdef void dense_backward_update(LayerSpec* s, floating* dx, Py_ssize_t N,
                                floating eta, floating l2, int T) noexcept nogil:
    """dense_backward_kernel and the SGD step of this layer in one pass:
    dz = dout * act'(out);  dx = dz @ w.T (with the old w);
    w = (1 - eta*l2) * w - eta * (x.T @ dz)  (one GEMM with beta);
    b -= eta * sum_n dz  (summed in double)."""
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
    if s.fuse_update == 1 and I * O >= BLOCKED_MIN:
        # a big layer: w is read from memory once in the backward pass,
        # block of rows by block of rows (dx with the old rows, then their
        # gradient and update while they are in cache)
        nb = (I + ROW_BLOCK - 1) // ROW_BLOCK
        for k in prange(nb, num_threads=T if T < nb else <int>nb, schedule='static'):
            i0 = k * ROW_BLOCK
            ib = I - i0 if I - i0 < ROW_BLOCK else ROW_BLOCK
            if dx != NULL:
                # dx[:, i0:i0+ib] = dz @ w[i0:i0+ib].T
                #   column-major (ib x N) = w_blk.T (ib x O) @ dz (O x N)
                gemm(c'T', c'N', <int>ib, <int>N, <int>O, <floating>1,
                     <floating*>s.w + i0 * O, <int>O, dout, <int>O, <floating>0,
                     dx + i0, <int>I)
            # gw[i0:i0+ib] = x[:, i0:i0+ib].T @ dz
            #   column-major (O x ib) = dz (O x N) @ x_blk.T (N x ib)
            gemm(c'N', c'T', <int>O, <int>ib, <int>N, <floating>1, dout, <int>O,
                 <floating*>s.x_in + i0, <int>I, <floating>0,
                 <floating*>s.gw + i0 * O, <int>O)
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
                                  int T, double* cost) noexcept nogil:
    """One training step on one mini-batch (xb (N, n_in), yb (N,))."""
    cdef int i
    cdef LayerSpec* s
    cdef const floating* xin = xb
    cdef floating* dx
    # ---- forward ----
    for i in range(nl):
        s = &L[i]
        if s.kind == KIND_CONV and s.fold:
            conv_pool_forward_folded(s, xin, N, T)
        elif s.kind == KIND_CONV:
            s.x_in = <void*>xin
            conv_forward_kernel(xin, <floating*>s.w, <floating*>s.conv_out, work,
                                N, s.C, s.H, s.W, s.F, s.KH, s.KW, T)
            pool_forward_kernel(<floating*>s.conv_out, <floating*>s.b, s.act,
                                s.ph, s.pw, <floating*>s.out, N, s.F, s.CH, s.CW, T)
        else:
            if s.dropout:
                dropout_forward_kernel(xin, s.threshold, s.seed, counter, s.mask,
                                       <floating*>s.x_drop, N * s.NI, T)
                xin = <floating*>s.x_drop
            s.x_in = <void*>xin
            dense_forward_kernel(xin, <floating*>s.w, <floating*>s.b,
                                 LINEAR if s.kind == KIND_SOFTMAX else s.act,
                                 <floating>1, <floating*>s.out, N, s.NI, s.NO,
                                 dense_threads(T, N * s.NI * s.NO))
        xin = <floating*>s.out
    s = &L[nl - 1]
    cost[0] = softmax_nll_kernel(<floating*>s.out, yb, <floating*>s.probs,
                                 <floating*>s.dout, N, s.NO, T)
    # ---- backward ----
    for i in range(nl - 1, -1, -1):
        s = &L[i]
        if s.kind == KIND_CONV and s.fold:
            conv_pool_backward_folded(s, xb, N, T)
        elif s.kind == KIND_CONV:
            pool_backward_kernel(<floating*>s.conv_out, <floating*>s.out,
                                 <floating*>s.dout, s.act, s.ph, s.pw,
                                 <floating*>s.dconv, <floating*>s.gb,
                                 N, s.F, s.CH, s.CW, T)
            conv_backward_kernel(<floating*>s.x_in, <floating*>s.w,
                                 <floating*>s.dconv, <floating*>s.gw,
                                 <floating*>s.dx, work,
                                 N, s.C, s.H, s.W, s.F, s.KH, s.KW, T)
        else:
            dx = <floating*>s.dx
            if s.need_dx and s.dropout:
                dx = <floating*>s.dx_drop
            if s.fuse_update:
                dense_backward_update(s, dx, N, eta, l2, dense_threads(T, N * s.NI * s.NO))
            else:
                dense_backward_kernel(<floating*>s.x_in, <floating*>s.w,
                                      <floating*>s.out, <floating*>s.dout,
                                      LINEAR if s.kind == KIND_SOFTMAX else s.act,
                                      <floating*>s.gw, <floating*>s.gb, dx, N, s.NI, s.NO,
                                      dense_threads(T, N * s.NI * s.NO))
            if s.need_dx and s.dropout:
                dropout_backward_kernel(dx, s.mask, <floating*>s.dx, N * s.NI, T)
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
                    int T, double* cost) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(first, stop):
        forward_backward_update(L, nl, x + i * N * n_in, y + i * N, N, eta, l2,
                                counter0 + <uint64_t>(i - first), work, T, cost)


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
    cdef readonly double last_cost

    def __cinit__(self):
        self.specs = NULL
        self.nl = 0

    def __dealloc__(self):
        if self.specs != NULL:
            free(self.specs)
            self.specs = NULL

    cdef readonly bint fold

    cdef readonly int fuse_update

    def __init__(self, list layers, Py_ssize_t mbs, dtype, int n_threads, bint fold=True,
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
        self.fold = fold
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
                need = max(conv_workspace_size(s.C, s.H, s.W, s.F, s.KH, s.KW,
                                               self.n_threads, False, False),
                           conv_workspace_size(s.C, s.H, s.W, s.F, s.KH, s.KW,
                                               self.n_threads, True, s.need_dx))
                ws = max(ws, need)
                s.fold = 1 if fold else 0
                s.PP = padded_positions(s.CH * s.CW)
                s.M = mbs * s.PP
                if s.fold:
                    K = s.C * s.KH * s.KW
                    fb = dict(cols=np.zeros((K, s.M), self.dtype),
                              convf=np.zeros((s.F, s.M), self.dtype),
                              dconvf=np.zeros((s.F, s.M), self.dtype),
                              dcols=np.zeros((K, s.M), self.dtype) if s.need_dx else None,
                              gwpart=np.zeros(max(self.n_threads - 1, 1) * s.F * K, self.dtype),
                              gbpart=np.zeros(self.n_threads * s.F, np.float64))
                    s.max_threads = self.n_threads
                    for a in fb.values():
                        if a is not None:
                            self.arrays.append(a)
                    s.cols = ptr(fb["cols"]); s.convf = ptr(fb["convf"])
                    s.dconvf = ptr(fb["dconvf"]); s.dcols = ptr(fb["dcols"])
                    s.gwpart = ptr(fb["gwpart"]); s.gbpart = <double*>ptr(fb["gbpart"])
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
        self.workspace = np.zeros(max(ws, 1), dtype=self.dtype)
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
                          <float*>pw, T, &cost)
            else:
                run_steps(self.specs, self.nl, <const double*>px, py, N, self.n_in,
                          first, stop, eta, l2, counter0, <double*>pw, T, &cost)
        self.last_cost = cost
