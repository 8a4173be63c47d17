# The gemm family's driver: channel-vectorised register tiles (kernels/gemm/tile.h) over per-tile input
# panels, the batch folded into the pixels, threads split over output-channel blocks and pixel blocks.


cdef extern from "kernels/gemm/tile.h" nogil:
    # the tile shape, defined in the header only
    int GCONV_GEMM_MR_F32
    int GCONV_GEMM_NR_F32
    int GCONV_GEMM_MR_F64
    int GCONV_GEMM_NR_F64
    int GCONV_GEMM_RESUME
    int GCONV_GEMM_SUSPEND
    void gconv_gemm_f32(Py_ssize_t k_size, const float* a, Py_ssize_t a_k_stride, const float* w,
                        const float* bias, float* out, const Py_ssize_t* out_offset,
                        Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n, float* partial, int phase)
    void gconv_gemm_f64(Py_ssize_t k_size, const double* a, Py_ssize_t a_k_stride, const double* w,
                        const double* bias, double* out, const Py_ssize_t* out_offset,
                        Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n, double* partial,
                        int phase)
    int GCONV_DOT_MR
    int GCONV_DOT_OB
    int GCONV_DOT_OB_ONE_PIXEL
    void gconv_dot_f32_tile(Py_ssize_t k_size, const float* a, Py_ssize_t a_m_stride, const float* w,
                            const float* bias, float* out, const Py_ssize_t* out_offset,
                            Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n)
    void gconv_dot_f32_pixel(Py_ssize_t k_size, const float* a, Py_ssize_t a_m_stride, const float* w,
                             const float* bias, float* out, const Py_ssize_t* out_offset,
                             Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n)
    void gconv_dot_f64_tile(Py_ssize_t k_size, const double* a, Py_ssize_t a_m_stride, const double* w,
                            const double* bias, double* out, const Py_ssize_t* out_offset,
                            Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n)
    void gconv_dot_f64_pixel(Py_ssize_t k_size, const double* a, Py_ssize_t a_m_stride, const double* w,
                             const double* bias, double* out, const Py_ssize_t* out_offset,
                             Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n)
    int GCONV_PW_MR
    int GCONV_PW_VECTORS
    int GCONV_PW_NR_F32
    int GCONV_PW_NR_F64
    int GCONV_PW_WIDE_MR
    int GCONV_PW_WIDE_VECTORS
    int GCONV_PW_WIDE_TAIL
    int GCONV_PW_COPY_MIN_INPUT_MIB
    void gconv_pw_f32(Py_ssize_t k_size, const float* x, Py_ssize_t x_k_stride, float* x_copy, const float* x_next,
                      const float* w, int packed, const float* bias, float* out, Py_ssize_t out_channel_stride,
                      Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p, int n_v,
                      const float* x_tail)
    void gconv_pw_f64(Py_ssize_t k_size, const double* x, Py_ssize_t x_k_stride, double* x_copy,
                      const double* x_next, const double* w, int packed, const double* bias, double* out,
                      Py_ssize_t out_channel_stride, Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p, int n_v,
                      const double* x_tail)
    void gconv_pw_wide_f32(Py_ssize_t k_size, const float* x, Py_ssize_t x_k_stride, float* x_copy, const float* x_next,
                           const float* w, int packed, const float* bias, float* out, Py_ssize_t out_channel_stride,
                           Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p, int n_v,
                           const float* x_tail)
    void gconv_pw_wide_f64(Py_ssize_t k_size, const double* x, Py_ssize_t x_k_stride, double* x_copy,
                           const double* x_next, const double* w, int packed, const double* bias, double* out,
                           Py_ssize_t out_channel_stride, Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p, int n_v,
                           const double* x_tail)
    void gconv_pw_pack_float(const float* w, Py_ssize_t ocpg, Py_ssize_t k_size, Py_ssize_t tile, Py_ssize_t mr,
                             float* panel)
    void gconv_pw_pack_double(const double* w, Py_ssize_t ocpg, Py_ssize_t k_size, Py_ssize_t tile, Py_ssize_t mr,
                              double* panel)


# The tile shapes for gconv._select: (pixels, output channels) per dtype; dot tiles (unpacked weights) for
# calls with at least GEMM_DOT_TILE[0] pixels, one-pixel dot tiles below that.
GEMM_TILE = {"float32": (GCONV_GEMM_MR_F32, GCONV_GEMM_NR_F32), "float64": (GCONV_GEMM_MR_F64, GCONV_GEMM_NR_F64)}
GEMM_DOT_TILE = (GCONV_DOT_MR, GCONV_DOT_OB)
GEMM_DOT_PIXEL_TILE = (1, GCONV_DOT_OB_ONE_PIXEL)
# pointwise tiles (1x1 on pixel-contiguous maps): (output channels, pixels) per dtype
GEMM_POINTWISE_TILE = {"float32": (GCONV_PW_MR, GCONV_PW_NR_F32), "float64": (GCONV_PW_MR, GCONV_PW_NR_F64)}
# the wide pointwise tile (output channels, pixels) per dtype; the regular one where a level has no other
GEMM_POINTWISE_WIDE_TILE = {
    "float32": (GCONV_PW_WIDE_MR, GCONV_PW_WIDE_VECTORS * GCONV_PW_NR_F32 // GCONV_PW_VECTORS),
    "float64": (GCONV_PW_WIDE_MR, GCONV_PW_WIDE_VECTORS * GCONV_PW_NR_F64 // GCONV_PW_VECTORS),
}
# float32 maps of this many pixels (whole vectors and one pixel more: 7x7 is 49) that the wide tile takes as
# its vectors plus that pixel (GCONV_PW_WIDE_TAIL), none where it cannot
GEMM_POINTWISE_TAIL_PIXELS = tuple(
    vectors * GCONV_PW_NR_F32 // GCONV_PW_VECTORS + 1 for vectors in range(1, GCONV_PW_WIDE_VECTORS + 1)
) if GCONV_PW_WIDE_TAIL else ()


cdef enum:
    # Work items wanted per thread before the work is cut finer, so static chunks stay balanced.
    GEMM_ITEMS_PER_THREAD = 4
    # Bytes of input panels one work item packs and keeps: they stay in L2 while each weight panel of the
    # item sweeps over them. Every tile of an item shares one pass over the weights, so with deep
    # reductions (3x3 512->512: 147 KiB per tile) a small budget re-reads megabytes of weights per tile.
    GEMM_PANEL_BUDGET = 1024 * 1024
    # Taps per block of k for panel tiles (BLIS's kc): a block's weights, 256 x NR (32 KiB with AVX-512),
    # stay in L1 while the item's tiles sweep over them, the tiles' input panels in L2. Measured with
    # pre-packed weights against 512 taps (64 KiB, past a 48 KiB L1): 1x1 1024->256 on 14x14 1.7x faster,
    # 3x3 512->512 on 7x7 at batch 8 from 1.4x torch's time to 1.04x.
    GEMM_MAX_KC = 256


include "pack_gemm.pxi"


cdef inline void _gemm_tile(Py_ssize_t k_size, const floating* a, Py_ssize_t a_k_stride, const floating* w,
                            const floating* bias, floating* out, const Py_ssize_t* out_offset,
                            Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n, floating* partial,
                            int phase) noexcept nogil:
    # the C micro-kernel for this dtype
    if floating is float:
        gconv_gemm_f32(k_size, a, a_k_stride, w, bias, out, out_offset, out_channel_stride, n_m, n_n, partial, phase)
    else:
        gconv_gemm_f64(k_size, a, a_k_stride, w, bias, out, out_offset, out_channel_stride, n_m, n_n, partial, phase)


cdef inline void _dot_tile(bint one_pixel, Py_ssize_t k_size, const floating* a, Py_ssize_t a_m_stride,
                           const floating* w, const floating* bias, floating* out, const Py_ssize_t* out_offset,
                           Py_ssize_t out_channel_stride, Py_ssize_t n_m, Py_ssize_t n_n) noexcept nogil:
    if floating is float:
        if one_pixel:
            gconv_dot_f32_pixel(k_size, a, a_m_stride, w, bias, out, out_offset, out_channel_stride, n_m, n_n)
        else:
            gconv_dot_f32_tile(k_size, a, a_m_stride, w, bias, out, out_offset, out_channel_stride, n_m, n_n)
    else:
        if one_pixel:
            gconv_dot_f64_pixel(k_size, a, a_m_stride, w, bias, out, out_offset, out_channel_stride, n_m, n_n)
        else:
            gconv_dot_f64_tile(k_size, a, a_m_stride, w, bias, out, out_offset, out_channel_stride, n_m, n_n)


cdef void _dot_item(const Plan* plan, const GemmPlan* gp, const floating* x, const floating* weight,
                    const floating* bias, floating* out, floating* rows, Py_ssize_t* offsets,
                    Py_ssize_t item) noexcept nogil:
    """One work item of dot tiles: as _gemm_item, reading the weights as they are."""
    cdef Py_ssize_t chunk = item % gp.n_chunks
    cdef Py_ssize_t m_block = (item // gp.n_chunks) % gp.n_m_blocks
    cdef Py_ssize_t g = item // (gp.n_chunks * gp.n_m_blocks)
    cdef Py_ssize_t tile_first = m_block * gp.tiles_per_block
    cdef Py_ssize_t n_tiles = min(gp.tiles_per_block, gp.n_m_tiles - tile_first)
    cdef Py_ssize_t block_first = chunk * gp.blocks_per_chunk
    cdef Py_ssize_t block_end = min(block_first + gp.blocks_per_chunk, gp.n_n_blocks)
    cdef Py_ssize_t rows_size = gp.K * gp.mr, ocpg = plan.out_channels_per_group
    cdef Py_ssize_t t, block, oc_first, m0
    cdef bint one_pixel = gp.mr == 1
    for t in range(n_tiles):
        _pack_dot_rows(plan, gp, x, g, (tile_first + t) * gp.mr, rows + t * rows_size, offsets + t * gp.mr)
    for block in range(block_first, block_end):
        oc_first = g * ocpg + block * gp.nr
        for t in range(n_tiles):
            m0 = (tile_first + t) * gp.mr
            _dot_tile(one_pixel, gp.K, rows + t * rows_size, gp.K, weight + oc_first * gp.K,
                      bias + oc_first if bias != NULL else NULL, out + oc_first * plan.out_stride_c,
                      offsets + t * gp.mr, plan.out_stride_c, min(gp.mr, gp.M - m0),
                      min(gp.nr, ocpg - block * gp.nr))


cdef void _gemm_item(const Plan* plan, const GemmPlan* gp, const floating* x, const floating* packed_weight,
                     const floating* bias, floating* out, floating* panels, Py_ssize_t* offsets,
                     Py_ssize_t* pixel, floating* partials, Py_ssize_t* packed_tiles, Py_ssize_t item) noexcept nogil:
    """One work item: a block of pixel tiles x a chunk of output-channel blocks of group g.

    panels, offsets, pixel, partials: the thread's scratch; packed_tiles[0]: which (group, block of tiles)
    panels holds, -1 for none (a thread's static share of items runs the chunks of a block one after the
    other: the block's panels are packed once for all of them, not once per chunk).
    """
    cdef Py_ssize_t chunk = item % gp.n_chunks
    cdef Py_ssize_t m_block = (item // gp.n_chunks) % gp.n_m_blocks
    cdef Py_ssize_t g = item // (gp.n_chunks * gp.n_m_blocks)
    cdef Py_ssize_t tile_first = m_block * gp.tiles_per_block
    cdef Py_ssize_t n_tiles = min(gp.tiles_per_block, gp.n_m_tiles - tile_first)
    cdef Py_ssize_t block_first = chunk * gp.blocks_per_chunk
    cdef Py_ssize_t block_end = min(block_first + gp.blocks_per_chunk, gp.n_n_blocks)
    cdef Py_ssize_t panel_size = gp.K * gp.mr, ocpg = plan.out_channels_per_group, tile_size = gp.mr * gp.nr
    cdef Py_ssize_t t, block, oc_first, m0, k_block, k_first
    cdef int phase
    if packed_tiles[0] != item // gp.n_chunks:
        for t in range(n_tiles):
            _pack_gemm_tile(plan, gp, x, g, (tile_first + t) * gp.mr, panels + t * panel_size,
                            offsets + t * gp.mr, pixel)
        packed_tiles[0] = item // gp.n_chunks
    # blocks of k outermost, always in the same order: the k_block x NR weights of a block and the
    # k_block x MR inputs of the item's tiles stay in L2 meanwhile; each tile's accumulators wait in
    # partials between blocks and only the last block stores the output
    for k_block in range(gp.n_k_blocks):
        k_first = k_block * gp.kc
        phase = (GCONV_GEMM_RESUME if k_block > 0 else 0) | (GCONV_GEMM_SUSPEND if k_block < gp.n_k_blocks - 1 else 0)
        for block in range(block_first, block_end):
            oc_first = g * ocpg + block * gp.nr
            for t in range(n_tiles):
                m0 = (tile_first + t) * gp.mr
                _gemm_tile(min(gp.kc, gp.K - k_first), panels + t * panel_size + k_first * gp.mr, gp.mr,
                           packed_weight + ((g * gp.n_n_blocks + block) * gp.K + k_first) * gp.nr,
                           bias + oc_first if bias != NULL else NULL, out + oc_first * plan.out_stride_c,
                           offsets + t * gp.mr, plan.out_stride_c, min(gp.mr, gp.M - m0),
                           min(gp.nr, ocpg - block * gp.nr),
                           partials + ((block - block_first) * gp.tiles_per_block + t) * tile_size, phase)


cdef inline void _even_tile_blocks(GemmPlan* gp) noexcept nogil:
    # as many blocks of tiles as tiles_per_block asks, as equal as the tiles allow: a 3x3 256->256 on
    # 14x14 (33 tiles) in blocks of 17 and 16, not 18 and 15 (2 threads wait for the larger block)
    gp.n_m_blocks = _ceil_div(gp.n_m_tiles, gp.tiles_per_block)
    gp.tiles_per_block = _ceil_div(gp.n_m_tiles, gp.n_m_blocks)


cdef int _plan_gemm(const Plan* plan, GemmPlan* gp, Py_ssize_t itemsize, int n_threads, bint dot) except -1:
    """The GEMM view of the call and its work items (tile counts, blocks, chunks) for n_threads threads."""
    gp.HW = plan.H_out * plan.W_out
    gp.M = plan.N * gp.HW
    gp.dot = dot
    if dot:
        # fewer pixels than a dot tile (a 1x1 map at batch 1): one-pixel tiles, never a half-empty one
        if gp.M >= GCONV_DOT_MR:
            gp.mr, gp.nr = GCONV_DOT_MR, GCONV_DOT_OB
        else:
            gp.mr, gp.nr = 1, GCONV_DOT_OB_ONE_PIXEL
    elif itemsize == 4:
        gp.mr, gp.nr = GCONV_GEMM_MR_F32, GCONV_GEMM_NR_F32
    else:
        gp.mr, gp.nr = GCONV_GEMM_MR_F64, GCONV_GEMM_NR_F64
    gp.KHKW = plan.KH * plan.KW
    gp.K = plan.in_channels_per_group * gp.KHKW
    if gp.K <= 0:  # conv2d_gemm never gets here with an empty weight (_fill_plan refuses it)
        raise ValueError("gemm: the weight has no taps (C_in // groups, KH or KW is 0)")
    # panels: equal blocks of at most GEMM_MAX_KC taps (set by the shape alone, never by the threads)
    gp.n_k_blocks = 1 if dot else _ceil_div(gp.K, GEMM_MAX_KC)
    gp.kc = _ceil_div(gp.K, gp.n_k_blocks)
    gp.n_m_tiles = _ceil_div(gp.M, gp.mr)
    gp.n_n_blocks = _ceil_div(plan.out_channels_per_group, gp.nr)
    gp.tiles_per_block = max(1, min(gp.n_m_tiles, GEMM_PANEL_BUDGET // (gp.K * gp.mr * itemsize)))
    _even_tile_blocks(gp)
    gp.n_chunks = 1
    cdef Py_ssize_t wanted = GEMM_ITEMS_PER_THREAD * n_threads if n_threads > 1 else 1
    # Cut the larger operand: where the weights outweigh the pixels (small maps), threads share out the
    # output channels and each reads only its part of the weights; elsewhere they share out the pixels.
    cdef bint channels_first = plan.out_channels_per_group > gp.M
    while plan.groups * gp.n_m_blocks * gp.n_chunks < wanted:
        if (channels_first or gp.tiles_per_block == 1) and gp.n_chunks < gp.n_n_blocks:
            gp.n_chunks = min(gp.n_n_blocks, 2 * gp.n_chunks)
        elif gp.tiles_per_block > 1:
            gp.tiles_per_block = _ceil_div(gp.tiles_per_block, 2)
            _even_tile_blocks(gp)
        else:
            break
    # and a whole number of items per thread where a few more pixel blocks make it (batch 8, 2 threads:
    # 3x3 256->256 on 14x14 in 16 blocks, not 15: one thread ran 8 blocks while the other ran 7)
    cdef Py_ssize_t first_blocks = gp.n_m_blocks, last_blocks
    while n_threads > 1 and (plan.groups * gp.n_m_blocks * gp.n_chunks) % n_threads and gp.tiles_per_block > 1:
        last_blocks = gp.n_m_blocks
        gp.tiles_per_block = _ceil_div(gp.n_m_tiles, gp.n_m_blocks + 1)
        _even_tile_blocks(gp)
        if gp.n_m_blocks <= last_blocks or gp.n_m_blocks - first_blocks >= n_threads:
            break  # the tiles allow no such split, or only with many more, smaller blocks
    gp.blocks_per_chunk = _ceil_div(gp.n_n_blocks, gp.n_chunks)
    gp.n_chunks = _ceil_div(gp.n_n_blocks, gp.blocks_per_chunk)
    return 0


def gemm_plan(x_shape, weight_shape, out_shape, Py_ssize_t groups, int itemsize, int n_threads,
              bint pack_weights=True):
    """The gemm family's work split for a call (a dict), for gconv._select's reasons and for tests."""
    cdef Plan plan
    cdef GemmPlan gp
    plan.N, plan.C_in = x_shape[0], x_shape[1]
    plan.C_out, plan.in_channels_per_group, plan.KH, plan.KW = weight_shape
    plan.H_out, plan.W_out = out_shape[2], out_shape[3]
    plan.groups = groups
    plan.out_channels_per_group = plan.C_out // groups
    _plan_gemm(&plan, &gp, itemsize, n_threads, not pack_weights)
    return dict(mr=gp.mr, nr=gp.nr, M=gp.M, K=gp.K, kc=gp.kc, n_k_blocks=gp.n_k_blocks,
                tiles_per_block=gp.tiles_per_block, n_m_blocks=gp.n_m_blocks,
                blocks_per_chunk=gp.blocks_per_chunk, n_chunks=gp.n_chunks)


def gemm_pack_weights(const floating[:, :, :, ::1] weight not None, Py_ssize_t groups, int n_threads=1):
    """The [K][NR] weight panels conv2d_gemm packs per call, for a caller that keeps them (a module's cache).

    weight (C_out, C_in // groups, KH, KW), C-contiguous. The result is 1-D and fits this instruction-set
    level's tile (NR) only: pass it back as conv2d_gemm(..., packed_weight=) to the same kernel module.
    """
    cdef Plan plan
    cdef GemmPlan gp
    plan.N, plan.H_out, plan.W_out = 1, 1, 1
    plan.C_out, plan.in_channels_per_group = weight.shape[0], weight.shape[1]
    plan.KH, plan.KW = weight.shape[2], weight.shape[3]
    if groups <= 0 or plan.C_out % groups != 0:
        raise ValueError("gemm_pack_weights: the output channels must be a multiple of groups")
    plan.groups = groups
    plan.out_channels_per_group = plan.C_out // groups
    _plan_gemm(&plan, &gp, sizeof(floating), 1, False)
    cdef Py_ssize_t n_panels = plan.groups * gp.n_n_blocks, panel
    packed = _aligned_empty(n_panels * gp.K * gp.nr, np.float32 if floating is float else np.float64)
    if packed.size == 0:
        return packed
    cdef floating[::1] packed_view = packed
    cdef floating* w_packed = &packed_view[0]
    cdef const floating* w_ptr = &weight[0, 0, 0, 0]
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_panels))
    for panel in prange(n_panels, nogil=True, num_threads=team, schedule="static"):
        _pack_gemm_weight(&plan, &gp, w_ptr, w_packed, panel)
    return packed


def conv2d_gemm(
    x,                                             # IN  (N, C_in, H, W), any strides (NCHW, NHWC, views)
    weight,                                        # IN  (C_out, C_in // groups, KH, KW), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, H_out, W_out), any strides
    tuple stride, tuple pad_before, tuple dilation,  # (h, w) each; pad_before = (top, left)
    Py_ssize_t groups,
    int n_threads,
    bint pack_weights=True,                        # False: dot tiles on the weights as they are
    packed_weight=None,                            # gemm_pack_weights(weight, groups): skip the packing
):
    """Grouped 2-D cross-correlation with implicit zero padding, as a channel-vectorised implicit GEMM.

    Same contract as conv2d_direct (gconv._select checked shapes, dtype and overlap). Per group, the
    N * H_out * W_out output pixels are the GEMM's rows, the output channels its columns and the taps
    (input channel, kh, kw) its reduction: each register tile reduces over all taps in one call, so the
    results do not depend on how the work is shared among threads. pack_weights=False runs dot tiles that
    read the weights as they are: no per-call packing, for calls with few pixels. packed_weight: the
    panels gemm_pack_weights made from this weight with this kernel module (the caller keeps them fresh).
    """
    cdef Operands ops
    cdef Plan plan
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, packed_weight if pack_weights else None, 4)
        _fill_plan_from(&plan, &ops, stride, pad_before, dilation, groups)
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if ops.itemsize == 4:
            _run_gemm(&plan, &ops, <float*> ops.out.buf, n_threads, pack_weights)
        else:
            _run_gemm(&plan, &ops, <double*> ops.out.buf, n_threads, pack_weights)
    finally:
        _release_operands(&ops)


cdef int _run_gemm(const Plan* plan_ptr, const Operands* ops, floating* out_ptr, int n_threads,
                   bint pack_weights) except -1:
    """conv2d_gemm's work items on n_threads threads, the weights packed first unless ops holds them packed
    (out_ptr: ops.out's data, whose type picks the dtype); per-thread scratch inside."""
    cdef Plan plan = plan_ptr[0]
    cdef GemmPlan gp
    _plan_gemm(&plan, &gp, sizeof(floating), n_threads, not pack_weights)
    cdef Py_ssize_t n_items = plan.groups * gp.n_m_blocks * gp.n_chunks
    cdef Py_ssize_t n_panels = plan.groups * gp.n_n_blocks
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
    cdef int pack_team = <int> max(1, min(<Py_ssize_t> n_threads, n_panels))
    cdef Py_ssize_t packed_elements = n_panels * gp.K * gp.nr
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef const floating* w_ptr = <const floating*> ops.weight.buf
    cdef const floating* b_ptr = <const floating*> _bias_data(ops)
    cdef floating* w_packed = NULL  # read only once packed: the tiles never write through it
    cdef bint pack_now = pack_weights and not ops.has_packed
    cdef char* packed_memory = NULL
    if pack_weights and ops.has_packed:
        if _packed_size(ops) != packed_elements:
            raise ValueError(f"conv2d_gemm: packed_weight has {_packed_size(ops)} elements, this weight's "
                             f"panels {packed_elements} (packed for another weight or kernel module?)")
        w_packed = <floating*> ops.packed.buf
    elif pack_now:
        # on a cache line boundary: the tiles load each panel row as whole vectors
        packed_memory = <char*> malloc(packed_elements * sizeof(floating) + CACHE_LINE)
        if packed_memory == NULL:
            raise MemoryError(f"conv2d: could not allocate {packed_elements * sizeof(floating)} bytes of panels")
        w_packed = <floating*> _cache_line(packed_memory)
    cdef Py_ssize_t panel_elements = gp.tiles_per_block * gp.K * gp.mr
    # offsets: the tiles' output offsets, _pack_gemm_tile's scratch and which tiles the panels hold
    cdef Py_ssize_t offset_elements = (gp.tiles_per_block + 3 + GEMM_PACK_TAPS) * gp.mr + GEMM_PACK_TAPS + 1
    # the accumulators of each tile and channel block of an item between blocks of k
    cdef Py_ssize_t partial_elements = (
        gp.tiles_per_block * gp.blocks_per_chunk * gp.mr * gp.nr if gp.n_k_blocks > 1 and not gp.dot else 1)
    cdef Py_ssize_t item, panel
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef floating* panels
    cdef char* partials_memory
    cdef floating* partials
    cdef Py_ssize_t* offsets
    try:
        # its own parallel loop: Cython's prange ends without a barrier, and every item reads every panel
        if pack_now:
            for panel in prange(n_panels, nogil=True, num_threads=pack_team, schedule="static"):
                _pack_gemm_weight(&plan, &gp, w_ptr, w_packed, panel)
        with nogil, parallel(num_threads=team):
            # this thread's scratch: the item's input panels, its output offsets and packing scratch, and the
            # accumulators its tiles keep between blocks of k
            panels = <floating*> malloc(panel_elements * sizeof(floating))
            offsets = <Py_ssize_t*> malloc(offset_elements * sizeof(Py_ssize_t))
            # the accumulators are spilled and reloaded as whole vectors: on a cache line boundary
            partials_memory = <char*> malloc(partial_elements * sizeof(floating) + CACHE_LINE)
            partials = <floating*> _cache_line(partials_memory)
            if panels == NULL or offsets == NULL or partials_memory == NULL:
                alloc_failed[0] = 1
            else:
                offsets[offset_elements - 1] = -1  # no panels packed yet
            for item in prange(n_items, schedule="static"):
                if panels != NULL and offsets != NULL and partials_memory != NULL and gp.dot:
                    _dot_item(&plan, &gp, x_ptr, w_ptr, b_ptr, out_ptr, panels, offsets, item)
                elif panels != NULL and offsets != NULL and partials_memory != NULL:
                    _gemm_item(&plan, &gp, x_ptr, w_packed, b_ptr, out_ptr, panels, offsets,
                               offsets + gp.tiles_per_block * gp.mr, partials, offsets + offset_elements - 1, item)
            free(panels)
            free(offsets)
            free(partials_memory)
        if alloc_failed[0]:
            raise MemoryError(f"conv2d: could not allocate {panel_elements * sizeof(floating)} bytes of scratch")
    finally:
        free(packed_memory)
    return 0


cdef struct PointwisePlan:
    # per image and group: K = C_in / groups rows of HW pixels, cut into strips of nr pixels (one tile
    # wide) and the output channels into tiles of GCONV_PW_MR; a work item is (image, group, block of
    # strips, chunk of channel tiles), item = ((n * groups + g) * n_p_blocks + p_block) * n_chunks + chunk
    Py_ssize_t K, HW, nr, lanes, n_strips, strips_per_block, n_p_blocks, n_c_tiles, tiles_per_chunk, n_chunks
    # the tile: mr output channels x vectors vectors of pixels (nr = vectors * lanes), the regular one or the
    # wide one (GCONV_PW_WIDE_MR x GCONV_PW_WIDE_VECTORS, kernels/gemm/tile.h)
    Py_ssize_t mr, vectors
    bint wide
    # a map of whole vectors and one pixel more, on the wide float tile that takes that pixel apart
    # (GCONV_PW_WIDE_TAIL: 7x7 as 3 vectors + 1, not 4 vectors): one strip, nr = the map's pixels
    bint tail
    # strips an item runs through every channel tile of its chunk before the next ones (see _pointwise_item)
    Py_ssize_t strips_per_cache_block
    # a block's whole strips are copied before its tiles run (deep inputs too large to stay in cache: K rows
    # read in runs of a block's pixels rather than one strip at a time, see PW_COPY_MIN_INPUT_BYTES)
    bint copy_blocks
    # the first channel tile of a strip copies its rows for the others: where K rows at the input's channel
    # stride fall into too few L1 sets to stay there (maps of 32x32 pixels: one set), see _rows_alias
    bint copy_rows
    # the input rows do not all start on cache-line boundaries (an array malloc placed 16 bytes past one, a
    # 14x14 map's rows of 784 bytes), so that each of their vector loads straddles two lines: the first
    # channel tile copies them too where enough tiles read the copy (see _copies_rows)
    bint rows_misaligned
    # strips after the first start shift pixels early (strip s at s * nr - shift), so that they start on cache
    # lines where every input row starts the same distance past one (NCHW maps of whole lines, 112x112,
    # 56x56): only the first and last strips' loads straddle lines (_strip_shift)
    Py_ssize_t shift
    # the rows are a patch convolution's lowered input, gathered from its input a cache block at a time into
    # rows gather_pitch values apart (_pointwise_gathered_item), never read in place
    bint gathered
    Py_ssize_t gather_pitch
    # a call given no packed weights packs them into the tiles' [K][mr] panels itself (PW_PACK_MIN_PIXELS)
    bint packs_weights


cdef inline void _pw_tile(Py_ssize_t k_size, const floating* x, Py_ssize_t x_k_stride, floating* x_copy,
                          const floating* x_next, const floating* w, bint packed, const floating* bias, floating* out,
                          Py_ssize_t out_channel_stride, Py_ssize_t n_c, Py_ssize_t p_first, Py_ssize_t n_p,
                          int n_v, bint wide, const floating* x_tail) noexcept nogil:
    # the C micro-kernel for this dtype and tile
    if floating is float:
        if wide:
            gconv_pw_wide_f32(k_size, x, x_k_stride, x_copy, x_next, w, packed, bias, out, out_channel_stride, n_c,
                              p_first, n_p, n_v, x_tail)
        else:
            gconv_pw_f32(k_size, x, x_k_stride, x_copy, x_next, w, packed, bias, out, out_channel_stride, n_c,
                         p_first, n_p, n_v, x_tail)
    else:
        if wide:
            gconv_pw_wide_f64(k_size, x, x_k_stride, x_copy, x_next, w, packed, bias, out, out_channel_stride, n_c,
                              p_first, n_p, n_v, x_tail)
        else:
            gconv_pw_f64(k_size, x, x_k_stride, x_copy, x_next, w, packed, bias, out, out_channel_stride, n_c,
                         p_first, n_p, n_v, x_tail)


cdef void _pointwise_item(const Plan* plan, const PointwisePlan* pp, const floating* x, const floating* weight,
                          const floating* packed_weight, const floating* bias, floating* out, floating* rows,
                          Py_ssize_t item) noexcept nogil:
    """One work item: each strip of the block against each channel tile of the chunk."""
    cdef Py_ssize_t chunk = item % pp.n_chunks
    cdef Py_ssize_t p_block = (item // pp.n_chunks) % pp.n_p_blocks
    cdef Py_ssize_t g = (item // (pp.n_chunks * pp.n_p_blocks)) % plan.groups
    cdef Py_ssize_t n = item // (pp.n_chunks * pp.n_p_blocks * plan.groups)
    cdef Py_ssize_t ocpg = plan.out_channels_per_group, nr = pp.nr, K = pp.K
    cdef Py_ssize_t tile_first = chunk * pp.tiles_per_chunk
    cdef Py_ssize_t tile_end = min(tile_first + pp.tiles_per_chunk, pp.n_c_tiles)
    cdef Py_ssize_t strip_end = min((p_block + 1) * pp.strips_per_block, pp.n_strips)
    cdef const floating* x_group = x + n * plan.x_stride_n + g * K * plan.x_stride_c
    cdef floating* out_image = out + n * plan.out_stride_n
    cdef Py_ssize_t strip, t, k, p, p0, n_p, c0, oc_first, start, block_first, block_end
    cdef const floating* src
    cdef const floating* w
    cdef const floating* x_next
    cdef Py_ssize_t src_stride
    cdef floating* copy
    cdef floating* strip_rows
    cdef int n_v
    cdef bint packed = packed_weight != NULL, first, block_copied
    cdef Py_ssize_t whole_end, s
    if pp.tail:
        # the map's whole vectors read in place, its last pixel's K inputs gathered into a row of their own
        for k in range(K):
            rows[k] = x_group[k * plan.x_stride_c + pp.HW - 1]
        for t in range(tile_first, tile_end):
            c0 = t * pp.mr
            oc_first = g * ocpg + c0
            _pw_tile(K, x_group, plan.x_stride_c, NULL, NULL, weight + oc_first * K, False,
                     bias + oc_first if bias != NULL else NULL, out_image + oc_first * plan.out_stride_c,
                     plan.out_stride_c, min(pp.mr, ocpg - c0), 0, pp.HW - 1, <int> ((pp.HW - 1) // pp.lanes),
                     pp.wide, rows)
        return
    # cache blocks of strips: every channel tile runs over a block's strips before the next tile, so that
    # each output row is written in runs of a block's pixels (a few streams the prefetchers follow, not
    # one per output channel) while the block's input rows stay in L2
    block_first = p_block * pp.strips_per_block
    while block_first < strip_end:
        block_end = min(block_first + pp.strips_per_cache_block, strip_end)
        # the block's whole strips copied first, row by row in runs of the block's pixels (see copy_blocks)
        whole_end = min(block_end, pp.HW // nr)
        block_copied = (pp.copy_blocks and tile_end - tile_first >= PW_COPY_MIN_TILES
                        and whole_end > block_first)
        if block_copied:
            for k in range(K):
                for s in range(whole_end - block_first):
                    memcpy(rows + s * K * nr + k * nr, x_group + k * plan.x_stride_c + (block_first + s) * nr,
                           nr * sizeof(floating))
        for t in range(tile_first, tile_end):
            first = t == tile_first
            c0 = t * pp.mr
            oc_first = g * ocpg + c0
            if packed:
                w = packed_weight + (g * pp.n_c_tiles + t) * K * pp.mr
            else:
                w = weight + oc_first * K
            for strip in range(block_first, block_end):
                p0 = strip * nr - (pp.shift if strip > 0 else 0)
                n_p = min(nr, pp.HW - p0)
                strip_rows = rows + (strip - block_first) * K * nr
                n_v, start, src, src_stride = <int> pp.vectors, p0, x_group + p0, plan.x_stride_c
                copy = x_next = NULL
                if n_p < nr:
                    # the map's last pixels: as few vectors as hold them, ending at the map's end and
                    # overlapping the strip before (whose tiles store the pixels they share)
                    n_v = <int> _ceil_div(n_p, pp.lanes)
                    if pp.HW >= n_v * pp.lanes:
                        start = pp.HW - n_v * pp.lanes
                        src = x_group + start
                    else:
                        # a map narrower than the tile: its rows with zeros after them, so that no tile
                        # reads past a row
                        if first:
                            for k in range(K):
                                for p in range(n_p):
                                    strip_rows[k * nr + p] = x_group[k * plan.x_stride_c + p0 + p]
                                for p in range(n_p, nr):
                                    strip_rows[k * nr + p] = 0
                        src, src_stride = strip_rows, nr
                elif block_copied:
                    src, src_stride = strip_rows, nr
                elif _copies_rows(pp, tile_end - tile_first):
                    # the first tile reads the strip in place and copies it for the others
                    if first:
                        copy = strip_rows
                    else:
                        src, src_stride = strip_rows, nr
                if first and not block_copied and p0 + (PW_PREFETCH_STRIPS + 1) * nr <= pp.HW:
                    # a later strip's rows into L2, far enough ahead to hide a miss to memory
                    x_next = x_group + p0 + PW_PREFETCH_STRIPS * nr
                _pw_tile(K, src, src_stride, copy, x_next, w, packed, bias + oc_first if bias != NULL else NULL,
                         out_image + oc_first * plan.out_stride_c + start, plan.out_stride_c,
                         min(pp.mr, ocpg - c0), p0 - start, p0 - start + n_p, n_v, pp.wide, NULL)
        block_first = block_end


cdef void _pointwise_gathered_item(const Plan* plan, const PointwisePlan* pp, const Plan* conv, const floating* x,
                                   const floating* weight, const floating* packed_weight, const floating* bias,
                                   floating* out, floating* rows, Py_ssize_t item) noexcept nogil:
    """One work item over a patch convolution's lowered input (conv: its plan, x: its input; plan: its shapes
    as a 1x1 call's): each cache block of strips gathered into rows, then every channel tile of the chunk
    over the block's strips, as _pointwise_item's cache blocks."""
    cdef Py_ssize_t chunk = item % pp.n_chunks
    cdef Py_ssize_t p_block = (item // pp.n_chunks) % pp.n_p_blocks
    cdef Py_ssize_t g = (item // (pp.n_chunks * pp.n_p_blocks)) % plan.groups
    cdef Py_ssize_t n = item // (pp.n_chunks * pp.n_p_blocks * plan.groups)
    cdef Py_ssize_t ocpg = plan.out_channels_per_group, nr = pp.nr, K = pp.K
    cdef Py_ssize_t tile_first = chunk * pp.tiles_per_chunk
    cdef Py_ssize_t tile_end = min(tile_first + pp.tiles_per_chunk, pp.n_c_tiles)
    cdef Py_ssize_t strip_end = min((p_block + 1) * pp.strips_per_block, pp.n_strips)
    cdef const floating* x_group = x + n * conv.x_stride_n + g * conv.in_channels_per_group * conv.x_stride_c
    cdef floating* out_image = out + n * plan.out_stride_n
    cdef Py_ssize_t block_first = p_block * pp.strips_per_block, block_end, block_pixels, strip, t, p0, n_p
    cdef Py_ssize_t c0, oc_first
    cdef const floating* w
    while block_first < strip_end:
        block_end = min(block_first + pp.strips_per_cache_block, strip_end)
        # the block's pixels, then zeros up to its last strip's last vector (a map's last strip is ragged)
        block_pixels = min(block_end * nr, pp.HW) - block_first * nr
        _gather_patches(conv, x_group, block_first * nr, block_pixels,
                        _ceil_div(block_pixels, pp.lanes) * pp.lanes - block_pixels, rows, pp.gather_pitch)
        for t in range(tile_first, tile_end):
            c0 = t * pp.mr
            oc_first = g * ocpg + c0
            w = (packed_weight + (g * pp.n_c_tiles + t) * K * pp.mr if packed_weight != NULL
                 else weight + oc_first * K)
            for strip in range(block_first, block_end):
                p0 = strip * nr
                n_p = min(nr, pp.HW - p0)
                _pw_tile(K, rows + (strip - block_first) * nr, pp.gather_pitch, NULL, NULL, w, packed_weight != NULL,
                         bias + oc_first if bias != NULL else NULL, out_image + oc_first * plan.out_stride_c + p0,
                         plan.out_stride_c, min(pp.mr, ocpg - c0), 0, n_p,
                         <int> (pp.vectors if n_p == nr else _ceil_div(n_p, pp.lanes)), pp.wide, NULL)
        block_first = block_end


cdef enum:
    # Input rows of a cache block of strips (K x strips x nr values): small enough to stay in L2 while every
    # channel tile of a work item reads them
    PW_CACHE_BLOCK_BYTES = 256 * 1024
    # how many strips ahead a cache block's first channel tile fetches input rows
    PW_PREFETCH_STRIPS = 4
    # Calls whose input is at least GCONV_PW_COPY_MIN_INPUT_MIB MiB (kernels/gemm/tile.h), with at least
    # PW_COPY_MIN_K rows per group, copy each cache block's whole strips (runs of the block's pixels, K rows)
    # before PW_COPY_MIN_TILES or more channel tiles read them. Measured with AVX-512 (1 thread, batch 8,
    # input from memory): 1x1 256->64 and 256->128 on 56x56 1.4-1.55x, 512->256 on 28x28 1.08x faster than
    # reading the strips in place; 6.4 MB inputs too (256->512 and 256->128 on 28x28 1.13-1.3x, 1.3x on two
    # threads); 3.2 MB ones even (1024->256 on 14x14 at batch 4, 128->512 on 28x28); cache-sized inputs gain
    # nothing (64->256 on 56x56, 1024->256 on 14x14, batch 1: 0.9-1.0x) and two channel tiles lose (32->16 on
    # 112x112: 0.63x). The AVX2 build, on the same CPU, lost 4-9% on the 6.4 MB inputs but 256->512.
    PW_COPY_MIN_K = 128
    PW_COPY_MIN_TILES = 4
    # Calls of this many pixels (the batch's) or more that get no packed weights pack them per call into [K][mr]
    # panels (either tile), so that the broadcasts of a tap are one run of mr values rather than mr weight
    # rows side by side, whose pointers the tile then keeps out of registers (weights below the module cache's
    # MIN_CACHED_WEIGHTS, the wide tile's, functional calls). Packing costs ~0.5 ns per weight. Measured with
    # AVX-512 (1 thread, interleaved A/B): 1x1 48->104, 24->144, 144->24 on 56x56 and 16->96 on 112x112 at batch
    # 1 1.05-1.1x faster, 64->64 (wide) and 32->16 on 112x112 1.04-1.06x, at batch 8 likewise; 2x2 s2 96->192
    # from 56x56 at batch 8 (gathered, wide) 1.15x; on 28x28 maps at batch 1, 32->192 and 40->120 1.05-1.09x,
    # deeper ones even; 2 threads 1.04-1.1x. Fewer pixels lost: 14x14 at batch 1 1.04-1.2x slower (1024->256,
    # 672->112: the packing), at batch 2 1.02-1.03x, 7x7 at batch 8 1.0-1.03x.
    PW_PACK_MIN_PIXELS = 784
    # from this many weights the panels are packed by the call's threads
    PW_PACK_PARALLEL_MIN_WEIGHTS = 64 * 1024
    # misaligned rows are copied for the other channel tiles from this many taps (_copies_rows)
    PW_MISALIGNED_COPY_MIN_K = 64
    # below that, strips shift onto cache lines (_strip_shift) on maps of this many pixels or more, whose rows
    # stream from memory: 28x28 maps' stay in L2, where the shift's extra vector per map cost more than the
    # straddling loads (32->192 and 40->240 on 28x28: 0.97-1.06x)
    PW_SHIFT_MIN_PIXELS = 2048
    # and from PW_MISALIGNED_COPY_MIN_K taps on where the input streams from memory
    PW_SHIFT_MIN_DEEP_INPUT_BYTES = 4 * 1024 * 1024
    # a gathered block's rows cost about as much as this many channel tiles over them (the work split counts
    # it: sharing channel tiles among threads gathers the same rows in each)
    PW_GATHER_TILES = 2
    # L1 data cache geometry the row-copy rule assumes: 64 sets of 64-byte lines, 8 ways (32 KiB; 48 KiB
    # L1s have 12 ways, so the rule errs on the side of copying there)
    L1_SETS = 64
    L1_WAYS = 8


cdef bint _rows_alias(Py_ssize_t k_size, Py_ssize_t row_bytes) noexcept nogil:
    """Whether k_size rows row_bytes apart (one line each) overflow the L1 sets they map to.

    Measured (AVX2, one strip of 16 pixels, rows read once per channel tile): 1x1 128->128 on 32x32 (one
    set) 1.2x faster with the copy, 256->64 on 56x56 (16 sets) 1.1x; 32->16 on 112x112 (4 sets, 32 rows
    fit) and 128->256 on 56x56 1.05-1.1x slower with it.
    """
    cdef unsigned long long sets = 0
    cdef Py_ssize_t k, n_sets = 0
    for k in range(L1_SETS):
        sets |= 1ULL << (((k * row_bytes) // 64) % L1_SETS)
    for k in range(L1_SETS):
        n_sets += (sets >> k) & 1
    return k_size > L1_WAYS * n_sets


cdef inline bint _copies_rows(const PointwisePlan* pp, Py_ssize_t n_tiles) noexcept nogil:
    """Whether the first of n_tiles channel tiles over a strip copies its rows for the others.

    Misaligned rows measured with AVX-512 (1 thread, input 16 bytes past a line): 1x1 64->256 on 56x56,
    256->256 on 28x28, 256->1024 on 14x14 1.05-1.07x, 144->24 on 56x56 (2 tiles) 1.02-1.06x faster with the
    copy; 32->16 on 112x112 (3 wide tiles of 32 taps, rows that stay in L1) 1.05-1.08x slower.
    """
    return n_tiles > 1 and (pp.copy_rows or (pp.rows_misaligned and pp.K >= PW_MISALIGNED_COPY_MIN_K))


cdef bint _rows_misaligned(const void* x, Py_ssize_t row_stride, Py_ssize_t itemsize) noexcept nogil:
    """Whether rows row_stride elements apart from x start off cache-line boundaries."""
    return (<size_t> x) % CACHE_LINE != 0 or (row_stride * itemsize) % CACHE_LINE != 0


cdef Py_ssize_t _strip_shift(const Plan* plan, const PointwisePlan* pp, const void* x,
                             Py_ssize_t itemsize) noexcept nogil:
    """pp.shift for an input at x read in place: the pixels by which strips after the first start early so
    that they start on a cache line, where every row starts the same distance past one; else 0.

    Measured (AVX-512, 1 thread, input 16 bytes past a line, batch 8): 1x1 32->16 and 16->64 on 112x112
    1.12x and 1.25x, 24->144 on 56x56 1.06x faster than with every load across two lines; 72->24 and 96->24
    on 56x56 1.1-1.25x, 64->256 1.03x faster than with the first tile's aligned copy."""
    cdef size_t address = <size_t> x
    if (address % CACHE_LINE == 0 or address % itemsize != 0 or (plan.x_stride_c * itemsize) % CACHE_LINE != 0
            or (plan.x_stride_n * itemsize) % CACHE_LINE != 0 or (pp.nr * itemsize) % CACHE_LINE != 0
            or pp.HW <= pp.nr):
        return 0
    # strip s >= 1 then starts at s * nr - shift, on a line boundary (strips of whole lines; shift < nr)
    return (address % CACHE_LINE) // itemsize


cdef void _split_pointwise(const Plan* plan, PointwisePlan* pp, Py_ssize_t wanted, bint tiles_first) noexcept:
    # halve the blocks of strips (or the chunks of channel tiles first) until there are wanted items
    while plan.N * plan.groups * pp.n_p_blocks * pp.n_chunks < wanted:
        if pp.strips_per_block > 1 and not (tiles_first and pp.tiles_per_chunk > 1):
            pp.strips_per_block = _ceil_div(pp.strips_per_block, 2)
            pp.n_p_blocks = _ceil_div(pp.n_strips, pp.strips_per_block)
        elif pp.tiles_per_chunk > 1:
            pp.tiles_per_chunk = _ceil_div(pp.tiles_per_chunk, 2)
            pp.n_chunks = _ceil_div(pp.n_c_tiles, pp.tiles_per_chunk)
        else:
            break


cdef Py_ssize_t _pointwise_load(const Plan* plan, const PointwisePlan* pp, int n_threads) noexcept:
    """The most tiles x vectors one thread runs when the items are shared out in static chunks."""
    cdef Py_ssize_t n_items = plan.N * plan.groups * pp.n_p_blocks * pp.n_chunks
    cdef Py_ssize_t item, p_block, chunk, strips, vectors, tiles, thread_end
    cdef Py_ssize_t load = 0, most = 0, thread = 0
    # OpenMP's static schedule: n_items // n_threads items each, one more for the first n_items % n_threads
    thread_end = n_items // n_threads + (1 if n_items % n_threads > 0 else 0)
    for item in range(n_items):
        chunk = item % pp.n_chunks
        p_block = (item // pp.n_chunks) % pp.n_p_blocks
        strips = min(pp.strips_per_block, pp.n_strips - p_block * pp.strips_per_block)
        # a block's strips are whole (pp.vectors vectors) but for the map's last one
        vectors = strips * pp.vectors
        if p_block == pp.n_p_blocks - 1 and pp.HW % pp.nr != 0:
            vectors -= pp.vectors - _ceil_div(pp.HW % pp.nr, pp.lanes)
        tiles = min(pp.tiles_per_chunk, pp.n_c_tiles - chunk * pp.tiles_per_chunk)
        # gathered rows: every item gathers its strips' rows, as much work as PW_GATHER_TILES tiles
        load += (tiles + (PW_GATHER_TILES if pp.gathered else 0)) * vectors
        if item == thread_end - 1:
            most = max(most, load)
            load = 0
            thread += 1
            thread_end += n_items // n_threads + (1 if n_items % n_threads > thread else 0)
    return most


cdef int _plan_pointwise(const Plan* plan, PointwisePlan* pp, Py_ssize_t itemsize, int n_threads,
                         bint wide, bint gathered=False, const void* x=NULL) except -1:
    """The strips and channel tiles of a pointwise call (on the wide tile or not) and its work items for
    n_threads threads; gathered: over a patch convolution's lowered input (plan: its shapes as a 1x1 call's).
    x: the input, read in place, whose address may shift the strips or mark its rows misaligned (NULL: none)."""
    pp.gathered = gathered
    pp.copy_rows = not gathered and _rows_alias(plan.in_channels_per_group, abs(plan.x_stride_c) * itemsize)
    pp.K = plan.in_channels_per_group
    pp.HW = plan.H_out * plan.W_out
    pp.wide = wide
    pp.mr = GCONV_PW_WIDE_MR if wide else GCONV_PW_MR
    pp.vectors = GCONV_PW_WIDE_VECTORS if wide else GCONV_PW_VECTORS
    pp.lanes = (GCONV_PW_NR_F32 if itemsize == 4 else GCONV_PW_NR_F64) // GCONV_PW_VECTORS
    pp.nr = pp.vectors * pp.lanes
    pp.tail = (wide and itemsize == 4 and GCONV_PW_WIDE_TAIL and pp.HW % pp.lanes == 1
               and pp.lanes < pp.HW <= pp.nr + 1 and not gathered)
    if pp.tail:
        pp.nr = pp.HW
    pp.n_c_tiles = _ceil_div(plan.out_channels_per_group, pp.mr)
    # (the wide tile's extra pixel reads the weights as they are)
    pp.packs_weights = not pp.tail and _size_product(plan.N, pp.HW) >= PW_PACK_MIN_PIXELS
    pp.strips_per_cache_block = max(1, PW_CACHE_BLOCK_BYTES // (pp.K * pp.nr * itemsize))
    cdef Py_ssize_t input_bytes = _size_product(_size_product(plan.N * plan.groups, pp.K), pp.HW * itemsize)
    pp.copy_blocks = (not gathered and pp.K >= PW_COPY_MIN_K and pp.n_c_tiles >= PW_COPY_MIN_TILES
                      and input_bytes >= GCONV_PW_COPY_MIN_INPUT_MIB * 1024 * 1024)
    pp.shift = 0
    if (x != NULL and not (gathered or pp.tail or pp.copy_blocks) and pp.HW >= PW_SHIFT_MIN_PIXELS
            and (pp.K < PW_MISALIGNED_COPY_MIN_K or input_bytes >= PW_SHIFT_MIN_DEEP_INPUT_BYTES)):
        # (deeper inputs in cache: the first channel tile's copy of misaligned rows measured faster)
        pp.shift = _strip_shift(plan, pp, x, itemsize)
    # rows read in place that start off lines and are not shifted onto them (see _copies_rows)
    pp.rows_misaligned = x != NULL and pp.shift == 0 and _rows_misaligned(x, plan.x_stride_c, itemsize)
    pp.n_strips = _ceil_div(pp.HW + pp.shift, pp.nr)
    pp.strips_per_block = pp.n_strips
    pp.n_p_blocks = 1
    pp.tiles_per_chunk = pp.n_c_tiles
    pp.n_chunks = 1
    cdef Py_ssize_t wanted = GEMM_ITEMS_PER_THREAD * n_threads if n_threads > 1 else 1
    # threads share out strips first (each strip's rows are read once per item), channel tiles where an
    # image has fewer strips than the threads want; or channel tiles first where that shares the work out
    # more evenly (small maps: 116->116 on 14x14 is 12 strips and a one-vector one, or 20 channel tiles)
    cdef PointwisePlan by_tiles = pp[0]
    _split_pointwise(plan, pp, wanted, False)
    if n_threads > 1:
        _split_pointwise(plan, &by_tiles, wanted, True)
        if _pointwise_load(plan, &by_tiles, n_threads) < _pointwise_load(plan, pp, n_threads):
            pp[0] = by_tiles
    # a gathered cache block's rows, a line apart from a multiple of 4 KiB (K rows 4 KiB apart share L1 sets)
    pp.gather_pitch = min(pp.strips_per_cache_block, pp.strips_per_block) * pp.nr
    if (pp.gather_pitch * itemsize) % 4096 == 0:
        pp.gather_pitch += CACHE_LINE // itemsize
    return 0


cdef bint _pixels_contiguous(Py_ssize_t H, Py_ssize_t W, Py_ssize_t stride_h, Py_ssize_t stride_w) noexcept:
    # pixel h * W + w lies h * W + w elements after pixel 0 (NCHW, or a view that keeps every map whole)
    return (W <= 1 or stride_w == 1) and (H <= 1 or stride_h == W)


def pointwise_plan(x_shape, weight_shape, Py_ssize_t groups, int itemsize, int n_threads, bint wide=False):
    """The pointwise tiles' work split for a call (a dict), for tests."""
    cdef Plan plan
    cdef PointwisePlan pp
    plan.N, plan.C_in, plan.H_out, plan.W_out = x_shape[0], x_shape[1], x_shape[2], x_shape[3]
    plan.C_out, plan.in_channels_per_group = weight_shape[0], weight_shape[1]
    plan.groups = groups
    plan.out_channels_per_group = plan.C_out // groups
    plan.x_stride_c = x_shape[2] * x_shape[3]
    _plan_pointwise(&plan, &pp, itemsize, n_threads, wide)
    return dict(mr=pp.mr, nr=pp.nr, n_strips=pp.n_strips, strips_per_block=pp.strips_per_block,
                n_p_blocks=pp.n_p_blocks,
                n_c_tiles=pp.n_c_tiles, tiles_per_chunk=pp.tiles_per_chunk, n_chunks=pp.n_chunks,
                strips_per_cache_block=pp.strips_per_cache_block, copy_blocks=pp.copy_blocks, tail=pp.tail,
                packs_weights=pp.packs_weights)


def pointwise_pack_weights(const floating[:, :, :, ::1] weight not None, Py_ssize_t groups, int n_threads=1):
    """The [K][MR] panels of a pointwise call's weights (C_out, C_in // groups, 1, 1), one per tile of MR
    output channels of each group (zeros past a group's last channel), for conv2d_pointwise(packed_weight=)."""
    if groups <= 0 or weight.shape[0] % groups != 0:
        raise ValueError("pointwise_pack_weights: the output channels must be a multiple of groups")
    if weight.shape[2] != 1 or weight.shape[3] != 1:
        raise ValueError("pointwise_pack_weights: the weight must be 1x1")
    cdef Py_ssize_t ocpg = weight.shape[0] // groups, K = weight.shape[1]
    cdef Py_ssize_t n_c_tiles = _ceil_div(ocpg, GCONV_PW_MR)
    cdef Py_ssize_t n_panels = groups * n_c_tiles, panel
    packed = np.empty(n_panels * K * GCONV_PW_MR, dtype=np.float32 if floating is float else np.float64)
    if packed.size == 0:
        return packed
    cdef floating[::1] packed_view = packed
    cdef floating* w_packed = &packed_view[0]
    cdef const floating* w_ptr = &weight[0, 0, 0, 0]
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_panels))
    for panel in prange(n_panels, nogil=True, num_threads=team, schedule="static"):
        _pack_pointwise_panel(w_ptr, ocpg, K, n_c_tiles, GCONV_PW_MR, w_packed, panel)
    return packed


def conv2d_pointwise(
    x,                                             # IN  (N, C_in, H, W), each map pixel-contiguous
    weight,                                        # IN  (C_out, C_in // groups, 1, 1), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, H, W), each map pixel-contiguous
    Py_ssize_t groups,
    int n_threads,
    packed_weight=None,                            # pointwise_pack_weights(weight, groups), or the raw weights
    bint wide=False,                               # the wide tile (GEMM_POINTWISE_WIDE_TILE), raw weights only
):
    """Grouped 1x1 convolution, stride 1, no padding, as per-image products out[c][p] = w[c][:] . x[:][p].

    The gemm family's pointwise tiles (kernels/gemm/tile.h): the input rows are read in place and each
    output row is stored whole. Batch and channel strides are free; within a map the H * W pixels must be
    contiguous (NCHW or a channel/batch view of it), as gconv._select sends. Each output is reduced over
    all taps in one tile, in order, so the results do not depend on how the work is shared among threads.
    packed_weight: the panels pointwise_pack_weights made from this weight (the caller keeps them fresh);
    without them the tiles read the weights as they are. wide: run the wide tile (fewer channels, more
    pixels), which reads the weights as they are.
    """
    cdef Operands ops
    cdef Plan plan
    cdef PointwisePlan pp
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, packed_weight, 4)
        _fill_plan_from(&plan, &ops, (1, 1), (0, 0), (1, 1), groups)
        if plan.KH != 1 or plan.KW != 1 or plan.H_out != plan.H or plan.W_out != plan.W:
            raise ValueError("conv2d_pointwise: the weight must be 1x1 and the output as large as the input")
        if not (_pixels_contiguous(plan.H, plan.W, plan.x_stride_h, plan.x_stride_w)
                and _pixels_contiguous(plan.H, plan.W, plan.out_stride_h, plan.out_stride_w)):
            raise ValueError("conv2d_pointwise: input and output maps must be pixel-contiguous (NCHW)")
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        _plan_pointwise(&plan, &pp, ops.itemsize, n_threads, wide, False, ops.x.buf)
        _check_pointwise_packing(&plan, &pp, &ops, wide, "conv2d_pointwise")
        if ops.itemsize == 4:
            _run_pointwise(&plan, &pp, NULL, &ops, <float*> ops.out.buf, n_threads)
        else:
            _run_pointwise(&plan, &pp, NULL, &ops, <double*> ops.out.buf, n_threads)
    finally:
        _release_operands(&ops)


cdef int _check_pointwise_packing(const Plan* plan, const PointwisePlan* pp, const Operands* ops, bint wide,
                                  str caller) except -1:
    """Refuse packed weights that are not this weight's panels for pp, or that the wide tile would not read."""
    if not ops.has_packed:
        return 0
    if wide:
        raise ValueError(f"{caller}: the wide tile reads the weights as they are, not packed_weight")
    cdef Py_ssize_t expected = plan.groups * pp.n_c_tiles * pp.K * pp.mr
    if _packed_size(ops) != expected:
        raise ValueError(f"{caller}: packed_weight has {_packed_size(ops)} elements, this weight's panels "
                         f"{expected} (packed for another weight or kernel module?)")
    return 0


cdef void _pack_pointwise_panel(const floating* weight, Py_ssize_t ocpg, Py_ssize_t K, Py_ssize_t n_c_tiles,
                                Py_ssize_t mr, floating* panels, Py_ssize_t panel) noexcept nogil:
    """Panel (group, channel tile) = panel of tiles of mr channels (n_c_tiles per group of ocpg weight rows of
    K values) into panels: [K][mr] values, zeros past the group's last channel."""
    cdef Py_ssize_t g = panel // n_c_tiles
    if floating is float:
        gconv_pw_pack_float(weight + g * ocpg * K, ocpg, K, panel % n_c_tiles, mr, panels + panel * K * mr)
    else:
        gconv_pw_pack_double(weight + g * ocpg * K, ocpg, K, panel % n_c_tiles, mr, panels + panel * K * mr)


cdef int _run_pointwise(const Plan* plan, const PointwisePlan* pp, const Plan* conv, const Operands* ops,
                        floating* out_ptr, int n_threads) except -1:
    """The work items of a planned pointwise call on n_threads threads (conv: NULL, or the patch convolution
    whose lowered input they gather from ops.x; out_ptr: ops.out's data, whose type picks the dtype).

    Given no packed weights, a call that pp.packs_weights packs them itself (PW_PACK_MIN_PIXELS)."""
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef const floating* w_ptr = <const floating*> ops.weight.buf
    cdef const floating* pw_ptr = <const floating*> ops.packed.buf if _packed_size(ops) != 0 else NULL
    cdef const floating* b_ptr = <const floating*> _bias_data(ops)
    cdef Py_ssize_t n_items = plan.N * plan.groups * pp.n_p_blocks * pp.n_chunks
    cdef int team = <int> max(1, min(<Py_ssize_t> n_threads, n_items))
    cdef Py_ssize_t rows_elements = (pp.K * pp.gather_pitch if pp.gathered
                                     else pp.K * pp.nr * min(pp.strips_per_cache_block, pp.strips_per_block))
    cdef Py_ssize_t n_panels = plan.groups * pp.n_c_tiles, panel
    cdef int pack_team = <int> max(1, min(<Py_ssize_t> n_threads, n_panels))
    cdef char* packed_memory = NULL
    cdef floating* packed
    cdef Py_ssize_t item
    cdef int alloc_failed[1]
    alloc_failed[0] = 0
    cdef char* rows_memory
    cdef floating* rows
    if pw_ptr == NULL and pp.packs_weights:
        # on a cache line boundary: a tap's mr weights are read as one run
        packed_memory = <char*> malloc(n_panels * pp.K * pp.mr * sizeof(floating) + CACHE_LINE)
        if packed_memory == NULL:
            raise MemoryError(f"conv2d: could not allocate {n_panels * pp.K * pp.mr * sizeof(floating)} bytes "
                              "of weight panels")
        packed = <floating*> _cache_line(packed_memory)
        if pack_team > 1 and n_panels * pp.K * pp.mr >= PW_PACK_PARALLEL_MIN_WEIGHTS:
            for panel in prange(n_panels, nogil=True, num_threads=pack_team, schedule="static"):
                _pack_pointwise_panel(w_ptr, plan.out_channels_per_group, pp.K, pp.n_c_tiles, pp.mr, packed, panel)
        else:
            with nogil:
                for panel in range(n_panels):
                    _pack_pointwise_panel(w_ptr, plan.out_channels_per_group, pp.K, pp.n_c_tiles, pp.mr, packed, panel)
        pw_ptr = packed
    try:
        with nogil, parallel(num_threads=team):
            # this thread's copy of a cache block's rows (a narrow map's, zero-padded; a gathered block), on a
            # cache line boundary
            rows_memory = <char*> malloc(rows_elements * sizeof(floating) + CACHE_LINE)
            rows = <floating*> _cache_line(rows_memory)
            if rows_memory == NULL:
                alloc_failed[0] = 1
            for item in prange(n_items, schedule="static"):
                if rows_memory != NULL and pp.gathered:
                    _pointwise_gathered_item(plan, pp, conv, x_ptr, w_ptr, pw_ptr, b_ptr, out_ptr, rows, item)
                elif rows_memory != NULL:
                    _pointwise_item(plan, pp, x_ptr, w_ptr, pw_ptr, b_ptr, out_ptr, rows, item)
            free(rows_memory)
    finally:
        free(packed_memory)
    if alloc_failed[0]:
        raise MemoryError(f"conv2d: could not allocate {rows_elements * sizeof(floating)} bytes of scratch")
    return 0


# Bytes of lowered input (C_in * KH * KW rows of H_out * W_out pixels per image) one conv2d_lowered call
# holds at a time: the batch is lowered and reduced in chunks of images this large or one image
LOWERED_CHUNK_BYTES = 8 * 1024 * 1024


def conv2d_lowered(
    x,                                             # IN  (N, C_in, H, W), any strides
    weight,                                        # IN  (C_out, C_in // groups, KH, KW), C-contiguous
    bias,                                          # IN  (C_out,), or (0,) for no bias
    out,                                           # OUT (N, C_out, H_out, W_out), each map pixel-contiguous
    tuple stride, tuple pad_before, tuple dilation, Py_ssize_t groups, int n_threads,
    packed_weight=None,                            # pointwise_pack_weights of weight as (C_out, K, 1, 1)
    bint wide=False,                               # the wide pointwise tile (as conv2d_pointwise's)
):
    """Grouped convolution as the pointwise tiles' products over the lowered input (im2col, a chunk of images
    at a time): out[n][c][p] = w[c][:] . columns[n][:][p], K = C_in // groups * KH * KW rows per group.

    The weights are read as they are (their own [C_out][K] order is the tiles' row order), so nothing is
    packed or checked per call; the lowered rows of a chunk take at most LOWERED_CHUNK_BYTES or one image.
    Patch convolutions (kernel no wider than the stride: 1x1 s2, 2x2 s2, 4x4 s4) lower nothing beforehand:
    each work item gathers its cache blocks' rows from x as it goes (_pointwise_gathered_item), so the
    lowered input is written once into cache, never to memory and back (but for maps the wide tile takes as
    whole vectors and a pixel, whose rows it reads in place).
    """
    cdef Operands ops
    cdef Plan plan
    cdef Plan rows_plan  # the products' shapes as a 1x1 call's: K input channels per group on the output map
    cdef PointwisePlan pp
    ops.n_held = 0
    try:
        _take_operands(&ops, x, weight, bias, out, packed_weight, 4)
        _fill_plan_from(&plan, &ops, stride, pad_before, dilation, groups)
        if plan.N == 0 or plan.C_out == 0 or plan.H_out == 0 or plan.W_out == 0:
            return
        if not _pixels_contiguous(plan.H_out, plan.W_out, plan.out_stride_h, plan.out_stride_w):
            raise ValueError("conv2d_lowered: the output maps must be pixel-contiguous (NCHW)")
        if _patches_in_rows(&plan):
            rows_plan = plan
            rows_plan.in_channels_per_group = plan.in_channels_per_group * plan.KH * plan.KW
            rows_plan.C_in = rows_plan.in_channels_per_group * plan.groups
            rows_plan.KH = rows_plan.KW = 1
            rows_plan.H, rows_plan.W = plan.H_out, plan.W_out
            rows_plan.x_stride_c = plan.H_out * plan.W_out  # the lowered rows' (for the plan's cache rules)
            _plan_pointwise(&rows_plan, &pp, ops.itemsize, n_threads, wide)
        # gathered as it goes, but where the wide tile takes a map's last pixel apart (7x7: pp.tail), reading
        # the lowered rows in place, and where threads would share channel tiles rather than strips (each
        # would gather every strip: 1x1 s2 512->1024 from 28x28, one image on two threads, 1.2x slower)
        if (_patches_in_rows(&plan) and not pp.tail
                and (n_threads == 1 or plan.N * pp.n_strips >= GEMM_ITEMS_PER_THREAD * n_threads)):
            _plan_pointwise(&rows_plan, &pp, ops.itemsize, n_threads, wide, True)
            _check_pointwise_packing(&rows_plan, &pp, &ops, wide, "conv2d_lowered")
            if ops.itemsize == 4:
                _run_pointwise(&rows_plan, &pp, &plan, &ops, <float*> ops.out.buf, n_threads)
            else:
                _run_pointwise(&rows_plan, &pp, &plan, &ops, <double*> ops.out.buf, n_threads)
            return
        if ops.itemsize == 4:
            _lower_and_multiply(&plan, &ops, <float*> ops.out.buf, weight, bias, out, n_threads, packed_weight,
                                wide)
        else:
            _lower_and_multiply(&plan, &ops, <double*> ops.out.buf, weight, bias, out, n_threads, packed_weight,
                                wide)
    finally:
        _release_operands(&ops)


cdef int _lower_and_multiply(const Plan* plan, const Operands* ops, floating* out_ptr, weight, bias, out,
                             int n_threads, packed_weight, bint wide) except -1:
    """conv2d_lowered by chunks of images: each chunk's input lowered into columns, then conv2d_pointwise
    (out_ptr: ops.out's data, whose type picks the dtype)."""
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t image_elements = _size_product(_size_product(plan.C_in, plan.KH * plan.KW),
                                                   plan.H_out * plan.W_out)
    cdef Py_ssize_t chunk_bytes = LOWERED_CHUNK_BYTES
    cdef Py_ssize_t chunk = max(1, min(plan.N, chunk_bytes // _size_product(image_elements, sizeof(floating))))
    columns = _scratch_array(_size_product(chunk, image_elements), dtype).reshape(
        chunk, plan.C_in * plan.KH * plan.KW, plan.H_out, plan.W_out)
    rows = np.asarray(weight).reshape(plan.C_out, -1, 1, 1)  # a view: the weight is C-contiguous
    cdef floating[:, :, :, ::1] columns_view = columns
    cdef const floating* x_ptr = <const floating*> ops.x.buf
    cdef floating* columns_ptr = &columns_view[0, 0, 0, 0]
    cdef Py_ssize_t first, n_images, item
    cdef int team
    for first in range(0, plan.N, chunk):
        n_images = min(chunk, plan.N - first)
        team = <int> max(1, min(<Py_ssize_t> n_threads, n_images * plan.C_in))
        for item in prange(n_images * plan.C_in, nogil=True, num_threads=team, schedule="static"):
            _lower_rows(plan, x_ptr + first * plan.x_stride_n, columns_ptr, item)
        conv2d_pointwise(columns[:n_images], rows, bias, out[first:first + n_images], plan.groups, n_threads,
                         packed_weight, wide)
    return 0
