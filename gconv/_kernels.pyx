"""Convolution kernels: typed memoryviews fused over float32/float64, GIL released, OpenMP over work items.

Every argument is validated and coerced by gconv.functional before it gets here: one dtype, consistent
shapes, exact output geometry, C-contiguous weight and bias; input and output may have any strides (NCHW,
channels-last, views). Bounds checks are off in a normal build (the Python layer proved the bounds) and
on in a debug build (GCONV_DEBUG=1 at build time).

This one source is compiled once per instruction-set level (gconv._kernels is the portable build; setup.py
adds _kernels_avx2 and _kernels_avx512 where the compiler can); gconv._dispatch picks one at import.
"""

import numpy as np

from cpython.pyport cimport PY_SSIZE_T_MAX
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cdef extern from "_omp_shim.h" nogil:
    int GCONV_OPENMP_ENABLED
    int omp_get_max_threads()
    int omp_get_num_threads()
    int omp_get_thread_num()
    void omp_set_num_threads(int n)
    const char* gconv_openmp_library()


cdef extern from "_microkernel.h" nogil:
    const char* GCONV_ISA_NAME
    int GCONV_VECTOR_BYTES
    int GCONV_TILE_W_F32
    int GCONV_TILE_W_F64
    void gconv_tile_f32(int oc_block, const float* x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,
                        Py_ssize_t row_step, const Py_ssize_t* kw_offset, const float* w, Py_ssize_t n_ic,
                        Py_ssize_t kh_size, Py_ssize_t kw_size, float* out, Py_ssize_t out_channel_stride,
                        Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const float* bias,
                        Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch, Py_ssize_t f0)
    void gconv_tile_f64(int oc_block, const double* x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,
                        Py_ssize_t row_step, const Py_ssize_t* kw_offset, const double* w, Py_ssize_t n_ic,
                        Py_ssize_t kh_size, Py_ssize_t kw_size, double* out, Py_ssize_t out_channel_stride,
                        Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const double* bias,
                        Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch, Py_ssize_t f0)


cdef extern from "_microkernel.h" nogil:
    void gconv_wgrad_float(int tile_oc, const float* const* gy, Py_ssize_t gy_row_step, const float* const* x,
                           Py_ssize_t x_row_step, Py_ssize_t n_rows, Py_ssize_t n, double* acc)
    void gconv_wgrad_double(int tile_oc, const double* const* gy, Py_ssize_t gy_row_step,
                            const double* const* x, Py_ssize_t x_row_step, Py_ssize_t n_rows, Py_ssize_t n,
                            double* acc)


cdef enum:
    # Work items wanted per thread before blocks are split further, so static chunks stay balanced.
    ITEMS_PER_THREAD = 4
    # Bytes of packed input one thread works from at a time: it stays in L2 while every output-channel
    # block of the item sweeps over it.
    SLAB_BUDGET = 384 * 1024
    # Beyond this even a one-tile slab is absurd (only huge dilations get here): use the direct loops.
    SLAB_LIMIT = 64 * 1024 * 1024

ISA = GCONV_ISA_NAME.decode()  # the instruction set this module was compiled for


def openmp_enabled():
    """Whether this build runs its kernels in parallel.

    Returns
    -------
    bool
        True when the kernels were compiled with OpenMP, False for the serial fallback build.
    """
    return bool(GCONV_OPENMP_ENABLED)


def omp_max_threads():
    """omp_get_max_threads() of the calling OS thread (OMP_NUM_THREADS, threadpoolctl limits)."""
    return omp_get_max_threads()


def omp_set_max_threads(int n_threads):
    """omp_set_num_threads() for the calling OS thread only, as OpenMP defines it."""
    omp_set_num_threads(n_threads)


def openmp_library():
    """Path of the OpenMP runtime library this module's calls go to ('' without OpenMP or when unknown)."""
    return gconv_openmp_library().decode("utf-8", "surrogateescape")


def parallel_team_size(int n_threads):
    """Threads an OpenMP parallel region asked for n_threads really runs with (1 without OpenMP)."""
    cdef int team[1]
    team[0] = 1
    with nogil, parallel(num_threads=n_threads):
        if omp_get_thread_num() == 0:
            team[0] = omp_get_num_threads()
    return team[0]


cdef struct Plan:
    # input (N, C_in, H, W), weight (C_out, ic_per_group, KH, KW), output (N, C_out, H_out, W_out)
    Py_ssize_t N, C_in, H, W, C_out, KH, KW, H_out, W_out
    Py_ssize_t groups, ic_per_group, oc_per_group
    Py_ssize_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w
    # element strides of input and output (N, C, H, W): NCHW, channels-last or any view
    Py_ssize_t x_stride_n, x_stride_c, x_stride_h, x_stride_w
    Py_ssize_t out_stride_n, out_stride_c, out_stride_h, out_stride_w
    # register tile: oc_block channels x tile_rows x tile_cols outputs (see _microkernel.h), laid over
    # rows and columns (grid) or over the block's flattened outputs (flat: stride 1, one channel deep)
    int oc_block
    bint flat
    Py_ssize_t tile_rows, tile_cols, n_oc_blocks
    # work item = ((n * groups + g) * n_row_blocks + row_block) * n_col_blocks + col_block, or with the
    # group varying fastest when channels are adjacent in memory (channels-last), so that consecutive
    # items share the cache lines they read and write
    Py_ssize_t rows_per_block, cols_per_block, n_row_blocks, n_col_blocks
    bint groups_inner
    # per-thread slab: [ic][slab_rows][n_phases][phase_len]; rows are slab_row_len apart. Only the
    # column phases (kw * dilation_w) % stride_w that some tap reads are stored (at most KW of them).
    Py_ssize_t n_phases, slab_rows, phase_len, slab_row_len, slab_size


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b  # a >= 0, b > 0


# Scratch sizes in elements stop here, so that one in bytes (at most 8 per element) still fits in Py_ssize_t.
cdef Py_ssize_t SIZE_CAP = PY_SSIZE_T_MAX // 8


cdef inline Py_ssize_t _size_product(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """a * b for sizes a, b >= 0, or SIZE_CAP when larger: huge dilations must not wrap a size to a small one."""
    if a != 0 and b > SIZE_CAP // a:
        return SIZE_CAP
    return a * b


cdef void _plan_slab(Plan* plan, Py_ssize_t row_tiles, Py_ssize_t col_tiles) noexcept nogil:
    """Slab shape for blocks of row_tiles x col_tiles tiles: the padded input those outputs read."""
    plan.rows_per_block = row_tiles * plan.tile_rows
    plan.cols_per_block = col_tiles * plan.tile_cols
    plan.slab_rows = (plan.rows_per_block - 1) * plan.stride_h + (plan.KH - 1) * plan.dilation_h + 1
    # tile column j of tap kw reads phase position (ow - ow_start) + j + (kw * dilation_w) // stride_w
    plan.phase_len = plan.cols_per_block + ((plan.KW - 1) * plan.dilation_w) // plan.stride_w
    plan.slab_row_len = plan.n_phases * plan.phase_len
    if plan.flat:
        # the last flat tile may reach past the block's last row by up to one tile plus the widest tap
        plan.slab_rows += _ceil_div(plan.tile_rows * plan.tile_cols + (plan.KW - 1) * plan.dilation_w,
                                    plan.slab_row_len)
    plan.slab_size = _size_product(_size_product(plan.ic_per_group, plan.slab_rows), plan.slab_row_len)


cdef void _pack_slab(const Plan* plan, const floating* x, floating* slab, const Py_ssize_t* phases,
                     Py_ssize_t n, Py_ssize_t g, Py_ssize_t oh_start, Py_ssize_t ow_start) noexcept nogil:
    """Copy the input one block reads into slab, zeros where it falls in the padding.

    Position pos of phase p in a slab row holds input column ow_start * stride_w - pad_left + pos * stride_w
    + p, so the output columns j, j+1, ... of one tap read consecutive positions whatever the stride.
    """
    cdef Py_ssize_t s = plan.stride_w, W = plan.W, length = plan.phase_len, ics = plan.ic_per_group
    cdef Py_ssize_t first_row = oh_start * plan.stride_h - plan.pad_top
    cdef Py_ssize_t first_col = ow_start * s - plan.pad_left
    cdef Py_ssize_t xs_c = plan.x_stride_c, xs_w = plan.x_stride_w
    cdef Py_ssize_t ic, r, ih, lo, hi, slot, pos, col0
    cdef Py_ssize_t channel_len = plan.slab_rows * plan.slab_row_len
    cdef const floating* src
    cdef const floating* image = x + n * plan.x_stride_n + g * ics * xs_c
    cdef floating* dst
    cdef floating* row
    if xs_w == 1:
        # rows are contiguous (NCHW, slices): one channel at a time, a row at a time
        for ic in range(ics):
            for r in range(plan.slab_rows):
                ih = first_row + r
                dst = slab + ic * channel_len + r * plan.slab_row_len
                if ih < 0 or ih >= plan.H:
                    memset(dst, 0, plan.slab_row_len * sizeof(floating))
                    continue
                for slot in range(plan.n_phases):
                    # positions [lo, hi) read columns col0 + pos * s inside [0, W); the rest is padding
                    col0 = first_col + phases[slot]
                    lo = min(length, _ceil_div(-col0, s)) if col0 < 0 else 0
                    hi = max(lo, min(length, (W - 1 - col0) // s + 1)) if col0 < W else lo
                    src = image + ic * xs_c + ih * plan.x_stride_h + col0
                    memset(dst, 0, lo * sizeof(floating))
                    if s == 1:
                        memcpy(dst + lo, src + lo, (hi - lo) * sizeof(floating))
                    elif s == 2:  # a constant stride lets the compiler vectorise the de-interleave
                        for pos in range(lo, hi):
                            dst[pos] = src[2 * pos]
                    else:
                        for pos in range(lo, hi):
                            dst[pos] = src[s * pos]
                    memset(dst + hi, 0, (length - hi) * sizeof(floating))
                    dst += length
        return
    # columns not adjacent (channels-last or another view): walk each input column once and spread its
    # channels, adjacent in memory for channels-last, over their slab rows
    for r in range(plan.slab_rows):
        ih = first_row + r
        row = slab + r * plan.slab_row_len  # channel ic's row: row + ic * channel_len
        if ih < 0 or ih >= plan.H:
            for ic in range(ics):
                memset(row + ic * channel_len, 0, plan.slab_row_len * sizeof(floating))
            continue
        for slot in range(plan.n_phases):
            col0 = first_col + phases[slot]
            lo = min(length, _ceil_div(-col0, s)) if col0 < 0 else 0
            hi = max(lo, min(length, (W - 1 - col0) // s + 1)) if col0 < W else lo
            src = image + ih * plan.x_stride_h + col0 * xs_w
            dst = row + slot * length
            for ic in range(ics):
                memset(dst + ic * channel_len, 0, lo * sizeof(floating))
                memset(dst + ic * channel_len + hi, 0, (length - hi) * sizeof(floating))
            for pos in range(lo, hi):
                for ic in range(ics):
                    dst[ic * channel_len + pos] = src[pos * s * xs_w + ic * xs_c]


cdef inline Py_ssize_t _floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # b > 0. C division truncates toward zero; the column bounds need floor for negative a.
    cdef Py_ssize_t q = a / b
    if a % b != 0 and a < 0:
        q -= 1
    return q


cdef inline Py_ssize_t _ceil_div_signed(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return -_floor_div(-a, b)


cdef inline void _axpy(floating* y, const floating* x, floating a, Py_ssize_t n) noexcept nogil:
    # y[i] += a * x[i]: contiguous, so the compiler vectorises it.
    cdef Py_ssize_t i
    for i in range(n):
        y[i] += a * x[i]


cdef inline void _axpy_strided(floating* y, const floating* x, Py_ssize_t x_step, floating a,
                               Py_ssize_t n) noexcept nogil:
    # y[i] += a * x[i * x_step]: the strided-convolution gather.
    cdef Py_ssize_t i
    for i in range(n):
        y[i] += a * x[i * x_step]


cdef void _direct_conv_item(const Plan* geo, const floating* x, const floating* weight,
                            const floating* bias, bint has_bias, floating* out,
                            Py_ssize_t item) noexcept nogil:
    """Fallback for geometry whose packed slab would be huge (e.g. dilation 2**30 with padding to match).

    One work item: output rows [oh_start, oh_end) of up to oc_block channels of one (n, group).

    Zero padding is implicit: input rows outside [0, H) are skipped and, per kernel column, only the
    output columns whose input column lies in [0, W) are visited. Each output is summed over
    (ic, kh, kw) in the same order whatever the split, so results do not depend on the thread count.
    """
    cdef Py_ssize_t rest = item
    cdef Py_ssize_t row_block = rest % geo.n_row_blocks
    rest = rest // geo.n_row_blocks
    cdef Py_ssize_t oc_block = rest % geo.n_oc_blocks
    rest = rest // geo.n_oc_blocks
    cdef Py_ssize_t g = rest % geo.groups
    cdef Py_ssize_t n = rest // geo.groups

    cdef Py_ssize_t oc_start = g * geo.oc_per_group + oc_block * geo.oc_block
    cdef Py_ssize_t oc_end = min(oc_start + geo.oc_block, (g + 1) * geo.oc_per_group)
    cdef Py_ssize_t oh_start = row_block * geo.rows_per_block
    cdef Py_ssize_t oh_end = min(oh_start + geo.rows_per_block, geo.H_out)
    cdef Py_ssize_t W = geo.W, W_out = geo.W_out, stride_w = geo.stride_w
    cdef Py_ssize_t oc, oh, ic, kh, kw, ih, j, col_offset, ow_lo, ow_hi
    cdef floating init
    cdef floating* out_row
    cdef const floating* x_plane
    cdef const floating* x_row
    cdef const floating* w_tap

    for oc in range(oc_start, oc_end):
        init = bias[oc] if has_bias else 0
        out_row = out + ((n * geo.C_out + oc) * geo.H_out + oh_start) * W_out
        for j in range((oh_end - oh_start) * W_out):
            out_row[j] = init

    for oh in range(oh_start, oh_end):
        for ic in range(geo.ic_per_group):
            x_plane = x + (n * geo.C_in + g * geo.ic_per_group + ic) * geo.H * W
            for kh in range(geo.KH):
                ih = oh * geo.stride_h - geo.pad_top + kh * geo.dilation_h
                if ih < 0 or ih >= geo.H:
                    continue
                x_row = x_plane + ih * W
                for kw in range(geo.KW):
                    # output column ow reads input column ow * stride_w + col_offset
                    col_offset = kw * geo.dilation_w - geo.pad_left
                    ow_lo = max(0, _ceil_div_signed(-col_offset, stride_w))
                    ow_hi = min(W_out, _floor_div(W - 1 - col_offset, stride_w) + 1)
                    if ow_lo >= ow_hi:
                        continue
                    w_tap = weight + ((oc_start * geo.ic_per_group + ic) * geo.KH + kh) * geo.KW + kw
                    for oc in range(oc_start, oc_end):
                        out_row = out + ((n * geo.C_out + oc) * geo.H_out + oh) * W_out
                        if stride_w == 1:
                            _axpy(out_row + ow_lo, x_row + ow_lo + col_offset, w_tap[0], ow_hi - ow_lo)
                        else:
                            _axpy_strided(out_row + ow_lo, x_row + ow_lo * stride_w + col_offset,
                                          stride_w, w_tap[0], ow_hi - ow_lo)
                        w_tap += geo.ic_per_group * geo.KH * geo.KW



cdef void _conv_item(const Plan* plan, const floating* x, const floating* packed_weight,
                     const floating* bias, floating* out, floating* slab, const Py_ssize_t* kw_offset,
                     const Py_ssize_t* phases, Py_ssize_t item) noexcept nogil:
    """One work item: all output channels of group g for one block of rows x columns of image n."""
    cdef Py_ssize_t rest = item, g = 0, col_block, row_block, n
    if plan.groups_inner:
        g = rest % plan.groups
        rest = rest // plan.groups
    col_block = rest % plan.n_col_blocks
    rest = rest // plan.n_col_blocks
    row_block = rest % plan.n_row_blocks
    rest = rest // plan.n_row_blocks
    if not plan.groups_inner:
        g = rest % plan.groups
        rest = rest // plan.groups
    n = rest
    cdef Py_ssize_t oh_start = row_block * plan.rows_per_block
    cdef Py_ssize_t oh_end = min(oh_start + plan.rows_per_block, plan.H_out)
    cdef Py_ssize_t ow_start = col_block * plan.cols_per_block
    cdef Py_ssize_t ow_end = min(ow_start + plan.cols_per_block, plan.W_out)
    cdef Py_ssize_t taps = plan.ic_per_group * plan.KH * plan.KW
    cdef Py_ssize_t ic_stride = plan.slab_rows * plan.slab_row_len
    cdef Py_ssize_t kh_stride = plan.dilation_h * plan.slab_row_len
    cdef Py_ssize_t row_step = plan.stride_h * plan.slab_row_len
    cdef Py_ssize_t os_c = plan.out_stride_c, os_h = plan.out_stride_h, os_w = plan.out_stride_w
    cdef Py_ssize_t block, oc_first, n_oc, oh, ow, f
    cdef const floating* w_block
    cdef const floating* b_block

    cdef Py_ssize_t flat_end = (oh_end - oh_start - 1) * plan.slab_row_len + (ow_end - ow_start)
    cdef Py_ssize_t flat_tile = plan.tile_rows * plan.tile_cols
    cdef floating* out_block

    _pack_slab(plan, x, slab, phases, n, g, oh_start, ow_start)
    for block in range(plan.n_oc_blocks):
        oc_first = g * plan.oc_per_group + block * plan.oc_block
        n_oc = min(<Py_ssize_t> plan.oc_block, plan.oc_per_group - block * plan.oc_block)
        w_block = packed_weight + (g * plan.n_oc_blocks + block) * taps * plan.oc_block
        b_block = bias + oc_first if bias != NULL else NULL
        out_block = out + n * plan.out_stride_n + oc_first * os_c + oh_start * os_h + ow_start * os_w
        if plan.flat:
            f = 0
            while f < flat_end:
                _tile(plan.oc_block, slab + f, ic_stride, kh_stride, plan.tile_cols, kw_offset, w_block,
                      plan.ic_per_group, plan.KH, plan.KW, out_block, os_c, os_h, os_w, b_block, n_oc,
                      min(flat_tile, flat_end - f), ow_end - ow_start, plan.slab_row_len, f)
                f += flat_tile
            continue
        oh = oh_start
        while oh < oh_end:
            ow = ow_start
            while ow < ow_end:
                _tile(plan.oc_block, slab + (oh - oh_start) * row_step + (ow - ow_start), ic_stride,
                      kh_stride, row_step, kw_offset, w_block, plan.ic_per_group, plan.KH, plan.KW,
                      out_block + (oh - oh_start) * os_h + (ow - ow_start) * os_w, os_c, os_h, os_w,
                      b_block, n_oc, min(plan.tile_rows, oh_end - oh), min(plan.tile_cols, ow_end - ow),
                      0, 0)
                ow += plan.tile_cols
            oh += plan.tile_rows


cdef inline void _tile(int oc_block, const floating* x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,
                       Py_ssize_t row_step, const Py_ssize_t* kw_offset, const floating* w, Py_ssize_t n_ic,
                       Py_ssize_t kh_size, Py_ssize_t kw_size, floating* out, Py_ssize_t out_channel_stride,
                       Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const floating* bias,
                       Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch,
                       Py_ssize_t f0) noexcept nogil:
    # the C micro-kernel for this dtype
    if floating is float:
        gconv_tile_f32(oc_block, x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic, kh_size, kw_size,
                       out, out_channel_stride, out_row_stride, out_col_stride, bias, n_oc, n_rows, n_cols,
                       pitch, f0)
    else:
        gconv_tile_f64(oc_block, x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic, kh_size, kw_size,
                       out, out_channel_stride, out_row_stride, out_col_stride, bias, n_oc, n_rows, n_cols,
                       pitch, f0)


cdef void _pack_weight(const Plan* plan, const floating* weight, floating* packed) noexcept nogil:
    """packed[g][block][ic][kh][kw][o] = weight[g * ocpg + block * oc_block + o][ic][kh][kw].

    The oc_block weights of one tap sit together for the micro-kernel; channels past a group's end are 0.
    """
    cdef Py_ssize_t taps = plan.ic_per_group * plan.KH * plan.KW
    cdef Py_ssize_t g, block, o, oc, t
    cdef floating* dst
    cdef const floating* src
    for g in range(plan.groups):
        for block in range(plan.n_oc_blocks):
            dst = packed + (g * plan.n_oc_blocks + block) * taps * plan.oc_block
            for o in range(plan.oc_block):
                oc = block * plan.oc_block + o
                if oc < plan.oc_per_group:
                    src = weight + (g * plan.oc_per_group + oc) * taps
                    for t in range(taps):
                        dst[t * plan.oc_block + o] = src[t]
                else:
                    for t in range(taps):
                        dst[t * plan.oc_block + o] = 0


def conv2d_forward(
    const floating[:, :, :, :] x not None,         # IN  (N, C_in, H, W), any strides (NCHW, NHWC, views)
    const floating[:, :, :, ::1] weight not None,  # IN  (C_out, C_in // groups, KH, KW)
    const floating[::1] bias not None,             # IN  (C_out,), or (0,) for no bias
    floating[:, :, :, :] out not None,             # OUT (N, C_out, H_out, W_out), any strides
    Py_ssize_t stride_h, Py_ssize_t stride_w,
    Py_ssize_t pad_top, Py_ssize_t pad_left,
    Py_ssize_t dilation_h, Py_ssize_t dilation_w,
    Py_ssize_t groups,
    int n_threads,
):
    """Grouped 2-D cross-correlation with implicit zero padding; writes every element of out.

    The caller has checked the shapes (out's H_out, W_out follow from the padding on both sides),
    that stride, dilation and groups are positive, that all four arrays share one dtype and that out
    does not overlap x. x is read and out written through their strides, so a channels-last view needs
    no copy either way. Conv1d runs through here as H = KH = H_out = 1.
    """
    cdef Plan plan
    plan.N, plan.C_in, plan.H, plan.W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    plan.C_out, plan.ic_per_group = weight.shape[0], weight.shape[1]
    plan.KH, plan.KW = weight.shape[2], weight.shape[3]
    plan.H_out, plan.W_out = out.shape[2], out.shape[3]
    plan.groups = groups
    plan.oc_per_group = plan.C_out // groups
    plan.stride_h, plan.stride_w = stride_h, stride_w
    plan.pad_top, plan.pad_left = pad_top, pad_left
    plan.dilation_h, plan.dilation_w = dilation_h, dilation_w
    cdef Py_ssize_t item_size = sizeof(floating)
    plan.x_stride_n, plan.x_stride_c = x.strides[0] // item_size, x.strides[1] // item_size
    plan.x_stride_h, plan.x_stride_w = x.strides[2] // item_size, x.strides[3] // item_size
    plan.out_stride_n, plan.out_stride_c = out.strides[0] // item_size, out.strides[1] // item_size
    plan.out_stride_h, plan.out_stride_w = out.strides[2] // item_size, out.strides[3] // item_size
    # channels adjacent in memory: neighbouring groups share cache lines, so run them back to back
    plan.groups_inner = plan.x_stride_w != 1 and abs(plan.x_stride_c) < abs(plan.x_stride_w)

    if out.shape[0] != plan.N or out.shape[1] != plan.C_out or plan.C_in != groups * plan.ic_per_group:
        raise ValueError("conv2d_forward: inconsistent shapes")
    if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
        return
    if x.size == 0 or weight.size == 0:
        # out is non-empty but nothing could fill it; the Python layer never sends this.
        raise ValueError("conv2d_forward: empty input or weight for a non-empty output")
    cdef bint has_bias = bias.shape[0] != 0
    if has_bias and bias.shape[0] != plan.C_out:
        raise ValueError("conv2d_forward: bias length does not match the output channels")

    cdef Py_ssize_t item, n_items
    cdef int team
    cdef const floating* x_ptr = &x[0, 0, 0, 0]
    cdef const floating* b_ptr = &bias[0] if has_bias else NULL
    cdef floating* out_ptr = &out[0, 0, 0, 0]
    cdef const floating* w_ptr

    # Tile shape: as many output channels as the group has, up to 8; the rest of the 8 accumulator
    # rows go to output rows (depthwise: 1 channel x 8 rows).
    plan.oc_block = 8 if plan.oc_per_group >= 8 else 4 if plan.oc_per_group >= 4 else 2 if plan.oc_per_group >= 2 else 1
    plan.tile_rows = 8 // plan.oc_block
    plan.tile_cols = GCONV_TILE_W_F32 if floating is float else GCONV_TILE_W_F64
    # Flat tiles pay a slower store but never leave a tile half-empty at a row's end; measured, that wins
    # only where the tile is one channel deep (depthwise), whose few taps per output make stores count.
    plan.flat = plan.oc_block == 1 and stride_h == 1 and stride_w == 1
    plan.n_oc_blocks = _ceil_div(plan.oc_per_group, plan.oc_block)
    phase_list = [0] if stride_w == 1 else sorted({(k * dilation_w) % stride_w for k in range(plan.KW)})
    plan.n_phases = len(phase_list)
    cdef Py_ssize_t row_tiles = _ceil_div(plan.H_out, plan.tile_rows)
    cdef Py_ssize_t col_tiles = _ceil_div(plan.W_out, plan.tile_cols)
    cdef Py_ssize_t block_rows = 1, block_cols = 1
    cdef Py_ssize_t wanted = ITEMS_PER_THREAD * n_threads if n_threads > 1 else 1

    _plan_slab(&plan, 1, 1)
    if plan.slab_size * <Py_ssize_t> sizeof(floating) > SLAB_LIMIT:
        # A dilation so large that even one tile's input would not fit in scratch: direct loops, which
        # read and write C-contiguous arrays only.
        if not (x.is_c_contig() and out.is_c_contig()):
            dense_out = np.empty((out.shape[0], out.shape[1], out.shape[2], out.shape[3]),
                                 dtype=np.float32 if floating is float else np.float64)
            conv2d_forward(np.ascontiguousarray(x), weight, bias, dense_out, stride_h, stride_w, pad_top, pad_left,
                           dilation_h, dilation_w, groups, n_threads)
            np.asarray(out)[...] = dense_out
            return
        plan.oc_block = min(plan.oc_per_group, 8)
        plan.n_oc_blocks = _ceil_div(plan.oc_per_group, plan.oc_block)
        plan.rows_per_block = 1
        plan.n_row_blocks = plan.H_out
        n_items = plan.N * groups * plan.n_oc_blocks * plan.n_row_blocks
        w_ptr = &weight[0, 0, 0, 0]
        team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
        with nogil:
            for item in prange(n_items, schedule="static", num_threads=team):
                _direct_conv_item(&plan, x_ptr, w_ptr, b_ptr, has_bias, out_ptr, item)
        return

    # Blocks: the largest that keep the slab within budget, then smaller until every thread has items.
    block_rows, block_cols = row_tiles, col_tiles
    _plan_slab(&plan, block_rows, block_cols)
    while plan.slab_size * <Py_ssize_t> sizeof(floating) > SLAB_BUDGET and block_rows > 1:
        block_rows = _ceil_div(block_rows, 2)
        _plan_slab(&plan, block_rows, block_cols)
    while plan.slab_size * <Py_ssize_t> sizeof(floating) > SLAB_BUDGET and block_cols > 1:
        block_cols = _ceil_div(block_cols, 2)
        _plan_slab(&plan, block_rows, block_cols)
    while plan.N * groups * _ceil_div(row_tiles, block_rows) * _ceil_div(col_tiles, block_cols) < wanted:
        if block_rows > 1:
            block_rows = _ceil_div(block_rows, 2)
        elif block_cols > 1:
            block_cols = _ceil_div(block_cols, 2)
        else:
            break
        _plan_slab(&plan, block_rows, block_cols)
    plan.n_row_blocks = _ceil_div(row_tiles, block_rows)
    plan.n_col_blocks = _ceil_div(col_tiles, block_cols)
    n_items = plan.N * groups * plan.n_row_blocks * plan.n_col_blocks
    team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))

    packed = np.empty(groups * plan.n_oc_blocks * plan.ic_per_group * plan.KH * plan.KW * plan.oc_block,
                      dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] packed_view = packed
    _pack_weight(&plan, &weight[0, 0, 0, 0], &packed_view[0])
    w_ptr = &packed_view[0]
    # tap kw reads phase slot(kw) from position (kw * dilation_w) // stride_w on; phases[slot] says which
    cdef Py_ssize_t[::1] kw_offset_view = np.empty(plan.KW, dtype=np.intp)
    cdef Py_ssize_t[::1] phase_view = np.array(phase_list, dtype=np.intp)
    cdef Py_ssize_t k
    if stride_w == 1:
        for k in range(plan.KW):
            kw_offset_view[k] = k * dilation_w
    else:
        slot = {phase: i for i, phase in enumerate(phase_list)}
        for k in range(plan.KW):
            kw_offset_view[k] = slot[(k * dilation_w) % stride_w] * plan.phase_len + (k * dilation_w) // stride_w
    cdef const Py_ssize_t* kw_ptr = &kw_offset_view[0]
    cdef const Py_ssize_t* phase_ptr = &phase_view[0]

    cdef Py_ssize_t slab_size = plan.slab_size
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef floating* slab
    with nogil, parallel(num_threads=team):
        slab = <floating*> malloc(slab_size * sizeof(floating))  # this thread's scratch
        if slab == NULL:
            alloc_failed[0] = 1
        for item in prange(n_items, schedule="static"):
            if slab != NULL:
                _conv_item(&plan, x_ptr, w_ptr, b_ptr, out_ptr, slab, kw_ptr, phase_ptr, item)
        free(slab)
    if alloc_failed[0]:
        raise MemoryError(f"conv2d: could not allocate {slab_size * sizeof(floating)} bytes of scratch")


cdef void _weight_grad_item(const floating* x, const floating* grad_output, floating* grad_weight,
                            floating* plane, floating* gy_rows_buf, Py_ssize_t padded_w_out, double* acc,
                            Py_ssize_t item, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t C_out, Py_ssize_t icpg, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t H_out,
                            Py_ssize_t W_out, Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                            Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                            Py_ssize_t groups, Py_ssize_t plane_h, Py_ssize_t plane_w) noexcept nogil:
    """Weight gradient of up to 4 output channels of one group (item = g * n_blocks + block).

    Each input plane is copied once into a zero-framed plane, so every tap of every output reads inside
    it, and the channels' grad_output rows into rows zero-padded to whole vectors (padded_w_out); the
    micro-kernel then takes 4 channels x 4 taps (1 channel x 16 taps for one channel per group) at a
    time over all output rows (stride 1), with no partial vectors. Wider strides take plain loops.
    """
    cdef Py_ssize_t ocpg = C_out // groups
    cdef Py_ssize_t n_blocks = (ocpg + 3) // 4
    cdef Py_ssize_t g = item // n_blocks, block = item % n_blocks
    cdef Py_ssize_t oc_first = g * ocpg + block * 4
    cdef Py_ssize_t n_oc = min(<Py_ssize_t> 4, ocpg - block * 4)
    # channels x taps per micro-kernel call
    cdef int tile_oc = 1 if ocpg == 1 else 4
    cdef int tile_taps = 16 // tile_oc
    cdef Py_ssize_t kernel_taps = KH * KW, taps = icpg * kernel_taps
    cdef Py_ssize_t n, ic, tap_first, n_taps, tap, r, c, o, k, ih, lo, hi
    cdef double part[16]
    cdef const floating* gy_rows[4]
    cdef const floating* x_rows[16]
    cdef const floating* src
    cdef floating* dst
    for o in range(4 * taps):
        acc[o] = 0
    for n in range(N):
        for o in range(tile_oc):
            if stride_w != 1:
                gy_rows[o] = grad_output + (n * C_out + oc_first + min(o, n_oc - 1)) * H_out * W_out
                continue
            gy_rows[o] = gy_rows_buf + o * H_out * padded_w_out
            for r in range(H_out):
                dst = gy_rows_buf + (o * H_out + r) * padded_w_out
                if o < n_oc:
                    memcpy(dst, grad_output + ((n * C_out + oc_first + o) * H_out + r) * W_out,
                           W_out * sizeof(floating))
                    memset(dst + W_out, 0, (padded_w_out - W_out) * sizeof(floating))
                else:
                    memset(dst, 0, padded_w_out * sizeof(floating))
        for ic in range(icpg):
            src = x + (n * C_in + g * icpg + ic) * H * W
            # columns [lo, hi) of each plane row hold input columns lo - pad_left ...; the rest is zero
            lo = min(pad_left, plane_w)
            hi = max(lo, min(plane_w, pad_left + W))
            for r in range(plane_h):
                dst = plane + r * plane_w
                ih = r - pad_top
                if ih < 0 or ih >= H:
                    memset(dst, 0, plane_w * sizeof(floating))
                    continue
                memset(dst, 0, lo * sizeof(floating))
                memcpy(dst + lo, src + ih * W + lo - pad_left, (hi - lo) * sizeof(floating))
                memset(dst + hi, 0, (plane_w - hi) * sizeof(floating))
            # taps (kh, kw) in order, tile_taps at a time
            tap_first = 0
            while tap_first < kernel_taps:
                n_taps = min(<Py_ssize_t> tile_taps, kernel_taps - tap_first)
                for k in range(tile_taps):
                    tap = tap_first + min(k, n_taps - 1)
                    x_rows[k] = plane + (tap // KW) * dilation_h * plane_w + (tap % KW) * dilation_w
                for k in range(16):
                    part[k] = 0
                if stride_w == 1:
                    if floating is float:
                        gconv_wgrad_float(tile_oc, gy_rows, padded_w_out, x_rows, stride_h * plane_w, H_out,
                                          padded_w_out, part)
                    else:
                        gconv_wgrad_double(tile_oc, gy_rows, padded_w_out, x_rows, stride_h * plane_w, H_out,
                                           padded_w_out, part)
                else:
                    for r in range(H_out):
                        for c in range(W_out):
                            for o in range(tile_oc):
                                for k in range(n_taps):
                                    part[o * tile_taps + k] += (<double> gy_rows[o][r * W_out + c]
                                                                * x_rows[k][r * stride_h * plane_w + c * stride_w])
                for o in range(n_oc):
                    for k in range(n_taps):
                        acc[o * taps + ic * kernel_taps + tap_first + k] += part[o * tile_taps + k]
                tap_first += tile_taps
    for o in range(n_oc):
        for k in range(taps):
            grad_weight[(oc_first + o) * taps + k] = <floating> acc[o * taps + k]


cdef void _weight_grad_direct_item(const floating* x, const floating* grad_output, floating* grad_weight,
                                   Py_ssize_t oc, Py_ssize_t N, Py_ssize_t C_in, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t C_out, Py_ssize_t icpg, Py_ssize_t KH, Py_ssize_t KW,
                                   Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t stride_h, Py_ssize_t stride_w,
                                   Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t dilation_h,
                                   Py_ssize_t dilation_w, Py_ssize_t groups) noexcept nogil:
    """Weight gradient of output channel oc for geometry whose zero-framed plane would be huge (dilations
    of millions): zero padding is implicit, only the rows and columns a tap reads inside the input are
    visited (as _direct_conv_item does for the forward)."""
    cdef Py_ssize_t g = oc // (C_out // groups)
    cdef Py_ssize_t ic, kh, kw, n, oh, ih, ow, ow_lo, ow_hi, col_offset
    cdef double total
    cdef const floating* gy_row
    cdef const floating* x_row
    for ic in range(icpg):
        for kh in range(KH):
            for kw in range(KW):
                total = 0
                # output column ow reads input column ow * stride_w + col_offset
                col_offset = kw * dilation_w - pad_left
                ow_lo = max(0, _ceil_div_signed(-col_offset, stride_w))
                ow_hi = min(W_out, _floor_div(W - 1 - col_offset, stride_w) + 1)
                for n in range(N):
                    for oh in range(H_out):
                        ih = oh * stride_h - pad_top + kh * dilation_h
                        if ih < 0 or ih >= H:
                            continue
                        gy_row = grad_output + ((n * C_out + oc) * H_out + oh) * W_out
                        x_row = x + ((n * C_in + g * icpg + ic) * H + ih) * W
                        for ow in range(ow_lo, ow_hi):
                            total += <double> gy_row[ow] * x_row[ow * stride_w + col_offset]
                grad_weight[((oc * icpg + ic) * KH + kh) * KW + kw] = <floating> total


def conv2d_weight_grad(
    const floating[:, :, :, ::1] x not None,          # IN  (N, C_in, H, W)
    const floating[:, :, :, ::1] grad_output not None,  # IN  (N, C_out, H_out, W_out)
    floating[:, :, :, ::1] grad_weight not None,       # OUT (C_out, C_in // groups, KH, KW)
    Py_ssize_t stride_h, Py_ssize_t stride_w,
    Py_ssize_t pad_top, Py_ssize_t pad_left,
    Py_ssize_t dilation_h, Py_ssize_t dilation_w,
    Py_ssize_t groups,
    int n_threads,
):
    """Gradient of the convolution with respect to the weight; writes every element of grad_weight.

    grad_weight[oc, ic, kh, kw] = sum over n, oh, ow of grad_output[n, oc, oh, ow] * x[n, g * icpg + ic,
    oh * stride_h - pad_top + kh * dilation_h, ow * stride_w - pad_left + kw * dilation_w] (zero outside).
    Work is split by blocks of 4 output channels, so no two threads write the same element and nothing is
    reduced across threads; each element is summed in one fixed order whatever the thread count.
    """
    cdef Py_ssize_t N = x.shape[0], C_in = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = grad_weight.shape[0], icpg = grad_weight.shape[1]
    cdef Py_ssize_t KH = grad_weight.shape[2], KW = grad_weight.shape[3]
    cdef Py_ssize_t H_out = grad_output.shape[2], W_out = grad_output.shape[3]
    if (grad_output.shape[0] != N or grad_output.shape[1] != C_out or C_in != groups * icpg
            or C_out % groups != 0):
        raise ValueError("conv2d_weight_grad: inconsistent shapes")
    if grad_weight.size == 0:
        return
    if N == 0 or H_out == 0 or W_out == 0 or x.size == 0:
        for oc in range(C_out):
            grad_weight[oc, :, :, :] = 0
        return
    # the zero-framed plane every tap of every output reads inside; with stride 1, rows are read in whole
    # vectors, so the plane is wider by the padding of a grad_output row to whole vectors
    cdef Py_ssize_t lanes = GCONV_VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t padded_w_out = (W_out + lanes - 1) // lanes * lanes if stride_w == 1 else W_out
    cdef Py_ssize_t plane_h = (H_out - 1) * stride_h + (KH - 1) * dilation_h + 1
    cdef Py_ssize_t plane_w = (padded_w_out - 1) * stride_w + (KW - 1) * dilation_w + 1
    cdef Py_ssize_t n_items = groups * ((C_out // groups + 3) // 4)
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
    cdef const floating* x_ptr = &x[0, 0, 0, 0]
    cdef const floating* gy_ptr = &grad_output[0, 0, 0, 0]
    cdef floating* gw_ptr = &grad_weight[0, 0, 0, 0]
    cdef Py_ssize_t acc_size = 4 * icpg * KH * KW
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef floating* plane
    cdef floating* gy_rows_buf
    cdef double* acc
    cdef Py_ssize_t item
    cdef Py_ssize_t plane_size = _size_product(plane_h, plane_w)
    if plane_size * <Py_ssize_t> sizeof(floating) > SLAB_LIMIT:
        # a dilation so large that the framed plane would not fit in scratch: direct loops, per channel
        team = <int> max(1, min(<Py_ssize_t> n_threads, C_out))
        with nogil:
            for item in prange(C_out, schedule="static", num_threads=team):
                _weight_grad_direct_item(x_ptr, gy_ptr, gw_ptr, item, N, C_in, H, W, C_out, icpg, KH, KW, H_out,
                                         W_out, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                                         groups)
        return
    with nogil, parallel(num_threads=team):
        # this thread's scratch
        plane = <floating*> malloc(plane_size * sizeof(floating))
        gy_rows_buf = <floating*> malloc(4 * H_out * padded_w_out * sizeof(floating))
        acc = <double*> malloc(acc_size * sizeof(double))
        if plane == NULL or gy_rows_buf == NULL or acc == NULL:
            alloc_failed[0] = 1
        for item in prange(n_items, schedule="static"):
            if plane != NULL and gy_rows_buf != NULL and acc != NULL:
                _weight_grad_item(x_ptr, gy_ptr, gw_ptr, plane, gy_rows_buf, padded_w_out, acc, item, N, C_in,
                                  H, W, C_out, icpg, KH, KW, H_out, W_out, stride_h, stride_w, pad_top,
                                  pad_left, dilation_h, dilation_w, groups, plane_h, plane_w)
        free(plane)
        free(gy_rows_buf)
        free(acc)
    if alloc_failed[0]:
        raise MemoryError("conv2d_weight_grad: could not allocate scratch")
