# The kernel module's runtime face: instruction set, OpenMP controls (included by kernels/module.pxi).

cdef extern from "kernels/omp.h" nogil:
    int GCONV_OPENMP_ENABLED
    int omp_get_max_threads()
    int omp_get_num_threads()
    int omp_get_thread_num()
    void omp_set_num_threads(int n)
    const char* gconv_openmp_library()


cdef extern from "kernels/isa.h" nogil:
    const char* GCONV_ISA_NAME
    int GCONV_VECTOR_BYTES


ISA = GCONV_ISA_NAME.decode()  # the instruction set this module was compiled for


def openmp_enabled():
    """Whether this build runs its kernels in parallel.

    Returns
    -------
    bool
        True when the kernels were compiled with OpenMP, False for the serial fallback build.
    """
    return bool(GCONV_OPENMP_ENABLED)


def omp_max_threads():
    """omp_get_max_threads() of the calling OS thread (OMP_NUM_THREADS, threadpoolctl limits)."""
    return omp_get_max_threads()


def omp_set_max_threads(int n_threads):
    """omp_set_num_threads() for the calling OS thread only, as OpenMP defines it."""
    omp_set_num_threads(n_threads)


def openmp_library():
    """Path of the OpenMP runtime library this module's calls go to ('' without OpenMP or when unknown)."""
    return gconv_openmp_library().decode("utf-8", "surrogateescape")


def same_bytes(a, b, int n_threads=1):
    """Whether two C-contiguous arrays hold the same bytes (memcmp, GIL released): a weight cache's check.

    n_threads: split into as many parts of at least 256 KiB (a module's megabytes of weights: one core's memory
    bandwidth is the limit, two read them in 0.55x the time; a part of 256 KiB takes ~10 us, waking a thread
    ~1.5: ResNeXt's 3x3 g32 on 7x7 at batch 1 on two threads, 1.2 MB of weights, 1.1x faster than in one part)."""
    cdef Py_buffer a_view, b_view
    PyObject_GetBuffer(a, &a_view, PyBUF_SIMPLE)  # raises for an array that is not C-contiguous
    try:
        PyObject_GetBuffer(b, &b_view, PyBUF_SIMPLE)
        try:
            return _same_bytes(<const char*> a_view.buf, a_view.len, <const char*> b_view.buf, b_view.len,
                               n_threads)
        finally:
            PyBuffer_Release(&b_view)
    finally:
        PyBuffer_Release(&a_view)


cdef bint _same_bytes(const char* a, Py_ssize_t a_len, const char* b, Py_ssize_t n, int n_threads) noexcept:
    if a_len != n:
        return False
    if n == 0:
        return True
    cdef Py_ssize_t n_parts = max(1, min(<Py_ssize_t> n_threads, n // (1 << 18)))
    cdef Py_ssize_t part_size = (n + n_parts - 1) // n_parts, part, first
    cdef int differ = 0
    if n_parts == 1:
        with nogil:
            differ = memcmp(a, b, n)
        return differ == 0
    for part in prange(n_parts, nogil=True, num_threads=<int> n_parts, schedule="static"):
        first = part * part_size
        if memcmp(a + first, b + first, min(part_size, n - first)) != 0:
            differ += 1
    return differ == 0


def parallel_team_size(int n_threads):
    """Threads an OpenMP parallel region asked for n_threads really runs with (1 without OpenMP)."""
    cdef int team[1]
    team[0] = 1
    with nogil, parallel(num_threads=n_threads):
        if omp_get_thread_num() == 0:
            team[0] = omp_get_num_threads()
    return team[0]


def _aligned_empty(Py_ssize_t n, dtype):
    """A 1-D array of n elements of dtype whose data starts on a 64-byte cache line (packed weights that the
    tiles load as whole vectors: with AVX-512 each load would otherwise straddle two lines)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n + CACHE_LINE // itemsize, dtype=dtype)
    cdef Py_buffer view
    PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)  # its address (raw.ctypes.data took 0.9 us)
    cdef size_t address = <size_t> view.buf
    PyBuffer_Release(&view)
    cdef Py_ssize_t start = <Py_ssize_t> ((CACHE_LINE - address % CACHE_LINE) % CACHE_LINE) // itemsize
    return raw[start:start + n]


# A thread's scratch array, kept from one call to the next (the Winograd transforms' buffers, conv2d_lowered's
# lowered input), up to this many bytes (a larger one is the caller's for that call only)
SCRATCH_KEEP_BYTES = 16 * 1024 * 1024
_scratch_arrays = threading.local()


def _scratch_array(Py_ssize_t elements, dtype):
    """A flat array of elements values of dtype, this thread's from one call to the next: a fresh one of a
    few MiB is fresh pages from the system, and faulting them in took 15% of a Winograd 3x3 64->64 on 56x56
    (a lowered 3x3 512->512 on 7x7's 0.9 MB: 1.2% of its profile in clear_page, no change measured in steady
    state). On a cache line boundary; its contents are whatever the last call left."""
    cdef Py_ssize_t nbytes = _size_product(elements, np.dtype(dtype).itemsize)
    kept = getattr(_scratch_arrays, "array", None)
    if kept is None or kept.nbytes < nbytes:
        kept = _aligned_empty(nbytes, np.uint8)
        if nbytes <= SCRATCH_KEEP_BYTES:
            _scratch_arrays.array = kept
    return kept[:nbytes].view(dtype)
