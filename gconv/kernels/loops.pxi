# The loops family: plain direct loops for geometry no packed slab can hold (absurd dilations).

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


cdef void _loops_item(const Plan* geo, const floating* x, const floating* weight,
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

    cdef Py_ssize_t oc_start = g * geo.out_channels_per_group + oc_block * geo.oc_block
    cdef Py_ssize_t oc_end = min(oc_start + geo.oc_block, (g + 1) * geo.out_channels_per_group)
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
            out_row[j] = out_row[j] + init if geo.accumulate else init

    for oh in range(oh_start, oh_end):
        for ic in range(geo.in_channels_per_group):
            x_plane = x + (n * geo.C_in + g * geo.in_channels_per_group + ic) * geo.H * W
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
                    w_tap = weight + ((oc_start * geo.in_channels_per_group + ic) * geo.KH + kh) * geo.KW + kw
                    for oc in range(oc_start, oc_end):
                        out_row = out + ((n * geo.C_out + oc) * geo.H_out + oh) * W_out
                        if stride_w == 1:
                            _axpy(out_row + ow_lo, x_row + ow_lo + col_offset, w_tap[0], ow_hi - ow_lo)
                        else:
                            _axpy_strided(out_row + ow_lo, x_row + ow_lo * stride_w + col_offset,
                                          stride_w, w_tap[0], ow_hi - ow_lo)
                        w_tap += geo.in_channels_per_group * geo.KH * geo.KW


def conv2d_loops(
    x,                                             # IN  (N, C_in, H, W), C-contiguous
    weight,                                        # IN  (C_out, C_in // groups, KH, KW), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, H_out, W_out), C-contiguous
    tuple stride, tuple pad_before, tuple dilation,  # (h, w) each; pad_before = (top, left)
    Py_ssize_t groups,
    bint accumulate,                               # add to out instead of overwriting it
    int n_threads,
):
    """Grouped 2-D cross-correlation by plain loops with implicit zero padding; writes (or adds to) all of out.

    For geometry whose packed slab no scratch could hold (gconv._select sends only those): the loops read
    only the input that real outputs touch, however far apart the taps are.
    """
    cdef Operands ops
    cdef Plan plan
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, None, 4)
        if not (PyBuffer_IsContiguous(&ops.x, b'C') and PyBuffer_IsContiguous(&ops.out, b'C')):
            raise ValueError("conv2d_loops: input and output must be C-contiguous")
        _fill_plan_from(&plan, &ops, stride, pad_before, dilation, groups)
        plan.accumulate = accumulate
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if ops.itemsize == 4:
            _run_loops(&plan, &ops, <float*> ops.out.buf, n_threads)
        else:
            _run_loops(&plan, &ops, <double*> ops.out.buf, n_threads)
    finally:
        _release_operands(&ops)


cdef int _run_loops(Plan* plan, const Operands* ops, floating* out_ptr, int n_threads) except -1:
    """conv2d_loops' work items (out_ptr: ops.out's data, whose type picks the dtype)."""
    plan.oc_block = <int> min(plan.out_channels_per_group, GCONV_DIRECT_ACC_ROWS)
    plan.n_oc_blocks = _ceil_div(plan.out_channels_per_group, plan.oc_block)
    plan.rows_per_block = 1
    plan.n_row_blocks = plan.H_out
    cdef Py_ssize_t n_items = plan.N * plan.groups * plan.n_oc_blocks * plan.n_row_blocks, item
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef const floating* w_ptr = <const floating*> ops.weight.buf
    cdef const floating* b_ptr = <const floating*> _bias_data(ops)
    with nogil:
        for item in prange(n_items, schedule="static", num_threads=team):
            _loops_item(plan, x_ptr, w_ptr, b_ptr, b_ptr != NULL, out_ptr, item)
    return 0
