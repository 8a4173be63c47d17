/* Lane order of the dwconv family's twin tiles (two groups per vector, tile.h), apart from the micro-kernels
 * as BLIS keeps its packing apart: a pair of groups' values, a's then b's as a slab or a store holds them, to
 * and from twin order, a_0, b_0, a_1, b_1, ..., in place, pixel by pixel.
 *
 * The slab of a pair of groups is packed as any slab (the pair's input channels in order, by the register
 * transposes of transpose.h) and then interleaved, so one 64-bit broadcast of the tile reads input ic of both
 * groups; the tile's outputs are de-interleaved before they are stored. With AVX-512 (the only level with
 * twin tiles) pixels of up to a vector are permuted in registers, several to a vector where they are shorter.
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_DWCONV_INTERLEAVE_H
#define GCONV_DWCONV_INTERLEAVE_H

#include "../isa.h"

/* Where lane k of a pixel of 2 * half values comes from: to twin order, lane 2j + g takes value g * half + j;
 * back, lane g * half + j takes 2j + g. */
GCONV_INLINE Py_ssize_t gconv_twin_source(Py_ssize_t k, Py_ssize_t half, int to_twin)
{
    return to_twin ? (k % 2) * half + k / 2 : 2 * (k % half) + k / half;
}

/* The element loop: each of n pixels of 2 * half values through tmp (2 * half values of scratch). */
#define GCONV_DEFINE_TWIN_LANES_LOOP(T)                                                              \
    static void gconv_twin_lanes_loop_##T(T *data, Py_ssize_t n, Py_ssize_t half, int to_twin, T *tmp) \
    {                                                                                                \
        const Py_ssize_t len = 2 * half;                                                             \
        Py_ssize_t i, k;                                                                             \
        for (i = 0; i < n; i++) {                                                                    \
            T *pixel = data + i * len;                                                               \
            memcpy(tmp, pixel, len * sizeof(T));                                                     \
            for (k = 0; k < len; k++) pixel[k] = tmp[gconv_twin_source(k, half, to_twin)];           \
        }                                                                                            \
    }
GCONV_DEFINE_TWIN_LANES_LOOP(float)
GCONV_DEFINE_TWIN_LANES_LOOP(double)

/* n pixels of 2 * half values each, data[i * 2 * half + k], to twin order (to_twin) or back, in place. */
static void gconv_twin_lanes_float(float *data, Py_ssize_t n, Py_ssize_t half, int to_twin, float *tmp)
{
    if (half == 1)
        return; /* a, b is twin order already */
#if GCONV_VECTOR_BYTES == 64
    const Py_ssize_t len = 2 * half;
    if (16 % len == 0) { /* 16 / len whole pixels to a vector, one permute each */
        int index[16], k;
        Py_ssize_t i, total = n * len;
        for (k = 0; k < 16; k++) index[k] = (int)(k - k % len + gconv_twin_source(k % len, half, to_twin));
        const __m512i permute = _mm512_loadu_si512(index);
        for (i = 0; i < total; i += 16) {
            const __mmask16 lanes = gconv_lanes16(total - i);
            _mm512_mask_storeu_ps(data + i, lanes,
                                  _mm512_permutexvar_ps(permute, _mm512_maskz_loadu_ps(lanes, data + i)));
        }
        return;
    }
#endif
    gconv_twin_lanes_loop_float(data, n, half, to_twin, tmp);
}

static void gconv_twin_lanes_double(double *data, Py_ssize_t n, Py_ssize_t half, int to_twin, double *tmp)
{
    if (half == 1)
        return;
#if GCONV_VECTOR_BYTES == 64
    const Py_ssize_t len = 2 * half;
    if (8 % len == 0) {
        long long index[8];
        int k;
        Py_ssize_t i, total = n * len;
        for (k = 0; k < 8; k++) index[k] = (long long)(k - k % len + gconv_twin_source(k % len, half, to_twin));
        const __m512i permute = _mm512_loadu_si512(index);
        for (i = 0; i < total; i += 8) {
            const __mmask8 lanes = (__mmask8)gconv_lanes16(total - i < 8 ? total - i : 8);
            _mm512_mask_storeu_pd(data + i, lanes,
                                  _mm512_permutexvar_pd(permute, _mm512_maskz_loadu_pd(lanes, data + i)));
        }
        return;
    }
#endif
    gconv_twin_lanes_loop_double(data, n, half, to_twin, tmp);
}

#endif
