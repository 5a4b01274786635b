"""``Tensor``: an array, its gradient, and the Function that made it.

A Tensor wraps exactly one array (``.data``: NumPy on the CPU, CuPy on a GPU). After a
backward pass, a leaf that requires a gradient holds ``dL/d(itself)`` in ``.grad``, a Tensor
of the same shape, dtype and device (as in PyTorch: ``p.grad.zero_()``, ``p.grad.norm()``).
Each tensor also counts its in-place changes (``._version``), so a backward pass never reads
an array that was changed after the forward saved it.

This file holds the state; ``tensor_methods.py`` holds the operators and methods, each of
which calls an operation in ``minires.functional``: no math lives here.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Union

import numpy

from minires import backend
from minires.autograd import Function, VersionCounter, run_backward
from minires.backend import Array, DeviceLike
from minires.tensor_methods import TensorMethods

DTypeLike = Any  # numpy.float32, "float32", numpy.dtype(...), ...

_FLOAT_DEFAULT = numpy.float32


def _is_floating(dtype: Any) -> bool:
    return numpy.issubdtype(numpy.dtype(dtype), numpy.floating)


class Tensor(TensorMethods):
    """An n-dimensional array that can remember how it was computed.

    Build one with ``minires.tensor(data, requires_grad=...)``; operations on tensors return
    new tensors. ``requires_grad=True`` marks a leaf whose gradient you want.
    """

    __array_priority__ = 1000  # `ndarray * Tensor` calls Tensor.__rmul__, not NumPy's loop
    __hash__ = object.__hash__  # `==` is elementwise, so hash by identity (as PyTorch does)

    def __init__(self, data: Array, requires_grad: bool = False, _creator: Optional[Function] = None):
        if not backend.is_array(data):
            raise TypeError(
                f"Tensor wraps a NumPy or CuPy array, got {type(data).__name__}; "
                f"use minires.tensor(data) to build one from Python values")
        self._data: Array = data
        self._grad: Optional[Tensor] = None
        self._version_counter = VersionCounter()
        self._creator = _creator
        self._requires_grad = False
        self.requires_grad = requires_grad

    # ----------------------------------------------------------------- what it is
    @property
    def data(self) -> Array:
        """The array itself (NumPy or CuPy). Changing it directly bypasses the version counter."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if isinstance(value, Tensor):          # `p.data = other` and `p.data -= lr * p.grad`, as in PyTorch
            value = value.data
        if not backend.is_array(value):
            raise TypeError(f"a tensor's data must be a NumPy or CuPy array, got {type(value).__name__}")
        self._data = value

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> numpy.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: Optional[int] = None) -> Union[tuple, int]:
        """The shape, or the length of one dimension (PyTorch's ``x.size(1)``)."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not _is_floating(self.dtype):
            raise TypeError(
                f"only floating-point tensors can require gradients, this one is {self.dtype}; "
                f"convert it first, e.g. x.to('float32')")
        if not value and self._creator is not None:
            raise RuntimeError(
                "requires_grad can only be turned off on a leaf tensor; use .detach() to get a "
                "tensor that is cut from the graph")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        """True for a tensor made by the user, not by an operation that is being recorded."""
        return self._creator is None

    @property
    def grad_fn(self) -> Optional[Function]:
        """The Function that made this tensor (None for a leaf)."""
        return self._creator

    # ------------------------------------------------------------------- gradient
    def backward(self, gradient: Any = None, retain_graph: bool = False, *, grad: Any = None) -> None:
        """Compute ``dself/dleaf`` for every leaf that requires a gradient, into ``leaf.grad``.

        ``gradient`` is the upstream gradient ``dL/dself`` (PyTorch's name; ``grad=`` is the same
        argument under its older minires name). It may be left out only when ``self`` holds a
        single value (a loss), where it is 1. A Tensor or array must be on ``self``'s device; a
        Python number or list is placed there, as in PyTorch.
        """
        if grad is not None:
            if gradient is not None:
                raise TypeError("backward() got both gradient= and grad=; they are the same argument, "
                                "pass only gradient=")
            gradient = grad
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation "
                "had requires_grad=True (or it ran under no_grad())")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-value tensor (a loss), this one "
                    f"has shape {self.shape}; pass gradient= of that shape, or reduce it first, e.g. "
                    f"y.sum().backward()")
            dout = backend.get_array_module(self.data).ones_like(self.data)
        else:
            dout = gradient.data if isinstance(gradient, Tensor) else gradient
            if not backend.is_array(dout):
                dout = backend.to_device(numpy.asarray(dout, dtype=self.dtype), self.device)
            if backend.device_of(dout) != self.device:
                raise RuntimeError(f"backward() got a gradient on {backend.device_of(dout)} "
                                   f"for a tensor on {self.device}; move it first")
            if tuple(dout.shape) != self.shape:
                raise RuntimeError(f"backward() got a gradient of shape {tuple(dout.shape)} for a "
                                   f"tensor of shape {self.shape}")
            dout = dout.astype(self.dtype, copy=False)
        if self._creator is None:
            self._accumulate_grad(dout)
            return
        run_backward(self, dout, retain_graph=retain_graph)

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this intermediate result too (leaves always keep theirs)."""
        if self._creator is not None:
            self._creator._retained_output = self
        return self

    @property
    def grad(self) -> Optional["Tensor"]:
        """dL/d(self) after a backward pass: a Tensor of self's shape, dtype and device, or None."""
        return self._grad

    @grad.setter
    def grad(self, value: Optional["Tensor"]) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"a gradient must be a Tensor or None, got {type(value).__name__}; "
                                f"wrap an array with minires.tensor(array)")
            if value.shape != self.shape or value.dtype != self.dtype or value.device != self.device:
                raise RuntimeError(
                    f"a gradient must match its tensor: expected shape {self.shape}, {self.dtype}, on "
                    f"{self.device}; got shape {value.shape}, {value.dtype}, on {value.device}")
        self._grad = value

    @property
    def _version(self) -> int:
        """How many times this tensor's array was changed in place (PyTorch's ``x._version``)."""
        return self._version_counter.value

    def _accumulate_grad(self, dself: Array) -> None:
        """Add ``dself`` into ``.grad`` (in place, as PyTorch does, so its version counts it)."""
        if self._grad is None:                       # a copy: the caller's array may be reused
            self._grad = Tensor(backend.get_array_module(self.data).array(dself, dtype=self.dtype))
        else:
            self._grad.data += dself
            self._grad._version_counter.bump()

    def detach(self) -> "Tensor":
        """The same values (shared memory, shared version counter), cut from the graph."""
        out = Tensor(self.data)
        self._version_counter.share(self, out)
        return out

    def clone(self) -> "Tensor":
        """A copy of the values in new memory; gradients flow back through it."""
        return F.clone(self)

    # ----------------------------------------------------------- moving the data
    def numpy(self) -> numpy.ndarray:
        """The values as a NumPy array (copied from the GPU when needed; shared on the CPU)."""
        return backend.to_numpy(self.data)

    def item(self) -> Union[float, int, bool]:
        if self.data.size != 1:
            raise ValueError(f"item() needs a single-value tensor, this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> numpy.ndarray:
        """Let NumPy read a CPU tensor (``numpy.asarray(x)``), as PyTorch does; a GPU tensor must be
        copied explicitly, with ``.numpy()`` or ``.cpu()``, so no copy is ever silent."""
        if self.device != "cpu":
            raise TypeError(f"can't convert a {self.device} tensor to a NumPy array implicitly; "
                            f"use x.numpy() or x.cpu() to copy it to the host first")
        if copy:
            return numpy.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def to(self, target: Union[DeviceLike, DTypeLike]) -> "Tensor":
        """This tensor on another device (``"cuda"``, ``"cpu"``) or with another dtype (``"float64"``).

        A tensor already there is returned as it is. Otherwise the copy stays in the graph, as
        in PyTorch: its gradient flows back to ``self`` in ``self``'s dtype and on its device.
        """
        if isinstance(target, str) and (target.startswith("cuda") or target == "cpu"):
            if backend.normalize_device(target) == self.device:
                return self
            return F.to(self, device=target)
        try:
            dtype = numpy.dtype(target)
        except TypeError:
            raise TypeError(f"to() expects a device ('cpu', 'cuda', 'cuda:N') or a dtype "
                            f"('float32', 'float64', ...), got {target!r}") from None
        if dtype == self.dtype:
            return self
        if self.requires_grad and not _is_floating(dtype):
            return Tensor(self.data.astype(dtype))                  # integers carry no gradient
        return F.to(self, dtype=dtype)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, index: Optional[int] = None) -> "Tensor":
        return self.to("cuda" if index is None else f"cuda:{index}")

    def float(self) -> "Tensor":
        return self.to(numpy.float32)

    def double(self) -> "Tensor":
        return self.to(numpy.float64)

    def __repr__(self) -> str:
        body = numpy.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extras = [] if self.dtype == _FLOAT_DEFAULT or self.dtype == numpy.int64 else [f"dtype={self.dtype}"]
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._creator is not None:
            extras.append(f"grad_fn=<{type(self._creator).__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                               f"use .any() or .all()")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())


def as_tensor_like(x: Any, anchor: Tensor) -> Tensor:
    """``x`` as a Tensor for an operation with ``anchor``: a Python number takes anchor's dtype
    and device; an array is wrapped as it is (a device mismatch is then reported by the caller)."""
    if isinstance(x, Tensor):
        return x
    if backend.is_array(x):
        return Tensor(x)
    if isinstance(x, numbers.Number):
        if isinstance(x, float) and not _is_floating(anchor.dtype):
            raise TypeError(f"an operation mixes the {anchor.dtype} tensor with the float {x}; "
                            f"convert the tensor first, e.g. x.to('float32')")
        xp = backend.get_array_module(anchor.data)
        with backend.device_context(anchor.data):
            return Tensor(xp.asarray(x, dtype=anchor.dtype))
    raise TypeError(f"expected a Tensor, an array or a number, got {type(x).__name__}")


def tensor(data: Any, requires_grad: bool = False, dtype: DTypeLike = None,
           device: DeviceLike = None) -> Tensor:
    """Build a tensor from Python values or an array (the data is always copied).

    Python floats become float32 (as in PyTorch), Python ints int64; a NumPy or CuPy array
    (or a NumPy scalar such as ``numpy.float64(1.5)``) keeps its dtype unless ``dtype`` is
    given. ``device`` defaults to the CPU for Python values and to the array's own device for
    an array.
    """
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_array(data):
        array = data.astype(dtype) if dtype is not None else data.copy()
        target = backend.device_of(array) if device is None else device
    else:
        array = numpy.array(data, dtype=dtype)
        if dtype is None and _is_floating(array.dtype) and not isinstance(data, numpy.generic):
            array = array.astype(_FLOAT_DEFAULT)
        if array.dtype == object:
            raise TypeError(f"cannot build a tensor from {type(data).__name__} holding mixed or ragged values")
        target = device
    return Tensor(backend.to_device(array, target), requires_grad=requires_grad)


# The one sanctioned loop in the dependency arrows: Tensor's operators call functional.
from minires import functional as F  # noqa: E402
