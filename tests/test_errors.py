"""Error parity: gconv raises torch's exception type and message, in torch's order."""

import ast
import re

import numpy as np
import pytest

import gconv
from error_cases import CASES, GconvLib, TorchLib

IDS = [c[0] for c in CASES]


def _sets_sorted(message):
    """Set displays in a message with their elements sorted.

    torch builds its lists of valid values from a frozenset constant stored in its .pyc, whose order was
    fixed by the hash seed of the process that compiled it; no other library can reproduce that order.
    """

    def sort_display(match):
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            return match.group(0)
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}" if isinstance(value, set) else match.group(0)

    return re.sub(r"\{[^{}]*\}", sort_display, message)


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
    else:
        assert (gconv_type, _sets_sorted(gconv_message)) == (torch_type, _sets_sorted(torch_message))


def test_set_reprs_in_messages_list_every_valid_value():
    # torch formats the valid values as a Python set, whose order varies between processes (hash seed);
    # test_recorded_error_is_torchs checks the exact order against torch in the same process.
    for kwargs, prefix, values in [
        ({"padding": "foo"}, "Invalid padding string 'foo', should be one of ", {"same", "valid"}),
        ({"padding_mode": "foo"}, "padding_mode must be one of ", {"zeros", "reflect", "replicate", "circular"}),
    ]:
        with pytest.raises(ValueError) as info:
            gconv.Conv2d(4, 4, 3, **kwargs)
        message = str(info.value)
        assert message.startswith(prefix + "{")
        listed = message[len(prefix) :].split("}")[0] + "}"
        assert ast.literal_eval(listed) == values  # a set display of exactly the valid values


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
    m = gconv.Conv2d(
        np.int64(4), np.int32(4), np.int64(3), stride=np.int8(2), padding=(np.int64(1), 1), groups=np.int64(2)
    )
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
