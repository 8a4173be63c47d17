/* Rows of the lowered input (im2col: conv2d_lowered, pack.pxi's _lower_rows) of maps at most a vector wide,
 * apart from the micro-kernels as BLIS keeps its packing apart.
 *
 * Such a call lowers C_in * KH * KW * H_out rows of a few values each (3x3 512->512 on 7x7: 32k rows of 7);
 * a memset, a memcpy and a memset per row were three library calls for 28 bytes, 12% of the call. With
 * AVX-512 a row is one or two masked loads (nothing read outside the row's run), every other value taken at
 * stride 2 by a permute, an expand into the run's lanes and one masked store.
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_GEMM_LOWER_H
#define GCONV_GEMM_LOWER_H

#include "../isa.h"

/* dst[i] = run[(i - lo) * step] for lo <= i < hi, zeros for the other i < width (0 <= lo <= hi <= width). */
static void gconv_lower_row_float(const float *GCONV_RESTRICT run, Py_ssize_t step, Py_ssize_t lo, Py_ssize_t hi,
                                  Py_ssize_t width, float *GCONV_RESTRICT dst)
{
    Py_ssize_t i;
#if GCONV_VECTOR_BYTES == 64
    if (width <= 16 && (step == 1 || step == 2)) {
        const __mmask16 lanes = (__mmask16)(gconv_lanes16(hi) & ~gconv_lanes16(lo));
        __m512 values;
        if (step == 1) {
            values = _mm512_maskz_expandloadu_ps(lanes, run);
        } else {
            const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            const Py_ssize_t need = 2 * (hi - lo) - 1; /* up to the run's last value */
            const __m512 a = _mm512_maskz_loadu_ps(gconv_lanes16(need), run);
            const __m512 b =
                need > 16 ? _mm512_maskz_loadu_ps(gconv_lanes16(need - 16), run + 16) : _mm512_setzero_ps();
            values = _mm512_maskz_expand_ps(lanes, _mm512_permutex2var_ps(a, even, b));
        }
        _mm512_mask_storeu_ps(dst, gconv_lanes16(width), values);
        return;
    }
#endif
    memset(dst, 0, lo * sizeof(float));
    if (step == 1)
        memcpy(dst + lo, run, (hi - lo) * sizeof(float));
    else
        for (i = lo; i < hi; i++) dst[i] = run[(i - lo) * step];
    memset(dst + hi, 0, (width - hi) * sizeof(float));
}

static void gconv_lower_row_double(const double *GCONV_RESTRICT run, Py_ssize_t step, Py_ssize_t lo,
                                   Py_ssize_t hi, Py_ssize_t width, double *GCONV_RESTRICT dst)
{
    Py_ssize_t i;
#if GCONV_VECTOR_BYTES == 64
    if (width <= 8 && step == 1) {
        const __mmask8 lanes = (__mmask8)(gconv_lanes16(hi) & ~gconv_lanes16(lo));
        _mm512_mask_storeu_pd(dst, (__mmask8)gconv_lanes16(width), _mm512_maskz_expandloadu_pd(lanes, run));
        return;
    }
#endif
    memset(dst, 0, lo * sizeof(double));
    if (step == 1)
        memcpy(dst + lo, run, (hi - lo) * sizeof(double));
    else
        for (i = lo; i < hi; i++) dst[i] = run[(i - lo) * step];
    memset(dst + hi, 0, (width - hi) * sizeof(double));
}

#endif
