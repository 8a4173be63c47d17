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
#if GCONV_VECTOR_BYTES == 64
/* half a vector (AVX-512's 256-bit registers), for tiles whose channels fill only half of one */
typedef float gconv_half_float __attribute__((vector_size(GCONV_VECTOR_BYTES / 2)));
typedef double gconv_half_double __attribute__((vector_size(GCONV_VECTOR_BYTES / 2)));
#endif
#endif

#endif
