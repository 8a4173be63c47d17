"""Batch-norm folding: fuse_conv_bn_eval and fuse_conv_bn_weights, torch.nn.utils.fusion's on NumPy arrays."""

from __future__ import annotations

import copy
import numbers
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["fuse_conv_bn_eval", "fuse_conv_bn_weights"]

FloatArray = npt.NDArray[np.floating[Any]]


class _ConvModule(Protocol):
    """What folding needs of a gconv convolution module: its parameters, as attributes (torch's names)."""

    weight: FloatArray
    bias: FloatArray | None


ConvT = TypeVar("ConvT", bound=_ConvModule)


# The argument names of each public function, for the error messages: (conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b)
_WEIGHTS_NAMES = ("conv_w", "conv_b", "bn_rm", "bn_rv", "bn_eps", "bn_w", "bn_b")
_EVAL_NAMES = ("conv.weight", "conv.bias", "running_mean", "running_var", "eps", "gamma", "beta")


def _float_array(value: npt.ArrayLike | None, name: str, op: str) -> FloatArray:
    if value is None:
        raise TypeError(f"{op}(): {name} must be an array, not None")
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(f"{op}(): {name} must be a floating-point array, but has dtype {array.dtype}")
    return array


def _channel_vector(
    value: npt.ArrayLike, name: str, op: str, channels: int, weight_shape: tuple[int, ...]
) -> FloatArray:
    array = _float_array(value, name, op)
    if array.shape != (channels,):
        raise ValueError(
            f"{op}(): {name} must have shape ({channels},), one value per output channel of a weight of shape "
            f"{weight_shape}, but has shape {array.shape}"
        )
    return array


def fuse_conv_bn_weights(
    conv_w: npt.ArrayLike,
    conv_b: npt.ArrayLike | None,
    bn_rm: npt.ArrayLike,
    bn_rv: npt.ArrayLike,
    bn_eps: float,
    bn_w: npt.ArrayLike | None,
    bn_b: npt.ArrayLike | None,
    transpose: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Fold an evaluation-mode batch norm into the convolution before it, as ``torch.nn.utils.fusion``.

    ``conv(x, fused_w, fused_b)`` equals ``batch_norm(conv(x, conv_w, conv_b))`` with the running statistics:
    each output channel's weights are scaled by ``bn_w / sqrt(bn_rv + bn_eps)`` and its bias becomes
    ``(conv_b - bn_rm) * bn_w / sqrt(bn_rv + bn_eps) + bn_b``.

    Parameters
    ----------
    conv_w : array, shape (C_out, C_in // groups, *kernel_size), or (C_in, C_out, *kernel_size) with transpose
        The convolution's weight, a floating-point array.
    conv_b : array of shape (C_out,), or None
        The convolution's bias; None folds as zeros.
    bn_rm, bn_rv : array of shape (C_out,)
        The batch norm's running mean and running variance.
    bn_eps : float
        The batch norm's eps.
    bn_w, bn_b : array of shape (C_out,), or None
        The batch norm's affine weight (gamma) and bias (beta); None folds as ones and zeros (``affine=False``).
    transpose : bool
        The weight is a transposed convolution's, output channels on axis 1 (one group only, as torch).

    Returns
    -------
    (weight, bias) : new C-contiguous arrays
        weight of conv_w's shape and dtype; bias of shape (C_out,) and conv_b's dtype (conv_w's when None).
        As torch, the arithmetic runs in the promoted dtype of all the inputs, then is cast to these.

    Raises
    ------
    TypeError
        An argument that is None where an array is needed, or not of a floating-point dtype.
    ValueError
        A weight of fewer than 3 dimensions, or a per-channel array whose shape is not (C_out,).
    """
    return _fold(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose, "fuse_conv_bn_weights", _WEIGHTS_NAMES)


def _fold(
    conv_w: npt.ArrayLike,
    conv_b: npt.ArrayLike | None,
    bn_rm: npt.ArrayLike,
    bn_rv: npt.ArrayLike,
    bn_eps: float,
    bn_w: npt.ArrayLike | None,
    bn_b: npt.ArrayLike | None,
    transpose: bool,
    op: str,
    names: tuple[str, ...],
) -> tuple[FloatArray, FloatArray]:
    w_name, b_name, rm_name, rv_name, eps_name, gamma_name, beta_name = names
    weight = _float_array(conv_w, w_name, op)
    if weight.ndim < 3:
        raise ValueError(
            f"{op}(): {w_name} must be a convolution weight (out_channels, in_channels // groups, *kernel_size), "
            f"but has shape {weight.shape}"
        )
    if not isinstance(bn_eps, numbers.Real) or isinstance(bn_eps, bool):
        raise TypeError(f"{op}(): {eps_name} must be a real number, got {bn_eps!r}")
    eps = float(bn_eps)  # a Python float, as torch takes it: a NumPy float64 scalar would promote float32 to float64
    channels = weight.shape[1] if transpose else weight.shape[0]

    def vector(value: npt.ArrayLike, name: str) -> FloatArray:
        return _channel_vector(value, name, op, channels, weight.shape)

    running_mean = vector(bn_rm, rm_name)
    running_var = vector(bn_rv, rv_name)
    # torch's defaults for the missing ones: zeros and ones like the running mean (its dtype too)
    bias = np.zeros_like(running_mean) if conv_b is None else vector(conv_b, b_name)
    gamma = np.ones_like(running_mean) if bn_w is None else vector(bn_w, gamma_name)
    beta = np.zeros_like(running_mean) if bn_b is None else vector(bn_b, beta_name)
    bias_dtype = weight.dtype if conv_b is None else bias.dtype

    # The same operations in the same order as torch, so that the roundings agree: a Python float eps keeps
    # a float32 variance float32 (torch's promotion and NumPy's agree on this).
    var_rsqrt = 1.0 / np.sqrt(running_var + eps)
    shape = (1, -1) if transpose else (-1, 1)
    scale = (gamma * var_rsqrt).reshape(shape + (1,) * (weight.ndim - 2))
    fused_weight = np.ascontiguousarray(weight * scale, dtype=weight.dtype)
    fused_bias = np.ascontiguousarray((bias - running_mean) * var_rsqrt * gamma + beta, dtype=bias_dtype)
    return fused_weight, fused_bias


def fuse_conv_bn_eval(
    conv: ConvT,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    eps: float = 1e-5,
    gamma: npt.ArrayLike | None = None,
    beta: npt.ArrayLike | None = None,
    *,
    transpose: bool | None = None,
) -> ConvT:
    """A new convolution module that computes ``conv`` followed by an evaluation-mode batch norm.

    As ``torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)``, with the batch norm given by its arrays
    (``bn.running_mean``, ``bn.running_var``, ``bn.eps``, ``bn.weight``, ``bn.bias``, e.g. from a
    safetensors file). ``conv`` is left as it was; the copy always has a bias.

    Parameters
    ----------
    conv : gconv.Conv1d, gconv.Conv2d or another gconv convolution module
    running_mean, running_var : array of shape (out_channels,)
    eps : float
        The batch norm's eps (torch's default 1e-5).
    gamma, beta : array of shape (out_channels,), or None
        The batch norm's affine weight and bias; None for ``affine=False``.
    transpose : bool, optional
        As torch's argument; None (the default) takes it from ``conv.transposed``.

    Returns
    -------
    A deep copy of conv whose weight and bias are ``fuse_conv_bn_weights``'s, in conv's dtype.

    Raises
    ------
    TypeError
        conv is not a gconv convolution module, or an array argument is None or not floating-point.
    ValueError
        An array argument whose shape is not (out_channels,).
    """
    weight = getattr(conv, "weight", None)
    if not isinstance(weight, np.ndarray) or not hasattr(conv, "bias"):
        raise TypeError(
            f"fuse_conv_bn_eval() needs a gconv convolution module (gconv.Conv1d, gconv.Conv2d, ...), "
            f"not {type(conv).__name__}; for torch modules use torch.nn.utils.fusion"
        )
    if transpose is None:
        transpose = bool(getattr(conv, "transposed", False))
    fused_weight, fused_bias = _fold(
        weight, conv.bias, running_mean, running_var, eps, gamma, beta, transpose, "fuse_conv_bn_eval", _EVAL_NAMES
    )
    # a deep copy, as torch's, but with the new parameters in place of the old ones instead of copies of them
    memo = {id(weight): fused_weight}
    if conv.bias is not None:
        memo[id(conv.bias)] = fused_bias
    fused = copy.deepcopy(conv, memo)
    fused.weight, fused.bias = fused_weight, fused_bias
    return fused
