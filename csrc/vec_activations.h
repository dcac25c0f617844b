/* Sigmoid and tanh over a run of elements, z[i] = act(z[i] + bias_i), with
 * glibc's vector math library (libmvec) where the build has it.
 *
 * Why: one scalar expf / tanhf call costs ~5 ns here, so the activation of a
 * 128 x 100 layer took as long as its 20-MFLOP product; libmvec's 16- or
 * 8-wide versions are ~10x faster.  They round differently from the scalar
 * functions (at most 2 ulp apart, measured over 4M arguments); every element
 * goes through the same vector function (the tail is padded into a full
 * vector), so a value's result never depends on its position or on the
 * number of threads.
 *
 * Sigmoid is the reference's split by sign, 1/(1+exp(-z)) for z >= 0 and
 * exp(z)/(1+exp(z)) below, computed as e = exp(-|z|), (z >= 0 ? 1 : e)/(1+e)
 * (the same operations, no branch).
 *
 * Builds without AVX2 / AVX-512, or without glibc >= 2.35 on x86-64 (2.35
 * added tanh to libmvec), take the scalar C library element by element
 * (FN_VEC_ACTIVATIONS = 0), the same formulas.
 * libm.so's linker script pulls libmvec in, so -lm links it.
 */
#ifndef FASTNET_VEC_ACTIVATIONS_H
#define FASTNET_VEC_ACTIVATIONS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35) && (defined(__AVX512F__) || defined(__AVX2__))
#define FN_VEC_ACTIVATIONS 1
#endif
#endif
#ifndef FN_VEC_ACTIVATIONS
#define FN_VEC_ACTIVATIONS 0
#endif

/* The activation codes of every compiled kernel (common.pxd takes its enum
 * from here); fastnet/engines/cpu.py checks them against fastnet/activations.py
 * at import, the one table the NumPy and CUDA engines read. */
#define FN_SIGMOID 0
#define FN_TANH 1
#define FN_RELU 2
#define FN_LINEAR 3

#if FN_VEC_ACTIVATIONS
#include <immintrin.h>

#if defined(__AVX512F__)
/* libmvec's AVX-512 variants (x86-64 vector function ABI names) */
__m512 _ZGVeN16v_expf(__m512);
__m512 _ZGVeN16v_tanhf(__m512);
__m512d _ZGVeN8v_exp(__m512d);
__m512d _ZGVeN8v_tanh(__m512d);
#define FN_W_f 16
#define FN_W_d 8
typedef __m512 fn_v_f;
typedef __m512d fn_v_d;
#define fn_load_f _mm512_loadu_ps
#define fn_store_f _mm512_storeu_ps
#define fn_add_f _mm512_add_ps
#define fn_div_f _mm512_div_ps
#define fn_set1_f _mm512_set1_ps
#define fn_exp_f _ZGVeN16v_expf
#define fn_tanh_f _ZGVeN16v_tanhf
#define fn_load_d _mm512_loadu_pd
#define fn_store_d _mm512_storeu_pd
#define fn_add_d _mm512_add_pd
#define fn_div_d _mm512_div_pd
#define fn_set1_d _mm512_set1_pd
#define fn_exp_d _ZGVeN8v_exp
#define fn_tanh_d _ZGVeN8v_tanh
static inline fn_v_f fn_negabs_f(fn_v_f z) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(z),
                                               _mm512_set1_epi32((int)0x80000000u)));
}
static inline fn_v_d fn_negabs_d(fn_v_d z) {
    return _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(z),
                                               _mm512_set1_epi64((long long)0x8000000000000000ull)));
}
/* z >= 0 ? 1 : e  (false for NaN, as the scalar comparison) */
static inline fn_v_f fn_pick_f(fn_v_f z, fn_v_f e) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ),
                                e, _mm512_set1_ps(1.0f));
}
static inline fn_v_d fn_pick_d(fn_v_d z, fn_v_d e) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(z, _mm512_setzero_pd(), _CMP_GE_OQ),
                                e, _mm512_set1_pd(1.0));
}
#else  /* AVX2 */
__m256 _ZGVdN8v_expf(__m256);
__m256 _ZGVdN8v_tanhf(__m256);
__m256d _ZGVdN4v_exp(__m256d);
__m256d _ZGVdN4v_tanh(__m256d);
#define FN_W_f 8
#define FN_W_d 4
typedef __m256 fn_v_f;
typedef __m256d fn_v_d;
#define fn_load_f _mm256_loadu_ps
#define fn_store_f _mm256_storeu_ps
#define fn_add_f _mm256_add_ps
#define fn_div_f _mm256_div_ps
#define fn_set1_f _mm256_set1_ps
#define fn_exp_f _ZGVdN8v_expf
#define fn_tanh_f _ZGVdN8v_tanhf
#define fn_load_d _mm256_loadu_pd
#define fn_store_d _mm256_storeu_pd
#define fn_add_d _mm256_add_pd
#define fn_div_d _mm256_div_pd
#define fn_set1_d _mm256_set1_pd
#define fn_exp_d _ZGVdN4v_exp
#define fn_tanh_d _ZGVdN4v_tanh
static inline fn_v_f fn_negabs_f(fn_v_f z) { return _mm256_or_ps(z, _mm256_set1_ps(-0.0f)); }
static inline fn_v_d fn_negabs_d(fn_v_d z) { return _mm256_or_pd(z, _mm256_set1_pd(-0.0)); }
static inline fn_v_f fn_pick_f(fn_v_f z, fn_v_f e) {
    return _mm256_blendv_ps(e, _mm256_set1_ps(1.0f),
                            _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ));
}
static inline fn_v_d fn_pick_d(fn_v_d z, fn_v_d e) {
    return _mm256_blendv_pd(e, _mm256_set1_pd(1.0),
                            _mm256_cmp_pd(z, _mm256_setzero_pd(), _CMP_GE_OQ));
}
#endif

static inline fn_v_f fn_act_v_f(fn_v_f z, int act) {
    if (act == FN_TANH) return fn_tanh_f(z);
    fn_v_f e = fn_exp_f(fn_negabs_f(z));
    return fn_div_f(fn_pick_f(z, e), fn_add_f(fn_set1_f(1.0f), e));
}
static inline fn_v_d fn_act_v_d(fn_v_d z, int act) {
    if (act == FN_TANH) return fn_tanh_d(z);
    fn_v_d e = fn_exp_d(fn_negabs_d(z));
    return fn_div_d(fn_pick_d(z, e), fn_add_d(fn_set1_d(1.0), e));
}

/* z[i] = act(z[i] + (b ? b[i] : bias)) for i < n; act FN_SIGMOID or FN_TANH.
 * One definition for float (S = f) and double (S = d). */
#define FN_DEFINE_BIAS_ACT(S, T)                                               \
static void fn_bias_act_##S(T* z, const T* b, T bias, ptrdiff_t n, int act) {  \
    ptrdiff_t i = 0;                                                           \
    fn_v_##S vb = fn_set1_##S(bias);                                           \
    for (; i + FN_W_##S <= n; i += FN_W_##S) {                                 \
        fn_v_##S v = fn_add_##S(fn_load_##S(z + i), b ? fn_load_##S(b + i) : vb); \
        fn_store_##S(z + i, fn_act_v_##S(v, act));                             \
    }                                                                          \
    if (i < n) {                                                               \
        /* the tail through the same vector function, padded with zeros */    \
        T tz[FN_W_##S], tb[FN_W_##S];                                          \
        ptrdiff_t k, m = n - i;                                                \
        for (k = 0; k < FN_W_##S; k++) {                                       \
            tz[k] = k < m ? z[i + k] : (T)0;                                   \
            tb[k] = b ? (k < m ? b[i + k] : (T)0) : bias;                      \
        }                                                                      \
        fn_store_##S(tz, fn_act_v_##S(fn_add_##S(fn_load_##S(tz), fn_load_##S(tb)), act)); \
        memcpy(z + i, tz, (size_t)m * sizeof(T));                              \
    }                                                                          \
}
FN_DEFINE_BIAS_ACT(f, float)
FN_DEFINE_BIAS_ACT(d, double)

#else  /* no vector library: the scalar C library, element by element */
static inline float fn_exp_f(float v) { return expf(v); }
static inline double fn_exp_d(double v) { return exp(v); }
static inline float fn_tanh_f(float v) { return tanhf(v); }
static inline double fn_tanh_d(double v) { return tanh(v); }
#define FN_DEFINE_BIAS_ACT(S, T)                                               \
static void fn_bias_act_##S(T* z, const T* b, T bias, ptrdiff_t n, int act) {  \
    ptrdiff_t i;                                                               \
    for (i = 0; i < n; i++) {                                                  \
        T v = z[i] + (b ? b[i] : bias), e;                                     \
        if (act == FN_TANH) { z[i] = fn_tanh_##S(v); continue; }               \
        e = fn_exp_##S(v < 0 ? v : -v);   /* exp(-|v|) */                      \
        z[i] = (v >= 0 ? (T)1 : e) / ((T)1 + e);                               \
    }                                                                          \
}
FN_DEFINE_BIAS_ACT(f, float)
FN_DEFINE_BIAS_ACT(d, double)
#endif

#endif
