# augment: on-the-fly distortions of 28 x 28 training images, per sample.
#
# The transforms of fastnet/augment.py, read from its table (float64 rows of
# AUG_WIDTH: kind, parameters, the Gaussian's weights), operation for
# operation as fastnet/engines/reference.py's ``augment`` (its NumPy twin):
#   random numbers   op = hash(seed, k); sample = hash(op, counter*N + n);
#                    u_j = (hash(sample, j) >> 11) * 2^-53, hash(a, b) =
#                    splitmix64's finaliser of a + (b + 1) * golden;
#   shift            dy, dx = floor(u * (2m + 1)) - m, zeros moved in;
#   affine           t, k, s from u_0..u_2; the output pixel (r, c) takes the
#                    input at centre + A ((r, c) - centre), bilinear;
#   elastic          fields 2u - 1 (draws 0..783: rows, 784..1567: columns),
#                    smoothed along rows then columns, out = w0 a[i] +
#                    sum_j w_j (a[i-j] + a[i+j]) (zeros beyond the image),
#                    times alpha; bilinear at (r + dy, c + dx).
# Bilinear sampling: zeros outside, an integral position copies its pixel.
# Each image is carried in double (a 30 x 30 buffer with a border of zeros)
# through the transforms and rounded to the output type at the end.
#
# Everything is `cdef inline`, compiled into the module that cimports it
# (augment.pyx's kernel, trainer.pyx's training loop).  A sample's result
# depends only on (seed, counter, its row): not on the thread count.

from libc.stdint cimport uint64_t, int64_t
from libc.math cimport floor, cos, sin
from cython.parallel cimport prange

from common cimport floating

cdef enum:
    AUG_SIDE = 28
    AUG_PIXELS = 784
    AUG_WIDTH = 36          # fastnet.augment.TABLE_WIDTH
    AUG_TAPS0 = 8           # fastnet.augment.TAPS0
    AUG_MAX_OPS = 8         # fastnet.augment.MAX_TRANSFORMS
    AUG_SHIFT = 1
    AUG_AFFINE = 2
    AUG_ELASTIC = 3
    AUG_P = 30              # the padded image's side: a border of one zero
    AUG_IMG = 900           # AUG_P * AUG_P
    AUG_FIELD = 2296        # a field with 27 zero rows either side: 82 * 28
    # one thread's scratch, in doubles: two padded images, two padded
    # fields, two displacement fields
    AUG_SCRATCH = 8192


cdef inline uint64_t aug_hash(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t z = a + (b + 1) * <uint64_t>0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double aug_uniform(uint64_t sample, uint64_t j) noexcept nogil:
    # below 2^53: exact through a signed conversion (a cheaper instruction)
    return <double><int64_t>(aug_hash(sample, j) >> 11) * (1.0 / 9007199254740992.0)


cdef inline double aug_pixel_at(const double* P, double y, double x) noexcept nogil:
    """The padded image P sampled at (y, x): bilinear, zeros outside."""
    cdef double r0, c0, fy, fx
    cdef const double* p
    if not (y > -1.0 and y < AUG_SIDE and x > -1.0 and x < AUG_SIDE):
        return 0.0
    r0 = floor(y)
    c0 = floor(x)
    fy = y - r0
    fx = x - c0
    p = P + (<Py_ssize_t>r0 + 1) * AUG_P + (<Py_ssize_t>c0 + 1)
    if fy == 0.0 and fx == 0.0:
        return p[0]
    return ((1.0 - fy) * ((1.0 - fx) * p[0] + fx * p[1])
            + fy * ((1.0 - fx) * p[AUG_P] + fx * p[AUG_P + 1]))


cdef inline void aug_shift(const double* src, double* dst, const double* op,
                           uint64_t sample) noexcept nogil:
    cdef int m = <int>op[1]
    cdef int dy = <int>floor(aug_uniform(sample, 0) * (2 * m + 1)) - m
    cdef int dx = <int>floor(aug_uniform(sample, 1) * (2 * m + 1)) - m
    cdef int r, c, rs, cs
    for r in range(AUG_SIDE):
        rs = r - dy
        for c in range(AUG_SIDE):
            cs = c - dx
            if rs >= 0 and rs < AUG_SIDE and cs >= 0 and cs < AUG_SIDE:
                dst[(r + 1) * AUG_P + c + 1] = src[(rs + 1) * AUG_P + cs + 1]
            else:
                dst[(r + 1) * AUG_P + c + 1] = 0.0


cdef inline void aug_affine(const double* src, double* dst, const double* op,
                            uint64_t sample) noexcept nogil:
    cdef double centre = (AUG_SIDE - 1) / 2.0
    cdef double t = op[1] * (2.0 * aug_uniform(sample, 0) - 1.0)
    cdef double k = op[2] * (2.0 * aug_uniform(sample, 1) - 1.0)
    cdef double s = 1.0 + op[3] * (2.0 * aug_uniform(sample, 2) - 1.0)
    cdef double co = cos(t), si = sin(t)
    cdef double a00 = (co - si * k) / s, a01 = -si / s
    cdef double a10 = (si + co * k) / s, a11 = co / s
    cdef double dr, dc
    cdef int r, c
    for r in range(AUG_SIDE):
        dr = <double>r - centre
        for c in range(AUG_SIDE):
            dc = <double>c - centre
            dst[(r + 1) * AUG_P + c + 1] = aug_pixel_at(
                src, centre + (a00 * dr + a01 * dc), centre + (a10 * dr + a11 * dc))


cdef inline void aug_smooth_pass(const double* F, double* out_t, const double* w,
                                 int R) noexcept nogil:
    """One pass of the Gaussian along axis 0 of the field in F's rows
    27..54 (zeros around it), written transposed: out_t[c*28 + i]."""
    cdef double acc[AUG_SIDE]
    cdef const double* row
    cdef const double* up
    cdef const double* dn
    cdef double wj
    cdef int i, j, c
    for i in range(AUG_SIDE):
        row = F + (27 + i) * AUG_SIDE
        for c in range(AUG_SIDE):
            acc[c] = w[0] * row[c]
        for j in range(1, R):
            wj = w[j]
            up = row - j * AUG_SIDE
            dn = row + j * AUG_SIDE
            for c in range(AUG_SIDE):
                acc[c] = acc[c] + wj * (up[c] + dn[c])
        for c in range(AUG_SIDE):
            out_t[c * AUG_SIDE + i] = acc[c]


cdef inline void aug_field(double* F1, double* F2, double* D, const double* op,
                           uint64_t sample, uint64_t j0) noexcept nogil:
    """D = alpha * smooth(2u - 1), u the draws j0 .. j0 + 783 of the sample."""
    cdef double* f = F1 + 27 * AUG_SIDE
    cdef int p
    cdef double alpha = op[1]
    for p in range(AUG_PIXELS):
        f[p] = 2.0 * aug_uniform(sample, j0 + <uint64_t>p) - 1.0
    aug_smooth_pass(F1, F2 + 27 * AUG_SIDE, op + AUG_TAPS0, <int>op[3])
    aug_smooth_pass(F2, D, op + AUG_TAPS0, <int>op[3])
    for p in range(AUG_PIXELS):
        D[p] = alpha * D[p]


cdef inline void aug_elastic(const double* src, double* dst, const double* op,
                             uint64_t sample, double* work) noexcept nogil:
    cdef double* F1 = work
    cdef double* F2 = work + AUG_FIELD
    cdef double* DY = work + 2 * AUG_FIELD
    cdef double* DX = DY + AUG_PIXELS
    cdef int r, c
    aug_field(F1, F2, DY, op, sample, 0)
    aug_field(F1, F2, DX, op, sample, AUG_PIXELS)
    for r in range(AUG_SIDE):
        for c in range(AUG_SIDE):
            dst[(r + 1) * AUG_P + c + 1] = aug_pixel_at(
                src, <double>r + DY[r * AUG_SIDE + c], <double>c + DX[r * AUG_SIDE + c])


cdef inline void aug_sample(const floating* x, floating* out, const double* table,
                            int n_ops, uint64_t seed, uint64_t key,
                            double* scratch) noexcept nogil:
    """One image x (784) through the table's transforms into out.
    ``scratch``: AUG_SCRATCH doubles whose padding is zero (it stays so)."""
    cdef double* A = scratch
    cdef double* B = scratch + AUG_IMG
    cdef double* tmp
    cdef const double* op
    cdef uint64_t sample
    cdef int r, c, k, kind
    for r in range(AUG_SIDE):
        for c in range(AUG_SIDE):
            A[(r + 1) * AUG_P + c + 1] = <double>x[r * AUG_SIDE + c]
    for k in range(n_ops):
        op = table + k * AUG_WIDTH
        sample = aug_hash(aug_hash(seed, <uint64_t>k), key)
        kind = <int>op[0]
        if kind == AUG_SHIFT:
            aug_shift(A, B, op, sample)
        elif kind == AUG_AFFINE:
            aug_affine(A, B, op, sample)
        elif kind == AUG_ELASTIC:
            aug_elastic(A, B, op, sample, scratch + 2 * AUG_IMG)
        else:
            continue
        tmp = A
        A = B
        B = tmp
    for r in range(AUG_SIDE):
        for c in range(AUG_SIDE):
            out[r * AUG_SIDE + c] = <floating>A[(r + 1) * AUG_P + c + 1]


cdef inline void augment_kernel(const floating* x, floating* out, Py_ssize_t N,
                                const double* table, int n_ops, uint64_t seed,
                                uint64_t counter, double* scratch, int T) noexcept nogil:
    """Rows 0..N-1 of x (N, 784) distorted into out, sample n with key
    counter*N + n, on T threads (scratch: T * AUG_SCRATCH doubles, zeroed
    once before first use)."""
    cdef Py_ssize_t n, n0, n1
    cdef int t
    if T > N:
        T = <int>N
    if T < 1:
        T = 1
    for t in prange(T, num_threads=T, schedule='static'):
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for n in range(n0, n1):
            aug_sample(x + n * AUG_PIXELS, out + n * AUG_PIXELS, table, n_ops, seed,
                       counter * <uint64_t>N + <uint64_t>n, scratch + t * AUG_SCRATCH)
