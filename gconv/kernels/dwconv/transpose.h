/* Matrix transposes for the dwconv family's packing (NCHW rows to [column][channel] slabs and back), apart
 * from its micro-kernels as BLIS keeps packm apart: 16 x 16 float32 register transposes with AVX-512 (ragged
 * edges by masked loads and stores), 8 x 8 float32 and 4 x 4 float64 ones with AVX2, element loops for their
 * edges and other levels.
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

/* 8 x 8 block: d[c][r] = src[r * ss + c] */
GCONV_INLINE void gconv_transpose_block_float(const float *GCONV_RESTRICT src, Py_ssize_t ss, float *const *d)
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
    _mm256_storeu_ps(d[0], _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(d[1], _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(d[2], _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(d[3], _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(d[4], _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(d[5], _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(d[6], _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(d[7], _mm256_permute2f128_ps(s3, s7, 0x31));
}

/* 4 x 4 block: d[c][r] = src[r * ss + c] */
GCONV_INLINE void gconv_transpose_block_double(const double *GCONV_RESTRICT src, Py_ssize_t ss, double *const *d)
{
    __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + ss);
    __m256d r2 = _mm256_loadu_pd(src + 2 * ss), r3 = _mm256_loadu_pd(src + 3 * ss);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(d[0], _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(d[1], _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(d[2], _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(d[3], _mm256_permute2f128_pd(t1, t3, 0x31));
}
#endif

#if defined(__AVX512F__)
/* 16 x 16 block: d[c][r] = src[r * ss + c] for r < n_rows, c < n_cols (AVX-512: half the shuffles per element
 * of 8 x 8 blocks). Rows past n_rows read as zeros and columns past n_cols are neither read (masked loads,
 * which do not fault) nor stored; each stored column writes its first store_lanes lanes (16 also writes the
 * missing rows' zeros: a slab pixel's lanes past the channels). Called with constants for whole blocks. */
GCONV_INLINE void gconv_transpose_block16_float(const float *GCONV_RESTRICT src, Py_ssize_t ss, int n_rows, int n_cols,
                                                int store_lanes, float *const *d)
{
    const __mmask16 load_mask = (__mmask16)((1u << n_cols) - 1), store_mask = (__mmask16)((1u << store_lanes) - 1);
    __m512 row[16], pair[16], quad[16], column[16];
    int i, e;
    for (i = 0; i < 16; i++)
        row[i] = i >= n_rows ? _mm512_setzero_ps()
                 : n_cols == 16 ? _mm512_loadu_ps(src + i * ss)
                                : _mm512_maskz_loadu_ps(load_mask, src + i * ss);
    /* pair[2i], pair[2i + 1]: rows 2i and 2i + 1 interleaved, columns 4k, 4k + 1 and 4k + 2, 4k + 3 of lane k */
    for (i = 0; i < 8; i++) {
        pair[2 * i] = _mm512_unpacklo_ps(row[2 * i], row[2 * i + 1]);
        pair[2 * i + 1] = _mm512_unpackhi_ps(row[2 * i], row[2 * i + 1]);
    }
    /* quad[4g + e], lane k: rows 4g .. 4g + 3 of column 4k + e */
    for (i = 0; i < 4; i++) {
        quad[4 * i] = _mm512_shuffle_ps(pair[4 * i], pair[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        quad[4 * i + 1] = _mm512_shuffle_ps(pair[4 * i], pair[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        quad[4 * i + 2] = _mm512_shuffle_ps(pair[4 * i + 1], pair[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        quad[4 * i + 3] = _mm512_shuffle_ps(pair[4 * i + 1], pair[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* column 4k + e: lane k of quad[e], quad[4 + e], quad[8 + e], quad[12 + e] */
    for (e = 0; e < 4; e++) {
        __m512 low_even = _mm512_shuffle_f32x4(quad[e], quad[4 + e], 0x88); /* groups 0, 1 of lanes 0, 2 */
        __m512 low_odd = _mm512_shuffle_f32x4(quad[e], quad[4 + e], 0xDD);  /* groups 0, 1 of lanes 1, 3 */
        __m512 high_even = _mm512_shuffle_f32x4(quad[8 + e], quad[12 + e], 0x88);
        __m512 high_odd = _mm512_shuffle_f32x4(quad[8 + e], quad[12 + e], 0xDD);
        column[e] = _mm512_shuffle_f32x4(low_even, high_even, 0x88);
        column[8 + e] = _mm512_shuffle_f32x4(low_even, high_even, 0xDD);
        column[4 + e] = _mm512_shuffle_f32x4(low_odd, high_odd, 0x88);
        column[12 + e] = _mm512_shuffle_f32x4(low_odd, high_odd, 0xDD);
    }
    for (i = 0; i < n_cols; i++) {
        if (store_lanes == 16)
            _mm512_storeu_ps(d[i], column[i]);
        else
            _mm512_mask_storeu_ps(d[i], store_mask, column[i]);
    }
}
#endif

/* The transposes below: dst[(c / run) * run_pitch + (c % run) * ds + r] = src[r * ss + c] for r < rows,
 * c < cols, and zeros for rows <= r < lanes (a slab pixel's lanes past the channels). Columns come in runs of
 * `run` (an NCHW block's pixels, in rows of W), each run placed run_pitch apart (a padded slab row), so rows
 * land in the slab as they are transposed; run = cols is a plain transpose, dst[c * ds + r]. */

/* Rows r .. r + BLOCK - 1 from column c on, in whole BLOCK x BLOCK blocks; returns the first column left. */
#define GCONV_DEFINE_TRANSPOSE_BAND(NAME, T, BLOCK, BLOCK_FN)                                        \
    GCONV_INLINE Py_ssize_t NAME(const T *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t r, Py_ssize_t c, \
                                 Py_ssize_t cols, Py_ssize_t run, T *GCONV_RESTRICT dst, Py_ssize_t ds, \
                                 Py_ssize_t run_pitch)                                               \
    {                                                                                                \
        Py_ssize_t k, q = c / run, m = c % run; /* column c is column m of run q */                   \
        T *d[BLOCK];                                                                                 \
        for (; c + (BLOCK) <= cols; c += (BLOCK)) {                                                  \
            for (k = 0; k < (BLOCK); k++) {                                                          \
                d[k] = dst + q * run_pitch + m * ds + r;                                             \
                if (++m == run) {                                                                    \
                    m = 0;                                                                           \
                    q++;                                                                             \
                }                                                                                    \
            }                                                                                        \
            BLOCK_FN(src + r * ss + c, ss, d);                                                       \
        }                                                                                            \
        return c;                                                                                    \
    }

/* Rows r_lo .. r_hi - 1, columns c_lo .. cols - 1, by element: the edges of the blocks. */
#define GCONV_DEFINE_TRANSPOSE_ELEMENTS(T)                                                           \
    GCONV_INLINE void gconv_transpose_elements_##T(const T *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t r_lo, \
                                                   Py_ssize_t r_hi, Py_ssize_t c_lo, Py_ssize_t cols,  \
                                                   Py_ssize_t run, T *GCONV_RESTRICT dst, Py_ssize_t ds, \
                                                   Py_ssize_t run_pitch)                             \
    {                                                                                                \
        Py_ssize_t r, c;                                                                             \
        for (r = r_lo; r < r_hi; r++)                                                                \
            for (c = c_lo; c < cols; c++) dst[c / run * run_pitch + c % run * ds + r] = src[r * ss + c]; \
    }

GCONV_DEFINE_TRANSPOSE_ELEMENTS(float)
GCONV_DEFINE_TRANSPOSE_ELEMENTS(double)
#if defined(__AVX2__)
GCONV_DEFINE_TRANSPOSE_BAND(gconv_transpose_band8_float, float, 8, gconv_transpose_block_float)
GCONV_DEFINE_TRANSPOSE_BAND(gconv_transpose_band4_double, double, 4, gconv_transpose_block_double)
#endif

/* Lanes rows .. lanes - 1 of every column: zeros (the element paths). */
#define GCONV_DEFINE_TRANSPOSE_ZERO_LANES(T)                                                         \
    GCONV_INLINE void gconv_transpose_zero_lanes_##T(Py_ssize_t rows, Py_ssize_t lanes, Py_ssize_t cols, \
                                                     Py_ssize_t run, T *GCONV_RESTRICT dst, Py_ssize_t ds, \
                                                     Py_ssize_t run_pitch)                           \
    {                                                                                                \
        Py_ssize_t r, c;                                                                             \
        for (c = 0; c < cols; c++)                                                                   \
            for (r = rows; r < lanes; r++) dst[c / run * run_pitch + c % run * ds + r] = 0;           \
    }

GCONV_DEFINE_TRANSPOSE_ZERO_LANES(float)
GCONV_DEFINE_TRANSPOSE_ZERO_LANES(double)

GCONV_INLINE void gconv_transpose_runs_float(const float *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t rows,
                                             Py_ssize_t lanes, Py_ssize_t cols, Py_ssize_t run,
                                             float *GCONV_RESTRICT dst, Py_ssize_t ds, Py_ssize_t run_pitch)
{
    Py_ssize_t r = 0;
#if defined(__AVX512F__)
    int zeros_written = 0;
    /* Plain transposes into rows whole cache lines apart (NCHW planes of 56x56 or 28x28 float32) cut their
     * first band short where dst's rows reach a line, so that every other band stores whole lines: NumPy's
     * arrays mostly start 16 bytes past one, and a store across two lines costs two (dwconv outputs on those
     * maps, 1.06-1.14x) */
    Py_ssize_t band = 16;
    if (run == cols && lanes == rows && ds % 16 == 0 && (uintptr_t)dst % sizeof(float) == 0)
        band = 16 - (Py_ssize_t)((uintptr_t)dst / sizeof(float) % 16);
    /* 16 x 16 blocks, the ragged last rows and columns masked; a band that ends at most 16 lanes short of
     * `lanes` also writes those lanes' zeros */
    for (; r < rows; r += band, band = 16) {
        const int n_rows = (int)(rows - r < band ? rows - r : band);
        const int store_lanes = n_rows < 16 && lanes - r <= 16 ? (int)(lanes - r) : n_rows;
        Py_ssize_t c, k, q = 0, m = 0; /* column c is column m of run q */
        float *d[16];
        for (c = 0; c < cols; c += 16) {
            const int n_cols = (int)(cols - c < 16 ? cols - c : 16);
            for (k = 0; k < n_cols; k++) {
                d[k] = dst + q * run_pitch + m * ds + r;
                if (++m == run) {
                    m = 0;
                    q++;
                }
            }
            if (n_rows == 16 && n_cols == 16)
                gconv_transpose_block16_float(src + r * ss + c, ss, 16, 16, 16, d);
            else
                gconv_transpose_block16_float(src + r * ss + c, ss, n_rows, n_cols, store_lanes, d);
        }
        if (store_lanes > n_rows)
            zeros_written = 1;
    }
    if (!zeros_written)
        gconv_transpose_zero_lanes_float(rows, lanes, cols, run, dst, ds, run_pitch);
#else
#if defined(__AVX2__)
    for (; r + 8 <= rows; r += 8) {
        Py_ssize_t c = gconv_transpose_band8_float(src, ss, r, 0, cols, run, dst, ds, run_pitch);
        gconv_transpose_elements_float(src, ss, r, r + 8, c, cols, run, dst, ds, run_pitch);
    }
#endif
    gconv_transpose_elements_float(src, ss, r, rows, 0, cols, run, dst, ds, run_pitch);
    gconv_transpose_zero_lanes_float(rows, lanes, cols, run, dst, ds, run_pitch);
#endif
}

GCONV_INLINE void gconv_transpose_runs_double(const double *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t rows,
                                              Py_ssize_t lanes, Py_ssize_t cols, Py_ssize_t run,
                                              double *GCONV_RESTRICT dst, Py_ssize_t ds, Py_ssize_t run_pitch)
{
    Py_ssize_t r = 0;
#if defined(__AVX2__)
    for (; r + 4 <= rows; r += 4) {
        Py_ssize_t c = gconv_transpose_band4_double(src, ss, r, 0, cols, run, dst, ds, run_pitch);
        gconv_transpose_elements_double(src, ss, r, r + 4, c, cols, run, dst, ds, run_pitch);
    }
#endif
    gconv_transpose_elements_double(src, ss, r, rows, 0, cols, run, dst, ds, run_pitch);
    gconv_transpose_zero_lanes_double(rows, lanes, cols, run, dst, ds, run_pitch);
}

/* dst[c * ds + r] = src[r * ss + c] */
GCONV_INLINE void gconv_transpose_float(const float *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t rows,
                                        Py_ssize_t cols, float *GCONV_RESTRICT dst, Py_ssize_t ds)
{
    if (cols > 0)
        gconv_transpose_runs_float(src, ss, rows, rows, cols, cols, dst, ds, 0);
}

GCONV_INLINE void gconv_transpose_double(const double *GCONV_RESTRICT src, Py_ssize_t ss, Py_ssize_t rows,
                                         Py_ssize_t cols, double *GCONV_RESTRICT dst, Py_ssize_t ds)
{
    if (cols > 0)
        gconv_transpose_runs_double(src, ss, rows, rows, cols, cols, dst, ds, 0);
}

#endif
