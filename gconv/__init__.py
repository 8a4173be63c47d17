"""gconv: torch.nn.Conv1d/Conv2d and functional.conv1d/conv2d on NumPy arrays, with OpenMP Cython kernels."""
from ._dispatch import available_levels as available_isas
from ._kernels import openmp_enabled
from ._threads import get_num_threads, set_num_threads
from .functional import conv1d, conv2d
from .fusion import fuse_conv_bn_eval, fuse_conv_bn_weights
from .modules import Conv1d, Conv2d

__version__ = "0.1.0"


def kernel_isa():
    """Instruction-set level of the kernels in use.

    Returns
    -------
    str
        'avx512', 'avx2' or 'baseline': the widest this CPU and build support, or the one the
        ``GCONV_ISA`` environment variable named at import.
    """
    from . import _dispatch
    return _dispatch.ISA


__all__ = [
    "Conv1d",
    "Conv2d",
    "conv1d",
    "conv2d",
    "fuse_conv_bn_eval",
    "fuse_conv_bn_weights",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "kernel_isa",
    "available_isas",
    "__version__",
]
