"""Activations: ReLU, leaky ReLU, abs, sigmoid, tanh, GELU, softmax.

ReLU is not differentiable at 0; like PyTorch, minires takes the derivative there to be 0,
so the gradient passes only where the input was strictly positive. The other kinks follow
PyTorch too: leaky_relu'(0) = negative_slope (the test is ``x > 0``), abs'(0) = sign(0) = 0.

Derivation: docs/derivations/relu.md; docs/derivations/activations.md for the others.
"""
from __future__ import annotations

import math
from typing import Any

import numpy

from minires.autograd import Function
from minires.backend import Array, erf, get_array_module
from minires.parallel import flat_blocks, for_each_chunk


class ReLU(Function):
    """out = max(x, 0);  dx = dout where x > 0, else 0 (ReLU'(0) = 0).

    Derivation: docs/derivations/relu.md.
    """

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        keep = self.backward_possible                  # False under no_grad: no backward will read it
        self.mask = xp.empty(x.shape, dtype=bool) if keep else None   # (x.shape) x > 0, filled below
        out = xp.empty(x.shape, dtype=x.dtype)
        x_flat, out_flat = xp.ascontiguousarray(x).reshape(-1), out.reshape(-1)
        mask_flat = self.mask.reshape(-1) if keep else None

        def forward_block(k: int, start: int, stop: int) -> None:   # elements start..stop-1, flattened
            xs = x_flat[start:stop]
            if keep:                                       # strict: the kink at 0 gets no gradient
                xp.greater(xs, 0, out=mask_flat[start:stop])
            xp.maximum(xs, 0, out=out_flat[start:stop])    # NaN stays NaN, as in PyTorch

        for_each_chunk(forward_block, flat_blocks(x.size, x.itemsize, xp), xp)   # large x: blocks on every core
        return out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION relu
        return (dout * self.mask,)
        # END SOLUTION


def relu(x: Any):
    return ReLU.apply(x)


class LeakyReLU(Function):
    """out = x if x > 0 else slope * x;  dx = dout if x > 0 else slope * dout (so at 0: slope, as PyTorch).

    Derivation: docs/derivations/activations.md.
    """

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, x: Array) -> Array:
        self.mask = x > 0                                  # NaN and 0 take the slope, as in PyTorch
        return get_array_module(x).where(self.mask, x, x * self.negative_slope)

    def backward(self, dout: Array) -> tuple:
        return (get_array_module(dout).where(self.mask, dout, dout * self.negative_slope),)


def leaky_relu(x: Any, negative_slope: float = 0.01):
    return LeakyReLU.apply(x, negative_slope=negative_slope)


class Abs(Function):
    """out = |x|;  dx = dout * sign(x), with sign(0) = 0 (and 0 at NaN), as PyTorch.

    Derivation: docs/derivations/activations.md.
    """

    def forward(self, x: Array) -> Array:
        self.sign = (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)   # NaN compares False: 0
        return get_array_module(x).abs(x)

    def backward(self, dout: Array) -> tuple:
        return (dout * self.sign,)


def abs(x: Any):  # noqa: A001 - PyTorch's name
    return Abs.apply(x)


class Sigmoid(Function):
    """out = 1 / (1 + exp(-x));  dx = dout * (1 - out) * out.

    Computed from e = exp(-|x|) <= 1, so nothing overflows: 1 / (1 + e) for x >= 0, e / (1 + e) below.
    Derivation: docs/derivations/activations.md.
    """

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        e = xp.exp(-xp.abs(x))
        self.out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, dout: Array) -> tuple:
        return (dout * (1 - self.out) * self.out,)


def sigmoid(x: Any):
    return Sigmoid.apply(x)


class Tanh(Function):
    """out = tanh(x);  dx = dout * (1 - out**2).

    Derivation: docs/derivations/activations.md.
    """

    def forward(self, x: Array) -> Array:
        self.out = get_array_module(x).tanh(x)
        return self.out

    def backward(self, dout: Array) -> tuple:
        return (dout * (1 - self.out * self.out),)


def tanh(x: Any):
    return Tanh.apply(x)


SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
KAPPA = 0.044715


class GELU(Function):
    """out = x * Phi(x), Phi the standard normal CDF;  dx = dout * (Phi(x) + x * phi(x)).

    approximate="tanh": out = x/2 * (1 + t), t = tanh(sqrt(2/pi) * (x + 0.044715 x**3));
    dx = dout * ((1 + t)/2 + x/2 * (1 - t**2) * sqrt(2/pi) * (1 + 3 * 0.044715 x**2)).
    Derivation: docs/derivations/activations.md.
    """

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        self.x = x
        if self.approximate == "tanh":
            self.t = xp.tanh(SQRT_2_OVER_PI * (x + KAPPA * x * x * x))
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
        return x * self.cdf

    def backward(self, dout: Array) -> tuple:
        xp, x = get_array_module(dout), self.x
        with numpy.errstate(invalid="ignore"):             # x = +-inf: inf * 0 is NaN, as in PyTorch
            if self.approximate == "tanh":
                inner = SQRT_2_OVER_PI * (1 + 3 * KAPPA * x * x)
                return (dout * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * inner),)
            pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
            return (dout * (self.cdf + x * pdf),)


def gelu(x: Any, approximate: str = "none"):
    return GELU.apply(x, approximate=approximate)


class Softmax(Function):
    """out = exp(x - m) / sum(exp(x - m)) along ``dim`` (m the max);  dx = out * (dout - sum(dout * out)).

    Derivation: docs/derivations/activations.md.
    """

    def __init__(self, dim: int):
        if isinstance(dim, bool) or not isinstance(dim, (int, numpy.integer)):
            raise TypeError(f"softmax expects an integer dim, got {dim!r}; e.g. softmax(x, dim=1) for (N, C) logits")
        self.dim = int(dim)

    def forward(self, x: Array) -> Array:
        if x.dtype.kind != "f":
            raise TypeError(f"softmax expects a floating-point x, got {x.dtype}; convert it with x.to('float32')")
        bound = max(x.ndim, 1)
        if not -bound <= self.dim < bound:
            raise IndexError(f"softmax got dim={self.dim} for x of shape {tuple(x.shape)}; "
                             f"dim must lie in [{-bound}, {bound - 1}]")
        xp, axis = get_array_module(x), self.dim % bound if x.ndim else None
        if x.size == 0:
            self.out = x.copy()
            return self.out
        with numpy.errstate(invalid="ignore"):             # a +inf makes inf - inf: NaN, as in PyTorch
            e = xp.exp(x - x.max(axis=axis, keepdims=True))
            self.out = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        return self.out

    def backward(self, dout: Array) -> tuple:
        if dout.size == 0:
            return (dout.copy(),)
        return (self.out * (dout - (dout * self.out).sum(axis=self.axis, keepdims=True)),)


def softmax(x: Any, dim: int):
    return Softmax.apply(x, dim=dim)
