# pool: max-pool (border ignored), then bias, then activation -- fused.
#
# Shape letters: N batch, F filters (feature maps), CH x CW convolution
# output, ph x pw pool window, PH x PW pooled output (PH = CH // ph,
# PW = CW // pw; the last CH % ph rows and CW % pw columns are ignored).
# All arrays are C-contiguous.  Activation codes: common.pxd.
#
# Inline nogil kernels over raw pointers, cimported by pool.pyx and by any
# compiled trainer.  Bias and activation are applied once per pooled output,
# after the max, as network3 does.

from libc.string cimport memset
from cython.parallel cimport prange

from common cimport (floating, bias_activate, scale_by_activation_grad, sum_double,
                     threads_for)

cdef enum:
    # columns the stack buffers of pool_backward_plane hold; wider planes
    # take a slower path that finds each window's maximum on its own
    MAX_ROW = 1024


cdef inline floating nanmax2(floating v, floating m) noexcept nogil:
    """max(v, m) where a NaN wins, as in np.max (m is the running maximum)."""
    return v if (v > m) | (v != v) else m


cdef inline void window_maxima(const floating* rows, Py_ssize_t CW, Py_ssize_t ph,
                               Py_ssize_t pw, Py_ssize_t PW, floating* m,
                               floating* col) noexcept nogil:
    """m[j] = max of rows[a*CW + j*pw + c] over a < ph, c < pw, for j < PW:
    the maxima of one row of windows.  col: scratch of PW*pw elements.

    First down the ph rows (col[x], unit stride), then across each window's
    pw columns; both loops vectorise (pw == 2 is spelt out: the compiler
    vectorises a constant stride, not a variable one)."""
    cdef Py_ssize_t a, x, j, c, L = PW * pw
    cdef const floating* src
    for x in range(L):
        col[x] = rows[x]
    for a in range(1, ph):
        src = rows + a * CW
        for x in range(L):
            col[x] = nanmax2(src[x], col[x])
    if pw == 2:
        for j in range(PW):
            m[j] = nanmax2(col[2 * j + 1], col[2 * j])
    else:
        for j in range(PW):
            m[j] = col[j * pw]
        for c in range(1, pw):
            for j in range(PW):
                m[j] = nanmax2(col[j * pw + c], m[j])


cdef inline floating window_max(const floating* plane, Py_ssize_t CW,
                                Py_ssize_t y0, Py_ssize_t x0,
                                Py_ssize_t ph, Py_ssize_t pw) noexcept nogil:
    """The maximum of one window plane[y0:y0+ph, x0:x0+pw] (NaN wins)."""
    cdef floating m = plane[y0 * CW + x0]
    cdef Py_ssize_t a, c
    for a in range(ph):
        for c in range(pw):
            m = nanmax2(plane[(y0 + a) * CW + x0 + c], m)
    return m


cdef inline void pool_forward_plane(const floating* plane, floating* o, floating bias,
                                    int act, Py_ssize_t ph, Py_ssize_t pw,
                                    Py_ssize_t CH, Py_ssize_t CW) noexcept nogil:
    """pool_forward_kernel for one (n, f) plane."""
    cdef Py_ssize_t PH = CH // ph, PW = CW // pw
    cdef Py_ssize_t i, j
    cdef floating col[MAX_ROW]
    for i in range(PH):
        if PW * pw <= MAX_ROW:
            window_maxima(plane + i * ph * CW, CW, ph, pw, PW, o + i * PW, col)
        else:
            for j in range(PW):
                o[i * PW + j] = window_max(plane, CW, i * ph, j * pw, ph, pw)
    bias_activate(o, PH * PW, bias, act)


cdef inline void pool_forward_kernel(const floating* conv_out, const floating* b,
                                     int act, Py_ssize_t ph, Py_ssize_t pw,
                                     floating* out, Py_ssize_t N, Py_ssize_t F,
                                     Py_ssize_t CH, Py_ssize_t CW,
                                     int n_threads) noexcept nogil:
    """out[n,f,i,j] = act(max over window (i,j) of conv_out[n,f] + b[f])

    conv_out (N, F, CH, CW)  IN;  b (F,)  IN;  act: activation code
    out (N, F, CH//ph, CW//pw)  OUT
    """
    cdef Py_ssize_t PH = CH // ph, PW = CW // pw
    cdef Py_ssize_t nf
    cdef int T = threads_for(n_threads, N * F, N * F * CH * CW)
    for nf in prange(N * F, num_threads=T, schedule='static'):
        pool_forward_plane(conv_out + nf * CH * CW, out + nf * PH * PW, b[nf % F],
                           act, ph, pw, CH, CW)


cdef inline double pool_backward_plane(const floating* plane, const floating* o,
                                       floating* d, floating* g, int act,
                                       Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t CH,
                                       Py_ssize_t CW) noexcept nogil:
    """pool_backward_kernel for one (n, f) plane; returns sum(dz) in double."""
    cdef Py_ssize_t PH = CH // ph, PW = CW // pw, L = PW * pw
    cdef Py_ssize_t i, j, a, c, k, x
    cdef floating m[MAX_ROW]
    cdef floating me[MAX_ROW]
    cdef floating de[MAX_ROW]
    cdef const floating* drow
    cdef const floating* prow
    cdef floating* grow
    cdef floating mx
    cdef double s = 0
    scale_by_activation_grad(d, o, PH * PW, act)
    s = sum_double(d, PH * PW)
    # the ignored border: rows below PH*ph, columns right of PW*pw
    if PH * ph < CH:
        memset(g + PH * ph * CW, 0, (CH - PH * ph) * CW * sizeof(floating))
    if L < CW:
        for k in range(PH * ph):
            memset(g + k * CW + L, 0, (CW - L) * sizeof(floating))
    for i in range(PH):
        drow = d + i * PW
        if L <= MAX_ROW:
            window_maxima(plane + i * ph * CW, CW, ph, pw, PW, m, me)
            # each window's max and dz spread over its columns ...
            if pw == 2:
                for j in range(PW):
                    me[2 * j] = m[j]
                    me[2 * j + 1] = m[j]
                    de[2 * j] = drow[j]
                    de[2 * j + 1] = drow[j]
            else:
                for j in range(PW):
                    for c in range(pw):
                        me[j * pw + c] = m[j]
                        de[j * pw + c] = drow[j]
            # ... so that routing is a unit-stride loop: [v == max] * dz
            for a in range(ph):
                prow = plane + (i * ph + a) * CW
                grow = g + (i * ph + a) * CW
                for x in range(L):
                    grow[x] = (1 if prow[x] == me[x] else 0) * de[x]
        else:
            for j in range(PW):
                mx = window_max(plane, CW, i * ph, j * pw, ph, pw)
                for a in range(ph):
                    for c in range(pw):
                        k = (i * ph + a) * CW + j * pw + c
                        g[k] = (1 if plane[k] == mx else 0) * drow[j]
    return s


cdef inline void pool_backward_kernel(const floating* conv_out, const floating* out,
                                      floating* dout, int act, Py_ssize_t ph,
                                      Py_ssize_t pw, floating* dconv, floating* db,
                                      Py_ssize_t N, Py_ssize_t F, Py_ssize_t CH,
                                      Py_ssize_t CW, int n_threads) noexcept nogil:
    """Gradients of pool_forward_kernel.

    dz = dout * act'(out)                     (dout is overwritten with dz)
    db[f] = sum_{n,i,j} dz[n,f,i,j]           (summed in double)
    dconv[n,f,y,x] = dz[n,f,y//ph,x//pw] at EVERY position equal to its
                     window's maximum (Theano's rule: ties all receive the
                     whole gradient), 0 elsewhere and on the ignored border.
                     Written as [v == max] * dz, the reference's expression.

    conv_out (N, F, CH, CW)  IN;  out (N, F, PH, PW)  IN
    dout (N, F, PH, PW)  IN/OUT;  dconv (N, F, CH, CW)  OUT;  db (F,)  OUT
    """
    cdef Py_ssize_t PH = CH // ph, PW = CW // pw
    cdef Py_ssize_t f, n, k
    cdef double s
    # one thread per filter: db[f] is then one thread's sum, in a fixed order
    cdef int T = threads_for(n_threads, F, N * F * CH * CW)
    for f in prange(F, num_threads=T, schedule='static'):
        s = 0
        for n in range(N):
            k = n * F + f
            s = s + pool_backward_plane(conv_out + k * CH * CW, out + k * PH * PW,
                                        dout + k * PH * PW, dconv + k * CH * CW,
                                        act, ph, pw, CH, CW)
        db[f] = <floating>s
