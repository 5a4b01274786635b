"""Tensors filled with constants: zeros, ones, full, arange, and their ``*_like`` forms."""
from __future__ import annotations

from typing import Any

import numpy

from minires import backend
from minires.backend import DeviceLike
from minires.tensor import Tensor, _FLOAT_DEFAULT


def _shape(size: tuple) -> tuple:
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


def full(size: Any, value: float, dtype: Any = None, device: DeviceLike = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of the given shape filled with ``value`` (float32 unless ``dtype`` says otherwise)."""
    array = numpy.full(_shape((size,)) if isinstance(size, int) else tuple(size), value,
                       dtype=_FLOAT_DEFAULT if dtype is None else dtype)
    return Tensor(backend.to_device(array, device), requires_grad=requires_grad)


def zeros(*size: Any, dtype: Any = None, device: DeviceLike = None, requires_grad: bool = False) -> Tensor:
    return full(_shape(size), 0, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: DeviceLike = None, requires_grad: bool = False) -> Tensor:
    return full(_shape(size), 1, dtype, device, requires_grad)


def zeros_like(x: Tensor, requires_grad: bool = False) -> Tensor:
    return full(x.shape, 0, x.dtype, x.device, requires_grad)


def ones_like(x: Tensor, requires_grad: bool = False) -> Tensor:
    return full(x.shape, 1, x.dtype, x.device, requires_grad)


def arange(start: float, end: Any = None, step: float = 1, dtype: Any = None,
           device: DeviceLike = None) -> Tensor:
    """``arange(5)`` -> 0..4 (int64 for integer arguments, float32 otherwise)."""
    values = numpy.arange(start, end, step) if end is not None else numpy.arange(start)
    if dtype is not None:
        values = values.astype(dtype)
    elif numpy.issubdtype(values.dtype, numpy.floating):
        values = values.astype(_FLOAT_DEFAULT)
    return Tensor(backend.to_device(values, device))
