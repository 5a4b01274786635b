"""Regression and binary losses: mse_loss, l1_loss, binary_cross_entropy_with_logits.

Each loss is elementwise, then reduced; the backward of the reduction divides ``dout`` by the
number of elements for "mean" (PyTorch: a mean over zero elements is NaN, and so it is here).

    mse:  l = (x - y)**2                 dx = 2 (x - y) dl,   dy = -dx
    l1:   l = |x - y|                    dx = sign(x - y) dl  (sign(0) = 0, as PyTorch), dy = -dx
    bce:  l = w [(1 - y) x + (1 + (p - 1) y) softplus(-x)]      (p = pos_weight, w = weight)
          dx = w [(1 - y) - (1 + (p - 1) y) sigmoid(-x)] dl

softplus(-x) = log(1 + exp(-x)) is computed as max(-x, 0) + log1p(exp(-|x|)), which never overflows.
Derivation: docs/derivations/regression.md.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy

from minires.autograd import Function
from minires.backend import Array, broadcast_shapes, get_array_module
from minires.functional.arithmetic import check_same_dtype, sum_to_shape

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op} reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_pair(op: str, x: Array, y: Array) -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{op} expects a floating-point input, got {x.dtype}; convert it with x.to('float32')")
    check_same_dtype(op, x, y)
    try:
        broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(f"{op} got input of shape {tuple(x.shape)} and target of shape {tuple(y.shape)}, "
                         f"which do not broadcast; give the target the input's shape") from None


def reduce_loss(loss: Array, reduction: str) -> Array:
    """"none": the elementwise losses; "sum": their sum; "mean": sum / count (NaN when count is 0)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    xp = get_array_module(loss)
    return total / loss.dtype.type(loss.size) if loss.size else xp.asarray(xp.nan, dtype=loss.dtype)


def expand_dout(dout: Array, shape: tuple, reduction: str) -> Array:
    """The backward of ``reduce_loss``: dL/d(elementwise loss), of ``shape``."""
    xp = get_array_module(dout)
    if reduction == "none":
        return dout
    count = 1
    for n in shape:
        count *= n
    scale = 1 if reduction == "sum" or count == 0 else count
    return xp.broadcast_to(dout / dout.dtype.type(scale), shape)


class MSELoss(Function):
    """l = (x - y)**2, reduced;  dx = 2 (x - y) dl,  dy = -2 (x - y) dl.

    Derivation: docs/derivations/regression.md.
    """

    def __init__(self, reduction: str = "mean"):
        _check_reduction("mse_loss", reduction)
        self.reduction = reduction

    def forward(self, x: Array, y: Array) -> Array:
        _check_pair("mse_loss", x, y)
        with numpy.errstate(invalid="ignore", over="ignore"):   # inf - inf is NaN, as in PyTorch
            self.diff = x - y
            self.x_shape, self.y_shape = x.shape, y.shape
            return reduce_loss(self.diff * self.diff, self.reduction)

    def backward(self, dout: Array) -> tuple:
        dl = expand_dout(dout, self.diff.shape, self.reduction)
        d = 2 * self.diff * dl
        dx = sum_to_shape(d, self.x_shape) if self.needs_input_grad[0] else None
        dy = sum_to_shape(-d, self.y_shape) if self.needs_input_grad[1] else None
        return dx, dy


def mse_loss(input: Any, target: Any, reduction: str = "mean"):  # noqa: A002 - PyTorch's name
    return MSELoss.apply(input, target, reduction=reduction)


class L1Loss(Function):
    """l = |x - y|, reduced;  dx = sign(x - y) dl (sign(0) = 0, as PyTorch),  dy = -dx.

    Derivation: docs/derivations/regression.md.
    """

    def __init__(self, reduction: str = "mean"):
        _check_reduction("l1_loss", reduction)
        self.reduction = reduction

    def forward(self, x: Array, y: Array) -> Array:
        _check_pair("l1_loss", x, y)
        with numpy.errstate(invalid="ignore"):                  # inf - inf is NaN, as in PyTorch
            diff = x - y
        self.sign = (diff > 0).astype(diff.dtype) - (diff < 0).astype(diff.dtype)   # NaN: 0, as PyTorch
        self.x_shape, self.y_shape = x.shape, y.shape
        return reduce_loss(get_array_module(x).abs(diff), self.reduction)

    def backward(self, dout: Array) -> tuple:
        d = self.sign * expand_dout(dout, self.sign.shape, self.reduction)
        dx = sum_to_shape(d, self.x_shape) if self.needs_input_grad[0] else None
        dy = sum_to_shape(-d, self.y_shape) if self.needs_input_grad[1] else None
        return dx, dy


def l1_loss(input: Any, target: Any, reduction: str = "mean"):  # noqa: A002 - PyTorch's name
    return L1Loss.apply(input, target, reduction=reduction)


class BCEWithLogits(Function):
    """l = w [(1 - y) x + c softplus(-x)] with c = 1 + (p - 1) y, reduced (w = weight, p = pos_weight);
    dx = w [(1 - y) - c sigmoid(-x)] dl,  dy = w [-x + (p - 1) softplus(-x)] dl,
    dw = [(1 - y) x + c softplus(-x)] dl,  dp = w y softplus(-x) dl.

    Derivation: docs/derivations/regression.md.
    """

    def __init__(self, reduction: str = "mean"):
        _check_reduction("binary_cross_entropy_with_logits", reduction)
        self.reduction = reduction

    def forward(self, x: Array, y: Array, weight: Optional[Array], pos_weight: Optional[Array]) -> Array:
        op = "binary_cross_entropy_with_logits"
        _check_pair(op, x, y)
        if tuple(x.shape) != tuple(y.shape):
            raise ValueError(f"{op} expects target of the input's shape {tuple(x.shape)}, got {tuple(y.shape)}")
        for name, extra in (("weight", weight), ("pos_weight", pos_weight)):
            if extra is not None:
                check_same_dtype(f"{op} ({name})", x, extra)
                if broadcast_shapes(x.shape, extra.shape) != tuple(x.shape):
                    raise ValueError(f"{op} got {name} of shape {tuple(extra.shape)}, which does not broadcast "
                                     f"to the input's shape {tuple(x.shape)}")
        xp = get_array_module(x)
        self.x, self.y, self.weight, self.pos_weight = x, y, weight, pos_weight
        with numpy.errstate(invalid="ignore"):                  # 0 * inf is NaN, as in PyTorch
            self.softplus = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))  # log(1 + exp(-x)), stable
            coef = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
            loss = (1 - y) * x + coef * self.softplus
            self.unweighted = loss
            return reduce_loss(loss if weight is None else weight * loss, self.reduction)

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        x, y, w, p = self.x, self.y, self.weight, self.pos_weight
        dl = expand_dout(dout, self.unweighted.shape, self.reduction)
        wdl = dl if w is None else w * dl
        dx = dy = dw = dp = None
        with numpy.errstate(invalid="ignore"):                  # 0 * inf is NaN, as in PyTorch
            if self.needs_input_grad[0]:
                e = xp.exp(-xp.abs(x))
                sig_neg = xp.where(x >= 0, e / (1 + e), 1 / (1 + e))             # sigmoid(-x), stable
                coef = 1 if p is None else 1 + (p - 1) * y
                dx = sum_to_shape(((1 - y) - coef * sig_neg) * wdl, x.shape)
            if self.needs_input_grad[1]:
                dy_local = -x if p is None else -x + (p - 1) * self.softplus
                dy = sum_to_shape(dy_local * wdl, y.shape)
            if w is not None and self.needs_input_grad[2]:
                dw = sum_to_shape(self.unweighted * dl, w.shape)
            if p is not None and self.needs_input_grad[3]:
                dp = sum_to_shape(y * self.softplus * wdl, p.shape)
        return dx, dy, dw, dp


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,  # noqa: A002
                                     reduction: str = "mean", pos_weight: Any = None):
    """PyTorch's signature (``size_average``/``reduce`` are long deprecated there and left out)."""
    return BCEWithLogits.apply(input, target, weight, pos_weight, reduction=reduction)
