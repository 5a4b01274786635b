"""Reductions: sum, mean, max over some dimensions (or all of them).

The backward of a reduction spreads ``dout`` back over the axes it removed: ``sum`` copies
it to every element, ``mean`` also divides by the count, ``max`` sends it to the element
that won (the first one, when several tie).

Derivation: docs/derivations/reduction.md.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple, Optional

from minires.autograd import Function
from minires.backend import Array, get_array_module


def wrap_dim(dim: Any, ndim: int) -> int:
    """A dim in [-ndim, ndim) as a non-negative axis, checked as PyTorch checks it (a 0-d tensor
    takes dim 0 or -1): out of range is an IndexError that gives the valid range."""
    from minires.functional.im2col import is_int

    bound = ndim if ndim > 0 else 1                      # (this module's `max` shadows the builtin)
    if not is_int(dim):
        raise TypeError(f"a dim must be an int, got {dim!r}")
    if not -bound <= dim < bound:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-bound}, {bound - 1}], "
                         f"but got {dim})")
    return int(dim) % bound


def normalize_dims(dim: Any, ndim: int) -> tuple:
    """``None`` -> all axes; an int or a sequence -> a sorted tuple of non-negative axes."""
    if dim is None or ndim == 0:                        # a 0-d tensor has no axis to reduce
        if dim is not None:
            normalize_dims(dim, 1)                      # still checked: dim 0 or -1 only
        return tuple(range(ndim))
    dims = [wrap_dim(d, ndim) for d in ((dim,) if not isinstance(dim, (tuple, list)) else dim)]
    for d in dims:
        if dims.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims {tuple(dim)}")
    return tuple(sorted(dims))


def _expand_back(dout: Array, shape: tuple, dims: tuple, keepdim: bool) -> Array:
    """Put the reduced axes back as size-1 axes so ``dout`` broadcasts over the input."""
    if not keepdim:
        dout = dout.reshape([1 if i in dims else n for i, n in enumerate(shape)])
    return dout


class Sum(Function):
    """out = sum over dims of x;  dx = dout broadcast back over those dims.

    Derivation: docs/derivations/reduction.md.
    """

    def __init__(self, dim: Any = None, keepdim: bool = False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x: Array) -> Array:
        self.shape = x.shape
        self.dims = normalize_dims(self.dim, x.ndim)
        return x.sum(axis=self.dims, keepdims=self.keepdim)

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        dout = _expand_back(dout, self.shape, self.dims, self.keepdim)
        return (xp.broadcast_to(dout, self.shape).copy(),)


class Mean(Function):
    """out = sum over dims of x / n;  dx = dout / n broadcast back (n = elements per output).

    Derivation: docs/derivations/reduction.md.
    """

    def __init__(self, dim: Any = None, keepdim: bool = False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x: Array) -> Array:
        self.shape = x.shape
        self.dims = normalize_dims(self.dim, x.ndim)
        return x.mean(axis=self.dims, keepdims=self.keepdim)

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        count = 1
        for d in self.dims:
            count *= self.shape[d]
        dout = _expand_back(dout, self.shape, self.dims, self.keepdim)
        return (xp.broadcast_to(dout / count, self.shape).copy(),)


class Max(Function):
    """out = max over one dim (or all);  dx = dout at the first maximum, 0 elsewhere.

    Derivation: docs/derivations/reduction.md.
    """

    def __init__(self, dim: Optional[int] = None, keepdim: bool = False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        self.shape = x.shape
        if self.dim is not None:
            normalize_dims(self.dim, x.ndim)                   # the same clear error as sum and mean
            if x.ndim == 0:                                    # a 0-d tensor: its one value is the max
                self.dim = None
        flat = x.reshape(-1) if self.dim is None else xp.moveaxis(x, self.dim, -1)
        self.argmax = flat.argmax(axis=-1)                     # first maximum, as NumPy/CuPy pick it
        out = xp.take_along_axis(flat, self.argmax[..., None], axis=-1)[..., 0]
        if self.keepdim:
            out = out.reshape([1] * x.ndim) if self.dim is None else xp.expand_dims(out, self.dim)
        return out

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        if self.dim is None:
            dx = xp.zeros(math.prod(self.shape), dtype=dout.dtype)
            dx[self.argmax] = dout.reshape(())
            return (dx.reshape(self.shape),)
        dout = dout if not self.keepdim else xp.squeeze(dout, axis=self.dim)
        moved = list(self.shape)
        moved.append(moved.pop(self.dim % len(self.shape)))
        dx = xp.zeros(moved, dtype=dout.dtype)                 # (..., n) with the reduced axis last
        rows = dx.reshape(-1, moved[-1])                       # (R, n): one row per reduced slice, a view
        rows[xp.arange(rows.shape[0]), self.argmax.reshape(-1)] = dout.reshape(-1)   # each row's winner
        return (xp.moveaxis(dx, -1, self.dim),)


def sum(x: Any, dim: Any = None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    return Sum.apply(x, dim=dim, keepdim=keepdim)


def mean(x: Any, dim: Any = None, keepdim: bool = False):
    return Mean.apply(x, dim=dim, keepdim=keepdim)


class MaxResult(NamedTuple):
    """``max(x, dim)`` returns the values and where they are, as ``torch.max`` does."""
    values: Any
    indices: Any


def max(x: Any, dim: Optional[int] = None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """The largest element of ``x``; with ``dim``, ``(values, indices)`` along that dimension."""
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, numbers.Integral)):
        raise TypeError(f"max takes one dim (an int), as PyTorch's does, got {dim!r}; reduce one "
                        f"dimension at a time, e.g. x.max(2).values.max(0).values")
    values = Max.apply(x, dim=dim, keepdim=keepdim)
    if dim is None:
        return values
    return MaxResult(values, x.argmax(dim=dim, keepdim=keepdim))
