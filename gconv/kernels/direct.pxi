# The direct family's driver: row-vectorised register tiles over packed input slabs.

cdef extern from "kernels/direct/tile.h" nogil:
    # the tile shape, defined in the header only
    int GCONV_DIRECT_ACC_ROWS
    int GCONV_DIRECT_MAX_OCB
    int GCONV_TILE_W_F32
    int GCONV_TILE_W_F64
    void gconv_tile_f32(int oc_block, const float* x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,
                        Py_ssize_t row_step, const Py_ssize_t* kw_offset, const float* w, Py_ssize_t n_ic,
                        Py_ssize_t kh_size, Py_ssize_t kw_size, float* out, Py_ssize_t out_channel_stride,
                        Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const float* bias,
                        Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch, Py_ssize_t f0,
                        int accumulate)
    void gconv_tile_f64(int oc_block, const double* x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,
                        Py_ssize_t row_step, const Py_ssize_t* kw_offset, const double* w, Py_ssize_t n_ic,
                        Py_ssize_t kh_size, Py_ssize_t kw_size, double* out, Py_ssize_t out_channel_stride,
                        Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const double* bias,
                        Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch, Py_ssize_t f0,
                        int accumulate)


# The tile shape for gconv._select: accumulator rows (shared by output channels x rows) and columns per dtype.
DIRECT_ACC_ROWS = GCONV_DIRECT_ACC_ROWS
# the output channels a tile may have (oc_block), largest first: powers of two up to the header's maximum
DIRECT_OC_BLOCKS = tuple(block for block in (8, 4, 2, 1) if block <= GCONV_DIRECT_MAX_OCB)
DIRECT_TILE_COLS = {4: GCONV_TILE_W_F32, 8: GCONV_TILE_W_F64}  # by itemsize


cdef enum:
    # Work items wanted per thread before blocks are split further, so static chunks stay balanced.
    ITEMS_PER_THREAD = 4
    # Bytes of packed input one thread works from at a time: it stays in L2 while every output-channel
    # block of the item sweeps over it.
    SLAB_BUDGET = 384 * 1024
    # Beyond this even a one-tile slab is absurd (only huge dilations get here): use the direct loops.
    SLAB_LIMIT = 64 * 1024 * 1024

DIRECT_SCRATCH_LIMIT = SLAB_LIMIT  # for gconv._select's fallback rule


cdef void _conv_item(const Plan* plan, const floating* x, const floating* packed_weight,
                     const floating* bias, floating* out, floating* slab, Py_ssize_t* sources,
                     const Py_ssize_t* kw_offset, const Py_ssize_t* phases, Py_ssize_t item) noexcept nogil:
    """One work item: all output channels of group g for one block of rows x columns of output plane od
    (0 for 2-D) of image n. sources: this thread's scratch for the slab channels' input planes."""
    cdef Py_ssize_t rest = item, g = 0, col_block, row_block, n, od
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
    od = rest % plan.D_out
    n = rest // plan.D_out
    cdef Py_ssize_t oh_start = row_block * plan.rows_per_block
    cdef Py_ssize_t oh_end = min(oh_start + plan.rows_per_block, plan.H_out)
    cdef Py_ssize_t ow_start = col_block * plan.cols_per_block
    cdef Py_ssize_t ow_end = min(ow_start + plan.cols_per_block, plan.W_out)
    cdef Py_ssize_t taps = plan.n_virtual * plan.KH * plan.KW
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

    _channel_sources(plan, sources, n, od, g)
    _pack_slab(plan, x, slab, phases, sources, oh_start, ow_start)
    for block in range(plan.n_oc_blocks):
        oc_first = g * plan.out_channels_per_group + block * plan.oc_block
        n_oc = min(<Py_ssize_t> plan.oc_block, plan.out_channels_per_group - block * plan.oc_block)
        w_block = packed_weight + (g * plan.n_oc_blocks + block) * taps * plan.oc_block
        b_block = bias + oc_first if bias != NULL else NULL
        out_block = (out + n * plan.out_stride_n + od * plan.out_stride_d + oc_first * os_c + oh_start * os_h
                     + ow_start * os_w)
        if plan.flat:
            f = 0
            while f < flat_end:
                _tile(plan.oc_block, slab + f, ic_stride, kh_stride, plan.tile_cols, kw_offset, w_block,
                      plan.n_virtual, plan.KH, plan.KW, out_block, os_c, os_h, os_w, b_block, n_oc,
                      min(flat_tile, flat_end - f), ow_end - ow_start, plan.slab_row_len, f, plan.accumulate)
                f += flat_tile
            continue
        oh = oh_start
        while oh < oh_end:
            ow = ow_start
            while ow < ow_end:
                _tile(plan.oc_block, slab + (oh - oh_start) * row_step + (ow - ow_start), ic_stride,
                      kh_stride, row_step, kw_offset, w_block, plan.n_virtual, plan.KH, plan.KW,
                      out_block + (oh - oh_start) * os_h + (ow - ow_start) * os_w, os_c, os_h, os_w,
                      b_block, n_oc, min(plan.tile_rows, oh_end - oh), min(plan.tile_cols, ow_end - ow),
                      0, 0, plan.accumulate)
                ow += plan.tile_cols
            oh += plan.tile_rows


cdef inline void _tile(int oc_block, const floating* x, Py_ssize_t ic_stride, Py_ssize_t kh_stride,
                       Py_ssize_t row_step, const Py_ssize_t* kw_offset, const floating* w, Py_ssize_t n_ic,
                       Py_ssize_t kh_size, Py_ssize_t kw_size, floating* out, Py_ssize_t out_channel_stride,
                       Py_ssize_t out_row_stride, Py_ssize_t out_col_stride, const floating* bias,
                       Py_ssize_t n_oc, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t pitch,
                       Py_ssize_t f0, int accumulate) noexcept nogil:
    # the C micro-kernel for this dtype
    if floating is float:
        gconv_tile_f32(oc_block, x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic, kh_size, kw_size,
                       out, out_channel_stride, out_row_stride, out_col_stride, bias, n_oc, n_rows, n_cols,
                       pitch, f0, accumulate)
    else:
        gconv_tile_f64(oc_block, x, ic_stride, kh_stride, row_step, kw_offset, w, n_ic, kh_size, kw_size,
                       out, out_channel_stride, out_row_stride, out_col_stride, bias, n_oc, n_rows, n_cols,
                       pitch, f0, accumulate)


cdef int _fill_plan(Plan* plan, const Py_ssize_t* x_shape, const Py_ssize_t* x_strides, const Py_ssize_t* w_shape,
                    Py_ssize_t bias_len, const Py_ssize_t* out_shape, const Py_ssize_t* out_strides,
                    Py_ssize_t itemsize, tuple stride, tuple pad_before, tuple dilation,
                    Py_ssize_t groups) except -1:
    """The geometry and memory strides of one 2-D call (shapes (N, C, H, W), strides in bytes); refuses shapes
    that do not fit together."""
    plan.N, plan.C_in, plan.H, plan.W = x_shape[0], x_shape[1], x_shape[2], x_shape[3]
    plan.C_out, plan.in_channels_per_group = w_shape[0], w_shape[1]
    plan.KH, plan.KW = w_shape[2], w_shape[3]
    plan.H_out, plan.W_out = out_shape[2], out_shape[3]
    plan.groups = groups
    plan.stride_h, plan.stride_w = stride
    plan.pad_top, plan.pad_left = pad_before
    plan.dilation_h, plan.dilation_w = dilation
    plan.x_stride_n, plan.x_stride_c = x_strides[0] // itemsize, x_strides[1] // itemsize
    plan.x_stride_h, plan.x_stride_w = x_strides[2] // itemsize, x_strides[3] // itemsize
    plan.out_stride_n, plan.out_stride_c = out_strides[0] // itemsize, out_strides[1] // itemsize
    plan.out_stride_h, plan.out_stride_w = out_strides[2] // itemsize, out_strides[3] // itemsize
    if (groups <= 0 or out_shape[0] != plan.N or out_shape[1] != plan.C_out
            or plan.C_in != groups * plan.in_channels_per_group or plan.C_out % groups != 0):
        raise ValueError("conv2d: inconsistent shapes")
    if min(plan.stride_h, plan.stride_w, plan.dilation_h, plan.dilation_w) <= 0:
        raise ValueError("conv2d: stride and dilation must be positive")
    if bias_len != 0 and bias_len != plan.C_out:
        raise ValueError("conv2d: bias length does not match the output channels")
    plan.out_channels_per_group = plan.C_out // groups
    # a 2-D call: one plane deep (conv3d_direct overwrites these)
    plan.D = plan.KD = plan.D_out = plan.stride_d = plan.dilation_d = 1
    plan.pad_front = plan.x_stride_d = plan.out_stride_d = 0
    plan.n_virtual = plan.in_channels_per_group
    if (plan.N and plan.C_out and plan.H_out and plan.W_out
            and (plan.C_in * plan.H * plan.W == 0 or plan.in_channels_per_group * plan.KH * plan.KW == 0)):
        # out is non-empty but nothing could fill it; the Python layer never sends this.
        raise ValueError("conv2d: empty input or weight for a non-empty output")
    return 0


cdef int _fill_plan_from(Plan* plan, const Operands* ops, tuple stride, tuple pad_before, tuple dilation,
                         Py_ssize_t groups) except -1:
    """_fill_plan for a 2-D call's held operands."""
    return _fill_plan(plan, ops.x.shape, ops.x.strides, ops.weight.shape, ops.bias.shape[0], ops.out.shape,
                      ops.out.strides, ops.itemsize, stride, pad_before, dilation, groups)


cdef int _set_tile(Plan* plan, int oc_block, bint flat, Py_ssize_t tile_cols) except -1:
    """Tile of oc_block channels x (ACC_ROWS / oc_block) rows x tile_cols columns, laid on a grid or flat."""
    plan.oc_block = oc_block
    plan.tile_rows = GCONV_DIRECT_ACC_ROWS // oc_block
    plan.tile_cols = tile_cols
    plan.flat = flat
    plan.n_oc_blocks = _ceil_div(plan.out_channels_per_group, oc_block)
    plan.n_phases = len(_column_phases(plan))
    return 0


cdef list _column_phases(const Plan* plan):
    """The column phases (kw * dilation_w) % stride_w that some tap reads, ascending: each gets a slab row part."""
    if plan.stride_w == 1:
        return [0]
    return sorted({(k * plan.dilation_w) % plan.stride_w for k in range(plan.KW)})


def direct_tile_scratch_bytes(Py_ssize_t in_channels_per_group, tuple kernel_size, tuple stride, tuple dilation,
                              int oc_block, int itemsize):
    """Bytes of the smallest slab (one tile) the direct family needs: gconv._select's fallback rule.

    in_channels_per_group counts a 3-D kernel's depth taps as channels (C_in / groups * KD)."""
    cdef Plan plan
    plan.in_channels_per_group = plan.n_virtual = in_channels_per_group
    plan.KH, plan.KW = kernel_size
    plan.stride_h, plan.stride_w = stride
    plan.dilation_h, plan.dilation_w = dilation
    plan.out_channels_per_group = oc_block
    _set_tile(&plan, oc_block, False, GCONV_TILE_W_F32 if itemsize == 4 else GCONV_TILE_W_F64)
    _plan_slab(&plan, 1, 1)
    return plan.slab_size * itemsize


def conv2d_direct(
    x,                                             # IN  (N, C_in, H, W), any strides (NCHW, NHWC, views)
    weight,                                        # IN  (C_out, C_in // groups, KH, KW), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, H_out, W_out), any strides
    tuple stride, tuple pad_before, tuple dilation,  # (h, w) each; pad_before = (top, left)
    Py_ssize_t groups,
    int oc_block,                                  # tile depth in output channels: one of DIRECT_OC_BLOCKS
    bint flat,                                     # tiles over the block's flattened outputs (stride 1 only)
    bint accumulate,                               # add to out instead of overwriting it
    int n_threads,
):
    """Grouped 2-D cross-correlation with implicit zero padding, by row-vectorised register tiles.

    Writes every element of out (or adds to it: accumulate). The caller (gconv._select) has checked the
    shapes (out's H_out, W_out follow from the padding on both sides), that all four arrays share one dtype
    (float32 or float64), that out does not overlap x, and chose oc_block <= the output channels per group. x
    is read and out written through their strides, so a channels-last view needs no copy either way. Conv1d
    runs through here as H = KH = H_out = 1.
    """
    cdef Operands ops
    cdef Plan plan
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, None, 4)
        _fill_plan_from(&plan, &ops, stride, pad_before, dilation, groups)
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if ops.itemsize == 4:
            _run_direct(&plan, &ops, <float*> ops.out.buf, oc_block, flat, accumulate, n_threads)
        else:
            _run_direct(&plan, &ops, <double*> ops.out.buf, oc_block, flat, accumulate, n_threads)
    finally:
        _release_operands(&ops)


cdef inline void _drop_depth(const Py_ssize_t* five, Py_ssize_t* four) noexcept:
    # (N, C, D, H, W) -> (N, C, H, W): a 3-D call's shape or strides as its depth planes' 2-D plan reads them
    four[0], four[1], four[2], four[3] = five[0], five[1], five[3], five[4]


def conv3d_direct(
    x,                                             # IN  (N, C_in, D, H, W), any strides
    weight,                                        # IN  (C_out, C_in // groups, KD, KH, KW), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, D_out, H_out, W_out), any strides
    tuple stride, tuple pad_before, tuple dilation,  # (d, h, w) each; pad_before = (front, top, left)
    Py_ssize_t groups, int oc_block, bint flat, bint accumulate, int n_threads,
):
    """Grouped 3-D cross-correlation with implicit zero padding: the 2-D tiles with each depth tap as an
    input channel of its own (a plane of zeros where it reads the depth padding). Arguments as conv2d_direct."""
    cdef Operands ops
    cdef Plan plan
    cdef Py_ssize_t x_shape[4]
    cdef Py_ssize_t x_strides[4]
    cdef Py_ssize_t w_shape[4]
    cdef Py_ssize_t out_shape[4]
    cdef Py_ssize_t out_strides[4]
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, None, 5)
        _drop_depth(ops.x.shape, x_shape)
        _drop_depth(ops.x.strides, x_strides)
        _drop_depth(ops.weight.shape, w_shape)
        _drop_depth(ops.out.shape, out_shape)
        _drop_depth(ops.out.strides, out_strides)
        _fill_plan(&plan, x_shape, x_strides, w_shape, ops.bias.shape[0], out_shape, out_strides, ops.itemsize,
                   stride[1:], pad_before[1:], dilation[1:], groups)
        plan.D, plan.KD, plan.D_out = ops.x.shape[2], ops.weight.shape[2], ops.out.shape[2]
        plan.stride_d, plan.pad_front, plan.dilation_d = stride[0], pad_before[0], dilation[0]
        plan.x_stride_d, plan.out_stride_d = ops.x.strides[2] // ops.itemsize, ops.out.strides[2] // ops.itemsize
        plan.n_virtual = plan.in_channels_per_group * plan.KD
        if plan.stride_d <= 0 or plan.dilation_d <= 0 or plan.pad_front < 0:
            raise ValueError("conv3d: stride and dilation must be positive, padding non-negative")
        if plan.N == 0 or plan.C_out == 0 or plan.D_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if plan.D * plan.KD == 0:
            raise ValueError("conv2d: empty input or weight for a non-empty output")
        if ops.itemsize == 4:
            _run_direct(&plan, &ops, <float*> ops.out.buf, oc_block, flat, accumulate, n_threads)
        else:
            _run_direct(&plan, &ops, <double*> ops.out.buf, oc_block, flat, accumulate, n_threads)
    finally:
        _release_operands(&ops)


cdef int _run_direct(Plan* plan_ptr, const Operands* ops, floating* out_ptr, int oc_block, bint flat,
                     bint accumulate, int n_threads) except -1:
    """Tile, cache blocks, packed weights, then every work item in parallel, per-thread scratch inside (out_ptr:
    ops.out's data, whose type picks the dtype)."""
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef const floating* weight_ptr = <const floating*> ops.weight.buf
    cdef const floating* b_ptr = <const floating*> _bias_data(ops)
    cdef Plan plan = plan_ptr[0]
    plan.accumulate = accumulate
    if oc_block not in DIRECT_OC_BLOCKS:
        raise ValueError(f"conv2d_direct: oc_block must be one of {DIRECT_OC_BLOCKS} ({ISA}), got {oc_block}")
    if flat and (plan.stride_h != 1 or plan.stride_w != 1):
        raise ValueError("conv2d_direct: flat tiles need stride 1")
    # channels adjacent in memory: neighbouring groups share cache lines, so run them back to back
    plan.groups_inner = plan.x_stride_w != 1 and abs(plan.x_stride_c) < abs(plan.x_stride_w)
    _set_tile(&plan, oc_block, flat, GCONV_TILE_W_F32 if floating is float else GCONV_TILE_W_F64)
    _plan_slab(&plan, 1, 1)
    if plan.slab_size * <Py_ssize_t> sizeof(floating) > SLAB_LIMIT:
        raise ValueError("conv2d_direct: even one tile's input exceeds the scratch limit (use conv2d_loops)")

    cdef Py_ssize_t row_tiles = _ceil_div(plan.H_out, plan.tile_rows)
    cdef Py_ssize_t col_tiles = _ceil_div(plan.W_out, plan.tile_cols)
    cdef Py_ssize_t wanted = ITEMS_PER_THREAD * n_threads if n_threads > 1 else 1
    cdef Py_ssize_t planes = plan.N * plan.D_out * plan.groups
    # Blocks: the largest that keep the slab within budget, then smaller until every thread has items.
    cdef Py_ssize_t block_rows = row_tiles, block_cols = col_tiles
    _plan_slab(&plan, block_rows, block_cols)
    while plan.slab_size * <Py_ssize_t> sizeof(floating) > SLAB_BUDGET and block_rows > 1:
        block_rows = _ceil_div(block_rows, 2)
        _plan_slab(&plan, block_rows, block_cols)
    while plan.slab_size * <Py_ssize_t> sizeof(floating) > SLAB_BUDGET and block_cols > 1:
        block_cols = _ceil_div(block_cols, 2)
        _plan_slab(&plan, block_rows, block_cols)
    while planes * _ceil_div(row_tiles, block_rows) * _ceil_div(col_tiles, block_cols) < wanted:
        if block_rows > 1:
            block_rows = _ceil_div(block_rows, 2)
        elif block_cols > 1:
            block_cols = _ceil_div(block_cols, 2)
        else:
            break
        _plan_slab(&plan, block_rows, block_cols)
    plan.n_row_blocks = _ceil_div(row_tiles, block_rows)
    plan.n_col_blocks = _ceil_div(col_tiles, block_cols)
    cdef Py_ssize_t n_items = planes * plan.n_row_blocks * plan.n_col_blocks
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))

    packed = np.empty(plan.groups * plan.n_oc_blocks * plan.n_virtual * plan.KH * plan.KW * plan.oc_block,
                      dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] packed_view = packed
    _pack_weight(&plan, weight_ptr, &packed_view[0])
    cdef const floating* w_ptr = &packed_view[0]
    # tap kw reads phase slot(kw) from position (kw * dilation_w) // stride_w on; phases[slot] says which
    cdef Py_ssize_t stride_w = plan.stride_w, dilation_w = plan.dilation_w
    phase_list = _column_phases(&plan)
    cdef Py_ssize_t[::1] kw_offset_view = np.empty(plan.KW, dtype=np.intp)
    cdef Py_ssize_t[::1] phase_view = np.array(phase_list, dtype=np.intp)
    cdef Py_ssize_t k
    slot = {phase: i for i, phase in enumerate(phase_list)}
    for k in range(plan.KW):
        kw_offset_view[k] = slot[(k * dilation_w) % stride_w] * plan.phase_len + (k * dilation_w) // stride_w
    cdef const Py_ssize_t* kw_ptr = &kw_offset_view[0]
    cdef const Py_ssize_t* phase_ptr = &phase_view[0]

    cdef Py_ssize_t slab_size = plan.slab_size, n_virtual = plan.n_virtual, item
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef floating* slab
    cdef Py_ssize_t* sources
    with nogil, parallel(num_threads=team):
        # this thread's scratch: the slab, and where each of its channels comes from
        slab = <floating*> malloc(slab_size * sizeof(floating))
        sources = <Py_ssize_t*> malloc(n_virtual * sizeof(Py_ssize_t))
        if slab == NULL or sources == NULL:
            alloc_failed[0] = 1
        for item in prange(n_items, schedule="static"):
            if slab != NULL and sources != NULL:
                _conv_item(&plan, x_ptr, w_ptr, b_ptr, out_ptr, slab, sources, kw_ptr, phase_ptr, item)
        free(slab)
        free(sources)
    if alloc_failed[0]:
        raise MemoryError(f"conv2d: could not allocate {slab_size * sizeof(floating)} bytes of scratch")
    return 0
