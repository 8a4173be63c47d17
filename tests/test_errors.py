"""Error parity: gconv raises torch's exception type and message, in torch's order."""
import re

import numpy as np
import pytest

import gconv
from error_cases import CASES, GconvLib, TorchLib

IDS = [c[0] for c in CASES]


def _raised(call, lib):
    with pytest.raises(Exception) as info:
        call(lib)
    return info.type, str(info.value)


@pytest.mark.parametrize("case_id,call,exc_type,message", CASES, ids=IDS)
def test_gconv_raises_recorded_torch_error(case_id, call, exc_type, message):
    got_type, got_message = _raised(call, GconvLib())
    assert got_type is exc_type
    if message is not None:
        assert got_message == message


@pytest.mark.parametrize("case_id,call,exc_type,message", CASES, ids=IDS)
def test_recorded_error_is_torchs(case_id, call, exc_type, message):
    pytest.importorskip("torch")
    torch_type, torch_message = _raised(call, TorchLib())
    gconv_type, gconv_message = _raised(call, GconvLib())
    assert torch_type is exc_type
    if message is not None:
        assert torch_message == message
    assert (gconv_type, gconv_message) == (torch_type, torch_message)


def test_set_reprs_in_messages_follow_this_process():
    # torch formats the valid values as a Python set, whose order is per process; so does gconv.
    with pytest.raises(ValueError, match=re.escape(str({"same", "valid"}))):
        gconv.Conv2d(4, 4, 3, padding="foo")
    with pytest.raises(ValueError, match=re.escape(str({"zeros", "reflect", "replicate", "circular"}))):
        gconv.Conv2d(4, 4, 3, padding_mode="foo")


@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, None, "x", (np.zeros(3),)])
def test_non_arrays_are_type_errors(bad):
    w = np.zeros((4, 4, 3, 3), np.float32)
    with pytest.raises(TypeError, match="argument 'input' must be a numpy.ndarray"):
        gconv.conv2d(bad, w)
    with pytest.raises(TypeError, match="argument 'input' must be a numpy.ndarray"):
        gconv.Conv2d(4, 4, 3)(bad)
    with pytest.raises(TypeError, match="argument 'weight' must be a numpy.ndarray"):
        gconv.conv2d(np.zeros((1, 4, 5, 5), np.float32), bad)


@pytest.mark.parametrize("name,value", [("stride", 1.5), ("padding", 0.5), ("dilation", (1, 2.0)), ("stride", "2")])
def test_non_integer_hyper_parameters_are_refused_not_truncated(name, value):
    x = np.zeros((1, 4, 6, 6), np.float32)
    w = np.zeros((4, 4, 3, 3), np.float32)
    with pytest.raises(TypeError, match=f"'{name}' must be an int or a tuple of ints"):
        gconv.conv2d(x, w, **{name: value})
    with pytest.raises(TypeError, match=f"'{name}' must be an int or a tuple of ints"):
        gconv.Conv2d(4, 4, 3, **{name: value})


def test_numpy_integer_scalars_are_accepted():
    x = np.ones((1, 4, 6, 6), np.float32)
    m = gconv.Conv2d(np.int64(4), np.int32(4), np.int64(3), stride=np.int8(2), padding=(np.int64(1), 1), groups=np.int64(2))
    assert m(x).shape == (1, 4, 3, 3)
    assert type(m.kernel_size[0]) is int and type(m.groups) is int


def test_unsupported_dtype_is_a_type_error():
    for dtype in (np.int64, np.float16, np.complex64):
        x = np.zeros((1, 2, 4, 4), dtype)
        w = np.zeros((2, 2, 3, 3), dtype)
        with pytest.raises(TypeError, match="gconv supports float32 and float64"):
            gconv.conv2d(x, w)


def test_zero_kernel_is_a_clear_error():
    with pytest.raises(RuntimeError, match="kernel size must be positive"):
        gconv.Conv2d(4, 4, 0)(np.zeros((1, 4, 5, 5), np.float32))


def test_module_catches_a_reassigned_weight_of_the_wrong_shape():
    m = gconv.Conv2d(4, 6, 3, groups=2)
    good = m.weight
    m.weight = np.zeros((6, 4, 3, 3), np.float32)
    with pytest.raises(RuntimeError, match=re.escape("Conv2d.weight has shape (6, 4, 3, 3), expected (6, 2, 3, 3)")):
        m(np.zeros((1, 4, 5, 5), np.float32))
    m.weight = good
    assert m(np.zeros((1, 4, 5, 5), np.float32)).shape == (1, 6, 3, 3)


def test_device_other_than_cpu_and_non_float_dtype_are_refused():
    with pytest.raises(ValueError, match="CPU only"):
        gconv.Conv2d(4, 4, 3, device="cuda")
    with pytest.raises(TypeError, match="float32 or float64"):
        gconv.Conv2d(4, 4, 3, dtype=np.int64)
