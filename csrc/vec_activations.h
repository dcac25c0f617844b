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

#define FN_SIGMOID 0
#define FN_TANH 1

#if FN_VEC_ACTIVATIONS
#include <immintrin.h>

#if defined(__AVX512F__)
/* libmvec's AVX-512 variants (x86-64 vector function ABI names) */
__m512 _ZGVeN16v_expf(__m512);
__m512 _ZGVeN16v_tanhf(__m512);
__m512d _ZGVeN8v_exp(__m512d);
__m512d _ZGVeN8v_tanh(__m512d);
#define FN_VF 16
#define FN_VD 8
typedef __m512 fn_vf;
typedef __m512d fn_vd;
#define fn_loadf _mm512_loadu_ps
#define fn_storef _mm512_storeu_ps
#define fn_addf _mm512_add_ps
#define fn_divf _mm512_div_ps
#define fn_set1f _mm512_set1_ps
#define fn_expf _ZGVeN16v_expf
#define fn_tanhf _ZGVeN16v_tanhf
#define fn_loadd _mm512_loadu_pd
#define fn_stored _mm512_storeu_pd
#define fn_addd _mm512_add_pd
#define fn_divd _mm512_div_pd
#define fn_set1d _mm512_set1_pd
#define fn_expd _ZGVeN8v_exp
#define fn_tanhd _ZGVeN8v_tanh
static inline fn_vf fn_negabsf(fn_vf z) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(z),
                                               _mm512_set1_epi32((int)0x80000000u)));
}
static inline fn_vd fn_negabsd(fn_vd z) {
    return _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(z),
                                               _mm512_set1_epi64((long long)0x8000000000000000ull)));
}
/* z >= 0 ? 1 : e  (false for NaN, as the scalar comparison) */
static inline fn_vf fn_pickf(fn_vf z, fn_vf e) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ),
                                e, _mm512_set1_ps(1.0f));
}
static inline fn_vd fn_pickd(fn_vd z, fn_vd e) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(z, _mm512_setzero_pd(), _CMP_GE_OQ),
                                e, _mm512_set1_pd(1.0));
}
#else  /* AVX2 */
__m256 _ZGVdN8v_expf(__m256);
__m256 _ZGVdN8v_tanhf(__m256);
__m256d _ZGVdN4v_exp(__m256d);
__m256d _ZGVdN4v_tanh(__m256d);
#define FN_VF 8
#define FN_VD 4
typedef __m256 fn_vf;
typedef __m256d fn_vd;
#define fn_loadf _mm256_loadu_ps
#define fn_storef _mm256_storeu_ps
#define fn_addf _mm256_add_ps
#define fn_divf _mm256_div_ps
#define fn_set1f _mm256_set1_ps
#define fn_expf _ZGVdN8v_expf
#define fn_tanhf _ZGVdN8v_tanhf
#define fn_loadd _mm256_loadu_pd
#define fn_stored _mm256_storeu_pd
#define fn_addd _mm256_add_pd
#define fn_divd _mm256_div_pd
#define fn_set1d _mm256_set1_pd
#define fn_expd _ZGVdN4v_exp
#define fn_tanhd _ZGVdN4v_tanh
static inline fn_vf fn_negabsf(fn_vf z) { return _mm256_or_ps(z, _mm256_set1_ps(-0.0f)); }
static inline fn_vd fn_negabsd(fn_vd z) { return _mm256_or_pd(z, _mm256_set1_pd(-0.0)); }
static inline fn_vf fn_pickf(fn_vf z, fn_vf e) {
    return _mm256_blendv_ps(e, _mm256_set1_ps(1.0f),
                            _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ));
}
static inline fn_vd fn_pickd(fn_vd z, fn_vd e) {
    return _mm256_blendv_pd(e, _mm256_set1_pd(1.0),
                            _mm256_cmp_pd(z, _mm256_setzero_pd(), _CMP_GE_OQ));
}
#endif

static inline fn_vf fn_act_vf(fn_vf z, int act) {
    if (act == FN_TANH) return fn_tanhf(z);
    fn_vf e = fn_expf(fn_negabsf(z));
    return fn_divf(fn_pickf(z, e), fn_addf(fn_set1f(1.0f), e));
}
static inline fn_vd fn_act_vd(fn_vd z, int act) {
    if (act == FN_TANH) return fn_tanhd(z);
    fn_vd e = fn_expd(fn_negabsd(z));
    return fn_divd(fn_pickd(z, e), fn_addd(fn_set1d(1.0), e));
}

/* z[i] = act(z[i] + (b ? b[i] : bias)) for i < n; act FN_SIGMOID or FN_TANH */
static void fn_bias_act_f(float* z, const float* b, float bias, ptrdiff_t n, int act) {
    ptrdiff_t i = 0;
    fn_vf vb = fn_set1f(bias);
    for (; i + FN_VF <= n; i += FN_VF) {
        fn_vf v = fn_addf(fn_loadf(z + i), b ? fn_loadf(b + i) : vb);
        fn_storef(z + i, fn_act_vf(v, act));
    }
    if (i < n) {
        float tz[FN_VF], tb[FN_VF];
        ptrdiff_t k, m = n - i;
        for (k = 0; k < FN_VF; k++) {
            tz[k] = k < m ? z[i + k] : 0.0f;
            tb[k] = b ? (k < m ? b[i + k] : 0.0f) : bias;
        }
        fn_storef(tz, fn_act_vf(fn_addf(fn_loadf(tz), fn_loadf(tb)), act));
        memcpy(z + i, tz, (size_t)m * sizeof(float));
    }
}

static void fn_bias_act_d(double* z, const double* b, double bias, ptrdiff_t n, int act) {
    ptrdiff_t i = 0;
    fn_vd vb = fn_set1d(bias);
    for (; i + FN_VD <= n; i += FN_VD) {
        fn_vd v = fn_addd(fn_loadd(z + i), b ? fn_loadd(b + i) : vb);
        fn_stored(z + i, fn_act_vd(v, act));
    }
    if (i < n) {
        double tz[FN_VD], tb[FN_VD];
        ptrdiff_t k, m = n - i;
        for (k = 0; k < FN_VD; k++) {
            tz[k] = k < m ? z[i + k] : 0.0;
            tb[k] = b ? (k < m ? b[i + k] : 0.0) : bias;
        }
        fn_stored(tz, fn_act_vd(fn_addd(fn_loadd(tz), fn_loadd(tb)), act));
        memcpy(z + i, tz, (size_t)m * sizeof(double));
    }
}

#else  /* no vector library: the scalar C library, element by element */
static void fn_bias_act_f(float* z, const float* b, float bias, ptrdiff_t n, int act) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) {
        float v = z[i] + (b ? b[i] : bias), e;
        if (act == FN_TANH) { z[i] = tanhf(v); continue; }
        e = expf(-fabsf(v));
        z[i] = (v >= 0 ? 1.0f : e) / (1.0f + e);
    }
}
static void fn_bias_act_d(double* z, const double* b, double bias, ptrdiff_t n, int act) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) {
        double v = z[i] + (b ? b[i] : bias), e;
        if (act == FN_TANH) { z[i] = tanh(v); continue; }
        e = exp(-fabs(v));
        z[i] = (v >= 0 ? 1.0 : e) / (1.0 + e);
    }
}
#endif

#endif
