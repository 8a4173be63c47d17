"""Conv1d and Conv2d modules: torch.nn's constructor, attributes, repr, init and state_dict on NumPy arrays."""
import math
import operator
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from . import functional as F
from ._parameter_lock import ParameterLock

__all__ = ["Conv1d", "Conv2d"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _module_dtype(dtype):
    if dtype is None:
        return np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy float dtype (float32 or float64), got {dtype!r}") from None
    if resolved not in F.SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def _index(value, name, op):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{op}(): argument '{name}' must be an int, but got {value!r}") from None


class _ConvNd:
    """Hyper-parameters validated once, parameters as NumPy arrays; subclasses fix the dimension."""

    _n_spatial = None  # 1 or 2, set by the subclass

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *, rng=None):
        nd = self._n_spatial
        # torch's checks, in torch's order and with torch's messages
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        op = type(self).__name__
        kernel_size = F.int_tuple(kernel_size, "kernel_size", op, nd)
        stride = F.int_tuple(stride, "stride", op, nd)
        dilation = F.int_tuple(dilation, "dilation", op, nd)
        valid_padding_strings = {"same", "valid"}
        if isinstance(padding, str):
            if padding not in valid_padding_strings:
                raise ValueError(
                    f"Invalid padding string {padding!r}, should be one of {valid_padding_strings}"
                )
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = F.int_tuple(padding, "padding", op, nd)
        valid_padding_modes = {"zeros", "reflect", "replicate", "circular"}
        if padding_mode not in valid_padding_modes:
            raise ValueError(
                f"padding_mode must be one of {valid_padding_modes}, but got padding_mode='{padding_mode}'"
            )
        if device not in (None, "cpu"):
            raise ValueError(f"gconv runs on the CPU only: device must be None or 'cpu', got {device!r}")

        self.in_channels = _index(in_channels, "in_channels", op)
        self.out_channels = _index(out_channels, "out_channels", op)
        self.groups = _index(groups, "groups", op)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = False
        self.output_padding = (0,) * nd
        self.padding_mode = padding_mode
        self._reversed_padding_repeated_twice = self._padding_for_pad()
        self.dtype = _module_dtype(dtype)

        weight_shape = (self.out_channels, self.in_channels // self.groups, *kernel_size)
        negative = [s for s in weight_shape if s < 0]
        if negative:
            raise RuntimeError(
                f"Trying to create tensor with negative dimension {negative[0]}: {F._shape_str(weight_shape)}"
            )
        F.check_allocation(math.prod(weight_shape) * self.dtype.itemsize, f"{op}: a weight of size", weight_shape)
        self.weight = np.empty(weight_shape, dtype=self.dtype)
        self.bias = np.empty(self.out_channels, dtype=self.dtype) if bias else None
        self.reset_parameters(rng)

    def _padding_for_pad(self):
        """torch's _reversed_padding_repeated_twice: F.pad's argument for the non-zero padding modes."""
        if isinstance(self.padding, str):
            pads = [0, 0] * len(self.kernel_size)
            if self.padding == "same":
                for i, (d, k) in enumerate(zip(self.dilation, self.kernel_size)):
                    total = d * (k - 1)
                    left = total // 2
                    j = len(self.kernel_size) - 1 - i
                    pads[2 * j], pads[2 * j + 1] = left, total - left
            return pads
        return tuple(p for p in reversed(self.padding) for _ in range(2))

    def reset_parameters(self, rng=None):
        """Draw weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch's kaiming_uniform(a=sqrt(5)).

        Parameters
        ----------
        rng : None, int or numpy.random.Generator
            fan_in = in_channels // groups * prod(kernel_size).
        """
        rng = np.random.default_rng(rng)
        fan_in = self.weight.shape[1] * math.prod(self.weight.shape[2:])
        with self._parameter_lock().write:  # calls see all old or all new values
            if self.weight.size == 0:
                warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=2)
            else:
                bound = 1.0 / math.sqrt(fan_in)
                self.weight[...] = rng.uniform(-bound, bound, size=self.weight.shape)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                self.bias[...] = rng.uniform(-bound, bound, size=self.bias.shape)

    # ---- parameters -------------------------------------------------------------------------

    def state_dict(self):
        """The parameters by name.

        Returns
        -------
        OrderedDict
            'weight' (out_channels, in_channels // groups, *kernel_size) and, when present, 'bias'
            (out_channels,): the arrays themselves, as torch's shares storage.
        """
        state = OrderedDict(weight=self.weight)
        if self.bias is not None:
            state["bias"] = self.bias
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters, cast to the module's dtype.

        Parameters
        ----------
        state_dict : mapping of str to array-like
            A dict, an ``np.load`` of a .npz, safetensors' ``load_file``, or torch CPU tensors.
        strict : bool
            Missing or unexpected keys raise RuntimeError with torch's text; a shape mismatch always does.

        Returns
        -------
        IncompatibleKeys
            (missing_keys, unexpected_keys), as torch's.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        loaded = {}
        for key, param in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.shape != param.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape torch.Size({list(value.shape)}) "
                    f"from checkpoint, the shape in current model is torch.Size({list(param.shape)})."
                )
            else:
                loaded[key] = value
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(type(self).__name__, "\n\t".join(errors))
            )
        # in place, as torch (state_dict() arrays stay the parameters), with no call reading them meanwhile
        with self._parameter_lock().write:
            for key, value in loaded.items():
                np.copyto(own[key], value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # ---- parameters shared between threads ---------------------------------------------------------
    # A call holds the module's ParameterLock shared while its kernels read weight and bias;
    # load_state_dict and reset_parameters hold it alone while they write them in place. So calls racing
    # those see all old or all new values, and calls do not block each other. Other in-place writes
    # (m.weight[...] = ...) take no lock: calls racing them get unspecified values, as in torch.

    def _parameter_lock(self):
        """This module's ParameterLock, made on first use (copies and unpickled modules get their own)."""
        lock = self.__dict__.get("_param_lock")
        return lock if lock is not None else self.__dict__.setdefault("_param_lock", ParameterLock())

    def _parameters_now(self):
        """(weight, bias) as the module held them at one instant, though another thread may reassign them."""
        while True:
            weight, bias = self.weight, self.bias
            if self.weight is weight:  # unchanged while bias was read: the module held the two together
                return weight, bias

    def _check_parameters(self, weight, bias):
        # Parameters are plain attributes a user may reassign; catch a wrong one before it reaches the kernel.
        expected = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        for name, value, shape in (("weight", weight, expected), ("bias", bias, (self.out_channels,))):
            if value is None and name == "bias":
                continue
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{type(self).__name__}.{name} must be a numpy.ndarray, not {type(value).__name__}")
            if value.shape != shape:
                raise RuntimeError(
                    f"{type(self).__name__}.{name} has shape {value.shape}, expected {shape} for {self!r}"
                )
            if F.native_dtype(value.dtype) not in F.SUPPORTED_DTYPES:
                raise TypeError(
                    f"{type(self).__name__}.{name} must be float32 or float64, but has dtype {value.dtype}"
                )

    # ---- torch interop (torch imported only here) ----------------------------------------------

    @classmethod
    def from_torch(cls, module):
        """A gconv module with the hyper-parameters, dtype and a copy of the weights of a torch module.

        Parameters
        ----------
        module : torch.nn.Conv1d or torch.nn.Conv2d
            The one matching this class; float32 or float64.

        Returns
        -------
        Conv1d or Conv2d
        """
        if type(module).__name__ != cls.__name__ or not hasattr(module, "weight"):
            raise TypeError(f"{cls.__name__}.from_torch() needs a torch.nn.{cls.__name__}, got {type(module).__name__}")
        weight = module.weight.detach().cpu().numpy()
        converted = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                        module.padding, module.dilation, module.groups, module.bias is not None,
                        module.padding_mode, dtype=weight.dtype)
        converted.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
        return converted

    def to_torch(self):
        """The equivalent torch module, holding a copy of these weights.

        Returns
        -------
        torch.nn.Conv1d or torch.nn.Conv2d
            Same hyper-parameters and dtype. torch is imported here, never by ``import gconv``.
        """
        import torch

        torch_cls = getattr(torch.nn, type(self).__name__)
        module = torch_cls(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                           self.dilation, self.groups, self.bias is not None, self.padding_mode,
                           dtype=getattr(torch, self.weight.dtype.name))
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.state_dict().items()})
        return module

    # ---- forward ----------------------------------------------------------------------------

    def forward(self, input, *, n_threads=None, out=None):
        """Apply the convolution; see the class docstring for the shapes.

        n_threads and out are as for ``gconv.conv2d``: the thread count for this call, and an array to
        write the result into.
        """
        op = f"conv{self._n_spatial}d"
        F._check_array(input, "input", op)
        with self._parameter_lock().read:
            weight, bias = self._parameters_now()  # checked and used: the same arrays
            self._check_parameters(weight, bias)
            if self.padding_mode != "zeros":
                # As torch: pad explicitly in the mode, then convolve without padding.
                padded = F.pad(input, self._reversed_padding_repeated_twice, self.padding_mode)
                if out is not None and np.may_share_memory(out, input):
                    raise ValueError(f"{op}(): out must not overlap the input, weight or bias")
                result = F.convolution(padded, weight, bias, self.stride, (0,) * self._n_spatial,
                                       self.dilation, self.groups, self._n_spatial, op, n_threads, out)
            else:
                padded = input
                result = F.convolution(input, weight, bias, self.stride, self.padding, self.dilation,
                                       self.groups, self._n_spatial, op, n_threads, out)
        # what backward() needs: references, not copies (as torch's autograd, modifying them in between
        # changes the gradient)
        self._saved = (input, padded, result.shape)
        return result

    def backward(self, grad_output, *, n_threads=None):
        """Back-propagate through the last forward call: ``y = m(x)``, then ``gx = m.backward(gy)``.

        Parameters
        ----------
        grad_output : ndarray, the shape of the last output
            The gradient of a loss with respect to that output.

        Returns
        -------
        ndarray, the shape of the last input
            The gradient with respect to that input, through any padding mode as torch's autograd.
            ``weight_grad`` and ``bias_grad`` (None without bias) are set, of the parameters' shapes.
        """
        from . import grad

        saved = getattr(self, "_saved", None)
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a forward call first")
        x, conv_input, out_shape = saved
        F._check_array(grad_output, "grad_output", "backward")
        if grad_output.shape != out_shape:
            raise ValueError(f"backward(): grad_output has shape {grad_output.shape}, the last output had {out_shape}")
        with self._parameter_lock().read:
            weight, bias = self._parameters_now()
            weight = weight.copy()  # load_state_dict may rewrite the array once the lock is released
        nd = self._n_spatial
        batched = x.ndim == nd + 2
        dtype = weight.dtype
        gy = np.asarray(grad_output, dtype=dtype)
        x4, gy4 = (conv_input, gy) if batched else (conv_input[np.newaxis], gy[np.newaxis])
        pads = self._conv_pads(x4.shape[2:]) if self.padding_mode == "zeros" else [(0, 0)] * nd
        stride, dilation = self.stride, self.dilation
        if nd == 1:  # the 2-D kernels over a height-1 image
            x4, gy4, weight = x4[:, :, np.newaxis, :], gy4[:, :, np.newaxis, :], weight[:, :, np.newaxis, :]
            stride, dilation, pads = (1, *stride), (1, *dilation), [(0, 0), *pads]
        x4 = x4.astype(dtype, copy=False)
        grad_weight = grad.weight_grad(x4, gy4, weight.shape, stride, (pads[0][0], pads[1][0]), dilation,
                                       self.groups, n_threads)
        grad_input = grad.input_grad(gy4, np.ascontiguousarray(weight), x4.shape[2:], stride, pads, dilation,
                                     self.groups, n_threads)
        if nd == 1:
            grad_input, grad_weight = grad_input[:, :, 0, :], grad_weight[:, :, 0, :]
        if self.padding_mode != "zeros":
            grad_input = F.unpad_grad(grad_input, x.shape if batched else (1, *x.shape),
                                      self._reversed_padding_repeated_twice, self.padding_mode)
        self.weight_grad = grad_weight
        self.bias_grad = grad.bias(gy4) if bias is not None else None
        return grad_input if batched else grad_input[0]

    def _conv_pads(self, spatial):
        """(before, after) zero padding per spatial axis of the convolution itself ('same': odd extra after)."""
        if self.padding == "valid":
            return [(0, 0)] * len(spatial)
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return [(t // 2, t - t // 2) for t in totals]
        return [(p, p) for p in self.padding]

    def __call__(self, input, *, n_threads=None, out=None):
        return self.forward(input, n_threads=n_threads, out=out)

    # ---- repr -------------------------------------------------------------------------------

    def extra_repr(self):
        s = "{in_channels}, {out_channels}, kernel_size={kernel_size}, stride={stride}"
        if self.padding != (0,) * len(self.padding):
            s += ", padding={padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += ", dilation={dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += ", output_padding={output_padding}"
        if self.groups != 1:
            s += ", groups={groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += ", padding_mode={padding_mode}"
        return s.format(**self.__dict__)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


_PARAMETERS_DOC = """
    Parameters
    ----------
    in_channels, out_channels : int
        Both divisible by ``groups``.
    kernel_size, stride, dilation : int or tuple of ints
    padding : int, tuple of ints, 'valid' or 'same'
        'same' (stride 1 only) pads d * (k - 1) in total per axis, the odd extra at the end.
    groups : int
        The channels are split into ``groups`` slices; output slice g sees input slice g only.
    bias : bool
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
    device : None or 'cpu'
    dtype : numpy float dtype, float32 (default) or float64
    rng : None, int or numpy.random.Generator, keyword-only
        Seeds the initialisation: weight and bias uniform in +-1/sqrt(fan_in), as torch.

    Attributes
    ----------
    weight : ndarray, shape (out_channels, in_channels // groups, *kernel_size)
    bias : ndarray of shape (out_channels,), or None
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
        torch's names, types and normalisation (tuples of Python ints; padding may stay a string).
"""


class Conv1d(_ConvNd):
    __doc__ = """1-D convolution over NumPy arrays, as ``torch.nn.Conv1d``.

    Input (N, C_in, L) or (C_in, L); output (N, C_out, L_out) or (C_out, L_out), a new float array of
    the input's dtype (or ``out=``).
""" + _PARAMETERS_DOC

    _n_spatial = 1


class Conv2d(_ConvNd):
    __doc__ = """2-D convolution over NumPy arrays, as ``torch.nn.Conv2d``.

    Input (N, C_in, H, W) or (C_in, H, W); output (N, C_out, H_out, W_out) or (C_out, H_out, W_out), a new
    float array of the input's dtype (or ``out=``).
""" + _PARAMETERS_DOC

    _n_spatial = 2
