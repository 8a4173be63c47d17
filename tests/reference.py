"""A small, obviously correct NumPy convolution: zero/mode padding with np.pad, then a sum of shifted slices."""

import numpy as np

_NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def conv_reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Grouped N-d cross-correlation (N = 1 or 2) in float64.

    x: (N, C_in, *spatial) or unbatched; weight: (C_out, C_in // groups, *kernel).
    padding: int, tuple, 'valid' or 'same' (odd extra at the end), applied in padding_mode.
    """
    nd = weight.ndim - 2
    unbatched = x.ndim == nd + 1
    x = np.asarray(x, dtype=np.float64)
    if unbatched:
        x = x[None]
    w = np.asarray(weight, dtype=np.float64)
    kernel = w.shape[2:]
    stride = (stride,) * nd if np.isscalar(stride) else tuple(stride)
    dilation = (dilation,) * nd if np.isscalar(dilation) else tuple(dilation)
    if padding == "valid":
        pads = [(0, 0)] * nd
    elif padding == "same":
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in zip(dilation, kernel)]
    else:
        padding = (padding,) * nd if np.isscalar(padding) else tuple(padding)
        pads = [(p, p) for p in padding]
    x = np.pad(x, [(0, 0), (0, 0)] + pads, mode=_NP_PAD_MODE[padding_mode])

    n, c_in = x.shape[:2]
    c_out = w.shape[0]
    icpg, ocpg = c_in // groups, c_out // groups
    out_spatial = [(x.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    out = np.zeros((n, c_out, *out_spatial))
    for g in range(groups):
        xg = x[:, g * icpg : (g + 1) * icpg]
        wg = w[g * ocpg : (g + 1) * ocpg]
        for tap in np.ndindex(*kernel):
            window = tuple(
                slice(tap[i] * dilation[i], tap[i] * dilation[i] + (out_spatial[i] - 1) * stride[i] + 1, stride[i])
                for i in range(nd)
            )
            patch = xg[(slice(None), slice(None)) + window]  # (N, icpg, *out_spatial)
            taps = wg[(slice(None), slice(None)) + tap]  # (ocpg, icpg)
            out[:, g * ocpg : (g + 1) * ocpg] += np.einsum("nc...,oc->no...", patch, taps)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * nd)
    return out[0] if unbatched else out


def conv_transpose_reference(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Grouped N-d transposed convolution in float64, by its definition: each input value scatters
    weight[c_in, :, taps] into the output at i * stride - padding + tap * dilation.

    x: (N, C_in, *spatial) or unbatched; weight: (C_in, C_out // groups, *kernel).
    """
    nd = weight.ndim - 2
    unbatched = x.ndim == nd + 1
    x = np.asarray(x, dtype=np.float64)
    if unbatched:
        x = x[None]
    w = np.asarray(weight, dtype=np.float64)
    kernel = w.shape[2:]
    as_tuple = lambda v: (v,) * nd if np.isscalar(v) else tuple(v)  # noqa: E731
    stride, padding, output_padding, dilation = map(as_tuple, (stride, padding, output_padding, dilation))
    n, c_in = x.shape[:2]
    icpg, ocpg = c_in // groups, w.shape[1]
    full = [(x.shape[2 + i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + output_padding[i] for i in range(nd)]
    out = np.zeros((n, ocpg * groups, *full))
    for g in range(groups):
        xg = x[:, g * icpg : (g + 1) * icpg]
        wg = w[g * icpg : (g + 1) * icpg]
        for tap in np.ndindex(*kernel):
            window = tuple(
                slice(tap[i] * dilation[i], tap[i] * dilation[i] + (x.shape[2 + i] - 1) * stride[i] + 1, stride[i])
                for i in range(nd)
            )
            out[(slice(None), slice(g * ocpg, (g + 1) * ocpg)) + window] += np.einsum(
                "nc...,co->no...", xg, wg[(slice(None), slice(None)) + tap]
            )
    out = out[(slice(None), slice(None)) + tuple(slice(padding[i], full[i] - padding[i] + 0) for i in range(nd))]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * nd)
    return out[0] if unbatched else out
