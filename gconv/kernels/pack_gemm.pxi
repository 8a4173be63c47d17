# Packing for the gemm family, apart from its micro-kernels (as BLIS keeps packm apart): weights into
# [K][NR] panels once per call, input pixels into [K][MR] panels per register tile (an implicit GEMM: the
# taps of a kxk or strided convolution are gathered here, one tile at a time, never the whole im2col).

cdef struct GemmPlan:
    # the convolution as a GEMM per group: M pixels (the batch folded in) x K taps x out_channels_per_group
    Py_ssize_t M, K, HW, KHKW
    # register tile MR pixels x NR channels (kernels/gemm/tile.h); tiles along M, NR-wide blocks along N
    Py_ssize_t mr, nr, n_m_tiles, n_n_blocks
    # work item = (g * n_m_blocks + m_block) * n_chunks + chunk: tiles_per_block tiles of pixels (their input
    # panels packed once into the thread's scratch) x blocks_per_chunk blocks of NR output channels
    Py_ssize_t tiles_per_block, n_m_blocks, blocks_per_chunk, n_chunks
    # dot tiles (weights read as they are, input packed as [MR][K] rows) instead of [K][NR] weight panels
    bint dot
    # panels: k in n_k_blocks blocks of kc taps (the last may be shorter); dot tiles: one block
    Py_ssize_t kc, n_k_blocks


cdef void _pack_gemm_weight(const Plan* plan, const GemmPlan* gp, const floating* weight, floating* packed,
                            Py_ssize_t panel) noexcept nogil:
    """Panel (g, block) = panel: packed[panel][k][j] = weight[g * ocpg + block * NR + j][k], zeros past the group.

    k = (ic * KH + kh) * KW + kw is the weight's own memory order. The copy is a transpose, done in 8 x 8
    blocks (then the ragged edges), so that the rows it reads and the panel rows it writes stay in L1.
    """
    cdef Py_ssize_t nr = gp.nr, K = gp.K, ocpg = plan.out_channels_per_group
    cdef Py_ssize_t g = panel // gp.n_n_blocks, block = panel % gp.n_n_blocks
    cdef Py_ssize_t n_valid = min(nr, ocpg - block * nr)
    cdef floating* dst = packed + panel * K * nr
    cdef const floating* src = weight + (g * ocpg + block * nr) * K
    cdef Py_ssize_t j, k, k0, j0, jj, kk
    cdef Py_ssize_t k_whole = K - K % 8, j_whole = n_valid - n_valid % 8
    # 8 x 8 blocks: 8 short runs read from 8 weight rows, 8 short runs written to 8 panel rows
    for k0 in range(0, k_whole, 8):
        for j0 in range(0, j_whole, 8):
            for jj in range(8):
                for kk in range(8):
                    dst[(k0 + kk) * nr + j0 + jj] = src[(j0 + jj) * K + k0 + kk]
    for k in range(K):
        for j in range(j_whole if k < k_whole else 0, n_valid):
            dst[k * nr + j] = src[j * K + k]
        for j in range(n_valid, nr):
            dst[k * nr + j] = 0


cdef enum:
    # Taps whose source offsets _pack_gemm_tile keeps at once (a 3x3 or 4x4 kernel in one go; larger
    # kernels in groups of this many taps): each input channel then writes its taps' rows of the panel
    # one after the other, at consecutive addresses.
    GEMM_PACK_TAPS = 16


cdef void _pack_gemm_tile(const Plan* plan, const GemmPlan* gp, const floating* x, Py_ssize_t g, Py_ssize_t m0,
                          floating* a, Py_ssize_t* out_offset, Py_ssize_t* pixel) noexcept nogil:
    """Input panel of the tile of pixels m0 .. m0 + MR - 1: a[k][m], zeros in the padding and past M.

    Also writes out_offset[m], the output's offset of pixel m (channel 0). pixel is scratch of
    (3 + GEMM_PACK_TAPS) * MR + GEMM_PACK_TAPS. The panel is written in k order (input channel outer, its
    taps inner): with the taps outer, each channel's row landed 216 bytes after the last and a 3x3
    256-channel panel (55 KiB, past L1) came back into L1 once per tap.
    """
    cdef Py_ssize_t mr = GCONV_GEMM_MR_F32 if floating is float else GCONV_GEMM_MR_F64
    cdef Py_ssize_t n_m = min(mr, gp.M - m0), taps = gp.KHKW
    cdef Py_ssize_t xs_c = plan.x_stride_c, xs_h = plan.x_stride_h, xs_w = plan.x_stride_w
    cdef Py_ssize_t* image_offset = pixel
    cdef Py_ssize_t* first_row = pixel + mr
    cdef Py_ssize_t* first_col = pixel + 2 * mr
    # per tap of the group: the source offset of each pixel (-1: a zero) and the step of the run they form
    # (1 or 2 elements apart; 0: none)
    cdef Py_ssize_t* src_offset = pixel + 3 * mr
    cdef Py_ssize_t* is_run = pixel + (3 + GEMM_PACK_TAPS) * mr
    cdef Py_ssize_t m, p, n, oh, ow, kh, kw, ih, iw, ic, tap, tap_first, n_taps, t
    cdef bint run  # the tile's pixels read input elements step apart for this tap
    # elements from one output column's input to the next's: runs of step 1 are copied, of step 2 split
    cdef Py_ssize_t step = plan.stride_w * xs_w
    cdef const floating* xg = x + g * plan.in_channels_per_group * xs_c
    cdef const floating* xc
    cdef const Py_ssize_t* src
    cdef floating* dst
    for m in range(n_m):
        p = m0 + m
        n = p // gp.HW
        oh = (p % gp.HW) // plan.W_out
        ow = p % plan.W_out
        out_offset[m] = n * plan.out_stride_n + oh * plan.out_stride_h + ow * plan.out_stride_w
        image_offset[m] = n * plan.x_stride_n
        first_row[m] = oh * plan.stride_h - plan.pad_top
        first_col[m] = ow * plan.stride_w - plan.pad_left
    tap_first = 0
    while tap_first < taps:
        n_taps = min(<Py_ssize_t> GEMM_PACK_TAPS, taps - tap_first)
        for t in range(n_taps):
            kh = (tap_first + t) // plan.KW
            kw = (tap_first + t) % plan.KW
            run = n_m == mr and (step == 1 or step == 2)
            for m in range(mr):
                ih = first_row[m] + kh * plan.dilation_h
                iw = first_col[m] + kw * plan.dilation_w
                if m >= n_m or ih < 0 or ih >= plan.H or iw < 0 or iw >= plan.W:
                    src_offset[t * mr + m] = -1
                    run = False
                else:
                    src_offset[t * mr + m] = image_offset[m] + ih * xs_h + iw * xs_w
                    if m and src_offset[t * mr + m] != src_offset[t * mr + m - 1] + step:
                        run = False
            is_run[t] = step if run else 0
        for ic in range(plan.in_channels_per_group):
            xc = xg + ic * xs_c
            dst = a + (ic * taps + tap_first) * mr
            for t in range(n_taps):
                src = src_offset + t * mr
                if is_run[t] == 1:  # 1x1 stride 1 on NCHW, and most kxk tiles away from the border
                    # a size known at compile time: the copy is inlined, not a call to memcpy
                    if floating is float:
                        memcpy(dst, xc + src[0], GCONV_GEMM_MR_F32 * sizeof(float))
                    else:
                        memcpy(dst, xc + src[0], GCONV_GEMM_MR_F64 * sizeof(double))
                elif is_run[t] == 2:  # stride 2 on NCHW: every other value of a run (split by permutes, AVX-512)
                    if floating is float:
                        gconv_deinterleave_float(xc + src[0], mr, 2, 1, dst, 0)
                    else:
                        gconv_deinterleave_double(xc + src[0], mr, 2, 1, dst, 0)
                else:
                    for m in range(mr):
                        dst[m] = xc[src[m]] if src[m] >= 0 else 0
                dst += mr
        tap_first += n_taps


cdef void _pack_dot_rows(const Plan* plan, const GemmPlan* gp, const floating* x, Py_ssize_t g, Py_ssize_t m0,
                         floating* a, Py_ssize_t* out_offset) noexcept nogil:
    """Input rows of the dot tile of pixels m0 ..: a[m][k], k in the weight's (ic, kh, kw) order, zeros in
    the padding; rows past M are not written (the dot tile never reads them). Also writes out_offset[m]."""
    cdef Py_ssize_t n_m = min(gp.mr, gp.M - m0), K = gp.K, taps = gp.KHKW, icpg = plan.in_channels_per_group
    cdef Py_ssize_t xs_c = plan.x_stride_c
    cdef Py_ssize_t m, p, n, oh, ow, kh, kw, ih, iw, ic, tap
    cdef const floating* xg = x + g * icpg * xs_c
    cdef const floating* src
    cdef floating* row
    for m in range(n_m):
        p = m0 + m
        n = p // gp.HW
        oh = (p % gp.HW) // plan.W_out
        ow = p % plan.W_out
        out_offset[m] = n * plan.out_stride_n + oh * plan.out_stride_h + ow * plan.out_stride_w
        row = a + m * K
        for kh in range(plan.KH):
            ih = oh * plan.stride_h - plan.pad_top + kh * plan.dilation_h
            for kw in range(plan.KW):
                tap = kh * plan.KW + kw
                iw = ow * plan.stride_w - plan.pad_left + kw * plan.dilation_w
                if ih < 0 or ih >= plan.H or iw < 0 or iw >= plan.W:
                    for ic in range(icpg):
                        row[ic * taps + tap] = 0
                    continue
                src = xg + n * plan.x_stride_n + ih * plan.x_stride_h + iw * plan.x_stride_w
                if taps == 1 and xs_c == 1:  # 1x1 on channels-last, or on a 1x1 map
                    memcpy(row, src, icpg * sizeof(floating))
                else:
                    for ic in range(icpg):
                        row[ic * taps + tap] = src[ic * xs_c]
