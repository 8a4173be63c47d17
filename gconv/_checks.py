"""torch's argument checks and error messages (type and text, in torch's order), shared by every face."""

import operator
import os

import numpy as np

from ._layout import is_channels_last

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
MAX_EXTENT = 2**62


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no limit known
        return MAX_EXTENT


_PHYSICAL_MEMORY = _physical_memory()


_ALLOCATION_LIMIT = min(MAX_EXTENT, _PHYSICAL_MEMORY)


def check_allocation(n_bytes, what, shape):
    """Refuse, before trying, an allocation larger than this machine's memory (or than Py_ssize_t).

    The message, "{what} {shape}", is only built when it is needed: this runs on every call.
    """
    if n_bytes >= _ALLOCATION_LIMIT:
        raise RuntimeError(
            f"{what} {shape_str(shape)} needs {n_bytes / 2**30:.4g} GiB, more than this machine's "
            f"{_PHYSICAL_MEMORY / 2**30:.4g} GiB of memory"
        )


def torch_dtype_name(dtype, style):
    names = _TORCH_DTYPE_NAMES.get(dtype.name)
    return names[style] if names else dtype.name


def shape_str(shape):
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def native_dtype(dtype):
    """The dtype in native byte order: a big-endian float32 array is a float32 array."""
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def check_array(value, name, op):
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
        raise TypeError(f"{op}(): argument '{name}' must be an int or a tuple of ints, but got {value!r}") from None
    return (scalar,) * (n if n is not None else 1)


def expand_param(values, name, dim):
    # at::native expand_param_if_needed: one value, or one per spatial dimension of the weight.
    if len(values) == 1:
        return values * dim
    if len(values) != dim:
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of {dim} values to match the "
            f"convolution dimensions, but got {name}={list(values)}"
        )
    return values


def check_dtypes_match(x, param, name, late_style):
    """torch's dtype-mismatch errors; late_style is the check made after the shape checks."""
    if param is None or native_dtype(param.dtype) == native_dtype(x.dtype):
        return
    x_dtype, p_dtype = native_dtype(x.dtype), native_dtype(param.dtype)
    if not late_style:
        raise RuntimeError(
            f"Input type ({torch_dtype_name(x_dtype, 0)}) and {name} type ({torch_dtype_name(p_dtype, 0)}) "
            f"should be the same"
        )
    if x_dtype == np.float32:
        raise RuntimeError(
            f"Input type ({torch_dtype_name(x_dtype, 2)}) and {name} type ({torch_dtype_name(p_dtype, 2)}) should "
            f"be the same or input should be a MKLDNN tensor and {name} is a dense tensor"
        )
    raise RuntimeError(f"expected scalar type {torch_dtype_name(x_dtype, 1)} but found {torch_dtype_name(p_dtype, 1)}")


def batchify(x, n_spatial, op):
    if x.ndim not in (n_spatial + 1, n_spatial + 2):
        raise RuntimeError(
            f"Expected {n_spatial + 1}D (unbatched) or {n_spatial + 2}D (batched) input to {op}, "
            f"but got input of size: {shape_str(x.shape)}"
        )
    is_batched = x.ndim == n_spatial + 2
    return (x if is_batched else x[np.newaxis]), is_batched


def check_same_padding(weight, stride, dilation, dim, x_shape):
    """at::_convolution_same's checks, before it splits the padding."""
    if len(x_shape) != weight.ndim:
        raise RuntimeError(
            f"Expected {weight.ndim}-dimensional input for {weight.ndim}-dimensional weight"
            f"{shape_str(weight.shape)}, but got {len(x_shape)}-dimensional input of size "
            f"{shape_str(x_shape)} instead"
        )
    for values, name in ((stride, "stride"), (dilation, "dilation")):
        if len(values) not in (1, dim):
            raise RuntimeError(f"{name} cannot broadcast to {dim} dimensions")
    if any(s != 1 for s in stride):
        raise RuntimeError("padding='same' is not supported for strided convolutions")


def check_shape_forward(x_shape, weight, bias, stride, padding, dilation, groups, output_padding=None):
    """at::native check_shape_forward, message for message; a transposed convolution passes output_padding.

    Returns the padded input size and the dilated kernel extent per axis (None, None when transposed).
    """
    transposed = output_padding is not None
    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if transposed and min(output_padding) < 0:
        raise RuntimeError("negative output_padding is not supported")
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
            f"{shape_str(w_shape)}, but got {len(x_shape)}-dimensional input of size "
            f"{shape_str(x_shape)} instead"
        )
    if w_shape[0] < groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but got "
            f"weight of size {shape_str(w_shape)} instead"
        )
    if w_shape[0] % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but "
            f"got weight of size [{shape_str(w_shape)}] instead"
        )
    if transposed:
        _check_transposed_shapes(x_shape, w_shape, bias, stride, dilation, groups, output_padding)
        return None, None
    if x_shape[1] != w_shape[1] * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {shape_str(w_shape)}, expected input"
            f"{shape_str(x_shape)} to have {w_shape[1] * groups} channels, but got {x_shape[1]} "
            f"channels instead"
        )
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != w_shape[0]):
        raise RuntimeError(
            f"Given weight of size {shape_str(w_shape)}, expected bias to be 1-dimensional with "
            f"{w_shape[0]} elements, but got bias of size {shape_str(bias.shape)} instead"
        )
    padded = [x_shape[i + 2] + 2 * padding[i] for i in range(len(padding))]
    extent = [dilation[i] * (w_shape[i + 2] - 1) + 1 for i in range(len(padding))]
    if any(p < e for p, e in zip(padded, extent)):
        raise RuntimeError(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel "
            f"size: ({' x '.join(map(str, extent))}). Kernel size can't be greater than actual input size"
        )
    return padded, extent


_AXIS_NAMES = {1: ("height", "width"), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _check_transposed_shapes(x_shape, w_shape, bias, stride, dilation, groups, output_padding):
    if x_shape[1] != w_shape[0]:
        raise RuntimeError(
            f"Given transposed=1, weight of size {shape_str(w_shape)}, expected input{shape_str(x_shape)} to have "
            f"{w_shape[0]} channels, but got {x_shape[1]} channels instead"
        )
    if any(p >= s and p >= d for p, s, d in zip(output_padding, stride, dilation)):
        # torch names the axes of the 2-D convolution a 1-D one runs as (height 0 / 1 first)
        lift = (2 - len(stride)) if len(stride) < 2 else 0
        values = {
            "output_padding": (0,) * lift + tuple(output_padding),
            "stride": (1,) * lift + tuple(stride),
            "dilation": (1,) * lift + tuple(dilation),
        }
        names = _AXIS_NAMES[len(stride)]
        parts = [f"{key}_{axis}: {v}" for key, vals in values.items() for axis, v in zip(names, vals)]
        raise RuntimeError("output padding must be smaller than either stride or dilation, but got " + " ".join(parts))
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != w_shape[1] * groups):
        raise RuntimeError(
            f"Given transposed=1, weight of size {shape_str(w_shape)}, expected bias to be 1-dimensional with "
            f"{w_shape[1] * groups} elements, but got bias of size {shape_str(bias.shape)} instead"
        )


def check_out(out, shape, dtype, inputs, op):
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


def check_grad_geometry(stride, padding, dilation, groups, dim):
    """torch.nn.grad's checks (at::convolution_backward's): parameter lengths, signs and groups, torch's texts."""
    stride = expand_param(stride, "stride", dim)
    padding = expand_param(padding, "padding", dim)
    dilation = expand_param(dilation, "dilation", dim)
    if groups <= 0:
        raise RuntimeError(f"expected groups to be greater than 0, but got groups={groups}")
    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(dilation) <= 0:  # torch.nn.grad computes something for dilation 0; a forward call refuses it
        raise RuntimeError("non-positive dilation is not supported")
    return stride, padding, dilation


def check_grad_arrays(grad_output, other, other_name, n_spatial, op):
    """The arrays of a torch.nn.grad-style call: batched, float32/float64, one dtype."""
    for name, a in (("grad_output", grad_output), (other_name, other)):
        check_array(a, name, op)
        if a.ndim != n_spatial + 2:
            raise ValueError(f"{op}(): {name} must have {n_spatial + 2} dimensions (batched), got shape {a.shape}")
        if native_dtype(a.dtype) not in SUPPORTED_DTYPES:
            raise TypeError(f"{op}(): {name} must be float32 or float64, got {a.dtype}")
    if native_dtype(grad_output.dtype) != native_dtype(other.dtype):
        raise TypeError(f"{op}(): grad_output and {other_name} must share a dtype")


def module_dtype(dtype):
    """A module's dtype argument as a NumPy dtype: None is float32; only float32 and float64."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy float dtype (float32 or float64), got {dtype!r}") from None
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def index(value, name, op):
    """An int argument as a Python int (operator.index: 1.5 is refused, not truncated)."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{op}(): argument '{name}' must be an int, but got {value!r}") from None


def check_conv_channels(in_channels, out_channels, groups):
    """torch's _ConvNd.__init__ checks of the channels (ValueError), the first it makes."""
    if groups <= 0:
        raise ValueError("groups must be a positive integer")
    if in_channels % groups != 0:
        raise ValueError("in_channels must be divisible by groups")
    if out_channels % groups != 0:
        raise ValueError("out_channels must be divisible by groups")


def check_conv_padding(padding, stride, padding_mode, device):
    """torch's _ConvNd.__init__ checks of padding and padding_mode (ValueError), after the channels'."""
    valid_padding_strings = {"same", "valid"}
    if isinstance(padding, str):
        if padding not in valid_padding_strings:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of {valid_padding_strings}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
    valid_padding_modes = {"zeros", "reflect", "replicate", "circular"}
    if padding_mode not in valid_padding_modes:
        raise ValueError(f"padding_mode must be one of {valid_padding_modes}, but got padding_mode='{padding_mode}'")
    if device not in (None, "cpu"):
        raise ValueError(f"gconv runs on the CPU only: device must be None or 'cpu', got {device!r}")
