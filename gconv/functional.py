"""Functional layer: torch's argument checks and messages, padding, output geometry and kernel dispatch."""
import operator
import os

import numpy as np

from . import _select
from ._threads import resolve_n_threads

__all__ = ["conv1d", "conv2d"]

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# torch's names for a dtype in its three message styles: C++ type, ScalarType, legacy tensor type.
_TORCH_DTYPE_NAMES = {
    "float32": ("float", "Float", "torch.FloatTensor"),
    "float64": ("double", "Double", "torch.DoubleTensor"),
    "float16": ("c10::Half", "Half", "torch.HalfTensor"),
    "int64": ("long int", "Long", "torch.LongTensor"),
    "int32": ("int", "Int", "torch.IntTensor"),
    "int16": ("short int", "Short", "torch.ShortTensor"),
    "int8": ("signed char", "Char", "torch.CharTensor"),
    "uint8": ("unsigned char", "Byte", "torch.ByteTensor"),
    "bool": ("bool", "Bool", "torch.BoolTensor"),
    "complex64": ("c10::complex<float>", "ComplexFloat", "torch.ComplexFloatTensor"),
    "complex128": ("c10::complex<double>", "ComplexDouble", "torch.ComplexDoubleTensor"),
}

# No C index in the kernels may leave Py_ssize_t; sizes and extents are kept below this.
_MAX_EXTENT = 2**62


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no limit known
        return _MAX_EXTENT


_PHYSICAL_MEMORY = _physical_memory()


_ALLOCATION_LIMIT = min(_MAX_EXTENT, _PHYSICAL_MEMORY)


def check_allocation(n_bytes, what, shape):
    """Refuse, before trying, an allocation larger than this machine's memory (or than Py_ssize_t).

    The message, "{what} {shape}", is only built when it is needed: this runs on every call.
    """
    if n_bytes >= _ALLOCATION_LIMIT:
        raise RuntimeError(
            f"{what} {_shape_str(shape)} needs {n_bytes / 2**30:.4g} GiB, more than this machine's "
            f"{_PHYSICAL_MEMORY / 2**30:.4g} GiB of memory"
        )


def _torch_name(dtype, style):
    names = _TORCH_DTYPE_NAMES.get(dtype.name)
    return names[style] if names else dtype.name


def _shape_str(shape):
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def native_dtype(dtype):
    """The dtype in native byte order: a big-endian float32 array is a float32 array."""
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def _check_array(value, name, op):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{op}(): argument '{name}' must be a numpy.ndarray, not {type(value).__name__}")


def int_tuple(value, name, op, n=None):
    """An int or a sequence of ints as a tuple of Python ints; an int is repeated n times when n is given.

    operator.index, not int(): 1.5 must be refused, not truncated to 1.
    """
    try:
        if isinstance(value, (tuple, list)):
            return tuple(operator.index(v) for v in value)
        scalar = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{op}(): argument '{name}' must be an int or a tuple of ints, but got {value!r}"
        ) from None
    return (scalar,) * (n if n is not None else 1)


def _expand_param(values, name, dim):
    # at::native expand_param_if_needed: one value, or one per spatial dimension of the weight.
    if len(values) == 1:
        return values * dim
    if len(values) != dim:
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of {dim} values to match the "
            f"convolution dimensions, but got {name}={list(values)}"
        )
    return values


def _check_dtypes_match(x, param, name, late_style):
    """torch's dtype-mismatch errors; late_style is the check made after the shape checks."""
    if param is None or native_dtype(param.dtype) == native_dtype(x.dtype):
        return
    x_dtype, p_dtype = native_dtype(x.dtype), native_dtype(param.dtype)
    if not late_style:
        raise RuntimeError(
            f"Input type ({_torch_name(x_dtype, 0)}) and {name} type ({_torch_name(p_dtype, 0)}) "
            f"should be the same"
        )
    if x_dtype == np.float32:
        raise RuntimeError(
            f"Input type ({_torch_name(x_dtype, 2)}) and {name} type ({_torch_name(p_dtype, 2)}) should "
            f"be the same or input should be a MKLDNN tensor and {name} is a dense tensor"
        )
    raise RuntimeError(
        f"expected scalar type {_torch_name(x_dtype, 1)} but found {_torch_name(p_dtype, 1)}"
    )


def _batchify(x, n_spatial, op):
    if x.ndim not in (n_spatial + 1, n_spatial + 2):
        raise RuntimeError(
            f"Expected {n_spatial + 1}D (unbatched) or {n_spatial + 2}D (batched) input to {op}, "
            f"but got input of size: {_shape_str(x.shape)}"
        )
    is_batched = x.ndim == n_spatial + 2
    return (x if is_batched else x[np.newaxis]), is_batched


def _same_padding(weight, stride, dilation, dim, x_shape):
    """at::_convolution_same: checks, then (symmetric padding, extra right/bottom padding) per axis."""
    if len(x_shape) != weight.ndim:
        raise RuntimeError(
            f"Expected {weight.ndim}-dimensional input for {weight.ndim}-dimensional weight"
            f"{_shape_str(weight.shape)}, but got {len(x_shape)}-dimensional input of size "
            f"{_shape_str(x_shape)} instead"
        )
    for values, name in ((stride, "stride"), (dilation, "dilation")):
        if len(values) not in (1, dim):
            raise RuntimeError(f"{name} cannot broadcast to {dim} dimensions")
    if any(s != 1 for s in stride):
        raise RuntimeError("padding='same' is not supported for strided convolutions")
    symmetric, extra = [], []
    for i in range(dim):
        d = dilation[0] if len(dilation) == 1 else dilation[i]
        total = d * (weight.shape[i + 2] - 1)
        left = abs(total) // 2 * (1 if total >= 0 else -1)  # C++ truncates toward zero (d < 0)
        symmetric.append(min(left, total - left))
        extra.append(abs(total - 2 * left))
    return tuple(symmetric), tuple(extra)


def _check_shape_forward(x_shape, weight, bias, stride, padding, dilation, groups):
    """at::native check_shape_forward for a forward convolution, message for message."""
    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(dilation) < 0:
        raise RuntimeError("dilation should be greater than zero")
    if min(dilation) == 0:
        raise RuntimeError("non-positive dilation is not supported")
    w_shape = weight.shape
    if weight.ndim != len(x_shape):
        raise RuntimeError(
            f"Expected {weight.ndim}-dimensional input for {weight.ndim}-dimensional weight "
            f"{_shape_str(w_shape)}, but got {len(x_shape)}-dimensional input of size "
            f"{_shape_str(x_shape)} instead"
        )
    if w_shape[0] < groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but got "
            f"weight of size {_shape_str(w_shape)} instead"
        )
    if w_shape[0] % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but "
            f"got weight of size [{_shape_str(w_shape)}] instead"
        )
    if x_shape[1] != w_shape[1] * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {_shape_str(w_shape)}, expected input"
            f"{_shape_str(x_shape)} to have {w_shape[1] * groups} channels, but got {x_shape[1]} "
            f"channels instead"
        )
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != w_shape[0]):
        raise RuntimeError(
            f"Given weight of size {_shape_str(w_shape)}, expected bias to be 1-dimensional with "
            f"{w_shape[0]} elements, but got bias of size {_shape_str(bias.shape)} instead"
        )
    padded = [x_shape[i + 2] + 2 * padding[i] for i in range(len(padding))]
    extent = [dilation[i] * (w_shape[i + 2] - 1) + 1 for i in range(len(padding))]
    if any(p < e for p, e in zip(padded, extent)):
        raise RuntimeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel "
            f"size: ({' x '.join(map(str, extent))}). Kernel size can't be greater than actual input size"
        )
    return padded, extent


def _coerce(a, dtype):
    """C-contiguous, aligned, native byte order, of dtype; no copy when the array already is."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()  # a view into a byte buffer at an odd offset


def is_channels_last(a):
    """An (N, C, H, W) view of (N, H, W, C) memory, as x.transpose(0, 3, 1, 2) of an NHWC array.

    As torch's memory-format rule: an array that is also C-contiguous (C == 1) counts as NCHW.
    """
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def _input_needs_copy(x4, dtype, channels_last):
    """Whether the kernel, which reads any strides, still needs a C-contiguous copy of the input.

    Only where the dtype, byte order or alignment must change, or where rows are not contiguous and
    channels not adjacent either (e.g. Fortran order), which packs slower than it copies. NCHW,
    channels-last and views with contiguous rows (slices, reversed axes) are read in place.
    """
    in_place = abs(x4.strides[-1]) == dtype.itemsize or channels_last
    return not (x4.dtype == dtype and x4.flags.aligned and in_place)


def _check_out(out, shape, dtype, inputs, op):
    """Validate a caller's output array the way a ufunc's out= is: exact shape and dtype, no overlap."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}(): argument 'out' must be a numpy.ndarray, not {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{op}(): out has shape {out.shape}, but the result has shape {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{op}(): out has dtype {out.dtype}, but the result has dtype {dtype} (no casting)")
    if not ((out.flags.c_contiguous or is_channels_last(out)) and out.flags.writeable and out.flags.aligned):
        raise ValueError(f"{op}(): out must be a writeable, aligned array, C-contiguous or channels-last")
    if any(a is not None and np.may_share_memory(out, a) for a in inputs):
        raise ValueError(f"{op}(): out must not overlap the input, weight or bias")


def convolution(x, weight, bias, stride, padding, dilation, groups, n_spatial, op, n_threads=None, out=None):
    """torch.nn.functional.conv{n_spatial}d on NumPy arrays: checks in torch's order, then the kernel.

    stride and dilation are tuples of ints, padding a tuple of ints or 'same'/'valid', groups an int.
    out, when given, receives the result (its shape and dtype, C-contiguous or channels-last, no overlap).
    """
    string_padding = isinstance(padding, str)
    if not string_padding:
        _check_dtypes_match(x, bias, "bias", late_style=False)
    x4, is_batched = _batchify(x, n_spatial, op)
    if string_padding and padding not in ("same", "valid"):
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    if weight.ndim < 3:
        raise RuntimeError("weight should have at least three dimensions")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    dim = weight.ndim - 2

    x_shape = x4.shape
    extra = (0,) * dim
    if padding == "same":
        padding, extra = _same_padding(weight, stride, dilation, dim, x_shape)
        # torch pads the odd extra explicitly first; its later messages show that padded shape
        x_shape = x_shape[:2] + tuple(s + e for s, e in zip(x_shape[2:], extra))
    elif padding == "valid":
        padding = (0,)
    stride = _expand_param(stride, "stride", dim)
    padding = _expand_param(padding, "padding", dim)
    dilation = _expand_param(dilation, "dilation", dim)
    _expand_param((0,) * n_spatial, "output_padding", dim)

    padded, extent = _check_shape_forward(x_shape, weight, bias, stride, padding, dilation, groups)
    _check_dtypes_match(x, weight, "weight", late_style=True)
    if string_padding:
        _check_dtypes_match(x, bias, "bias", late_style=True)
    if 0 in weight.shape[2:]:
        raise RuntimeError(
            f"{op}: kernel size must be positive in every spatial dimension, but got weight of size "
            f"{_shape_str(weight.shape)}"
        )
    n, c_in = x_shape[0], x_shape[1]
    if n != 0 and c_in != 0 and 0 in x_shape[2:]:
        shown = x_shape if n_spatial == 2 else x_shape[:2] + (1,) + x_shape[2:]
        raise RuntimeError(
            f"Only zero batch or zero channel inputs are supported, but got input shape: {_shape_str(shown)}"
        )
    dtype = native_dtype(x.dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}(): gconv supports float32 and float64 arrays, but input has dtype {x.dtype}")
    if max(*padded, *extent, *stride) >= _MAX_EXTENT:
        raise RuntimeError(
            f"{op}: stride, padding or dilated kernel extent of 2**62 or more is not supported "
            f"(padded input size {padded}, kernel extent {extent}, stride {list(stride)})"
        )

    out_spatial = tuple((p - e) // s + 1 for p, e, s in zip(padded, extent, stride))
    # torch quirk kept for parity: an input with zero channels gives an output with zero channels.
    c_out = weight.shape[0] if c_in != 0 else 0
    out_shape = (n, c_out) + out_spatial
    n_elements = 1
    for s in out_shape:
        n_elements *= s
    check_allocation(n_elements * dtype.itemsize, f"{op}: the output of size", out_shape)
    x_channels_last = is_channels_last(x4)
    copy_input = _input_needs_copy(x4, dtype, x_channels_last)
    for name, a, copied in (("input", x4, copy_input), ("weight", weight, True), ("bias", bias, True)):
        if a is not None and copied and not (a.flags.c_contiguous and a.dtype == dtype):
            check_allocation(a.size * dtype.itemsize, f"{op}: a contiguous copy of {name}", a.shape)
    channels_last = x_channels_last and is_batched
    if out is None:
        if channels_last:  # the output keeps the input's memory format, as torch's does
            out = np.empty((out_shape[0], *out_shape[2:], out_shape[1]), dtype=dtype).transpose(0, 3, 1, 2)
        else:
            out = np.empty(out_shape, dtype=dtype)
        result = out if is_batched else out[0]
    else:
        _check_out(out, out_shape if is_batched else out_shape[1:], dtype, (x, weight, bias), op)
        result = out
        if not is_batched:
            out = out[np.newaxis]
    if n_elements == 0:
        return result

    x_c = _coerce(x4, dtype) if copy_input else x4
    w_c = _coerce(weight, dtype)
    b_c = _coerce(bias, dtype) if bias is not None else np.empty(0, dtype=dtype)
    if n_spatial == 1:
        # Conv1d is the 2-D kernel over a height-1 image: views, no copies.
        x_c, w_c, out4 = x_c[:, :, np.newaxis, :], w_c[:, :, np.newaxis, :], out[:, :, np.newaxis, :]
        stride, padding, dilation = (1, *stride), (0, *padding), (1, *dilation)
    else:
        out4 = out
    n_threads = resolve_n_threads(n_threads)
    _select.conv2d(x_c, w_c, b_c, out4, stride, padding, dilation, groups, n_threads)
    return result


def _functional(x, weight, bias, stride, padding, dilation, groups, n_spatial, n_threads, out):
    op = f"conv{n_spatial}d"
    _check_array(x, "input", op)
    _check_array(weight, "weight", op)
    if bias is not None:
        _check_array(bias, "bias", op)
    stride = int_tuple(stride, "stride", op, n_spatial)
    dilation = int_tuple(dilation, "dilation", op, n_spatial)
    if not isinstance(padding, str):
        padding = int_tuple(padding, "padding", op, n_spatial)
    groups = operator.index(groups)
    return convolution(x, weight, bias, stride, padding, dilation, groups, n_spatial, op, n_threads, out)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, n_threads=None,
           out=None):
    """2-D convolution (cross-correlation) over NumPy arrays, as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W) or (C_in, H, W)
    weight : ndarray, shape (C_out, C_in // groups, KH, KW)
    bias : ndarray, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), 'valid' or 'same'
        Implicit zero padding on both sides; 'same' puts an odd extra on the bottom/right.
    groups : int
        C_in and C_out are split into this many groups, each convolved on its own.
    n_threads : int, optional
        OpenMP threads for this call; None uses ``gconv.get_num_threads()``, a negative value all cores
        but ``-n_threads - 1``.
    out : ndarray, optional
        Where to write the result: exactly its shape and dtype, C-contiguous, writeable, not overlapping
        the inputs (as a ufunc's ``out``). Lets inference loops allocate no output per call.

    Returns
    -------
    ndarray, shape (N, C_out, H_out, W_out) or (C_out, H_out, W_out)
        A new C-contiguous array of the input's dtype (float32 or float64), or ``out``.
    """
    return _functional(input, weight, bias, stride, padding, dilation, groups, 2, n_threads, out)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, n_threads=None,
           out=None):
    """1-D convolution (cross-correlation) over NumPy arrays, as ``torch.nn.functional.conv1d``.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, L) or (C_in, L)
    weight : ndarray, shape (C_out, C_in // groups, K)
    bias : ndarray, shape (C_out,), optional
    stride, dilation : int or (int,)
    padding : int, (int,), 'valid' or 'same'
    groups : int
    n_threads : int, optional
    out : ndarray, optional
        As for ``conv2d``.

    Returns
    -------
    ndarray, shape (N, C_out, L_out) or (C_out, L_out)
    """
    return _functional(input, weight, bias, stride, padding, dilation, groups, 1, n_threads, out)


def _pad_source_index(size, before, after, mode):
    """Input index read by each position of a padded axis (negative padding crops)."""
    i = np.arange(-before, size + after, dtype=np.intp)
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= size, 2 * (size - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    return i % size  # circular


def pad(x, pads, mode):
    """torch.nn.functional.pad for mode 'reflect', 'replicate' or 'circular', with torch's checks.

    pads is in F.pad's order, last axis first: (left, right[, top, bottom[, front, back]]).
    The result is a new array; x is never written.
    """
    n_pad = len(pads) // 2
    shape = x.shape
    if 2 * x.ndim < len(pads):
        raise RuntimeError(
            f"Padding length should be less than or equal to two times the input dimension but got "
            f"padding length {len(pads)} and input of dimension {x.ndim}"
        )
    if x.ndim not in (n_pad + 1, n_pad + 2):
        raise NotImplementedError(
            f"Padding size {len(pads)} is not supported for {x.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)"
        )
    # axis -1 gets (pads[0], pads[1]), axis -2 gets (pads[2], pads[3]), ...
    per_axis = [(x.ndim - 1 - k, pads[2 * k], pads[2 * k + 1]) for k in range(n_pad)]
    out_sizes = [shape[axis] + before + after for axis, before, after in per_axis]
    if mode == "circular":
        for (axis, before, after), out_size in zip(reversed(per_axis), reversed(out_sizes)):
            if before > shape[axis] or after > shape[axis]:
                raise RuntimeError("Padding value causes wrapping around more than once.")
            if out_size < 0:
                raise RuntimeError("Negative padding value is resulting in an empty dimension")
    else:
        non_batch = shape[1:] if x.ndim == n_pad + 2 else shape
        if any(s == 0 for s in non_batch):
            raise RuntimeError(
                f"Expected {n_pad + 1}D or {n_pad + 2}D (batch mode) tensor with possibly 0 batch size "
                f"and other non-zero dimensions for input, but got: {_shape_str(shape)}"
            )
        if mode == "reflect":
            for k, (axis, before, after) in enumerate(per_axis):
                if not (before < shape[axis] and after < shape[axis]):
                    raise RuntimeError(
                        f"Argument #{4 + 2 * k}: Padding size should be less than the corresponding "
                        f"input dimension, but got: padding ({before}, {after}) at dimension {axis} of "
                        f"input {_shape_str(shape)}"
                    )
        if all(s < 1 for s in out_sizes):
            names = "DHW"[3 - n_pad:]
            sizes_in = ", ".join(f"{nm}: {shape[axis]}" for nm, (axis, _, _) in zip(names, reversed(per_axis)))
            sizes_out = " ".join(f"{nm}: {s}" for nm, s in zip(names, reversed(out_sizes)))
            space = " " if mode == "replicate" and n_pad > 1 else ""
            raise RuntimeError(f"input ({sizes_in}{space}) is too small. Calculated output {sizes_out}")
        if any(s < 0 for s in out_sizes):
            bad = min(out_sizes)
            padded_shape = list(shape)
            for (axis, _, _), s in zip(per_axis, out_sizes):
                padded_shape[axis] = s
            raise RuntimeError(
                f"Trying to create tensor with negative dimension {bad}: {_shape_str(padded_shape)}"
            )
    n_elements = 1
    for (axis, _, _), s in zip(per_axis, out_sizes):
        n_elements *= s
    for axis in range(x.ndim - n_pad):
        n_elements *= shape[axis]
    check_allocation(n_elements * x.dtype.itemsize, f"padding {list(pads)} of input", shape)
    # torch keeps a channels-last input channels-last through reflect and replicate padding
    keep_channels_last = mode != "circular" and is_channels_last(x)
    padded = x.transpose(0, 2, 3, 1) if keep_channels_last else x
    for (axis, before, after) in per_axis:
        if before == 0 and after == 0:
            continue  # nothing to do on this axis (and, for circular, size 0 is allowed only here)
        index = _pad_source_index(shape[axis], before, after, mode)
        padded = np.take(padded, index, axis=axis - 1 if keep_channels_last else axis)
    return padded.transpose(0, 3, 1, 2) if keep_channels_last else padded


def unpad_grad(grad_padded, shape, pads, mode):
    """The gradient through ``pad``: each padded position's gradient added to the input element it copied.

    grad_padded is the gradient w.r.t. pad(x, pads, mode); shape is x's shape. As torch's autograd.
    """
    n_pad = len(pads) // 2
    grad = grad_padded
    for k in range(n_pad):
        axis = len(shape) - 1 - k
        size, before, after = shape[axis], pads[2 * k], pads[2 * k + 1]
        if before == 0 and after == 0:
            continue
        folded = np.zeros(grad.shape[:axis] + (size,) + grad.shape[axis + 1:], dtype=grad.dtype)
        np.add.at(folded, (slice(None),) * axis + (_pad_source_index(size, before, after, mode),), grad)
        grad = folded
    return grad
