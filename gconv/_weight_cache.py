"""A module's weights packed for the gemm or dwconv family once, and reused for as long as they are unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np

# Weights below this many elements are packed by each call instead: the check costs a fixed ~4.5 us (AVX2, one
# thread) plus ~0.15 ns per weight, the packing inside the kernel ~0.7 ns per weight; measured on 1x1 layers,
# the check gains from about 8k weights (8192: 5.7 us against 7.7; 4096: 5.2 against 4.8; 256: 4.8 against 2.4).
MIN_CACHED_WEIGHTS = 8192


class PackedWeights:
    """The last (weights, packed panels) pair a module's calls used; never stale.

    Every call compares the weight it is about to use with the copy kept here, byte for byte (memcmp over the
    call's threads: a third to a half of what packing costs, for the weights large enough to be kept), so a
    write into ``m.weight`` in place, an assignment or a load_state_dict is seen by the next call and the
    panels are packed again.
    Calls from several threads may race here: each reads the pair once and uses a consistent one, at worst
    packing the same weights twice.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[Any, np.ndarray, np.ndarray] | None = None

    def panels(
        self, kernels: Any, weight: np.ndarray, groups: int, n_threads: int, family: str = "gemm"
    ) -> np.ndarray | None:
        """The [K][NR] panels of weight (C-contiguous, float) for this kernel build (family 'dwconv': its
        [block][tap][lane] vectors; 'pointwise': a [K][MR] panel per tile of MR output channels; 'winograd': the
        transformed 3x3 weights), packed now or
        reused; None for a small weight, which the kernel packs
        faster than this could check it."""
        if weight.size < MIN_CACHED_WEIGHTS:
            self._entry = None  # nothing kept for a module whose weight was large once
            return None
        key = (kernels.ISA, family, weight.dtype, weight.shape, groups)
        entry = self._entry
        if entry is not None and entry[0] == key and kernels.same_bytes(entry[1], weight, n_threads):
            return entry[2]
        if family == "dwconv":
            packed = kernels.dwconv_pack_weights(weight, groups)
        elif family == "winograd":
            packed = kernels.winograd_pack_weights(weight, n_threads)
        elif family == "pointwise":
            packed = kernels.pointwise_pack_weights(weight, groups, n_threads)
        else:
            packed = kernels.gemm_pack_weights(weight, groups, n_threads)
        self._entry = (key, weight.copy(), packed)
        return packed

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (type(self), ())  # a copy or a pickle starts empty: the cache is no part of a module's state
