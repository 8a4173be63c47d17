"""Memory layouts the kernels read in place (NCHW, channels-last, row views), and when a copy is needed."""
import numpy as np


def coerce(a, dtype):
    """C-contiguous, aligned, native byte order, of dtype; no copy when the array already is."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()  # a view into a byte buffer at an odd offset


def is_channels_last(a):
    """An (N, C, H, W) view of (N, H, W, C) memory, as x.transpose(0, 3, 1, 2) of an NHWC array.

    As torch's memory-format rule: an array that is also C-contiguous (C == 1) counts as NCHW.
    """
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def input_needs_copy(x4, dtype, channels_last):
    """Whether the kernel, which reads any strides, still needs a C-contiguous copy of the input.

    Only where the dtype, byte order or alignment must change, or where rows are not contiguous and
    channels not adjacent either (e.g. Fortran order), which packs slower than it copies. NCHW,
    channels-last and views with contiguous rows (slices, reversed axes) are read in place.
    """
    in_place = abs(x4.strides[-1]) == dtype.itemsize or channels_last
    return not (x4.dtype == dtype and x4.flags.aligned and in_place)


