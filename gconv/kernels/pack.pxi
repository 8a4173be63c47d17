# Packing, apart from the micro-kernels (as BLIS): input slabs per work item, weights per call.

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
    plan.slab_size = plan.in_channels_per_group * plan.slab_rows * plan.slab_row_len


cdef void _pack_slab(const Plan* plan, const floating* x, floating* slab, const Py_ssize_t* phases,
                     Py_ssize_t n, Py_ssize_t g, Py_ssize_t oh_start, Py_ssize_t ow_start) noexcept nogil:
    """Copy the input one block reads into slab, zeros where it falls in the padding.

    Position pos of phase p in a slab row holds input column ow_start * stride_w - pad_left + pos * stride_w
    + p, so the output columns j, j+1, ... of one tap read consecutive positions whatever the stride.
    """
    cdef Py_ssize_t s = plan.stride_w, W = plan.W, length = plan.phase_len, ics = plan.in_channels_per_group
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



cdef void _pack_weight(const Plan* plan, const floating* weight, floating* packed) noexcept nogil:
    """packed[g][block][ic][kh][kw][o] = weight[g * ocpg + block * oc_block + o][ic][kh][kw].

    The oc_block weights of one tap sit together for the micro-kernel; channels past a group's end are 0.
    """
    cdef Py_ssize_t taps = plan.in_channels_per_group * plan.KH * plan.KW
    cdef Py_ssize_t g, block, o, oc, t
    cdef floating* dst
    cdef const floating* src
    for g in range(plan.groups):
        for block in range(plan.n_oc_blocks):
            dst = packed + (g * plan.n_oc_blocks + block) * taps * plan.oc_block
            for o in range(plan.oc_block):
                oc = block * plan.oc_block + o
                if oc < plan.out_channels_per_group:
                    src = weight + (g * plan.out_channels_per_group + oc) * taps
                    for t in range(taps):
                        dst[t * plan.oc_block + o] = src[t]
                else:
                    for t in range(taps):
                        dst[t * plan.oc_block + o] = 0


