"""Combining tensors: cat, stack, where.

    cat:    out = [a_0 | a_1 | ...] along dim      da_k = the slice of dout that a_k filled
    stack:  out[..., k, ...] = a_k (a new axis)    da_k = dout[..., k, ...]
    where:  out = a where cond else b (broadcast)  da = dout where cond else 0, db = dout where not cond,
                                                   each summed back to its input's shape

All three only move values, so their backward passes only move gradients back.
Derivation: docs/derivations/combine.md.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy

from minires.autograd import Function
from minires.backend import Array, broadcast_shapes, get_array_module
from minires.functional.arithmetic import check_same_dtype, sum_to_shape


def _dim(op: str, dim: Any, ndim: int) -> int:
    """``dim`` as an axis in [0, ndim), or PyTorch's IndexError with the valid range."""
    if isinstance(dim, bool) or not isinstance(dim, (int, numpy.integer)):
        raise TypeError(f"{op} expects an integer dim, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], "
                         f"but got {dim})")
    return int(dim) % ndim


def _check_list(op: str, tensors: Any) -> list:
    if isinstance(tensors, (str, bytes)) or not isinstance(tensors, Sequence) or len(tensors) == 0:
        raise ValueError(f"{op} expects a non-empty list or tuple of tensors, got {tensors!r}; "
                         f"e.g. {op}([a, b], dim=0)")
    return list(tensors)


class Cat(Function):
    """out = the inputs joined along ``dim``;  da_k = dout[..., offset_k : offset_k + n_k, ...].

    Derivation: docs/derivations/combine.md.
    """

    def __init__(self, dim: int = 0):
        self.dim = dim

    def forward(self, *arrays: Array) -> Array:
        first = arrays[0]
        if first.ndim == 0:
            raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack, or give them "
                             "an axis with x.reshape(1)")
        axis = _dim("cat", self.dim, first.ndim)
        for k, a in enumerate(arrays[1:], start=1):
            check_same_dtype("cat", first, a)
            if a.ndim != first.ndim or any(n != m for i, (n, m) in enumerate(zip(a.shape, first.shape)) if i != axis):
                raise ValueError(f"cat: sizes of tensors must match except in dimension {axis}; tensor 0 has shape "
                                 f"{tuple(first.shape)}, tensor {k} has shape {tuple(a.shape)}")
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return get_array_module(first).concatenate(arrays, axis=axis)

    def backward(self, dout: Array) -> tuple:
        grads, start = [], 0
        for n in self.sizes:
            index = [slice(None)] * dout.ndim
            index[self.axis] = slice(start, start + n)           # the slice that input k filled
            grads.append(dout[tuple(index)])
            start += n
        return tuple(grads)


def cat(tensors: Sequence[Any], dim: int = 0):
    return Cat.apply(*_check_list("cat", tensors), dim=dim)


class Stack(Function):
    """out = the inputs stacked along a new axis ``dim``;  da_k = dout taken at index k of that axis.

    Derivation: docs/derivations/combine.md.
    """

    def __init__(self, dim: int = 0):
        self.dim = dim

    def forward(self, *arrays: Array) -> Array:
        first = arrays[0]
        axis = _dim("stack", self.dim, first.ndim + 1)        # the new axis may go after the last one
        for k, a in enumerate(arrays[1:], start=1):
            check_same_dtype("stack", first, a)
            if a.shape != first.shape:
                raise ValueError(f"stack expects each tensor to be equal size, but got {list(first.shape)} at "
                                 f"entry 0 and {list(a.shape)} at entry {k}")
        self.axis, self.count = axis, len(arrays)
        return get_array_module(first).stack(arrays, axis=axis)

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        return tuple(xp.take(dout, k, axis=self.axis) for k in range(self.count))


def stack(tensors: Sequence[Any], dim: int = 0):
    return Stack.apply(*_check_list("stack", tensors), dim=dim)


class Where(Function):
    """out = a where cond else b (all three broadcast);  da = dout where cond else 0,
    db = dout where not cond else 0, each summed back to its input's shape; cond gets none.

    Derivation: docs/derivations/combine.md.
    """

    def forward(self, cond: Array, a: Array, b: Array) -> Array:
        if cond.dtype != numpy.bool_:
            raise TypeError(f"where expects a boolean condition, got dtype {cond.dtype}; "
                            f"compare first, e.g. where(x > 0, x, y)")
        check_same_dtype("where", a, b)
        try:
            broadcast_shapes(cond.shape, a.shape, b.shape)
        except ValueError:
            raise ValueError(f"where got condition, input and other of shapes {tuple(cond.shape)}, "
                             f"{tuple(a.shape)}, {tuple(b.shape)}, which do not broadcast together") from None
        self.cond, self.a_shape, self.b_shape = cond, a.shape, b.shape
        return get_array_module(a).where(cond, a, b)

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        zero = xp.zeros((), dtype=dout.dtype)
        da = sum_to_shape(xp.where(self.cond, dout, zero), self.a_shape) if self.needs_input_grad[1] else None
        db = sum_to_shape(xp.where(self.cond, zero, dout), self.b_shape) if self.needs_input_grad[2] else None
        return None, da, db


def where(condition: Any, input: Any, other: Any):  # noqa: A002 - PyTorch's names
    """``input`` where ``condition`` holds, else ``other``; either of the two may be a number."""
    from minires.tensor import Tensor, as_tensor_like
    anchor = next((t for t in (input, other) if isinstance(t, Tensor)), None)
    if anchor is None:
        raise TypeError(f"where expects input or other to be a Tensor, got {type(input).__name__} and "
                        f"{type(other).__name__}; e.g. where(x > 0, x, 0.0)")
    if not isinstance(condition, Tensor):
        condition = Tensor(get_array_module(anchor.data).asarray(condition))
    return Where.apply(condition, as_tensor_like(input, anchor), as_tensor_like(other, anchor))
