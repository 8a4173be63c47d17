/* Channel-vectorised GEMM micro-kernels (the "gemm" family): one source, compiled once per instruction-set
 * level.
 *
 * A convolution is run as out[m][n] = sum_k a[m][k] * w[n][k] + bias[n] per group, with m a pixel of the
 * whole batch (image, output row, output column), n an output channel and k a tap (input channel, kh, kw).
 * A register tile is MR pixels x NR output channels, NR a multiple of the vector width: per k the kernel
 * loads NR weights as vectors from a packed [K][NR] panel (see gemm.pxi's _pack_gemm_weight) and
 * broadcasts each of the MR input values, as XNNPACK's f32-gemm "broadcast" kernels and BLIS's
 * micro-kernels do. The input comes as a [K][MR] panel, k_stride apart (packed per tile by the driver,
 * zeros where a tap falls in the padding). Vectorising along channels keeps every lane busy on the small
 * maps where a row-vectorised tile (direct/tile.h) has 7 or 1 columns to work on.
 *
 * Registers: MR x NR / lanes accumulators + NR / lanes weight vectors + one broadcast must fit the
 * register file (32 with AVX-512, 16 below it).
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_GEMM_TILE_H
#define GCONV_GEMM_TILE_H

#include "../isa.h"

/* Tile shape per level and dtype, defined here only (gemm.pxi reads these). */
#if GCONV_VECTOR_BYTES == 64
/* 8 x 2 vectors: 16 accumulators + 2 weight vectors + broadcasts of 32 registers */
#define GCONV_GEMM_MR_F32 8
#define GCONV_GEMM_NR_F32 32
#define GCONV_GEMM_MR_F64 8
#define GCONV_GEMM_NR_F64 16
#else
/* 6 x 2 vectors: 12 accumulators + 2 weight vectors + 1 broadcast of 16 registers */
#define GCONV_GEMM_MR_F32 6
#define GCONV_GEMM_NR_F32 (2 * GCONV_VECTOR_BYTES / 4)
#define GCONV_GEMM_MR_F64 6
#define GCONV_GEMM_NR_F64 (2 * GCONV_VECTOR_BYTES / 8)
#endif

GCONV_STATIC_ASSERT(GCONV_GEMM_NR_F32 % (GCONV_VECTOR_BYTES / 4) == 0, gemm_nr_f32_is_whole_vectors);
GCONV_STATIC_ASSERT(GCONV_GEMM_NR_F64 % (GCONV_VECTOR_BYTES / 8) == 0, gemm_nr_f64_is_whole_vectors);

#define GCONV_GEMM_PARAMS(T)                                                                         \
    Py_ssize_t k_size, const T *GCONV_RESTRICT a, Py_ssize_t a_k_stride, const T *GCONV_RESTRICT w,  \
        const T *GCONV_RESTRICT bias, T *GCONV_RESTRICT out, const Py_ssize_t *GCONV_RESTRICT out_offset, \
        Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n

/* a: input panel, a[k * a_k_stride + m] for pixel m of the tile (all MR rows are read; rows past n_m must
 *    hold finite values, the driver writes zeros there).
 * w: packed weights w[k * NR + j] (channels past n_n are zeros).
 * bias: bias of the tile's first channel, or NULL.
 * out: output of the tile's first channel; pixel m, channel j is out[out_offset[m] + j * out_channel_stride].
 * n_m <= MR pixels and n_n <= NR channels are stored. */

/* Store a finished tile kept in memory as tile[m][j]. A channels-last output (channel stride 1) with every
 * channel present is stored straight from the registers by the caller instead. */
#define GCONV_DEFINE_GEMM_STORE(T)                                                                   \
    GCONV_INLINE void gconv_gemm_store_##T(const T *GCONV_RESTRICT tile, Py_ssize_t nr,              \
                                           const T *GCONV_RESTRICT bias, T *GCONV_RESTRICT out,      \
                                           const Py_ssize_t *GCONV_RESTRICT out_offset,              \
                                           Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n) \
    {                                                                                                \
        Py_ssize_t m, j;                                                                             \
        for (m = 0; m < n_m; m++) {                                                                  \
            T *dst = out + out_offset[m];                                                            \
            const T *src = tile + m * nr;                                                            \
            if (bias)                                                                                \
                for (j = 0; j < n_n; j++) dst[j * out_channel_stride] = src[j] + bias[j];            \
            else                                                                                     \
                for (j = 0; j < n_n; j++) dst[j * out_channel_stride] = src[j];                      \
        }                                                                                            \
    }

GCONV_DEFINE_GEMM_STORE(float)
GCONV_DEFINE_GEMM_STORE(double)

#if defined(__GNUC__) || defined(__clang__)
/* Explicit vector accumulators (GCC/clang vector extensions): the compiler keeps them in registers, loads
 * the weights as vectors and broadcasts the input scalar into the fused multiply-adds. */
#define GCONV_DEFINE_GEMM(T, NAME, MR, NR)                                                           \
    static void NAME(GCONV_GEMM_PARAMS(T))                                                           \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T), VPR = NR / LANES };                           \
        vec acc[MR][VPR];                                                                            \
        int m, v;                                                                                    \
        Py_ssize_t k;                                                                                \
        for (m = 0; m < MR; m++)                                                                     \
            for (v = 0; v < VPR; v++) acc[m][v] = (vec){0};                                          \
        for (k = 0; k < k_size; k++, a += a_k_stride, w += NR) {                                     \
            vec b[VPR];                                                                              \
            for (v = 0; v < VPR; v++) memcpy(&b[v], w + v * LANES, sizeof(vec));                     \
            for (m = 0; m < MR; m++) {                                                               \
                const T am = a[m];                                                                   \
                for (v = 0; v < VPR; v++) acc[m][v] += am * b[v];                                    \
            }                                                                                        \
        }                                                                                            \
        if (out_channel_stride == 1 && n_n == NR) { /* channels-last, whole tile: from registers */  \
            vec bv[VPR];                                                                             \
            for (v = 0; v < VPR; v++) {                                                              \
                bv[v] = (vec){0};                                                                    \
                if (bias) memcpy(&bv[v], bias + v * LANES, sizeof(vec));                             \
            }                                                                                        \
            for (m = 0; m < n_m; m++)                                                                \
                for (v = 0; v < VPR; v++) {                                                          \
                    vec y = acc[m][v] + bv[v];                                                       \
                    memcpy(out + out_offset[m] + v * LANES, &y, sizeof(vec));                        \
                }                                                                                    \
            return;                                                                                  \
        }                                                                                            \
        {                                                                                            \
            T tile[MR][NR];                                                                          \
            memcpy(tile, acc, sizeof(tile));                                                         \
            gconv_gemm_store_##T(&tile[0][0], NR, bias, out, out_offset, out_channel_stride, n_m, n_n); \
        }                                                                                            \
    }
#else
#define GCONV_DEFINE_GEMM(T, NAME, MR, NR)                                                           \
    static void NAME(GCONV_GEMM_PARAMS(T))                                                           \
    {                                                                                                \
        T tile[MR][NR];                                                                              \
        int m, j;                                                                                    \
        Py_ssize_t k;                                                                                \
        for (m = 0; m < MR; m++)                                                                     \
            for (j = 0; j < NR; j++) tile[m][j] = 0;                                                 \
        for (k = 0; k < k_size; k++, a += a_k_stride, w += NR)                                       \
            for (m = 0; m < MR; m++)                                                                 \
                for (j = 0; j < NR; j++) tile[m][j] += a[m] * w[j];                                  \
        gconv_gemm_store_##T(&tile[0][0], NR, bias, out, out_offset, out_channel_stride, n_m, n_n);  \
    }
#endif

GCONV_DEFINE_GEMM(float, gconv_gemm_f32, GCONV_GEMM_MR_F32, GCONV_GEMM_NR_F32)
GCONV_DEFINE_GEMM(double, gconv_gemm_f64, GCONV_GEMM_MR_F64, GCONV_GEMM_NR_F64)

#endif
