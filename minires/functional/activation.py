"""Activations: ReLU.

ReLU is not differentiable at 0; like PyTorch, minires takes the derivative there to be 0,
so the gradient passes only where the input was strictly positive.

Derivation: docs/derivations/relu.md.
"""
from __future__ import annotations

from typing import Any

from minires.autograd import Function
from minires.backend import Array, get_array_module


class ReLU(Function):
    """out = max(x, 0);  dx = dout where x > 0, else 0 (ReLU'(0) = 0).

    Derivation: docs/derivations/relu.md.
    """

    def forward(self, x: Array) -> Array:
        self.mask = x > 0                                  # strict: the kink at 0 gets no gradient
        return get_array_module(x).maximum(x, 0)

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION relu
        return (dout * self.mask,)
        # END SOLUTION


def relu(x: Any):
    return ReLU.apply(x)
