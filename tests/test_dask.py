"""gconv.dask: lazy convolutions over batch-chunked dask arrays, local and distributed schedulers."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import gconv  # noqa: E402
import gconv.dask as gdask  # noqa: E402


def _data(seed=0, shape=(10, 8, 12, 11), dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


def test_conv2d_is_lazy_with_the_right_shape_dtype_and_chunks():
    x = _data()
    w = _data(1, (12, 2, 3, 3))
    b = _data(2, (12,))
    dx = da.from_array(x, chunks=(3, 4, 6, 6))  # spatial chunks are merged
    y = gdask.conv2d(dx, w, b, stride=2, padding=1, groups=4)
    want = gconv.conv2d(x, w, b, stride=2, padding=1, groups=4)
    assert isinstance(y, da.Array)
    assert y.shape == want.shape and y.dtype == want.dtype
    assert y.chunks == ((3, 3, 3, 1), (12,), (6,), (6,))
    np.testing.assert_array_equal(y.compute(scheduler="threads"), want)


def test_conv1d_and_float64():
    x = _data(3, (7, 6, 40), np.float64)
    w = _data(4, (6, 1, 5), np.float64)
    y = gdask.conv1d(da.from_array(x, chunks=(2, 6, 40)), w, None, padding="same", dilation=2, groups=6)
    np.testing.assert_array_equal(
        y.compute(scheduler="sync"), gconv.conv1d(x, w, None, padding="same", dilation=2, groups=6)
    )


def test_module_forward_with_a_padding_mode():
    m = gconv.Conv2d(8, 4, 3, padding=2, padding_mode="reflect", groups=2, rng=0)
    x = _data(5)
    y = gdask.forward(m, da.from_array(x, chunks=(4, 8, 12, 11)))
    np.testing.assert_array_equal(y.compute(), m(x))


@pytest.mark.parametrize(
    "module,shape",
    [
        (gconv.ConvTranspose2d(8, 6, 4, stride=2, padding=1, groups=2, rng=0), (10, 8, 12, 11)),
        (gconv.Conv3d(4, 6, 3, padding=1, groups=2, rng=0), (5, 4, 6, 7, 5)),
        (gconv.ConvTranspose3d(4, 2, 2, stride=2, rng=0), (5, 4, 3, 4, 3)),
    ],
    ids=["ConvTranspose2d", "Conv3d", "ConvTranspose3d"],
)
def test_module_forward_on_the_rest_of_the_family(module, shape):
    x = _data(6, shape)
    y = gdask.forward(module, da.from_array(x, chunks=(2,) + shape[1:]))
    np.testing.assert_array_equal(y.compute(scheduler="threads"), module(x))


def test_errors_are_raised_when_the_graph_is_built():
    dx = da.from_array(_data(), chunks=(5, 8, 12, 11))
    with pytest.raises(RuntimeError, match="expected input\\[0, 8, 12, 11\\] to have 6 channels"):
        gdask.conv2d(dx, np.ones((6, 6, 3, 3), np.float32))
    with pytest.raises(ValueError, match="batched input"):
        gdask.conv2d(dx[0], np.ones((8, 8, 3, 3), np.float32))
    with pytest.raises(TypeError, match="dask.array.Array"):
        gdask.conv2d(_data(), np.ones((8, 8, 3, 3), np.float32))


def test_weights_enter_the_graph_once_not_once_per_chunk():
    import dask
    from dask.core import flatten, get_dependencies

    x = da.from_array(_data(6, (64, 16, 8, 8)), chunks=(1, 16, 8, 8))  # 64 chunks
    w = _data(7, (16, 16, 3, 3))
    y = gdask.conv2d(x, w, padding=1)
    graph = dict(y.__dask_graph__())
    chunk_tasks = list(flatten(y.__dask_keys__()))
    assert len(chunk_tasks) == 64
    shared = set.intersection(*(set(get_dependencies(graph, key)) for key in chunk_tasks))
    # every chunk's task reads the weights from one key: a scheduler ships them once per worker
    assert len(shared) == 1
    weight, bias = dask.get(graph, shared.pop())
    np.testing.assert_array_equal(weight, w)
    assert bias is None


def test_distributed_local_cluster_with_two_workers():
    distributed = pytest.importorskip("distributed")
    x = _data(8, (12, 8, 16, 16))
    m = gconv.Conv2d(8, 8, 3, padding=1, groups=8, rng=1)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        dx = da.from_array(x, chunks=(3, 8, 16, 16))
        got = client.compute(gdask.conv2d(dx, m.weight, m.bias, padding=1, groups=8)).result()
        got_module = client.compute(gdask.forward(m, dx)).result()
    np.testing.assert_array_equal(got, m(x))
    np.testing.assert_array_equal(got_module, m(x))
