"""Activations, regression losses, cat/stack/where and dropout by their definitions, in float64.

Each value comes from Python's ``math`` one element at a time, straight from the textbook
formula; PyTorch's conventions at the kinks (leaky_relu'(0) = slope, sign(0) = 0) are written
out where a derivative is given. Slow, obviously right, NumPy only.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike


def _elementwise(f, x: ArrayLike) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.array([f(float(v)) for v in x.ravel()], dtype=np.float64).reshape(x.shape)


def sigmoid(x: ArrayLike) -> np.ndarray:
    """1 / (1 + e^-x), written as e^x / (1 + e^x) for x < 0 so that e^-x cannot overflow."""
    return _elementwise(lambda v: 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)), x)


def tanh(x: ArrayLike) -> np.ndarray:
    return _elementwise(math.tanh, x)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    return _elementwise(lambda v: v if v > 0 else negative_slope * v, x)


def leaky_relu_derivative(x: ArrayLike, negative_slope: float = 0.01) -> np.ndarray:
    """1 for x > 0, else the slope: at 0 too (PyTorch's rule)."""
    return _elementwise(lambda v: 1.0 if v > 0 else negative_slope, x)


def abs_derivative(x: ArrayLike) -> np.ndarray:
    """sign(x) with sign(0) = 0 (PyTorch's rule)."""
    return _elementwise(lambda v: 1.0 if v > 0 else (-1.0 if v < 0 else 0.0), x)


def gelu(x: ArrayLike, approximate: str = "none") -> np.ndarray:
    """x * Phi(x) = x/2 (1 + erf(x / sqrt 2)); "tanh": x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "tanh":
        return _elementwise(lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))), x)
    return _elementwise(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))), x)


def softmax(x: ArrayLike, dim: int) -> np.ndarray:
    """exp(x_c) / sum_k exp(x_k) along ``dim``, one slice at a time (shifted by the slice's max)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), dim, -1)
    out = np.empty_like(x)
    for index in np.ndindex(*x.shape[:-1]):
        row = x[index]
        m = max(row)
        e = [math.exp(v - m) for v in row]
        out[index] = [v / sum(e) for v in e]
    return np.moveaxis(out, -1, dim)


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.asarray(math.fsum(loss.ravel()))
    return np.asarray(math.fsum(loss.ravel()) / loss.size if loss.size else math.nan)


def mse_loss(x: ArrayLike, y: ArrayLike, reduction: str = "mean") -> np.ndarray:
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return _reduce((x - y) ** 2, reduction)


def l1_loss(x: ArrayLike, y: ArrayLike, reduction: str = "mean") -> np.ndarray:
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return _reduce(np.abs(x - y), reduction)


def binary_cross_entropy_with_logits(x: ArrayLike, y: ArrayLike, weight: Optional[ArrayLike] = None,
                                     reduction: str = "mean", pos_weight: Optional[ArrayLike] = None) -> np.ndarray:
    """-w [p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], the definition, one element at a time."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.broadcast_to(np.asarray(1.0 if weight is None else weight, dtype=np.float64), x.shape)
    p = np.broadcast_to(np.asarray(1.0 if pos_weight is None else pos_weight, dtype=np.float64), x.shape)
    loss = np.empty(x.shape)
    for i in np.ndindex(*x.shape):
        s = float(sigmoid(x[i]))
        loss[i] = -w[i] * (p[i] * y[i] * math.log(s) + (1 - y[i]) * math.log(1 - s))
    return _reduce(loss, reduction)


def cat(arrays: Sequence[ArrayLike], dim: int = 0) -> np.ndarray:
    """Copy each input, element by element, to its place in the output."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    dim = dim % arrays[0].ndim
    shape = list(arrays[0].shape)
    shape[dim] = sum(a.shape[dim] for a in arrays)
    out = np.empty(shape)
    offset = 0
    for a in arrays:
        for index in np.ndindex(*a.shape):
            target = list(index)
            target[dim] += offset
            out[tuple(target)] = a[index]
        offset += a.shape[dim]
    return out


def stack(arrays: Sequence[ArrayLike], dim: int = 0) -> np.ndarray:
    """out[..., k, ...] = arrays[k][...]."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    dim = dim % (arrays[0].ndim + 1)
    out = np.empty(arrays[0].shape[:dim] + (len(arrays),) + arrays[0].shape[dim:])
    for k, a in enumerate(arrays):
        for index in np.ndindex(*a.shape):
            out[index[:dim] + (k,) + index[dim:]] = a[index]
    return out


def where(cond: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    cond, a, b = np.broadcast_arrays(np.asarray(cond), np.asarray(a, dtype=np.float64),
                                     np.asarray(b, dtype=np.float64))
    out = np.empty(cond.shape)
    for index in np.ndindex(*cond.shape):
        out[index] = a[index] if cond[index] else b[index]
    return out


def dropout(x: ArrayLike, keep: ArrayLike, p: float) -> np.ndarray:
    """x_i / (1 - p) where kept, 0 where dropped (0 everywhere when p = 1)."""
    x = np.asarray(x, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    return np.where(keep, x / (1 - p) if p < 1 else 0.0, 0.0)
