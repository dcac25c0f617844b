/* bcast_gemm: the register-blocked product under the convolutions.
 *
 *   C[i, j] (=, or += when accumulate) sum_{k < kk} A(i, k) * B[k*ldb + j]
 *   for i < m, j < n;   A(i, k) = A[i*ars + k*acs]
 *
 * A is read one scalar at a time (broadcast), so any of its strides works:
 * the same function multiplies by w, by w transposed or by a gradient
 * without a copy.  B and C are row-major with contiguous rows.
 *
 * Why not BLAS: the convolutions multiply small matrices (the book's second
 * layer: 40 x 500 by 500 x 64, once per sample), where OpenBLAS spends a third
 * of its time packing operands it then uses once.  A tile of MR rows x NV
 * vectors of C stays in registers for the whole k loop, B's row k is loaded
 * as NV vectors and A's MR scalars are broadcast: nothing is packed.
 *
 * Every C element is one chain of multiply-adds over k in order 0..kk-1,
 * whichever tile (full or edge) computes it, so equal inputs give bitwise
 * equal outputs anywhere in C (max-pool ties need that; conv.pxd's header).
 * The multiply-adds are fused (FMA) where the target has them: this file
 * asks for fp-contract=fast while the rest of the build keeps it off.
 *
 * Columns past the last whole vector (n not a multiple of the vector
 * length) are computed by one more vector ending at column n (when C is
 * overwritten) or by a scalar loop with the same chain of multiply-adds
 * (when C is accumulated into).
 */
#ifndef FASTNET_BCAST_GEMM_H
#define FASTNET_BCAST_GEMM_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif
#if defined(__clang__)
#pragma clang fp contract(fast)
#endif

/* Whether these products are worth taking over from BLAS: with fused
   multiply-adds (x86-64 with FMA, ARMv8) they are; without (a portable
   x86-64 build: SSE2, a multiply and an add per step) BLAS, which picks its
   kernels for the CPU it runs on, is faster -- and rounds as the book's
   float32 runs were checked with.  With FMA every element's chain is the
   same whatever the vector width, so AVX2 and AVX-512 builds agree bitwise. */
#if defined(__FMA__) || defined(__aarch64__)
#define FN_FAST_PRODUCTS 1
#else
#define FN_FAST_PRODUCTS 0
#endif

/* vector width and tile: 32 vector registers with AVX-512 (MR*NV = 24
   accumulators: 6 x 4 vectors, or 8 x 3 when the columns are fewer),
   16 otherwise */
#if defined(__AVX512F__)
#define FN_VBYTES 64
#define FN_MR 6
#define FN_MR_NARROW 8   /* rows when a tile has at most 3 vectors */
#define FN_NV 4
#elif defined(__AVX__)
#define FN_VBYTES 32
#define FN_MR 4
#define FN_MR_NARROW 4
#define FN_NV 3
#else
#define FN_VBYTES 16
#define FN_MR 4
#define FN_MR_NARROW 4
#define FN_NV 3
#endif

typedef float fn_vf __attribute__((vector_size(FN_VBYTES)));
typedef float fn_vf_u __attribute__((vector_size(FN_VBYTES), aligned(4)));
typedef double fn_vd __attribute__((vector_size(FN_VBYTES)));
typedef double fn_vd_u __attribute__((vector_size(FN_VBYTES), aligned(8)));

/* One tile: rows i0.., MR_ rows, NV_ vectors from column j0.  MR_ and NV_
   are compile-time constants in each instance, so acc lives in registers. */
#define FN_TILE(NAME, T, V, VU, MR_, NV_)                                        \
static inline void NAME(const T* A, ptrdiff_t ars, ptrdiff_t acs,               \
                        const T* B, ptrdiff_t ldb, T* C, ptrdiff_t ldc,          \
                        ptrdiff_t kk, int accumulate)                            \
{                                                                                \
    enum { L = FN_VBYTES / sizeof(T) };                                          \
    V acc[MR_][NV_];                                                             \
    ptrdiff_t k;                                                                 \
    int r, v;                                                                    \
    for (r = 0; r < MR_; r++)                                                    \
        for (v = 0; v < NV_; v++)                                                \
            acc[r][v] = (V){0};                                                  \
    for (k = 0; k < kk; k++) {                                                   \
        const T* b = B + k * ldb;                                                \
        const T* a = A + k * acs;                                                \
        V bv[NV_];                                                               \
        for (v = 0; v < NV_; v++)                                                \
            bv[v] = *(const VU*)(b + v * L);                                     \
        for (r = 0; r < MR_; r++) {                                              \
            V ar = (V){0} + a[r * ars];                                          \
            for (v = 0; v < NV_; v++)                                            \
                acc[r][v] += ar * bv[v];                                         \
        }                                                                        \
    }                                                                            \
    for (r = 0; r < MR_; r++) {                                                  \
        T* c = C + r * ldc;                                                      \
        for (v = 0; v < NV_; v++) {                                              \
            if (accumulate)                                                      \
                *(VU*)(c + v * L) = *(VU*)(c + v * L) + acc[r][v];               \
            else                                                                 \
                *(VU*)(c + v * L) = acc[r][v];                                   \
        }                                                                        \
    }                                                                            \
}

/* all (rows, vectors) shapes up to (FN_MR, FN_NV) for one type */
#define FN_TILES_NV(P, T, V, VU, NV_)                                            \
    FN_TILE(P##_1_##NV_, T, V, VU, 1, NV_)                                       \
    FN_TILE(P##_2_##NV_, T, V, VU, 2, NV_)                                       \
    FN_TILE(P##_3_##NV_, T, V, VU, 3, NV_)                                       \
    FN_TILE(P##_4_##NV_, T, V, VU, 4, NV_)                                       \
    FN_TILE(P##_5_##NV_, T, V, VU, 5, NV_)                                       \
    FN_TILE(P##_6_##NV_, T, V, VU, 6, NV_)
#define FN_TILES_NARROW(P, T, V, VU, NV_)                                        \
    FN_TILES_NV(P, T, V, VU, NV_)                                                \
    FN_TILE(P##_7_##NV_, T, V, VU, 7, NV_)                                       \
    FN_TILE(P##_8_##NV_, T, V, VU, 8, NV_)

FN_TILES_NARROW(fn_tile_f, float, fn_vf, fn_vf_u, 1)
FN_TILES_NARROW(fn_tile_f, float, fn_vf, fn_vf_u, 2)
FN_TILES_NARROW(fn_tile_f, float, fn_vf, fn_vf_u, 3)
FN_TILES_NV(fn_tile_f, float, fn_vf, fn_vf_u, 4)
FN_TILES_NARROW(fn_tile_d, double, fn_vd, fn_vd_u, 1)
FN_TILES_NARROW(fn_tile_d, double, fn_vd, fn_vd_u, 2)
FN_TILES_NARROW(fn_tile_d, double, fn_vd, fn_vd_u, 3)
FN_TILES_NV(fn_tile_d, double, fn_vd, fn_vd_u, 4)

typedef void (*fn_tile_f_t)(const float*, ptrdiff_t, ptrdiff_t, const float*, ptrdiff_t,
                            float*, ptrdiff_t, ptrdiff_t, int);
typedef void (*fn_tile_d_t)(const double*, ptrdiff_t, ptrdiff_t, const double*, ptrdiff_t,
                            double*, ptrdiff_t, ptrdiff_t, int);

#define FN_ROW(P, NV_) { P##_1_##NV_, P##_2_##NV_, P##_3_##NV_, P##_4_##NV_,        \
                        P##_5_##NV_, P##_6_##NV_, P##_7_##NV_, P##_8_##NV_ }
#define FN_ROW6(P, NV_) { P##_1_##NV_, P##_2_##NV_, P##_3_##NV_, P##_4_##NV_,       \
                         P##_5_##NV_, P##_6_##NV_, 0, 0 }

/* rows per tile: m split into tiles of at most max_rows rows, as even as
   can be (20 rows -> 4 tiles of 5, not 6+6+6+2) */
static inline int fn_rows_per_tile(ptrdiff_t m, int max_rows)
{
    ptrdiff_t tiles = (m + max_rows - 1) / max_rows;
    return tiles > 0 ? (int)((m + tiles - 1) / tiles) : 1;
}

#define FN_DRIVER(NAME, T, TILE_T, P)                                            \
static inline void NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kk,                  \
                        const T* A, ptrdiff_t ars, ptrdiff_t acs,                \
                        const T* B, ptrdiff_t ldb, T* C, ptrdiff_t ldc,          \
                        int accumulate)                                          \
{                                                                                \
    static const TILE_T tiles[4][8] = { FN_ROW(P, 1), FN_ROW(P, 2),              \
                                        FN_ROW(P, 3), FN_ROW6(P, 4) };           \
    enum { L = FN_VBYTES / sizeof(T) };                                          \
    ptrdiff_t nvec = n / L, j0, i0;                                              \
    int mr, nv, rows;                                                            \
    if (m <= 0 || n <= 0)                                                        \
        return;                                                                  \
    if (kk <= 0) {                                                               \
        if (!accumulate)                                                         \
            for (i0 = 0; i0 < m; i0++)                                           \
                memset(C + i0 * ldc, 0, (size_t)n * sizeof(T));                  \
        return;                                                                  \
    }                                                                            \
    /* a panel of B (kk x nv vectors) is reused by every row tile (narrower  \
       panels, to cover more rows per tile, measured slower: B's rows are    \
       then read a few cache lines at a time) */                             \
    for (j0 = 0; j0 < nvec; j0 += nv) {                                          \
        nv = (int)(nvec - j0 < FN_NV ? nvec - j0 : FN_NV);                       \
        mr = fn_rows_per_tile(m, nv == 4 ? FN_MR : FN_MR_NARROW);                \
        for (i0 = 0; i0 < m; i0 += rows) {                                       \
            rows = (int)(m - i0 < mr ? m - i0 : mr);                             \
            tiles[nv - 1][rows - 1](A + i0 * ars, ars, acs, B + j0 * L, ldb,     \
                                    C + i0 * ldc + j0 * L, ldc, kk, accumulate); \
        }                                                                        \
    }                                                                            \
    j0 = nvec * L;                                                               \
    if (j0 < n && nvec > 0 && !accumulate) {                                     \
        mr = fn_rows_per_tile(m, FN_MR_NARROW);                                  \
        /* the last partial vector: a whole vector ending at column n, over    \
           columns already written -- which it rewrites with the same values,  \
           every column being the same chain whichever tile computes it */     \
        for (i0 = 0; i0 < m; i0 += rows) {                                       \
            rows = (int)(m - i0 < mr ? m - i0 : mr);                             \
            tiles[0][rows - 1](A + i0 * ars, ars, acs, B + (n - L), ldb,         \
                               C + i0 * ldc + (n - L), ldc, kk, accumulate);     \
        }                                                                        \
        j0 = n;                                                                  \
    }                                                                            \
    for (i0 = 0; i0 < m; i0++) {                                                 \
        ptrdiff_t j, k;                                                          \
        for (j = j0; j < n; j++) {                                               \
            T s = 0;                                                             \
            for (k = 0; k < kk; k++)                                             \
                s += A[i0 * ars + k * acs] * B[k * ldb + j];                     \
            C[i0 * ldc + j] = accumulate ? C[i0 * ldc + j] + s : s;              \
        }                                                                        \
    }                                                                            \
}

FN_DRIVER(bcast_gemm_f, float, fn_tile_f_t, fn_tile_f)
FN_DRIVER(bcast_gemm_d, double, fn_tile_d_t, fn_tile_d)

/* rowdot: C[n*ldc + r] = sum_{k < kk} A[n*lda + k] * B[r*ldb + k]
 * for n < m, r < rows: every row of A dotted with every row of B -- the
 * product A @ B.T with both operands read along their rows (the dense
 * layers' dx = dz @ w.T, w never transposed or packed).  A tile is NG rows
 * of A by RR rows of B, NG*RR vector accumulators; each dot product is a
 * vector of partial sums over k (k = v, v + L, ...) whose lanes are then
 * added pairwise, then the columns past the last whole vector: a fixed
 * order, the same in every tile. */
#define FN_DOT_TILE(NAME, T, V, VU, NG, RR)                                      \
static void NAME(ptrdiff_t kk, const T* A, ptrdiff_t lda, const T* B,            \
                 ptrdiff_t ldb, T* C, ptrdiff_t ldc)                             \
{                                                                                \
    enum { L = FN_VBYTES / sizeof(T) };                                          \
    const ptrdiff_t kv = kk / L * L;                                             \
    V acc[NG][RR];                                                               \
    ptrdiff_t k;                                                                 \
    int g, q, e, h;                                                              \
    for (g = 0; g < NG; g++)                                                     \
        for (q = 0; q < RR; q++)                                                 \
            acc[g][q] = (V){0};                                                  \
    for (k = 0; k < kv; k += L) {                                                \
        V bv[RR];                                                                \
        for (q = 0; q < RR; q++)                                                 \
            bv[q] = *(const VU*)(B + q * ldb + k);                               \
        for (g = 0; g < NG; g++) {                                               \
            V av = *(const VU*)(A + g * lda + k);                                \
            for (q = 0; q < RR; q++)                                             \
                acc[g][q] += av * bv[q];                                         \
        }                                                                        \
    }                                                                            \
    for (g = 0; g < NG; g++)                                                     \
        for (q = 0; q < RR; q++) {                                               \
            T lanes[L], s;                                                       \
            for (e = 0; e < L; e++)                                              \
                lanes[e] = acc[g][q][e];                                         \
            for (h = L / 2; h >= 1; h /= 2)                                      \
                for (e = 0; e < h; e++)                                          \
                    lanes[e] = lanes[e] + lanes[e + h];                          \
            s = lanes[0];                                                        \
            for (k = kv; k < kk; k++)                                            \
                s += A[g * lda + k] * B[q * ldb + k];                            \
            C[g * ldc + q] = s;                                                  \
        }                                                                        \
}

#define FN_DOT_TILES(P, T, V, VU, RR)                                            \
    FN_DOT_TILE(P##_1_##RR, T, V, VU, 1, RR)                                     \
    FN_DOT_TILE(P##_2_##RR, T, V, VU, 2, RR)                                     \
    FN_DOT_TILE(P##_3_##RR, T, V, VU, 3, RR)                                     \
    FN_DOT_TILE(P##_4_##RR, T, V, VU, 4, RR)                                     \
    FN_DOT_TILE(P##_5_##RR, T, V, VU, 5, RR)                                     \
    FN_DOT_TILE(P##_6_##RR, T, V, VU, 6, RR)                                     \
    FN_DOT_TILE(P##_7_##RR, T, V, VU, 7, RR)                                     \
    FN_DOT_TILE(P##_8_##RR, T, V, VU, 8, RR)

FN_DOT_TILES(fn_dot_f, float, fn_vf, fn_vf_u, 1)
FN_DOT_TILES(fn_dot_f, float, fn_vf, fn_vf_u, 2)
FN_DOT_TILES(fn_dot_d, double, fn_vd, fn_vd_u, 1)
FN_DOT_TILES(fn_dot_d, double, fn_vd, fn_vd_u, 2)

#define FN_DOT_ROW(P, RR) { P##_1_##RR, P##_2_##RR, P##_3_##RR, P##_4_##RR,      \
                            P##_5_##RR, P##_6_##RR, P##_7_##RR, P##_8_##RR }

/* A's rows in groups of at most 8 (as even as can be), B's two by two */
#define FN_ROWDOT(NAME, T, P)                                                    \
static inline void NAME(ptrdiff_t m, ptrdiff_t rows, ptrdiff_t kk,               \
                        const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb,    \
                        T* C, ptrdiff_t ldc)                                     \
{                                                                                \
    typedef void (*dot_t)(ptrdiff_t, const T*, ptrdiff_t, const T*, ptrdiff_t,   \
                          T*, ptrdiff_t);                                        \
    static const dot_t tiles[2][8] = { FN_DOT_ROW(P, 1), FN_DOT_ROW(P, 2) };     \
    int per = fn_rows_per_tile(m, 8), ng, rr;                                    \
    ptrdiff_t r, n0;                                                             \
    for (r = 0; r < rows; r += rr) {                                             \
        rr = rows - r >= 2 ? 2 : 1;                                              \
        for (n0 = 0; n0 < m; n0 += ng) {                                         \
            ng = (int)(m - n0 < per ? m - n0 : per);                             \
            tiles[rr - 1][ng - 1](kk, A + n0 * lda, lda, B + r * ldb, ldb,       \
                                  C + n0 * ldc + r, ldc);                        \
        }                                                                        \
    }                                                                            \
}

FN_ROWDOT(bcast_rowdot_f, float, fn_dot_f)
FN_ROWDOT(bcast_rowdot_d, double, fn_dot_d)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif
