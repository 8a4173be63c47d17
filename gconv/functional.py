"""Functional layer: conv1d/conv2d on NumPy arrays, from torch's checks through the geometry to the kernel choice."""

from __future__ import annotations

import operator
from typing import NamedTuple, SupportsIndex

import numpy as np

from . import _geometry, _select
from ._checks import (
    MAX_EXTENT,
    SUPPORTED_DTYPES,
    batchify,
    check_allocation,
    check_array,
    check_dtypes_match,
    check_out,
    check_same_padding,
    check_shape_forward,
    expand_param,
    int_tuple,
    native_dtype,
    shape_str,
)
from ._layout import coerce, input_needs_copy, is_channels_last
from ._threads import resolve_n_threads
from ._typing import FloatArray, IntOrTuple, Padding

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def _check_sizes_and_dtype(x, x_shape, weight, n_spatial, op):
    """The checks after torch's shape checks, shared by both directions; returns the computing dtype."""
    if 0 in weight.shape[2:]:
        raise RuntimeError(
            f"{op}: kernel size must be positive in every spatial dimension, but got weight of size "
            f"{shape_str(weight.shape)}"
        )
    if x_shape[0] != 0 and x_shape[1] != 0 and 0 in x_shape[2:]:
        shown = x_shape if n_spatial >= 2 else x_shape[:2] + (1,) + x_shape[2:]  # torch shows 1-D lifted
        raise RuntimeError(
            f"Only zero batch or zero channel inputs are supported, but got input shape: {shape_str(shown)}"
        )
    dtype = native_dtype(x.dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}(): gconv supports float32 and float64 arrays, but input has dtype {x.dtype}")
    return dtype


class _Layout(NamedTuple):
    """How a call's arrays are allocated and coerced, decided once its checks have passed (both directions)."""

    is_batched: bool
    out_shape: tuple[int, ...]  # batched
    dtype: np.dtype  # the computing dtype: the input's, in native byte order
    channels_last: bool  # the batched input is channels-last, so the output is allocated so too
    copy_input: bool  # the kernels need a C-contiguous copy of the input (gconv._layout.input_needs_copy)
    empty: bool  # the output has no elements: nothing to compute


class _ForwardPlan(NamedTuple):
    """Everything convolution() derives from its arguments' shapes, strides, dtypes and hyper-parameters."""

    layout: _Layout
    stride: tuple[int, ...]  # the geometry lifted to the kernels' rank
    pad_before: tuple[int, ...]
    dilation: tuple[int, ...]
    choices: dict  # _select.conv2d's memo of choose() for these shapes (the thread count, ISA, ... as keys)


class _Repeat(NamedTuple):
    """A planned call that ForwardPlans.repeat() can run again: what its arrays were, and its plan."""

    arrays: tuple  # the input's, the weight's and the bias's shape, strides and dtype (one dtype; no bias: None)
    dtype: np.dtype  # of the input, weight and bias alike
    hyper: tuple  # (stride, padding, dilation, groups), the objects themselves
    plan: _ForwardPlan
    no_bias: np.ndarray  # the kernels' empty bias

    @staticmethod
    def of(x, weight, bias, hyper, plan, n_spatial):
        """The _Repeat of a call just planned, or None where a call like it still needs more than the
        kernels (a copy, a lift to the kernels' rank, an unbatched view, an empty output)."""
        layout = plan.layout
        dtype = layout.dtype
        if (
            type(x) is not np.ndarray
            or x.dtype is not dtype
            or not layout.is_batched
            or layout.copy_input
            or layout.channels_last
            or layout.empty
            or n_spatial < _geometry.KERNEL_RANK
            or not _same_parameter(weight, weight.shape, weight.strides, dtype)
            or not weight.flags.c_contiguous
            or not (
                bias is None or (_same_parameter(bias, bias.shape, bias.strides, dtype) and bias.flags.c_contiguous)
            )
        ):
            return None
        return _Repeat(
            (x.shape, x.strides, dtype, weight.shape, weight.strides, dtype, _bias_key(bias)),
            dtype,
            hyper,
            plan,
            np.empty(0, dtype),
        )


def _bias_key(bias):
    """What a repeated call compares of the bias: its shape, strides and dtype (None for no bias)."""
    return None if bias is None else (bias.shape, bias.strides, bias.dtype)


def _same_parameter(a, shape, strides, dtype):
    """Whether a is an aligned ndarray of this shape, strides and dtype (the kernels then read it in place)."""
    return type(a) is np.ndarray and a.shape == shape and a.strides == strides and a.dtype is dtype and a.flags.aligned


def _plain(value):
    """Whether value is an int, a str or a tuple of such (nested): hashable and unchangeable in place."""
    if type(value) is tuple:
        return all(_plain(v) for v in value)
    return type(value) in (int, str)


class ForwardPlans:
    """A module's memo of convolution()'s checks and choices: the plan of the last few distinct calls.

    Every check convolution() makes, and the kernel choice, depends only on the input's shape, strides,
    dtype and alignment, the weight's and bias's shapes, strides and dtypes, and the hyper-parameters (stride,
    padding, dilation, groups); the key holds all of these by value, so a call that differs in any of them (a
    new input shape, m.stride reassigned, a weight of another dtype) misses and is checked in full, raising
    exactly what an unmemoised call raises. A hit skips the checks, which passed for this key, and runs the
    rest as every call does: the output allocated or out= checked, the thread count resolved, the arrays
    read as they are now. Plans are kept and used only for plain hyper-parameters (ints, strings and tuples
    of them, which nothing can change in place). Threads may race here: a plan is immutable, its choices
    only gain entries that any thread would compute alike.

    A call like the last one planned skips even the key: repeat() compares the arrays' shapes, strides and
    dtypes with that call's and the hyper-parameters by identity, and runs the kernels (a module call of a
    1x1 layer on a 1x1 map 7.8 -> 6.6 us, of which 1.5 us are the kernel's own entry).
    """

    __slots__ = ("_plans", "_last", "_last_plan", "checked_for")
    MAX_PLANS = 8  # distinct calls kept per module; then the memo starts again
    REPEATS = True  # whether plan() keeps the last call for repeat()

    def __init__(self) -> None:
        self._plans: dict = {}
        self._last: _Repeat | None = None  # the last planned call, when repeat() can run one like it
        self._last_plan: _ForwardPlan | None = None  # that call's plan
        # the caller's own inputs to its checks at its last fully checked call (a module's declared shape:
        # in_channels, out_channels, kernel_size), which repeat() compares by identity
        self.checked_for: tuple | None = None

    def plan(self, x, weight, bias, stride, padding, dilation, groups, n_spatial, op):
        """_plan_convolution(...) of these arguments: remembered, or checked now (raising what it raises)."""
        key = (
            op,
            x.shape,
            x.strides,
            x.dtype,
            x.flags.aligned,
            weight.shape,
            weight.strides,
            weight.dtype,
            None if bias is None else (bias.shape, bias.strides, bias.dtype),
            stride,
            padding,
            dilation,
            groups,
        )
        try:
            kept = self._plans.get(key)
        except TypeError:  # an unhashable hyper-parameter (a list assigned to m.stride): checked every call
            kept = None
        # Equal is not enough for the hyper-parameters: 1.0 == 1 and True == 1, yet a float stride is refused.
        # The module's own tuples (the same objects call after call) pass at once; others must be plain.
        hyper = (stride, padding, dilation, groups)
        if kept is not None and (all(map(operator.is_, kept[0], hyper)) or _plain(hyper)):
            plan = kept[1]
        else:
            plan = _plan_convolution(x, weight, bias, stride, padding, dilation, groups, n_spatial, op)
            if not _plain(hyper):  # nor hashable: nothing is kept
                self._last = self._last_plan = None
                return plan
            if len(self._plans) >= self.MAX_PLANS:
                self._plans.clear()
            self._plans[key] = (hyper, plan)
        if not self.REPEATS:
            return plan
        last = self._last
        # the same plan (a call with the same key) and hyper-parameter objects: the _Repeat made holds
        if plan is not self._last_plan or (last is not None and not all(map(operator.is_, last.hyper, hyper))):
            self._last = _Repeat.of(x, weight, bias, hyper, plan, n_spatial)
            self._last_plan = plan
        return plan

    def repeat(self, x, weight, bias, hyper, n_threads, weight_cache, checked_for=()):
        """The result of a call like the last one plan() saw, or None: then the caller makes the full call.

        "Like" is what the plan's checks and layout depend on: the input, weight and bias of the same type,
        shape, strides, dtype and alignment (an array's shape and strides can be set in place, so identity
        is not enough), the same hyper-parameter objects. Only calls that copy nothing qualify (_Repeat.of):
        batched, NCHW, non-empty, of a 2-D or 3-D convolution, without out=. What a repeated call skips is
        what those fix: torch's checks, the layout, the coercions; the thread count and the kernel choice's
        other inputs are read again, and the kernels read the arrays as they are now. checked_for: the
        caller's checks' other inputs, the objects it gave checked_for after its last full call (a module then
        skips its parameter checks, which passed for weights like these).
        """
        last = self._last
        kept = self.checked_for
        if (
            last is None
            or kept is None
            or len(kept) != len(checked_for)
            or not all(map(operator.is_, kept, checked_for))
            or type(x) is not np.ndarray
            or type(weight) is not np.ndarray
            or not (bias is None or (type(bias) is np.ndarray and bias.flags.aligned))
        ):
            return None
        now = (x.shape, x.strides, x.dtype, weight.shape, weight.strides, weight.dtype, _bias_key(bias))
        if (
            now != last.arrays
            or not (x.flags.aligned and weight.flags.aligned)
            or hyper[0] is not last.hyper[0]
            or hyper[1] is not last.hyper[1]
            or hyper[2] is not last.hyper[2]
            or hyper[3] is not last.hyper[3]
        ):
            return None
        plan = last.plan
        out = np.empty(plan.layout.out_shape, last.dtype)
        _select.convolution(
            x,
            weight,
            last.no_bias if bias is None else bias,
            out,
            plan.stride,
            plan.pad_before,
            plan.dilation,
            hyper[3],
            resolve_n_threads(n_threads),
            weight_cache=weight_cache,
            choices=plan.choices,
        )
        return out

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (type(self), ())  # a copy or a pickle starts empty: the memo is no part of a module's state


class _SharedPlans(ForwardPlans):
    """The functional API's memo, one per process: ForwardPlans' plans for the distinct calls of a whole
    network (bench.py's "tiny latency" call, 1x6x8x8 with a 3x3 kernel in 3 groups: 28.8 -> 12.1 us), without
    the last call's _Repeat, which only modules run. The key holds no array, so the memo keeps none alive."""

    __slots__ = ()
    MAX_PLANS = 256
    REPEATS = False


_FUNCTIONAL_PLANS = _SharedPlans()


def convolution(
    x,
    weight,
    bias,
    stride,
    padding,
    dilation,
    groups,
    n_spatial,
    op,
    n_threads=None,
    out=None,
    source=None,
    weight_cache=None,
    plans=None,
):
    """torch.nn.functional.conv{n_spatial}d on NumPy arrays: checks in torch's order, then the kernel.

    stride and dilation are tuples of ints, padding a tuple of ints, 'same'/'valid', or a tuple of
    (before, after) pairs (the module path's explicit padding), groups an int. out, when given, receives the
    result (its shape and dtype, C-contiguous or channels-last, no overlap). source: the caller's own input
    when x is a padded copy of it (a padding mode), which out must not overlap either. weight_cache: a
    module's PackedWeights (gconv._weight_cache), reused while its weights are unchanged. plans: a module's
    ForwardPlans, or the functional API's _FUNCTIONAL_PLANS, which lets a call like an earlier one skip the
    checks and the kernel choice.
    """
    plan = (plans.plan if plans is not None else _plan_convolution)(
        x, weight, bias, stride, padding, dilation, groups, n_spatial, op
    )

    def compute(x_c, w_c, b_c, out_batched):
        # Conv1d is the 2-D kernel over a height-1 image: views, no copies. Conv3d runs over depth planes.
        _select.convolution(
            _geometry.lift(x_c),
            _geometry.lift(w_c),
            b_c,
            _geometry.lift(out_batched),
            plan.stride,
            plan.pad_before,
            plan.dilation,
            groups,
            resolve_n_threads(n_threads),
            weight_cache=weight_cache,
            choices=plan.choices,
        )

    return _run(plan.layout, compute, x, weight, bias, out, op, source)


def _plan_convolution(x, weight, bias, stride, padding, dilation, groups, n_spatial, op):
    """convolution()'s checks, in torch's order, and what they decide: its _ForwardPlan."""
    string_padding = isinstance(padding, str)
    if not string_padding:
        check_dtypes_match(x, bias, "bias", late_style=False)
    x_batched, is_batched = batchify(x, n_spatial, op)
    if string_padding and padding not in ("same", "valid"):
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    if weight.ndim < 3:
        raise RuntimeError("weight should have at least three dimensions")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    dim = weight.ndim - 2

    x_shape = x_batched.shape
    extra = (0,) * dim
    if padding == "same":
        check_same_padding(weight, stride, dilation, dim, x_shape)
        pairs = _geometry.same_padding(weight.shape[2:], dilation * dim if len(dilation) == 1 else dilation)
        padding, extra = _geometry.symmetric_and_extra(pairs)
        # torch pads the odd extra explicitly first; its later messages show that padded shape
        x_shape = x_shape[:2] + tuple(s + e for s, e in zip(x_shape[2:], extra))
    elif padding == "valid":
        padding = (0,)
    stride = expand_param(stride, "stride", dim)
    padding = expand_param(padding, "padding", dim)
    dilation = expand_param(dilation, "dilation", dim)
    expand_param((0,) * n_spatial, "output_padding", dim)

    padded, extent = check_shape_forward(x_shape, weight, bias, stride, padding, dilation, groups)
    check_dtypes_match(x, weight, "weight", late_style=True)
    if string_padding:
        check_dtypes_match(x, bias, "bias", late_style=True)
    dtype = _check_sizes_and_dtype(x, x_shape, weight, n_spatial, op)
    n, c_in = x_shape[0], x_shape[1]
    if max(*padded, *extent, *stride) >= MAX_EXTENT:
        raise RuntimeError(
            f"{op}: stride, padding or dilated kernel extent of 2**62 or more is not supported "
            f"(padded input size {padded}, kernel extent {extent}, stride {list(stride)})"
        )

    geometry = _geometry.Geometry(
        tuple(weight.shape[2:]), tuple(stride), tuple((p, p + e) for p, e in zip(padding, extra)), tuple(dilation)
    )
    # torch quirk kept for parity: an input with zero channels gives an output with zero channels.
    c_out = weight.shape[0] if c_in != 0 else 0
    out_shape = (n, c_out) + geometry.output_shape(x_batched.shape[2:])
    layout = _layout(x_batched, is_batched, weight, bias, out_shape, dtype, op)
    lifted = geometry.lifted()
    return _ForwardPlan(layout, lifted.stride, lifted.pad_before, lifted.dilation, {})


def _layout(x_batched, is_batched, weight, bias, out_shape, dtype, op):
    """The allocation checks of a call whose other checks have passed, and its _Layout."""
    n_elements = _geometry.size(out_shape)
    check_allocation(n_elements * dtype.itemsize, f"{op}: the output of size", out_shape)
    x_channels_last = is_channels_last(x_batched)
    copy_input = input_needs_copy(x_batched, dtype, x_channels_last)
    for name, a, copied in (("input", x_batched, copy_input), ("weight", weight, True), ("bias", bias, True)):
        if a is not None and copied and not (a.flags.c_contiguous and a.dtype == dtype):
            check_allocation(a.size * dtype.itemsize, f"{op}: a contiguous copy of {name}", a.shape)
    return _Layout(is_batched, out_shape, dtype, x_channels_last, copy_input, n_elements == 0)


def _run(layout, compute, x, weight, bias, out, op, source=None):
    """Allocate (or check) the output, coerce the arrays where the kernels need it, and compute into it.

    compute(x, weight, bias, out) gets batched arrays of one dtype: x as the kernels can read it in place or
    a copy, weight C-contiguous, bias (C,) or (0,), out batched (a view of the caller's when unbatched).
    The output keeps a channels-last input's memory format, as torch's does.
    """
    is_batched, out_shape, dtype = layout.is_batched, layout.out_shape, layout.dtype
    if out is None:
        if layout.channels_last and is_batched:
            ndim = len(out_shape)
            out = np.empty((out_shape[0], *out_shape[2:], out_shape[1]), dtype=dtype).transpose(
                0, ndim - 1, *range(1, ndim - 1)
            )
        else:
            out = np.empty(out_shape, dtype=dtype)
        result = out if is_batched else out[0]
    else:
        check_out(out, out_shape if is_batched else out_shape[1:], dtype, (x, weight, bias, source), op)
        result = out
        if not is_batched:
            out = out[np.newaxis]
    if layout.empty:
        return result
    x_batched = x if is_batched else x[np.newaxis]
    x_c = coerce(x_batched, dtype) if layout.copy_input else x_batched
    b_c = coerce(bias, dtype) if bias is not None else np.empty(0, dtype=dtype)
    compute(x_c, coerce(weight, dtype), b_c, out)
    return result


def transposed_convolution(
    x, weight, bias, stride, padding, output_padding, groups, dilation, n_spatial, op, n_threads=None, out=None
):
    """torch.nn.functional.conv_transpose{n_spatial}d on NumPy arrays: torch's checks, then the kernels.

    The transposed convolution is the input gradient of the convolution whose weight this is: it runs as
    gconv.grad.input_grad does, one stride-1 convolution per stride phase, with no inserted zeros.
    """
    from .grad import input_grad

    x_batched, is_batched = batchify(x, n_spatial, op)
    if weight.ndim < 3:
        raise RuntimeError("weight should have at least three dimensions")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    dim = weight.ndim - 2
    stride = expand_param(stride, "stride", dim)
    padding = expand_param(padding, "padding", dim)
    dilation = expand_param(dilation, "dilation", dim)
    output_padding = expand_param(output_padding, "output_padding", dim)
    x_shape = x_batched.shape
    check_shape_forward(x_shape, weight, bias, stride, padding, dilation, groups, output_padding)
    check_dtypes_match(x, weight, "weight", late_style=True)
    check_dtypes_match(x, bias, "bias", late_style=True)
    dtype = _check_sizes_and_dtype(x, x_shape, weight, n_spatial, op)
    n = x_shape[0]
    geometry = _geometry.Geometry(
        tuple(weight.shape[2:]), tuple(stride), tuple((p, p) for p in padding), tuple(dilation)
    )
    out_spatial = geometry.transposed_output_shape(x_shape[2:], output_padding)
    if min(out_spatial) < 1 or max(out_spatial) >= MAX_EXTENT:
        raise RuntimeError(
            f"{op}: the output size per channel would be ({' x '.join(map(str, out_spatial))}) for input size "
            f"({' x '.join(map(str, x_shape[2:]))}), kernel size {tuple(weight.shape[2:])}, stride {tuple(stride)}, "
            f"padding {tuple(padding)}, dilation {tuple(dilation)} and output_padding {tuple(output_padding)}; "
            f"every size must be positive"
        )
    out_shape = (n, weight.shape[1] * groups) + out_spatial
    layout = _layout(x_batched, is_batched, weight, bias, out_shape, dtype, op)

    def compute(x_c, w_c, b_c, out_batched):
        target = _geometry.lift(out_batched)
        input_grad(_geometry.lift(x_c), _geometry.lift(w_c), target, geometry.lifted(), groups, n_threads)
        if b_c.size:
            target += b_c.reshape(1, -1, *(1,) * (target.ndim - 2))

    return _run(layout, compute, x, weight, bias, out, op)


def _int_args(op, n_spatial, **values):
    """torch's int-or-tuple arguments as tuples of Python ints (padding may stay a string)."""
    return [
        v if isinstance(v, str) and name == "padding" else int_tuple(v, name, op, n_spatial)
        for name, v in values.items()
    ]


def _check_arrays(op, x, weight, bias):
    check_array(x, "input", op)
    check_array(weight, "weight", op)
    if bias is not None:
        check_array(bias, "bias", op)


def _functional(x, weight, bias, stride, padding, dilation, groups, n_spatial, n_threads, out):
    op = f"conv{n_spatial}d"
    _check_arrays(op, x, weight, bias)
    stride, padding, dilation = _int_args(op, n_spatial, stride=stride, padding=padding, dilation=dilation)
    return convolution(
        x,
        weight,
        bias,
        stride,
        padding,
        dilation,
        operator.index(groups),
        n_spatial,
        op,
        n_threads,
        out,
        plans=_FUNCTIONAL_PLANS,
    )


def _functional_transposed(
    x, weight, bias, stride, padding, output_padding, groups, dilation, n_spatial, n_threads, out
):
    op = f"conv_transpose{n_spatial}d"
    _check_arrays(op, x, weight, bias)
    if isinstance(padding, str):  # torch: "argument 'padding' must be tuple of ints", with its own wording
        raise TypeError(f"{op}(): argument 'padding' must be an int or a tuple of ints, not str")
    stride, padding, output_padding, dilation = _int_args(
        op, n_spatial, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation
    )
    return transposed_convolution(
        x,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        operator.index(groups),
        dilation,
        n_spatial,
        op,
        n_threads,
        out,
    )


def conv2d(
    input: FloatArray,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: SupportsIndex = 1,
    *,
    n_threads: SupportsIndex | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
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


def conv1d(
    input: FloatArray,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: SupportsIndex = 1,
    *,
    n_threads: SupportsIndex | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
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


def conv_transpose2d(
    input: FloatArray,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: SupportsIndex = 1,
    dilation: IntOrTuple = 1,
    *,
    n_threads: SupportsIndex | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """2-D transposed convolution over NumPy arrays, as ``torch.nn.functional.conv_transpose2d``.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W) or (C_in, H, W)
    weight : ndarray, shape (C_in, C_out // groups, KH, KW)
    bias : ndarray, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or (int, int)
        torch's order: ``output_padding`` then ``groups`` then ``dilation``. ``output_padding`` adds rows and
        columns at the end (each smaller than the stride or the dilation).
    groups : int
    n_threads, out : as for ``conv2d``

    Returns
    -------
    ndarray, shape (N, C_out, H_out, W_out) or (C_out, H_out, W_out)
        H_out = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1, likewise W_out.
    """
    return _functional_transposed(
        input, weight, bias, stride, padding, output_padding, groups, dilation, 2, n_threads, out
    )


def conv_transpose1d(
    input: FloatArray,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: SupportsIndex = 1,
    dilation: IntOrTuple = 1,
    *,
    n_threads: SupportsIndex | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """1-D transposed convolution over NumPy arrays, as ``torch.nn.functional.conv_transpose1d``.

    input (N, C_in, L) or (C_in, L); weight (C_in, C_out // groups, K); the rest as ``conv_transpose2d``.
    Returns (N, C_out, L_out) or (C_out, L_out), L_out = (L - 1) * stride - 2 * padding + dilation * (K - 1)
    + output_padding + 1.
    """
    return _functional_transposed(
        input, weight, bias, stride, padding, output_padding, groups, dilation, 1, n_threads, out
    )


def conv3d(
    input: FloatArray,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: SupportsIndex = 1,
    *,
    n_threads: SupportsIndex | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """3-D convolution (cross-correlation) over NumPy arrays, as ``torch.nn.functional.conv3d``.

    input (N, C_in, D, H, W) or (C_in, D, H, W); weight (C_out, C_in // groups, KD, KH, KW); the rest as
    ``conv2d`` with three values per tuple. Returns (N, C_out, D_out, H_out, W_out) or without N.
    """
    return _functional(input, weight, bias, stride, padding, dilation, groups, 3, n_threads, out)


def conv_transpose3d(
    input: FloatArray,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: SupportsIndex = 1,
    dilation: IntOrTuple = 1,
    *,
    n_threads: SupportsIndex | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """3-D transposed convolution over NumPy arrays, as ``torch.nn.functional.conv_transpose3d``.

    input (N, C_in, D, H, W) or (C_in, D, H, W); weight (C_in, C_out // groups, KD, KH, KW); the rest as
    ``conv_transpose2d`` with three values per tuple.
    """
    return _functional_transposed(
        input, weight, bias, stride, padding, output_padding, groups, dilation, 3, n_threads, out
    )
