/* Winograd F(2x2, 3x3) transforms (the "winograd" family): one source, compiled once per instruction-set level.
 *
 * A 3x3 stride-1 convolution computes each 2x2 block of outputs (a tile) from the 4x4 inputs under it as
 * Y = A^T [ (G g G^T) * (B^T d B) ] A, with the products * taken element by element: 16 multiplies per input
 * channel and tile for 36 in the direct sum. Summed over the input channels, those 16 products are 16
 * independent matrix products M[xi] = U[xi] V[xi] (output channels x input channels times input channels x
 * tiles), which winograd.pxi runs on the gemm family's pointwise tiles as one call of 16 groups. Here are
 * the three transforms around them, each a handful of additions (the matrices hold 0, +-1 and +-1/2, so the
 * result is within a few roundings of the direct sum; lavin & gray, "Fast algorithms for convolutional
 * neural networks", 2015):
 *
 *        B^T = | 1  0 -1  0 |      G = |  1    0    0  |      A^T = | 1  1  1  0 |
 *              | 0  1  1  0 |          | 1/2  1/2  1/2 |            | 0  1 -1 -1 |
 *              | 0 -1  1  0 |          | 1/2 -1/2  1/2 |
 *              | 0  1  0 -1 |          |  0    0    1  |
 *
 * Input and output planes are transformed a row of tiles at a time, with loops over the row's tiles that the
 * compiler vectorises (tile t of a row reads its columns 2 t .. 2 t + 3; tiles that meet the padding are
 * done one by one); float32 with AVX-512, 16 tiles at a time in registers (gconv_wino_*_plane16).
 *
 * Included after Python.h (Cython puts it first): indices are Py_ssize_t, as everywhere in gconv. */
#ifndef GCONV_WINOGRAD_TRANSFORM_H
#define GCONV_WINOGRAD_TRANSFORM_H

#include <string.h>

#include "../isa.h"

/* The loops over a row's tiles write arrays that never overlap what they read (the scratch's parts, the
 * planes): tell the vectoriser, which otherwise keeps them scalar (GCC honours restrict on parameters
 * only, and these pointers are locals). */
#if defined(__clang__)
#define GCONV_WINO_VECTORISE _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define GCONV_WINO_VECTORISE _Pragma("GCC ivdep")
#else
#define GCONV_WINO_VECTORISE
#endif

/* The scratch one thread's transforms need for rows of tw tiles (values). */
#define GCONV_WINO_SCRATCH(tw) (16 * (tw))

/* With AVX-512, float32 planes with unit column stride go 16 tiles of a row at a time, in registers, with
 * masked ends: the generic loops below are as long as a row of tiles (14 on a 28x28 map, 7 on 14x14), too
 * short for the vectoriser's 16 lanes, which left them scalar (a quarter of a 3x3 128->128 on 28x28 went to
 * the transforms; 3x3 128->128 on 28x28 and 256->256 on 14x14 1.18-1.24x, 64->64 on 56x56 1.13x faster
 * at batch 1 and 8 than those scalar rows). */
#if GCONV_VECTOR_BYTES == 64
#define GCONV_WINO_LANES16 1
/* Lanes lo <= j < hi of 16. */
GCONV_INLINE __mmask16 gconv_wino_lanes(Py_ssize_t lo, Py_ssize_t hi)
{
    return (__mmask16)(gconv_lanes16(hi) & ~gconv_lanes16(lo));
}

/* V = B^T d B for a whole plane with unit column stride (as gconv_wino_input_*), 16 tiles of a row at a time
 * in registers: each of the 4 input rows under them is loaded once (columns outside [0, W) masked to zeros,
 * rows outside [0, H) zeros), its even and odd columns split by permutes and combined with B, then the 4 rows
 * with B^T, and the 16 products stored. The same additions as the scalar loops, in the same order. Nothing
 * goes through scratch: written with masked stores and read back at once, it stalled on every load (a
 * masked store forwards nothing). */
static void gconv_wino_input_plane16(const float *GCONV_RESTRICT x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t xs_h,
                                     Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t th, Py_ssize_t tw,
                                     float *GCONV_RESTRICT v, Py_ssize_t v_stride)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    Py_ssize_t ty, t0;
    int i, b;
    for (ty = 0; ty < th; ty++)
        for (t0 = 0; t0 < tw; t0 += 16) {
            const Py_ssize_t m = tw - t0 < 16 ? tw - t0 : 16;
            /* the tiles read columns c0 .. c0 + 2 m + 1 of each row, those inside [0, W) */
            const Py_ssize_t c0 = 2 * t0 - pad_left, lo = c0 < 0 ? 0 : c0;
            const Py_ssize_t hi = c0 + 2 * m + 2 < W ? c0 + 2 * m + 2 : W;
            const __mmask16 out = gconv_lanes16(m);
            __m512 h[4][4];
            float *dst = v + ty * tw + t0;
            for (i = 0; i < 4; i++) {
                const Py_ssize_t r = 2 * ty - pad_top + i;
                __m512 x0, x1, x2, x3;
                if (r < 0 || r >= H) {
                    for (b = 0; b < 4; b++) h[i][b] = _mm512_setzero_ps();
                    continue;
                }
                {
                    const float *p = x + r * xs_h + c0; /* masked lanes are never read */
                    const __m512 a = _mm512_maskz_loadu_ps(gconv_wino_lanes(lo - c0, hi - c0), p);
                    const __m512 bb = _mm512_maskz_loadu_ps(gconv_wino_lanes(lo - c0 - 16, hi - c0 - 16), p + 16);
                    const __m512 c = _mm512_maskz_loadu_ps(gconv_wino_lanes(lo - c0 - 2, hi - c0 - 2), p + 2);
                    const __m512 d = _mm512_maskz_loadu_ps(gconv_wino_lanes(lo - c0 - 18, hi - c0 - 18), p + 18);
                    x0 = _mm512_permutex2var_ps(a, even, bb);
                    x1 = _mm512_permutex2var_ps(a, odd, bb);
                    x2 = _mm512_permutex2var_ps(c, even, d);
                    x3 = _mm512_permutex2var_ps(c, odd, d);
                }
                h[i][0] = _mm512_sub_ps(x0, x2);
                h[i][1] = _mm512_add_ps(x1, x2);
                h[i][2] = _mm512_sub_ps(x2, x1);
                h[i][3] = _mm512_sub_ps(x1, x3);
            }
            for (b = 0; b < 4; b++) {
                _mm512_mask_storeu_ps(dst + b * v_stride, out, _mm512_sub_ps(h[0][b], h[2][b]));
                _mm512_mask_storeu_ps(dst + (4 + b) * v_stride, out, _mm512_add_ps(h[1][b], h[2][b]));
                _mm512_mask_storeu_ps(dst + (8 + b) * v_stride, out, _mm512_sub_ps(h[2][b], h[1][b]));
                _mm512_mask_storeu_ps(dst + (12 + b) * v_stride, out, _mm512_sub_ps(h[1][b], h[3][b]));
            }
        }
}

/* y = A^T m A + bias for a whole output plane with unit column stride (as gconv_wino_output_*), 16 tiles of
 * a row at a time in registers: their 16 products loaded, combined with A^T then A (the scalar loops' additions
 * in their order), each output row's even and odd columns interleaved by permutes and stored, the columns
 * past W_out masked. */
static void gconv_wino_output_plane16(const float *GCONV_RESTRICT m, Py_ssize_t m_stride, Py_ssize_t th,
                                      Py_ssize_t tw, float bias, float *GCONV_RESTRICT y, Py_ssize_t H_out,
                                      Py_ssize_t W_out, Py_ssize_t ys_h)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 bv = _mm512_set1_ps(bias);
    Py_ssize_t ty, t0;
    int b, p;
    for (ty = 0; ty < th; ty++)
        for (t0 = 0; t0 < tw; t0 += 16) {
            const __mmask16 in = gconv_lanes16(tw - t0);
            const float *src = m + ty * tw + t0;
            __m512 s[2][4];
            for (b = 0; b < 4; b++) {
                const __m512 m0 = _mm512_maskz_loadu_ps(in, src + b * m_stride);
                const __m512 m1 = _mm512_maskz_loadu_ps(in, src + (4 + b) * m_stride);
                const __m512 m2 = _mm512_maskz_loadu_ps(in, src + (8 + b) * m_stride);
                const __m512 m3 = _mm512_maskz_loadu_ps(in, src + (12 + b) * m_stride);
                s[0][b] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s[1][b] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            for (p = 0; p < 2 && 2 * ty + p < H_out; p++) {
                const __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[p][0], s[p][1]), s[p][2]), bv);
                const __m512 y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[p][1], s[p][2]), s[p][3]), bv);
                float *row = y + (2 * ty + p) * ys_h + 2 * t0;
                const Py_ssize_t cols = W_out - 2 * t0; /* this row's columns from 2 t0 on */
                _mm512_mask_storeu_ps(row, gconv_lanes16(cols), _mm512_permutex2var_ps(y0, lo, y1));
                _mm512_mask_storeu_ps(row + 16, gconv_lanes16(cols - 16), _mm512_permutex2var_ps(y0, hi, y1));
            }
        }
}

#else
#define GCONV_WINO_LANES16 0
#endif

/* The 16-lane paths for float only: the double instantiation compiles the calls away (a constant 0). */
#if GCONV_WINO_LANES16
#define GCONV_WINO_FLOAT16(T) (sizeof(T) == sizeof(float))
#define GCONV_WINO_INPUT_PLANE16(T, x, H, W, xs_h, pad_top, pad_left, th, tw, v, v_stride)            \
    gconv_wino_input_plane16((const float *)(x), H, W, xs_h, pad_top, pad_left, th, tw, (float *)(v), v_stride)
#define GCONV_WINO_OUTPUT_PLANE16(T, m, m_stride, th, tw, bias, y, H_out, W_out, ys_h)               \
    gconv_wino_output_plane16((const float *)(m), m_stride, th, tw, (float)(bias), (float *)(y), H_out, W_out, ys_h)
#else
#define GCONV_WINO_FLOAT16(T) 0
#define GCONV_WINO_INPUT_PLANE16(T, x, H, W, xs_h, pad_top, pad_left, th, tw, v, v_stride)
#define GCONV_WINO_OUTPUT_PLANE16(T, m, m_stride, th, tw, bias, y, H_out, W_out, ys_h)
#endif

/* Row i of tile t times B, the tile's columns read one by one (zeros where they fall in the padding). */
#define GCONV_WINO_EDGE_TILE(T, t)                                                                   \
    do {                                                                                             \
        T x_[4];                                                                                     \
        int j_;                                                                                      \
        for (j_ = 0; j_ < 4; j_++) {                                                                 \
            const Py_ssize_t c_ = 2 * (t) - pad_left + j_;                                           \
            x_[j_] = (c_ >= 0 && c_ < W) ? row[c_ * xs_w] : (T)0;                                    \
        }                                                                                            \
        h0[t] = x_[0] - x_[2];                                                                       \
        h1[t] = x_[1] + x_[2];                                                                       \
        h2[t] = x_[2] - x_[1];                                                                       \
        h3[t] = x_[1] - x_[3];                                                                       \
    } while (0)

/* V = B^T d B for every tile of one plane.
 * x: the plane, x[h * xs_h + w * xs_w], H x W, with pad_top / pad_left rows / columns of zeros before it
 *    (and as many after it as the tiles reach); tile (ty, tx) reads rows 2 ty - pad_top .. + 3, likewise
 *    columns.
 * v: the plane's 16 transformed planes, v[xi * v_stride + ty * tw + tx] for xi = 4 a + b (B^T row a, column b).
 * scratch: GCONV_WINO_SCRATCH(tw) values. */
#define GCONV_DEFINE_WINO_INPUT(T)                                                                   \
    static void gconv_wino_input_##T(const T *GCONV_RESTRICT x, Py_ssize_t H, Py_ssize_t W,          \
                                     Py_ssize_t xs_h, Py_ssize_t xs_w, Py_ssize_t pad_top,           \
                                     Py_ssize_t pad_left, Py_ssize_t th, Py_ssize_t tw,              \
                                     T *GCONV_RESTRICT v, Py_ssize_t v_stride, T *GCONV_RESTRICT scratch) \
    {                                                                                                \
        T *GCONV_RESTRICT h = scratch; /* h[(4 i + b) * tw + t]: row i of tile t times B's column b */ \
        Py_ssize_t ty, t, i, b;                                                                      \
        if (xs_w == 1 && GCONV_WINO_FLOAT16(T)) {                                                    \
            GCONV_WINO_INPUT_PLANE16(T, x, H, W, xs_h, pad_top, pad_left, th, tw, v, v_stride);      \
            return;                                                                                  \
        }                                                                                            \
        for (ty = 0; ty < th; ty++) {                                                                \
            for (i = 0; i < 4; i++) {                                                                \
                const Py_ssize_t r = 2 * ty - pad_top + i;                                           \
                T *GCONV_RESTRICT h0 = h + (4 * i) * tw, *GCONV_RESTRICT h1 = h0 + tw;               \
                T *GCONV_RESTRICT h2 = h1 + tw, *GCONV_RESTRICT h3 = h2 + tw;                        \
                if (r < 0 || r >= H) {                                                               \
                    for (t = 0; t < 4 * tw; t++) h0[t] = 0;                                          \
                    continue;                                                                        \
                }                                                                                    \
                {                                                                                    \
                    /* tiles t_lo <= t < t_hi read 4 columns inside the row, the others meet padding */ \
                    const T *GCONV_RESTRICT row = x + r * xs_h;                                      \
                    Py_ssize_t t_lo = (pad_left + 1) / 2;                                            \
                    Py_ssize_t t_hi = W - 4 + pad_left >= 0 ? (W - 4 + pad_left) / 2 + 1 : 0;        \
                    if (t_hi > tw) t_hi = tw;                                                        \
                    if (t_lo > tw) t_lo = tw;                                                        \
                    if (t_hi < t_lo) t_hi = t_lo;                                                    \
                    for (t = 0; t < t_lo; t++) GCONV_WINO_EDGE_TILE(T, t);                           \
                    if (xs_w == 1) {                                                                 \
                        const T *GCONV_RESTRICT src = row - pad_left;                                \
                        GCONV_WINO_VECTORISE                                                         \
                        for (t = t_lo; t < t_hi; t++) {                                              \
                            const T x0 = src[2 * t], x1 = src[2 * t + 1];                            \
                            const T x2 = src[2 * t + 2], x3 = src[2 * t + 3];                        \
                            h0[t] = x0 - x2;                                                         \
                            h1[t] = x1 + x2;                                                         \
                            h2[t] = x2 - x1;                                                         \
                            h3[t] = x1 - x3;                                                         \
                        }                                                                            \
                    } else {                                                                         \
                        for (t = t_lo; t < t_hi; t++) GCONV_WINO_EDGE_TILE(T, t);                    \
                    }                                                                                \
                    for (t = t_hi; t < tw; t++) GCONV_WINO_EDGE_TILE(T, t);                          \
                }                                                                                    \
            }                                                                                        \
            for (b = 0; b < 4; b++) {                                                                \
                const T *GCONV_RESTRICT r0 = h + b * tw, *GCONV_RESTRICT r1 = r0 + 4 * tw;           \
                const T *GCONV_RESTRICT r2 = r1 + 4 * tw, *GCONV_RESTRICT r3 = r2 + 4 * tw;          \
                T *GCONV_RESTRICT v0 = v + b * v_stride + ty * tw;                                   \
                T *GCONV_RESTRICT v1 = v0 + 4 * v_stride, *GCONV_RESTRICT v2 = v1 + 4 * v_stride;    \
                T *GCONV_RESTRICT v3 = v2 + 4 * v_stride;                                            \
                GCONV_WINO_VECTORISE                                                                 \
                for (t = 0; t < tw; t++) {                                                           \
                    v0[t] = r0[t] - r2[t];                                                           \
                    v1[t] = r1[t] + r2[t];                                                           \
                    v2[t] = r2[t] - r1[t];                                                           \
                    v3[t] = r1[t] - r3[t];                                                           \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

GCONV_DEFINE_WINO_INPUT(float)
GCONV_DEFINE_WINO_INPUT(double)

/* y = A^T m A + bias for every tile of one output plane.
 * m: the plane's 16 products, m[xi * m_stride + ty * tw + tx]; y: the plane, y[h * ys_h + w * ys_w], H_out x
 * W_out (a ragged last tile row or column is computed and not stored). scratch: GCONV_WINO_SCRATCH(tw). */
#define GCONV_DEFINE_WINO_OUTPUT(T)                                                                  \
    static void gconv_wino_output_##T(const T *GCONV_RESTRICT m, Py_ssize_t m_stride, Py_ssize_t th,  \
                                      Py_ssize_t tw, T bias, T *GCONV_RESTRICT y, Py_ssize_t H_out,  \
                                      Py_ssize_t W_out, Py_ssize_t ys_h, Py_ssize_t ys_w,            \
                                      T *GCONV_RESTRICT scratch)                                     \
    {                                                                                                \
        T *GCONV_RESTRICT s = scratch; /* s[(4 p + b) * tw + t]: A^T row p over the tile's rows, column b */ \
        T *GCONV_RESTRICT y0 = scratch + 8 * tw, *GCONV_RESTRICT y1 = y0 + tw;                       \
        Py_ssize_t ty, t, b, p;                                                                      \
        if (ys_w == 1 && GCONV_WINO_FLOAT16(T)) {                                                    \
            GCONV_WINO_OUTPUT_PLANE16(T, m, m_stride, th, tw, bias, y, H_out, W_out, ys_h);          \
            return;                                                                                  \
        }                                                                                            \
        for (ty = 0; ty < th; ty++) {                                                                \
            for (b = 0; b < 4; b++) {                                                                \
                const T *GCONV_RESTRICT m0 = m + b * m_stride + ty * tw;                             \
                const T *GCONV_RESTRICT m1 = m0 + 4 * m_stride, *GCONV_RESTRICT m2 = m1 + 4 * m_stride; \
                const T *GCONV_RESTRICT m3 = m2 + 4 * m_stride;                                      \
                T *GCONV_RESTRICT s0 = s + b * tw, *GCONV_RESTRICT s1 = s0 + 4 * tw;                 \
                GCONV_WINO_VECTORISE                                                                 \
                for (t = 0; t < tw; t++) {                                                           \
                    s0[t] = m0[t] + m1[t] + m2[t];                                                   \
                    s1[t] = m1[t] - m2[t] - m3[t];                                                   \
                }                                                                                    \
            }                                                                                        \
            for (p = 0; p < 2 && 2 * ty + p < H_out; p++) {                                          \
                const T *GCONV_RESTRICT s0 = s + 4 * p * tw, *GCONV_RESTRICT s1 = s0 + tw;           \
                const T *GCONV_RESTRICT s2 = s1 + tw, *GCONV_RESTRICT s3 = s2 + tw;                  \
                T *GCONV_RESTRICT row = y + (2 * ty + p) * ys_h;                                     \
                GCONV_WINO_VECTORISE                                                                 \
                for (t = 0; t < tw; t++) {                                                           \
                    y0[t] = s0[t] + s1[t] + s2[t] + bias;                                            \
                    y1[t] = s1[t] - s2[t] - s3[t] + bias;                                            \
                }                                                                                    \
                for (t = 0; t < W_out / 2; t++) {                                                    \
                    row[(2 * t) * ys_w] = y0[t];                                                     \
                    row[(2 * t + 1) * ys_w] = y1[t];                                                 \
                }                                                                                    \
                if (W_out % 2) row[(W_out - 1) * ys_w] = y0[tw - 1];                                 \
            }                                                                                        \
        }                                                                                            \
    }

GCONV_DEFINE_WINO_OUTPUT(float)
GCONV_DEFINE_WINO_OUTPUT(double)

/* U = G g G^T for the n_k kernels g[k * 9 + 3 i + j] (one output channel's, input channel k):
 * u[xi * u_stride + k] for xi = 4 a + b. Blocks of k go through a local copy, so that the 16 rows, u_stride
 * apart (a multiple of a page for most layers), are each written in runs rather than one value at a time
 * (16 streams that fall into one L1 set: 3x3 256->256 took 3.5 ms, not 0.2). */
#define GCONV_WINO_WEIGHT_BLOCK 64
#define GCONV_DEFINE_WINO_WEIGHT(T)                                                                  \
    static void gconv_wino_weight_##T(const T *GCONV_RESTRICT g, Py_ssize_t n_k, T *GCONV_RESTRICT u, \
                                      Py_ssize_t u_stride)                                           \
    {                                                                                                \
        T block[16][GCONV_WINO_WEIGHT_BLOCK];                                                        \
        Py_ssize_t k0, k, n;                                                                         \
        int a, j;                                                                                    \
        for (k0 = 0; k0 < n_k; k0 += GCONV_WINO_WEIGHT_BLOCK) {                                      \
            n = n_k - k0 < GCONV_WINO_WEIGHT_BLOCK ? n_k - k0 : GCONV_WINO_WEIGHT_BLOCK;             \
            for (k = 0; k < n; k++) {                                                                \
                const T *GCONV_RESTRICT gk = g + (k0 + k) * 9;                                       \
                T gg[4][3]; /* G g */                                                                \
                for (j = 0; j < 3; j++) {                                                            \
                    gg[0][j] = gk[j];                                                                \
                    gg[1][j] = (T)0.5 * (gk[j] + gk[3 + j] + gk[6 + j]);                             \
                    gg[2][j] = (T)0.5 * (gk[j] - gk[3 + j] + gk[6 + j]);                             \
                    gg[3][j] = gk[6 + j];                                                            \
                }                                                                                    \
                for (a = 0; a < 4; a++) {                                                            \
                    block[4 * a + 0][k] = gg[a][0];                                                  \
                    block[4 * a + 1][k] = (T)0.5 * (gg[a][0] + gg[a][1] + gg[a][2]);                 \
                    block[4 * a + 2][k] = (T)0.5 * (gg[a][0] - gg[a][1] + gg[a][2]);                 \
                    block[4 * a + 3][k] = gg[a][2];                                                  \
                }                                                                                    \
            }                                                                                        \
            for (a = 0; a < 16; a++) memcpy(u + a * u_stride + k0, block[a], n * sizeof(T));         \
        }                                                                                            \
    }

GCONV_DEFINE_WINO_WEIGHT(float)
GCONV_DEFINE_WINO_WEIGHT(double)

#endif
