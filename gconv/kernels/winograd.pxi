# The winograd family: 3x3 stride-1 convolutions as Winograd F(2x2, 3x3) (kernels/winograd/transform.h), the 16
# products of each tile run as one grouped call of the gemm family's pointwise tiles.

cdef extern from "kernels/winograd/transform.h" nogil:
    Py_ssize_t GCONV_WINO_SCRATCH(Py_ssize_t tw)
    void gconv_wino_input_float(const float* x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t xs_h, Py_ssize_t xs_w,
                                Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t th, Py_ssize_t tw, float* v,
                                Py_ssize_t v_stride, float* scratch)
    void gconv_wino_input_double(const double* x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t xs_h, Py_ssize_t xs_w,
                                 Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t th, Py_ssize_t tw, double* v,
                                 Py_ssize_t v_stride, double* scratch)
    void gconv_wino_output_float(const float* m, Py_ssize_t m_stride, Py_ssize_t th, Py_ssize_t tw, float bias,
                                 float* y, Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t ys_h, Py_ssize_t ys_w,
                                 float* scratch)
    void gconv_wino_output_double(const double* m, Py_ssize_t m_stride, Py_ssize_t th, Py_ssize_t tw, double bias,
                                  double* y, Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t ys_h, Py_ssize_t ys_w,
                                  double* scratch)
    void gconv_wino_weight_float(const float* g, Py_ssize_t n_k, float* u, Py_ssize_t u_stride)
    void gconv_wino_weight_double(const double* g, Py_ssize_t n_k, double* u, Py_ssize_t u_stride)


# Bytes of transformed inputs and products (16 planes of a plane's tiles per channel, in and out) one
# conv2d_winograd call holds at a time: the batch runs in chunks of images this large or one image
WINOGRAD_CHUNK_BYTES = 8 * 1024 * 1024
cdef enum:
    # values per tile's transforms (F(2x2, 3x3): a 4x4 tile of inputs, so 16 products per channel pair)
    WINOGRAD_TILE_VALUES = 16


cdef inline void _winograd_input(const Plan* plan, const floating* x, floating* v, Py_ssize_t v_stride,
                                 Py_ssize_t th, Py_ssize_t tw, floating* scratch) noexcept nogil:
    # one input plane's 16 transformed planes
    if floating is float:
        gconv_wino_input_float(x, plan.H, plan.W, plan.x_stride_h, plan.x_stride_w, plan.pad_top, plan.pad_left,
                               th, tw, v, v_stride, scratch)
    else:
        gconv_wino_input_double(x, plan.H, plan.W, plan.x_stride_h, plan.x_stride_w, plan.pad_top, plan.pad_left,
                                th, tw, v, v_stride, scratch)


cdef inline void _winograd_output(const Plan* plan, const floating* m, Py_ssize_t m_stride, Py_ssize_t th,
                                  Py_ssize_t tw, floating bias, floating* y, floating* scratch) noexcept nogil:
    # one output plane from its 16 product planes
    if floating is float:
        gconv_wino_output_float(m, m_stride, th, tw, bias, y, plan.H_out, plan.W_out, plan.out_stride_h,
                                plan.out_stride_w, scratch)
    else:
        gconv_wino_output_double(m, m_stride, th, tw, bias, y, plan.H_out, plan.W_out, plan.out_stride_h,
                                 plan.out_stride_w, scratch)


def winograd_pack_weights(const floating[:, :, :, ::1] weight not None, int n_threads=1):
    """The transformed weights U = G g G^T of a 3x3 weight (C_out, C_in, 3, 3), C-contiguous, as the pointwise
    tiles' weight (16 * C_out, C_in, 1, 1): row xi * C_out + o holds product xi of output channel o."""
    if weight.shape[2] != 3 or weight.shape[3] != 3:
        raise ValueError("winograd_pack_weights: the weight must be 3x3")
    cdef Py_ssize_t C_out = weight.shape[0], C_in = weight.shape[1], o
    packed = np.empty((WINOGRAD_TILE_VALUES * C_out, C_in, 1, 1), dtype=np.float32 if floating is float else np.float64)
    if packed.size == 0:
        return packed
    cdef floating[:, :, :, ::1] packed_view = packed
    cdef floating* u = &packed_view[0, 0, 0, 0]
    cdef const floating* g = &weight[0, 0, 0, 0]
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, C_out))
    for o in prange(C_out, nogil=True, num_threads=team, schedule="static"):
        if floating is float:
            gconv_wino_weight_float(g + o * C_in * 9, C_in, u + o * C_in, C_out * C_in)
        else:
            gconv_wino_weight_double(g + o * C_in * 9, C_in, u + o * C_in, C_out * C_in)
    return packed


def conv2d_winograd(
    x,                                             # IN  (N, C_in, H, W), any strides
    weight,                                        # IN  (C_out, C_in, 3, 3), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, H_out, W_out), any strides
    tuple pad_before, int n_threads,               # pad_before = (top, left)
    packed_weight=None,                            # winograd_pack_weights(weight): skip the transform
    bint wide=False,                               # the pointwise tiles' wide variant for the products
):
    """3x3 convolution at stride 1, dilation 1, one group, with implicit zero padding, as Winograd F(2x2, 3x3).

    Per chunk of images: the inputs' 4x4 tiles transformed (V = B^T d B, 16 planes of tiles per channel), the
    16 products M[xi] = U[xi] V[xi] as one call of conv2d_pointwise in 16 groups (each output reduced over the
    input channels in one chain, so nothing depends on the threads), then each 2x2 output tile
    Y = A^T M A + bias. Same contract as conv2d_direct otherwise (gconv._select checked the rest).
    """
    cdef Operands ops
    cdef Plan plan
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, packed_weight, 4)
        _fill_plan_from(&plan, &ops, (1, 1), pad_before, (1, 1), 1)
        if plan.KH != 3 or plan.KW != 3:
            raise ValueError("conv2d_winograd: the weight must be 3x3")
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if ops.has_packed and (ops.packed.ndim != 4 or ops.packed.shape[0] != WINOGRAD_TILE_VALUES * plan.C_out
                               or ops.packed.shape[1] != plan.C_in or ops.packed.shape[2] != 1
                               or ops.packed.shape[3] != 1):
            raise ValueError("conv2d_winograd: packed_weight is not this weight's winograd_pack_weights")
        u = packed_weight if ops.has_packed else winograd_pack_weights(weight, n_threads)
        if ops.itemsize == 4:
            _run_winograd(&plan, &ops, <float*> ops.out.buf, u, n_threads, wide)
        else:
            _run_winograd(&plan, &ops, <double*> ops.out.buf, u, n_threads, wide)
    finally:
        _release_operands(&ops)


cdef int _run_winograd(const Plan* plan_ptr, const Operands* ops, floating* out_ptr, u, int n_threads,
                       bint wide) except -1:
    """conv2d_winograd by chunks of images, u its transformed weights (out_ptr: ops.out's data, whose type
    picks the dtype)."""
    cdef Plan plan = plan_ptr[0]
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t C_in = plan.C_in, C_out = plan.C_out
    cdef Py_ssize_t th = _ceil_div(plan.H_out, 2), tw = _ceil_div(plan.W_out, 2)
    cdef Py_ssize_t tiles = th * tw
    cdef Py_ssize_t image_bytes = _size_product(_size_product(WINOGRAD_TILE_VALUES * (C_in + C_out), tiles),
                                                sizeof(floating))
    cdef Py_ssize_t chunk_bytes = WINOGRAD_CHUNK_BYTES
    cdef Py_ssize_t chunk = max(1, min(plan.N, chunk_bytes // image_bytes))
    buffer = _scratch_array(_size_product(chunk, WINOGRAD_TILE_VALUES * (C_in + C_out) * tiles), dtype)
    v = buffer[:chunk * WINOGRAD_TILE_VALUES * C_in * tiles].reshape(chunk, WINOGRAD_TILE_VALUES * C_in, th, tw)
    m = buffer[chunk * WINOGRAD_TILE_VALUES * C_in * tiles:].reshape(chunk, WINOGRAD_TILE_VALUES * C_out, th, tw)
    no_bias = np.empty(0, dtype=dtype)
    cdef floating[:, :, :, ::1] v_view = v
    cdef floating[:, :, :, ::1] m_view = m
    cdef floating* v_ptr = &v_view[0, 0, 0, 0]
    cdef floating* m_ptr = &m_view[0, 0, 0, 0]
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef const floating* b_ptr = <const floating*> _bias_data(ops)
    cdef Py_ssize_t scratch_elements = GCONV_WINO_SCRATCH(tw)
    cdef Py_ssize_t first, n_images, item, n, c
    cdef int team
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef floating* scratch
    for first in range(0, plan.N, chunk):
        n_images = min(chunk, plan.N - first)
        team = <int> max(1, min(<Py_ssize_t> n_threads, n_images * C_in))
        with nogil, parallel(num_threads=team):
            scratch = <floating*> malloc(scratch_elements * sizeof(floating))
            if scratch == NULL:
                alloc_failed[0] = 1
            for item in prange(n_images * C_in, schedule="static"):
                if scratch != NULL:
                    n = item // C_in
                    c = item - n * C_in
                    _winograd_input(&plan, x_ptr + (first + n) * plan.x_stride_n + c * plan.x_stride_c,
                                    v_ptr + (n * WINOGRAD_TILE_VALUES * C_in + c) * tiles, C_in * tiles, th, tw,
                                    scratch)
            free(scratch)
        if alloc_failed[0]:
            raise MemoryError(f"conv2d: could not allocate {scratch_elements * sizeof(floating)} bytes of scratch")
        conv2d_pointwise(v[:n_images], u, no_bias, m[:n_images], WINOGRAD_TILE_VALUES, n_threads, None, wide)
        team = <int> max(1, min(<Py_ssize_t> n_threads, n_images * C_out))
        with nogil, parallel(num_threads=team):
            scratch = <floating*> malloc(scratch_elements * sizeof(floating))
            if scratch == NULL:
                alloc_failed[0] = 1
            for item in prange(n_images * C_out, schedule="static"):
                if scratch != NULL:
                    n = item // C_out
                    c = item - n * C_out
                    _winograd_output(&plan, m_ptr + (n * WINOGRAD_TILE_VALUES * C_out + c) * tiles, C_out * tiles,
                                     th, tw, b_ptr[c] if b_ptr != NULL else 0,
                                     out_ptr + (first + n) * plan.out_stride_n + c * plan.out_stride_c, scratch)
            free(scratch)
        if alloc_failed[0]:
            raise MemoryError(f"conv2d: could not allocate {scratch_elements * sizeof(floating)} bytes of scratch")
    return 0
