/* Channel-vectorised depthwise micro-kernels (the "dwconv" family): one source, compiled once per
 * instruction-set level.
 *
 * A depthwise convolution (groups == C_in == C_out) has one input channel and KH x KW taps per output: too
 * few multiply-adds per output for the row-vectorised tiles (direct/tile.h) to amortise their per-channel
 * work on small maps, and 7- or 14-column rows leave their lanes idle. These tiles vectorise along the
 * channels instead, as XNNPACK's f32-dwconv and oneDNN's nChw16c depthwise kernels do: the driver packs a
 * block of CB channels into a [row][column][CB] slab (zero padding in it), and a tile is OWT output
 * columns of one output row x CB channels, each tap one weight vector times OWT input vectors.
 *
 * Grouped convolutions (a few input channels per group) run the same tile over a slab of one group's input
 * channels, [row][column][ic]: every output channel of the vector (one group's) reads the same input, so
 * each tap is one weight vector times OWT broadcast inputs, and the driver orders the taps (kh, kw, ic).
 *
 * Registers: OWT accumulators + one weight vector + one input vector (9 of 16 with AVX2). OWT = 7 divides
 * every map width of the usual networks (112, 56, 28, 14, 7), so their rows have no ragged tile.
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_DWCONV_TILE_H
#define GCONV_DWCONV_TILE_H

#include "../isa.h"

/* Tile shape, defined here only (dwconv.pxi reads these): one vector of channels x OWT output columns. */
#define GCONV_DW_OWT 7
#define GCONV_DW_CB_F32 (GCONV_VECTOR_BYTES / 4)
#define GCONV_DW_CB_F64 (GCONV_VECTOR_BYTES / 8)

#define GCONV_DW_PARAMS(T)                                                                           \
    Py_ssize_t n_taps, const T *GCONV_RESTRICT x, const Py_ssize_t *GCONV_RESTRICT tap_offset,       \
        Py_ssize_t col_step, Py_ssize_t n_tiles, const T *GCONV_RESTRICT w, const T *GCONV_RESTRICT bias, \
        T *GCONV_RESTRICT out

/* How a tile reads its inputs (INPUTS): a vector of channels (depthwise), one value in every lane (grouped),
 * or a pair of values in every pair of lanes (twin tiles, below). */
#define GCONV_DW_VECTORS 0
#define GCONV_DW_BROADCAST 1
#define GCONV_DW_PAIRS 2

/* One output row of n_tiles tiles (a call per row, not per tile: a 3x3 tile is only 63 multiply-adds).
 * x: slab at the row's first output column for tap offset 0; output column q reads
 *    x[tap_offset[t] + q * col_step + lane] through tap t (col_step = stride_w * CB), with GCONV_DW_BROADCAST
 *    (grouped) x[tap_offset[t] + q * col_step] in every lane (col_step = stride_w * icpg), with GCONV_DW_PAIRS
 *    that value in the even lanes and the one after it in the odd ones.
 * w: packed weights of the channel block, w[t * CB + lane]; bias: CB values (zeros where there is none).
 * out: n_tiles * OWT x CB results, out[q * CB + lane] (every column, also those past the row: the driver
 *      drops them). */
#if defined(__GNUC__) || defined(__clang__)
/* p[0] in the even lanes and p[1] in the odd ones: one 64-bit (float32) or 128-bit (float64) broadcast with
 * AVX-512, the only level that runs twin tiles (an element loop elsewhere, for the code to compile) */
GCONV_INLINE gconv_vec_float gconv_broadcast_pair_float(const float *p)
{
#if GCONV_VECTOR_BYTES == 64
    double pair;
    memcpy(&pair, p, sizeof(pair));
    return (gconv_vec_float)_mm512_castpd_ps(_mm512_set1_pd(pair));
#else
    gconv_vec_float v;
    int i;
    for (i = 0; i < (int)(sizeof(v) / sizeof(float)); i++) v[i] = p[i % 2];
    return v;
#endif
}
GCONV_INLINE gconv_vec_double gconv_broadcast_pair_double(const double *p)
{
#if GCONV_VECTOR_BYTES == 64
    return (gconv_vec_double)_mm512_broadcast_f64x2(_mm_loadu_pd(p));
#else
    gconv_vec_double v;
    int i;
    for (i = 0; i < (int)(sizeof(v) / sizeof(double)); i++) v[i] = p[i % 2];
    return v;
#endif
}

/* never inlined: inside the driver's loops the compiler ran short of registers and re-read the tile's
 * pointers from the stack on every tap (measured 1.6x slower) */
#define GCONV_DEFINE_DW(T, VEC, NAME, CB, INPUTS)                                                    \
    __attribute__((noinline)) static void NAME(GCONV_DW_PARAMS(T))                                   \
    {                                                                                                \
        typedef VEC vec;                                                                             \
        vec b;                                                                                       \
        int p;                                                                                       \
        Py_ssize_t t, tile;                                                                          \
        memcpy(&b, bias, sizeof(vec));                                                               \
        for (tile = 0; tile < n_tiles; tile++) {                                                     \
            const T *x_tile = x + tile * GCONV_DW_OWT * col_step;                                    \
            vec acc[GCONV_DW_OWT];                                                                   \
            for (p = 0; p < GCONV_DW_OWT; p++) acc[p] = b;                                           \
            for (t = 0; t < n_taps; t++) {                                                           \
                vec wv;                                                                              \
                const T *x_tap = x_tile + tap_offset[t];                                             \
                memcpy(&wv, w + t * (CB), sizeof(vec));                                              \
                for (p = 0; p < GCONV_DW_OWT; p++) {                                                 \
                    vec xv;                                                                          \
                    if ((INPUTS) == GCONV_DW_BROADCAST)                                              \
                        acc[p] += x_tap[p * col_step] * wv;                                          \
                    else if ((INPUTS) == GCONV_DW_PAIRS)                                             \
                        acc[p] += gconv_broadcast_pair_##T(x_tap + p * col_step) * wv;               \
                    else {                                                                           \
                        memcpy(&xv, x_tap + p * col_step, sizeof(vec));                              \
                        acc[p] += xv * wv;                                                           \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
            memcpy(out + tile * GCONV_DW_OWT * (CB), acc, sizeof(acc));                              \
        }                                                                                            \
    }
#else
#define GCONV_DEFINE_DW(T, VEC, NAME, CB, INPUTS)                                                    \
    static void NAME(GCONV_DW_PARAMS(T))                                                             \
    {                                                                                                \
        int lane;                                                                                    \
        Py_ssize_t t, q;                                                                             \
        for (q = 0; q < n_tiles * GCONV_DW_OWT; q++)                                                 \
            for (lane = 0; lane < (CB); lane++) {                                                    \
                T sum = bias[lane];                                                                  \
                for (t = 0; t < n_taps; t++)                                                         \
                    sum += x[tap_offset[t] + q * col_step                                            \
                             + ((INPUTS) == GCONV_DW_PAIRS ? lane % 2 : (INPUTS) == GCONV_DW_BROADCAST ? 0 : lane)] \
                           * w[t * (CB) + lane];                                                     \
                out[q * (CB) + lane] = sum;                                                          \
            }                                                                                        \
    }
#endif

GCONV_DEFINE_DW(float, gconv_vec_float, gconv_dw_f32, GCONV_DW_CB_F32, GCONV_DW_VECTORS)
GCONV_DEFINE_DW(double, gconv_vec_double, gconv_dw_f64, GCONV_DW_CB_F64, GCONV_DW_VECTORS)
GCONV_DEFINE_DW(float, gconv_vec_float, gconv_gw_f32, GCONV_DW_CB_F32, GCONV_DW_BROADCAST)
GCONV_DEFINE_DW(double, gconv_vec_double, gconv_gw_f64, GCONV_DW_CB_F64, GCONV_DW_BROADCAST)

/* Twin tiles: two groups of at most half a vector of output channels each share a vector, group 2u's output j
 * in lane 2j and group 2u + 1's in lane 2j + 1 (dwconv/interleave.h moves lanes to and from that order). Their
 * slab holds each pixel's input channels interleaved alike, [ic][group], so one 64-bit broadcast puts input ic
 * of both groups in every lane pair: RegNet's groups of 8 float32 outputs fill a 512-bit register where one
 * group alone would fill half of one. The loads, registers and order of each output's taps are those of the
 * grouped tile: the same sums, bit for bit. Called with AVX-512 only (GCONV_GW_TWIN_TILES; below it a group
 * of half a vector is 4 float32 outputs, and two such groups stay direct).
 * x: slab at the row's first output column; output column q reads the pair x[tap_offset[t] + q * col_step]
 *    and the value after it through tap t. w, bias, out: as the other tiles', lanes in twin order. */
#define GCONV_GW_TWIN_TILES (GCONV_VECTOR_BYTES == 64)
GCONV_DEFINE_DW(float, gconv_vec_float, gconv_gw_twin_f32, GCONV_DW_CB_F32, GCONV_DW_PAIRS)
GCONV_DEFINE_DW(double, gconv_vec_double, gconv_gw_twin_f64, GCONV_DW_CB_F64, GCONV_DW_PAIRS)

/* Grouped pair tiles, with AVX-512 only: two vectors of a group's output channels (two packed blocks, w and
 * w + w_step) x OWT columns, so each broadcast input feeds two multiply-adds: ResNeXt's groups of 32 float32
 * outputs read half the broadcasts per multiply-add of the one-vector tile above. 14 accumulators + 2
 * weights, 16 of 32 registers (below AVX-512 the 16 registers and a broadcast register would spill). Each
 * output sums its taps in the order of the tile above: the same results, bit for bit.
 * bias: the two blocks' CB values each, adjacent; out: the first block's as the tile above, the second's at
 * out + out_step. */
#if GCONV_VECTOR_BYTES == 64 && (defined(__GNUC__) || defined(__clang__))
#define GCONV_GW_PAIR_TILES 1
#define GCONV_DEFINE_GW_PAIR(T, NAME, CB)                                                            \
    __attribute__((noinline)) static void NAME(GCONV_DW_PARAMS(T), Py_ssize_t w_step, Py_ssize_t out_step) \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        vec b0, b1;                                                                                  \
        int p;                                                                                       \
        Py_ssize_t t, tile;                                                                          \
        memcpy(&b0, bias, sizeof(vec));                                                              \
        memcpy(&b1, bias + (CB), sizeof(vec));                                                       \
        for (tile = 0; tile < n_tiles; tile++) {                                                     \
            const T *x_tile = x + tile * GCONV_DW_OWT * col_step;                                    \
            vec acc0[GCONV_DW_OWT], acc1[GCONV_DW_OWT];                                              \
            for (p = 0; p < GCONV_DW_OWT; p++) {                                                     \
                acc0[p] = b0;                                                                        \
                acc1[p] = b1;                                                                        \
            }                                                                                        \
            for (t = 0; t < n_taps; t++) {                                                           \
                vec w0, w1;                                                                          \
                const T *x_tap = x_tile + tap_offset[t];                                             \
                memcpy(&w0, w + t * (CB), sizeof(vec));                                              \
                memcpy(&w1, w + w_step + t * (CB), sizeof(vec));                                     \
                for (p = 0; p < GCONV_DW_OWT; p++) {                                                 \
                    const T xs = x_tap[p * col_step];                                                \
                    acc0[p] += xs * w0;                                                              \
                    acc1[p] += xs * w1;                                                              \
                }                                                                                    \
            }                                                                                        \
            memcpy(out + tile * GCONV_DW_OWT * (CB), acc0, sizeof(acc0));                            \
            memcpy(out + out_step + tile * GCONV_DW_OWT * (CB), acc1, sizeof(acc1));                 \
        }                                                                                            \
    }
GCONV_DEFINE_GW_PAIR(float, gconv_gw_pair_f32, GCONV_DW_CB_F32)
GCONV_DEFINE_GW_PAIR(double, gconv_gw_pair_f64, GCONV_DW_CB_F64)
#else
#define GCONV_GW_PAIR_TILES 0
#define GCONV_DEFINE_GW_PAIR_STUB(T, NAME)                                                           \
    static void NAME(GCONV_DW_PARAMS(T), Py_ssize_t w_step, Py_ssize_t out_step)                     \
    {                                                                                                \
        (void)n_taps, (void)x, (void)tap_offset, (void)col_step, (void)n_tiles, (void)w, (void)bias, \
            (void)out, (void)w_step, (void)out_step;                                                 \
    }
GCONV_DEFINE_GW_PAIR_STUB(float, gconv_gw_pair_f32)
GCONV_DEFINE_GW_PAIR_STUB(double, gconv_gw_pair_f64)
#endif

/* Depthwise row tiles for large kernels (KW = 5 or 7 columns, column stride 1, no column dilation), with
 * AVX-512 only: per kernel row the tile loads the OWT + KW - 1 input vectors its columns share once and
 * reuses them from registers for each kw, where the tile above loads one input vector per multiply-add.
 * 7x7: 20 loads per 49 multiply-adds instead of 56, so the FMA ports, not the loads, set the pace: 7
 * accumulators + 13 inputs + a weight, 21 of 32 registers. Measured (1 thread): 7x7 on 14x14 and 28x28
 * 1.35-1.4x, 5x5 on 28x28 1.3x faster than the tile above; 3x3 and stride 2 even or slower, so they keep
 * it. Below AVX-512 16 registers cannot hold the row, and the spills made it 1.3x slower (AVX2).
 *
 * Each output sums its taps in the order (kh, kw), as the tile above: the same results, bit for bit.
 * x: slab at the row's first output column, kernel row kh at x + kh * row_step; column q of the tile reads
 * x[kh * row_step + (q + kw) * CB + lane]. w, bias, out: as the tile above (w[(kh * KW + kw) * CB]). */
#if GCONV_VECTOR_BYTES == 64 && (defined(__GNUC__) || defined(__clang__))
#define GCONV_DW_ROW_TILES 1
#define GCONV_DEFINE_DW_ROWS(T, NAME, CB, KW)                                                        \
    __attribute__((noinline)) static void NAME(Py_ssize_t kh_size, const T *GCONV_RESTRICT x,        \
                                               Py_ssize_t row_step, Py_ssize_t n_tiles,              \
                                               const T *GCONV_RESTRICT w, const T *GCONV_RESTRICT bias, \
                                               T *GCONV_RESTRICT out)                                \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        enum { NX = GCONV_DW_OWT + (KW) - 1 };                                                       \
        vec b;                                                                                       \
        int p, j, kw;                                                                                \
        Py_ssize_t kh, tile;                                                                         \
        memcpy(&b, bias, sizeof(vec));                                                               \
        for (tile = 0; tile < n_tiles; tile++) {                                                     \
            const T *x_tile = x + tile * GCONV_DW_OWT * (CB);                                        \
            vec acc[GCONV_DW_OWT];                                                                   \
            for (p = 0; p < GCONV_DW_OWT; p++) acc[p] = b;                                           \
            for (kh = 0; kh < kh_size; kh++) {                                                       \
                const T *x_row = x_tile + kh * row_step;                                             \
                vec xv[NX];                                                                          \
                for (j = 0; j < NX; j++) memcpy(&xv[j], x_row + j * (CB), sizeof(vec));              \
                for (kw = 0; kw < (KW); kw++) {                                                      \
                    vec wv;                                                                          \
                    memcpy(&wv, w + (kh * (KW) + kw) * (CB), sizeof(vec));                           \
                    for (p = 0; p < GCONV_DW_OWT; p++) acc[p] += xv[p + kw] * wv;                    \
                }                                                                                    \
            }                                                                                        \
            memcpy(out + tile * GCONV_DW_OWT * (CB), acc, sizeof(acc));                              \
        }                                                                                            \
    }

/* the row tile for kw columns; 0 where there is none (the driver checks GCONV_DW_ROW_TILES first) */
#define GCONV_DEFINE_DW_ROWS_ALL(T, SUFFIX, CB)                                                      \
    GCONV_DEFINE_DW_ROWS(T, gconv_dw_rows_5_##SUFFIX, CB, 5)                                         \
    GCONV_DEFINE_DW_ROWS(T, gconv_dw_rows_7_##SUFFIX, CB, 7)                                         \
    static int gconv_dw_rows_##SUFFIX(int kw, Py_ssize_t kh_size, const T *x, Py_ssize_t row_step,  \
                                      Py_ssize_t n_tiles, const T *w, const T *bias, T *out)        \
    {                                                                                                \
        if (kw == 5)                                                                                 \
            gconv_dw_rows_5_##SUFFIX(kh_size, x, row_step, n_tiles, w, bias, out);                   \
        else if (kw == 7)                                                                            \
            gconv_dw_rows_7_##SUFFIX(kh_size, x, row_step, n_tiles, w, bias, out);                   \
        else                                                                                         \
            return 0;                                                                                \
        return 1;                                                                                    \
    }
#else
#define GCONV_DW_ROW_TILES 0
#define GCONV_DEFINE_DW_ROWS_ALL(T, SUFFIX, CB)                                                      \
    static int gconv_dw_rows_##SUFFIX(int kw, Py_ssize_t kh_size, const T *x, Py_ssize_t row_step,  \
                                      Py_ssize_t n_tiles, const T *w, const T *bias, T *out)        \
    {                                                                                                \
        (void)kw, (void)kh_size, (void)x, (void)row_step, (void)n_tiles, (void)w, (void)bias, (void)out; \
        return 0;                                                                                    \
    }
#endif

GCONV_DEFINE_DW_ROWS_ALL(float, f32, GCONV_DW_CB_F32)
GCONV_DEFINE_DW_ROWS_ALL(double, f64, GCONV_DW_CB_F64)

#endif
