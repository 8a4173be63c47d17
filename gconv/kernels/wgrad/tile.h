/* Weight-gradient micro-kernels (the "wgrad" family): channels x taps dot products over whole rows. */
#ifndef GCONV_WGRAD_TILE_H
#define GCONV_WGRAD_TILE_H

#include "../isa.h"

/* Tile shapes, defined here only (the .pyx reads these): GCONV_WGRAD_TILE_OC output channels x
 * GCONV_WGRAD_TILE_SIZE / GCONV_WGRAD_TILE_OC taps per call, or 1 channel x GCONV_WGRAD_TILE_SIZE taps
 * (depthwise). */
#define GCONV_WGRAD_TILE_OC 4
#define GCONV_WGRAD_TILE_SIZE 16

/* Weight-gradient micro-kernels: for NO output channels o and NK taps k (NO x NK = 16),
 *     acc[o * NK + k] += sum over rows r < n_rows, columns j < n of gy[o][r * gy_row_step + j] * x[k][r * x_row_step + j]
 * gy[o] and x[k] point at each channel's and tap's first row (callers repeat a valid pointer for channels
 * or taps they do not need). n is a multiple of the vector length: callers zero-pad rows to it.
 * Vector lanes accumulate over the whole block, reduced once into double. 4 x 4 serves groups with several
 * output channels; 1 x 16 serves depthwise, where a group has one. */
#if defined(__GNUC__) || defined(__clang__)
#define GCONV_DEFINE_WGRAD(T, NO, NK)                                                                \
    GCONV_INLINE void gconv_wgrad_##T##_##NO##x##NK(const T *const *gy, Py_ssize_t gy_row_step,      \
                                                    const T *const *x, Py_ssize_t x_row_step,        \
                                                    Py_ssize_t n_rows, Py_ssize_t n, double *acc)    \
    {                                                                                                \
        typedef gconv_vec_##T vec;                                                                   \
        enum { LANES = GCONV_VECTOR_BYTES / sizeof(T) };                                             \
        vec a[NO][NK];                                                                               \
        T lanes[LANES];                                                                              \
        Py_ssize_t r, j;                                                                             \
        int o, k, l;                                                                                 \
        for (o = 0; o < NO; o++)                                                                     \
            for (k = 0; k < NK; k++) a[o][k] = (vec){0};                                             \
        for (r = 0; r < n_rows; r++) {                                                               \
            for (j = 0; j < n; j += LANES) {                                                         \
                vec gv[NO], xv[NK];                                                                  \
                for (o = 0; o < NO; o++) memcpy(&gv[o], gy[o] + r * gy_row_step + j, sizeof(vec));   \
                for (k = 0; k < NK; k++) memcpy(&xv[k], x[k] + r * x_row_step + j, sizeof(vec));     \
                for (o = 0; o < NO; o++)                                                             \
                    for (k = 0; k < NK; k++) a[o][k] += gv[o] * xv[k];                               \
            }                                                                                        \
        }                                                                                            \
        for (o = 0; o < NO; o++)                                                                     \
            for (k = 0; k < NK; k++) {                                                               \
                memcpy(lanes, &a[o][k], sizeof(vec));                                                \
                for (l = 0; l < LANES; l++) acc[o * NK + k] += lanes[l];                             \
            }                                                                                        \
    }
#else
#define GCONV_DEFINE_WGRAD(T, NO, NK)                                                                \
    GCONV_INLINE void gconv_wgrad_##T##_##NO##x##NK(const T *const *gy, Py_ssize_t gy_row_step,      \
                                                    const T *const *x, Py_ssize_t x_row_step,        \
                                                    Py_ssize_t n_rows, Py_ssize_t n, double *acc)    \
    {                                                                                                \
        Py_ssize_t r, j;                                                                             \
        int o, k;                                                                                    \
        for (r = 0; r < n_rows; r++)                                                                 \
            for (j = 0; j < n; j++)                                                                  \
                for (o = 0; o < NO; o++)                                                             \
                    for (k = 0; k < NK; k++)                                                         \
                        acc[o * NK + k] += (double)gy[o][r * gy_row_step + j] * x[k][r * x_row_step + j];\
    }
#endif

GCONV_STATIC_ASSERT(GCONV_WGRAD_TILE_OC == 4 && GCONV_WGRAD_TILE_SIZE == 16, wgrad_tiles_are_4x4_and_1x16);

GCONV_DEFINE_WGRAD(float, 4, 4)
GCONV_DEFINE_WGRAD(float, 1, 16)
GCONV_DEFINE_WGRAD(double, 4, 4)
GCONV_DEFINE_WGRAD(double, 1, 16)

/* tile_oc is GCONV_WGRAD_TILE_OC (4 x 4) or 1 (1 x 16). */
#define GCONV_DEFINE_WGRAD_DISPATCH(T)                                                               \
    static inline void gconv_wgrad_##T(int tile_oc, const T *const *gy, Py_ssize_t gy_row_step,      \
                                       const T *const *x, Py_ssize_t x_row_step, Py_ssize_t n_rows,  \
                                       Py_ssize_t n, double *acc)                                    \
    {                                                                                                \
        if (tile_oc == GCONV_WGRAD_TILE_OC)                                                                         \
            gconv_wgrad_##T##_4x4(gy, gy_row_step, x, x_row_step, n_rows, n, acc);                   \
        else                                                                                         \
            gconv_wgrad_##T##_1x16(gy, gy_row_step, x, x_row_step, n_rows, n, acc);                  \
    }

GCONV_DEFINE_WGRAD_DISPATCH(float)
GCONV_DEFINE_WGRAD_DISPATCH(double)

#endif
