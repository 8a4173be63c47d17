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
/* float32 12 x 2 vectors: 24 accumulators + 2 weight vectors + broadcasts of 32 registers (14 loads per 24
 * multiply-adds; 8 x 2 measured 1.03-1.13x slower on dense 3x3 from 56x56 to 7x7 and 1x1 2048->512 on 7x7
 * at batch 8, even on 14x14 and 7x7 at batch 1); float64 8 x 2 */
#define GCONV_GEMM_MR_F32 12
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
        Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n, T *GCONV_RESTRICT partial, int phase

/* Phases of a reduction cut into blocks of k (flags): the first block SUSPENDs, the middle ones RESUME and
 * SUSPEND, the last RESUMEs; a reduction in one block is phase 0. */
enum { GCONV_GEMM_RESUME = 1, GCONV_GEMM_SUSPEND = 2 };

/* a: input panel, a[k * a_k_stride + m] for pixel m of the tile (all MR rows are read; rows past n_m must
 *    hold finite values, the driver writes zeros there).
 * w: packed weights w[k * NR + j] (channels past n_n are zeros).
 * bias: bias of the tile's first channel, or NULL.
 * out: output of the tile's first channel; pixel m, channel j is out[out_offset[m] + j * out_channel_stride].
 * n_m <= MR pixels and n_n <= NR channels are stored.
 * partial: the tile's MR x NR accumulators between blocks of k, in the registers' own layout (the driver's
 *    scratch, one per tile and channel block of a work item). RESUME: the accumulators start from it
 *    (else from zero); SUSPEND: they are written back to it and out is not touched (else out gets them
 *    plus the bias). Each accumulator so runs one chain of multiply-adds over all K taps, in k order,
 *    whatever the blocks: the result is that of one block, and the output is stored once, not once per
 *    block (adding NCHW runs of MR values per channel and block cost 11% of a 3x3 256->256 on 14x14). */

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
        /* vector by vector: one memcpy of the whole tile became a rep movsq (4% of the kernel's time) */ \
        for (m = 0; m < MR; m++)                                                                     \
            for (v = 0; v < VPR; v++) {                                                              \
                acc[m][v] = (vec){0};                                                                \
                if (phase & GCONV_GEMM_RESUME)                                                       \
                    memcpy(&acc[m][v], partial + (m * VPR + v) * LANES, sizeof(vec));                \
            }                                                                                        \
        for (k = 0; k < k_size; k++, a += a_k_stride, w += NR) {                                     \
            vec b[VPR];                                                                              \
            for (v = 0; v < VPR; v++) memcpy(&b[v], w + v * LANES, sizeof(vec));                     \
            for (m = 0; m < MR; m++) {                                                               \
                const T am = a[m];                                                                   \
                for (v = 0; v < VPR; v++) acc[m][v] += am * b[v];                                    \
            }                                                                                        \
        }                                                                                            \
        if (phase & GCONV_GEMM_SUSPEND) {                                                            \
            for (m = 0; m < MR; m++)                                                                 \
                for (v = 0; v < VPR; v++) memcpy(partial + (m * VPR + v) * LANES, &acc[m][v], sizeof(vec)); \
            return;                                                                                  \
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
            for (m = 0; m < MR; m++)                                                                 \
                for (v = 0; v < VPR; v++) memcpy(&tile[m][v * LANES], &acc[m][v], sizeof(vec));      \
            if (n_m == MR && out_offset[MR - 1] - out_offset[0] == MR - 1) {                         \
                /* the MR pixels are consecutive in memory (NCHW, one image): each channel's MR      \
                 * outputs are one contiguous run, written as such */                                \
                Py_ssize_t j;                                                                        \
                T *dst = out + out_offset[0];                                                        \
                for (j = 0; j < n_n; j++, dst += out_channel_stride) {                               \
                    const T b = bias ? bias[j] : (T)0;                                               \
                    T run[MR];                                                                       \
                    for (m = 0; m < MR; m++) run[m] = b + tile[m][j];                                \
                    memcpy(dst, run, sizeof(run));                                                   \
                }                                                                                    \
                return;                                                                              \
            }                                                                                        \
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
            for (j = 0; j < NR; j++) tile[m][j] = (phase & GCONV_GEMM_RESUME) ? partial[m * NR + j] : 0; \
        for (k = 0; k < k_size; k++, a += a_k_stride, w += NR)                                       \
            for (m = 0; m < MR; m++)                                                                 \
                for (j = 0; j < NR; j++) tile[m][j] += a[m] * w[j];                                  \
        if (phase & GCONV_GEMM_SUSPEND)                                                              \
            memcpy(partial, tile, sizeof(tile));                                                     \
        else                                                                                         \
            gconv_gemm_store_##T(&tile[0][0], NR, bias, out, out_offset, out_channel_stride, n_m, n_n); \
    }
#endif

GCONV_DEFINE_GEMM(float, gconv_gemm_f32, GCONV_GEMM_MR_F32, GCONV_GEMM_NR_F32)
GCONV_DEFINE_GEMM(double, gconv_gemm_f64, GCONV_GEMM_MR_F64, GCONV_GEMM_NR_F64)


/* Dot tiles: the same product with the weights as they are, vectorised along k instead.
 *
 * Where a call has few pixels (a 1x1 map, a 7x7 map at batch 1) packing the weights costs more than the
 * multiply-adds; these tiles read each output channel's C-contiguous row of K weights once per tile and
 * its pixels' [K] input rows, accumulate lane-wise and reduce the lanes at the end (in the fixed order
 * of gconv_lane_sum_*, so a result never depends on the work split). MR pixels x OB channels; ragged
 * tails re-read the last valid row (their results are not stored), so nothing past the arrays is touched.
 *
 * a: input rows, a[m * a_m_stride + k]; w: weights of the tile's first channel, w[o * K + k]. */
#define GCONV_DOT_PARAMS(T)                                                                          \
    Py_ssize_t k_size, const T *GCONV_RESTRICT a, Py_ssize_t a_m_stride, const T *GCONV_RESTRICT w,  \
        const T *GCONV_RESTRICT bias, T *GCONV_RESTRICT out, const Py_ssize_t *GCONV_RESTRICT out_offset, \
        Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n

#if GCONV_VECTOR_BYTES == 64
#define GCONV_DOT_MR 4 /* 4 x 4 accumulators + 4 weight vectors + an input vector of 32 registers */
#define GCONV_DOT_OB 4
#else
#define GCONV_DOT_MR 2 /* 2 x 4 accumulators + 4 weight vectors + 2 input vectors of 16 registers */
#define GCONV_DOT_OB 4
#endif
#define GCONV_DOT_OB_ONE_PIXEL 8 /* one pixel (matrix-vector): 8 channels, to keep loads in flight */

#if defined(__GNUC__) || defined(__clang__)
/* The sum of a vector's lanes, halving it in registers (the fixed order of adds is the result's). */
typedef float gconv_vec4_float __attribute__((vector_size(16)));
typedef float gconv_vec8_float __attribute__((vector_size(32)));
typedef double gconv_vec2_double __attribute__((vector_size(16)));
typedef double gconv_vec4_double __attribute__((vector_size(32)));

/* Halves taken with intrinsics, not memcpy: a memcpy from an accumulator took its address, and the dot
 * tiles' accumulators then lived on the stack, stored and reloaded on every step of k. */
GCONV_INLINE float gconv_lane_sum_float(gconv_vec_float v)
{
    gconv_vec4_float q;
#if GCONV_VECTOR_BYTES == 64
    const __m512 w = (__m512)v;
    const gconv_vec8_float half = (gconv_vec8_float)_mm512_castps512_ps256(w)
                                  + (gconv_vec8_float)_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(w), 1));
    q = (gconv_vec4_float)_mm256_castps256_ps128((__m256)half)
        + (gconv_vec4_float)_mm256_extractf128_ps((__m256)half, 1);
#elif GCONV_VECTOR_BYTES == 32
    q = (gconv_vec4_float)_mm256_castps256_ps128((__m256)v) + (gconv_vec4_float)_mm256_extractf128_ps((__m256)v, 1);
#else
    q = v;
#endif
    return (q[0] + q[2]) + (q[1] + q[3]);
}

GCONV_INLINE double gconv_lane_sum_double(gconv_vec_double v)
{
    gconv_vec2_double q;
#if GCONV_VECTOR_BYTES == 64
    const __m512d w = (__m512d)v;
    const gconv_vec4_double half = (gconv_vec4_double)_mm512_castpd512_pd256(w)
                                   + (gconv_vec4_double)_mm512_extractf64x4_pd(w, 1);
    q = (gconv_vec2_double)_mm256_castpd256_pd128((__m256d)half)
        + (gconv_vec2_double)_mm256_extractf128_pd((__m256d)half, 1);
#elif GCONV_VECTOR_BYTES == 32
    q = (gconv_vec2_double)_mm256_castpd256_pd128((__m256d)v) + (gconv_vec2_double)_mm256_extractf128_pd((__m256d)v, 1);
#else
    q = v;
#endif
    return q[0] + q[1];
}

#if GCONV_VECTOR_BYTES == 64
/* Lanes 2i and 2i + 1 of a added in lanes i < 8, of b in lanes 8 + i. */
GCONV_INLINE gconv_vec_float gconv_pair_sums_float(gconv_vec_float a, gconv_vec_float b)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return (gconv_vec_float)_mm512_permutex2var_ps((__m512)a, even, (__m512)b)
           + (gconv_vec_float)_mm512_permutex2var_ps((__m512)a, odd, (__m512)b);
}

/* The lane sums of n (16 or 8) float vectors, sum i in lane i: pairs of lanes added, two vectors at a time,
 * then pairs of those, down to one vector (8 vectors' sums are then two lanes each, added once more). Every
 * sum is the same tree over its vector's lanes, whatever n (4 x 4 tiles and one-pixel tiles of 8 agree): 24
 * permutes and adds for 8 sums where one by one took 56 in dependent chains (1x1 48->1152 on a 1x1 map). */
GCONV_INLINE gconv_vec_float gconv_lane_sums_float(gconv_vec_float v[16], int n)
{
    int count, i, lanes;
    for (count = n; count > 1; count /= 2)
        for (i = 0; i < count / 2; i++) v[i] = gconv_pair_sums_float(v[2 * i], v[2 * i + 1]);
    for (lanes = 16 / n; lanes > 1; lanes /= 2) v[0] = gconv_pair_sums_float(v[0], v[0]);
    return v[0];
}
#define GCONV_LANE_SUMS_float 1
#else
#define GCONV_LANE_SUMS_float 0
GCONV_INLINE gconv_vec_float gconv_lane_sums_float(gconv_vec_float v[16], int n) { return v[0]; } /* not called */
#endif
#define GCONV_LANE_SUMS_double 0
GCONV_INLINE gconv_vec_double gconv_lane_sums_double(gconv_vec_double v[16], int n) { return v[0]; } /* not called */

/* sum[m][o]: the lanes of acc[m][o] added, as one transpose with AVX-512 float32 (16 or 8 accumulators:
 * the 4 x 4 tile and the one-pixel one alike, so a pixel's sums are the same in either), else one by one */
#define GCONV_DOT_SUMS(T, MR, OB)                                                                    \
    if (GCONV_LANE_SUMS_##T && (MR * OB == 16 || MR * OB == 8)) {                                    \
        vec flat[16];                                                                                \
        vec all;                                                                                     \
        for (m = 0; m < MR; m++)                                                                     \
            for (o = 0; o < OB; o++) flat[m * OB + o] = acc[m][o];                                   \
        all = gconv_lane_sums_##T(flat, MR * OB);                                                    \
        memcpy(sum, &all, MR * OB * sizeof(T));                                                      \
    } else {                                                                                         \
        for (m = 0; m < MR; m++)                                                                     \
            for (o = 0; o < OB; o++) sum[m][o] = gconv_lane_sum_##T(acc[m][o]);                      \
    }

#define GCONV_DEFINE_DOT(T, NAME, MR, OB)                                                            \
    static void NAME(GCONV_DOT_PARAMS(T))                                                            \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T) };                                             \
        const T *a_row[MR];                                                                          \
        const T *w_row[OB];                                                                          \
        vec acc[MR][OB];                                                                             \
        T sum[MR][OB];                                                                               \
        int m, o;                                                                                    \
        Py_ssize_t k, k_vec = k_size - k_size % LANES;                                               \
        for (m = 0; m < MR; m++) a_row[m] = a + (m < n_m ? m : n_m - 1) * a_m_stride;                \
        for (o = 0; o < OB; o++) w_row[o] = w + (o < n_n ? o : n_n - 1) * k_size;                    \
        for (m = 0; m < MR; m++)                                                                     \
            for (o = 0; o < OB; o++) acc[m][o] = (vec){0};                                           \
        /* the MR input vectors first, then one weight vector at a time: MR x OB accumulators + MR + 1  \
         * registers (with all OB weight vectors loaded first, the one-pixel tile needed 17 of AVX2's   \
         * 16 and ran from the stack, 2x slower) */                                                  \
        for (k = 0; k < k_vec; k += LANES) {                                                         \
            vec av[MR];                                                                              \
            for (m = 0; m < MR; m++) memcpy(&av[m], a_row[m] + k, sizeof(vec));                      \
            for (o = 0; o < OB; o++) {                                                               \
                vec wv;                                                                              \
                memcpy(&wv, w_row[o] + k, sizeof(vec));                                              \
                for (m = 0; m < MR; m++) acc[m][o] += av[m] * wv;                                    \
            }                                                                                        \
        }                                                                                            \
        if (k_vec < k_size) {                                                                        \
            /* the rows' last k_size % LANES values as one more vector, zeros after them: a scalar   \
             * tail was a chain of dependent adds per output (1x1 28->672 on a 1x1 map: 2x slower) */ \
            const int rest = (int)(k_size - k_vec);                                                  \
            vec av[MR];                                                                              \
            for (m = 0; m < MR; m++) av[m] = gconv_load_tail_##T(a_row[m] + k_vec, rest);            \
            for (o = 0; o < OB; o++) {                                                               \
                const vec wv = gconv_load_tail_##T(w_row[o] + k_vec, rest);                          \
                for (m = 0; m < MR; m++) acc[m][o] += av[m] * wv;                                    \
            }                                                                                        \
        }                                                                                            \
        GCONV_DOT_SUMS(T, MR, OB)                                                                    \
        for (m = 0; m < n_m; m++)                                                                    \
            for (o = 0; o < n_n; o++)                                                                \
                out[out_offset[m] + o * out_channel_stride] = sum[m][o] + (bias ? bias[o] : (T)0);  \
    }
#else
#define GCONV_DEFINE_DOT(T, NAME, MR, OB)                                                            \
    static void NAME(GCONV_DOT_PARAMS(T))                                                            \
    {                                                                                                \
        int m, o;                                                                                    \
        Py_ssize_t k;                                                                                \
        for (m = 0; m < n_m; m++)                                                                    \
            for (o = 0; o < n_n; o++) {                                                              \
                T s = 0;                                                                             \
                for (k = 0; k < k_size; k++) s += a[m * a_m_stride + k] * w[o * k_size + k];         \
                out[out_offset[m] + o * out_channel_stride] = s + (bias ? bias[o] : (T)0);           \
            }                                                                                        \
    }
#endif

GCONV_DEFINE_DOT(float, gconv_dot_f32_tile, GCONV_DOT_MR, GCONV_DOT_OB)
GCONV_DEFINE_DOT(float, gconv_dot_f32_pixel, 1, GCONV_DOT_OB_ONE_PIXEL)
GCONV_DEFINE_DOT(double, gconv_dot_f64_tile, GCONV_DOT_MR, GCONV_DOT_OB)
GCONV_DEFINE_DOT(double, gconv_dot_f64_pixel, 1, GCONV_DOT_OB_ONE_PIXEL)

/* Pointwise tiles: a 1x1, stride-1, unpadded convolution on pixel-contiguous maps (NCHW) is per image and
 * group the plain product out[c][p] = sum_k w[c][k] * x[k][p] + bias[c], p running over the image's H * W
 * pixels. A register tile is MR output channels x 1 or PW_VECTORS vectors of pixels: per k it loads the
 * vectors of input row k in place and broadcasts each of the MR channels' weights, as BLIS's and MLAS's
 * sgemm kernels do with their packed panels. The weights come as they are (w[c][k], MR rows read side by
 * side) or packed per channel tile into [K][MR] panels (gconv_pw_pack), so that the broadcasts of a k are
 * one stream of adjacent values. Nothing else is packed and each output row is stored straight from the
 * registers, where the implicit-GEMM tile above (pixels x channels) stores an NCHW output as runs of MR
 * values per channel. The one-vector tile runs a map's last few pixels (49 = 3 x 16 + 1 on 7x7 maps).
 *
 * Registers: MR x PW_VECTORS accumulators + PW_VECTORS input vectors + one broadcast: 6 x 2 (15 of 16)
 * below AVX-512, 12 x 2 (27 of 32) with AVX-512, where 6 channels left the two FMA ports waiting on the
 * loads (measured 1.1-1.2x slower at batch 1).
 *
 * Every output is the same chain of multiply-adds over k in order, whatever the tile's width or the lane
 * it falls in: results do not depend on how pixels are cut into tiles.
 *
 * x: input rows, x[k * x_k_stride + p] for pixel p < n_v * lanes of the tile (all of them are read).
 * x_copy: NULL, or where the tile also writes the rows it reads, x_copy[k * NR + p] (the next tiles of the
 *    same pixels read that copy: K rows one cache line apart each can map to few L1 sets, as with
 *    maps of 32x32 or 64x64 pixels, and the copy does not).
 * x_next: NULL, or a later strip's first pixel (x_next[k * x_k_stride + p], p < NR): a whole-width tile
 *    fetches those rows into L2 as it goes (a hint: nothing is read from it).
 * w: weights of the tile's first channel, w[c * k_size + k] (rows past n_c are not read), or with packed
 *    set its panel w[k * MR + c] (all MR columns are read).
 * bias: bias of the tile's first channel, or NULL. out: out[c * out_channel_stride + p].
 * n_c <= MR channels and the pixels p_first <= p < n_p (n_p <= n_v * lanes) are stored: a map's last tile
 * may overlap the one before it, stored by that one.
 * x_tail: NULL, or (the wide float tile with AVX-512 only, GCONV_PW_WIDE_TAIL) the inputs of one more pixel,
 *    x_tail[k], contiguous: the tile also stores out[c * out_channel_stride + n_v * lanes], reduced along k
 *    a vector of taps at a time from the weights the tile reads anyway. A 7x7 map is then 3 vectors and
 *    this pixel (49 of 52 lanes busy) rather than 4 vectors (49 of 64); raw weights, p_first 0 and
 *    n_p = n_v * lanes only. */
#ifndef GCONV_PW_MR
#if GCONV_VECTOR_BYTES == 64
#define GCONV_PW_MR 12
#define GCONV_PW_VECTORS 2
#else
#define GCONV_PW_MR 6
#define GCONV_PW_VECTORS 2
#endif
#endif
/* The wide tile, for images of at most a few strips with deep reductions (gconv._select chooses it): half
 * the channels and twice the pixels, 6 x 4 vectors with AVX-512 (24 accumulators, 4 loads and 6 broadcasts
 * per 24 multiply-adds), so a 7x7 map is one strip and each channel tile runs its reduction once rather than
 * once per strip. Below AVX-512 it is the regular tile (16 registers hold no wider one). */
#if GCONV_VECTOR_BYTES == 64
#define GCONV_PW_WIDE_MR 6
#define GCONV_PW_WIDE_VECTORS 4
#else
#define GCONV_PW_WIDE_MR GCONV_PW_MR
#define GCONV_PW_WIDE_VECTORS GCONV_PW_VECTORS
#endif
/* whether the wide float32 tile takes an extra pixel (x_tail): with AVX-512 and the vector extensions, where
 * its 6 x 4 accumulators leave registers for 6 more (measured on 7x7 maps, batch 1: 1x1 192->1152,
 * 512->2048, 160->960 ...; see gconv._select) */
#if GCONV_VECTOR_BYTES == 64 && (defined(__GNUC__) || defined(__clang__))
#define GCONV_PW_WIDE_TAIL 1
#else
#define GCONV_PW_WIDE_TAIL 0
#endif
/* inputs at least this large copy each cache block's strips before the channel tiles read them (see
 * PW_COPY_MIN_K in gemm.pxi): measured per level */
#if GCONV_VECTOR_BYTES == 64
#define GCONV_PW_COPY_MIN_INPUT_MIB 4
#else
#define GCONV_PW_COPY_MIN_INPUT_MIB 8
#endif
/* taps ahead whose input rows a tile fetches into L1 (AVX-512): rows a map apart defeat the hardware's stride
 * prefetcher past 2 KiB, and a tap's two lines missed L1 on every step (1x1 512->256 on 28x28, 1024->256
 * on 14x14, 256->64 on 56x56 1.05-1.08x faster at batch 1, 64->256 on 56x56 at batch 8 1.15x; 32 ahead
 * lost; the AVX2 build, on the same CPU, gained nothing). Not past the tile's last row: 16 input channels
 * fetched another image's rows for nothing (1x1 16->96 on 112x112 at batch 8 1.1x slower). */
#if GCONV_VECTOR_BYTES == 64
#define GCONV_PW_L1_AHEAD 16
#else
#define GCONV_PW_L1_AHEAD 16
#endif
#define GCONV_PW_NR_F32 (GCONV_PW_VECTORS * GCONV_VECTOR_BYTES / 4)
#define GCONV_PW_NR_F64 (GCONV_PW_VECTORS * GCONV_VECTOR_BYTES / 8)

#define GCONV_PW_PARAMS(T)                                                                           \
    Py_ssize_t k_size, const T *GCONV_RESTRICT x, Py_ssize_t x_k_stride, T *GCONV_RESTRICT x_copy,   \
        const T *x_next, const T *GCONV_RESTRICT w, int packed, const T *GCONV_RESTRICT bias, T *GCONV_RESTRICT out,  \
        Py_ssize_t out_channel_stride, Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p, int n_v,         \
        const T *GCONV_RESTRICT x_tail

#if defined(__GNUC__) || defined(__clang__)
/* The tile for NV vectors, weights packed or not, rows copied or not: inlined with constants into the
 * variants below, so each is its own loop with its accumulators in registers. */
#define GCONV_DEFINE_PW_BODY(T, NAME, MR, VECTORS)                                                   \
    GCONV_INLINE void NAME##_body(Py_ssize_t k_size, const T *GCONV_RESTRICT x,                      \
                                  Py_ssize_t x_k_stride, T *GCONV_RESTRICT x_copy,                   \
                                  const T *x_next, const T *GCONV_RESTRICT w,                        \
                                  const T *GCONV_RESTRICT bias,                                      \
                                  T *GCONV_RESTRICT out, Py_ssize_t out_channel_stride,              \
                                  Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p,                \
                                  const T *GCONV_RESTRICT x_tail, const int NV, const int PACKED,    \
                                  const int COPY, const int PREFETCH, const int TAIL)                \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T), NR = VECTORS * LANES };                        \
        const T *w_row[MR];                                                                          \
        vec acc[MR][VECTORS];                                                                        \
        vec tail_acc[MR]; /* TAIL: the extra pixel's lane-wise sums, LANES taps per step */           \
        T tail_rest[MR]; /* TAIL: its taps past the last whole vector of them */                     \
        int c, v;                                                                                    \
        Py_ssize_t k, p;                                                                             \
        /* a ragged tile repeats its last channel (computed, not stored): one loop for every tile */ \
        for (c = 0; c < MR; c++) w_row[c] = w + (c < n_c ? c : n_c - 1) * k_size;                    \
        for (c = 0; c < MR; c++)                                                                     \
            for (v = 0; v < NV; v++) acc[c][v] = (vec){0};                                           \
        if (TAIL)                                                                                    \
            for (c = 0; c < MR; c++) tail_acc[c] = (vec){0};                                         \
        for (k = 0; k < k_size; k++, x += x_k_stride) {                                              \
            vec b[VECTORS];                                                                          \
            if (PREFETCH) {                                                                          \
                /* the next strip's rows into L2 while this one computes: K rows a map apart are    \
                 * too many streams for the hardware prefetchers once the batch outgrows the caches */ \
                __builtin_prefetch(x_next + k * x_k_stride, 0, 2);                                   \
                __builtin_prefetch(x_next + k * x_k_stride + NV * LANES - 1, 0, 2);                  \
            }                                                                                        \
            if (GCONV_PW_L1_AHEAD && k + GCONV_PW_L1_AHEAD < k_size) /* this tile's rows only */      \
                for (v = 0; v < NV; v++) __builtin_prefetch(x + GCONV_PW_L1_AHEAD * x_k_stride + v * LANES, 0, 3); \
            for (v = 0; v < NV; v++) memcpy(&b[v], x + v * LANES, sizeof(vec));                      \
            if (COPY) {                                                                              \
                for (v = 0; v < NV; v++) memcpy(x_copy + v * LANES, &b[v], sizeof(vec));             \
                x_copy += NR;                                                                        \
            }                                                                                        \
            for (c = 0; c < MR; c++) {                                                               \
                const T a = PACKED ? w[k * MR + c] : w_row[c][k];                                    \
                for (v = 0; v < NV; v++) acc[c][v] += a * b[v];                                      \
            }                                                                                        \
            if (TAIL && k % LANES == LANES - 1) {                                                    \
                /* the LANES taps just done, for the extra pixel: its inputs against each weight row, \
                 * in the L1 lines the broadcasts above just brought in */                            \
                const Py_ssize_t k0 = k + 1 - LANES;                                                 \
                vec xt;                                                                              \
                memcpy(&xt, x_tail + k0, sizeof(vec));                                               \
                for (c = 0; c < MR; c++) {                                                           \
                    vec wv;                                                                          \
                    memcpy(&wv, w_row[c] + k0, sizeof(vec));                                         \
                    tail_acc[c] += wv * xt;                                                          \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        if (TAIL)                                                                                    \
            for (c = 0; c < MR; c++) {                                                               \
                tail_rest[c] = gconv_lane_sum_##T(tail_acc[c]);                                      \
                for (k = k_size - k_size % LANES; k < k_size; k++) tail_rest[c] += w_row[c][k] * x_tail[k]; \
            }                                                                                        \
        for (c = 0; c < n_c; c++, out += out_channel_stride) {                                       \
            vec y[VECTORS];                                                                          \
            const T b = bias ? bias[c] : (T)0;                                                       \
            for (v = 0; v < NV; v++) y[v] = acc[c][v] + b;                                           \
            if (p_first == 0 && n_p == NV * LANES)                                                   \
                memcpy(out, y, NV * sizeof(vec));                                                    \
            else                                                                                     \
                for (p = p_first; p < n_p; p++) out[p] = y[p / LANES][p % LANES];                    \
            if (TAIL) out[NV * LANES] = tail_rest[c] + b;                                            \
        }                                                                                            \
    }

#define GCONV_PW_CALL(NAME, NV, PACKED, COPY, PREFETCH)                                              \
    NAME##_body(k_size, x, x_k_stride, x_copy, x_next, w, bias, out, out_channel_stride, n_c, p_first,  \
                n_p, x_tail, NV, PACKED, COPY, PREFETCH, 0)
#define GCONV_PW_CALL_TAIL(NAME, NV)                                                                  \
    NAME##_body(k_size, x, x_k_stride, NULL, NULL, w, bias, out, out_channel_stride, n_c, 0, NV * LANES, \
                x_tail, NV, 0, 0, 0, 1)
#define GCONV_PW_CALL_FULL(NAME, VECTORS, PREFETCH)                                                 \
    if (x_copy && packed)                                                                            \
        GCONV_PW_CALL(NAME, VECTORS, 1, 1, PREFETCH);                                      \
    else if (x_copy)                                                                                 \
        GCONV_PW_CALL(NAME, VECTORS, 0, 1, PREFETCH);                                      \
    else if (packed)                                                                                 \
        GCONV_PW_CALL(NAME, VECTORS, 1, 0, PREFETCH);                                      \
    else                                                                                             \
        GCONV_PW_CALL(NAME, VECTORS, 0, 0, PREFETCH);
/* one loop per width (n_v vectors: all of them, 2 where a tile has more, or 1), weight layout, row copy and
 * prefetch (whole strips only); TAILS: also one per width with the extra pixel */
#define GCONV_DEFINE_PW(T, NAME, MR, VECTORS, TAILS)                                                 \
    GCONV_DEFINE_PW_BODY(T, NAME, MR, VECTORS)                                                       \
    static void NAME(GCONV_PW_PARAMS(T))                                                             \
    {                                                                                                \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T) };                                             \
        if (TAILS && x_tail) {                                                                       \
            if (n_v == VECTORS)                                                                      \
                GCONV_PW_CALL_TAIL(NAME, VECTORS);                                                   \
            else if (VECTORS > 2 && n_v == 2)                                                        \
                GCONV_PW_CALL_TAIL(NAME, 2);                                                         \
            else if (VECTORS > 3 && n_v == 3)                                                        \
                GCONV_PW_CALL_TAIL(NAME, 3);                                                         \
            else                                                                                     \
                GCONV_PW_CALL_TAIL(NAME, 1);                                                         \
        } else if (n_v == VECTORS) {                                                                 \
            if (x_next) {                                                                            \
                GCONV_PW_CALL_FULL(NAME, VECTORS, 1)                                                \
            } else {                                                                                 \
                GCONV_PW_CALL_FULL(NAME, VECTORS, 0)                                                \
            }                                                                                        \
        } else if (VECTORS > 2 && n_v == 2) {                                                        \
            if (packed)                                                                              \
                GCONV_PW_CALL(NAME, 2, 1, 0, 0);                                           \
            else                                                                                     \
                GCONV_PW_CALL(NAME, 2, 0, 0, 0);                                           \
        } else if (VECTORS > 3 && n_v == 3) {                                                        \
            if (packed)                                                                              \
                GCONV_PW_CALL(NAME, 3, 1, 0, 0);                                           \
            else                                                                                     \
                GCONV_PW_CALL(NAME, 3, 0, 0, 0);                                           \
        } else {                                                                                     \
            if (packed)                                                                              \
                GCONV_PW_CALL(NAME, 1, 1, 0, 0);                                           \
            else                                                                                     \
                GCONV_PW_CALL(NAME, 1, 0, 0, 0);                                           \
        }                                                                                            \
    }
#else
#define GCONV_DEFINE_PW(T, NAME, MR, VECTORS, TAILS)                                                 \
    static void NAME(GCONV_PW_PARAMS(T))                                                             \
    {                                                                                                \
        const Py_ssize_t width = n_v * (GCONV_VECTOR_BYTES / sizeof(T));                             \
        Py_ssize_t c, k, p;                                                                          \
        if (x_tail) /* never without the vector extensions (GCONV_PW_WIDE_TAIL is 0) */              \
            return;                                                                                  \
        if (x_copy)                                                                                  \
            for (k = 0; k < k_size; k++)                                                             \
                for (p = 0; p < width; p++) x_copy[k * width + p] = x[k * x_k_stride + p];           \
        for (c = 0; c < n_c; c++)                                                                    \
            for (p = p_first; p < n_p; p++) {                                                        \
                T s = 0;                                                                             \
                for (k = 0; k < k_size; k++)                                                         \
                    s += (packed ? w[k * (MR) + c] : w[c * k_size + k]) * x[k * x_k_stride + p];     \
                out[c * out_channel_stride + p] = s + (bias ? bias[c] : (T)0);                       \
            }                                                                                        \
    }
#endif

GCONV_DEFINE_PW(float, gconv_pw_f32, GCONV_PW_MR, GCONV_PW_VECTORS, 0)
GCONV_DEFINE_PW(double, gconv_pw_f64, GCONV_PW_MR, GCONV_PW_VECTORS, 0)
GCONV_DEFINE_PW(float, gconv_pw_wide_f32, GCONV_PW_WIDE_MR, GCONV_PW_WIDE_VECTORS, GCONV_PW_WIDE_TAIL)
GCONV_DEFINE_PW(double, gconv_pw_wide_f64, GCONV_PW_WIDE_MR, GCONV_PW_WIDE_VECTORS, 0)

/* Pack channel tile `tile` (mr channels: GCONV_PW_MR, or GCONV_PW_WIDE_MR for the wide tile) of one group's
 * weights w[c][k] (ocpg rows of k_size) into its [K][mr] panel, zeros for the channels past the group's last. */
#define GCONV_DEFINE_PW_PACK(T)                                                                      \
    static void gconv_pw_pack_##T(const T *GCONV_RESTRICT w, Py_ssize_t ocpg, Py_ssize_t k_size,     \
                                  Py_ssize_t tile, Py_ssize_t mr, T *GCONV_RESTRICT panel)           \
    {                                                                                                \
        Py_ssize_t c, k, c0 = tile * mr;                                                             \
        for (c = 0; c < mr; c++) {                                                                   \
            if (c0 + c < ocpg)                                                                       \
                for (k = 0; k < k_size; k++) panel[k * mr + c] = w[(c0 + c) * k_size + k];          \
            else                                                                                     \
                for (k = 0; k < k_size; k++) panel[k * mr + c] = 0;                                  \
        }                                                                                            \
    }

GCONV_DEFINE_PW_PACK(float)
GCONV_DEFINE_PW_PACK(double)

#endif
