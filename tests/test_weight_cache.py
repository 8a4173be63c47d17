"""A module's gemm weight panels are packed once and reused, yet never stale: every write is seen by the next call."""

import copy
import threading

import numpy as np
import pytest

import gconv
from gconv import _dispatch, _select
from reference import conv_reference


@pytest.fixture
def gemm_panels():
    previous = _select.FORCE_FAMILY
    _select.FORCE_FAMILY = "gemm:panel"  # the family and tile kind that packs its weights
    yield
    _select.FORCE_FAMILY = previous


def _module_and_input(dtype=np.float32):
    m = gconv.Conv2d(48, 64, 3, padding=1, groups=2, dtype=dtype, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 48, 7, 7)).astype(dtype)
    return m, x


def _want(m, x):
    return conv_reference(x, m.weight, m.bias, 1, 1, 1, 2)


def test_panels_are_packed_once_and_reused(gemm_panels):
    m, x = _module_and_input()
    np.testing.assert_allclose(m(x), _want(m, x), rtol=1e-4, atol=1e-4)
    first = m._packed_weights()._entry[2]
    m(x)
    assert m._packed_weights()._entry[2] is first  # unchanged weights: the same panels
    # the tiles load the panels as whole vectors: they start on a cache line, whatever numpy's placement
    assert first.ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_weights_start_on_a_cache_line(dtype):
    kernels = _dispatch.kernels
    weight = np.ones((40, 3, 3, 3), dtype)
    for packed in (
        kernels.gemm_pack_weights(weight, 1, 1),
        kernels.dwconv_pack_weights(np.ones((40, 1, 3, 3), dtype), 40),
    ):
        assert packed.ctypes.data % 64 == 0 and packed.flags.c_contiguous
    for n in (0, 1, 7, 1000):
        assert kernels._aligned_empty(n, dtype).shape == (n,)


@pytest.mark.parametrize("write", ["in place", "slice", "assignment", "load_state_dict", "reset_parameters"])
def test_every_kind_of_write_is_seen_by_the_next_call(gemm_panels, write):
    m, x = _module_and_input(np.float64)
    m(x)
    if write == "in place":
        m.weight *= 0.5
    elif write == "slice":
        m.weight[3, 1, 2, 0] += 1.0  # one element
    elif write == "assignment":
        m.weight = np.random.default_rng(2).standard_normal(m.weight.shape)
    elif write == "load_state_dict":
        m.load_state_dict({"weight": np.ones_like(m.weight), "bias": m.bias})
    else:
        m.reset_parameters(rng=5)
    np.testing.assert_allclose(m(x), _want(m, x), rtol=1e-10, atol=1e-10)


def test_copies_start_with_an_empty_cache_and_isa_changes_repack(gemm_panels):
    m, x = _module_and_input()
    m(x)
    clone = copy.deepcopy(m)
    assert clone._packed_weights()._entry is None
    np.testing.assert_array_equal(clone(x), m(x))
    for level in gconv.available_isas():  # another build's panels have another tile: never reused across
        previous = _dispatch.set_isa(level)
        try:
            np.testing.assert_allclose(m(x), _want(m, x), rtol=1e-4, atol=1e-4)
        finally:
            _dispatch.set_isa(previous)


def test_threads_sharing_a_module_get_the_right_answer(gemm_panels):
    m, x = _module_and_input(np.float64)
    want = _want(m, x)
    errors = []

    def work():
        for _ in range(20):
            if not np.allclose(m(x, n_threads=1), want, rtol=1e-10, atol=1e-10):
                errors.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_grouped_dwconv_weights_are_packed_once_and_writes_are_seen():
    # RegNet's groups of 8 on a 14x14 map: the dwconv family where a vector holds at most 8 channels
    m = gconv.Conv2d(208, 208, 3, padding=1, groups=26, rng=0)
    x = np.random.default_rng(1).standard_normal((1, 208, 14, 14)).astype(np.float32)
    want = conv_reference(x, m.weight, m.bias, 1, 1, 1, 26)
    np.testing.assert_allclose(m(x), want, rtol=1e-4, atol=1e-4)
    if _dispatch.kernels.DWCONV_TILE[4][0] > 8:
        return  # AVX-512: groups of 8 stay on the direct family
    entry = m._packed_weights()._entry
    assert entry is not None and entry[0][1] == "dwconv"
    m(x)
    assert m._packed_weights()._entry[2] is entry[2]  # unchanged weights: the same packing
    m.weight[5, 3, 1, 2] += 1.0
    np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias, 1, 1, 1, 26), rtol=1e-4, atol=1e-4)
    assert m._packed_weights()._entry[2] is not entry[2]


def test_depthwise_weights_are_packed_once_and_writes_are_seen():
    # ConvNeXt's depthwise 7x7 on 768 channels of 7x7: packing them took a seventh of a call
    m = gconv.Conv2d(768, 768, 7, padding=3, groups=768, rng=0)
    x = np.random.default_rng(2).standard_normal((1, 768, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias, 1, 3, 1, 768), rtol=1e-4, atol=1e-4)
    entry = m._packed_weights()._entry
    assert entry is not None and entry[0][1] == "dwconv"
    m(x)
    assert m._packed_weights()._entry[2] is entry[2]
    m.weight[700, 0, 6, 0] -= 2.0
    np.testing.assert_allclose(m(x), conv_reference(x, m.weight, m.bias, 1, 3, 1, 768), rtol=1e-4, atol=1e-4)
    assert m._packed_weights()._entry[2] is not entry[2]
    small = gconv.Conv2d(16, 16, 3, padding=1, groups=16, rng=0)  # 144 weights: packed by each call
    small(x[:, :16])
    assert small._packed_weights()._entry is None


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_the_check_finds_any_changed_byte_whatever_the_thread_count(n_threads):
    # 3 MiB and a bit, and 600 KB: parts of 256 KiB or more, one per thread, the last one short
    kernels = _dispatch.kernels
    for size in (3 * (1 << 18) + 5, 150_001):
        kept = np.random.default_rng(0).standard_normal(size).astype(np.float32)
        weight = kept.copy()
        assert kernels.same_bytes(kept, weight, n_threads)
        for index in (0, size // 3 - 1, size // 3, size // 2 + 7, size - 1):
            weight[index] = np.nextafter(weight[index], np.inf)
            assert not kernels.same_bytes(kept, weight, n_threads), index
            weight[index] = kept[index]
        assert kernels.same_bytes(kept, weight, n_threads)
        assert not kernels.same_bytes(kept, weight[:-1], n_threads)
