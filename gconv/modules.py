"""Module classes in torch.nn's shape: a parameter-holding base, _ConvNd with the hyper-parameters, Conv1d/Conv2d."""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict, namedtuple
from collections.abc import Mapping
from typing import Any, SupportsIndex, TypeVar, Union

import numpy as np
import numpy.typing as npt

from . import _geometry, _select
from ._checks import (
    SUPPORTED_DTYPES,
    check_allocation,
    check_array,
    check_conv_channels,
    check_conv_padding,
    index,
    int_tuple,
    module_dtype,
    native_dtype,
    shape_str,
)
from ._padding import pad, unpad_grad
from ._parameter_lock import ParameterLock
from ._threads import resolve_n_threads
from ._typing import FloatArray, IntOrTuple, Padding, Shape
from ._weight_cache import PackedWeights
from .functional import ForwardPlans, convolution, transposed_convolution

RNG = Union[None, int, np.random.Generator]  # seeds the initialisation
_M = TypeVar("_M", bound="_Module")

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _Module:
    """Parameters as NumPy arrays: state_dict, load_state_dict, torch interop, __call__ and repr.

    Subclasses list their parameters in `_parameter_names` and their constructor arguments in
    `_constructor_args()`, and say what they compute in `forward`.
    """

    _parameter_names: tuple[str, ...] = ()
    weight: FloatArray

    @staticmethod
    def _constructor_args(module: Any) -> tuple[Any, ...]:
        """The positional arguments of torch's constructor (and ours) that rebuild this module."""
        raise NotImplementedError

    def forward(
        self, input: FloatArray, *, n_threads: SupportsIndex | None = None, out: FloatArray | None = None
    ) -> FloatArray:
        raise NotImplementedError

    # ---- parameters shared between threads ---------------------------------------------------------
    # A call holds the module's ParameterLock shared while its kernels read weight and bias;
    # load_state_dict and reset_parameters hold it alone while they write them in place. So calls racing
    # those see all old or all new values, and calls do not block each other. Other in-place writes
    # (m.weight[...] = ...) take no lock: calls racing them get unspecified values, as in torch.

    def _parameter_lock(self) -> ParameterLock:
        """This module's ParameterLock, made on first use (copies and unpickled modules get their own)."""
        lock = self.__dict__.get("_param_lock")
        return lock if lock is not None else self.__dict__.setdefault("_param_lock", ParameterLock())

    def _packed_weights(self) -> PackedWeights:
        """This module's weights as the gemm family packs them, kept while they are unchanged (made on first
        use; copies and unpickled modules get their own)."""
        cache = self.__dict__.get("_packed")
        return cache if cache is not None else self.__dict__.setdefault("_packed", PackedWeights())

    def _forward_plans(self) -> ForwardPlans:
        """This module's memo of its calls' checks and kernel choices, keyed on what they depend on (made on
        first use; copies and unpickled modules get their own)."""
        plans = self.__dict__.get("_plans")
        return plans if plans is not None else self.__dict__.setdefault("_plans", ForwardPlans())

    def _parameters_now(self) -> tuple[Any, Any]:
        """(weight, bias) as the module held them at one instant, though another thread may reassign them."""
        while True:
            weight, bias = self.weight, getattr(self, "bias", None)
            if self.weight is weight:  # unchanged while bias was read: the module held the two together
                return weight, bias

    def _parameters(self):
        return OrderedDict(
            (name, getattr(self, name)) for name in self._parameter_names if getattr(self, name) is not None
        )

    def state_dict(self) -> OrderedDict[str, FloatArray]:
        """The parameters by name.

        Returns
        -------
        OrderedDict
            'weight' (out_channels, in_channels // groups, *kernel_size) and, when present, 'bias'
            (out_channels,): the arrays themselves, as torch's shares storage.
        """
        return self._parameters()

    def load_state_dict(self, state_dict: Mapping[str, npt.ArrayLike], strict: bool = True) -> IncompatibleKeys:
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
                errors.insert(
                    0, "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected))
                )
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(type(self).__name__, "\n\t".join(errors))
            )
        # in place, as torch (state_dict() arrays stay the parameters), with no call reading them meanwhile
        with self._parameter_lock().write:
            for key, value in loaded.items():
                np.copyto(own[key], value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # ---- torch interop (torch imported only here) ----------------------------------------------

    @classmethod
    def from_torch(cls: type[_M], module: Any) -> _M:
        """A gconv module with the hyper-parameters, dtype and a copy of the weights of a torch module.

        Parameters
        ----------
        module : the torch.nn module of this class's name; float32 or float64.

        Returns
        -------
        an instance of this class
        """
        if type(module).__name__ != cls.__name__ or not hasattr(module, "weight"):
            raise TypeError(f"{cls.__name__}.from_torch() needs a torch.nn.{cls.__name__}, got {type(module).__name__}")
        weight = module.weight.detach().cpu().numpy()
        factory: Any = cls  # the subclass's constructor, which takes dtype=
        converted: _M = factory(*cls._constructor_args(module), dtype=weight.dtype)
        converted.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
        return converted

    def to_torch(self) -> Any:
        """The equivalent torch module, holding a copy of these weights.

        Returns
        -------
        the torch.nn module of this class's name
            Same hyper-parameters and dtype. torch is imported here, never by ``import gconv``.
        """
        import torch

        torch_cls = getattr(torch.nn, type(self).__name__)
        module = torch_cls(*self._constructor_args(self), dtype=getattr(torch, self.weight.dtype.name))
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.state_dict().items()})
        return module

    def __call__(
        self, input: FloatArray, *, n_threads: SupportsIndex | None = None, out: FloatArray | None = None
    ) -> FloatArray:
        return self.forward(input, n_threads=n_threads, out=out)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class _ConvNd(_Module):
    """Hyper-parameters validated once, in torch's order; subclasses fix the number of spatial dimensions."""

    _n_spatial: int  # 1, 2 or 3, set by the subclass
    _parameter_names = ("weight", "bias")

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        transposed,
        output_padding,
        groups,
        bias,
        padding_mode,
        device=None,
        dtype=None,
        *,
        rng=None,
    ):
        nd = self._n_spatial
        op = type(self).__name__
        # torch's checks, in torch's order and with torch's messages
        check_conv_channels(in_channels, out_channels, groups)
        kernel_size = int_tuple(kernel_size, "kernel_size", op, nd)
        stride = int_tuple(stride, "stride", op, nd)
        dilation = int_tuple(dilation, "dilation", op, nd)
        output_padding = int_tuple(output_padding, "output_padding", op, nd)
        if transposed or not isinstance(padding, str):  # transposed convolutions take no padding strings
            padding = int_tuple(padding, "padding", op, nd)
        check_conv_padding(padding, stride, padding_mode, device)

        self.in_channels = index(in_channels, "in_channels", op)
        self.out_channels = index(out_channels, "out_channels", op)
        self.groups = index(groups, "groups", op)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = transposed
        self.output_padding = output_padding
        self.padding_mode = padding_mode
        pads = _geometry.reversed_padding_repeated_twice(self._padding_pairs())
        # torch's type too: a list for string padding, a tuple for integers
        self._reversed_padding_repeated_twice = list(pads) if isinstance(padding, str) else pads
        self.dtype = module_dtype(dtype)

        weight_shape = self._weight_shape()
        negative = [s for s in weight_shape if s < 0]
        if negative:
            raise RuntimeError(
                f"Trying to create tensor with negative dimension {negative[0]}: {shape_str(weight_shape)}"
            )
        check_allocation(math.prod(weight_shape) * self.dtype.itemsize, f"{op}: a weight of size", weight_shape)
        self.weight = np.empty(weight_shape, dtype=self.dtype)
        self.bias = np.empty(self.out_channels, dtype=self.dtype) if bias else None
        self.reset_parameters(rng)

    def _weight_shape(self):
        # torch's layouts: (out, in / groups, *k) for a convolution, (in, out / groups, *k) transposed
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _padding_pairs(self):
        """(before, after) zero padding per spatial axis ('same': the odd extra after; 'valid': none)."""
        if self.padding == "valid":
            return ((0, 0),) * len(self.kernel_size)
        if self.padding == "same":
            return _geometry.same_padding(self.kernel_size, self.dilation)
        return tuple((p, p) for p in self.padding)

    def reset_parameters(self, rng: RNG = None) -> None:
        """Draw weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch's kaiming_uniform(a=sqrt(5)).

        Parameters
        ----------
        rng : None, int or numpy.random.Generator
            fan_in = weight.shape[1] * prod(kernel_size): in_channels // groups, or out_channels // groups
            for a transposed convolution (its weight layout), as torch computes it.
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

    def _checked_parameters(self, weight, bias):
        """(weight, bias) as _parameters_now() read them for this call (one instant's pair): a user may reassign
        them, so catch a wrong one here; the caller holds the parameter lock and uses these same arrays."""
        expected = self._weight_shape()
        if (
            type(weight) is np.ndarray
            and weight.shape == expected
            and weight.dtype in SUPPORTED_DTYPES
            and (
                bias is None
                or (type(bias) is np.ndarray and bias.shape == (self.out_channels,) and bias.dtype in SUPPORTED_DTYPES)
            )
        ):
            return weight, bias  # what every call has: the checks below pass, found at a fraction of their cost
        for name, value, shape in (("weight", weight, expected), ("bias", bias, (self.out_channels,))):
            if value is None and name == "bias":
                continue
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{type(self).__name__}.{name} must be a numpy.ndarray, not {type(value).__name__}")
            if value.shape != shape:
                raise RuntimeError(
                    f"{type(self).__name__}.{name} has shape {value.shape}, expected {shape} for {self!r}"
                )
            if native_dtype(value.dtype) not in SUPPORTED_DTYPES:
                raise TypeError(f"{type(self).__name__}.{name} must be float32 or float64, but has dtype {value.dtype}")
        return weight, bias

    def _saved_for_backward(self, grad_output):
        """(input, weight, grad_output) of the last forward call, batched; grad_output checked and cast."""
        saved = getattr(self, "_saved", None)
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a forward call first")
        x, weight, out_shape = saved
        with self._parameter_lock().read:
            weight = weight.copy()  # load_state_dict may rewrite the array once the lock is released
        check_array(grad_output, "grad_output", "backward")
        if grad_output.shape != out_shape:
            raise ValueError(f"backward(): grad_output has shape {grad_output.shape}, the last output had {out_shape}")
        gy = np.asarray(grad_output, dtype=weight.dtype)
        if x.ndim == self._n_spatial + 2:
            return x, weight, gy
        return x[np.newaxis], weight, gy[np.newaxis]

    def _finish_backward(self, gy, grad_input, grad_weight):
        """Set weight_grad and bias_grad; the input gradient unbatched when the last input was."""
        from . import grad

        self.weight_grad = grad_weight
        self.bias_grad = grad.bias(gy) if self.bias is not None else None
        return grad_input if self._saved[0].ndim == self._n_spatial + 2 else grad_input[0]

    def extra_repr(self) -> str:
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


class _Convolution(_ConvNd):
    """Conv1d/2d/3d: torch's public constructor, the forward convolution and its backward."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: str | None = None,
        dtype: npt.DTypeLike | None = None,
        *,
        rng: RNG = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            False,
            0,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            rng=rng,
        )

    @staticmethod
    def _constructor_args(module):
        # positional arguments shared by torch's constructor and ours (from either kind of module)
        return (
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
            module.padding_mode,
        )

    def _padded_input(self, input):
        # As torch: a non-zero padding mode pads explicitly, then the convolution pads nothing.
        return pad(input, self._reversed_padding_repeated_twice, self.padding_mode)

    def forward(
        self, input: FloatArray, *, n_threads: SupportsIndex | None = None, out: FloatArray | None = None
    ) -> FloatArray:
        """Apply the convolution; see the class docstring for the shapes.

        n_threads and out are as for ``gconv.conv2d``: the thread count for this call, and an array to
        write the result into.
        """
        op = f"conv{self._n_spatial}d"
        check_array(input, "input", op)
        if self.padding_mode == "zeros":
            conv_input, padding = input, self.padding
        else:
            conv_input, padding = self._padded_input(input), (0,) * self._n_spatial
        plans, weight_cache = self._forward_plans(), self._packed_weights()
        with self._parameter_lock().read:  # no load_state_dict rewrites them while the kernels read
            weight, bias = self._parameters_now()
            result = None
            # what _checked_parameters() compares the parameters with, besides groups (in hyper)
            declared = (self.in_channels, self.out_channels, self.kernel_size)
            if out is None and conv_input is input:
                # a call like the last one runs its kernels at once: weight and bias like that call's, which
                # passed the checks below for this declared shape
                hyper = (self.stride, padding, self.dilation, self.groups)
                result = plans.repeat(input, weight, bias, hyper, n_threads, weight_cache, declared)
            if result is None:
                weight, bias = self._checked_parameters(weight, bias)
                result = convolution(
                    conv_input,
                    weight,
                    bias,
                    self.stride,
                    padding,
                    self.dilation,
                    self.groups,
                    self._n_spatial,
                    op,
                    n_threads,
                    out,
                    source=input,
                    weight_cache=weight_cache,
                    plans=plans,
                )
                plans.checked_for = declared
        # what backward() needs: references, not copies (as torch's autograd, modifying them in between
        # changes the gradient); the padded copy is made again there rather than kept alive here
        self._saved = (input, weight, result.shape)
        return result

    def backward(self, grad_output: FloatArray, *, n_threads: SupportsIndex | None = None) -> FloatArray:
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

        x, weight, gy = self._saved_for_backward(grad_output)
        nd = self._n_spatial
        zeros_mode = self.padding_mode == "zeros"
        conv_input = x if zeros_mode else self._padded_input(x)
        pads = self._padding_pairs() if zeros_mode else ((0, 0),) * nd
        geometry = _geometry.Geometry(self.kernel_size, self.stride, pads, self.dilation).lifted()
        x_l, gy_l = _geometry.lift(conv_input.astype(weight.dtype, copy=False)), _geometry.lift(gy)
        w_l = _geometry.lift(weight)
        grad_weight = grad.weight_grad(x_l, gy_l, w_l.shape, geometry, self.groups, n_threads)
        grad_input = grad.input_grad(
            gy_l, np.ascontiguousarray(w_l), np.empty(x_l.shape, weight.dtype), geometry, self.groups, n_threads
        )
        grad_input = _geometry.drop(grad_input, nd)
        if not zeros_mode:
            grad_input = unpad_grad(grad_input, x.shape, self._reversed_padding_repeated_twice, self.padding_mode)
        return self._finish_backward(gy, grad_input, _geometry.drop(grad_weight, nd))


class _ConvTransposeNd(_ConvNd):
    """ConvTranspose1d/2d/3d: torch's public constructor, the transposed convolution and its backward."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        device: str | None = None,
        dtype: npt.DTypeLike | None = None,
        *,
        rng: RNG = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            True,
            output_padding,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            rng=rng,
        )

    @staticmethod
    def _constructor_args(module):
        return (
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.output_padding,
            module.groups,
            module.bias is not None,
            module.dilation,
            module.padding_mode,
        )

    def _output_padding(self, input, output_size):
        """torch's _ConvTransposeNd._output_padding: the output_padding that gives output_size (ValueError)."""
        nd = self._n_spatial
        if output_size is None:
            return self.output_padding
        for v in output_size:
            index(v, "output_size", "forward")
        non_spatial = 2 if input.ndim == nd + 2 else 1
        if len(output_size) == non_spatial + nd:
            output_size = output_size[non_spatial:]
        if len(output_size) != nd:
            raise ValueError(
                f"ConvTranspose{nd}D: for {input.ndim}D input, output_size must have {nd} "
                f"or {non_spatial + nd} elements (got {len(output_size)})"
            )
        geometry = _geometry.Geometry(self.kernel_size, self.stride, tuple((p, p) for p in self.padding), self.dilation)
        min_sizes = list(geometry.transposed_output_shape(input.shape[non_spatial:], (0,) * nd))
        max_sizes = [m + s - 1 for m, s in zip(min_sizes, self.stride)]
        for size, low, high in zip(output_size, min_sizes, max_sizes):
            if size < low or size > high:
                shown = f"torch.Size({list(input.shape[non_spatial:])})"
                raise ValueError(
                    f"requested an output size of {output_size}, but valid sizes range "
                    f"from {min_sizes} to {max_sizes} (for an input of {shown})"
                )
        return tuple(size - low for size, low in zip(output_size, min_sizes))

    def forward(
        self,
        input: FloatArray,
        output_size: Shape | None = None,
        *,
        n_threads: SupportsIndex | None = None,
        out: FloatArray | None = None,
    ) -> FloatArray:
        """Apply the transposed convolution; output_size (spatial, or with the batch and channel axes)
        chooses among the output sizes a stride allows, as torch's."""
        op = f"conv_transpose{self._n_spatial}d"
        check_array(input, "input", op)
        output_padding = self._output_padding(input, output_size)
        with self._parameter_lock().read:  # no load_state_dict rewrites them while the kernels read
            weight, bias = self._checked_parameters(*self._parameters_now())
            result = transposed_convolution(
                input,
                weight,
                bias,
                self.stride,
                self.padding,
                output_padding,
                self.groups,
                self.dilation,
                self._n_spatial,
                op,
                n_threads,
                out,
            )
        self._saved = (input, weight, result.shape)
        return result

    def __call__(
        self,
        input: FloatArray,
        output_size: Shape | None = None,
        *,
        n_threads: SupportsIndex | None = None,
        out: FloatArray | None = None,
    ) -> FloatArray:
        return self.forward(input, output_size, n_threads=n_threads, out=out)

    def backward(self, grad_output: FloatArray, *, n_threads: SupportsIndex | None = None) -> FloatArray:
        """Back-propagate through the last forward call: ``gx = m.backward(gy)``; sets ``weight_grad`` and
        ``bias_grad``. The input gradient of a transposed convolution is the plain convolution of grad_output."""
        from . import grad

        x, weight, gy = self._saved_for_backward(grad_output)
        geometry = _geometry.Geometry(self.kernel_size, self.stride, tuple((p, p) for p in self.padding), self.dilation)
        x_l, gy_l = _geometry.lift(x.astype(weight.dtype, copy=False)), _geometry.lift(gy)
        # <conv_transpose_w(x), gy> = <x, conv_w(gy)>: the weight gradient is the convolution's, gy as its input
        grad_weight = grad.weight_grad(
            gy_l, x_l, _geometry.lift(weight).shape, geometry.lifted(), self.groups, n_threads
        )
        grad_input = np.empty(x_l.shape, weight.dtype)
        lifted = geometry.lifted()
        _select.convolution(
            np.ascontiguousarray(gy_l),
            np.ascontiguousarray(_geometry.lift(weight)),
            np.empty(0, weight.dtype),
            grad_input,
            lifted.stride,
            lifted.pad_before,
            lifted.dilation,
            self.groups,
            resolve_n_threads(n_threads),
        )
        return self._finish_backward(
            gy, _geometry.drop(grad_input, self._n_spatial), _geometry.drop(grad_weight, self._n_spatial)
        )


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


class Conv1d(_Convolution):
    __doc__ = (
        """1-D convolution over NumPy arrays, as ``torch.nn.Conv1d``.

    Input (N, C_in, L) or (C_in, L); output (N, C_out, L_out) or (C_out, L_out), a new float array of
    the input's dtype (or ``out=``).
"""
        + _PARAMETERS_DOC
    )

    _n_spatial = 1


class Conv2d(_Convolution):
    __doc__ = (
        """2-D convolution over NumPy arrays, as ``torch.nn.Conv2d``.

    Input (N, C_in, H, W) or (C_in, H, W); output (N, C_out, H_out, W_out) or (C_out, H_out, W_out), a new
    float array of the input's dtype (or ``out=``).
"""
        + _PARAMETERS_DOC
    )

    _n_spatial = 2


class Conv3d(_Convolution):
    __doc__ = (
        """3-D convolution over NumPy arrays, as ``torch.nn.Conv3d``.

    Input (N, C_in, D, H, W) or (C_in, D, H, W); output (N, C_out, D_out, H_out, W_out) or without N, a new
    float array of the input's dtype (or ``out=``); a channels-last-3d input gives a channels-last-3d output.
"""
        + _PARAMETERS_DOC
    )

    _n_spatial = 3


_TRANSPOSED_PARAMETERS_DOC = """
    Parameters
    ----------
    in_channels, out_channels : int
        Both divisible by ``groups``.
    kernel_size, stride, padding, output_padding, dilation : int or tuple of ints
        torch's order: ``(in, out, kernel_size, stride, padding, output_padding, groups, bias, dilation)``.
        ``padding`` is the matching convolution's: it trims that much from both ends of the output;
        ``output_padding`` (smaller than the stride or the dilation) adds size at the end.
    groups : int
    bias : bool
    padding_mode : 'zeros' only, as torch
    device : None or 'cpu'
    dtype : numpy float dtype, float32 (default) or float64
    rng : None, int or numpy.random.Generator, keyword-only
        Seeds the initialisation: uniform in +-1/sqrt(fan_in), fan_in = out_channels // groups * prod(kernel_size),
        as torch computes it from this weight layout.

    Attributes
    ----------
    weight : ndarray, shape (in_channels, out_channels // groups, *kernel_size)
    bias : ndarray of shape (out_channels,), or None
"""


class ConvTranspose3d(_ConvTransposeNd):
    __doc__ = (
        """3-D transposed convolution over NumPy arrays, as ``torch.nn.ConvTranspose3d``.

    Input (N, C_in, D, H, W) or (C_in, D, H, W); output (N, C_out, D_out, H_out, W_out) or without N, each
    size as for ``ConvTranspose2d``.
"""
        + _TRANSPOSED_PARAMETERS_DOC
    )

    _n_spatial = 3


class ConvTranspose1d(_ConvTransposeNd):
    __doc__ = (
        """1-D transposed convolution over NumPy arrays, as ``torch.nn.ConvTranspose1d``.

    Input (N, C_in, L) or (C_in, L); output (N, C_out, L_out) or (C_out, L_out), L_out = (L - 1) * stride
    - 2 * padding + dilation * (K - 1) + output_padding + 1; ``m(x, output_size=...)`` picks another of the
    sizes a stride allows.
"""
        + _TRANSPOSED_PARAMETERS_DOC
    )

    _n_spatial = 1


class ConvTranspose2d(_ConvTransposeNd):
    __doc__ = (
        """2-D transposed convolution over NumPy arrays, as ``torch.nn.ConvTranspose2d``.

    Input (N, C_in, H, W) or (C_in, H, W); output (N, C_out, H_out, W_out) or (C_out, H_out, W_out), each
    size (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1; ``m(x, output_size=...)``
    picks another of the sizes a stride allows.
"""
        + _TRANSPOSED_PARAMETERS_DOC
    )

    _n_spatial = 2
