# The forward kernels' arrays, taken through the buffer protocol as pointers, shapes and strides.
#
# A typed memoryview argument costs ~0.35 us to make (a Python object, its format string parsed): four or five
# of them were most of a small layer's kernel call (1x1 26->104 on a 1x1 map: 1.4 of 2.2 us). A PEP 3118
# request costs a tenth of that. The buffers are held for the whole call, as memoryviews would be, so that no
# other thread can resize or free the arrays while the kernels run without the GIL.

cdef struct Operands:
    # x (N, C_in, [D,] H, W) any strides, weight C-contiguous, bias (C_out,) or (0,), out writable with any
    # strides, and optionally packed: a caller's packed weights (C-contiguous). Taken in that order; the first
    # n_held are held. itemsize: 4 (float32) or 8 (float64), the same for all.
    Py_buffer x, weight, bias, out, packed
    int n_held
    bint has_packed
    Py_ssize_t itemsize


cdef inline Py_ssize_t _float_itemsize(const char* fmt) noexcept nogil:
    # a buffer format's item size if it is a native float32 ('f') or float64 ('d'), else 0
    if fmt == NULL:
        return 0
    if fmt[0] == c'@' or fmt[0] == c'=':
        fmt += 1
    if fmt[0] == 0 or fmt[1] != 0:
        return 0
    return 4 if fmt[0] == c'f' else 8 if fmt[0] == c'd' else 0


cdef int _take(Operands* ops, Py_buffer* view, object array, int flags, int ndim, str name) except -1:
    """Hold array's buffer in view: ndim dimensions (-1: any) of float32 or float64, the dtype of those taken
    before."""
    PyObject_GetBuffer(array, view, flags | PyBUF_FORMAT)  # raises for None, non-contiguous or read-only
    ops.n_held += 1
    cdef Py_ssize_t itemsize = _float_itemsize(view.format), axis
    if ndim >= 0 and view.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got {view.ndim}")
    if itemsize == 0 or (ops.itemsize != 0 and itemsize != ops.itemsize):
        raise ValueError(f"{name}: expected float32 or float64 (the dtype of the other arrays), got format "
                         f"{(<bytes> view.format).decode() if view.format != NULL else 'B'!r}")
    for axis in range(view.ndim):
        if view.strides[axis] % itemsize != 0:
            raise ValueError(f"{name}: strides must be whole elements")
    ops.itemsize = itemsize
    return 0


cdef int _take_operands(Operands* ops, x, weight, bias, out, packed, int ndim) except -1:
    """Hold the call's arrays (ndim: 4 for 2-D calls, 5 for 3-D ones); packed may be None. The caller releases
    them with _release_operands, also when this raises (ops.n_held counts what is held)."""
    ops.n_held = 0
    ops.itemsize = 0
    ops.has_packed = packed is not None
    _take(ops, &ops.x, x, PyBUF_STRIDES, ndim, "x")
    _take(ops, &ops.weight, weight, PyBUF_C_CONTIGUOUS, ndim, "weight")
    _take(ops, &ops.bias, bias, PyBUF_C_CONTIGUOUS, 1, "bias")
    _take(ops, &ops.out, out, PyBUF_STRIDES | PyBUF_WRITABLE, ndim, "out")
    if ops.has_packed:
        _take(ops, &ops.packed, packed, PyBUF_C_CONTIGUOUS, -1, "packed_weight")
    return 0


cdef void _release_operands(Operands* ops) noexcept:
    cdef Py_buffer* held[5]
    held[0], held[1], held[2], held[3], held[4] = &ops.x, &ops.weight, &ops.bias, &ops.out, &ops.packed
    cdef int i
    for i in range(ops.n_held):
        PyBuffer_Release(held[i])
    ops.n_held = 0


cdef inline const void* _bias_data(const Operands* ops) noexcept nogil:
    # the bias's first element, or NULL for no bias
    return ops.bias.buf if ops.bias.shape[0] != 0 else NULL


cdef inline Py_ssize_t _packed_size(const Operands* ops) noexcept nogil:
    # the packed weights' elements (0 when none were given)
    return ops.packed.len // ops.itemsize if ops.has_packed else 0
