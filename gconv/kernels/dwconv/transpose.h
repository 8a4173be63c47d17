/* Matrix transposes for the dwconv family's packing (NCHW rows to [column][channel] slabs and back), apart
 * from its micro-kernels as BLIS keeps packm apart: 8 x 8 float32 and 4 x 4 float64 register transposes
 * where AVX2 is there, element loops for the edges and other levels.
 *
 * A channel-vectorised tile reads a vector of channels per pixel; an NCHW tensor holds a row of pixels per
 * channel. Element by element, that transpose costs more than the depthwise multiply-adds themselves (a
 * 4-byte store every 32 bytes), so whole blocks are moved in registers.
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_DWCONV_TRANSPOSE_H
#define GCONV_DWCONV_TRANSPOSE_H

#include "../isa.h"

#if defined(__AVX2__)
#include <immintrin.h>

/* 8 x 8 block: dst[c * ds + r] = src[r * ss + c] */
GCONV_INLINE void gconv_transpose_block_float(const float *GCONV_RESTRICT src, Py_ssize_t ss,
                                              float *GCONV_RESTRICT dst, Py_ssize_t ds)
{
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss);
    __m256 r2 = _mm256_loadu_ps(src + 2 * ss), r3 = _mm256_loadu_ps(src + 3 * ss);
    __m256 r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(s3, s7, 0x31));
}

/* 4 x 4 block: dst[c * ds + r] = src[r * ss + c] */
GCONV_INLINE void gconv_transpose_block_double(const double *GCONV_RESTRICT src, Py_ssize_t ss,
                                               double *GCONV_RESTRICT dst, Py_ssize_t ds)
{
    __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + ss);
    __m256d r2 = _mm256_loadu_pd(src + 2 * ss), r3 = _mm256_loadu_pd(src + 3 * ss);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(dst + ds, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(dst + 2 * ds, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(dst + 3 * ds, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#define GCONV_TRANSPOSE_BLOCK_FLOAT 8
#define GCONV_TRANSPOSE_BLOCK_DOUBLE 4
#else
#define GCONV_TRANSPOSE_BLOCK_FLOAT 0 /* no register blocks: element loops only */
#define GCONV_TRANSPOSE_BLOCK_DOUBLE 0
#endif

/* dst[c * ds + r] = src[r * ss + c] for r < rows, c < cols: whole blocks in registers, the edges by element. */
#define GCONV_DEFINE_TRANSPOSE(T, BLOCK)                                                             \
    GCONV_INLINE void gconv_transpose_##T(const T *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t rows,  \
                                          Py_ssize_t cols, T *GCONV_RESTRICT dst, Py_ssize_t ds)     \
    {                                                                                                \
        Py_ssize_t r = 0, c, r0, c0;                                                                 \
        if (BLOCK)                                                                                   \
            for (; r + (BLOCK) <= rows; r += (BLOCK)) {                                              \
                for (c = 0; c + (BLOCK) <= cols; c += (BLOCK))                                       \
                    GCONV_TRANSPOSE_BLOCK_CALL(T, src + r * ss + c, ss, dst + c * ds + r, ds);       \
                for (c0 = c; c0 < cols; c0++)                                                        \
                    for (r0 = r; r0 < r + (BLOCK); r0++) dst[c0 * ds + r0] = src[r0 * ss + c0];      \
            }                                                                                        \
        for (; r < rows; r++)                                                                        \
            for (c = 0; c < cols; c++) dst[c * ds + r] = src[r * ss + c];                            \
    }

#if defined(__AVX2__)
#define GCONV_TRANSPOSE_BLOCK_CALL(T, s, ss, d, ds) gconv_transpose_block_##T(s, ss, d, ds)
#else
#define GCONV_TRANSPOSE_BLOCK_CALL(T, s, ss, d, ds) ((void)0) /* never reached: BLOCK is 0 */
#endif

GCONV_DEFINE_TRANSPOSE(float, GCONV_TRANSPOSE_BLOCK_FLOAT)
GCONV_DEFINE_TRANSPOSE(double, GCONV_TRANSPOSE_BLOCK_DOUBLE)

#endif
