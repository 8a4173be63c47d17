# The weight-gradient driver: TILE_OC channels x taps dot products over zero-framed planes.


cdef struct WgradPlan:
    # input (N, C_in, H, W), grad_output (N, C_out, H_out, W_out), grad_weight (C_out, in_channels_per_group, KH, KW)
    Py_ssize_t N, C_in, H, W, C_out, KH, KW, H_out, W_out
    Py_ssize_t groups, in_channels_per_group, out_channels_per_group
    Py_ssize_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w
    # per-thread scratch: the zero-framed input plane, and grad_output rows padded to whole vectors
    Py_ssize_t plane_h, plane_w, padded_w_out
    # work item = g * n_oc_blocks + block: TILE_OC output channels of one group
    Py_ssize_t n_oc_blocks

cdef extern from "kernels/wgrad/tile.h" nogil:
    # the tile shapes, defined in the header only (enum: usable as C array sizes here)
    enum: GCONV_WGRAD_TILE_OC
    enum: GCONV_WGRAD_TILE_SIZE
    void gconv_wgrad_float(int tile_oc, const float* const* gy, Py_ssize_t gy_row_step, const float* const* x,
                           Py_ssize_t x_row_step, Py_ssize_t n_rows, Py_ssize_t n, double* acc)
    void gconv_wgrad_double(int tile_oc, const double* const* gy, Py_ssize_t gy_row_step,
                            const double* const* x, Py_ssize_t x_row_step, Py_ssize_t n_rows, Py_ssize_t n,
                            double* acc)


cdef void _weight_grad_item(const WgradPlan* p, const floating* x, const floating* grad_output,
                            floating* grad_weight, floating* plane, floating* gy_rows_buf, double* acc,
                            Py_ssize_t item) noexcept nogil:
    """Weight gradient of up to TILE_OC output channels of one group (item = g * n_oc_blocks + block).

    Each input plane is copied once into a zero-framed plane, so every tap of every output reads inside
    it, and the channels' grad_output rows into rows zero-padded to whole vectors (padded_w_out); the
    micro-kernel then takes 4 channels x 4 taps (1 channel x 16 taps for one channel per group) at a
    time over all output rows (stride 1), with no partial vectors. Wider strides take plain loops.
    """
    cdef Py_ssize_t N = p.N, C_in = p.C_in, H = p.H, W = p.W, C_out = p.C_out, KH = p.KH, KW = p.KW
    cdef Py_ssize_t H_out = p.H_out, W_out = p.W_out, stride_h = p.stride_h, stride_w = p.stride_w
    cdef Py_ssize_t pad_top = p.pad_top, pad_left = p.pad_left, dilation_h = p.dilation_h
    cdef Py_ssize_t dilation_w = p.dilation_w, plane_h = p.plane_h, plane_w = p.plane_w
    cdef Py_ssize_t padded_w_out = p.padded_w_out, in_channels_per_group = p.in_channels_per_group
    cdef Py_ssize_t g = item // p.n_oc_blocks, block = item % p.n_oc_blocks
    cdef Py_ssize_t oc_first = g * p.out_channels_per_group + block * GCONV_WGRAD_TILE_OC
    cdef Py_ssize_t n_oc = min(<Py_ssize_t> GCONV_WGRAD_TILE_OC, p.out_channels_per_group - block * GCONV_WGRAD_TILE_OC)
    # channels x taps per micro-kernel call: TILE_OC x (TILE_SIZE / TILE_OC), or 1 x TILE_SIZE (depthwise)
    cdef int tile_oc = 1 if p.out_channels_per_group == 1 else GCONV_WGRAD_TILE_OC
    cdef int tile_taps = GCONV_WGRAD_TILE_SIZE // tile_oc
    cdef Py_ssize_t kernel_taps = KH * KW, taps = in_channels_per_group * kernel_taps
    cdef Py_ssize_t n, ic, tap_first, n_taps, tap, r, c, o, k, ih, lo, hi
    cdef double part[GCONV_WGRAD_TILE_SIZE]
    cdef const floating* gy_rows[GCONV_WGRAD_TILE_OC]
    cdef const floating* x_rows[GCONV_WGRAD_TILE_SIZE]
    cdef const floating* src
    cdef floating* dst
    for o in range(GCONV_WGRAD_TILE_OC * taps):
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
        for ic in range(in_channels_per_group):
            src = x + (n * C_in + g * in_channels_per_group + ic) * H * W
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
                for k in range(GCONV_WGRAD_TILE_SIZE):
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


cdef void _weight_grad_loops_item(const WgradPlan* p, const floating* x, const floating* grad_output,
                                  floating* grad_weight, Py_ssize_t oc) noexcept nogil:
    """Weight gradient of output channel oc for geometry whose zero-framed plane would be huge (dilations of
    millions): zero padding is implicit, only the rows and columns a tap reads inside the input are visited
    (as the loops family does for the forward)."""
    cdef Py_ssize_t icpg = p.in_channels_per_group, W = p.W, W_out = p.W_out
    cdef Py_ssize_t g = oc // p.out_channels_per_group
    cdef Py_ssize_t ic, kh, kw, n, oh, ih, ow, ow_lo, ow_hi, col_offset
    cdef double total
    cdef const floating* gy_row
    cdef const floating* x_row
    for ic in range(icpg):
        for kh in range(p.KH):
            for kw in range(p.KW):
                total = 0
                # output column ow reads input column ow * stride_w + col_offset
                col_offset = kw * p.dilation_w - p.pad_left
                ow_lo = max(0, _ceil_div_signed(-col_offset, p.stride_w))
                ow_hi = min(W_out, _floor_div(W - 1 - col_offset, p.stride_w) + 1)
                for n in range(p.N):
                    for oh in range(p.H_out):
                        ih = oh * p.stride_h - p.pad_top + kh * p.dilation_h
                        if ih < 0 or ih >= p.H:
                            continue
                        gy_row = grad_output + ((n * p.C_out + oc) * p.H_out + oh) * W_out
                        x_row = x + ((n * p.C_in + g * icpg + ic) * p.H + ih) * W
                        for ow in range(ow_lo, ow_hi):
                            total += <double> gy_row[ow] * x_row[ow * p.stride_w + col_offset]
                grad_weight[((oc * icpg + ic) * p.KH + kh) * p.KW + kw] = <floating> total


def conv2d_weight_grad(
    const floating[:, :, :, ::1] x not None,            # IN  (N, C_in, H, W)
    const floating[:, :, :, ::1] grad_output not None,  # IN  (N, C_out, H_out, W_out)
    floating[:, :, :, ::1] grad_weight not None,        # OUT (C_out, C_in // groups, KH, KW)
    tuple stride, tuple pad_before, tuple dilation,     # (h, w) each; pad_before = (top, left)
    Py_ssize_t groups,
    int n_threads,
):
    """Gradient of the convolution with respect to the weight; writes every element of grad_weight.

    grad_weight[oc, ic, kh, kw] = sum over n, oh, ow of grad_output[n, oc, oh, ow] * x[n, g * C_in / groups + ic,
    oh * stride_h - pad_top + kh * dilation_h, ow * stride_w - pad_left + kw * dilation_w] (zero outside).
    Work is split by blocks of TILE_OC output channels, so no two threads write the same element and nothing
    is reduced across threads; each element is summed in one fixed order whatever the thread count.
    """
    cdef WgradPlan p
    p.N, p.C_in, p.H, p.W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p.C_out, p.in_channels_per_group = grad_weight.shape[0], grad_weight.shape[1]
    p.KH, p.KW = grad_weight.shape[2], grad_weight.shape[3]
    p.H_out, p.W_out = grad_output.shape[2], grad_output.shape[3]
    p.groups = groups
    p.stride_h, p.stride_w = stride
    p.pad_top, p.pad_left = pad_before
    p.dilation_h, p.dilation_w = dilation
    if (groups <= 0 or grad_output.shape[0] != p.N or grad_output.shape[1] != p.C_out
            or p.C_in != groups * p.in_channels_per_group or p.C_out % groups != 0):
        raise ValueError("conv2d_weight_grad: inconsistent shapes")
    if min(p.stride_h, p.stride_w, p.dilation_h, p.dilation_w) <= 0 or min(p.pad_top, p.pad_left) < 0:
        raise ValueError("conv2d_weight_grad: stride and dilation must be positive, padding non-negative")
    if grad_weight.size == 0:
        return
    if p.N == 0 or p.H_out == 0 or p.W_out == 0 or x.size == 0:
        np.asarray(grad_weight)[...] = 0
        return
    p.out_channels_per_group = p.C_out // groups
    p.n_oc_blocks = _ceil_div(p.out_channels_per_group, GCONV_WGRAD_TILE_OC)
    # the zero-framed plane every tap of every output reads inside; with stride 1, rows are read in whole
    # vectors, so the plane is wider by the padding of a grad_output row to whole vectors
    cdef Py_ssize_t lanes = GCONV_VECTOR_BYTES // sizeof(floating)
    p.padded_w_out = _ceil_div(p.W_out, lanes) * lanes if p.stride_w == 1 else p.W_out
    p.plane_h = (p.H_out - 1) * p.stride_h + (p.KH - 1) * p.dilation_h + 1
    p.plane_w = (p.padded_w_out - 1) * p.stride_w + (p.KW - 1) * p.dilation_w + 1
    cdef Py_ssize_t n_items = groups * p.n_oc_blocks
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
    cdef const floating* x_ptr = &x[0, 0, 0, 0]
    cdef const floating* gy_ptr = &grad_output[0, 0, 0, 0]
    cdef floating* gw_ptr = &grad_weight[0, 0, 0, 0]
    cdef Py_ssize_t plane_size = _size_product(p.plane_h, p.plane_w)
    cdef Py_ssize_t gy_rows_size = GCONV_WGRAD_TILE_OC * p.H_out * p.padded_w_out
    cdef Py_ssize_t acc_size = GCONV_WGRAD_TILE_OC * p.in_channels_per_group * p.KH * p.KW
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef floating* plane
    cdef floating* gy_rows_buf
    cdef double* acc
    cdef Py_ssize_t item
    if plane_size * <Py_ssize_t> sizeof(floating) > SLAB_LIMIT:
        # a dilation so large that the framed plane would not fit in scratch: direct loops, per channel
        team = <int> max(1, min(<Py_ssize_t> n_threads, p.C_out))
        with nogil:
            for item in prange(p.C_out, schedule="static", num_threads=team):
                _weight_grad_loops_item(&p, x_ptr, gy_ptr, gw_ptr, item)
        return
    with nogil, parallel(num_threads=team):
        # this thread's scratch
        plane = <floating*> malloc(plane_size * sizeof(floating))
        gy_rows_buf = <floating*> malloc(gy_rows_size * sizeof(floating))
        acc = <double*> malloc(acc_size * sizeof(double))
        if plane == NULL or gy_rows_buf == NULL or acc == NULL:
            alloc_failed[0] = 1
        for item in prange(n_items, schedule="static"):
            if plane != NULL and gy_rows_buf != NULL and acc != NULL:
                _weight_grad_item(&p, x_ptr, gy_ptr, gw_ptr, plane, gy_rows_buf, acc, item)
        free(plane)
        free(gy_rows_buf)
        free(acc)
    if alloc_failed[0]:
        raise MemoryError("conv2d_weight_grad: could not allocate scratch")
