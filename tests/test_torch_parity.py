"""gconv against torch itself (skipped where torch is not installed; CI installs torch==2.13.0)."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

import gconv  # noqa: E402
from reference import conv_reference  # noqa: E402
from torch_configs import conv_module_configs  # noqa: E402

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _pair(torch_cls, gconv_cls, *args, dtype=np.float32, **kwargs):
    """A torch module and a gconv module with the same hyper-parameters and the torch module's weights."""
    tm = torch_cls(*args, dtype=TORCH_DTYPE[dtype], **kwargs)
    gm = gconv_cls(*args, dtype=dtype, **kwargs)
    gm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm, gm


def _torch_forward(tm, x):
    with torch.no_grad():
        return tm(torch.from_numpy(np.ascontiguousarray(x))).numpy()


MODULE_GRID_2D = list(
    itertools.product(
        [(4, 4, 1), (6, 6, 3), (4, 8, 4), (6, 4, 2), (8, 8, 8)],
        [
            (3, 1, 1, 1),
            (3, 2, 0, 1),
            ((2, 3), (1, 3), (2, 1), 1),
            (3, 1, 2, 2),
            (1, 1, 0, 1),
            (4, 1, "same", 1),
            ((2, 4), 1, "same", (3, 1)),
            (3, 2, "valid", 1),
            (5, 1, 2, 1),
        ],
        ["zeros", "reflect", "replicate", "circular"],
    )
)


@pytest.mark.parametrize("channels,geometry,mode", MODULE_GRID_2D)
def test_conv2d_module_equals_torch(channels, geometry, mode):
    cin, cout, g = channels
    k, s, p, d = geometry
    rng = np.random.default_rng(0)
    for dtype, bias, shape in [(np.float32, True, (2, cin, 7, 9)), (np.float64, False, (cin, 8, 6))]:
        tm, gm = _pair(torch.nn.Conv2d, gconv.Conv2d, cin, cout, k, s, p, d, g, bias, mode, dtype=dtype)
        x = rng.standard_normal(shape).astype(dtype)
        got, want = gm(x), _torch_forward(tm, x)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 0, 2), (4, 1, "same", 1), (3, 1, "same", 2), (5, 3, 2, 1)])
@pytest.mark.parametrize("cin,cout,g", [(4, 6, 2), (6, 6, 6), (3, 6, 1)])
def test_conv1d_module_equals_torch(cin, cout, g, k, s, p, d, mode):
    rng = np.random.default_rng(1)
    for dtype, bias, shape in [(np.float64, True, (3, cin, 11)), (np.float32, False, (cin, 9))]:
        tm, gm = _pair(torch.nn.Conv1d, gconv.Conv1d, cin, cout, k, s, p, d, g, bias, mode, dtype=dtype)
        x = rng.standard_normal(shape).astype(dtype)
        np.testing.assert_allclose(gm(x), _torch_forward(tm, x), **TOL[dtype])


CONFIGS = conv_module_configs()


def test_torch_configs_were_found():
    names = {c[0] for c in CONFIGS}
    assert len(CONFIGS) >= 20, names
    assert {"Conv2d_depthwise", "Conv2d_groups", "Conv1d_pad_same2", "Conv2d_dilated"} <= names


@pytest.mark.parametrize("name,cls,args,kwargs,input_size", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_common_nn_configs(name, cls, args, kwargs, input_size, dtype):
    tm, gm = _pair(getattr(torch.nn, cls), getattr(gconv, cls), *args, dtype=dtype, **kwargs)
    x = np.random.default_rng(2).standard_normal(input_size).astype(dtype)
    got, want = gm(x), _torch_forward(tm, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL[dtype])
    assert repr(gm) == repr(tm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_equals_torch(dtype):
    rng = np.random.default_rng(3)
    cases = [
        ((2, 8, 9, 11), (12, 2, 3, 3), dict(stride=2, padding=1, groups=4)),
        ((1, 6, 10, 10), (6, 1, 4, 2), dict(padding="same", dilation=(1, 3), groups=6)),
        ((3, 4, 5, 30), (8, 4, 1, 5), dict(stride=(1, 2), padding=(0, 2))),
        ((4, 12, 20), (6, 4, 5), dict(stride=2, padding=3, dilation=2, groups=3)),
        ((5, 12), (4, 5, 3), dict(padding="same")),
        ((0, 4, 6, 6), (4, 4, 3, 3), dict()),
        ((2, 0, 7, 6), (6, 0, 3, 3), dict(stride=2, padding=1)),  # torch returns zero channels here
    ]
    for x_shape, w_shape, kwargs in cases:
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        fn, tfn = (gconv.conv1d, TF.conv1d) if len(w_shape) == 3 else (gconv.conv2d, TF.conv2d)
        for bias in (b, None):
            want = tfn(
                torch.from_numpy(x), torch.from_numpy(w), None if bias is None else torch.from_numpy(bias), **kwargs
            )
            got = fn(x, w, bias, **kwargs)
            assert got.shape == tuple(want.shape)
            np.testing.assert_allclose(got, want.numpy(), **TOL[dtype])


def test_reference_equals_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 9, 8))
    w = rng.standard_normal((9, 2, 3, 2))
    b = rng.standard_normal(9)
    for mode in ["zeros", "reflect", "replicate", "circular"]:
        tm = torch.nn.Conv2d(6, 9, (3, 2), (2, 1), (2, 1), (1, 2), 3, True, mode, dtype=torch.float64)
        tm.load_state_dict({"weight": torch.from_numpy(w), "bias": torch.from_numpy(b)})
        want = _torch_forward(tm, x)
        np.testing.assert_allclose(
            conv_reference(x, w, b, (2, 1), (2, 1), (1, 2), 3, mode), want, rtol=1e-12, atol=1e-12
        )


REPR_CASES = [
    ((6, 6, 1), dict(groups=2)),
    ((4, 4, 3), dict(padding="same", padding_mode="reflect", bias=False, dilation=2)),
    ((4, 4, [3, 2]), dict(stride=[1, 2], padding=[1, 0])),
    ((4, 4, 3), dict(padding=(0, 0))),
    ((4, 4, 3), dict(dilation=(1, 2), padding_mode="circular")),
    ((4, 8, (3,)), dict(padding="valid", groups=4)),
    ((0, 4, 3), dict()),
    ((4, 4, 0), dict()),
]


@pytest.mark.parametrize("args,kwargs", REPR_CASES)
@pytest.mark.parametrize("cls", ["Conv1d", "Conv2d"])
def test_repr_and_attributes_equal_torch(cls, args, kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = getattr(torch.nn, cls)(*args, **kwargs)
        gm = getattr(gconv, cls)(*args, **kwargs)
    assert repr(gm) == repr(tm)
    for attr in (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "padding_mode",
        "transposed",
        "output_padding",
        "_reversed_padding_repeated_twice",
    ):
        assert getattr(gm, attr) == getattr(tm, attr), attr
        assert type(getattr(gm, attr)) is type(getattr(tm, attr)), attr
    assert gm.weight.shape == tuple(tm.weight.shape)
    assert (gm.bias is None) == (tm.bias is None)


def test_initialisation_follows_torchs_distribution():
    for args, kwargs in [((64, 128, 3), dict(groups=4)), ((16, 32, 5), dict())]:
        tm = torch.nn.Conv2d(*args, **kwargs)
        gm = gconv.Conv2d(*args, **kwargs, rng=0)
        fan_in = tm.weight.shape[1] * tm.weight.shape[2] * tm.weight.shape[3]
        bound = 1 / np.sqrt(fan_in)
        for g_param, t_param in ((gm.weight, tm.weight), (gm.bias, tm.bias)):
            t_values = t_param.detach().numpy()
            assert np.abs(g_param).max() <= bound and np.abs(t_values).max() <= bound
            # both uniform on (-bound, bound): same spread within sampling error
            assert abs(g_param.std() - bound / np.sqrt(3)) < 0.1 * bound
            assert abs(g_param.std() - t_values.std()) < 0.15 * bound


def test_weights_move_both_ways():
    tm = torch.nn.Conv2d(6, 4, 3, padding=1, groups=2)
    gm = gconv.Conv2d(6, 4, 3, padding=1, groups=2)
    gm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(5).standard_normal((1, 6, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(gm(x), _torch_forward(tm, x), **TOL[np.float32])
    back = torch.nn.Conv2d(6, 4, 3, padding=1, groups=2)
    back.load_state_dict(
        {k: torch.from_numpy(v) for k, v in gconv.Conv2d(6, 4, 3, padding=1, groups=2, rng=1).state_dict().items()}
    )
    np.testing.assert_array_equal(
        back.weight.detach().numpy(), gconv.Conv2d(6, 4, 3, padding=1, groups=2, rng=1).weight
    )


def test_load_state_dict_errors_equal_torch():
    for bad in [
        {"weight": np.zeros((4, 4, 3, 3), np.float32)},
        {"weight": np.zeros((4, 4, 2, 3), np.float32), "foo": np.zeros(1, np.float32)},
        {"weight": np.zeros((4, 4, 3, 3), np.float32), "bias": np.zeros(3, np.float32)},
    ]:
        with pytest.raises(RuntimeError) as t_err:
            torch.nn.Conv2d(4, 4, 3).load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()})
        with pytest.raises(RuntimeError) as g_err:
            gconv.Conv2d(4, 4, 3).load_state_dict(bad)
        assert str(g_err.value) == str(t_err.value)


def test_nan_and_inf_reach_exactly_the_outputs_that_see_them():
    x = np.random.default_rng(6).standard_normal((1, 4, 9, 9)).astype(np.float32)
    x[0, 1, 4, 4] = np.nan
    x[0, 3, 0, 8] = np.inf
    for kwargs in [dict(padding=1, groups=2), dict(stride=2, dilation=2, padding=2), dict(groups=4)]:
        tm, gm = _pair(torch.nn.Conv2d, gconv.Conv2d, 4, 8, 3, **kwargs)
        got, want = gm(x), _torch_forward(tm, x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        assert np.isnan(got).any()


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, "same"])
def test_channels_last_values_and_memory_format_equal_torch(mode, padding):
    tm, gm = _pair(torch.nn.Conv2d, gconv.Conv2d, 12, 8, 3, 1, padding, 1, 4, True, mode)
    x_torch = torch.randn(2, 12, 9, 10).to(memory_format=torch.channels_last)
    x = x_torch.numpy()  # the same strides: an NCHW view of NHWC memory
    assert gconv.functional.is_channels_last(x)
    with torch.no_grad():
        want = tm(x_torch)
    got = gm(x)
    np.testing.assert_allclose(got, want.numpy(), **TOL[np.float32])
    assert gconv.functional.is_channels_last(got) == want.is_contiguous(memory_format=torch.channels_last)
