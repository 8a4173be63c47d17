"""Dask front end: gconv convolutions over dask arrays chunked along the batch axis (needs gconv[dask])."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from . import functional as F
from ._typing import FloatArray
from .modules import _ConvNd

if TYPE_CHECKING:
    import dask.array as da

# what a task computes on one batch chunk, given the parameters that travel once per worker
_Shared = Any
_Compute = Callable[[np.ndarray, _Shared], np.ndarray]
_IntOrTuple = Union[int, tuple[int, ...]]
_Padding = Union[int, tuple[int, ...], str]
_Params = tuple[FloatArray, Optional[FloatArray]]

__all__ = ["conv1d", "conv2d", "forward"]


def _require_dask() -> tuple[ModuleType, ModuleType]:
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise ImportError("gconv.dask needs dask: pip install 'gconv[dask]'") from None
    return dask, da


def _apply(block: np.ndarray, shared: _Shared, compute: _Compute) -> np.ndarray:
    return compute(block, shared)


def _check_input(x: da.Array, n_spatial: int) -> np.ndarray:
    _, da = _require_dask()
    if not isinstance(x, da.Array):
        raise TypeError(f"gconv.dask needs a dask.array.Array input, not {type(x).__name__}")
    if x.ndim != n_spatial + 2:
        raise ValueError(
            f"gconv.dask needs a batched input of {n_spatial + 2} dimensions (N, C, ...) chunked along N, "
            f"got shape {x.shape}"
        )
    return np.empty((0,) + tuple(x.shape[1:]), dtype=x.dtype)  # an empty batch, to check arguments on


def _map_batches(x: da.Array, n_spatial: int, shared: _Shared, compute: _Compute, probe: np.ndarray) -> da.Array:
    """compute(block, shared) on each batch chunk of x; shared travels as one graph key (once per worker).

    probe: the result of compute on an empty batch, which has already checked every argument eagerly and
    gives the output's shape past the batch axis and its dtype.
    """
    dask, da = _require_dask()
    # one chunk along every axis but the batch: each task convolves whole images
    x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    index = "n" + "cdhw"[-(n_spatial + 1) :]
    return da.blockwise(
        _apply,
        index,
        x,
        index,
        dask.delayed(shared, pure=True),
        None,
        compute,
        None,
        dtype=probe.dtype,
        adjust_chunks=dict(zip(index[1:], probe.shape[1:])),
        meta=np.empty((0,) * x.ndim, dtype=probe.dtype),
    )


def _functional_block(block: np.ndarray, params: _Params, *, n_spatial: int, **kwargs: Any) -> np.ndarray:
    weight, bias = params
    fn = F.conv1d if n_spatial == 1 else F.conv2d
    return fn(block, weight, bias, **kwargs)


def _convolution(
    n_spatial: int,
    input: da.Array,
    weight: FloatArray,
    bias: FloatArray | None,
    stride: _IntOrTuple,
    padding: _Padding,
    dilation: _IntOrTuple,
    groups: int,
    n_threads: int | None,
) -> da.Array:
    empty_batch = _check_input(input, n_spatial)
    kwargs: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, n_threads=n_threads)
    fn = F.conv1d if n_spatial == 1 else F.conv2d
    probe = fn(empty_batch, weight, bias, **kwargs)
    compute = functools.partial(_functional_block, n_spatial=n_spatial, **kwargs)
    return _map_batches(input, n_spatial, (weight, bias), compute, probe)


def conv2d(
    input: da.Array,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: _IntOrTuple = 1,
    padding: _Padding = 0,
    dilation: _IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: int | None = None,
) -> da.Array:
    """``gconv.conv2d`` over a dask array; returns a lazy dask array.

    Parameters
    ----------
    input : dask.array.Array, shape (N, C_in, H, W)
        Chunked along N; the other axes are rechunked to one chunk (each task convolves whole images).
    weight, bias, stride, padding, dilation, groups, n_threads
        As for ``gconv.conv2d``; checked now, with gconv's (torch's) errors. weight and bias enter the graph
        once, so a distributed scheduler sends them once per worker, not once per chunk.

    Returns
    -------
    dask.array.Array, shape (N, C_out, H_out, W_out), chunked along N like the input.
    """
    return _convolution(2, input, weight, bias, stride, padding, dilation, groups, n_threads)


def conv1d(
    input: da.Array,
    weight: FloatArray,
    bias: FloatArray | None = None,
    stride: _IntOrTuple = 1,
    padding: _Padding = 0,
    dilation: _IntOrTuple = 1,
    groups: int = 1,
    *,
    n_threads: int | None = None,
) -> da.Array:
    """``gconv.conv1d`` over a dask array; returns a lazy dask array.

    Parameters
    ----------
    input : dask.array.Array, shape (N, C_in, L)
        Chunked along N; the other axes are rechunked to one chunk.
    weight, bias, stride, padding, dilation, groups, n_threads
        As for ``gconv.conv1d``, checked now; weight and bias enter the graph once.

    Returns
    -------
    dask.array.Array, shape (N, C_out, L_out), chunked along N like the input.
    """
    return _convolution(1, input, weight, bias, stride, padding, dilation, groups, n_threads)


def _module_block(block: np.ndarray, module: _ConvNd, *, n_threads: int | None) -> np.ndarray:
    return module(block, n_threads=n_threads)


def forward(module: _ConvNd, input: da.Array, *, n_threads: int | None = None) -> da.Array:
    """Run a gconv module (Conv1d/2d/3d, ConvTranspose1d/2d/3d) over a dask array chunked along the batch axis.

    Parameters
    ----------
    module : gconv.Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d or ConvTranspose3d
        Enters the graph once, with its weights: sent once per worker.
    input : dask.array.Array, shape (N, C_in, L) or (N, C_in, H, W)
        Chunked along N; the other axes are rechunked to one chunk.
    n_threads : int, optional
        Threads per task (None: each worker's gconv setting).

    Returns
    -------
    dask.array.Array, shape (N, C_out, ...), chunked along N like the input.
    """
    if not isinstance(module, _ConvNd):
        raise TypeError(
            "gconv.dask.forward needs a gconv convolution module (Conv1d/2d/3d, ConvTranspose1d/2d/3d), not "
            f"{type(module).__name__}"
        )
    probe = module(_check_input(input, module._n_spatial))
    compute = functools.partial(_module_block, n_threads=n_threads)
    return _map_batches(input, module._n_spatial, module, compute, probe)
