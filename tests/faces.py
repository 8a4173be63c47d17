"""One call, two libraries: a call written against a `face` (nn, F, arr) runs on gconv and on torch alike."""

import numpy as np
import pytest

import gconv


class Gconv:
    nn = gconv
    F = gconv
    arr = staticmethod(lambda a: a)


def torch_face():
    """The same face over torch (skips the test when torch is not installed)."""
    torch = pytest.importorskip("torch")

    class Torch:
        nn = torch.nn
        F = torch.nn.functional
        arr = staticmethod(torch.from_numpy)

    return Torch


def raises_as_torch(call, kind, message, compare=True):
    """call(face) raises kind with this exact message on gconv (message None: any), and on torch when compare.

    Returns gconv's exception, for checks of its own.
    """
    with pytest.raises(kind) as ours:
        call(Gconv)
    if message is not None:
        assert str(ours.value) == message
    if compare:
        face = torch_face()
        with pytest.raises(kind) as theirs:
            call(face)
        assert str(theirs.value).split("\n")[0] == message
    return ours.value


def check_common_nn_configs(classes, dtypes, tolerances):
    """torch's own common_nn.py configurations of these classes: gconv's output and repr equal torch's."""
    torch = pytest.importorskip("torch")
    from torch_configs import conv_module_configs

    configs = conv_module_configs(classes)
    assert len(configs) >= 4, configs
    for name, cls, args, kwargs, input_size in configs:
        for dtype in dtypes:
            tm = getattr(torch.nn, cls)(*args, dtype=getattr(torch, np.dtype(dtype).name), **kwargs)
            gm = getattr(gconv, cls).from_torch(tm)
            x = np.random.default_rng(2).standard_normal(input_size).astype(dtype)
            with torch.no_grad():
                want = tm(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(gm(x), want, **tolerances[dtype], err_msg=name)
            assert repr(gm) == repr(tm), name
