"""Gradients of the convolution: torch.nn.grad's conv{1,2}d_input / conv{1,2}d_weight, and the bias gradient."""

from __future__ import annotations

import itertools
import math
from typing import SupportsIndex

import numpy as np

from . import _dispatch, _geometry, _select
from ._checks import check_allocation, check_grad_arrays, check_grad_geometry, int_tuple, native_dtype
from ._threads import resolve_n_threads
from ._typing import FloatArray, IntOrTuple, Shape

__all__ = ["conv1d_input", "conv1d_weight", "conv2d_input", "conv2d_weight", "conv3d_input", "conv3d_weight", "bias"]


def _phases(size, kernel, stride, dilation, frame_before):
    """The stride phases of one axis of the input gradient that some tap reaches, as stride-1 convolutions.

    Input position i = s * q + r reads grad_output[(i - frame_before + t * d) / s] through flipped tap t
    whenever that is an integer: for residue r, the taps t_0, t_0 + s/g, ... (g = gcd(d, s)) at grad_output
    offsets c_r, c_r + d/g, ... Returns [(r, taps slice, dilation d/g, grad_output start, pad before)], one per
    reached residue r < size (at most one per tap, so a huge stride costs no more than the kernel has taps).
    """
    g = math.gcd(dilation, stride)
    tap_step, sub_dilation = stride // g, dilation // g
    first_tap = {}
    for t in range(min(tap_step, kernel)):  # every later tap repeats one of these residues
        r = (frame_before - t * dilation) % stride
        if r < size:
            first_tap.setdefault(r, t)
    phases = []
    for r, first in sorted(first_tap.items()):
        offset = (r - frame_before + first * dilation) // stride  # exact by the choice of r
        start = max(offset, 0)
        phases.append((r, slice(first, kernel, tap_step), sub_dilation, start, start - offset))
    return phases


def input_grad(grad_output, weight, grad_input, geometry, groups, n_threads=None):
    """Gradient w.r.t. the input of a 2-D or 3-D convolution (1-D lifted), as convolutions; into grad_input.

    grad_output (N, C_out, *out_spatial), any strides; weight (C_out, C_in // groups, *kernel_size);
    grad_input (N, C_in, *spatial), any strides, written whole; geometry: the forward's. This is also the
    transposed convolution of grad_output (gconv.conv_transpose*d): a plain convolution with the kernels
    flipped and input and output channels swapped within each group. A stride s is split into its phases
    (each input position's residue mod s, per axis): each phase is a stride-1 convolution of grad_output
    with the taps that reach it, written through a strided view of the gradient, so no zeros are inserted
    or multiplied.
    """
    n_spatial = weight.ndim - 2
    out_channels_per_group, in_channels_per_group = weight.shape[0] // groups, weight.shape[1]
    kernel_size = weight.shape[2:]
    flipped = (
        weight.reshape(groups, out_channels_per_group, in_channels_per_group, *kernel_size)
        .swapaxes(1, 2)
        .reshape(groups * in_channels_per_group, out_channels_per_group, *kernel_size)
    )
    flipped = flipped[(slice(None), slice(None)) + (slice(None, None, -1),) * n_spatial]
    frame_before = geometry.transposed().pad_before
    input_spatial = grad_input.shape[2:]
    n_threads = resolve_n_threads(n_threads)
    no_bias = np.empty(0, dtype=flipped.dtype)
    phases = [
        _phases(size, k, s, d, fb)
        for size, k, s, d, fb in zip(input_spatial, kernel_size, geometry.stride, geometry.dilation, frame_before)
    ]
    # phases that no tap reaches (a stride beyond the dilated kernel) or that start past grad_output's end
    # read nothing: those positions are zero
    reached = [[phase for phase in axis if phase[3] < size] for axis, size in zip(phases, grad_output.shape[2:])]
    complete = all(len(axis) == min(s, size) for axis, s, size in zip(reached, geometry.stride, input_spatial))
    if grad_input.size == 0:
        return grad_input
    if not complete:
        grad_input[...] = 0
    everything = (slice(None), slice(None))
    for combination in itertools.product(*reached):
        residues, taps, dilations, starts, pads = zip(*combination)
        target = grad_input[everything + tuple(slice(r, None, s) for r, s in zip(residues, geometry.stride))]
        sub_kernel = np.ascontiguousarray(flipped[everything + taps])
        _select.convolution(
            grad_output[everything + tuple(slice(start, None) for start in starts)],
            sub_kernel,
            no_bias,
            target,
            (1,) * n_spatial,
            pads,
            dilations,
            groups,
            n_threads,
        )
    return grad_input


def weight_grad(x, grad_output, weight_shape, geometry, groups, n_threads=None):
    """Gradient w.r.t. the weight of a 2-D or 3-D convolution (1-D lifted), by the Cython kernel.

    A 3-D weight's depth taps are 2-D weight gradients: for tap kd, the input planes it reads and the
    output planes they feed, every image's planes as one batch.
    """
    dtype = x.dtype
    grad_weight = np.empty(weight_shape, dtype=dtype)
    n_threads = resolve_n_threads(n_threads)
    if len(weight_shape) == 4:
        _dispatch.kernels.conv2d_weight_grad(
            np.ascontiguousarray(x),
            np.ascontiguousarray(grad_output, dtype=dtype),
            grad_weight,
            geometry.stride,
            geometry.pad_before,
            geometry.dilation,
            groups,
            n_threads,
        )
        return grad_weight
    s, p, d = geometry.stride[0], geometry.pad_before[0], geometry.dilation[0]
    plane = geometry._replace(
        kernel_size=geometry.kernel_size[1:],
        stride=geometry.stride[1:],
        padding=geometry.padding[1:],
        dilation=geometry.dilation[1:],
    )
    for kd in range(weight_shape[2]):
        first, last, start = _geometry.depth_tap_planes(kd, x.shape[2], grad_output.shape[2], s, p, d)
        if first >= last:
            grad_weight[:, :, kd] = 0
            continue
        # (N, C, planes, H, W) -> (N * planes, C, H, W), copied: the kernel reads C-contiguous arrays
        planes = x[:, :, start : start + (last - first - 1) * s + 1 : s].transpose(0, 2, 1, 3, 4)
        grads = grad_output[:, :, first:last].transpose(0, 2, 1, 3, 4)
        planes = np.ascontiguousarray(planes).reshape(-1, *x.shape[1:2], *x.shape[3:])
        grads = np.ascontiguousarray(grads, dtype=dtype).reshape(-1, *grad_output.shape[1:2], *grad_output.shape[3:])
        grad_weight[:, :, kd] = weight_grad(
            planes, grads, weight_shape[:2] + weight_shape[3:], plane, groups, n_threads
        )
    return grad_weight


def _parse(n_spatial, kernel_size, stride, padding, dilation, groups, op):
    """torch.nn.grad's arguments as a Geometry (symmetric integer padding), with torch's errors."""
    stride = int_tuple(stride, "stride", op)
    padding = int_tuple(padding, "padding", op)
    dilation = int_tuple(dilation, "dilation", op)
    stride, padding, dilation = check_grad_geometry(stride, padding, dilation, groups, n_spatial)
    return _geometry.Geometry(tuple(kernel_size), stride, tuple((p, p) for p in padding), dilation)


def _conv_input(n_spatial, input_size, weight, grad_output, stride, padding, dilation, groups, n_threads):
    op = f"conv{n_spatial}d_input"
    check_grad_arrays(grad_output, weight, "weight", n_spatial, op)
    geometry = _parse(n_spatial, weight.shape[2:], stride, padding, dilation, groups, op)
    input_size = int_tuple(input_size, "input_size", op)
    if min(input_size, default=0) < 0:
        raise ValueError(f"{op}(): input_size {input_size} has a negative size")
    if len(input_size) != n_spatial + 2 or weight.shape[0] != grad_output.shape[1] or weight.shape[0] % groups:
        raise ValueError(
            f"{op}(): input_size {input_size}, weight {weight.shape} and grad_output "
            f"{grad_output.shape} do not fit together with groups={groups}"
        )
    expected = geometry.output_shape(input_size[2:])
    if grad_output.shape[2:] != expected or input_size[1] != weight.shape[1] * groups:
        raise ValueError(
            f"{op}(): grad_output has shape {grad_output.shape}, but a convolution of an input of "
            f"size {input_size} gives {(input_size[0], weight.shape[0], *expected)}"
        )
    dtype = native_dtype(weight.dtype)
    check_allocation(_geometry.size(input_size) * dtype.itemsize, f"{op}: the gradient of size", input_size)
    gy = _geometry.lift(grad_output.astype(dtype, copy=False))
    w = _geometry.lift(weight.astype(dtype, copy=False))
    lifted = geometry.lifted()
    grad_input = np.empty(input_size, dtype=dtype)
    input_grad(gy, w, _geometry.lift(grad_input), lifted, groups, n_threads)
    return grad_input


def _conv_weight(n_spatial, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads):
    op = f"conv{n_spatial}d_weight"
    check_grad_arrays(grad_output, input, "input", n_spatial, op)
    weight_size = int_tuple(weight_size, "weight_size", op)
    geometry = _parse(n_spatial, weight_size[2:], stride, padding, dilation, groups, op)
    expected = geometry.output_shape(input.shape[2:]) if len(weight_size) == n_spatial + 2 else None
    if (
        len(weight_size) != n_spatial + 2
        or weight_size[0] != grad_output.shape[1]
        or weight_size[0] % groups
        or input.shape[1] != weight_size[1] * groups
        or grad_output.shape[0] != input.shape[0]
        or grad_output.shape[2:] != expected
    ):
        raise ValueError(
            f"{op}(): input {input.shape}, weight_size {weight_size} and grad_output "
            f"{grad_output.shape} do not fit together with groups={groups}"
        )
    dtype = native_dtype(input.dtype)
    x, gy = _geometry.lift(input.astype(dtype, copy=False)), _geometry.lift(grad_output)
    lifted_size = weight_size[:2] + (1,) * max(0, _geometry.KERNEL_RANK - n_spatial) + weight_size[2:]
    return _geometry.drop(weight_grad(x, gy, lifted_size, geometry.lifted(), groups, n_threads), n_spatial)


def conv2d_input(
    input_size: Shape,
    weight: FloatArray,
    grad_output: FloatArray,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: SupportsIndex | None = None,
) -> FloatArray:
    """Gradient of ``conv2d`` w.r.t. its input, as ``torch.nn.grad.conv2d_input``.

    Parameters
    ----------
    input_size : tuple (N, C_in, H, W)
    weight : ndarray, shape (C_out, C_in // groups, KH, KW)
    grad_output : ndarray, shape (N, C_out, H_out, W_out)
    stride, padding, dilation, groups : as the forward call (integer padding)

    Returns
    -------
    ndarray, shape input_size, of the weight's dtype
    """
    return _conv_input(2, input_size, weight, grad_output, stride, padding, dilation, groups, n_threads)


def conv2d_weight(
    input: FloatArray,
    weight_size: Shape,
    grad_output: FloatArray,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: SupportsIndex | None = None,
) -> FloatArray:
    """Gradient of ``conv2d`` w.r.t. its weight, as ``torch.nn.grad.conv2d_weight``.

    The arguments mirror ``conv2d_input``'s, with the input array in place of the weight: input (N, C_in, H, W),
    weight_size (C_out, C_in // groups, KH, KW), grad_output (N, C_out, H_out, W_out). Returns an array of
    shape weight_size and the input's dtype.
    """
    return _conv_weight(2, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads)


def conv1d_input(
    input_size: Shape,
    weight: FloatArray,
    grad_output: FloatArray,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: SupportsIndex | None = None,
) -> FloatArray:
    """Gradient of ``conv1d`` w.r.t. its input, as ``torch.nn.grad.conv1d_input``; shapes as conv2d_input
    without H."""
    return _conv_input(1, input_size, weight, grad_output, stride, padding, dilation, groups, n_threads)


def conv1d_weight(
    input: FloatArray,
    weight_size: Shape,
    grad_output: FloatArray,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: SupportsIndex | None = None,
) -> FloatArray:
    """Gradient of ``conv1d`` w.r.t. its weight, as ``torch.nn.grad.conv1d_weight``; shapes as conv2d_weight
    without H."""
    return _conv_weight(1, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads)


def conv3d_input(
    input_size: Shape,
    weight: FloatArray,
    grad_output: FloatArray,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: SupportsIndex | None = None,
) -> FloatArray:
    """Gradient of ``conv3d`` w.r.t. its input, as ``torch.nn.grad.conv3d_input``; shapes as conv2d_input with D."""
    return _conv_input(3, input_size, weight, grad_output, stride, padding, dilation, groups, n_threads)


def conv3d_weight(
    input: FloatArray,
    weight_size: Shape,
    grad_output: FloatArray,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: SupportsIndex | None = None,
) -> FloatArray:
    """Gradient of ``conv3d`` w.r.t. its weight, as ``torch.nn.grad.conv3d_weight``; shapes as conv2d_weight
    with D."""
    return _conv_weight(3, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads)


def bias(grad_output: FloatArray) -> FloatArray:
    """Gradient w.r.t. the bias: grad_output (N, C_out, ...) summed over every axis but the channels."""
    return grad_output.sum(axis=(0, *range(2, grad_output.ndim)))
