/* Instruction-set level of this build (from the compiler flags), vector width and type, and the
 * portability macros every micro-kernel family uses. Included after Python.h: indices are Py_ssize_t. */
#ifndef GCONV_ISA_H
#define GCONV_ISA_H

#include <string.h>

#if defined(__AVX512F__)
#define GCONV_VECTOR_BYTES 64
#define GCONV_VECTORS_PER_ROW 2
#define GCONV_ISA_NAME "avx512"
#elif defined(__AVX2__)
#define GCONV_VECTOR_BYTES 32
#define GCONV_VECTORS_PER_ROW 1
#define GCONV_ISA_NAME "avx2"
#else
#define GCONV_VECTOR_BYTES 16
#define GCONV_VECTORS_PER_ROW 1
#define GCONV_ISA_NAME "baseline"
#endif


#if defined(__GNUC__) || defined(__clang__)
#define GCONV_RESTRICT __restrict__
#define GCONV_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define GCONV_RESTRICT __restrict
#define GCONV_INLINE static __forceinline
#else
#define GCONV_RESTRICT
#define GCONV_INLINE static inline
#endif

/* A compile-time check in any C dialect: a tile size changed in one place but not in the kernels that
 * spell it out fails the build instead of overrunning a buffer. */
#define GCONV_STATIC_ASSERT(cond, name) typedef char gconv_static_assert_##name[(cond) ? 1 : -1]

#if defined(__GNUC__) || defined(__clang__)
/* GCC/clang vector extensions: explicit vector accumulators stay in registers */
typedef float gconv_vec_float __attribute__((vector_size(GCONV_VECTOR_BYTES)));
typedef double gconv_vec_double __attribute__((vector_size(GCONV_VECTOR_BYTES)));

/* The first n < lanes values at p in a vector, the other lanes zero, reading nothing past p[n - 1]: a row's
 * tail (masked loads with AVX2 and AVX-512, element by element below them). */
#if GCONV_VECTOR_BYTES >= 32
#include <immintrin.h>
#endif
GCONV_INLINE gconv_vec_float gconv_load_tail_float(const float *p, int n)
{
#if GCONV_VECTOR_BYTES == 64
    return (gconv_vec_float)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#elif GCONV_VECTOR_BYTES == 32
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return (gconv_vec_float)_mm256_maskload_ps(p, mask);
#else
    gconv_vec_float v = {0};
    int i;
    for (i = 0; i < n; i++) v[i] = p[i];
    return v;
#endif
}

GCONV_INLINE gconv_vec_double gconv_load_tail_double(const double *p, int n)
{
#if GCONV_VECTOR_BYTES == 64
    return (gconv_vec_double)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), p);
#elif GCONV_VECTOR_BYTES == 32
    const __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    return (gconv_vec_double)_mm256_maskload_pd(p, mask);
#else
    gconv_vec_double v = {0};
    int i;
    for (i = 0; i < n; i++) v[i] = p[i];
    return v;
#endif
}
#endif

/* the first m lanes of 16 (none for m <= 0, all for m >= 16): masks for ragged ends of float32 rows, any
 * compiler */
#if GCONV_VECTOR_BYTES == 64
#include <immintrin.h>
GCONV_INLINE __mmask16 gconv_lanes16(Py_ssize_t m)
{
    return m <= 0 ? (__mmask16)0 : m >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << m) - 1);
}
#endif

#endif
