/* Register-tiled convolution micro-kernels: one source, compiled once per instruction-set level.
 *
 * A tile is OCB output channels x ROWS output rows x TW output columns, accumulated in registers over
 * every (input channel, kh, kw) tap, then stored once with the bias. The input comes from a per-thread
 * packed slab (see _kernels.pyx): zero padding is already in it and, for stride s, its columns are split
 * into s phases so that the TW columns a tap reads are contiguous. Tile shapes with OCB * ROWS = 8 keep
 * eight accumulator rows; the caller picks OCB from the output channels per group (depthwise: OCB = 1).
 * TW is two vectors with AVX-512 (32 registers) and one vector below it (16 registers).
 */
#ifndef GCONV_MICROKERNEL_H
#define GCONV_MICROKERNEL_H

/* Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
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

#define GCONV_TILE_W_F32 (GCONV_VECTORS_PER_ROW * GCONV_VECTOR_BYTES / 4)
#define GCONV_TILE_W_F64 (GCONV_VECTORS_PER_ROW * GCONV_VECTOR_BYTES / 8)

#if defined(__GNUC__) || defined(__clang__)
#define GCONV_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define GCONV_RESTRICT __restrict
#else
#define GCONV_RESTRICT
#endif

/* x: slab at (first tile row, first tile column); x[ic * ic_stride + kh * kh_stride + r * row_step
 *    + kw_offset[kw] + j] is the input seen by tile row r, column j through tap (ic, kh, kw).
 * w: packed weights [ic][kh][kw][OCB] (channels past n_oc are zeros).
 * out: output at (first channel, first row, first column); only n_oc x n_rows x n_cols are stored.
 *
 * With GCC or clang the accumulators are explicit vectors (vector extensions), so the compiler keeps them
 * in registers and vectorises along the output columns; left to itself it sometimes vectorised along the
 * channels instead and shuffled in the inner loop. Other compilers get the plain loops. */
#if defined(__GNUC__) || defined(__clang__)
#define GCONV_VECTOR_EXTENSIONS 1
typedef float gconv_vf32 __attribute__((vector_size(GCONV_VECTOR_BYTES)));
typedef double gconv_vf64 __attribute__((vector_size(GCONV_VECTOR_BYTES)));
#endif

#ifdef GCONV_VECTOR_EXTENSIONS
#define GCONV_DEFINE_TILE(T, NAME, TW, OCB, ROWS)                                                    \
    static void NAME(const T *GCONV_RESTRICT x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,         \
                     Py_ssize_t row_step, const Py_ssize_t *GCONV_RESTRICT kw_offset,               \
                     const T *GCONV_RESTRICT w, Py_ssize_t n_ic, Py_ssize_t kh_size, Py_ssize_t kw_size,\
                     T *GCONV_RESTRICT out, Py_ssize_t out_channel_stride, Py_ssize_t out_row_stride, \
                     const T *GCONV_RESTRICT bias, Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols)\
    {                                                                                                \
        typedef GCONV_VT_##T vec;                                                                    \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T), VPR = TW / LANES };                           \
        vec acc[OCB][ROWS][VPR];                                                                     \
        T lanes[TW];                                                                                 \
        int o, r, v, j;                                                                              \
        Py_ssize_t ic, kh, kw;                                                                       \
        for (o = 0; o < OCB; o++)                                                                    \
            for (r = 0; r < ROWS; r++)                                                               \
                for (v = 0; v < VPR; v++) acc[o][r][v] = (vec){0};                                   \
        for (ic = 0; ic < n_ic; ic++) {                                                              \
            for (kh = 0; kh < kh_size; kh++) {                                                       \
                const T *x_row = x + ic * ic_stride + kh * kh_stride;                                \
                for (kw = 0; kw < kw_size; kw++, w += OCB) {                                         \
                    const T *x_tap = x_row + kw_offset[kw];                                          \
                    for (r = 0; r < ROWS; r++) {                                                     \
                        vec xv[VPR];                                                                 \
                        for (v = 0; v < VPR; v++)                                                    \
                            memcpy(&xv[v], x_tap + r * row_step + v * LANES, sizeof(vec));           \
                        for (o = 0; o < OCB; o++)                                                    \
                            for (v = 0; v < VPR; v++) acc[o][r][v] += w[o] * xv[v];                  \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        for (o = 0; o < n_oc; o++) {                                                                 \
            const T b = bias ? bias[o] : (T)0;                                                       \
            for (r = 0; r < n_rows; r++) {                                                           \
                T *dst = out + o * out_channel_stride + r * out_row_stride;                          \
                if (n_cols == TW) {                                                                  \
                    for (v = 0; v < VPR; v++) {                                                      \
                        vec y = acc[o][r][v] + b;                                                    \
                        memcpy(dst + v * LANES, &y, sizeof(vec));                                    \
                    }                                                                                \
                } else {                                                                             \
                    memcpy(lanes, acc[o][r], sizeof(lanes));                                         \
                    for (j = 0; j < n_cols; j++) dst[j] = lanes[j] + b;                              \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }
#define GCONV_VT_float gconv_vf32
#define GCONV_VT_double gconv_vf64
#else
#define GCONV_DEFINE_TILE(T, NAME, TW, OCB, ROWS)                                                    \
    static void NAME(const T *GCONV_RESTRICT x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,           \
                     Py_ssize_t row_step, const Py_ssize_t *GCONV_RESTRICT kw_offset,                  \
                     const T *GCONV_RESTRICT w, Py_ssize_t n_ic, Py_ssize_t kh_size, Py_ssize_t kw_size,\
                     T *GCONV_RESTRICT out, Py_ssize_t out_channel_stride, Py_ssize_t out_row_stride,  \
                     const T *GCONV_RESTRICT bias, Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols)\
    {                                                                                                \
        T acc[OCB][ROWS][TW];                                                                        \
        int o, r, j;                                                                                 \
        Py_ssize_t ic, kh, kw;                                                                        \
        for (o = 0; o < OCB; o++)                                                                    \
            for (r = 0; r < ROWS; r++)                                                               \
                for (j = 0; j < TW; j++) acc[o][r][j] = 0;                                           \
        for (ic = 0; ic < n_ic; ic++) {                                                              \
            for (kh = 0; kh < kh_size; kh++) {                                                       \
                const T *x_row = x + ic * ic_stride + kh * kh_stride;                                \
                for (kw = 0; kw < kw_size; kw++, w += OCB) {                                         \
                    const T *x_tap = x_row + kw_offset[kw];                                          \
                    for (r = 0; r < ROWS; r++) {                                                     \
                        const T *xs = x_tap + r * row_step;                                          \
                        for (o = 0; o < OCB; o++) {                                                  \
                            const T wv = w[o];                                                       \
                            for (j = 0; j < TW; j++) acc[o][r][j] += wv * xs[j];                     \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        for (o = 0; o < n_oc; o++) {                                                                 \
            const T b = bias ? bias[o] : (T)0;                                                       \
            for (r = 0; r < n_rows; r++) {                                                           \
                T *dst = out + o * out_channel_stride + r * out_row_stride;                          \
                if (n_cols == TW) {                                                                  \
                    for (j = 0; j < TW; j++) dst[j] = acc[o][r][j] + b;                              \
                } else {                                                                             \
                    for (j = 0; j < n_cols; j++) dst[j] = acc[o][r][j] + b;                          \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

#endif

GCONV_DEFINE_TILE(float, gconv_tile_f32_8x1, GCONV_TILE_W_F32, 8, 1)
GCONV_DEFINE_TILE(float, gconv_tile_f32_4x2, GCONV_TILE_W_F32, 4, 2)
GCONV_DEFINE_TILE(float, gconv_tile_f32_2x4, GCONV_TILE_W_F32, 2, 4)
GCONV_DEFINE_TILE(float, gconv_tile_f32_1x8, GCONV_TILE_W_F32, 1, 8)
GCONV_DEFINE_TILE(double, gconv_tile_f64_8x1, GCONV_TILE_W_F64, 8, 1)
GCONV_DEFINE_TILE(double, gconv_tile_f64_4x2, GCONV_TILE_W_F64, 4, 2)
GCONV_DEFINE_TILE(double, gconv_tile_f64_2x4, GCONV_TILE_W_F64, 2, 4)
GCONV_DEFINE_TILE(double, gconv_tile_f64_1x8, GCONV_TILE_W_F64, 1, 8)

/* oc_block is 8, 4, 2 or 1 (ROWS = 8 / oc_block). */
#define GCONV_DEFINE_DISPATCH(T, SUFFIX)                                                             \
    static inline void gconv_tile_##SUFFIX(                                                          \
        int oc_block, const T *x, Py_ssize_t ic_stride, Py_ssize_t kh_stride, Py_ssize_t row_step,     \
        const Py_ssize_t *kw_offset, const T *w, Py_ssize_t n_ic, Py_ssize_t kh_size,                  \
        Py_ssize_t kw_size, T *out, Py_ssize_t out_channel_stride, Py_ssize_t out_row_stride,          \
        const T *bias, Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols)                          \
    {                                                                                                \
        switch (oc_block) {                                                                          \
        case 8: gconv_tile_##SUFFIX##_8x1(x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic,    \
                    kh_size, kw_size, out, out_channel_stride, out_row_stride, bias, n_oc, n_rows,   \
                    n_cols); break;                                                                  \
        case 4: gconv_tile_##SUFFIX##_4x2(x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic,    \
                    kh_size, kw_size, out, out_channel_stride, out_row_stride, bias, n_oc, n_rows,   \
                    n_cols); break;                                                                  \
        case 2: gconv_tile_##SUFFIX##_2x4(x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic,    \
                    kh_size, kw_size, out, out_channel_stride, out_row_stride, bias, n_oc, n_rows,   \
                    n_cols); break;                                                                  \
        default: gconv_tile_##SUFFIX##_1x8(x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic,   \
                    kh_size, kw_size, out, out_channel_stride, out_row_stride, bias, n_oc, n_rows,   \
                    n_cols); break;                                                                  \
        }                                                                                            \
    }

GCONV_DEFINE_DISPATCH(float, f32)
GCONV_DEFINE_DISPATCH(double, f64)

#endif
