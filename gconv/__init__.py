"""gconv: torch.nn.Conv1d/2d/3d and ConvTranspose1d/2d/3d and their functional forms on NumPy arrays."""

from . import grad as grad  # gconv.grad after `import gconv`, as torch.nn.grad after `import torch`
from ._dispatch import available_levels as available_isas
from ._kernels import openmp_enabled
from ._select import explain
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .functional import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d
from .fusion import fuse_conv_bn_eval, fuse_conv_bn_weights
from .modules import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d


def kernel_isa() -> str:
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
    "Conv3d",
    "conv3d",
    "ConvTranspose3d",
    "conv_transpose3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "fuse_conv_bn_eval",
    "fuse_conv_bn_weights",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "kernel_isa",
    "available_isas",
    "explain",
    "__version__",
]
