"""A module's weights packed for the gemm family once, and reused for as long as the weights are unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np


class PackedWeights:
    """The last (weights, packed panels) pair a module's calls used; never stale.

    Every call compares the weight it is about to use with the copy kept here, byte for byte (memcmp: about a
    tenth of what packing costs), so a write into ``m.weight`` in place, an assignment or a load_state_dict
    is seen by the next call and the panels are packed again. Calls from several threads may race here:
    each reads the pair once and uses a consistent one, at worst packing the same weights twice.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[Any, np.ndarray, np.ndarray] | None = None

    def panels(self, kernels: Any, weight: np.ndarray, groups: int, n_threads: int) -> np.ndarray:
        """The [K][NR] panels of weight (C-contiguous, float) for this kernel build, packed now or reused."""
        key = (kernels.ISA, weight.dtype, weight.shape, groups)
        entry = self._entry
        if entry is not None and entry[0] == key and kernels.same_bytes(entry[1], weight):
            return entry[2]
        packed = kernels.gemm_pack_weights(weight, groups, n_threads)
        self._entry = (key, weight.copy(), packed)
        return packed

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (type(self), ())  # a copy or a pickle starts empty: the cache is no part of a module's state
