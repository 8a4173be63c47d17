# The dwconv family's driver: channel-vectorised tiles (kernels/dwconv/tile.h) over per-item
# [row][column][channel] slabs, for depthwise convolutions (a slab of one channel block) and grouped ones (a
# slab of one group's input channels, its output channels a vector at a time); threads split over images,
# channel blocks or groups, and row blocks.

cdef extern from "kernels/dwconv/tile.h" nogil:
    # the tile shape, defined in the header only
    int GCONV_DW_OWT
    int GCONV_DW_CB_F32
    int GCONV_DW_CB_F64
    void gconv_dw_f32(Py_ssize_t n_taps, const float* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                      Py_ssize_t n_tiles, const float* w, const float* bias, float* out)
    void gconv_dw_f64(Py_ssize_t n_taps, const double* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                      Py_ssize_t n_tiles, const double* w, const double* bias, double* out)
    void gconv_gw_f32(Py_ssize_t n_taps, const float* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                      Py_ssize_t n_tiles, const float* w, const float* bias, float* out)
    void gconv_gw_f64(Py_ssize_t n_taps, const double* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                      Py_ssize_t n_tiles, const double* w, const double* bias, double* out)
    int GCONV_DW_ROW_TILES
    int GCONV_GW_TWIN_TILES
    void gconv_gw_twin_f32(Py_ssize_t n_taps, const float* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                           Py_ssize_t n_tiles, const float* w, const float* bias, float* out)
    void gconv_gw_twin_f64(Py_ssize_t n_taps, const double* x, const Py_ssize_t* tap_offset,
                           Py_ssize_t col_step, Py_ssize_t n_tiles, const double* w, const double* bias,
                           double* out)
    int GCONV_GW_PAIR_TILES
    void gconv_gw_pair_f32(Py_ssize_t n_taps, const float* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                           Py_ssize_t n_tiles, const float* w, const float* bias, float* out, Py_ssize_t w_step,
                           Py_ssize_t out_step)
    void gconv_gw_pair_f64(Py_ssize_t n_taps, const double* x, const Py_ssize_t* tap_offset, Py_ssize_t col_step,
                           Py_ssize_t n_tiles, const double* w, const double* bias, double* out, Py_ssize_t w_step,
                           Py_ssize_t out_step)
    int gconv_dw_rows_f32(int kw, Py_ssize_t kh_size, const float* x, Py_ssize_t row_step, Py_ssize_t n_tiles,
                          const float* w, const float* bias, float* out)
    int gconv_dw_rows_f64(int kw, Py_ssize_t kh_size, const double* x, Py_ssize_t row_step, Py_ssize_t n_tiles,
                          const double* w, const double* bias, double* out)

cdef extern from "kernels/dwconv/interleave.h" nogil:
    void gconv_twin_lanes_float(float* data, Py_ssize_t n, Py_ssize_t half, int to_twin, float* tmp)
    void gconv_twin_lanes_double(double* data, Py_ssize_t n, Py_ssize_t half, int to_twin, double* tmp)

cdef extern from "kernels/dwconv/transpose.h" nogil:
    void gconv_transpose_float(const float* src, Py_ssize_t ss, Py_ssize_t rows, Py_ssize_t cols, float* dst,
                               Py_ssize_t ds)
    void gconv_transpose_double(const double* src, Py_ssize_t ss, Py_ssize_t rows, Py_ssize_t cols, double* dst,
                                Py_ssize_t ds)
    void gconv_transpose_runs_float(const float* src, Py_ssize_t ss, Py_ssize_t rows, Py_ssize_t lanes,
                                    Py_ssize_t cols, Py_ssize_t run, float* dst, Py_ssize_t ds,
                                    Py_ssize_t run_pitch)
    void gconv_transpose_runs_double(const double* src, Py_ssize_t ss, Py_ssize_t rows, Py_ssize_t lanes,
                                     Py_ssize_t cols, Py_ssize_t run, double* dst, Py_ssize_t ds,
                                     Py_ssize_t run_pitch)


# The tile shape for gconv._select and the tests: (channels, output columns) by itemsize.
DWCONV_TILE = {4: (GCONV_DW_CB_F32, GCONV_DW_OWT), 8: (GCONV_DW_CB_F64, GCONV_DW_OWT)}
# The fewest output channels per group a grouped tile fills, by itemsize (with AVX-512 half a vector: twin
# tiles, two groups to a vector).
DWCONV_GROUPED_LANES = {4: GCONV_DW_CB_F32 // 2 if GCONV_GW_TWIN_TILES else GCONV_DW_CB_F32,
                        8: GCONV_DW_CB_F64 // 2 if GCONV_GW_TWIN_TILES else GCONV_DW_CB_F64}
# Whether groups of at most half a vector of outputs run two to a vector in this build (AVX-512).
DWCONV_TWIN_TILES = bool(GCONV_GW_TWIN_TILES)
# Whether grouped tiles run two vectors of a group's output channels at a time in this build (AVX-512).
DWCONV_PAIR_TILES = bool(GCONV_GW_PAIR_TILES)
# Kernel widths with depthwise row tiles in this build (column stride 1, no column dilation; AVX-512 only).
DWCONV_ROW_KERNELS = (5, 7) if GCONV_DW_ROW_TILES else ()


cdef enum:
    # Work items wanted per thread before row blocks are split further, so static chunks stay balanced.
    DW_ITEMS_PER_THREAD = 4
    # Bytes of scratch one work item uses (slab and outputs): a block of rows of one channel block stays in
    # L2 while its tiles run, and each block re-packs the (KH - 1) * dilation rows it shares with the next,
    # so as large as half of a small L2 allows: a 56x56 map of 16 channels is one block for a 7x7 kernel,
    # and 96 channels of 56x56 with 7x7 ran 5-7% faster so than in blocks of 256 KiB (AVX-512)
    DW_SCRATCH_BUDGET = 512 * 1024


cdef struct DwPlan:
    # block of output channels (one vector) and tile width; n_cb blocks cover the channels (grouped: each
    # group's), the last zero-filled. n_taps: KH x KW x in_channels_per_group, one weight vector each.
    Py_ssize_t cb, n_cb, owt, n_ow_tiles, n_taps
    # grouped (not depthwise): a slab holds a group's input channels and the tiles broadcast each input to
    # a vector of the group's output channels; blocks_per_group such vectors cover a group's outputs
    bint grouped
    Py_ssize_t blocks_per_group, n_units
    # grouped with at most half a vector of output channels per group (AVX-512): twin tiles, a pair of groups
    # to a vector in interleaved lanes (dwconv/interleave.h); a unit is then a pair of groups and its one block
    bint twin
    # grouped with two or more vectors of output channels per group (AVX-512): pair tiles, two blocks of a group
    # at a time, each broadcast input feeding both (a group's last odd block runs alone)
    bint pair
    # depthwise with KW = 5 or 7, column stride 1 and no column dilation, with AVX-512: the row tiles (each
    # kernel row's inputs loaded once for all its kw), row_kw = KW; else 0
    int row_kw
    # slab: slab_rows x slab_cols pixels of pixel_len channels (depthwise: cb channels; grouped: the
    # group's input channels; twin: the pair's, interleaved); column j holds input column j - pad_left
    Py_ssize_t pixel_len, slab_cols, slab_row_len, slab_rows, slab_size
    # per-thread scratch besides the slab: the block's outputs (block_out_pitch each; two blocks' for pairs),
    # and for twin tiles a pixel's values (interleaving a slab pixel wider than a vector)
    Py_ssize_t block_out_pitch, block_out_size, pixel_scratch
    # work item = (n * n_units + unit) * n_row_blocks + row block; a unit is a channel block (depthwise), a
    # group (grouped: its slab packed once for all of its blocks) or a pair of groups (twin)
    Py_ssize_t rows_per_block, n_row_blocks


cdef inline Py_ssize_t _dw_slab_rows(const Plan* plan, Py_ssize_t out_rows) noexcept nogil:
    return (out_rows - 1) * plan.stride_h + (plan.KH - 1) * plan.dilation_h + 1


cdef Py_ssize_t _set_dw_rows(const Plan* plan, DwPlan* dp, Py_ssize_t rows_per_block) noexcept nogil:
    """Row blocks of rows_per_block output rows, and the scratch they take; returns its elements (capped)."""
    dp.rows_per_block = rows_per_block
    dp.n_row_blocks = _ceil_div(plan.H_out, rows_per_block)
    dp.slab_rows = _dw_slab_rows(plan, rows_per_block)
    dp.slab_size = _size_product(dp.slab_rows, dp.slab_row_len)
    dp.block_out_pitch = _size_product(_size_product(rows_per_block, plan.W_out) + dp.owt, dp.cb)
    dp.block_out_size = _size_product(dp.block_out_pitch, 2 if dp.pair else 1)
    return min(SIZE_CAP, dp.slab_size + dp.block_out_size + dp.pixel_scratch)


cdef void _plan_dw(const Plan* plan, DwPlan* dp, Py_ssize_t itemsize, int n_threads) noexcept nogil:
    """Channel blocks, slab shape and row blocks for n_threads threads."""
    dp.cb = GCONV_DW_CB_F32 if itemsize == 4 else GCONV_DW_CB_F64
    dp.owt = GCONV_DW_OWT
    dp.grouped = plan.in_channels_per_group != 1 or plan.out_channels_per_group != 1
    dp.twin = GCONV_GW_TWIN_TILES and dp.grouped and 2 * plan.out_channels_per_group <= dp.cb
    dp.pixel_scratch = 0
    if dp.twin:
        dp.blocks_per_group = 1
        dp.n_units = _ceil_div(plan.groups, 2)
        dp.n_cb = dp.n_units
        dp.pixel_len = dp.pixel_scratch = 2 * plan.in_channels_per_group
    elif dp.grouped:
        dp.blocks_per_group = _ceil_div(plan.out_channels_per_group, dp.cb)
        dp.n_cb = _size_product(plan.groups, dp.blocks_per_group)
        dp.n_units = plan.groups
        dp.pixel_len = plan.in_channels_per_group
    else:
        dp.blocks_per_group = 1
        dp.n_cb = _ceil_div(plan.C_out, dp.cb)
        dp.n_units = dp.n_cb
        dp.pixel_len = dp.cb
    dp.pair = GCONV_GW_PAIR_TILES and dp.grouped and dp.blocks_per_group >= 2
    dp.n_ow_tiles = _ceil_div(plan.W_out, dp.owt)
    dp.row_kw = 0
    if (GCONV_DW_ROW_TILES and not dp.grouped and plan.dilation_w == 1 and plan.stride_w == 1
            and (plan.KW == 5 or plan.KW == 7)):
        dp.row_kw = <int> plan.KW
    dp.n_taps = _size_product(plan.KH * plan.KW, plan.in_channels_per_group)
    # every column the last tile reads, also past the row (zeros): no tile is cut short
    dp.slab_cols = _size_product(dp.n_ow_tiles * dp.owt - 1, plan.stride_w) + (plan.KW - 1) * plan.dilation_w + 1
    dp.slab_row_len = _size_product(dp.slab_cols, dp.pixel_len)
    cdef Py_ssize_t wanted = DW_ITEMS_PER_THREAD * n_threads if n_threads > 1 else 1
    cdef Py_ssize_t rows = plan.H_out
    while rows > 1 and _size_product(_set_dw_rows(plan, dp, rows), itemsize) > DW_SCRATCH_BUDGET:
        rows = _ceil_div(rows, 2)
    while rows > 1 and plan.N * dp.n_units * _ceil_div(plan.H_out, rows) < wanted:
        rows = _ceil_div(rows, 2)
    _set_dw_rows(plan, dp, rows)


def dwconv_scratch_bytes(Py_ssize_t W, Py_ssize_t W_out, tuple kernel_size, tuple stride, tuple dilation,
                         int itemsize, Py_ssize_t in_channels_per_group=1, Py_ssize_t out_channels_per_group=1):
    """Bytes of per-thread scratch for one output row, the least the dwconv family needs: gconv._select's rule."""
    cdef Plan plan
    cdef DwPlan dp
    plan.in_channels_per_group, plan.out_channels_per_group = in_channels_per_group, out_channels_per_group
    plan.groups = 1
    plan.KH, plan.KW = kernel_size
    plan.stride_h, plan.stride_w = stride
    plan.dilation_h, plan.dilation_w = dilation
    plan.N, plan.C_out, plan.H_out, plan.W, plan.W_out = 1, 1, 1, W, W_out
    _plan_dw(&plan, &dp, itemsize, 1)
    return _size_product(_set_dw_rows(&plan, &dp, 1), itemsize)


cdef void _pack_dw_slab(const Plan* plan, const DwPlan* dp, const floating* x, floating* slab,
                        Py_ssize_t n, Py_ssize_t c0, Py_ssize_t n_valid, Py_ssize_t ih0,
                        Py_ssize_t n_rows) noexcept nogil:
    """slab[r][j][lane] = x[n, c0 + lane, ih0 + r, j - pad_left] for lane < pixel_len, zeros in the padding and
    past the channels (lanes n_valid and on).
    """
    cdef Py_ssize_t cb = dp.pixel_len, cols = dp.slab_cols, row_len = dp.slab_row_len, W = plan.W
    cdef Py_ssize_t xs_c = plan.x_stride_c, xs_h = plan.x_stride_h, xs_w = plan.x_stride_w
    # the slab rows that hold input rows, [r_lo, r_hi), and the slab columns that hold input columns, [j_lo, j_hi)
    cdef Py_ssize_t r_lo = min(n_rows, max(0, -ih0)), r_hi = max(r_lo, min(n_rows, plan.H - ih0))
    cdef Py_ssize_t j_lo = min(cols, plan.pad_left), j_hi = max(j_lo, min(cols, plan.pad_left + W))
    cdef Py_ssize_t n_cols = j_hi - j_lo, n_pixels = (r_hi - r_lo) * W
    cdef Py_ssize_t r, j, lane
    cdef floating* dst
    cdef const floating* src
    memset(slab, 0, r_lo * row_len * sizeof(floating))
    memset(slab + r_hi * row_len, 0, (n_rows - r_hi) * row_len * sizeof(floating))
    for r in range(r_lo, r_hi):
        memset(slab + r * row_len, 0, j_lo * cb * sizeof(floating))
        memset(slab + r * row_len + j_hi * cb, 0, (cols - j_hi) * cb * sizeof(floating))
    if n_cols == 0:
        return
    # the first input element the slab holds (j_lo == pad_left here)
    cdef const floating* x_first = x + n * plan.x_stride_n + c0 * xs_c + (ih0 + r_lo) * xs_h
    if xs_c != 1 and xs_w == 1 and xs_h == W and n_cols == W:
        # NCHW planes, whole rows: the block's rows of each channel are one run, transposed in one go (a
        # 7-column row alone would not fill one register block), each W pixels landing in their padded slab
        # row, the lanes past the channels zeroed as they go
        dst = slab + r_lo * row_len + j_lo * cb
        if floating is float:
            gconv_transpose_runs_float(x_first, xs_c, n_valid, cb, n_pixels, W, dst, cb, row_len)
        else:
            gconv_transpose_runs_double(x_first, xs_c, n_valid, cb, n_pixels, W, dst, cb, row_len)
        return
    for r in range(r_lo, r_hi):
        dst = slab + r * row_len + j_lo * cb
        src = x_first + (r - r_lo) * xs_h
        if xs_c == 1:  # channels-last: each pixel's channels are one run
            for j in range(n_cols):
                memcpy(dst + j * cb, src + j * xs_w, n_valid * sizeof(floating))
        elif xs_w == 1:  # NCHW rows that the slab holds only in part (a stride skips the last columns)
            _transpose(src, xs_c, n_valid, n_cols, dst, cb)
        else:
            for lane in range(n_valid):
                for j in range(n_cols):
                    dst[j * cb + lane] = src[lane * xs_c + j * xs_w]
        for j in range(n_cols):
            for lane in range(n_valid, cb):
                dst[j * cb + lane] = 0


cdef void _dw_item(const Plan* plan, const DwPlan* dp, const floating* x, const floating* w_packed,
                   const floating* b_packed, floating* out, const Py_ssize_t* tap_offset, floating* slab,
                   floating* block_out, Py_ssize_t item) noexcept nogil:
    """One work item: a block of output rows of one unit (channel block or group) of image n.

    block_out: scratch for a channel block's outputs, [row][column][lane] at a pitch of W_out columns (a
    row's last tile runs past it, into the next row's place, which that row's tiles then overwrite); for pair
    tiles the next block's follow, block_out_pitch on; for twin tiles a pixel's scratch follows.
    """
    cdef Py_ssize_t row_block = item % dp.n_row_blocks
    cdef Py_ssize_t unit = (item // dp.n_row_blocks) % dp.n_units
    cdef Py_ssize_t n = item // (dp.n_row_blocks * dp.n_units)
    cdef Py_ssize_t oh0 = row_block * dp.rows_per_block
    cdef Py_ssize_t n_rows = min(dp.rows_per_block, plan.H_out - oh0)
    cdef Py_ssize_t icpg = plan.in_channels_per_group, ocpg = plan.out_channels_per_group, b, block
    cdef Py_ssize_t first_group, n_groups, slab_rows
    if dp.twin:  # a pair of groups (the last alone where there are an odd number): one slab, one block
        first_group, slab_rows = 2 * unit, _dw_slab_rows(plan, n_rows)
        n_groups = min(2, plan.groups - first_group)
        _pack_dw_slab(plan, dp, x, slab, n, first_group * icpg, n_groups * icpg, oh0 * plan.stride_h - plan.pad_top,
                      slab_rows)
        _twin_lanes(slab, slab_rows * dp.slab_cols, icpg, True, block_out + dp.block_out_size)
        _dw_block(plan, dp, w_packed, b_packed, out, tap_offset, slab, block_out, n, unit, first_group * ocpg,
                  n_groups * ocpg, oh0, n_rows, False)
        return
    if not dp.grouped:
        _pack_dw_slab(plan, dp, x, slab, n, unit * dp.cb, min(dp.cb, plan.C_out - unit * dp.cb),
                      oh0 * plan.stride_h - plan.pad_top, _dw_slab_rows(plan, n_rows))
        _dw_block(plan, dp, w_packed, b_packed, out, tap_offset, slab, block_out, n, unit, unit * dp.cb,
                  min(dp.cb, plan.C_out - unit * dp.cb), oh0, n_rows, False)
        return
    # one slab of the group's input channels for all of its blocks of output channels
    _pack_dw_slab(plan, dp, x, slab, n, unit * icpg, icpg, oh0 * plan.stride_h - plan.pad_top,
                  _dw_slab_rows(plan, n_rows))
    cdef bint pair
    b = 0
    while b < dp.blocks_per_group:
        pair = dp.pair and b + 1 < dp.blocks_per_group
        block = unit * dp.blocks_per_group + b
        _dw_block(plan, dp, w_packed, b_packed, out, tap_offset, slab, block_out, n, block,
                  unit * ocpg + b * dp.cb, min(dp.cb, ocpg - b * dp.cb), oh0, n_rows, pair)
        b += 2 if pair else 1


cdef void _dw_block(const Plan* plan, const DwPlan* dp, const floating* w_packed, const floating* b_packed,
                    floating* out, const Py_ssize_t* tap_offset, const floating* slab, floating* block_out,
                    Py_ssize_t n, Py_ssize_t block, Py_ssize_t c0, Py_ssize_t n_valid, Py_ssize_t oh0,
                    Py_ssize_t n_rows, bint pair) noexcept nogil:
    """Output rows oh0 .. oh0 + n_rows - 1 of channels c0 .. c0 + n_valid - 1 (packed block `block`; pair: and
    of the next block, the group's next cb channels; twin: of its one or two groups) of image n, from the slab,
    through block_out into out."""
    cdef Py_ssize_t cb = dp.cb, W_out = plan.W_out
    cdef Py_ssize_t col_step = plan.stride_w * dp.pixel_len
    cdef Py_ssize_t r
    cdef const floating* row
    cdef const floating* w_block = w_packed + block * dp.n_taps * cb
    for r in range(n_rows):
        row = slab + r * plan.stride_h * dp.slab_row_len
        if dp.row_kw:
            _dw_row_tiles(dp.row_kw, plan.KH, row, plan.dilation_h * dp.slab_row_len, dp.n_ow_tiles, w_block,
                          b_packed + block * cb, block_out + r * W_out * cb)
        elif pair:
            _gw_pair_row(dp.n_taps, row, tap_offset, col_step, dp.n_ow_tiles, w_block, b_packed + block * cb,
                         block_out + r * W_out * cb, dp.n_taps * cb, dp.block_out_pitch)
        else:
            _dw_row(dp.grouped, dp.twin, dp.n_taps, row, tap_offset, col_step, dp.n_ow_tiles, w_block,
                    b_packed + block * cb, block_out + r * W_out * cb)
    cdef Py_ssize_t ocpg = plan.out_channels_per_group
    if dp.twin:  # back in the pair's order, each group's lanes stored to its own channels
        _twin_lanes(block_out, n_rows * W_out, cb // 2, False, block_out + dp.block_out_size)
        _store_dw_block(plan, dp, block_out, out, n, c0, ocpg, oh0, n_rows)
        if n_valid > ocpg:
            _store_dw_block(plan, dp, block_out + cb // 2, out, n, c0 + ocpg, ocpg, oh0, n_rows)
        return
    _store_dw_block(plan, dp, block_out, out, n, c0, n_valid, oh0, n_rows)
    if pair:  # the group's next block: its channels from c0 + cb on (c0 % ocpg: the first block's in the group)
        _store_dw_block(plan, dp, block_out + dp.block_out_pitch, out, n, c0 + cb,
                        min(cb, ocpg - (c0 % ocpg) - cb), oh0, n_rows)


cdef void _store_dw_block(const Plan* plan, const DwPlan* dp, const floating* block_out, floating* out,
                          Py_ssize_t n, Py_ssize_t c0, Py_ssize_t n_valid, Py_ssize_t oh0,
                          Py_ssize_t n_rows) noexcept nogil:
    """A block's outputs, block_out[(r * W_out + ow) * cb + lane], into out's channels c0 .. c0 + n_valid - 1."""
    cdef Py_ssize_t cb = dp.cb, W_out = plan.W_out
    cdef Py_ssize_t os_c = plan.out_stride_c, os_h = plan.out_stride_h, os_w = plan.out_stride_w
    cdef Py_ssize_t r, lane, ow
    cdef floating* dst = out + n * plan.out_stride_n + c0 * os_c + oh0 * os_h
    if os_c != 1 and os_w == 1 and (os_h == W_out or n_rows == 1):
        # NCHW: the block's rows of each channel are one run, transposed out in one go
        _transpose(block_out, cb, n_rows * W_out, n_valid, dst, os_c)
        return
    for r in range(n_rows):
        if os_c == 1:  # channels-last: each pixel's channels are one run
            for ow in range(W_out):
                memcpy(dst + r * os_h + ow * os_w, block_out + (r * W_out + ow) * cb, n_valid * sizeof(floating))
        elif os_w == 1:
            _transpose(block_out + r * W_out * cb, cb, W_out, n_valid, dst + r * os_h, os_c)
        else:
            for lane in range(n_valid):
                for ow in range(W_out):
                    dst[lane * os_c + r * os_h + ow * os_w] = block_out[(r * W_out + ow) * cb + lane]


cdef inline void _block_channels(const Plan* plan, const DwPlan* dp, Py_ssize_t block, Py_ssize_t* c_first,
                                 Py_ssize_t* n_valid) noexcept nogil:
    # the output channels of packed block `block`: grouped, block b of group g starts at g * ocpg + b * cb
    cdef Py_ssize_t g = block // dp.blocks_per_group, b = block % dp.blocks_per_group
    if dp.grouped:
        c_first[0] = g * plan.out_channels_per_group + b * dp.cb
        n_valid[0] = min(dp.cb, plan.out_channels_per_group - b * dp.cb)
    else:
        c_first[0] = block * dp.cb
        n_valid[0] = min(dp.cb, plan.C_out - block * dp.cb)


cdef inline Py_ssize_t _twin_lane(const Plan* plan, Py_ssize_t c) noexcept nogil:
    # output channel c's lane in its twin block (pair of groups c // ocpg // 2): 2j + g % 2 for output j of
    # group g
    cdef Py_ssize_t g = c // plan.out_channels_per_group
    return 2 * (c % plan.out_channels_per_group) + g % 2


cdef void _pack_dw_weights(const Plan* plan, const DwPlan* dp, const floating* w, floating* dst) noexcept nogil:
    """Every block's weights (dst: n_cb * n_taps * cb values, each written)."""
    cdef Py_ssize_t block, c_first, n_valid, taps = dp.n_taps, cb = dp.cb
    cdef Py_ssize_t c, ic, tap, khkw = plan.KH * plan.KW, icpg = plan.in_channels_per_group
    cdef floating* twin_lane
    if dp.twin:
        # output channel c, output j of group g, is lane 2j + g % 2 of pair g // 2; zeros in the lanes of a
        # missing second group and past a group's outputs
        memset(dst, 0, dp.n_cb * taps * cb * sizeof(floating))
        for c in range(plan.C_out):
            twin_lane = dst + c // plan.out_channels_per_group // 2 * taps * cb + _twin_lane(plan, c)
            for ic in range(icpg):
                for tap in range(khkw):
                    twin_lane[(tap * icpg + ic) * cb] = w[(c * icpg + ic) * khkw + tap]
        return
    for block in range(dp.n_cb):
        _block_channels(plan, dp, block, &c_first, &n_valid)
        _pack_dw_block_weights(w + c_first * taps, plan.KH * plan.KW, plan.in_channels_per_group, n_valid,
                               cb, dst + block * taps * cb)


cdef void _pack_dw_bias(const Plan* plan, const DwPlan* dp, const floating* bias, floating* dst) noexcept nogil:
    """Every block's bias as one vector (dst: n_cb * cb values, each written; zeros past the channels of each
    group, and everywhere when bias is NULL)."""
    cdef Py_ssize_t block, c_first, n_valid, cb = dp.cb
    memset(dst, 0, dp.n_cb * cb * sizeof(floating))
    if bias == NULL:
        return
    cdef Py_ssize_t c
    if dp.twin:
        for c in range(plan.C_out):
            dst[c // plan.out_channels_per_group // 2 * cb + _twin_lane(plan, c)] = bias[c]
        return
    for block in range(dp.n_cb):
        _block_channels(plan, dp, block, &c_first, &n_valid)
        memcpy(dst + block * cb, bias + c_first, n_valid * sizeof(floating))


def dwconv_pack_weights(const floating[:, :, :, ::1] weight not None, Py_ssize_t groups):
    """The weights as conv2d_dwconv packs them per call, for a caller that keeps them (a module's cache).

    weight (C_out, C_in // groups, KH, KW), C-contiguous. The result is 1-D and fits this instruction-set
    level's tile only: pass it back as conv2d_dwconv(..., packed_weight=) to the same kernel module.
    """
    cdef Plan plan
    cdef DwPlan dp
    plan.C_out, plan.in_channels_per_group = weight.shape[0], weight.shape[1]
    plan.KH, plan.KW = weight.shape[2], weight.shape[3]
    if groups <= 0 or plan.C_out % groups != 0:
        raise ValueError("dwconv_pack_weights: the output channels must be a multiple of groups")
    plan.groups, plan.out_channels_per_group = groups, plan.C_out // groups
    plan.N, plan.H_out, plan.W_out, plan.W = 1, 1, 1, 1
    plan.stride_h, plan.stride_w, plan.dilation_h, plan.dilation_w = 1, 1, 1, 1
    _plan_dw(&plan, &dp, sizeof(floating), 1)
    packed = _aligned_empty(dp.n_cb * dp.n_taps * dp.cb, np.float32 if floating is float else np.float64)
    cdef floating[::1] packed_view = packed
    if packed.size:
        with nogil:
            _pack_dw_weights(&plan, &dp, &weight[0, 0, 0, 0], &packed_view[0])
    return packed


cdef void _pack_dw_block_weights(const floating* w, Py_ssize_t khkw, Py_ssize_t icpg, Py_ssize_t n_valid,
                                 Py_ssize_t cb, floating* dst) noexcept nogil:
    """dst[(tap * icpg + ic) * cb + lane] = w[(lane * icpg + ic) * khkw + tap] for lane < n_valid, zeros in the
    other lanes: a block's weights as the tiles read them, a vector of output channels per tap and input."""
    cdef Py_ssize_t lane, ic, tap, row
    if n_valid < cb:
        for row in range(khkw * icpg):
            memset(dst + row * cb + n_valid, 0, (cb - n_valid) * sizeof(floating))
    if icpg == 1:
        _transpose(w, khkw, n_valid, khkw, dst, cb)
        return
    # written in order (the reads stride over the block's channels)
    for tap in range(khkw):
        for ic in range(icpg):
            for lane in range(n_valid):
                dst[(tap * icpg + ic) * cb + lane] = w[(lane * icpg + ic) * khkw + tap]


cdef inline void _transpose(const floating* src, Py_ssize_t ss, Py_ssize_t rows, Py_ssize_t cols, floating* dst,
                            Py_ssize_t ds) noexcept nogil:
    # dst[c * ds + r] = src[r * ss + c], in register blocks where the ISA allows
    if floating is float:
        gconv_transpose_float(src, ss, rows, cols, dst, ds)
    else:
        gconv_transpose_double(src, ss, rows, cols, dst, ds)


cdef inline void _twin_lanes(floating* data, Py_ssize_t n, Py_ssize_t half, bint to_twin,
                             floating* tmp) noexcept nogil:
    # n pixels of 2 * half values to twin order or back, in place (tmp: a pixel's scratch)
    if floating is float:
        gconv_twin_lanes_float(data, n, half, to_twin, tmp)
    else:
        gconv_twin_lanes_double(data, n, half, to_twin, tmp)


cdef inline void _dw_row(bint grouped, bint twin, Py_ssize_t n_taps, const floating* x, const Py_ssize_t* tap_offset,
                         Py_ssize_t col_step, Py_ssize_t n_tiles, const floating* w, const floating* bias,
                         floating* out) noexcept nogil:
    # the C micro-kernel for this dtype: vector inputs (depthwise) or broadcast ones (grouped; twin: pairs
    # broadcast, two groups to a vector)
    if floating is float:
        if twin:
            gconv_gw_twin_f32(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out)
        elif grouped:
            gconv_gw_f32(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out)
        else:
            gconv_dw_f32(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out)
    else:
        if twin:
            gconv_gw_twin_f64(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out)
        elif grouped:
            gconv_gw_f64(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out)
        else:
            gconv_dw_f64(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out)


cdef inline void _gw_pair_row(Py_ssize_t n_taps, const floating* x, const Py_ssize_t* tap_offset,
                              Py_ssize_t col_step, Py_ssize_t n_tiles, const floating* w, const floating* bias,
                              floating* out, Py_ssize_t w_step, Py_ssize_t out_step) noexcept nogil:
    # the pair tile for this dtype (_plan_dw checked that there is one)
    if floating is float:
        gconv_gw_pair_f32(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out, w_step, out_step)
    else:
        gconv_gw_pair_f64(n_taps, x, tap_offset, col_step, n_tiles, w, bias, out, w_step, out_step)


cdef inline void _dw_row_tiles(int kw, Py_ssize_t kh_size, const floating* x, Py_ssize_t row_step,
                               Py_ssize_t n_tiles, const floating* w, const floating* bias,
                               floating* out) noexcept nogil:
    # the depthwise row tile for this dtype and kw (_plan_dw checked that there is one)
    if floating is float:
        gconv_dw_rows_f32(kw, kh_size, x, row_step, n_tiles, w, bias, out)
    else:
        gconv_dw_rows_f64(kw, kh_size, x, row_step, n_tiles, w, bias, out)


def conv2d_dwconv(
    x,                                             # IN  (N, C, H, W), any strides (NCHW, NHWC, views)
    weight,                                        # IN  (C, 1, KH, KW), C-contiguous
    bias,                                          # IN  (C,), or (0,) for no bias
    out,                                           # OUT (N, C, H_out, W_out), any strides
    tuple stride, tuple pad_before, tuple dilation,  # (h, w) each; pad_before = (top, left)
    Py_ssize_t groups,
    int n_threads,
    packed_weight=None,                            # dwconv_pack_weights(weight, groups): skip the packing
):
    """Depthwise (groups == C_in == C_out) or grouped 2-D cross-correlation with implicit zero padding,
    vectorised along the output channels (grouped: a group's, each input broadcast to them).

    Same contract as conv2d_direct (gconv._select checked shapes, dtype and overlap); overwrites out. Each
    output is its taps' multiply-adds in one fixed order, whatever the work split.
    """
    cdef Operands ops
    cdef Plan plan
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, packed_weight, 4)
        _fill_plan_from(&plan, &ops, stride, pad_before, dilation, groups)
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if ops.itemsize == 4:
            _run_dwconv(&plan, &ops, <float*> ops.out.buf, n_threads)
        else:
            _run_dwconv(&plan, &ops, <double*> ops.out.buf, n_threads)
    finally:
        _release_operands(&ops)


cdef int _run_dwconv(const Plan* plan_ptr, const Operands* ops, floating* out_ptr, int n_threads) except -1:
    """conv2d_dwconv's work items on n_threads threads, per-thread scratch inside (out_ptr: ops.out's data,
    whose type picks the dtype)."""
    cdef Plan plan = plan_ptr[0]
    cdef DwPlan dp
    _plan_dw(&plan, &dp, sizeof(floating), n_threads)
    cdef Py_ssize_t n_items = plan.N * dp.n_units * dp.n_row_blocks
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
    cdef Py_ssize_t scratch_size = dp.slab_size + dp.block_out_size + dp.pixel_scratch
    if scratch_size * <Py_ssize_t> sizeof(floating) > SLAB_LIMIT:
        raise ValueError("conv2d_dwconv: even one output row's scratch exceeds the limit (use conv2d_direct)")
    cdef Py_ssize_t taps = dp.n_taps, t, cb = dp.cb, icpg = plan.in_channels_per_group
    cdef Py_ssize_t weight_elements = dp.n_cb * taps * cb
    if ops.has_packed and _packed_size(ops) != weight_elements:
        raise ValueError("conv2d_dwconv: packed_weight is not this weight's packing for this kernel build")
    # weights [block][tap][ic][lane] (packed now, unless the caller packed them once), bias [block * cb + lane]
    # (zeros past the channels of each group) and the tap offsets, in one C buffer, each part on a cache line:
    # on 7x7 maps NumPy arrays here had cost more than the tiles
    cdef Py_ssize_t weight_bytes = 0 if ops.has_packed else _round_up(weight_elements * sizeof(floating))
    cdef Py_ssize_t bias_bytes = _round_up(dp.n_cb * cb * sizeof(floating))
    cdef char* consts = <char*> malloc(weight_bytes + bias_bytes + taps * sizeof(Py_ssize_t) + CACHE_LINE)
    if consts == NULL:
        raise MemoryError("conv2d: could not allocate the packed weights")
    cdef floating* w_fresh = <floating*> _cache_line(consts)
    cdef floating* b_packed = <floating*> (<char*> w_fresh + weight_bytes)
    cdef Py_ssize_t* tap_offset = <Py_ssize_t*> (<char*> b_packed + bias_bytes)
    cdef const floating* w_ptr = <const floating*> ops.packed.buf if ops.has_packed else w_fresh
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef Py_ssize_t item
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef char* scratch
    cdef floating* slab
    try:
        with nogil:
            if not ops.has_packed:
                _pack_dw_weights(&plan, &dp, <const floating*> ops.weight.buf, w_fresh)
            _pack_dw_bias(&plan, &dp, <const floating*> _bias_data(ops), b_packed)
            for t in range(taps):
                # tile tap t = (kh * KW + kw) * icpg + ic: a pixel's input channels are adjacent in the slab
                # (twin: each input channel is a pair of values, the two groups')
                tap_offset[t] = ((t // icpg // plan.KW) * plan.dilation_h * dp.slab_row_len
                                 + (t // icpg % plan.KW) * plan.dilation_w * dp.pixel_len
                                 + t % icpg * (2 if dp.twin else 1))
            with parallel(num_threads=team):
                # this thread's scratch: slab, the block's outputs, on a cache line boundary (a slab pixel's
                # vector and the 16 x 16 transposes' stores)
                scratch = <char*> malloc(scratch_size * sizeof(floating) + CACHE_LINE)
                slab = <floating*> _cache_line(scratch)
                if scratch == NULL:
                    alloc_failed[0] = 1
                for item in prange(n_items, schedule="static"):
                    if scratch != NULL:
                        _dw_item(&plan, &dp, x_ptr, w_ptr, b_packed, out_ptr, tap_offset, slab,
                                 slab + dp.slab_size, item)
                free(scratch)
    finally:
        free(consts)
    if alloc_failed[0]:
        raise MemoryError(f"conv2d: could not allocate {scratch_size * sizeof(floating)} bytes of scratch")
    return 0
