"""Invalid calls with the exception torch 2.13 raises, written once for both libraries.

Each case is (id, call, exception type, message). `call(lib)` makes the call through `lib`, an adapter
that offers the same names on gconv and on torch, so one case checks gconv against the recorded text
and, where torch is installed, checks that the recorded text really is torch's.
A message of None means "compare with torch only" (its text depends on the process, e.g. set order).
"""

import numpy as np


class GconvLib:
    name = "gconv"

    def __init__(self):
        import gconv

        self.Conv1d, self.Conv2d = gconv.Conv1d, gconv.Conv2d
        self.conv1d, self.conv2d = gconv.conv1d, gconv.conv2d

    @staticmethod
    def arr(*shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class TorchLib:
    name = "torch"

    def __init__(self):
        import torch

        self._torch = torch

        def module(cls):
            return lambda *a, dtype=None, **k: cls(*a, dtype=getattr(torch, dtype) if dtype else None, **k)

        self.Conv1d, self.Conv2d = module(torch.nn.Conv1d), module(torch.nn.Conv2d)
        self.conv1d, self.conv2d = torch.nn.functional.conv1d, torch.nn.functional.conv2d

    def arr(self, *shape, dtype="float32"):
        return self._torch.zeros(shape, dtype=getattr(self._torch, dtype))


def _call_module(cls_name, args, kwargs, x_shape, x_dtype="float32"):
    def call(lib):
        m = getattr(lib, cls_name)(*args, **kwargs)
        return m(lib.arr(*x_shape, dtype=x_dtype))

    return call


def _ctor(cls_name, *args, **kwargs):
    return lambda lib: getattr(lib, cls_name)(*args, **kwargs)


def _fn(name, x_shape, w_shape, b_shape=None, x_dtype="float32", w_dtype="float32", b_dtype=None, **kwargs):
    def call(lib):
        b = None if b_shape is None else lib.arr(*b_shape, dtype=b_dtype or x_dtype)
        return getattr(lib, name)(lib.arr(*x_shape, dtype=x_dtype), lib.arr(*w_shape, dtype=w_dtype), b, **kwargs)

    return call


V, R, NI = ValueError, RuntimeError, NotImplementedError
PAD_SIZE = (
    "Padding size {} is not supported for {}D input tensor.\nSupported combinations for non-constant padding:\n"
    "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
    "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
    "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)"
)
KBIG = "Calculated padded input size per channel: ({}). Kernel size: ({}). Kernel size can't be greater than actual input size"
REFLECT_TOO_BIG = (
    "Argument #{}: Padding size should be less than the corresponding input dimension, but got: "
    "padding ({}, {}) at dimension {} of input {}"
)
NONZERO_DIMS = (
    "Expected {}D or {}D (batch mode) tensor with possibly 0 batch size and other non-zero "
    "dimensions for input, but got: {}"
)

CASES = [
    # constructor, in torch's order
    ("groups0", _ctor("Conv2d", 4, 4, 3, groups=0), V, "groups must be a positive integer"),
    (
        "groups0-before-mode",
        _ctor("Conv2d", 4, 4, 3, groups=0, padding_mode="foo"),
        V,
        "groups must be a positive integer",
    ),
    ("in-not-divisible", _ctor("Conv2d", 6, 6, 1, groups=4), V, "in_channels must be divisible by groups"),
    ("out-not-divisible", _ctor("Conv2d", 6, 3, 1, groups=2), V, "out_channels must be divisible by groups"),
    ("groups-float", _ctor("Conv2d", 4, 4, 3, groups=1.5), V, "in_channels must be divisible by groups"),
    ("padding-string", _ctor("Conv2d", 4, 4, 3, padding="Same"), V, None),
    (
        "same-strided",
        _ctor("Conv2d", 4, 4, 3, padding="same", stride=2),
        V,
        "padding='same' is not supported for strided convolutions",
    ),
    (
        "same-strided-tuple",
        _ctor("Conv1d", 4, 4, 3, padding="same", stride=(2,)),
        V,
        "padding='same' is not supported for strided convolutions",
    ),
    ("padding-mode", _ctor("Conv2d", 4, 4, 3, padding_mode="foo"), V, None),
    (
        "negative-kernel",
        _ctor("Conv2d", 4, 4, -1),
        R,
        "Trying to create tensor with negative dimension -1: [4, 4, -1, -1]",
    ),
    ("negative-in", _ctor("Conv2d", -2, 4, 3), R, "Trying to create tensor with negative dimension -2: [4, -2, 3, 3]"),
    # module calls
    (
        "ndim1",
        _call_module("Conv2d", (4, 4, 3), {}, (6,)),
        R,
        "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [6]",
    ),
    (
        "ndim5",
        _call_module("Conv2d", (4, 4, 3), {}, (1, 2, 3, 4, 5)),
        R,
        "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [1, 2, 3, 4, 5]",
    ),
    (
        "ndim0",
        _call_module("Conv2d", (4, 4, 3), {}, ()),
        R,
        "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: []",
    ),
    (
        "conv1d-ndim4",
        _call_module("Conv1d", (4, 4, 3), {}, (1, 4, 6, 6)),
        R,
        "Expected 2D (unbatched) or 3D (batched) input to conv1d, but got input of size: [1, 4, 6, 6]",
    ),
    (
        "channels",
        _call_module("Conv2d", (4, 4, 3), {}, (2, 3, 6, 6)),
        R,
        "Given groups=1, weight of size [4, 4, 3, 3], expected input[2, 3, 6, 6] to have 4 channels, but got 3 channels instead",
    ),
    (
        "channels-unbatched",
        _call_module("Conv2d", (4, 4, 3), {}, (3, 6, 6)),
        R,
        "Given groups=1, weight of size [4, 4, 3, 3], expected input[1, 3, 6, 6] to have 4 channels, but got 3 channels instead",
    ),
    (
        "channels-groups",
        _call_module("Conv2d", (4, 4, 3), {"groups": 2}, (2, 3, 6, 6)),
        R,
        "Given groups=2, weight of size [4, 2, 3, 3], expected input[2, 3, 6, 6] to have 4 channels, but got 3 channels instead",
    ),
    (
        "zero-channels-input",
        _call_module("Conv2d", (4, 4, 3), {}, (2, 0, 6, 6)),
        R,
        "Given groups=1, weight of size [4, 4, 3, 3], expected input[2, 0, 6, 6] to have 4 channels, but got 0 channels instead",
    ),
    ("kernel-too-big", _call_module("Conv2d", (4, 4, 7), {}, (2, 4, 6, 6)), R, KBIG.format("6 x 6", "7 x 7")),
    (
        "dilated-kernel-too-big",
        _call_module("Conv2d", (4, 4, 3), {"dilation": 3}, (2, 4, 6, 6)),
        R,
        KBIG.format("6 x 6", "7 x 7"),
    ),
    ("conv1d-kernel-too-big", _call_module("Conv1d", (4, 4, 10), {}, (2, 4, 4)), R, KBIG.format("4", "10")),
    ("H0", _call_module("Conv2d", (4, 4, 3), {}, (2, 4, 0, 6)), R, KBIG.format("0 x 6", "3 x 3")),
    (
        "stride0",
        _call_module("Conv2d", (4, 4, 3), {"stride": 0}, (2, 4, 6, 6)),
        R,
        "non-positive stride is not supported",
    ),
    (
        "dilation0",
        _call_module("Conv2d", (4, 4, 3), {"dilation": 0}, (2, 4, 6, 6)),
        R,
        "non-positive dilation is not supported",
    ),
    (
        "dilation-negative",
        _call_module("Conv2d", (4, 4, 3), {"dilation": -1}, (2, 4, 6, 6)),
        R,
        "dilation should be greater than zero",
    ),
    (
        "padding-negative",
        _call_module("Conv2d", (4, 4, 3), {"padding": -1}, (2, 4, 6, 6)),
        R,
        "negative padding is not supported",
    ),
    (
        "padding-3",
        _call_module("Conv2d", (4, 4, 3), {"padding": (1, 1, 1)}, (2, 4, 6, 6)),
        R,
        "expected padding to be a single integer value or a list of 2 values to match the convolution dimensions, but got padding=[1, 1, 1]",
    ),
    (
        "stride-3",
        _call_module("Conv2d", (4, 4, 3), {"stride": (1, 1, 1)}, (2, 4, 6, 6)),
        R,
        "expected stride to be a single integer value or a list of 2 values to match the convolution dimensions, but got stride=[1, 1, 1]",
    ),
    (
        "kernel-1-of-2",
        _call_module("Conv2d", (4, 4, (3,)), {}, (2, 4, 6, 6)),
        R,
        "expected stride to be a single integer value or a list of 1 values to match the convolution dimensions, but got stride=[1, 1]",
    ),
    (
        "out-channels-0",
        _call_module("Conv2d", (4, 0, 3), {}, (2, 4, 6, 6)),
        R,
        "Given groups=1, expected weight to be at least 1 at dimension 0, but got weight of size [0, 4, 3, 3] instead",
    ),
    (
        "double-input",
        _call_module("Conv2d", (4, 4, 3), {}, (2, 4, 6, 6), "float64"),
        R,
        "Input type (double) and bias type (float) should be the same",
    ),
    (
        "double-input-no-bias",
        _call_module("Conv2d", (4, 4, 3), {"bias": False}, (2, 4, 6, 6), "float64"),
        R,
        "expected scalar type Double but found Float",
    ),
    (
        "float-input-double-module",
        _call_module("Conv2d", (4, 4, 3), {"bias": False, "dtype": "float64"}, (2, 4, 6, 6)),
        R,
        "Input type (torch.FloatTensor) and weight type (torch.DoubleTensor) should be the same or input should be a MKLDNN tensor and weight is a dense tensor",
    ),
    (
        "int-input",
        _call_module("Conv2d", (4, 4, 3), {}, (2, 4, 6, 6), "int64"),
        R,
        "Input type (long int) and bias type (float) should be the same",
    ),
    (
        "int-input-no-bias",
        _call_module("Conv2d", (4, 4, 3), {"bias": False}, (2, 4, 6, 6), "int64"),
        R,
        "expected scalar type Long but found Float",
    ),
    (
        "double-input-bad-ndim",
        _call_module("Conv2d", (4, 4, 3), {}, (6,), "float64"),
        R,
        "Input type (double) and bias type (float) should be the same",
    ),
    (
        "spatial-zero-padded",
        _fn("conv2d", (2, 4, 0, 6), (4, 4, 3, 3), padding=2),
        R,
        "Only zero batch or zero channel inputs are supported, but got input shape: [2, 4, 0, 6]",
    ),
    (
        "conv1d-spatial-zero-padded",
        _fn("conv1d", (2, 4, 0), (4, 4, 3), padding=2),
        R,
        "Only zero batch or zero channel inputs are supported, but got input shape: [2, 4, 1, 0]",
    ),
    # functional form
    ("weight-2d", _fn("conv2d", (2, 4, 6, 6), (4, 4)), R, "weight should have at least three dimensions"),
    (
        "weight-3d",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3)),
        R,
        "expected stride to be a single integer value or a list of 1 values to match the convolution dimensions, but got stride=[1, 1]",
    ),
    (
        "conv1d-weight-4d",
        _fn("conv1d", (2, 4, 6), (4, 4, 3, 3)),
        R,
        "Expected 4-dimensional input for 4-dimensional weight [4, 4, 3, 3], but got 3-dimensional input of size [2, 4, 6] instead",
    ),
    ("groups0-fn", _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), groups=0), R, "non-positive groups is not supported"),
    (
        "weight-2d-before-groups",
        _fn("conv2d", (2, 4, 6, 6), (4, 4), groups=0),
        R,
        "weight should have at least three dimensions",
    ),
    (
        "groups-not-dividing-weight",
        _fn("conv2d", (2, 6, 6, 6), (4, 2, 3, 3), groups=3),
        R,
        "Given groups=3, expected weight to be divisible by 3 at dimension 0, but got weight of size [[4, 2, 3, 3]] instead",
    ),
    (
        "groups-above-weight",
        _fn("conv2d", (2, 8, 6, 6), (4, 1, 3, 3), groups=8),
        R,
        "Given groups=8, expected weight to be at least 8 at dimension 0, but got weight of size [4, 1, 3, 3] instead",
    ),
    (
        "bias-size",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), (3,)),
        R,
        "Given weight of size [4, 4, 3, 3], expected bias to be 1-dimensional with 4 elements, but got bias of size [3] instead",
    ),
    (
        "bias-2d",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), (4, 1)),
        R,
        "Given weight of size [4, 4, 3, 3], expected bias to be 1-dimensional with 4 elements, but got bias of size [4, 1] instead",
    ),
    (
        "bias-dtype",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), (4,), b_dtype="float64"),
        R,
        "Input type (float) and bias type (double) should be the same",
    ),
    (
        "bias-dtype-before-ndim",
        _fn("conv2d", (6,), (4, 4, 3, 3), (4,), b_dtype="float64"),
        R,
        "Input type (float) and bias type (double) should be the same",
    ),
    (
        "weight-dtype",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), w_dtype="float64"),
        R,
        "Input type (torch.FloatTensor) and weight type (torch.DoubleTensor) should be the same or input should be a MKLDNN tensor and weight is a dense tensor",
    ),
    (
        "input-double-weight-float",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), x_dtype="float64"),
        R,
        "expected scalar type Double but found Float",
    ),
    (
        "channels-before-weight-dtype",
        _fn("conv2d", (2, 3, 6, 6), (4, 4, 3, 3), x_dtype="float64"),
        R,
        "Given groups=1, weight of size [4, 4, 3, 3], expected input[2, 3, 6, 6] to have 4 channels, but got 3 channels instead",
    ),
    ("padding-string-fn", _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), padding="foo"), R, "Invalid padding string: 'foo'"),
    (
        "same-strided-fn",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), padding="same", stride=2),
        R,
        "padding='same' is not supported for strided convolutions",
    ),
    (
        "same-stride-length",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), padding="same", stride=(1, 1, 1)),
        R,
        "stride cannot broadcast to 2 dimensions",
    ),
    (
        "same-negative-dilation",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), padding="same", dilation=-1),
        R,
        "negative padding is not supported",
    ),
    (
        "same-bias-dtype",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), (4,), padding="same", b_dtype="float64"),
        R,
        "Input type (torch.FloatTensor) and bias type (torch.DoubleTensor) should be the same or input should be a MKLDNN tensor and bias is a dense tensor",
    ),
    (
        "same-even-shows-padded-input",
        _fn("conv2d", (2, 3, 6, 6), (4, 4, 4, 4), padding="same"),
        R,
        "Given groups=1, weight of size [4, 4, 4, 4], expected input[2, 3, 7, 7] to have 4 channels, but got 3 channels instead",
    ),
    (
        "valid-kernel-too-big",
        _fn("conv2d", (2, 4, 2, 2), (4, 4, 3, 3), padding="valid"),
        R,
        KBIG.format("2 x 2", "3 x 3"),
    ),
    (
        "pad-before-stride",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), stride=0, padding=-1),
        R,
        "negative padding is not supported",
    ),
    (
        "stride-before-dilation",
        _fn("conv2d", (2, 4, 6, 6), (4, 4, 3, 3), stride=0, dilation=-1),
        R,
        "non-positive stride is not supported",
    ),
    (
        "conv1d-padding-2",
        _fn("conv1d", (2, 4, 6), (4, 4, 3), padding=(1, 1)),
        R,
        "expected padding to be a single integer value or a list of 1 values to match the convolution dimensions, but got padding=[1, 1]",
    ),
]

for _mode in ("reflect", "replicate", "circular"):
    CASES += [
        (
            f"{_mode}-ndim2",
            _call_module("Conv2d", (4, 4, 3), {"padding": 1, "padding_mode": _mode}, (6, 6)),
            NI,
            PAD_SIZE.format(4, 2),
        ),
        (
            f"{_mode}-ndim0",
            _call_module("Conv2d", (4, 4, 3), {"padding": 1, "padding_mode": _mode}, ()),
            R,
            "Padding length should be less than or equal to two times the input dimension but got padding length 4 and input of dimension 0",
        ),
        (
            f"{_mode}-conv1d-ndim4",
            _call_module("Conv1d", (4, 4, 3), {"padding": 1, "padding_mode": _mode}, (1, 4, 3, 3)),
            NI,
            PAD_SIZE.format(2, 4),
        ),
        (
            f"{_mode}-channels",
            _call_module("Conv2d", (4, 4, 3), {"padding": 1, "padding_mode": _mode}, (2, 3, 6, 6)),
            R,
            "Given groups=1, weight of size [4, 4, 3, 3], expected input[2, 3, 8, 8] to have 4 channels, but got 3 channels instead",
        ),
        (
            f"{_mode}-double",
            _call_module("Conv2d", (4, 4, 3), {"padding": 1, "padding_mode": _mode}, (2, 4, 6, 6), "float64"),
            R,
            "Input type (double) and bias type (float) should be the same",
        ),
        (
            f"{_mode}-stride0",
            _call_module("Conv2d", (4, 4, 3), {"padding": 1, "stride": 0, "padding_mode": _mode}, (2, 4, 6, 6)),
            R,
            "non-positive stride is not supported",
        ),
        (
            f"{_mode}-padding-3",
            _call_module("Conv2d", (4, 4, 1), {"padding": (1, 1, 1), "padding_mode": _mode}, (2, 4, 8, 8)),
            R,
            "Given groups=1, weight of size [4, 4, 1, 1], expected input[2, 6, 10, 10] to have 4 channels, but got 6 channels instead",
        ),
    ]

CASES += [
    (
        "reflect-too-wide",
        _call_module("Conv2d", (4, 4, 3), {"padding": 3, "padding_mode": "reflect"}, (2, 4, 3, 3)),
        R,
        REFLECT_TOO_BIG.format(4, 3, 3, 3, "[2, 4, 3, 3]"),
    ),
    (
        "reflect-too-tall",
        _call_module("Conv2d", (4, 4, 3), {"padding": (3, 1), "padding_mode": "reflect"}, (2, 4, 3, 3)),
        R,
        REFLECT_TOO_BIG.format(6, 3, 3, 2, "[2, 4, 3, 3]"),
    ),
    (
        "reflect-unbatched",
        _call_module("Conv2d", (4, 4, 3), {"padding": 3, "padding_mode": "reflect"}, (4, 3, 3)),
        R,
        REFLECT_TOO_BIG.format(4, 3, 3, 2, "[4, 3, 3]"),
    ),
    (
        "reflect-conv1d",
        _call_module("Conv1d", (4, 4, 3), {"padding": 3, "padding_mode": "reflect"}, (2, 4, 3)),
        R,
        REFLECT_TOO_BIG.format(4, 3, 3, 2, "[2, 4, 3]"),
    ),
    (
        "reflect-same-even",
        _call_module("Conv2d", (4, 4, (4, 2)), {"padding": "same", "padding_mode": "reflect"}, (2, 4, 2, 1)),
        R,
        REFLECT_TOO_BIG.format(4, 0, 1, 3, "[2, 4, 2, 1]"),
    ),
    (
        "reflect-H0",
        _call_module("Conv2d", (4, 4, 3), {"padding": 1, "padding_mode": "reflect"}, (2, 4, 0, 6)),
        R,
        NONZERO_DIMS.format(3, 4, "[2, 4, 0, 6]"),
    ),
    (
        "replicate-C0",
        _call_module("Conv2d", (0, 4, 3), {"padding": 1, "padding_mode": "replicate"}, (2, 0, 6, 6)),
        R,
        NONZERO_DIMS.format(3, 4, "[2, 0, 6, 6]"),
    ),
    (
        "replicate-conv1d-L0",
        _call_module("Conv1d", (4, 4, 3), {"padding": 1, "padding_mode": "replicate"}, (2, 4, 0)),
        R,
        NONZERO_DIMS.format(2, 3, "[2, 4, 0]"),
    ),
    (
        "reflect-valid-H0",
        _call_module("Conv2d", (4, 4, 3), {"padding": "valid", "padding_mode": "reflect"}, (2, 4, 0, 6)),
        R,
        NONZERO_DIMS.format(3, 4, "[2, 4, 0, 6]"),
    ),
    (
        "reflect-crop-all",
        _call_module("Conv2d", (4, 4, 1), {"padding": -4, "padding_mode": "reflect"}, (2, 4, 8, 8)),
        R,
        "input (H: 8, W: 8) is too small. Calculated output H: 0 W: 0",
    ),
    (
        "replicate-crop-all",
        _call_module("Conv2d", (4, 4, 1), {"padding": -4, "padding_mode": "replicate"}, (2, 4, 8, 8)),
        R,
        "input (H: 8, W: 8 ) is too small. Calculated output H: 0 W: 0",
    ),
    (
        "replicate-conv1d-crop-all",
        _call_module("Conv1d", (4, 4, 1), {"padding": -5, "padding_mode": "replicate"}, (2, 4, 8)),
        R,
        "input (W: 8) is too small. Calculated output W: -2",
    ),
    (
        "replicate-crop-one-axis",
        _call_module("Conv2d", (4, 4, 1), {"padding": (-4, 9), "padding_mode": "replicate"}, (2, 4, 8, 8)),
        R,
        KBIG.format("0 x 26", "1 x 1"),
    ),
    (
        "replicate-crop-negative",
        _call_module("Conv2d", (4, 4, 1), {"padding": (-9, 1), "padding_mode": "replicate"}, (2, 4, 8, 8)),
        R,
        "Trying to create tensor with negative dimension -10: [2, 4, -10, 10]",
    ),
    (
        "circular-wraps-twice",
        _call_module("Conv2d", (4, 4, 3), {"padding": 4, "padding_mode": "circular"}, (2, 4, 3, 3)),
        R,
        "Padding value causes wrapping around more than once.",
    ),
    (
        "circular-H0",
        _call_module("Conv2d", (4, 4, 3), {"padding": 1, "padding_mode": "circular"}, (2, 4, 0, 6)),
        R,
        "Padding value causes wrapping around more than once.",
    ),
    (
        "circular-crop-negative",
        _call_module("Conv2d", (4, 4, 1), {"padding": -5, "padding_mode": "circular"}, (2, 4, 8, 8)),
        R,
        "Negative padding value is resulting in an empty dimension",
    ),
    (
        "circular-crop-all",
        _call_module("Conv1d", (4, 4, 1), {"padding": -4, "padding_mode": "circular"}, (2, 4, 8)),
        R,
        KBIG.format("0", "1"),
    ),
]
