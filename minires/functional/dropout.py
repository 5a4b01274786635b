"""Dropout: zero each value with probability p while training, and scale the rest by 1 / (1 - p).

    out = x * mask / (1 - p)        mask_i ~ Bernoulli(1 - p), drawn from minires's generator
    dx  = dout * mask / (1 - p)

The scaling keeps the expected value of each output equal to its input, so evaluation (no
dropout) needs no correction. As in PyTorch, p = 1 zeroes everything (the scale is taken as 0)
and p = 0 or ``training=False`` returns the input unchanged. The mask is drawn on the CPU from
``minires.random.default_generator()`` (so ``manual_seed`` makes it reproducible on every
device) and then moved to the input's device.

Derivation: docs/derivations/dropout.md.
"""
from __future__ import annotations

from typing import Any

from minires import backend
from minires.autograd import Function
from minires.backend import Array


def _check_p(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p!r}")
    return float(p)


class Dropout(Function):
    """out = (x * mask) * scale;  dx = (dout * mask) * scale, with scale = 1 / (1 - p) (0 when p = 1).

    Derivation: docs/derivations/dropout.md.
    """

    def __init__(self, mask: Array, p: float):
        self.mask = mask                                     # bool, True where the value is kept
        self.scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)

    def forward(self, x: Array) -> Array:
        if tuple(self.mask.shape) != tuple(x.shape):
            raise ValueError(f"dropout mask of shape {tuple(self.mask.shape)} for x of shape {tuple(x.shape)}")
        return (x * self.mask) * x.dtype.type(self.scale)    # x * 0 keeps NaN, as PyTorch

    def backward(self, dout: Array) -> tuple:
        return ((dout * self.mask) * dout.dtype.type(self.scale),)


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False):  # noqa: A002
    """PyTorch's signature. ``inplace=True`` computes what ``False`` does: minires never
    overwrites an input that the backward pass may still need."""
    from minires.random import default_generator
    from minires.tensor import Tensor
    p = _check_p(p)
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout expects a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"dropout expects a floating-point tensor, got {input.dtype}; convert it with x.to('float32')")
    if not training or p == 0.0:
        return input
    keep = default_generator().random(tuple(input.shape)) >= p          # P(keep) = 1 - p
    return Dropout.apply(input, mask=backend.to_device(keep, input.device), p=p)
