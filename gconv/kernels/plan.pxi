# The plan of one forward call (geometry, memory strides, tile, blocks, slab), passed by pointer to every
# work item of the direct and loops families, and the integer helpers they share.

cdef struct Plan:
    # input (N, C_in, H, W), weight (C_out, in_channels_per_group, KH, KW), output (N, C_out, H_out, W_out)
    Py_ssize_t N, C_in, H, W, C_out, KH, KW, H_out, W_out
    Py_ssize_t groups, in_channels_per_group, out_channels_per_group
    Py_ssize_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w
    # depth, for 3-D calls (a 2-D call has D = KD = D_out = 1): each depth tap kd is a channel of its own,
    # so the micro-kernel sees n_virtual = in_channels_per_group * KD input channels, channel v = ic * KD + kd
    Py_ssize_t D, KD, D_out, stride_d, pad_front, dilation_d, x_stride_d, out_stride_d, n_virtual
    # element strides of input and output (N, C, H, W): NCHW, channels-last or any view
    Py_ssize_t x_stride_n, x_stride_c, x_stride_h, x_stride_w
    Py_ssize_t out_stride_n, out_stride_c, out_stride_h, out_stride_w
    # register tile: oc_block channels x tile_rows x tile_cols outputs (see kernels/direct/tile.h), laid over
    # rows and columns (grid) or over the block's flattened outputs (flat: stride 1, one channel deep)
    int oc_block
    bint flat
    bint accumulate  # add to out (a 3-D convolution's depth taps) instead of overwriting it
    Py_ssize_t tile_rows, tile_cols, n_oc_blocks
    # work item = (((n * D_out + od) * groups + g) * n_row_blocks + row_block) * n_col_blocks + col_block, or with the
    # group varying fastest when channels are adjacent in memory (channels-last), so that consecutive
    # items share the cache lines they read and write
    Py_ssize_t rows_per_block, cols_per_block, n_row_blocks, n_col_blocks
    bint groups_inner
    # per-thread slab: [v][slab_rows][n_phases][phase_len]; rows are slab_row_len apart. Only the
    # column phases (kw * dilation_w) % stride_w that some tap reads are stored (at most KW of them).
    Py_ssize_t n_phases, slab_rows, phase_len, slab_row_len, slab_size


# Scratch sizes in elements stop here, so that one in bytes (at most 8 per element) still fits in Py_ssize_t.
cdef Py_ssize_t SIZE_CAP = PY_SSIZE_T_MAX // 8


cdef inline Py_ssize_t _size_product(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """a * b for sizes a, b >= 0, or SIZE_CAP when larger: huge dilations must not wrap a size to a small one."""
    if a != 0 and b > SIZE_CAP // a:
        return SIZE_CAP
    return a * b


cdef enum:
    # Per-thread scratch is malloc'd this many bytes larger and used from its first line boundary on
    CACHE_LINE = 64


cdef inline void* _cache_line(char* memory) noexcept nogil:
    """The first cache-line boundary past memory (malloc'd CACHE_LINE bytes larger): the tiles load and store
    whole AVX-512 vectors there, which would otherwise each straddle two lines wherever malloc placed it."""
    return memory + CACHE_LINE - (<size_t> memory) % CACHE_LINE


cdef inline Py_ssize_t _round_up(Py_ssize_t nbytes) noexcept nogil:
    """nbytes rounded up to whole cache lines: where a part of one allocation ends so the next starts on one."""
    return (nbytes + CACHE_LINE - 1) // CACHE_LINE * CACHE_LINE


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b  # a >= 0, b > 0


cdef inline Py_ssize_t _floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # b > 0. C division truncates toward zero; the column bounds need floor for negative a.
    cdef Py_ssize_t q = a / b
    if a % b != 0 and a < 0:
        q -= 1
    return q


cdef inline Py_ssize_t _ceil_div_signed(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return -_floor_div(-a, b)
