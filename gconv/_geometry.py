"""One N-d convolution geometry: 'same' split, output size, the transposed mapping and the lift of lower ranks.

Every face (modules, functional, grad, dask) takes its arithmetic from here; torch's checks and messages live
in gconv._checks. Sizes are per spatial axis, in the array's order (D, H, W), padding as (before, after).
"""

from typing import NamedTuple

import numpy as np

# The kernels are 2-D: lower ranks run as 2-D with the missing leading axes of size 1; 3-D runs as 2-D
# calls over depth planes (gconv._select.convolution).
KERNEL_RANK = 2


def same_padding(kernel_size, dilation):
    """'same' padding per axis as (before, after): d * (k - 1) in total, the odd extra after (torch's rule)."""
    pads = []
    for k, d in zip(kernel_size, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def symmetric_and_extra(pads):
    """Split (before, after) pairs into a symmetric padding and the extra that torch pads explicitly first."""
    return tuple(min(b, a) for b, a in pads), tuple(abs(a - b) for b, a in pads)


def reversed_padding_repeated_twice(pads):
    """F.pad's argument for (before, after) pairs: last axis first, as torch's module attribute of that name."""
    return tuple(p for before, after in reversed(pads) for p in (before, after))


def output_size(size, pad_before, pad_after, kernel, stride, dilation):
    """Output length of one axis: (size + padding - dilated extent) // stride + 1."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


class Geometry(NamedTuple):
    """Kernel size, stride, (before, after) padding and dilation of a convolution, one entry per spatial axis."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]

    @property
    def pad_before(self):
        return tuple(before for before, _ in self.padding)

    def output_shape(self, input_spatial):
        """Spatial output shape for a spatial input shape."""
        return tuple(
            output_size(size, b, a, k, s, d)
            for size, (b, a), k, s, d in zip(input_spatial, self.padding, self.kernel_size, self.stride, self.dilation)
        )

    def transposed_output_shape(self, input_spatial, output_padding):
        """Spatial output shape of the transposed convolution (the shape whose gradient input_spatial is)."""
        return tuple(
            (size - 1) * s - b - a + d * (k - 1) + op + 1
            for size, (b, a), k, s, d, op in zip(
                input_spatial, self.padding, self.kernel_size, self.stride, self.dilation, output_padding
            )
        )

    def lifted(self, rank=KERNEL_RANK):
        """The same convolution as a rank-`rank` one over leading axes of size 1 (Conv1d as a 1 x L image)."""
        extra = rank - len(self.kernel_size)
        if extra <= 0:
            return self
        return Geometry(
            (1,) * extra + self.kernel_size,
            (1,) * extra + self.stride,
            ((0, 0),) * extra + self.padding,
            (1,) * extra + self.dilation,
        )

    def transposed(self):
        """The convolution that maps grad_output back onto the input (the input gradient, a transposed conv).

        With the kernels flipped, input position i reads grad_output at (i - frame_before + t * d) / s
        through tap t wherever that is an integer, frame_before = d * (k - 1) - before per axis; at stride 1
        that is a plain convolution framed by frame_before zeros at the start (the end follows from the input
        size). Returns that stride-1 geometry; gconv.grad splits a stride s into its phases.
        """
        return Geometry(
            self.kernel_size,
            (1,) * len(self.stride),
            tuple(
                (d * (k - 1) - before, 0) for d, k, (before, _) in zip(self.dilation, self.kernel_size, self.padding)
            ),
            self.dilation,
        )


def depth_tap_planes(kd, depth, depth_out, stride, pad_before, dilation):
    """Which output planes read an input plane through depth tap kd: (first, last, first input plane).

    Output plane o reads input plane o * stride - pad_before + kd * dilation; the range [first, last) keeps
    those inside [0, depth). A 3-D convolution runs as 2-D ones over these planes.
    """
    first = max(0, -((kd * dilation - pad_before) // stride))
    last = min(depth_out, (depth - 1 + pad_before - kd * dilation) // stride + 1)
    return first, last, first * stride - pad_before + kd * dilation


def lift(array, rank=KERNEL_RANK):
    """A view of an (N, C, *spatial) array with leading spatial axes of size 1 up to `rank` spatial axes."""
    extra = rank - (array.ndim - 2)
    return np.expand_dims(array, tuple(range(2, 2 + extra))) if extra > 0 else array


def drop(array, n_spatial):
    """Undo lift: the view with only the last n_spatial spatial axes."""
    extra = array.ndim - 2 - n_spatial
    return array[(slice(None), slice(None)) + (0,) * extra] if extra > 0 else array


def size(shape):
    """Number of elements of a shape, exact for any size (no int64 overflow)."""
    n = 1
    for s in shape:
        n *= int(s)
    return n


__all__ = [
    "Geometry",
    "same_padding",
    "symmetric_and_extra",
    "reversed_padding_repeated_twice",
    "output_size",
    "depth_tap_planes",
    "lift",
    "drop",
    "size",
]
