# Packing, apart from the micro-kernels (as BLIS): input slabs per work item, weights per call, lowered input rows.

cdef extern from "kernels/gemm/deinterleave.h" nogil:
    void gconv_deinterleave_float(const float* src, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t phases, float* dst,
                                  Py_ssize_t dst_pitch)
    void gconv_deinterleave_double(const double* src, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t phases,
                                   double* dst, Py_ssize_t dst_pitch)

cdef extern from "kernels/gemm/lower.h" nogil:
    void gconv_lower_row_float(const float* run, Py_ssize_t step, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t width,
                               float* dst)
    void gconv_lower_row_double(const double* run, Py_ssize_t step, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t width,
                                double* dst)

cdef void _plan_slab(Plan* plan, Py_ssize_t row_tiles, Py_ssize_t col_tiles) noexcept nogil:
    """Slab shape for blocks of row_tiles x col_tiles tiles: the padded input those outputs read."""
    plan.rows_per_block = row_tiles * plan.tile_rows
    plan.cols_per_block = col_tiles * plan.tile_cols
    plan.slab_rows = (plan.rows_per_block - 1) * plan.stride_h + (plan.KH - 1) * plan.dilation_h + 1
    # tile column j of tap kw reads phase position (ow - ow_start) + j + (kw * dilation_w) // stride_w
    plan.phase_len = plan.cols_per_block + ((plan.KW - 1) * plan.dilation_w) // plan.stride_w
    plan.slab_row_len = _size_product(plan.n_phases, plan.phase_len)
    if plan.flat:
        # the last flat tile may reach past the block's last row by up to one tile plus the widest tap
        plan.slab_rows += _ceil_div(plan.tile_rows * plan.tile_cols + (plan.KW - 1) * plan.dilation_w,
                                    plan.slab_row_len)
    plan.slab_size = _size_product(_size_product(plan.n_virtual, plan.slab_rows), plan.slab_row_len)


cdef void _channel_sources(const Plan* plan, Py_ssize_t* sources, Py_ssize_t n, Py_ssize_t od,
                           Py_ssize_t g) noexcept nogil:
    """sources[v]: the offset in x of the plane that slab channel v = ic * KD + kd holds for output plane od
    of image n and group g, or -1 where depth tap kd reads the depth padding (a plane of zeros)."""
    cdef Py_ssize_t v, ic, kd, depth
    for v in range(plan.n_virtual):
        ic = v // plan.KD
        kd = v - ic * plan.KD
        depth = od * plan.stride_d - plan.pad_front + kd * plan.dilation_d
        if depth < 0 or depth >= plan.D:
            sources[v] = -1
        else:
            sources[v] = (n * plan.x_stride_n + (g * plan.in_channels_per_group + ic) * plan.x_stride_c
                          + depth * plan.x_stride_d)


cdef void _pack_slab(const Plan* plan, const floating* x, floating* slab, const Py_ssize_t* phases,
                     const Py_ssize_t* sources, Py_ssize_t oh_start, Py_ssize_t ow_start) noexcept nogil:
    """Copy the input one block reads into slab, zeros where it falls in the padding.

    Slab channel v holds the plane at x + sources[v] (zeros where sources[v] is -1). Position pos of phase p
    in a slab row holds input column ow_start * stride_w - pad_left + pos * stride_w + p, so the output
    columns j, j+1, ... of one tap read consecutive positions whatever the stride.
    """
    cdef Py_ssize_t s = plan.stride_w, W = plan.W, length = plan.phase_len, n_channels = plan.n_virtual
    cdef Py_ssize_t first_row = oh_start * plan.stride_h - plan.pad_top
    cdef Py_ssize_t first_col = ow_start * s - plan.pad_left
    cdef Py_ssize_t xs_w = plan.x_stride_w
    cdef Py_ssize_t v, r, ih, lo, hi, slot, pos, col0
    cdef Py_ssize_t channel_len = plan.slab_rows * plan.slab_row_len
    cdef const floating* src
    cdef floating* dst
    cdef floating* row
    for v in range(n_channels):
        if sources[v] < 0:
            memset(slab + v * channel_len, 0, channel_len * sizeof(floating))
    if xs_w == 1:
        # rows are contiguous (NCHW, slices): one channel at a time, a row at a time
        for v in range(n_channels):
            if sources[v] < 0:
                continue
            for r in range(plan.slab_rows):
                ih = first_row + r
                dst = slab + v * channel_len + r * plan.slab_row_len
                if ih < 0 or ih >= plan.H:
                    memset(dst, 0, plan.slab_row_len * sizeof(floating))
                    continue
                for slot in range(plan.n_phases):
                    # positions [lo, hi) read columns col0 + pos * s inside [0, W); the rest is padding
                    col0 = first_col + phases[slot]
                    lo = min(length, _ceil_div(-col0, s)) if col0 < 0 else 0
                    hi = max(lo, min(length, (W - 1 - col0) // s + 1)) if col0 < W else lo
                    src = x + sources[v] + ih * plan.x_stride_h + col0
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
        row = slab + r * plan.slab_row_len  # channel v's row: row + v * channel_len
        if ih < 0 or ih >= plan.H:
            for v in range(n_channels):
                memset(row + v * channel_len, 0, plan.slab_row_len * sizeof(floating))
            continue
        for slot in range(plan.n_phases):
            col0 = first_col + phases[slot]
            lo = min(length, _ceil_div(-col0, s)) if col0 < 0 else 0
            hi = max(lo, min(length, (W - 1 - col0) // s + 1)) if col0 < W else lo
            src = x + ih * plan.x_stride_h + col0 * xs_w
            dst = row + slot * length
            for v in range(n_channels):
                if sources[v] >= 0:
                    memset(dst + v * channel_len, 0, lo * sizeof(floating))
                    memset(dst + v * channel_len + hi, 0, (length - hi) * sizeof(floating))
            for pos in range(lo, hi):
                for v in range(n_channels):
                    if sources[v] >= 0:
                        dst[v * channel_len + pos] = src[pos * s * xs_w + sources[v]]


cdef void _pack_weight(const Plan* plan, const floating* weight, floating* packed) noexcept nogil:
    """packed[g][block][v][kh][kw][o] = weight[g * ocpg + block * oc_block + o][v][kh][kw], v = (ic, kd).

    The oc_block weights of one tap sit together for the micro-kernel; channels past a group's end are 0.
    """
    cdef Py_ssize_t taps = plan.n_virtual * plan.KH * plan.KW  # (ic, kd, kh, kw): the weight's own order
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


cdef inline bint _patches_in_rows(const Plan* plan) noexcept nogil:
    """Whether each input row holds the patches of one tap row side by side (kernel no wider than its stride, no
    left padding or column dilation, contiguous rows): then a row splits into its column phases at once."""
    return (plan.x_stride_w == 1 and plan.KW <= plan.stride_w and plan.pad_left == 0
            and plan.dilation_w == 1)


cdef inline void _patch_row(const Plan* plan, const floating* x_channel, Py_ssize_t kh, Py_ssize_t oh,
                            Py_ssize_t ow, Py_ssize_t n, floating* dst, Py_ssize_t pitch) noexcept nogil:
    """Lowered rows kw = 0 .. KW - 1 of tap row kh at output pixels (oh, ow) .. (oh, ow + n - 1) of one
    input channel: dst[kw * pitch + j] (zeros where the tap row falls in the padding); (W_out - 1) * stride +
    KW <= W, so no patch reaches past the row."""
    cdef Py_ssize_t ih = oh * plan.stride_h - plan.pad_top + kh * plan.dilation_h, kw
    if ih < 0 or ih >= plan.H:
        for kw in range(plan.KW):
            memset(dst + kw * pitch, 0, n * sizeof(floating))
    elif floating is float:
        gconv_deinterleave_float(x_channel + ih * plan.x_stride_h + ow * plan.stride_w, n, plan.stride_w, plan.KW,
                                 dst, pitch)
    else:
        gconv_deinterleave_double(x_channel + ih * plan.x_stride_h + ow * plan.stride_w, n, plan.stride_w,
                                  plan.KW, dst, pitch)


cdef void _gather_patches(const Plan* plan, const floating* x_group, Py_ssize_t p_first, Py_ssize_t n_p,
                          Py_ssize_t n_zero, floating* rows, Py_ssize_t pitch) noexcept nogil:
    """The lowered rows of one group of one image (x_group: its first input channel) at output pixels
    p_first <= p < p_first + n_p, for a call whose patches lie in its rows (_patches_in_rows):
    rows[k * pitch + p - p_first], k = (c * KH + kh) * KW + kw, then n_zero zeros per row after them."""
    cdef Py_ssize_t c, kh, k, done, p, oh, ow, run
    for c in range(plan.in_channels_per_group):
        for kh in range(plan.KH):
            k = (c * plan.KH + kh) * plan.KW
            done = 0
            while done < n_p:  # the pixels in runs along output rows
                p = p_first + done
                oh = p // plan.W_out
                ow = p - oh * plan.W_out
                run = min(plan.W_out - ow, n_p - done)
                _patch_row(plan, x_group + c * plan.x_stride_c, kh, oh, ow, run, rows + k * pitch + done, pitch)
                done += run
    if n_zero > 0:
        for k in range(plan.in_channels_per_group * plan.KH * plan.KW):
            memset(rows + k * pitch + n_p, 0, n_zero * sizeof(floating))


cdef void _lower_rows(const Plan* plan, const floating* x, floating* columns, Py_ssize_t item) noexcept nogil:
    """Input channel c = item % C_in of image n = item // C_in as its KH * KW rows of the lowered input:
    columns[n][(c * KH + kh) * KW + kw][oh][ow] = x[n][c][oh * s_h - pad_top + kh * d_h][ow * s_w - pad_left +
    kw * d_w], zeros where that falls in the padding; columns is C-contiguous."""
    cdef Py_ssize_t n = item // plan.C_in, c = item % plan.C_in
    cdef Py_ssize_t H_out = plan.H_out, W_out = plan.W_out, s = plan.stride_w, xs_w = plan.x_stride_w
    cdef Py_ssize_t kh, kw, oh, ih, col0, lo, hi, first, last
    cdef const floating* plane = x + n * plan.x_stride_n + c * plan.x_stride_c
    cdef const floating* src
    cdef floating* dst = columns + item * plan.KH * plan.KW * H_out * W_out
    if _patches_in_rows(plan):
        # patches side by side along each input row (1x1 s2, 2x2 s2, 4x4 s4): every input row that tap kh
        # reads is split into its KW column phases at once, each the lowered row of one kw
        for kh in range(plan.KH):
            for oh in range(H_out):
                _patch_row(plan, plane, kh, oh, 0, W_out, dst + oh * W_out, H_out * W_out)
            dst += plan.KW * H_out * W_out
        return
    for kh in range(plan.KH):
        for kw in range(plan.KW):
            # output columns [lo, hi) read input columns col0 + ow * s inside [0, W); the rest is padding
            col0 = kw * plan.dilation_w - plan.pad_left
            lo = min(W_out, _ceil_div(-col0, s)) if col0 < 0 else 0
            hi = max(lo, min(W_out, (plan.W - 1 - col0) // s + 1)) if col0 < plan.W else lo
            for oh in range(H_out):
                ih = oh * plan.stride_h - plan.pad_top + kh * plan.dilation_h
                # the row's run of input columns (from column lo, s * xs_w elements apart) and its padding;
                # a row in the padding is all zeros (an empty run, nothing read)
                first, last, src = 0, 0, plane
                if 0 <= ih < plan.H and hi > lo:
                    first, last, src = lo, hi, plane + ih * plan.x_stride_h + (col0 + lo * s) * xs_w
                if floating is float:
                    gconv_lower_row_float(src, s * xs_w, first, last, W_out, dst)
                else:
                    gconv_lower_row_double(src, s * xs_w, first, last, W_out, dst)
                dst += W_out
