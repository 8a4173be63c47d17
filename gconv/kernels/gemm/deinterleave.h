/* De-interleaving for the lowered input of patch convolutions (kernel no wider than its stride: 2x2 s2, 4x4 s4,
 * 1x1 s2), apart from the micro-kernels as BLIS keeps its packing apart: a row of the input holds the row's
 * patches side by side, column phase after column phase, and each phase is a lowered row of its own.
 *
 * Element by element that is a 4-byte load and store per value (the 4x4 s4 stem's lowering took as long as a
 * third of its products); with AVX-512, float32 rows of stride 2 and 4 are split 16 patches at a time by
 * two-source permutes (vpermt2ps), one level per factor of 2.
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_GEMM_DEINTERLEAVE_H
#define GCONV_GEMM_DEINTERLEAVE_H

#include "../isa.h"


/* dst[j * dst_pitch + i] = src[i * stride + j] for patches i < n and phases j < phases <= stride (src holds
 * (n - 1) * stride + phases values). */
static void gconv_deinterleave_float(const float *GCONV_RESTRICT src, Py_ssize_t n, Py_ssize_t stride,
                                     Py_ssize_t phases, float *GCONV_RESTRICT dst, Py_ssize_t dst_pitch)
{
    Py_ssize_t i = 0, j;
#if GCONV_VECTOR_BYTES == 64
    /* lanes 0, 2, ..., 30 and 1, 3, ..., 31 of two vectors side by side */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    /* the last n % 16 patches by masked loads and stores, reading nothing past the last phase of the last
     * patch, src[(n - 1) * stride + phases - 1] (a row's end: 1x1 s2 on an odd width) */
    if (stride == 2) {
        for (; i < n; i += 16) {
            const Py_ssize_t m = n - i < 16 ? n - i : 16, need = 2 * (m - 1) + phases;
            const __m512 a = _mm512_maskz_loadu_ps(gconv_lanes16(need), src + 2 * i);
            const __m512 b = _mm512_maskz_loadu_ps(gconv_lanes16(need - 16), src + 2 * i + 16);
            _mm512_mask_storeu_ps(dst + i, gconv_lanes16(m), _mm512_permutex2var_ps(a, even, b));
            if (phases > 1)
                _mm512_mask_storeu_ps(dst + dst_pitch + i, gconv_lanes16(m), _mm512_permutex2var_ps(a, odd, b));
        }
    } else if (stride == 4 && phases == 4) {
        for (; i < n; i += 16) {
            const Py_ssize_t m = n - i < 16 ? n - i : 16;
            const __mmask16 out = gconv_lanes16(m);
            const float *p = src + 4 * i;
            const __m512 a0 = _mm512_maskz_loadu_ps(gconv_lanes16(4 * m), p);
            const __m512 a1 = _mm512_maskz_loadu_ps(gconv_lanes16(4 * m - 16), p + 16);
            const __m512 a2 = _mm512_maskz_loadu_ps(gconv_lanes16(4 * m - 32), p + 32);
            const __m512 a3 = _mm512_maskz_loadu_ps(gconv_lanes16(4 * m - 48), p + 48);
            /* phases 0 and 2 alternating, then 1 and 3, for patches 0-7 and 8-15 */
            const __m512 e01 = _mm512_permutex2var_ps(a0, even, a1), o01 = _mm512_permutex2var_ps(a0, odd, a1);
            const __m512 e23 = _mm512_permutex2var_ps(a2, even, a3), o23 = _mm512_permutex2var_ps(a2, odd, a3);
            _mm512_mask_storeu_ps(dst + i, out, _mm512_permutex2var_ps(e01, even, e23));
            _mm512_mask_storeu_ps(dst + dst_pitch + i, out, _mm512_permutex2var_ps(o01, even, o23));
            _mm512_mask_storeu_ps(dst + 2 * dst_pitch + i, out, _mm512_permutex2var_ps(e01, odd, e23));
            _mm512_mask_storeu_ps(dst + 3 * dst_pitch + i, out, _mm512_permutex2var_ps(o01, odd, o23));
        }
    }
#endif
    for (; i < n; i++)
        for (j = 0; j < phases; j++)
            dst[j * dst_pitch + i] = src[i * stride + j];
}

static void gconv_deinterleave_double(const double *GCONV_RESTRICT src, Py_ssize_t n, Py_ssize_t stride,
                                      Py_ssize_t phases, double *GCONV_RESTRICT dst, Py_ssize_t dst_pitch)
{
    Py_ssize_t i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < phases; j++)
            dst[j * dst_pitch + i] = src[i * stride + j];
}

#endif
