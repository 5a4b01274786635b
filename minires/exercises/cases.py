"""What one check of one exercise runs: a configuration, its inputs, and what the hints need.

A ``Config`` is one fixed configuration (shapes, hyper-parameters, seeded values); ``make()``
builds its ``Case``: the function to differentiate, which calls the public function of the
reference module (``minires.functional.conv.conv2d``, ...), so that while a task is graded, with
the student's Function class put in the module's place, that one operation is the student's and
everything around it is the reference's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy

import minires
from minires.functional.im2col import col2im
from minires.tensor import Tensor


@dataclass
class Case:
    """One configuration's function and inputs, with what the hints read.

    ``kink``: the values sit on a kink (ties, zeros), where finite differences are not defined;
    the student's gradient is compared with the reference rule exactly instead.
    ``masks``: boolean arrays shaped like input 0 ("overlap": covered by several windows; "tie":
    a maximum shared by several elements of a window; "zero": exactly 0).
    ``factors``: named constants that a wrong scale may equal, for the constant-ratio hint.
    ``channel_axes``: the axes summed over per channel (batch norm), for the mean-term hint.
    ``linear``: ``fn`` is linear in its one input, so ``adjoint_check`` can test the backward exactly.
    """
    fn: Callable[..., Tensor]
    inputs: List[object]
    names: Tuple[str, ...]
    kink: bool = False
    masks: Dict[str, numpy.ndarray] = field(default_factory=dict)
    factors: Dict[str, float] = field(default_factory=dict)
    channel_axes: Optional[Tuple[int, ...]] = None
    linear: bool = False


@dataclass(frozen=True)
class Config:
    """A fixed configuration: its label (what the grader prints), its features, and its case."""
    label: str
    features: FrozenSet[str]
    make: Callable[[], Case]


def leaf(array: numpy.ndarray) -> Tensor:
    """A float64 input that requires a gradient."""
    return minires.tensor(numpy.asarray(array, dtype=numpy.float64), requires_grad=True)


def normal(seed: int, *shape: int) -> numpy.ndarray:
    return numpy.random.default_rng(seed).standard_normal(shape)


def distinct(seed: int, *shape: int) -> numpy.ndarray:
    """Values at least 0.05 apart and away from 0: no ties, no zeros."""
    n = int(numpy.prod(shape))
    values = (numpy.random.default_rng(seed).permutation(n) - n / 2 + 0.5) * (4.0 / n)
    return values.reshape(shape)


def ties(seed: int, *shape: int) -> numpy.ndarray:
    """Small integers: most windows hold their maximum twice or more."""
    return numpy.random.default_rng(seed).integers(0, 3, size=shape).astype(numpy.float64)


def coverage(x_shape: Sequence[int], kernel: tuple, stride: tuple, padding: tuple, dilation: tuple,
             out_size: tuple) -> numpy.ndarray:
    """How many windows cover each input element: col2im of all-ones columns."""
    N, C = x_shape[:2]
    ones = numpy.ones((C,) + tuple(kernel) + (N,) + tuple(out_size))
    return col2im(ones, tuple(x_shape), kernel, stride, padding, dilation)


def tied_maxima(x: numpy.ndarray, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple,
                out_size: tuple) -> numpy.ndarray:
    """Elements that are the maximum of some window together with another element of it."""
    N, C, H, W = x.shape
    mask = numpy.zeros(x.shape, dtype=bool)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            rows = [i * stride[0] - padding[0] + u * dilation[0] for u in range(kernel[0])]
            cols = [j * stride[1] - padding[1] + v * dilation[1] for v in range(kernel[1])]
            rows, cols = [r for r in rows if 0 <= r < H], [c for c in cols if 0 <= c < W]
            window = x[:, :, rows][:, :, :, cols]                          # (N, C, r, c)
            top = window == window.max(axis=(2, 3), keepdims=True)
            shared = top & (top.sum(axis=(2, 3), keepdims=True) > 1)
            mask[numpy.ix_(range(N), range(C), rows, cols)] |= shared
    return mask


def shape_text(*arrays: object) -> str:
    return ", ".join(str(tuple(a.shape)) for a in arrays if a is not None)
