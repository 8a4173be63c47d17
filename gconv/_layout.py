"""Memory layouts the kernels read in place (NCHW, channels-last, row views), and when a copy is needed."""

import numpy as np


def coerce(a, dtype):
    """C-contiguous, aligned, native byte order, of dtype; no copy when the array already is."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()  # a view into a byte buffer at an odd offset


def is_channels_last(a):
    """An (N, C, *spatial) view of (N, *spatial, C) memory (2-D or 3-D), as x.transpose(0, 3, 1, 2) of NHWC.

    As torch's memory-format rule (channels_last, channels_last_3d): an array that is also C-contiguous
    (C == 1) counts as NCHW.
    """
    if a.ndim not in (4, 5) or a.flags.c_contiguous:
        return False
    return a.transpose(0, *range(2, a.ndim), 1).flags.c_contiguous


def input_needs_copy(x4, dtype, channels_last):
    """Whether the kernel, which reads any strides, still needs a C-contiguous copy of the input.

    Only where the dtype, byte order or alignment must change, or where rows are not contiguous and
    channels not adjacent either (e.g. Fortran order), which packs slower than it copies. NCHW,
    channels-last and views with contiguous rows (slices, reversed axes) are read in place.
    """
    in_place = abs(x4.strides[-1]) == dtype.itemsize or channels_last
    return not (x4.dtype == dtype and x4.flags.aligned and in_place)
