"""Hypothesis strategies that always give valid configurations: no example is thrown away.

Geometry is drawn *constructively*: draw the output size and the remainder the stride leaves
over, then derive the input size from them, instead of drawing an input size and rejecting
the ones that do not fit. Values come from a seeded NumPy generator (Hypothesis draws the
seed), so they are cheap to draw and shrink well; the ``kink_margin`` helpers keep values
about 100 finite-difference steps away from the kinks where a derivative jumps (ReLU at 0,
two equal values in a max-pool window).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy
from hypothesis import strategies as st

Pair = Tuple[int, int]

#: Finite differences use steps of about 1e-6; 100 steps away is safe.
KINK_MARGIN = 1e-4


@dataclass(frozen=True)
class ConvConfig:
    """One valid conv2d geometry; ``out_shape`` follows from the rest."""
    batch: int
    in_channels: int
    out_channels: int
    in_size: Pair
    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int
    out_size: Pair

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.in_channels) + self.in_size

    @property
    def weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    @property
    def out_shape(self) -> tuple:
        return (self.batch, self.out_channels) + self.out_size

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


@dataclass(frozen=True)
class PoolConfig:
    """One valid pooling geometry (max or average); ``out_size`` follows from the rest."""
    batch: int
    channels: int
    in_size: Pair
    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    ceil_mode: bool
    out_size: Pair

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.channels) + self.in_size


@st.composite
def _axis(draw, max_kernel: int, max_stride: int, max_dilation: int, max_out: int,
          pool: bool) -> tuple:
    """(in, kernel, stride, padding, dilation, floor_out) along one axis, built from the output."""
    k = draw(st.integers(1, max_kernel))
    s = draw(st.integers(1, max_stride))
    d = draw(st.integers(1, max_dilation))
    p = draw(st.integers(0, k // 2 if pool else k))            # pooling: padding <= kernel / 2
    r = draw(st.integers(0, s - 1))                              # what the stride leaves over
    base = d * (k - 1) + 1 - 2 * p + r                           # in = (out - 1) * s + base
    # in >= 1; a pooling input also needs in >= d, or a dilated window can fall between the
    # input's pixels entirely into the padding (max pooling would output -inf there)
    in_min = d if pool else 1
    out_min = 1 if base >= in_min else 1 + -(-(in_min - base) // s)   # smallest output giving in >= in_min
    out = draw(st.integers(out_min, out_min + max_out - 1))
    return (out - 1) * s + base, k, s, p, d, out


@st.composite
def conv2d_configs(draw, max_batch: int = 2, max_group_channels: int = 3, max_groups: int = 2,
                   max_kernel: int = 3, max_stride: int = 2, max_dilation: int = 2,
                   max_out: int = 3) -> ConvConfig:
    """Valid conv2d geometries: groups, rectangular kernels, strides, padding and dilation."""
    groups = draw(st.integers(1, max_groups))
    cin = groups * draw(st.integers(1, max_group_channels))
    cout = groups * draw(st.integers(1, max_group_channels))
    h = draw(_axis(max_kernel, max_stride, max_dilation, max_out, pool=False))
    w = draw(_axis(max_kernel, max_stride, max_dilation, max_out, pool=False))
    return ConvConfig(batch=draw(st.integers(1, max_batch)), in_channels=cin, out_channels=cout,
                      in_size=(h[0], w[0]), kernel_size=(h[1], w[1]), stride=(h[2], w[2]),
                      padding=(h[3], w[3]), dilation=(h[4], w[4]), groups=groups, out_size=(h[5], w[5]))


@st.composite
def pool2d_configs(draw, max_batch: int = 2, max_channels: int = 3, max_kernel: int = 3,
                   max_stride: int = 3, max_dilation: int = 2, max_out: int = 3,
                   dilation: bool = True, ceil_mode: Optional[bool] = None) -> PoolConfig:
    """Valid pooling geometries (padding at most half the kernel, ceil_mode included).

    ``out_size`` is the output with ``ceil_mode`` applied by PyTorch's rule.
    """
    from minires.functional.im2col import pool_output_size

    h = draw(_axis(max_kernel, max_stride, max_dilation if dilation else 1, max_out, pool=True))
    w = draw(_axis(max_kernel, max_stride, max_dilation if dilation else 1, max_out, pool=True))
    ceil = draw(st.booleans()) if ceil_mode is None else ceil_mode
    out = tuple(pool_output_size(a[0], a[1], a[2], a[3], a[4], ceil) for a in (h, w))
    return PoolConfig(batch=draw(st.integers(1, max_batch)), channels=draw(st.integers(1, max_channels)),
                      in_size=(h[0], w[0]), kernel_size=(h[1], w[1]), stride=(h[2], w[2]),
                      padding=(h[3], w[3]), dilation=(h[4], w[4]), ceil_mode=ceil, out_size=out)


def seeds() -> st.SearchStrategy:
    """Seeds for a NumPy generator: Hypothesis shrinks these, NumPy makes the values."""
    return st.integers(0, 2**32 - 1)


def normal_array(shape: tuple, seed: int, dtype=numpy.float64, scale: float = 1.0) -> numpy.ndarray:
    """Standard normal values of ``shape`` from a seeded generator."""
    return (scale * numpy.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def away_from_zero(shape: tuple, seed: int, margin: float = KINK_MARGIN, dtype=numpy.float64) -> numpy.ndarray:
    """Random values with |v| >= margin: safe for ReLU's kink at 0."""
    rng = numpy.random.default_rng(seed)
    magnitude = margin + rng.exponential(1.0, size=shape)
    return (numpy.where(rng.random(shape) < 0.5, -1.0, 1.0) * magnitude).astype(dtype)


def distinct_values(shape: tuple, seed: int, margin: float = KINK_MARGIN, dtype=numpy.float64) -> numpy.ndarray:
    """Values whose pairwise gaps are all at least ``margin`` (no ties: safe for max pooling)."""
    rng = numpy.random.default_rng(seed)
    n = int(numpy.prod(shape))
    spacing = max(margin, 4.0 / max(n, 1))                      # spread over about [-2, 2]
    values = (rng.permutation(n) - n / 2) * spacing
    return values.reshape(shape).astype(dtype)


@st.composite
def arrays(draw, shape: tuple, dtype=numpy.float64, kind: str = "normal") -> numpy.ndarray:
    """An array of ``shape``: kind "normal", "away_from_zero" (ReLU) or "distinct" (max pool)."""
    makers = {"normal": normal_array, "away_from_zero": away_from_zero, "distinct": distinct_values}
    if kind not in makers:
        raise ValueError(f"kind must be one of {sorted(makers)}, got {kind!r}")
    return makers[kind](tuple(shape), draw(seeds()), dtype=dtype)
