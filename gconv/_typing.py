"""Type aliases of the public API: float arrays and torch's int-or-tuple arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsIndex, Union

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]  # float32 or float64 at run time; other dtypes get torch's errors
IntOrTuple = Union[SupportsIndex, Sequence[SupportsIndex]]  # 3, (3, 3): one value per spatial axis, or one for all
Padding = Union[IntOrTuple, str]  # an int-or-tuple, 'same' or 'valid'
Shape = Sequence[SupportsIndex]
