"""gconv's kernels built for the avx2 instruction-set level (source: gconv/kernels/module.pxi)."""
include "kernels/module.pxi"
