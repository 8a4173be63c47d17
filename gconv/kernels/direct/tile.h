/* Row-vectorised direct convolution micro-kernels (the "direct" family): one source, compiled once per
 * instruction-set level.
 *
 * A tile is OCB output channels x ROWS x TW outputs, accumulated in registers over every (input channel,
 * kh, kw) tap, then stored once with the bias. The input comes from a per-thread packed slab (see
 * _kernels.pyx): zero padding is already in it and, for stride s, its columns are split into phases so
 * that the TW columns a tap reads are contiguous. OCB * ROWS = GCONV_DIRECT_ACC_ROWS accumulator rows (8
 * with AVX-512, 12 below it); the caller picks OCB from the output channels per group (depthwise: OCB = 1). TW is two vectors with AVX-512 (32 registers)
 * and one vector below it (16 registers).
 *
 * The store writes out = tile + bias, or adds to out (accumulate: a 3-D convolution sums its depth taps
 * 2-D convolutions into one output).
 *
 * Two ways to map a tile onto outputs:
 *  - grid (pitch == 0): tile row r is output row r, row_step apart in the slab; n_rows x n_cols are kept.
 *  - flat (pitch > 0, stride 1 only): the block's outputs are numbered f = row * pitch + column, where
 *    pitch is the slab's row length, so output f reads slab position f + tap offset whatever its row.
 *    A tile is ROWS * TW consecutive f from f0 (row_step = TW); the positions whose column is >= n_cols
 *    fall between rows and are dropped. No tile is cut short at the end of a row.
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_DIRECT_TILE_H
#define GCONV_DIRECT_TILE_H

#include "../isa.h"

/* Tile shape, defined here only (the .pyx reads these): GCONV_DIRECT_ACC_ROWS accumulator rows of
 * GCONV_TILE_W_* columns, shared as OCB output channels x ROWS output rows with OCB a power of two up to
 * GCONV_DIRECT_MAX_OCB.
 *
 * AVX-512: 8 rows of two vectors, OCB in {8, 4, 2, 1} (16 accumulators of 32 registers).
 * Below it: 12 rows of one vector, OCB in {4, 2, 1} (12 accumulators of 16 registers): a fused multiply-add
 * has a latency of 4-5 cycles and two issue each cycle, so 8 chains (the former 8 channels x 1 row) left the
 * units idle, and 8 broadcast weights per input vector made the loads the bottleneck; 4 channels x 3 rows
 * load 3 input vectors and 4 weights per 12 multiply-adds. */
#if GCONV_VECTORS_PER_ROW == 2
#define GCONV_DIRECT_ACC_ROWS 8
#define GCONV_DIRECT_MAX_OCB 8
#else
#define GCONV_DIRECT_ACC_ROWS 12
#define GCONV_DIRECT_MAX_OCB 4
#endif
#define GCONV_TILE_W_F32 (GCONV_VECTORS_PER_ROW * GCONV_VECTOR_BYTES / 4)
#define GCONV_TILE_W_F64 (GCONV_VECTORS_PER_ROW * GCONV_VECTOR_BYTES / 8)

/* Store a finished tile kept in memory as tile[o][q], q = r * TW + j (both mappings above). Output columns
 * are out_col_stride apart: 1 for NCHW, the channel count for a channels-last (NHWC) output. Inlined into
 * each tile kernel, where its constant tile shape lets the compiler vectorise the copies. */
#define GCONV_DEFINE_STORE(T)                                                                        \
    GCONV_INLINE void gconv_store_##T(const T *GCONV_RESTRICT tile, Py_ssize_t tile_size, Py_ssize_t tw,   \
                                T *GCONV_RESTRICT out, Py_ssize_t out_channel_stride,                \
                                Py_ssize_t out_row_stride, Py_ssize_t out_col_stride,                \
                                const T *GCONV_RESTRICT bias, Py_ssize_t n_oc, Py_ssize_t n_rows,    \
                                Py_ssize_t n_cols, Py_ssize_t pitch, Py_ssize_t f0, int accumulate)  \
    {                                                                                                \
        Py_ssize_t o, r, j, q, row, col, run, keep;                                                  \
        for (o = 0; o < n_oc; o++) {                                                                 \
            const T b = bias ? bias[o] : (T)0;                                                       \
            const T *src = tile + o * tile_size;                                                     \
            T *dst_channel = out + o * out_channel_stride;                                           \
            if (pitch == 0) {                                                                        \
                for (r = 0; r < n_rows; r++) {                                                       \
                    T *dst = dst_channel + r * out_row_stride;                                       \
                    if (out_col_stride == 1)                                                         \
                        for (j = 0; j < n_cols; j++)                                                 \
                            dst[j] = (accumulate ? dst[j] : (T)0) + src[r * tw + j] + b;             \
                    else                                                                             \
                        for (j = 0; j < n_cols; j++) {                                               \
                            T *d = dst + j * out_col_stride;                                         \
                            *d = (accumulate ? *d : (T)0) + src[r * tw + j] + b;                     \
                        }                                                                            \
                }                                                                                    \
                continue;                                                                            \
            }                                                                                        \
            /* flat: n_rows is the number of valid positions q; walk them one output row at a time */\
            row = f0 / pitch;                                                                        \
            col = f0 % pitch;                                                                        \
            for (q = 0; q < n_rows; q += run, row++, col = 0) {                                      \
                T *dst = dst_channel + row * out_row_stride;                                         \
                run = pitch - col < n_rows - q ? pitch - col : n_rows - q;                           \
                keep = n_cols - col < run ? n_cols - col : run;                                      \
                if (out_col_stride == 1)                                                             \
                    for (j = 0; j < keep; j++)                                                       \
                        dst[col + j] = (accumulate ? dst[col + j] : (T)0) + src[q + j] + b;          \
                else                                                                                 \
                    for (j = 0; j < keep; j++) {                                                     \
                        T *d = dst + (col + j) * out_col_stride;                                     \
                        *d = (accumulate ? *d : (T)0) + src[q + j] + b;                              \
                    }                                                                                \
            }                                                                                        \
        }                                                                                            \
    }

GCONV_DEFINE_STORE(float)
GCONV_DEFINE_STORE(double)

#define GCONV_TILE_PARAMS(T)                                                                         \
    const T *GCONV_RESTRICT x, Py_ssize_t ic_stride, Py_ssize_t kh_stride, Py_ssize_t row_step,      \
        const Py_ssize_t *GCONV_RESTRICT kw_offset, const T *GCONV_RESTRICT w, Py_ssize_t n_ic,      \
        Py_ssize_t kh_size, Py_ssize_t kw_size, T *GCONV_RESTRICT out, Py_ssize_t out_channel_stride,\
        Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const T *GCONV_RESTRICT bias,          \
        Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch, Py_ssize_t f0, int accumulate

/* x: slab at the tile's first input; x[ic * ic_stride + kh * kh_stride + r * row_step + kw_offset[kw]
 * + j] is the input seen by tile row r, column j through tap (ic, kh, kw).
 * w: packed weights [ic][kh][kw][OCB] (channels past n_oc are zeros).
 * out: output at the tile's first output (grid) or at the block's first output (flat).
 *
 * With GCC or clang the accumulators are explicit vectors (vector extensions), so the compiler keeps them
 * in registers and vectorises along the output columns; left to itself it sometimes vectorised along the
 * channels instead and shuffled in the inner loop. Other compilers get the plain loops. */
#if defined(__GNUC__) || defined(__clang__)
/* acc += w * x over every tap; STEP is the distance between the tile's rows in the slab. ACCUMULATE in
 * GCONV_DEFINE_TILE is this or GCONV_ACCUMULATE_INPUT_FIRST below. */
#define GCONV_ACCUMULATE(T, OCB, ROWS, STEP)                                                                       \
    for (ic = 0; ic < n_ic; ic++) {                                                                  \
        for (kh = 0; kh < kh_size; kh++) {                                                           \
            const T *x_row = x + ic * ic_stride + kh * kh_stride;                                    \
            for (kw = 0; kw < kw_size; kw++, w += OCB) {                                             \
                const T *x_tap = x_row + kw_offset[kw];                                              \
                for (r = 0; r < ROWS; r++) {                                                         \
                    vec xv[VPR];                                                                     \
                    for (v = 0; v < VPR; v++)                                                        \
                        memcpy(&xv[v], x_tap + r * (STEP) + v * LANES, sizeof(vec));                 \
                    for (o = 0; o < OCB; o++)                                                        \
                        for (v = 0; v < VPR; v++) acc[o][r][v] += w[o] * xv[v];                      \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

/* The same sums, loading every row's input first and then broadcasting one weight at a time: ROWS + 1
 * live registers besides the accumulators instead of OCB + 1, for tiles with fewer rows than channels
 * and one vector per row (4 x 3 below AVX-512: 12 + 3 + 1 of 16 registers, where the order above spills
 * an accumulator to the stack and its chain through memory bounds the loop). */
#define GCONV_ACCUMULATE_INPUT_FIRST(T, OCB, ROWS, STEP)                                             \
    for (ic = 0; ic < n_ic; ic++) {                                                                  \
        for (kh = 0; kh < kh_size; kh++) {                                                           \
            const T *x_row = x + ic * ic_stride + kh * kh_stride;                                    \
            for (kw = 0; kw < kw_size; kw++, w += OCB) {                                             \
                const T *x_tap = x_row + kw_offset[kw];                                              \
                vec xv[ROWS];                                                                        \
                _Pragma("GCC unroll 16")                                                             \
                for (r = 0; r < ROWS; r++) memcpy(&xv[r], x_tap + r * (STEP), sizeof(vec));          \
                _Pragma("GCC unroll 16")                                                             \
                for (o = 0; o < OCB; o++) {                                                          \
                    const T wo = w[o];                                                               \
                    _Pragma("GCC unroll 16")                                                         \
                    for (r = 0; r < ROWS; r++) acc[o][r][0] += wo * xv[r];                           \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }


#define GCONV_DEFINE_TILE(T, NAME, TW, OCB, ROWS, ACCUMULATE)                                                  \
    static void NAME(GCONV_TILE_PARAMS(T))                                                           \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T), VPR = TW / LANES };                           \
        vec acc[OCB][ROWS][VPR];                                                                     \
        int o, r, v;                                                                                 \
        Py_ssize_t ic, kh, kw;                                                                       \
        for (o = 0; o < OCB; o++)                                                                    \
            for (r = 0; r < ROWS; r++)                                                               \
                for (v = 0; v < VPR; v++) acc[o][r][v] = (vec){0};                                   \
        if (pitch) /* flat: the tile's rows are consecutive, so every load has a fixed offset */     \
            ACCUMULATE(T, OCB, ROWS, TW)                                                             \
        else                                                                                         \
            ACCUMULATE(T, OCB, ROWS, row_step)                                                       \
        if (pitch == 0 && n_cols == TW && out_col_stride == 1) { /* whole rows, straight from registers */\
            for (o = 0; o < n_oc; o++) {                                                             \
                const T b = bias ? bias[o] : (T)0;                                                   \
                for (r = 0; r < n_rows; r++)                                                         \
                    for (v = 0; v < VPR; v++) {                                                      \
                        vec y = acc[o][r][v] + b;                                                    \
                        if (accumulate) {                                                            \
                            vec old;                                                                 \
                            memcpy(&old, out + o * out_channel_stride + r * out_row_stride + v * LANES,\
                                   sizeof(vec));                                                     \
                            y += old;                                                                \
                        }                                                                            \
                        memcpy(out + o * out_channel_stride + r * out_row_stride + v * LANES, &y,    \
                               sizeof(vec));                                                         \
                    }                                                                                \
            }                                                                                        \
            return;                                                                                  \
        }                                                                                            \
        {                                                                                            \
            T tile[OCB][ROWS * TW];                                                                  \
            memcpy(tile, acc, sizeof(tile));                                                         \
            gconv_store_##T(&tile[0][0], ROWS * TW, TW, out, out_channel_stride, out_row_stride,     \
                            out_col_stride, bias, n_oc, n_rows, n_cols, pitch, f0, accumulate);      \
        }                                                                                            \
    }
#else
#define GCONV_DEFINE_TILE(T, NAME, TW, OCB, ROWS, ACCUMULATE)                                                  \
    static void NAME(GCONV_TILE_PARAMS(T))                                                           \
    {                                                                                                \
        T tile[OCB][ROWS * TW];                                                                      \
        int o, r, j;                                                                                 \
        Py_ssize_t ic, kh, kw;                                                                       \
        for (o = 0; o < OCB; o++)                                                                    \
            for (j = 0; j < ROWS * TW; j++) tile[o][j] = 0;                                          \
        for (ic = 0; ic < n_ic; ic++) {                                                              \
            for (kh = 0; kh < kh_size; kh++) {                                                       \
                const T *x_row = x + ic * ic_stride + kh * kh_stride;                                \
                for (kw = 0; kw < kw_size; kw++, w += OCB) {                                         \
                    const T *x_tap = x_row + kw_offset[kw];                                          \
                    for (r = 0; r < ROWS; r++)                                                       \
                        for (o = 0; o < OCB; o++)                                                    \
                            for (j = 0; j < TW; j++)                                                 \
                                tile[o][r * TW + j] += w[o] * x_tap[r * row_step + j];               \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        gconv_store_##T(&tile[0][0], ROWS * TW, TW, out, out_channel_stride, out_row_stride,         \
                        out_col_stride, bias, n_oc, n_rows, n_cols, pitch, f0, accumulate);          \
    }
#endif

#define GCONV_TILE_CALL(NAME)                                                                        \
    NAME(x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic, kh_size, kw_size, out, out_channel_stride, \
         out_row_stride, out_col_stride, bias, n_oc, n_rows, n_cols, pitch, f0, accumulate)

/* The float32 and float64 tiles of OCB channels x ROWS rows, named gconv_tile_f32_<OCB>x<ROWS> etc. */
#define GCONV_DEFINE_TILES(OCB, ROWS, ACCUMULATE)                                                    \
    GCONV_DEFINE_TILE(float, gconv_tile_f32_##OCB##x##ROWS, GCONV_TILE_W_F32, OCB, ROWS, ACCUMULATE) \
    GCONV_DEFINE_TILE(double, gconv_tile_f64_##OCB##x##ROWS, GCONV_TILE_W_F64, OCB, ROWS, ACCUMULATE)

/* GCONV_TILE_CASES(SUFFIX): the tiles of this level by oc_block (ROWS = GCONV_DIRECT_ACC_ROWS / oc_block). */
#if GCONV_DIRECT_MAX_OCB == 8
GCONV_STATIC_ASSERT(GCONV_DIRECT_ACC_ROWS == 8, direct_tiles_are_8_accumulator_rows);

GCONV_DEFINE_TILES(8, 1, GCONV_ACCUMULATE)
GCONV_DEFINE_TILES(4, 2, GCONV_ACCUMULATE)
GCONV_DEFINE_TILES(2, 4, GCONV_ACCUMULATE)
GCONV_DEFINE_TILES(1, 8, GCONV_ACCUMULATE)

#define GCONV_TILE_CASES(SUFFIX)                                                                     \
    case 8: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_8x1); break;                                       \
    case 4: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_4x2); break;                                       \
    case 2: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_2x4); break;                                       \
    default: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_1x8); break;
#else
GCONV_STATIC_ASSERT(GCONV_DIRECT_ACC_ROWS == 12 && GCONV_DIRECT_MAX_OCB == 4, direct_tiles_are_12_accumulator_rows);

GCONV_DEFINE_TILES(4, 3, GCONV_ACCUMULATE_INPUT_FIRST)
GCONV_DEFINE_TILES(2, 6, GCONV_ACCUMULATE)
GCONV_DEFINE_TILES(1, 12, GCONV_ACCUMULATE)

#define GCONV_TILE_CASES(SUFFIX)                                                                     \
    case 4: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_4x3); break;                                       \
    case 2: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_2x6); break;                                       \
    default: GCONV_TILE_CALL(gconv_tile_##SUFFIX##_1x12); break;
#endif

/* oc_block is one of the level's (direct.pxi checks it against DIRECT_OC_BLOCKS). */
#define GCONV_DEFINE_DISPATCH(T, SUFFIX)                                                             \
    static inline void gconv_tile_##SUFFIX(int oc_block, GCONV_TILE_PARAMS(T))                       \
    {                                                                                                \
        switch (oc_block) { GCONV_TILE_CASES(SUFFIX) }                                               \
    }

GCONV_DEFINE_DISPATCH(float, f32)
GCONV_DEFINE_DISPATCH(double, f64)

#endif
