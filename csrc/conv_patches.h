/* conv_patches: im2col and its adjoint (col2im) for conv.pxd.
 *
 * These are copies and sums, no arithmetic worth a comment; they are in C
 * because the same loops written in Cython and inlined into an OpenMP
 * region ran 3x slower (the outlined region reloads the sizes from memory
 * after every store, so nothing is vectorised).  Plain functions with their
 * own locals do not have that problem.
 *
 * (noinline: one call per sample costs nothing, and profiles then show
 * the copies apart from the products.)
 *
 * One sample, C-order arrays; the kernel flip of Theano's convolution is
 * folded in: patch element (c, p, q) of output position (i, j) is
 * x[c, i+KH-1-p, j+KW-1-q].
 */
#ifndef FASTNET_CONV_PATCHES_H
#define FASTNET_CONV_PATCHES_H

#include <stddef.h>
#include <string.h>

#define FN_PATCHES(SUFFIX, T)                                                    \
/* cols[(c,p,q), i*OW+j] = x[c, i+KH-1-p, j+KW-1-q]; columns OH*OW..ld-1 zero */ \
static __attribute__((noinline)) void im2col_##SUFFIX(const T* x, T* cols, ptrdiff_t ld, ptrdiff_t C,     \
                            ptrdiff_t H, ptrdiff_t W, ptrdiff_t KH, ptrdiff_t KW) \
{                                                                                \
    const ptrdiff_t OH = H - KH + 1, OW = W - KW + 1;                            \
    ptrdiff_t c, p, q, i, j;                                                     \
    for (c = 0; c < C; c++)                                                      \
        for (p = 0; p < KH; p++)                                                 \
            for (q = 0; q < KW; q++) {                                           \
                T* row = cols + ((c * KH + p) * KW + q) * ld;                    \
                const T* src = x + (c * H + KH - 1 - p) * W + (KW - 1 - q);      \
                if (OW >= 8)                                                     \
                    /* 8-element pieces, the last one overlapping the one       \
                       before: a constant-size copy per piece, no loop tail */   \
                    for (i = 0; i < OH; i++) {                                   \
                        for (j = 0; j + 8 < OW; j += 8)                          \
                            memcpy(row + i * OW + j, src + i * W + j, 8 * sizeof(T)); \
                        memcpy(row + i * OW + OW - 8, src + i * W + OW - 8,      \
                               8 * sizeof(T));                                   \
                    }                                                            \
                else                                                             \
                    for (i = 0; i < OH; i++)                                     \
                        for (j = 0; j < OW; j++)                                 \
                            row[i * OW + j] = src[i * W + j];                    \
                if (ld > OH * OW)                                                \
                    memset(row + OH * OW, 0, (size_t)(ld - OH * OW) * sizeof(T)); \
            }                                                                    \
}                                                                                \
                                                                                 \
/* dx = 0, then dx[c, i+KH-1-p, j+KW-1-q] += dcols[(c,p,q), i*OW+j]              \
   (rows of dcols ld apart): the adjoint of im2col */                            \
static __attribute__((noinline)) void col2im_##SUFFIX(const T* dcols, ptrdiff_t ld, T* dx, ptrdiff_t C,   \
                            ptrdiff_t H, ptrdiff_t W, ptrdiff_t KH, ptrdiff_t KW) \
{                                                                                \
    const ptrdiff_t OH = H - KH + 1, OW = W - KW + 1;                            \
    ptrdiff_t c, p, q, i, j;                                                     \
    memset(dx, 0, (size_t)(C * H * W) * sizeof(T));                              \
    for (c = 0; c < C; c++)                                                      \
        for (p = 0; p < KH; p++)                                                 \
            for (q = 0; q < KW; q++) {                                           \
                const T* row = dcols + ((c * KH + p) * KW + q) * ld;             \
                T* dst = dx + (c * H + KH - 1 - p) * W + (KW - 1 - q);           \
                for (i = 0; i < OH; i++)                                         \
                    for (j = 0; j < OW; j++)                                     \
                        dst[i * W + j] += row[i * OW + j];                       \
            }                                                                    \
}

FN_PATCHES(f, float)
FN_PATCHES(d, double)

#endif
