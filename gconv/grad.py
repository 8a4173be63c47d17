"""Gradients of the convolution: torch.nn.grad's conv{1,2}d_input / conv{1,2}d_weight, and the bias gradient."""
import numpy as np

from . import _dispatch, _select
from . import functional as F
from ._threads import resolve_n_threads

__all__ = ["conv1d_input", "conv1d_weight", "conv2d_input", "conv2d_weight", "bias"]


def _geometry(n_spatial, stride, padding, dilation, groups, op):
    stride = F.int_tuple(stride, "stride", op, n_spatial)
    padding = F.int_tuple(padding, "padding", op, n_spatial)
    dilation = F.int_tuple(dilation, "dilation", op, n_spatial)
    for name, values in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        if len(values) != n_spatial:
            raise ValueError(f"{op}(): {name} needs {n_spatial} values, got {values}")
    if min(stride) <= 0 or min(dilation) <= 0 or min(padding) < 0 or groups <= 0:
        raise ValueError(f"{op}(): stride, dilation and groups must be positive and padding non-negative")
    return stride, padding, dilation


def _as_4d(a, n_spatial):
    return a[:, :, np.newaxis, :] if n_spatial == 1 else a


def _output_size(size, pad_before, pad_after, k, s, d):
    return (size + pad_before + pad_after - d * (k - 1) - 1) // s + 1


def input_grad(grad_output, weight, input_hw, stride, pads, dilation, groups, n_threads=None):
    """Gradient w.r.t. the input of a 4-D convolution (1-D as H = 1), as a convolution itself.

    grad_output (N, C_out, H_out, W_out); weight (C_out, C_in // groups, KH, KW); input_hw = (H, W);
    pads = ((top, bottom), (left, right)). The transposed convolution is a plain one with the kernels
    flipped and input and output channels swapped within each group, over grad_output framed by
    d * (k - 1) - pad zeros (and, for stride s, spread out to every s-th position first).
    """
    n, c_out = grad_output.shape[:2]
    ocpg, icpg, kh, kw = weight.shape[0] // groups, weight.shape[1], weight.shape[2], weight.shape[3]
    flipped = weight.reshape(groups, ocpg, icpg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(groups * icpg, ocpg, kh, kw)
    flipped = np.ascontiguousarray(flipped[:, :, ::-1, ::-1])
    frame_before = [d * (k - 1) - before for d, k, (before, _) in zip(dilation, (kh, kw), pads)]
    grad_input = np.empty((n, groups * icpg, *input_hw), dtype=grad_output.dtype)
    if grad_input.size == 0:
        return grad_input
    if tuple(stride) != (1, 1) or min(frame_before) < 0:
        # spread grad_output[o] to position o * s + frame_before of a zero frame, then frame 0
        frame = [size + d * (k - 1) for size, d, k in zip(input_hw, dilation, (kh, kw))]
        spread = np.zeros((n, c_out, *frame), dtype=grad_output.dtype)
        target, source = [], []
        for axis, (size, s, start) in enumerate(zip(frame, stride, frame_before)):
            first = max(0, -(start // s))  # first o with o * s + start >= 0
            last = min(grad_output.shape[2 + axis], (size - 1 - start) // s + 1)
            count = max(0, last - first)
            target.append(slice(first * s + start, first * s + start + s * count, s) if count else slice(0, 0))
            source.append(slice(first, first + count))
        spread[:, :, target[0], target[1]] = grad_output[:, :, source[0], source[1]]
        grad_output, frame_before = spread, [0, 0]
    # the forward kernel frames with zeros itself: frame_before on top and left, the output size decides the rest
    _select.conv2d(np.ascontiguousarray(grad_output), flipped, np.empty(0, dtype=flipped.dtype), grad_input,
                   (1, 1), tuple(frame_before), tuple(dilation), groups, resolve_n_threads(n_threads))
    return grad_input


def weight_grad(x, grad_output, weight_shape, stride, pads_before, dilation, groups, n_threads=None):
    """Gradient w.r.t. the weight of a 4-D convolution (1-D as H = 1), by the Cython kernel."""
    dtype = x.dtype
    grad_weight = np.empty(weight_shape, dtype=dtype)
    _dispatch.kernels.conv2d_weight_grad(
        np.ascontiguousarray(x), np.ascontiguousarray(grad_output, dtype=dtype), grad_weight,
        tuple(stride), tuple(pads_before), tuple(dilation), groups, resolve_n_threads(n_threads))
    return grad_weight


def _check(grad_output, other, n_spatial, op):
    for name, a in (("grad_output", grad_output), ("weight" if "input" in op else "input", other)):
        F._check_array(a, name, op)
        if a.ndim != n_spatial + 2:
            raise ValueError(f"{op}(): {name} must have {n_spatial + 2} dimensions (batched), got shape {a.shape}")
        if F.native_dtype(a.dtype) not in F.SUPPORTED_DTYPES:
            raise TypeError(f"{op}(): {name} must be float32 or float64, got {a.dtype}")
    if F.native_dtype(grad_output.dtype) != F.native_dtype(other.dtype):
        raise TypeError(f"{op}(): grad_output and {'weight' if 'input' in op else 'input'} must share a dtype")


def _conv_input(n_spatial, input_size, weight, grad_output, stride, padding, dilation, groups, n_threads):
    op = f"conv{n_spatial}d_input"
    _check(grad_output, weight, n_spatial, op)
    stride, padding, dilation = _geometry(n_spatial, stride, padding, dilation, groups, op)
    input_size = F.int_tuple(input_size, "input_size", op)
    if min(input_size, default=0) < 0:
        raise ValueError(f"{op}(): input_size {input_size} has a negative size")
    if len(input_size) != n_spatial + 2 or weight.shape[0] != grad_output.shape[1] or weight.shape[0] % groups:
        raise ValueError(f"{op}(): input_size {input_size}, weight {weight.shape} and grad_output "
                         f"{grad_output.shape} do not fit together with groups={groups}")
    expected = tuple(_output_size(size, p, p, k, s, d) for size, p, k, s, d
                     in zip(input_size[2:], padding, weight.shape[2:], stride, dilation))
    if grad_output.shape[2:] != expected or input_size[1] != weight.shape[1] * groups:
        raise ValueError(f"{op}(): grad_output has shape {grad_output.shape}, but a convolution of an input of "
                         f"size {input_size} gives {(input_size[0], weight.shape[0], *expected)}")
    dtype = F.native_dtype(weight.dtype)
    frame = [size + d * (k - 1) for size, d, k in zip(input_size[2:], dilation, weight.shape[2:])]
    F.check_allocation(int(np.prod(input_size, dtype=object)) * dtype.itemsize, f"{op}: the gradient of size", input_size)
    F.check_allocation(int(np.prod((input_size[0], weight.shape[0], *frame), dtype=object)) * dtype.itemsize,
                       f"{op}: the spread grad_output of size", (input_size[0], weight.shape[0], *frame))
    gy, w = _as_4d(grad_output.astype(dtype, copy=False), n_spatial), _as_4d(weight.astype(dtype, copy=False), n_spatial)
    hw = input_size[2:] if n_spatial == 2 else (1, input_size[2])
    geometry = [(s, p, d) for s, p, d in zip(stride, padding, dilation)]
    if n_spatial == 1:
        geometry = [(1, 0, 1)] + geometry
    (sh, ph, dh), (sw, pw, dw) = geometry
    grad_input = input_grad(gy, w, hw, (sh, sw), ((ph, ph), (pw, pw)), (dh, dw), groups, n_threads)
    return grad_input[:, :, 0, :] if n_spatial == 1 else grad_input


def _conv_weight(n_spatial, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads):
    op = f"conv{n_spatial}d_weight"
    _check(grad_output, input, n_spatial, op)
    stride, padding, dilation = _geometry(n_spatial, stride, padding, dilation, groups, op)
    weight_size = F.int_tuple(weight_size, "weight_size", op)
    expected = tuple(_output_size(size, p, p, k, s, d) for size, p, k, s, d
                     in zip(input.shape[2:], padding, weight_size[2:], stride, dilation))
    if (len(weight_size) != n_spatial + 2 or weight_size[0] != grad_output.shape[1] or weight_size[0] % groups
            or input.shape[1] != weight_size[1] * groups or grad_output.shape[0] != input.shape[0]
            or grad_output.shape[2:] != expected):
        raise ValueError(f"{op}(): input {input.shape}, weight_size {weight_size} and grad_output "
                         f"{grad_output.shape} do not fit together with groups={groups}")
    dtype = F.native_dtype(input.dtype)
    x, gy = _as_4d(input.astype(dtype, copy=False), n_spatial), _as_4d(grad_output, n_spatial)
    if n_spatial == 1:
        stride, padding, dilation = (1, *stride), (0, *padding), (1, *dilation)
        weight_size = weight_size[:2] + (1,) + weight_size[2:]
    grad_weight = weight_grad(x, gy, weight_size, stride, padding, dilation, groups, n_threads)
    return grad_weight[:, :, 0, :] if n_spatial == 1 else grad_weight


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *, n_threads=None):
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


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *, n_threads=None):
    """Gradient of ``conv2d`` w.r.t. its weight, as ``torch.nn.grad.conv2d_weight``.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W)
    weight_size : tuple (C_out, C_in // groups, KH, KW)
    grad_output : ndarray, shape (N, C_out, H_out, W_out)
    stride, padding, dilation, groups : as the forward call (integer padding)

    Returns
    -------
    ndarray, shape weight_size, of the input's dtype
    """
    return _conv_weight(2, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads)


def conv1d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *, n_threads=None):
    """Gradient of ``conv1d`` w.r.t. its input, as ``torch.nn.grad.conv1d_input``; shapes as conv2d_input
    without H."""
    return _conv_input(1, input_size, weight, grad_output, stride, padding, dilation, groups, n_threads)


def conv1d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *, n_threads=None):
    """Gradient of ``conv1d`` w.r.t. its weight, as ``torch.nn.grad.conv1d_weight``; shapes as conv2d_weight
    without H."""
    return _conv_weight(1, input, weight_size, grad_output, stride, padding, dilation, groups, n_threads)


def bias(grad_output):
    """Gradient w.r.t. the bias: grad_output (N, C_out, ...) summed over every axis but the channels."""
    return grad_output.sum(axis=(0, *range(2, grad_output.ndim)))
