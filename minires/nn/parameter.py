"""``Parameter``: a tensor that a Module learns.

A Parameter is an ordinary Tensor with one difference: assigning it to an attribute of a
Module (``self.weight = Parameter(...)``) registers it, so ``module.parameters()`` finds it
and ``module.state_dict()`` saves it. It requires a gradient unless told otherwise.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy

from minires import backend
from minires.backend import Array, DeviceLike
from minires.tensor import Tensor

DTypeLike = Any  # numpy.float32, "float32", numpy.dtype(...), ...


class Parameter(Tensor):
    """A learnable tensor: ``Parameter(data, requires_grad=True)``.

    ``data`` is a Tensor (its array is shared, not copied) or a NumPy/CuPy array.
    """

    def __init__(self, data: Any, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        if not backend.is_array(data):
            raise TypeError(f"Parameter wraps a Tensor or a NumPy/CuPy array, got {type(data).__name__}; "
                            f"build it with e.g. Parameter(minires.zeros(3))")
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def float_dtype(dtype: Optional[DTypeLike]) -> numpy.dtype:
    """The dtype a layer's parameters get: float32 unless a floating dtype is asked for."""
    resolved = numpy.dtype(numpy.float32 if dtype is None else dtype)
    if not numpy.issubdtype(resolved, numpy.floating):
        raise TypeError(f"layers hold floating-point parameters; got dtype={dtype!r}, "
                        f"use minires.float32 or minires.float64")
    return resolved


def empty(shape: tuple, dtype: Optional[DTypeLike] = None, device: DeviceLike = None) -> Array:
    """An uninitialised array of ``shape`` on ``device``, for a layer to fill with ``nn.init``."""
    return backend.to_device(numpy.empty(shape, dtype=float_dtype(dtype)), device)
