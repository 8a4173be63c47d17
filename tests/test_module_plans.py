"""A module remembers its calls' checks and kernel choice, yet behaves exactly as a module that checks every call."""

import copy
import pickle
import weakref

import numpy as np
import pytest

import gconv
from gconv import _dispatch, _select, functional
from gconv._weight_cache import MIN_CACHED_WEIGHTS
from reference import conv_reference


def _outcome(call):
    """What a call gives: ('ok', result) or (error type, error text)."""
    try:
        return "ok", call()
    except Exception as error:  # every error counts: its type and text are what is compared
        return type(error), str(error)


def _same(a, b):
    assert a[0] == b[0], (a, b)
    if a[0] == "ok":
        np.testing.assert_array_equal(a[1], b[1])
        assert a[1].strides == b[1].strides  # the same memory format (channels-last kept)
    else:
        assert a[1] == b[1]


def _as_fresh(m, x, **kwargs):
    """m(x) after earlier calls against the same call on a copy that has none remembered."""
    fresh = copy.deepcopy(m)  # a copy starts with an empty memo
    assert not fresh._forward_plans()._plans
    _same(_outcome(lambda: fresh(x, **kwargs)), _outcome(lambda: m(x, **kwargs)))


def _remembered(m, x):
    m(x)
    plans = dict(m._forward_plans()._plans)
    m(x)
    assert plans and m._forward_plans()._plans == plans  # the second call used the first's plan


def test_a_repeated_call_reuses_its_plan():
    m = gconv.Conv2d(4, 6, 3, padding=1, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    first = m(x)
    plans = dict(m._forward_plans()._plans)
    np.testing.assert_array_equal(m(x), first)
    assert m._forward_plans()._plans == plans  # the same plan, nothing added
    assert pickle.loads(pickle.dumps(m))._forward_plans()._plans == {}


@pytest.mark.parametrize(
    "attribute,value",
    [
        ("stride", (2, 1)),
        ("padding", (0, 2)),
        ("padding", "same"),
        ("dilation", (2, 2)),
        ("groups", 2),
        ("stride", (1.0, 1)),  # equal to (1, 1), yet refused: a plan kept for (1, 1) must not serve it
        ("stride", (True, 1)),
        ("stride", [1, 1]),  # unhashable
        ("stride", 2),
        ("padding", (-1, 0)),
        ("groups", 3),
        ("padding_mode", "reflect"),
    ],
)
def test_reassigned_hyper_parameters_are_seen(attribute, value):
    m = gconv.Conv2d(4, 4, 3, padding=1, rng=0)
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    _remembered(m, x)
    setattr(m, attribute, value)
    if attribute == "groups":
        m.weight = np.ascontiguousarray(m.weight[:, : 4 // value]) if 4 % value == 0 else m.weight
    _as_fresh(m, x)
    _as_fresh(m, x)  # and again, now that the new call may be remembered


@pytest.mark.parametrize(
    "weight",
    [
        lambda w: w.astype(np.float64),
        lambda w: w.astype(w.dtype.newbyteorder()),
        lambda w: np.asfortranarray(w),
        lambda w: w[:, :, :2],
        lambda w: w.tolist(),
        lambda w: w * 2,
    ],
)
def test_reassigned_weights_are_seen(weight):
    m = gconv.Conv2d(4, 4, 3, padding=1, rng=0)
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    _remembered(m, x)
    m.weight = weight(m.weight)
    _as_fresh(m, x)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x[0],  # unbatched
        lambda x: x.astype(np.float64),  # refused: float64 input, float32 weight
        lambda x: x.astype(">f4"),
        lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),  # channels-last
        lambda x: x[:, :, ::2],
        lambda x: np.asfortranarray(x),
        lambda x: np.frombuffer(b"\0" + x.tobytes(), np.float32, x.size, 1).reshape(x.shape),  # misaligned
        lambda x: x[:, :3],
        lambda x: x[:, :, :1, :1],
        lambda x: x[:0],
        lambda x: x[None],
    ],
)
def test_inputs_unlike_the_last_are_checked_again(make):
    m = gconv.Conv2d(4, 4, 3, padding=1, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 4, 6, 6)).astype(np.float32)
    _remembered(m, x)
    _as_fresh(m, make(x))
    _as_fresh(m, make(x))


def test_out_is_checked_on_every_call():
    m = gconv.Conv2d(4, 4, 1, rng=0)
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    out = np.empty((1, 4, 6, 6), np.float32)
    assert m(x, out=out) is out
    _as_fresh(m, x, out=x)  # overlaps the input
    _as_fresh(m, x, out=out.astype(np.float64))
    np.testing.assert_array_equal(m(x, out=out), m(x))


def test_n_threads_is_read_on_every_call_but_not_for_an_empty_output():
    m = gconv.Conv2d(4, 4, 1, rng=0)
    x = np.ones((1, 4, 6, 6), np.float32)
    _remembered(m, x)
    _as_fresh(m, x, n_threads=0)
    empty = x[:0]
    _remembered(m, empty)
    assert m(empty, n_threads=0).shape == (0, 4, 6, 6)  # as the first call: no kernel, no thread count


class _RecordingKernels:
    """The kernel build, recording which forward kernel each call runs and its thread count."""

    def __init__(self, kernels):
        self._kernels = kernels
        self.calls = []

    def __getattr__(self, name):
        value = getattr(self._kernels, name)
        if not name.startswith("conv2d_"):
            return value

        def call(*args):
            self.calls.append((name, args[-1] if name != "conv2d_gemm" else args[8]))
            return value(*args)

        return call


@pytest.fixture
def recording(monkeypatch):
    kernels = _RecordingKernels(_dispatch.kernels)
    monkeypatch.setattr(_dispatch, "kernels", kernels)
    previous = _select.FORCE_FAMILY
    yield kernels.calls
    _select.FORCE_FAMILY = previous


def test_the_kernel_choice_follows_the_thread_count_and_forced_family(recording):
    m = gconv.Conv2d(8, 8, 3, padding=1, rng=0)  # 8 output channels: the direct family
    x = np.random.default_rng(1).standard_normal((1, 8, 32, 32)).astype(np.float32)
    want = conv_reference(x, m.weight, m.bias, 1, 1)
    for n_threads in (1, 2, 1):
        np.testing.assert_allclose(m(x, n_threads=n_threads), want, rtol=1e-4, atol=1e-4)
        assert recording[-1] == ("conv2d_direct", n_threads)
    for family in ("loops", "gemm", None, "direct"):
        _select.FORCE_FAMILY = family
        np.testing.assert_allclose(m(x, n_threads=1), want, rtol=1e-4, atol=1e-4)
        assert recording[-1][0] == f"conv2d_{family or 'direct'}"


def test_a_small_weight_is_packed_per_call_and_never_stale():
    previous = _select.FORCE_FAMILY
    _select.FORCE_FAMILY = "gemm:panel"
    try:
        m = gconv.Conv2d(16, 32, 3, padding=1, dtype=np.float64, rng=0)
        assert m.weight.size < MIN_CACHED_WEIGHTS
        x = np.random.default_rng(1).standard_normal((1, 16, 5, 5))
        m(x)
        assert m._packed_weights()._entry is None  # nothing kept: packing it costs less than checking it
        m.weight[1, 2, 0, 0] += 1.0
        np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias, 1, 1), rtol=1e-10, atol=1e-10)
    finally:
        _select.FORCE_FAMILY = previous


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("module", [gconv.Conv1d, gconv.Conv2d, gconv.Conv3d])
def test_every_rank_and_padding_mode_gives_the_same_answer_when_remembered(module, padding_mode):
    nd = {gconv.Conv1d: 1, gconv.Conv2d: 2, gconv.Conv3d: 3}[module]
    m = module(4, 6, 3, padding=1, padding_mode=padding_mode, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 4) + (5,) * nd).astype(np.float32)
    first = m(x)
    np.testing.assert_array_equal(m(x), first)
    m.weight *= 2  # in place: the next call reads the arrays as they are now
    np.testing.assert_array_equal(m(x), copy.deepcopy(m)(x))


def _repeats(m, x):
    """Whether m(x) runs as a repeat of the last call (ForwardPlans.repeat): a result without planning the call
    again. Either way the outcome must be a fresh copy's (the same result, or the same error)."""
    plans = m._forward_plans()
    planned = []
    original = type(plans).plan

    def plan(self, *args):
        if self is plans:  # not the fresh copy's
            planned.append(args)
        return original(self, *args)

    type(plans).plan = plan
    try:
        outcome = _outcome(lambda: m(x))
        _same(outcome, _outcome(lambda: copy.deepcopy(m)(x)))
    finally:
        type(plans).plan = original
    return outcome[0] == "ok" and not planned


@pytest.mark.parametrize("module,nd", [(gconv.Conv2d, 2), (gconv.Conv3d, 3)])
def test_a_call_like_the_last_runs_its_kernels_at_once(module, nd):
    m = module(4, 6, 3, padding=1, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 4) + (5,) * nd).astype(np.float32)
    assert not _repeats(m, x)  # the first call is planned
    assert _repeats(m, x)
    assert _repeats(m, x.copy())  # another array of the same shape, strides and dtype
    m.weight *= 2  # in place: read as it is now
    assert _repeats(m, x)
    assert not _repeats(m, x[:1])  # another shape is planned (and then repeated)
    assert _repeats(m, x[:1].copy())


@pytest.mark.parametrize(
    "change",
    [
        lambda m: setattr(m, "bias", None),
        lambda m: setattr(m, "bias", m.bias.astype(np.float64)),
        lambda m: setattr(m, "bias", np.repeat(m.bias, 2)[::2]),  # strided view
        lambda m: setattr(m, "bias", m.bias[:3]),
        lambda m: setattr(m, "bias", list(m.bias)),
        lambda m: setattr(m, "weight", np.asfortranarray(m.weight)),
        lambda m: setattr(m, "weight", m.weight.reshape(6, 2, 3, 6)),  # the wrong shape, same size
        lambda m: setattr(m.weight, "shape", (6, 2, 3, 6)),  # the same array, reshaped in place
        lambda m: setattr(m, "out_channels", 5),  # the module's expected weight shape
        lambda m: setattr(m, "in_channels", 2),
        lambda m: setattr(m, "kernel_size", (3, 1)),
        lambda m: setattr(m, "padding_mode", "circular"),
    ],
)
def test_a_changed_module_is_not_repeated(change):
    m = gconv.Conv2d(4, 6, 3, padding=1, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    m(x)
    assert _repeats(m, x)
    change(m)
    assert not _repeats(m, x)  # checked (and planned) again: the same answer or error as a fresh module


def test_modules_without_a_repeat_path_are_planned_every_call():
    # a 1-D convolution (lifted to the kernels' rank), an unbatched input, out=: no repeat
    conv1d = gconv.Conv1d(4, 6, 3, rng=0)
    x1 = np.ones((2, 4, 9), np.float32)
    conv1d(x1)
    assert not _repeats(conv1d, x1)
    conv2d = gconv.Conv2d(4, 6, 3, rng=0)
    x2 = np.ones((4, 9, 9), np.float32)
    conv2d(x2)
    assert not _repeats(conv2d, x2)


def _functional_call(x, w, b=None, **kwargs):
    return lambda: gconv.conv2d(x, w, b, **kwargs)


def _functional_as_fresh(monkeypatch, call):
    """A functional call after earlier ones against the same call with the shared memo empty."""
    remembered = _outcome(call)
    with monkeypatch.context() as patched:
        patched.setattr(functional, "_FUNCTIONAL_PLANS", functional._SharedPlans())
        _same(_outcome(call), remembered)


def test_functional_calls_share_one_memo_that_keeps_no_array(monkeypatch):
    monkeypatch.setattr(functional, "_FUNCTIONAL_PLANS", functional._SharedPlans())
    planned = []
    plan_convolution = functional._plan_convolution

    def counting(*args):
        planned.append(args[0].shape)
        return plan_convolution(*args)

    monkeypatch.setattr(functional, "_plan_convolution", counting)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    for _ in range(3):  # new arrays of the same shapes, dtypes and strides: planned once
        x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
        np.testing.assert_allclose(
            gconv.conv2d(x, w, padding=1), conv_reference(x, w, None, padding=1), rtol=1e-4, atol=1e-4
        )
    assert planned == [(2, 4, 7, 7)]
    gconv.conv2d(x[:1], w, padding=1)  # another shape: planned too
    assert planned == [(2, 4, 7, 7), (1, 4, 7, 7)]
    probe = weakref.ref(x)
    del x
    assert probe() is None


@pytest.mark.parametrize(
    "make",
    [
        lambda x, w, b: (x[0], w, b),  # unbatched
        lambda x, w, b: (x.astype(np.float64), w, b),  # refused: float64 input, float32 weight
        lambda x, w, b: (x, w, b.astype(np.float64)),  # refused: float64 bias
        lambda x, w, b: (np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), w, b),
        lambda x, w, b: (x[:, :, ::2], w, b),
        lambda x, w, b: (np.frombuffer(b"\0" + x.tobytes(), np.float32, x.size, 1).reshape(x.shape), w, b),
        lambda x, w, b: (x[:, :3], w, b),  # refused: 3 channels for 4
        lambda x, w, b: (x[:, :, :1, :1], w, b),  # refused: smaller than the kernel
        lambda x, w, b: (x, np.asfortranarray(w), b),
        lambda x, w, b: (x, w[:, :, :2], b),
        lambda x, w, b: (x, w, None),
        lambda x, w, b: (x[:0], w, b),
    ],
)
def test_functional_calls_unlike_earlier_ones_are_checked_again(monkeypatch, make):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    monkeypatch.setattr(functional, "_FUNCTIONAL_PLANS", functional._SharedPlans())
    gconv.conv2d(x, w, b, padding=1)
    for _ in range(2):  # and again, now that the new call may be remembered
        _functional_as_fresh(monkeypatch, _functional_call(*make(x, w, b), padding=1))
    # hyper-parameters: other values, and ones equal to the remembered but refused
    for kwargs in (dict(padding=2), dict(stride=2), dict(padding=1.0), dict(padding=(True, 1)), dict(groups=2)):
        _functional_as_fresh(monkeypatch, _functional_call(x, w, b, **kwargs))
