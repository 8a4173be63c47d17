"""Convolution kernels: typed memoryviews fused over float32/float64, GIL released, OpenMP over work items.

Every argument is validated and coerced by gconv.functional before it gets here: arrays are C-contiguous,
of one dtype, with consistent shapes, and the output geometry is exact. Bounds checks are off in a normal
build (the Python layer proved the bounds) and on in a debug build (GCONV_DEBUG=1 at build time).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange

cdef extern from "_omp_shim.h" nogil:
    int GCONV_OPENMP_ENABLED
    int omp_get_max_threads()
    int omp_get_num_threads()
    int omp_get_thread_num()
    void omp_set_num_threads(int n)


cdef enum:
    # Output channels computed together by one work item: their rows share each loaded input row.
    OC_BLOCK = 8
    # Work items wanted per thread before rows are split too, so static chunks stay balanced.
    ITEMS_PER_THREAD = 4


def openmp_enabled():
    """True when the kernels were compiled with OpenMP, False for the serial fallback build."""
    return bool(GCONV_OPENMP_ENABLED)


def omp_max_threads():
    """omp_get_max_threads() of the calling OS thread (OMP_NUM_THREADS, threadpoolctl limits)."""
    return omp_get_max_threads()


def omp_set_max_threads(int n_threads):
    """omp_set_num_threads() for the calling OS thread only, as OpenMP defines it."""
    omp_set_num_threads(n_threads)


def parallel_team_size(int n_threads):
    """Threads an OpenMP parallel region asked for n_threads really runs with (1 without OpenMP)."""
    cdef int team[1]
    team[0] = 1
    with nogil, parallel(num_threads=n_threads):
        if omp_get_thread_num() == 0:
            team[0] = omp_get_num_threads()
    return team[0]


cdef struct Geometry:
    # input (N, C_in, H, W), weight (C_out, ic_per_group, KH, KW), output (N, C_out, H_out, W_out)
    Py_ssize_t N, C_in, H, W, C_out, KH, KW, H_out, W_out
    Py_ssize_t groups, ic_per_group, oc_per_group
    Py_ssize_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w
    # work decomposition: item = ((n * groups + g) * n_oc_blocks + oc_block) * n_row_blocks + row_block
    Py_ssize_t oc_block, n_oc_blocks, rows_per_block, n_row_blocks


cdef inline Py_ssize_t _floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # b > 0. C division truncates toward zero; the column bounds need floor for negative a.
    cdef Py_ssize_t q = a / b
    if a % b != 0 and a < 0:
        q -= 1
    return q


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
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


cdef void _direct_conv_item(const Geometry* geo, const floating* x, const floating* weight,
                            const floating* bias, bint has_bias, floating* out,
                            Py_ssize_t item) noexcept nogil:
    """One work item: output rows [oh_start, oh_end) of up to OC_BLOCK channels of one (n, group).

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
                    ow_lo = max(0, _ceil_div(-col_offset, stride_w))
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


def conv2d_direct(
    const floating[:, :, :, ::1] x not None,       # IN  (N, C_in, H, W)
    const floating[:, :, :, ::1] weight not None,  # IN  (C_out, C_in // groups, KH, KW)
    const floating[::1] bias not None,             # IN  (C_out,), or (0,) for no bias
    floating[:, :, :, ::1] out not None,           # OUT (N, C_out, H_out, W_out)
    Py_ssize_t stride_h, Py_ssize_t stride_w,
    Py_ssize_t pad_top, Py_ssize_t pad_left,
    Py_ssize_t dilation_h, Py_ssize_t dilation_w,
    Py_ssize_t groups,
    int n_threads,
):
    """Grouped 2-D cross-correlation with implicit zero padding; writes every element of out.

    The caller has checked the shapes (out's H_out, W_out follow from the padding on both sides),
    that stride, dilation and groups are positive and that all four arrays share one dtype.
    Conv1d runs through here as H = KH = H_out = 1.
    """
    cdef Geometry geo
    geo.N, geo.C_in, geo.H, geo.W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    geo.C_out, geo.ic_per_group = weight.shape[0], weight.shape[1]
    geo.KH, geo.KW = weight.shape[2], weight.shape[3]
    geo.H_out, geo.W_out = out.shape[2], out.shape[3]
    geo.groups = groups
    geo.oc_per_group = geo.C_out // groups
    geo.stride_h, geo.stride_w = stride_h, stride_w
    geo.pad_top, geo.pad_left = pad_top, pad_left
    geo.dilation_h, geo.dilation_w = dilation_h, dilation_w

    if out.shape[0] != geo.N or out.shape[1] != geo.C_out or geo.C_in != groups * geo.ic_per_group:
        raise ValueError("conv2d_direct: inconsistent shapes")
    if geo.N == 0 or geo.C_out == 0 or geo.H_out == 0 or geo.W_out == 0:
        return
    if x.size == 0 or weight.size == 0:
        # out is non-empty but nothing could fill it; the Python layer never sends this.
        raise ValueError("conv2d_direct: empty input or weight for a non-empty output")
    cdef bint has_bias = bias.shape[0] != 0
    if has_bias and bias.shape[0] != geo.C_out:
        raise ValueError("conv2d_direct: bias length does not match the output channels")

    geo.oc_block = min(geo.oc_per_group, OC_BLOCK)
    geo.n_oc_blocks = (geo.oc_per_group + geo.oc_block - 1) // geo.oc_block
    cdef Py_ssize_t base_items = geo.N * geo.groups * geo.n_oc_blocks
    cdef Py_ssize_t wanted = ITEMS_PER_THREAD * max(n_threads, 1)
    geo.n_row_blocks = 1
    if base_items < wanted:
        geo.n_row_blocks = min(geo.H_out, (wanted + base_items - 1) // base_items)
    geo.rows_per_block = (geo.H_out + geo.n_row_blocks - 1) // geo.n_row_blocks
    geo.n_row_blocks = (geo.H_out + geo.rows_per_block - 1) // geo.rows_per_block
    cdef Py_ssize_t n_items = base_items * geo.n_row_blocks
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))

    cdef const floating* x_ptr = &x[0, 0, 0, 0]
    cdef const floating* w_ptr = &weight[0, 0, 0, 0]
    cdef const floating* b_ptr = &bias[0] if has_bias else NULL
    cdef floating* out_ptr = &out[0, 0, 0, 0]
    cdef Py_ssize_t item
    with nogil:
        for item in prange(n_items, schedule="static", num_threads=team):
            _direct_conv_item(&geo, x_ptr, w_ptr, b_ptr, has_bias, out_ptr, item)
