"""The one place that chooses how a convolution runs: family (direct, gemm, dwconv, loops), tile, threads, why."""

from __future__ import annotations

import math
from typing import NamedTuple, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _dispatch, _geometry
from ._typing import IntOrTuple, Padding, Shape
from ._weight_cache import MIN_CACHED_WEIGHTS

# Below this many multiply-adds a call runs on one thread: starting a team costs more than it saves.
SERIAL_BELOW_MACS = 1 << 17

# The gemm family vectorises over output channels (NR = 32 float32 per tile with AVX-512): below this many
# per group some of its lanes compute zeros, and measured, 16 channels lose to the direct family by 1.4x
# (depthwise and narrow groups stay on the direct family).
GEMM_MIN_OUT_CHANNELS = 32
# Taps (input channels per group x KH x KW) per output below which the per-tile packing and the tile
# stores weigh about as much as the multiply-adds (not measured further: such layers are cheap either way).
GEMM_MIN_TAPS = 32
# Output rows this short or shorter run on the gemm family: the direct tile is 32 columns wide (float32,
# AVX-512), so a 14-column row keeps under half of its lanes busy. Measured: dense 3x3 on 14x14 and 7x7
# 1.6-3x faster on gemm, even on 28x28 and 56x56.
GEMM_MAX_ROW = 14
# 1x1 convolutions keep the gemm family up to 28-column rows: there the direct family runs each image as
# one long row, but gemm's blocked reduction wins (1x1 128->512 on 28x28: 1.4x at batch 1, 1.2x at batch
# 8). On 56x56 it varies from run to run between 1.3x faster and 1.2x slower (256->64: two channel blocks).
GEMM_MAX_ROW_POINTWISE = 28
# Below AVX-512, dense (one group) kxk convolutions with rows up to 28 columns and at least 64 output
# channels run on the gemm family too: its 6 x 16 tile reduces deep layers faster than the direct tile (8
# columns, 4 channels x 3 rows). Measured on AVX2 (Zen, 1 thread, batch 1, medians of interleaved runs):
# 3x3 128->128 on 28x28 1.08x, 96->96 1.03x, 2x2 s2 96->96 on 56x56 1.19x, 3x3 s2 128->128 on 56x56 1.03x
# faster on gemm; 64->64 on 28x28 even; 32->32 on 28x28 1.2x slower. 56-column rows stay direct (3x3
# 64->64 on 56x56: direct 1.18x faster).
GEMM_MAX_ROW_DENSE_BELOW_AVX512 = 28
GEMM_MIN_OUT_CHANNELS_DENSE = 64
# With AVX-512 the gemm tile wins up to 56-column rows. Measured with its 8 x 32 tile (1 thread, batch 1 and
# 8, medians of interleaved runs): 3x3 64->64 on 56x56 1.13-1.19x, 128->128 on 28x28 1.23-1.25x, 3x3 s2
# 128->128 from 56x56 1.18-1.3x, 2x2 s2 96->192 from 56x56 1.2-1.35x faster than the direct tile (16 x 32
# accumulators); the 12 x 32 tile is a few percent faster again. On 112-column rows it varies (64->64 1.1x
# faster, 32->32 1.1x slower), so those stay direct.
GEMM_MAX_ROW_DENSE_AVX512 = 56
# Stems (3 input channels) stay off the gemm panels: ConvNeXt's 4x4 s4 3->96 on 224x224 (56-column rows) runs
# 1.07-1.09x faster on the direct family than on them with AVX-512 (batch 1 and 8), and faster still over its
# lowered input (LOWERED_STEM_MIN_TAPS); every layer measured above had 64 or more.
GEMM_MIN_IN_CHANNELS_DENSE = 16

# The gemm family reads the weights as they are (dot tiles) rather than packing them per call when a call
# has at most GEMM_DOT_MAX_PIXELS output pixels (batch x rows x columns) and at least GEMM_DOT_MIN_TAPS taps
# per output. Packing touches every weight once more (1-2 ns each here), which the multiply-adds of so few
# pixels do not repay: a 1x1 map's matrix-vector product is almost only that (dot: 4x faster). A dot tile
# ends with a reduction across its lanes per output, so it needs a deep reduction to amortise it (1x1
# 160->960 on 7x7: panels 2x faster; 960->160: dot 1.3x faster); with many pixels its input rows stream
# from L2 once per block of 4 channels and panels win (3x3 256->256 on 14x14 at batch 1: panels 1.2x).
# With AVX-512 (1 thread, batch 1): 3x3 512->512 and 1x1 1024->1024 on 4x4 and 5x5 maps dot 1.1-1.4x faster;
# on 7x7 maps (49 pixels) panels 1.03-1.15x faster (3x3 512->512, 2x2 s2 384->768 from 14x14).
GEMM_DOT_MAX_PIXELS = 32
GEMM_DOT_MIN_TAPS = 192
# below AVX-512 (16 registers: dot tiles of 2 pixels x 4 channels), see _gemm_choice
GEMM_DOT_MAX_PIXELS_BELOW_AVX512 = 8
# Weights too few for a module to keep packed (gconv._weight_cache.MIN_CACHED_WEIGHTS) are packed by every call
# that runs panels: there dot tiles repay from this many taps (1 thread, batch 8 on 1x1 maps, 104->26, 72->24,
# 64->120, and 64->64 on 4x4 at batch 1: 1.2-1.5x faster with AVX-512 and AVX2; at 32 taps and fewer (32->64,
# 16->256, 10->240) panels stay 1.05-1.1x faster).
GEMM_DOT_MIN_TAPS_PACKED_PER_CALL = 48
# ... and at any depth with AVX-512 in float32 on this many pixels or fewer, where the dot tiles sum their lanes
# as one transpose (gemm/tile.h): 1x1 on 1x1 maps at batch 8, 26->104, 32->120, 16->64, 32->8 1.25-1.5x faster on
# one and two threads, 10->240 at batch 4 1.25x; 16 and 32 pixels of 16 to 32 taps stay on panels (1.07-1.14x)
GEMM_DOT_MAX_PIXELS_SHALLOW = 8

# 1x1 convolutions at stride 1 without padding on NCHW maps of at least this many pixels run on the gemm
# family's pointwise tiles (out[c][p] = w[c][:] . x[:][p] per image: 6 channels x 16 pixels below AVX-512,
# input rows read in place, output rows stored whole). Measured on AVX2 (Zen), batch 1 and 8, one thread:
# 64->256, 256->64, 24->144 on 56x56, 32->16, 16->96 on 112x112 1.5-2x faster than the direct tile
# (8 accumulators of 16 registers) and 1.2-2.5x faster than panels (whose NCHW stores are runs of 6 per
# channel); 96->576, 576->96 on 14x14 1.2x faster than panels; 64->64 on 10x10 1.25x at batch 1 and 8.
# The baseline (SSE) build alike: 1.2-1.7x faster than either. With AVX-512 (12 channels x 32 pixels, the
# input in cache blocks of strips; 1 thread): at batch 1 1.05-1.4x faster than panels or the direct tile on
# 112x112 to 7x7 maps (2048->512 on 7x7 0.79 ms against 1.04), at batch 8 1.1-1.5x on 28x28 and larger.
POINTWISE_MIN_PIXELS = 100
# Smaller maps (7x7: 49 pixels, a map's last pixels in a one-vector tile) too, at batch 1, or below AVX-512
# at any batch while the weights are at most POINTWISE_MAX_WEIGHT_BYTES (with AVX-512 panels win at batch 8
# on 7x7 maps: 232->232, 440->440, 576->192, 2048->512 1.1-1.2x): each image reads all of them once per strip where
# panels fold the batch into their pixels. Measured on AVX2 (Zen, 1 thread, weights packed by the module)
# against panels at batch 8 on 7x7: 576->160, 960->160, 440->440, 1152->192, 320->1280 (1.6 MB of weights)
# 1.05-1.2x faster, 192->1152 1.0x, 512->2048, 1024->1024 (4 MB) 0.98x, 1024->2048 (8 MB) 0.92x.
POINTWISE_MIN_PIXELS_SMALL = 49
POINTWISE_MAX_WEIGHT_BYTES = 2 * 1024 * 1024
# A module's pointwise calls read its weights packed into [K][6] panels (the broadcasts of a tap one stream,
# not six rows) where the batch has at least this many pixels: 64->256 on 56x56 1.28x faster, 1024->2048 on
# 7x7 at batch 8 1.1x, most 14x14 and 7x7 layers 1.0-1.05x. Checking that the kept panels are still the
# weights' (a memcmp of the weights against a copy, ~0.3 ns per weight from L3) costs more than that on
# fewer pixels: 960->160, 440->440 on 7x7 at batch 1 1.07-1.1x slower with it than on the raw weights.
POINTWISE_MIN_PIXELS_PACKED = 392

# Dense convolutions other than stride-1 1x1 (kxk, strided, 2x2 patchify) on maps of at most this many
# output pixels at batch 1, with at least LOWERED_MIN_WEIGHT_BYTES of weights, run as the pointwise tiles over
# the lowered input (im2col: C_in * KH * KW rows of the map's pixels, 900 KiB for 3x3 512->512 on 7x7). Such
# a call is bound by reading its weights: panels read them three times (a module checks its packed copy
# against them, a memcmp of twice their bytes, then the tiles read the panels), the pointwise tiles once, as
# they are. Measured with AVX-512 (batch 1, 1 and 2 threads, medians of interleaved runs): 3x3 512->512 on 7x7
# and from 14x14 at stride 2 1.2-1.25x, 1x1 s2 1024->2048 from 14x14 1.15-1.3x, 2x2 s2 768->1536 from 14x14
# 1.3-1.7x, 3x3 512->512 on 4x4 and 5x5 (dot tiles) 1.35-1.6x, 256->256 on 7x7 1.05-1.1x faster than gemm;
# smaller weights lose (3x3 128->128 on 7x7 1.2x slower, 1x1 s2 256->512 even), as do 14x14 outputs (3x3
# 256->256 1.15x slower: its 196 pixels fill panels well) and batch 8 (1.2-1.4x slower: panels fold the
# batch into their pixels, the pointwise tiles run an image's 49 pixels as 64 lanes). The AVX2 build, on the
# same CPU: 3x3 512->512 on 7x7 1.15x, 2x2 s2 768->1536 1.6x, 3x3 512->512 on 4x4 2x faster than its panels.
LOWERED_MAX_PIXELS = 64
LOWERED_MIN_WEIGHT_BYTES = 1024 * 1024
# Up to 14x14 outputs where the taps do not overlap (kernel <= stride, no padding: 1x1 s2, 2x2 s2), whose
# lowered input is a rearrangement of at most the input: measured (batch 1) 1x1 s2 512->1024 from 28x28 1.12x
# and 1.03x, 2x2 s2 384->768 and 192->384 from 28x28 1.06-1.12x and 0.95-1.1x faster than panels on 1 and 2
# threads (on one thread with the wide tile); 3x3 on 14x14 even, so overlapping taps keep LOWERED_MAX_PIXELS.
LOWERED_MAX_PIXELS_PATCHES = 196
# Batches of images too, where the taps do not overlap, the wide tile takes the output maps whole (7x7:
# _pointwise_tail) and the weights are at least this large: measured (AVX-512, batch 8, against panels) 1x1
# s2 1024->2048 and 2x2 s2 768->1536 from 14x14 1.2-1.25x faster on one thread, 1.1-1.35x on two; 2x2 s2
# 384->768 (4.5 MiB) 1.02-1.04x slower.
LOWERED_MIN_WEIGHT_BYTES_BATCH = 8 * 1024 * 1024
# Patch convolutions (taps that do not overlap: 1x1 s2, 2x2 s2, 4x4 s4), float32 with AVX-512, run the wide
# pointwise tile over their lowered input, which each work item gathers from the input a cache block at a
# time (each input row split into its column phases by vector permutes, kernels/gemm/deinterleave.h), on
# output maps of at least LOWERED_PATCHES_MIN_PIXELS pixels, and as stems (fewer than
# GEMM_MIN_IN_CHANNELS_DENSE input channels) of at least LOWERED_STEM_MIN_TAPS taps on any map: where panels
# pack their input per tile and the direct family's tiles run 3 input channels deep. Measured (batch 1 and 8,
# 1 and 2 threads, medians of interleaved runs, against the family chosen before): 1x1 s2 32->48 from
# 112x112 and 48->104 from 56x56 1.35-1.55x, 2x2 s2 96->192 from 56x56 1.12-1.23x, 1x1 s2 256->512 from
# 56x56 1.06-1.11x, ConvNeXt's 4x4 s4 3->96 stem 1.25-1.6x faster; on 14x14 outputs even to 1.2x slower at
# batch 8 (the weight-bound rules above keep theirs); 2x2 s2 3->64 (12 taps) up to 1.35x slower on two
# threads, the AVX2 build's stem 0.9-1.06x and float64's (no vector split) 0.82-1.13x, so none of those
# takes it.
LOWERED_PATCHES_MIN_PIXELS = 784
LOWERED_STEM_MIN_TAPS = 32

# With AVX-512, single images of at most this many pixels (14x14) reducing over at least
# POINTWISE_WIDE_MIN_TAPS taps run the pointwise tiles' wide variant (6 channels x 64 pixels instead of 12 x
# 32; kernels.GEMM_POINTWISE_WIDE_TILE) on one thread: a 7x7 map is then one strip, a 14x14 one three and a
# vector, so each channel tile runs its reduction fewer times. Measured (float32, batch 1, kernel calls,
# medians): 1x1 2048->512 and 1024->2048 on 7x7 1.07-1.1x, 1024->512 on 14x14 1.05x, over lowered inputs 3x3
# 512->512 and 256->256 on 7x7 1.05-1.06x, 2x2 s2 768->1536 1.09x faster; 512->2048 on 7x7 and 256->1024 on
# 14x14 even; shallow reductions lose (160->960 on 7x7 1.24x, 96->576 on 14x14 1.05x slower), as do 28x28 maps
# (512->256 1.09x). On two threads it was as often slower (3x3 512->512 on 7x7 1.13x, 960->160 on 7x7 1.8x:
# the work items multiply and each copies the narrow map's rows), so more threads keep the regular tile.
POINTWISE_WIDE_MAX_PIXELS = 196
POINTWISE_WIDE_MIN_TAPS = 512
# Few output channels per group run on the wide tile (AVX-512, float32) at any size, batch and thread count
# where the regular tile's channel blocks would hold this many times the lanes the wide tile's do (16 outputs:
# 24 against 18; 4 or 6: 12 against 6): a ragged last block of 12 costs more than the wide tile's narrower
# weights. Measured (1x1, medians against the regular tile, batch 1 and 8, 1 and 2 threads): 16->16 and 32->16
# on 112x112 1.1-1.25x, 64->14 and 256->16 on 56x56 1.1-1.2x, 24->4 and 24->6 on 56x56 1.25-1.35x faster; where
# the blocks fill alike it loses (64->64 on 56x56 even on one thread, 1.1x slower on two; 256->64 1.6x slower
# on two), so where one image runs on several threads 28, 40 or 52 outputs (1.1-1.2x faster on one thread,
# measured) keep the regular tile.
POINTWISE_WIDE_MIN_LANE_GAIN = 1.25
# ... and from a gain this large on one thread or at batch 2 and more (rows that start off cache lines copied for
# the other tiles): 64 outputs (72 lanes against 66) 1x1 64->64 and 256->64 on 56x56 1.06-1.1x, 40 outputs (48
# against 42) 240->40 and 120->40 on 28x28 1.08-1.1x faster at batch 1 and 8, and on two threads at batch 8
# (1.05-1.1x); 112 outputs (1.05) even
POINTWISE_WIDE_MIN_LANE_GAIN_SERIAL = 1.08
# Float32 maps of whole vectors and one pixel more (kernels.GEMM_POINTWISE_TAIL_PIXELS: 7x7 = 3 x 16 + 1 with
# AVX-512) run on the wide tile at any batch, depth and thread count, its vectors and that pixel (reduced a
# vector of taps at a time from the weight rows it reads anyway) 52 lanes for 49 pixels where every other
# tile runs 64. Measured (1x1 on 7x7, AVX-512, medians against the tiles chosen before): batch 1, 1 thread
# 192->1152 1.3x, 160->960, 440->440, 232->232 1.2-1.3x, 2048->512 1.15x faster, deep reductions that
# already ran wide even; 2 threads 1.2-1.5x; batch 8 (against panels or the regular tile) 1.0-1.1x on one
# thread but 192->1152 1.05x slower, 1.05-1.3x faster on two.

# Dense 3x3 convolutions at stride 1 (dilation 1, one group, float32, NCHW) with at least WINOGRAD_MIN_CHANNELS
# input and output channels and output maps of at least WINOGRAD_MIN_PIXELS run as Winograd F(2x2, 3x3)
# (kernels/winograd/): 16 multiplies per 2x2 outputs and input channel instead of 36, the 16 products as one
# grouped call of the pointwise tiles, the weights' transform kept by a module. Results within a few roundings
# of the direct sum (the transforms' coefficients are 0, +-1, +-1/2; measured relative error 4e-7 to 1e-6
# of the largest output, as the gemm tiles' 3e-7 to 2.6e-6). Measured (AVX-512, module calls, medians of
# alternating runs, batch 1 / 8): 3x3 256->256 on 14x14 1.43x / 1.53x, 128->128 on 28x28 1.34x / 1.35x,
# 64->64 on 56x56 1.15x / 1.09x, 64->128 on 56x56 1.28x / 1.24x, 512->512 on 14x14 1.66x / 1.8x faster than the
# gemm tiles, alike on two threads. Kernel calls: 32->32 on 112x112 even, 16->32 on 56x56 and maps of 9x9
# 1.3-1.5x slower (shallow reductions: the transforms cost what they save); 512->512 on 7x7 1.03-1.07x faster
# with the transform kept, but a module would check 9 MiB of weights per call against it, where the lowered
# input reads them once.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_PIXELS = 14 * 14
# ... and, with its transforms 16 tiles at a time (AVX-512), 7x7 maps too at batch 2 or more with this many
# channels, whose weights a module checks per call on the gemm tiles anyway: 512->512 on 7x7 at batch 2 / 4 /
# 8 1.14x / 1.08x / 1.04x faster than the gemm tiles on one thread, 1.27-1.4x on two; 256->256 at batch 8
# 1.09x slower on one thread (even on two), 128->128 1.19x slower; one image keeps the lowered input (1.09x)
WINOGRAD_MIN_CHANNELS_SMALL_MAPS = 512
WINOGRAD_MIN_PIXELS_SMALL_MAPS = 7 * 7
# ... and at most this many bytes of transformed inputs and products per image (16 values per 2x2 outputs and
# channel, in and out: a call holds a chunk of images' or one image's; 3x3 64->64 on 56x56 takes 6.3 MiB,
# on 112x112 25 MiB, which stays on the other families)
WINOGRAD_MAX_IMAGE_BYTES = 16 * 1024 * 1024

# Depthwise convolutions (groups == in_channels == out_channels) run on the dwconv family, vectorised along
# the channels: measured on AVX2 (1 thread, batch 1) 2.6-4.6x faster than the direct family on 7x7 and
# 14x14 maps (3x3 960 on 7x7: 0.115 ms against 0.53) and 1.3-1.4x on 56x56 and 112x112 ones. The direct
# tile is twice as wide with AVX-512, where rows longer than this take dwconv only with at least two vectors
# of channels, or one at a column stride over 1 (kernels.DWCONV_TILE's lanes): measured there since the
# slab is transposed in 16 x 16 register blocks, 3x3 on 56x56 and 112x112 with 32-144 channels 0.84-1.0x the
# direct family's time at batch 8 or on 2 threads, 1.0-1.1x at batch 1 on one thread; at stride 2 0.35-0.85x,
# 5x5 at stride 2 0.6-0.7x. With fewer channels it is no faster (3x3 on 112x112: 8 channels 1.6-1.8x slower;
# 16 and 24 channels 0.9-1.3x), so those stay direct. Float32 only: in
# float64 (4 x 4 transposes) 3x3 on 56x56 and 112x112 ran 0.8-1.3x the direct family's time, mostly slower.
DWCONV_MAX_ROW_AVX512 = 28
DWCONV_LONG_ROW_MIN_VECTORS = 2
# Longer rows with any number of channels where the kernel has a row tile (kernels.DWCONV_ROW_KERNELS: 5 or
# 7 columns at column stride 1, each kernel row's inputs loaded once for all its columns): measured with
# AVX-512 (1 thread, batch 1 and 8) 7x7 on 56x56 1.29x and on 112x112 1.25x, 5x5 on 56x56 1.1x faster than
# the direct family; 5x5 on 112x112 even.
# Grouped convolutions whose groups have at least a vector of output channels (RegNet's groups of 8,
# ResNeXt's of 8 to 32) run there too where output rows are this short or shorter: the tile broadcasts each
# input of a group to a vector of its output channels, so 7- and 14-column rows keep every lane busy.
# Measured on AVX2 (1 thread, batch 1 and 8): 3x3 groups of 8 on 7x7 to 28x28 outputs 1.2-1.8x faster than
# the direct family; on 56x56 outputs (48 channels in groups of 8 at stride 2) 1.1x slower. Groups of 4
# (ResNeXt's 128 channels on 56x56) would leave half of the lanes idle: 2x slower, so they stay direct.
DWCONV_GROUPED_MAX_ROW = 28
# With AVX-512, groups of fewer outputs than a vector has lanes but at least half of them (RegNet's 8) run
# where output rows are this short or shorter (at a column stride over 1, the second value), on twin tiles
# where a group has at most half a vector of outputs (kernels.DWCONV_GROUPED_LANES: two groups to a
# vector), on whole-vector tiles with lanes to spare above that. Measured with twin tiles (1 thread, batch 1
# and 8): 3x3 440->440 in 55 groups on 7x7 3.3-3.4x, from 14x14 at stride 2 4x, 208->208 in 26 groups on
# 14x14 1.8-2x and from 28x28 at stride 2 2.4x faster than the direct family; 104 in 13 groups from 56x56 at
# stride 2 (28-column outputs) 1.1-1.2x faster on 1 and 2 threads, but on 28x28 at stride 1 direct's
# 32-column rows are 1.0-1.1x faster, and on 56-column outputs (48 in 6 groups from 112x112) even.
DWCONV_GROUPED_MAX_ROW_HALF = 14
DWCONV_GROUPED_MAX_ROW_HALF_STRIDED = 28

# Tests only: 'direct', 'gemm', 'winograd' (3x3 stride-1 calls of one group only), 'dwconv' or 'loops' forces
# that family on every call ('gemm:panel' or
# 'gemm:dot' also its tile kind; 'gemm:pointwise' the pointwise tiles wherever a call can run on them, panels
# elsewhere; 'gemm:lowered' the pointwise tiles over the lowered input on every NCHW call that does not
# accumulate, panels elsewhere; 'gemm:wide' as both of those with the wide pointwise tile); None lets choose()
# decide.
FORCE_FAMILY = None


class Choice(NamedTuple):
    """How one 2-D call runs (1-D calls arrive lifted to 2-D)."""

    family: str  # 'direct': row-vectorised register tiles over packed slabs; 'gemm': channel-vectorised tiles
    #              of pixels x output channels (implicit GEMM); 'winograd': 3x3 as F(2x2, 3x3) products on the
    #              pointwise tiles; 'dwconv': channel-vectorised depthwise tiles; 'loops': plain loops
    oc_block: int  # direct: output channels per register tile (one of the build's DIRECT_OC_BLOCKS)
    flat: bool  # direct: tiles over a block's flattened outputs instead of a rows x columns grid
    tile_cols: int  # direct: output columns per register tile
    pointwise_rows: bool  # 1x1, stride 1, no padding, NCHW: each image runs as one long row of H * W pixels
    #                       (gemm: on the pointwise tiles, conv2d_pointwise)
    n_threads: int
    reasons: tuple  # one line per rule that decided something (only when asked for: explain())
    pack_weights: bool = True  # gemm: weights packed into [K][NR] panels; False: dot tiles on the raw weights
    gemm_tile: str = ""  # gemm: pixels x output channels ("dot ..." for dot tiles); dwconv: channels x columns
    lowered: bool = False  # gemm: the pointwise tiles over the lowered input (conv2d_lowered)
    wide: bool = False  # gemm, winograd: the pointwise tiles' wide variant (kernels.GEMM_POINTWISE_WIDE_TILE)

    @property
    def tile(self):
        """The register tile: direct, output channels x rows x columns; gemm, pixels x output channels;
        dwconv, channels x output columns."""
        if self.family in ("gemm", "dwconv", "winograd"):
            return self.gemm_tile
        if self.family != "direct":
            return ""
        return f"{self.oc_block}x{_dispatch.kernels.DIRECT_ACC_ROWS // self.oc_block}x{self.tile_cols}"


def _oc_block(out_channels_per_group, oc_blocks):
    # as many output channels as a group has, up to the widest tile; the rest of the accumulator rows go to
    # output rows (one channel: 1 x 8 rows with AVX-512, 1 x 12 below it)
    return next((block for block in oc_blocks if block <= out_channels_per_group), oc_blocks[-1])


def _gemm_reason(weight_shape, out_shape, groups, isa):
    """Why the channel-vectorised gemm family suits this call, or '' where the direct family is faster."""
    out_channels_per_group = weight_shape[0] // groups
    taps = weight_shape[1] * weight_shape[2] * weight_shape[3]
    if out_shape[2] * out_shape[3] == 1:
        # A 1x1 output map (squeeze-excitation layers) keeps one of the row tile's lanes busy, whatever the
        # channels: measured 1x1 672->28, 28->672, 480->20, 240->10 at batch 1 and 8, gemm 37-58 us against
        # direct's 52-267 us, most of what is left being the per-call path.
        return "a 1x1 output map would keep one lane of the row-vectorised tile busy"
    # float64 alike (measured: 1x1 on a 1x1 map 5.6x, 1x1 960->160 on 7x7 2x faster than direct; the float64
    # rows of benchmarks/bench.py, 3x3 on 28x28 and 56x56 maps, stay on the direct family by the row rule
    # with AVX-512; below it the 28x28 one runs on gemm, GEMM_MAX_ROW_DENSE_BELOW_AVX512)
    if out_channels_per_group < GEMM_MIN_OUT_CHANNELS or taps < GEMM_MIN_TAPS:
        return ""
    w_out = out_shape[3]
    max_row = GEMM_MAX_ROW_POINTWISE if tuple(weight_shape[2:]) == (1, 1) else GEMM_MAX_ROW
    if w_out <= max_row:
        return f"output rows of {w_out} <= {max_row} columns leave the row-vectorised tile's lanes idle"
    kxk = weight_shape[2] > 1 and weight_shape[3] > 1
    max_row_dense = GEMM_MAX_ROW_DENSE_AVX512 if isa == "avx512" else GEMM_MAX_ROW_DENSE_BELOW_AVX512
    if (
        kxk
        and groups == 1
        and w_out <= max_row_dense
        and out_channels_per_group >= GEMM_MIN_OUT_CHANNELS_DENSE
        and weight_shape[1] >= GEMM_MIN_IN_CHANNELS_DENSE
    ):
        return (
            f"dense {weight_shape[2]}x{weight_shape[3]} with output rows of {w_out} <= {max_row_dense} columns "
            f"and {out_channels_per_group} >= {GEMM_MIN_OUT_CHANNELS_DENSE} output channels ({isa}), where the "
            f"gemm tile reduces faster than the row-vectorised one"
        )
    return ""


def _gemm_choice(kernels, weight_shape, out_shape, itemsize, n_threads, gemm_why, reasons, forced):
    """The gemm family's tile kind: dot tiles on the raw weights for few pixels with deep reductions, else
    panels over weights packed per call."""
    pixels = out_shape[0] * out_shape[2] * out_shape[3]
    variant = FORCE_FAMILY.partition(":")[2] if forced and FORCE_FAMILY else ""
    taps = weight_shape[1] * weight_shape[2] * weight_shape[3]
    dtype_name = "float32" if itemsize == 4 else "float64"
    # A matrix-vector product (one pixel) reads each weight once: packing them, or checking a module's packed
    # copy against them (a memcmp of twice their bytes), costs more than the product, whatever the depth
    # (AVX2, 1x1 on a 1x1 map at batch 1, 168->672, 48->1152, 10->240: dot 1.2-2.2x faster than panels).
    one_pixel = pixels < kernels.GEMM_DOT_TILE[0]
    # below AVX-512, multi-pixel dot tiles win only on a handful of pixels (AVX2, 1x1 960->160 on 7x7: 2x4
    # dot tiles 4x slower than panels; at batch 8 on 1x1 maps 672->28, 240->960, 1152->48 1.2-1.7x faster)
    max_pixels = GEMM_DOT_MAX_PIXELS if kernels.ISA == "avx512" else GEMM_DOT_MAX_PIXELS_BELOW_AVX512
    packed_per_call = weight_shape[0] * taps < MIN_CACHED_WEIGHTS
    min_taps = GEMM_DOT_MIN_TAPS_PACKED_PER_CALL if packed_per_call else GEMM_DOT_MIN_TAPS
    if packed_per_call and kernels.ISA == "avx512" and itemsize == 4 and pixels <= GEMM_DOT_MAX_PIXELS_SHALLOW:
        min_taps = 1
    if variant == "dot" or (not variant and (one_pixel or (pixels <= max_pixels and taps >= min_taps))):
        mr, nr = kernels.GEMM_DOT_TILE if pixels >= kernels.GEMM_DOT_TILE[0] else kernels.GEMM_DOT_PIXEL_TILE
        if reasons is not None:
            reasons.append(
                f"gemm: {gemm_why}; dot tiles of {mr} pixels x {nr} output channels on the weights as they are: "
                + (
                    "one pixel (a matrix-vector product) reads each weight once"
                    if one_pixel
                    else f"{pixels} pixels (<= {max_pixels}) of {taps} taps (>= {min_taps}) would not "
                    "repay packing them"
                )
                + f" ({_dispatch.ISA}, {dtype_name})"
            )
        return Choice("gemm", 0, False, 0, False, n_threads, tuple(reasons or ()), False, f"dot {mr}x{nr}")
    mr, nr = kernels.GEMM_TILE[dtype_name]
    if reasons is not None:
        reasons.append(
            f"gemm: {gemm_why}; tiles of {mr} pixels x {nr} output channels over weights packed per call "
            f"({_dispatch.ISA}, {dtype_name})"
        )
    return Choice("gemm", 0, False, 0, False, n_threads, tuple(reasons or ()), True, f"{mr}x{nr}")


def _pointwise_tile(kernels, weight_shape, out_shape, itemsize, n_threads, reasons, groups=1, gathered=False):
    """(wide, mr, nr): the pointwise tile a call runs, output channels x pixels (see POINTWISE_WIDE_MAX_PIXELS
    and POINTWISE_WIDE_MIN_LANE_GAIN; gathered: LOWERED_PATCHES_MIN_PIXELS's calls, always wide)."""
    dtype_name = "float32" if itemsize == 4 else "float64"
    pixels = out_shape[2] * out_shape[3]
    taps = math.prod(weight_shape[1:])
    tail = _pointwise_tail(kernels, out_shape, itemsize)
    channels = weight_shape[0] // groups
    regular_mr, wide_mr = kernels.GEMM_POINTWISE_TILE[dtype_name][0], kernels.GEMM_POINTWISE_WIDE_TILE[dtype_name][0]
    min_gain = (
        POINTWISE_WIDE_MIN_LANE_GAIN if n_threads > 1 and out_shape[0] == 1 else POINTWISE_WIDE_MIN_LANE_GAIN_SERIAL
    )
    few_channels = channels > 0 and -(-channels // regular_mr) * regular_mr >= min_gain * (
        -(-channels // wide_mr) * wide_mr
    )
    wide = FORCE_FAMILY == "gemm:wide" or (
        FORCE_FAMILY is None
        and kernels.ISA == "avx512"
        and itemsize == 4
        and (
            tail
            or gathered
            or few_channels
            or (
                n_threads == 1
                and out_shape[0] == 1
                and pixels <= POINTWISE_WIDE_MAX_PIXELS
                and taps >= POINTWISE_WIDE_MIN_TAPS
            )
        )
    )
    mr, nr = (kernels.GEMM_POINTWISE_WIDE_TILE if wide else kernels.GEMM_POINTWISE_TILE)[dtype_name]
    if wide and reasons is not None:
        if FORCE_FAMILY:
            reasons.append("gemm: forced wide pointwise tile")
        elif gathered:
            reasons.append(f"wide pointwise tile: over patches gathered as the tiles go ({_dispatch.ISA})")
        elif tail:
            reasons.append(
                f"wide pointwise tile: maps of {pixels} pixels, whole vectors and one pixel more, taken as its "
                f"vectors plus that pixel ({_dispatch.ISA})"
            )
        elif few_channels:
            reasons.append(
                f"wide pointwise tile: {channels} output channels per group fill its blocks of {wide_mr} better "
                f"than blocks of {regular_mr} ({_dispatch.ISA})"
            )
        else:
            reasons.append(
                f"wide pointwise tile: one image of {pixels} pixels (<= {POINTWISE_WIDE_MAX_PIXELS}) reducing "
                f"over {taps} taps (>= {POINTWISE_WIDE_MIN_TAPS}) on one thread ({_dispatch.ISA})"
            )
    return wide, mr, nr


def _pointwise_tail(kernels, out_shape, itemsize):
    """Whether the wide pointwise tile runs these maps as whole vectors and one pixel more (7x7 with AVX-512)."""
    return itemsize == 4 and out_shape[2] * out_shape[3] in kernels.GEMM_POINTWISE_TAIL_PIXELS


def _lowered_choice(
    kernels, weight_shape, out_shape, stride, pad_before, dilation, groups, itemsize, n_threads, reasons
):
    """The pointwise tiles over the lowered input for a weight-bound call (see LOWERED_MAX_PIXELS), else None."""
    pixels = out_shape[2] * out_shape[3]
    weight_bytes = math.prod(weight_shape) * itemsize
    patches = (
        all(k <= s for k, s in zip(weight_shape[2:], stride))
        and tuple(pad_before) == (0, 0)
        and tuple(dilation) == (1, 1)
    )
    max_pixels = LOWERED_MAX_PIXELS_PATCHES if patches else LOWERED_MAX_PIXELS
    # batches too where the taps do not overlap and the wide tile takes the maps whole (7x7 outputs)
    batch_ok = out_shape[0] == 1 or (
        patches and weight_bytes >= LOWERED_MIN_WEIGHT_BYTES_BATCH and _pointwise_tail(kernels, out_shape, itemsize)
    )
    taps = math.prod(weight_shape[1:])
    stem = weight_shape[1] < GEMM_MIN_IN_CHANNELS_DENSE
    gathered = (
        patches
        and kernels.ISA == "avx512"
        and itemsize == 4
        and groups == 1
        and (taps >= LOWERED_STEM_MIN_TAPS if stem else pixels >= LOWERED_PATCHES_MIN_PIXELS)
    )
    if (
        FORCE_FAMILY not in ("gemm:lowered", "gemm:wide")
        and not gathered
        and not (
            batch_ok
            and groups == 1
            and pixels <= max_pixels
            and weight_bytes >= LOWERED_MIN_WEIGHT_BYTES
            and weight_shape[0] >= GEMM_MIN_OUT_CHANNELS
        )
    ):
        return None
    if reasons is not None:
        if FORCE_FAMILY:
            reasons.append("gemm: forced lowered input")
        elif gathered:
            reasons.append(
                "gemm: taps that do not overlap, gathered as the tiles go, "
                + (
                    f"a stem ({weight_shape[1]} input channels, {taps} taps >= {LOWERED_STEM_MIN_TAPS})"
                    if stem
                    else f"on {pixels} output pixels (>= {LOWERED_PATCHES_MIN_PIXELS})"
                )
            )
        else:
            reasons.append(
                f"gemm: {'one image' if out_shape[0] == 1 else 'images'} of {pixels} output pixels (<= {max_pixels}"
                + (", taps that do not overlap" if patches else "")
                + f") against {weight_bytes} bytes of weights (>= {LOWERED_MIN_WEIGHT_BYTES}), one group: bound by "
                "reading the weights"
            )
    wide, mr, nr = _pointwise_tile(kernels, weight_shape, out_shape, itemsize, n_threads, reasons, gathered=gathered)
    if reasons is not None:
        reasons.append(
            f"pointwise tiles of {mr} output channels x {nr} pixels over the lowered input (im2col, "
            f"{taps} rows of {pixels} pixels per image), the weights read as they are "
            f"({_dispatch.ISA}, {8 * itemsize}-bit)"
        )
    return Choice(
        "gemm", 0, False, 0, False, n_threads, tuple(reasons or ()), False, f"pointwise {mr}x{nr} lowered", True, wide
    )


def _winograd_choice(kernels, weight_shape, out_shape, stride, dilation, groups, itemsize, nchw, n_threads, reasons):
    """The winograd family for a dense 3x3 stride-1 call it suits (see WINOGRAD_MIN_CHANNELS), else None."""
    pixels = out_shape[2] * out_shape[3]
    tiles = ((out_shape[2] + 1) // 2, (out_shape[3] + 1) // 2)
    image_bytes = 16 * (weight_shape[0] + weight_shape[1]) * tiles[0] * tiles[1] * itemsize
    if not (
        tuple(weight_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and itemsize == 4
    ):
        return None
    channels = min(weight_shape[0], weight_shape[1])
    large_maps = channels >= WINOGRAD_MIN_CHANNELS and pixels >= WINOGRAD_MIN_PIXELS
    small_maps = (
        kernels.ISA == "avx512"
        and out_shape[0] >= 2
        and channels >= WINOGRAD_MIN_CHANNELS_SMALL_MAPS
        and pixels >= WINOGRAD_MIN_PIXELS_SMALL_MAPS
    )
    if FORCE_FAMILY != "winograd" and not (
        nchw and (large_maps or small_maps) and image_bytes <= WINOGRAD_MAX_IMAGE_BYTES
    ):
        return None
    if reasons is not None:
        reasons.append(
            "winograd: forced"
            if FORCE_FAMILY
            else f"winograd: dense 3x3 at stride 1 with {weight_shape[1]} -> {weight_shape[0]} channels "
            + (
                f"(>= {WINOGRAD_MIN_CHANNELS}) on maps of {pixels} pixels (>= {WINOGRAD_MIN_PIXELS})"
                if large_maps
                else f"(>= {WINOGRAD_MIN_CHANNELS_SMALL_MAPS}) on {out_shape[0]} maps of {pixels} pixels "
                f"(>= {WINOGRAD_MIN_PIXELS_SMALL_MAPS}, {_dispatch.ISA})"
            )
            + ": F(2x2, 3x3), 16 multiplies per 2x2 outputs and input channel for 36"
        )
    # the 16 products: one pointwise call of 16 groups over maps of the output's 2x2 tiles
    products_weight = (16 * weight_shape[0], weight_shape[1], 1, 1)
    products_out = (out_shape[0], 16 * weight_shape[0]) + tiles
    wide, mr, nr = _pointwise_tile(kernels, products_weight, products_out, itemsize, n_threads, reasons, 16)
    if reasons is not None:
        reasons.append(
            f"winograd: the 16 products on pointwise tiles of {mr} output channels x {nr} tiles "
            f"({_dispatch.ISA}, {8 * itemsize}-bit)"
        )
    return Choice(
        "winograd",
        0,
        False,
        0,
        False,
        n_threads,
        tuple(reasons or ()),
        False,
        f"F(2x2,3x3) pointwise {mr}x{nr}",
        wide=wide,
    )


def _dwconv_choice(
    kernels, x_shape, weight_shape, out_shape, stride, dilation, groups, itemsize, n_threads, reasons, forced
):
    """The dwconv family for a depthwise or grouped call it suits (see DWCONV_MAX_ROW_AVX512,
    DWCONV_LONG_ROW_MIN_VECTORS and DWCONV_GROUPED_MAX_ROW), else None."""
    depthwise = weight_shape[1] == 1 and x_shape[1] == groups == weight_shape[0]
    w_out = out_shape[3]
    vector_lanes, columns = kernels.DWCONV_TILE[itemsize]
    lanes = vector_lanes  # the fewest output channels per group that the tiles fill
    out_channels_per_group = weight_shape[0] // groups
    twin = not depthwise and kernels.DWCONV_TWIN_TILES and 2 * out_channels_per_group <= vector_lanes
    max_row = DWCONV_GROUPED_MAX_ROW
    if not depthwise and out_channels_per_group < lanes and kernels.DWCONV_GROUPED_LANES[itemsize] < lanes:
        lanes = kernels.DWCONV_GROUPED_LANES[itemsize]
        max_row = DWCONV_GROUPED_MAX_ROW_HALF if stride[1] == 1 else DWCONV_GROUPED_MAX_ROW_HALF_STRIDED
    grouped = not depthwise and groups > 1 and out_channels_per_group >= lanes and w_out <= max_row
    if not (depthwise or grouped or (forced and groups > 1)):
        return None
    row_tile = depthwise and weight_shape[3] in kernels.DWCONV_ROW_KERNELS and stride[1] == 1 and dilation[1] == 1
    vectors = DWCONV_LONG_ROW_MIN_VECTORS if stride[1] == 1 else 1
    if (
        not forced
        and kernels.ISA == "avx512"
        and w_out > DWCONV_MAX_ROW_AVX512
        and not row_tile
        and not (depthwise and itemsize == 4 and groups >= vectors * lanes)
    ):
        return None
    scratch = kernels.dwconv_scratch_bytes(
        x_shape[3],
        w_out,
        tuple(weight_shape[2:]),
        tuple(stride),
        tuple(dilation),
        itemsize,
        weight_shape[1],
        weight_shape[0] // groups,
    )
    if scratch > kernels.DIRECT_SCRATCH_LIMIT:
        return None  # huge dilations or rows: the direct family (or its loops) copes
    if reasons is not None:
        if depthwise:
            reasons.append(
                f"dwconv: depthwise ({groups} groups of one channel), vectorised along the channels: "
                + ("row " if row_tile else "")
                + f"tiles of {lanes} channels x {columns} output columns over [row][column][channel] slabs "
                + (f"(each kernel row's inputs loaded once for its {weight_shape[3]} columns) " if row_tile else "")
                + f"({_dispatch.ISA}, {8 * itemsize}-bit)"
            )
        else:
            why = (
                "forced"
                if not grouped
                else f"{out_channels_per_group} output channels per group (>= {lanes} lanes) on output rows of "
                f"{w_out} <= {max_row} columns"
            )
            reasons.append(
                f"dwconv: grouped ({groups} groups of {weight_shape[1]} -> {out_channels_per_group} channels), "
                + (
                    f"{why}: twin tiles of two groups' {lanes} output channels each to a vector, lanes "
                    f"interleaved, x {columns} output columns, each pair of inputs (one of each group) broadcast, "
                    "over [row][column][input channel][group] slabs of a pair of groups"
                    if twin
                    else f"{why}: tiles of {vector_lanes} output channels of a group x {columns} output columns, "
                    "each input broadcast, over [row][column][input channel] slabs of a group"
                )
                + f" ({_dispatch.ISA}, {8 * itemsize}-bit)"
            )
            if kernels.DWCONV_PAIR_TILES and out_channels_per_group > vector_lanes:
                reasons.append(
                    "pair tiles: two vectors of a group's output channels at a time, each input broadcast once"
                )
    tile = f"twin 2x{lanes}x{columns}" if twin else f"{vector_lanes}x{columns}"
    return Choice("dwconv", 0, False, 0, False, n_threads, tuple(reasons or ()), False, tile)


def choose(
    x_shape,
    weight_shape,
    out_shape,
    stride,
    pad_before,
    dilation,
    groups,
    itemsize,
    nchw,
    n_threads,
    why=False,
    accumulate=False,
):
    """Choice for input x_shape (N, C_in, H, W), weight_shape (C_out, C_in/groups, KH, KW) and out_shape.

    stride, pad_before (top, left) and dilation are pairs; itemsize 4 (float32) or 8 (float64); nchw says
    input and output are C-contiguous; n_threads is the caller's resolved thread count. why: also say, in
    Choice.reasons, which rule decided what (explain(); this runs on every call, so only then). accumulate:
    the call adds into its output (a 3-D fallback), which only the direct and loops families do.
    """
    kernels = _dispatch.kernels
    reasons = [] if why else None
    kernel_size = tuple(weight_shape[2:])
    out_channels_per_group = weight_shape[0] // groups
    macs = math.prod(out_shape) * math.prod(weight_shape[1:])
    if n_threads > 1 and macs < SERIAL_BELOW_MACS:
        n_threads = 1
        if why:
            reasons.append(
                f"serial: {macs} multiply-adds < {SERIAL_BELOW_MACS}, a thread team costs more than it saves"
            )
    if FORCE_FAMILY == "loops":
        return Choice("loops", 0, False, 0, False, n_threads, ("loops: forced",) if why else ())
    if not accumulate and FORCE_FAMILY in (None, "dwconv"):
        dwconv = _dwconv_choice(
            kernels,
            x_shape,
            weight_shape,
            out_shape,
            stride,
            dilation,
            groups,
            itemsize,
            n_threads,
            reasons,
            FORCE_FAMILY == "dwconv",
        )
        if dwconv is not None:
            return dwconv
    if not accumulate and FORCE_FAMILY in (None, "winograd"):
        winograd = _winograd_choice(
            kernels, weight_shape, out_shape, stride, dilation, groups, itemsize, nchw, n_threads, reasons
        )
        if winograd is not None:
            return winograd
    forced_gemm = (FORCE_FAMILY or "").startswith("gemm")
    pointwise = kernel_size == (1, 1) and tuple(stride) == (1, 1) and tuple(pad_before) == (0, 0) and nchw
    # the gemm tiles overwrite their output: calls that add into it stay on the direct family
    if not accumulate and pointwise and FORCE_FAMILY in (None, "gemm:pointwise", "gemm:wide"):
        pixels = out_shape[2] * out_shape[3]
        small_ok = (
            out_shape[0] == 1
            or _pointwise_tail(kernels, out_shape, itemsize)
            or (kernels.ISA != "avx512" and math.prod(weight_shape) * itemsize <= POINTWISE_MAX_WEIGHT_BYTES)
        )
        min_pixels = POINTWISE_MIN_PIXELS_SMALL if small_ok else POINTWISE_MIN_PIXELS
        if FORCE_FAMILY or pixels >= min_pixels:
            if why:
                reasons.append(
                    "gemm: forced pointwise tiles"
                    if FORCE_FAMILY
                    else f"gemm: 1x1 at stride 1 on NCHW maps of {pixels} pixels (>= {min_pixels} at batch "
                    f"{out_shape[0]} with {math.prod(weight_shape) * itemsize} bytes of weights, {kernels.ISA})"
                )
            wide, mr, nr = _pointwise_tile(kernels, weight_shape, out_shape, itemsize, n_threads, reasons, groups)
            if why:
                reasons.append(
                    f"pointwise tiles of {mr} output channels x {nr} pixels per image, input rows read in place, "
                    f"output rows stored whole ({_dispatch.ISA}, {8 * itemsize}-bit)"
                )
            return Choice(
                "gemm", 0, False, 0, True, n_threads, tuple(reasons or ()), False, f"pointwise {mr}x{nr}", wide=wide
            )
    if not accumulate and nchw and not pointwise and FORCE_FAMILY in (None, "gemm:lowered", "gemm:wide"):
        lowered = _lowered_choice(
            kernels, weight_shape, out_shape, stride, pad_before, dilation, groups, itemsize, n_threads, reasons
        )
        if lowered is not None:
            return lowered
    if not accumulate and (FORCE_FAMILY is None or forced_gemm):
        gemm_why = "forced" if forced_gemm else _gemm_reason(weight_shape, out_shape, groups, kernels.ISA)
        if gemm_why:
            return _gemm_choice(kernels, weight_shape, out_shape, itemsize, n_threads, gemm_why, reasons, forced_gemm)
    acc_rows = kernels.DIRECT_ACC_ROWS
    oc_block = _oc_block(out_channels_per_group, kernels.DIRECT_OC_BLOCKS)
    tile_cols = kernels.DIRECT_TILE_COLS[itemsize]
    scratch = kernels.direct_tile_scratch_bytes(
        weight_shape[1], kernel_size, tuple(stride), tuple(dilation), oc_block, itemsize
    )
    if scratch > kernels.DIRECT_SCRATCH_LIMIT:
        if why:
            reasons.append(
                f"loops: one {oc_block}-channel tile's packed input would take {scratch} bytes "
                f"(> {kernels.DIRECT_SCRATCH_LIMIT}), as only huge dilations do"
            )
        return Choice("loops", 0, False, 0, False, n_threads, tuple(reasons or ()))
    # Flat tiles pay a slower store but never leave a tile half-empty at a row's end; measured, that wins
    # only where the tile is one channel deep (depthwise), whose few taps per output make stores count.
    flat = oc_block == 1 and tuple(stride) == (1, 1)
    pointwise_rows = pointwise
    if why:
        reasons.append(
            f"direct: {oc_block} of {out_channels_per_group} output channels per group in a tile, "
            f"{acc_rows // oc_block} rows x {tile_cols} columns ({_dispatch.ISA}, {8 * itemsize}-bit)"
        )
        if flat:
            reasons.append("flat: one channel deep at stride 1, so tiles run over the flattened outputs of a block")
        if pointwise_rows:
            reasons.append("pointwise: each image as one long row, so tiles never straddle a short row")
    return Choice("direct", oc_block, flat, tile_cols, pointwise_rows, n_threads, tuple(reasons or ()))


def conv2d(
    x,
    weight,
    bias,
    out,
    stride,
    pad_before,
    dilation,
    groups,
    n_threads,
    accumulate=False,
    weight_cache=None,
    choices=None,
):
    """Run a checked 2-D convolution into out by the chosen kernel; the only caller of the forward kernels.

    x (N, C_in, H, W) any strides, weight C-contiguous, bias (C_out,) or (0,), out (N, C_out, H_out, W_out)
    any strides, all one dtype; stride, pad_before (top, left), dilation pairs of ints. accumulate: add the
    result to out instead of overwriting it. weight_cache: a module's PackedWeights, so that the gemm family
    (and the dwconv family) packs its weights once rather than per call. choices: a dict the
    caller keeps for calls of these same shapes, dtype, geometry and groups (a module's plan), remembering
    choose() by what else it reads.
    """
    nchw = x.flags.c_contiguous and out.flags.c_contiguous
    remembered = (nchw, n_threads, accumulate, FORCE_FAMILY, _dispatch.ISA)
    choice = choices.get(remembered) if choices is not None else None
    if choice is None:
        choice = choose(
            x.shape,
            weight.shape,
            out.shape,
            stride,
            pad_before,
            dilation,
            groups,
            x.dtype.itemsize,
            nchw,
            n_threads,
            accumulate=accumulate,
        )
        if choices is not None:
            choices[remembered] = choice
    kernels = _dispatch.kernels
    stride, pad_before, dilation = tuple(stride), tuple(pad_before), tuple(dilation)
    if choice.family == "loops":
        # the loops read and write C-contiguous arrays only
        target = out if out.flags.c_contiguous else np.ascontiguousarray(out)
        kernels.conv2d_loops(
            np.ascontiguousarray(x),
            weight,
            bias,
            target,
            stride,
            pad_before,
            dilation,
            groups,
            accumulate,
            choice.n_threads,
        )
        if target is not out:
            out[...] = target
        return choice
    if choice.family == "winograd":
        transformed = None
        if weight_cache is not None:
            transformed = weight_cache.panels(kernels, weight, 1, choice.n_threads, "winograd")
        kernels.conv2d_winograd(x, weight, bias, out, pad_before, choice.n_threads, transformed, choice.wide)
        return choice
    if choice.lowered:
        kernels.conv2d_lowered(
            x, weight, bias, out, stride, pad_before, dilation, groups, choice.n_threads, None, choice.wide
        )
        return choice
    if choice.family == "gemm" and choice.pointwise_rows:
        packed = None
        if (
            weight_cache is not None
            and not choice.wide
            and out.shape[0] * out.shape[2] * out.shape[3] >= POINTWISE_MIN_PIXELS_PACKED
        ):
            packed = weight_cache.panels(kernels, weight, groups, choice.n_threads, "pointwise")
        kernels.conv2d_pointwise(x, weight, bias, out, groups, choice.n_threads, packed, choice.wide)
        return choice
    if choice.family == "gemm":
        packed = None
        if weight_cache is not None and choice.pack_weights:
            packed = weight_cache.panels(kernels, weight, groups, choice.n_threads)
        kernels.conv2d_gemm(
            x, weight, bias, out, stride, pad_before, dilation, groups, choice.n_threads, choice.pack_weights, packed
        )
        return choice
    if choice.family == "dwconv":
        packed = None
        # kept packed from MIN_CACHED_WEIGHTS weights (depthwise too: packing 768 7x7 filters took 8.5 us of a
        # 60 us call, serially before its threads start; kept, 768x7x7 1.05x faster on one thread and 1.45x
        # on two, 1152x7x7 with 5x5 1.06x / 1.3x)
        if weight_cache is not None:
            packed = weight_cache.panels(kernels, weight, groups, choice.n_threads, "dwconv")
        kernels.conv2d_dwconv(x, weight, bias, out, stride, pad_before, dilation, groups, choice.n_threads, packed)
        return choice
    if choice.pointwise_rows:
        x = x.reshape(x.shape[0], x.shape[1], 1, -1)
        out = out.reshape(out.shape[0], out.shape[1], 1, -1)
    kernels.conv2d_direct(
        x,
        weight,
        bias,
        out,
        stride,
        pad_before,
        dilation,
        groups,
        choice.oc_block,
        choice.flat,
        accumulate,
        choice.n_threads,
    )
    return choice


def _as_2d(x_shape, weight_shape, out_shape):
    """A 3-D call's shapes as the 2-D tiles see them: every (image, output plane) an image of the batch,
    every (input channel, depth tap) an input channel."""
    n, c_out, depth_out = out_shape[:3]
    return (
        tuple(x_shape[:2]) + tuple(x_shape[3:]),
        (c_out, weight_shape[1] * weight_shape[2]) + tuple(weight_shape[3:]),
        (n * depth_out, c_out) + tuple(out_shape[3:]),
    )


def convolution(x, weight, bias, out, stride, pad_before, dilation, groups, n_threads, weight_cache=None, choices=None):
    """A checked 2-D or 3-D convolution into out (the arrays' ranks say which), as conv2d's arguments.

    A 3-D convolution runs the 2-D tiles with each depth tap as an input channel of its own
    (conv3d_direct). Where even one tile's input would not fit in scratch (huge dilations), it runs as
    2-D loops over depth planes instead: for each kernel depth tap, the output planes that read an input
    plane through it, an image's planes as one batch, added into out. choices: as conv2d's, for 2-D calls.
    """
    if x.ndim == 4:
        return conv2d(
            x,
            weight,
            bias,
            out,
            stride,
            pad_before,
            dilation,
            groups,
            n_threads,
            weight_cache=weight_cache,
            choices=choices,
        )
    n, depth_out = out.shape[0], out.shape[2]
    choice = choose(
        *_as_2d(x.shape, weight.shape, out.shape),
        stride[1:],
        pad_before[1:],
        dilation[1:],
        groups,
        x.dtype.itemsize,
        False,
        n_threads,
        accumulate=True,  # 3-D calls run the direct family (conv3d_direct) or its accumulating fallback
    )
    if choice.family == "direct":
        _dispatch.kernels.conv3d_direct(
            x,
            weight,
            bias,
            out,
            tuple(stride),
            tuple(pad_before),
            tuple(dilation),
            groups,
            choice.oc_block,
            choice.flat,
            False,
            choice.n_threads,
        )
        return choice
    if bias.size:
        out[...] = bias.reshape(1, -1, 1, 1, 1)
    else:
        out[...] = 0
    s = stride[0]
    no_bias = bias[:0]
    for kd in range(weight.shape[2]):
        first, last, start = _geometry.depth_tap_planes(kd, x.shape[2], depth_out, s, pad_before[0], dilation[0])
        if first >= last:
            continue
        tap = np.ascontiguousarray(weight[:, :, kd])
        for image in range(n):
            planes = x[image, :, start : start + (last - first - 1) * s + 1 : s].transpose(1, 0, 2, 3)
            conv2d(
                planes,
                tap,
                no_bias,
                out[image, :, first:last].transpose(1, 0, 2, 3),
                stride[1:],
                pad_before[1:],
                dilation[1:],
                groups,
                n_threads,
                accumulate=True,
            )
    return choice


def explain(
    input_shape: Shape,
    weight_shape: Shape,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    dtype: npt.DTypeLike = "float32",
    n_threads: SupportsIndex | None = None,
) -> str:
    """Which kernel a convolution of these shapes takes on this machine, and why (no compute).

    Parameters
    ----------
    input_shape : (N, C_in, *spatial) ; weight_shape : (C_out, C_in // groups, *kernel_size)
    stride, padding, dilation : int or tuple (integer padding, both sides; 'same' / 'valid' too)
    groups : int ; dtype : float32 or float64 ; n_threads : as for ``gconv.conv2d``

    Returns
    -------
    str
        One line for the choice, then one per rule that decided it.
    """
    from ._checks import int_tuple
    from ._threads import resolve_n_threads

    n_spatial = len(weight_shape) - 2
    kernel_size = int_tuple(tuple(weight_shape[2:]), "weight_shape", "explain")
    strides = int_tuple(stride, "stride", "explain", n_spatial)
    dilations = int_tuple(dilation, "dilation", "explain", n_spatial)
    if padding == "same":
        pads = _geometry.same_padding(kernel_size, dilations)
    elif padding == "valid":
        pads = ((0, 0),) * n_spatial
    else:
        pads = tuple((p, p) for p in int_tuple(padding, "padding", "explain", n_spatial))
    geometry = _geometry.Geometry(kernel_size, strides, pads, dilations)
    out_shape = (input_shape[0], weight_shape[0]) + geometry.output_shape(input_shape[2:])
    lifted = geometry.lifted()
    lift = (1,) * max(0, _geometry.KERNEL_RANK - n_spatial)
    x_shape = tuple(input_shape[:2]) + lift + tuple(input_shape[2:])
    w_shape = tuple(weight_shape[:2]) + lift + kernel_size
    o_shape = tuple(out_shape[:2]) + lift + tuple(out_shape[2:])
    strides, pad_before, dilations = lifted.stride, lifted.pad_before, lifted.dilation
    if n_spatial == 3:
        x_shape, w_shape, o_shape = _as_2d(x_shape, w_shape, o_shape)
        strides, pad_before, dilations = strides[1:], pad_before[1:], dilations[1:]
    choice = choose(
        x_shape,
        w_shape,
        o_shape,
        strides,
        pad_before,
        dilations,
        groups,
        np.dtype(dtype).itemsize,
        n_spatial < 3,
        resolve_n_threads(n_threads),
        why=True,
        accumulate=n_spatial == 3,  # as convolution() asks for 3-D calls
    )
    if n_spatial == 3:
        choice = choice._replace(
            reasons=choice.reasons
            + (
                "3-D: the 2-D tiles with each depth tap as an input channel (conv3d_direct)"
                if choice.family == "direct"
                else "3-D: 2-D loops over depth planes, added up",
            )
        )
    head = (
        f"conv{n_spatial}d {tuple(input_shape)} * {tuple(weight_shape)} -> {out_shape}: {choice.family} family"
        + (f", tile {choice.tile}" if choice.tile else "")
        + f", {choice.n_threads} thread(s), {_dispatch.ISA}"
    )
    return "\n".join([head] + [f"  - {reason}" for reason in choice.reasons])
