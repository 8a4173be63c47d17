"""gconv's kernels built for the baseline instruction-set level (source: gconv/kernels/module.pxi)."""
include "kernels/module.pxi"
