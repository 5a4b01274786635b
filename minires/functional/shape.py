"""Shape operations: reshape, flatten, transpose, permute, indexing.

None of them changes a value; each only moves values around. So each backward moves
``dout`` back to where the values came from: the inverse reshape or permutation, or, for
indexing, a scatter that adds where one element was picked more than once.

Derivation: docs/derivations/shape.md.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

from minires import backend
from minires.autograd import Function
from minires.backend import Array, get_array_module
from minires.functional.reduction import wrap_dim


class Reshape(Function):
    """out = x viewed with a new shape;  dx = dout reshaped back.

    Derivation: docs/derivations/shape.md.
    """

    def __init__(self, shape: Sequence[int]):
        self.new_shape = tuple(shape)

    def forward(self, x: Array) -> Array:
        self.shape = x.shape
        try:
            return x.reshape(self.new_shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {tuple(x.shape)} ({x.size} elements) "
                             f"into {self.new_shape}") from None

    def backward(self, dout: Array) -> tuple:
        return (dout.reshape(self.shape),)


class Permute(Function):
    """out = x with its axes reordered by ``dims``;  dx = dout with the inverse order.

    Derivation: docs/derivations/shape.md.
    """

    def __init__(self, dims: Sequence[int]):
        self.dims = tuple(dims)

    def forward(self, x: Array) -> Array:
        if len(self.dims) != x.ndim:
            raise ValueError(f"permute needs each of the {x.ndim} dimensions once, got {self.dims}")
        if sorted(wrap_dim(d, x.ndim) for d in self.dims) != list(range(x.ndim)):
            raise ValueError(f"permute needs each of the {x.ndim} dimensions once, got {self.dims}")
        return get_array_module(x).transpose(x, self.dims)

    def backward(self, dout: Array) -> tuple:
        dims = [d % dout.ndim for d in self.dims]
        inverse = [dims.index(i) for i in range(dout.ndim)]          # out axis j came from dims[j]
        return (get_array_module(dout).transpose(dout, inverse),)


class GetItem(Function):
    """out = x[index];  dx = zeros with dout added at index (repeated indices accumulate).

    Derivation: docs/derivations/shape.md.
    """

    def __init__(self, index: Any):
        self.index = index

    def forward(self, x: Array) -> Array:
        self.shape, self.dtype = x.shape, x.dtype
        index = self.index if isinstance(self.index, tuple) else (self.index,)
        if all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in index):
            return x[index + (Ellipsis,)]        # x[0] of a vector: a 0-d view of x, as in PyTorch, not a copy
        return x[self.index]

    def backward(self, dout: Array) -> tuple:
        dx = get_array_module(dout).zeros(self.shape, dtype=self.dtype)
        index = self.index if isinstance(self.index, tuple) else (self.index,)
        if all(isinstance(i, (slice, numbers.Integral)) or i is Ellipsis for i in index):
            dx[self.index] = dout                # basic indexing picks each element once: a plain copy
        else:                                    # integer arrays may repeat an index: those add up
            backend.scatter_add(dx, self.index, dout)
        return (dx,)


class To(Function):
    """out = x converted to another dtype and/or device;  dx = dout converted back.

    Derivation: docs/derivations/shape.md.
    """

    def __init__(self, dtype: Any = None, device: Any = None):
        self.dtype, self.device = dtype, device

    def forward(self, x: Array) -> Array:
        self.x_dtype, self.x_device = x.dtype, backend.device_of(x)
        out = x if self.dtype is None else x.astype(self.dtype)
        return out if self.device is None else backend.to_device(out, self.device)

    def backward(self, dout: Array) -> tuple:
        return (backend.to_device(dout, self.x_device).astype(self.x_dtype, copy=False),)


def to(x: Any, dtype: Any = None, device: Any = None):
    """``x`` with another dtype and/or on another device; the gradient flows back unchanged."""
    return To.apply(x, dtype=dtype, device=device)


def reshape(x: Any, shape: Sequence[int]):
    return Reshape.apply(x, shape=shape)


def flatten(x: Any, start_dim: int = 0, end_dim: int = -1):
    """Merge dimensions start_dim..end_dim into one (``flatten(x, 1)``: (N, C, H, W) -> (N, C*H*W))."""
    shape = x.shape
    start, end = wrap_dim(start_dim, len(shape)), wrap_dim(end_dim, len(shape))
    if len(shape) == 0:
        return reshape(x, (1,))
    if start > end:
        raise ValueError(f"flatten needs start_dim <= end_dim, got {start_dim} and {end_dim}")
    merged = 1
    for n in shape[start:end + 1]:
        merged *= n
    return reshape(x, tuple(shape[:start]) + (merged,) + tuple(shape[end + 1:]))


def transpose(x: Any, dim0: int, dim1: int):
    dims = list(range(len(x.shape)))
    dim0, dim1 = wrap_dim(dim0, len(dims)), wrap_dim(dim1, len(dims))
    if not dims:                                         # a 0-d tensor: transpose(0, -1) is itself
        return Permute.apply(x, dims=())
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute.apply(x, dims=dims)


def permute(x: Any, dims: Sequence[int]):
    return Permute.apply(x, dims=dims)


def getitem(x: Any, index: Any):
    """``x[index]`` for basic and integer-array indexing (tensors in the index are unwrapped)."""
    return GetItem.apply(x, index=_unwrap_index(index))


def _unwrap_index(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    data = getattr(index, "data", None)
    return data if backend.is_array(data) else index
