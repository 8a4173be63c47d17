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
 * done one by one).
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
