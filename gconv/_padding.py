"""The padding modes as torch.nn.functional.pad does them (reflect, replicate, circular), and their gradient."""

import numpy as np

from ._checks import check_allocation, shape_str
from ._layout import is_channels_last


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
                f"and other non-zero dimensions for input, but got: {shape_str(shape)}"
            )
        if mode == "reflect":
            for k, (axis, before, after) in enumerate(per_axis):
                if not (before < shape[axis] and after < shape[axis]):
                    raise RuntimeError(
                        f"Argument #{4 + 2 * k}: Padding size should be less than the corresponding "
                        f"input dimension, but got: padding ({before}, {after}) at dimension {axis} of "
                        f"input {shape_str(shape)}"
                    )
        if all(s < 1 for s in out_sizes):
            names = "DHW"[3 - n_pad :]
            sizes_in = ", ".join(f"{nm}: {shape[axis]}" for nm, (axis, _, _) in zip(names, reversed(per_axis)))
            sizes_out = " ".join(f"{nm}: {s}" for nm, s in zip(names, reversed(out_sizes)))
            space = " " if mode == "replicate" and n_pad > 1 else ""
            raise RuntimeError(f"input ({sizes_in}{space}) is too small. Calculated output {sizes_out}")
        if any(s < 0 for s in out_sizes):
            bad = min(out_sizes)
            padded_shape = list(shape)
            for (axis, _, _), s in zip(per_axis, out_sizes):
                padded_shape[axis] = s
            raise RuntimeError(f"Trying to create tensor with negative dimension {bad}: {shape_str(padded_shape)}")
    n_elements = 1
    for s in out_sizes:
        n_elements *= s
    for axis in range(x.ndim - n_pad):
        n_elements *= shape[axis]
    check_allocation(n_elements * x.dtype.itemsize, f"padding {list(pads)} of input", shape)
    # torch keeps a channels-last input channels-last through reflect and replicate padding
    keep_channels_last = mode != "circular" and is_channels_last(x)
    to_last, to_first = (0, *range(2, x.ndim), 1), (0, x.ndim - 1, *range(1, x.ndim - 1))
    padded = x.transpose(to_last) if keep_channels_last else x
    for axis, before, after in per_axis:
        if before == 0 and after == 0:
            continue  # nothing to do on this axis (and, for circular, size 0 is allowed only here)
        index = _pad_source_index(shape[axis], before, after, mode)
        padded = np.take(padded, index, axis=axis - 1 if keep_channels_last else axis)
    return padded.transpose(to_first) if keep_channels_last else padded


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
        folded = np.zeros(grad.shape[:axis] + (size,) + grad.shape[axis + 1 :], dtype=grad.dtype)
        np.add.at(folded, (slice(None),) * axis + (_pad_source_index(size, before, after, mode),), grad)
        grad = folded
    return grad
