"""``Tensor``: an array, its gradient, and the Function that made it.

A Tensor wraps exactly one array (``.data``: NumPy on the CPU, CuPy on a GPU). After a
backward pass, a leaf that requires a gradient holds ``dL/d(itself)`` in ``.grad``, an array
of the same kind, shape and dtype. Operators (``+``, ``@``, ``.sum()``, ``x[i]``) call the
operations in ``minires.functional``; this file holds no math of its own.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Union

import numpy

from minires import backend
from minires.autograd import Function, run_backward
from minires.backend import Array, DeviceLike

DTypeLike = Any  # numpy.float32, "float32", numpy.dtype(...), ...

_FLOAT_DEFAULT = numpy.float32


def _is_floating(dtype: Any) -> bool:
    return numpy.issubdtype(numpy.dtype(dtype), numpy.floating)


class Tensor:
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
        self.data: Array = data
        self.grad: Optional[Array] = None
        self._creator = _creator
        self._requires_grad = False
        self.requires_grad = requires_grad

    # ----------------------------------------------------------------- what it is
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
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Compute ``dself/dleaf`` for every leaf that requires a gradient, into ``leaf.grad``.

        ``grad`` is the upstream gradient ``dL/dself``; it may be left out only when
        ``self`` holds a single value (a loss), where it is 1.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation "
                "had requires_grad=True (or it ran under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-value tensor (a loss), this one "
                    f"has shape {self.shape}; pass grad= of that shape, or reduce it first, e.g. "
                    f"y.sum().backward()")
            dout = backend.get_array_module(self.data).ones_like(self.data)
        else:
            dout = grad.data if isinstance(grad, Tensor) else grad
            if not backend.is_array(dout):
                dout = numpy.asarray(dout, dtype=self.dtype)
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

    def _accumulate_grad(self, dself: Array) -> None:
        dself = dself.astype(self.dtype, copy=False)
        self.grad = dself.copy() if self.grad is None else self.grad + dself

    def detach(self) -> "Tensor":
        """The same values (shared memory), cut from the graph."""
        return Tensor(self.data)

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

    # ----------------------------------------------- operators -> minires.functional
    def __add__(self, other: Any) -> "Tensor":
        return F.add(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        return F.add(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        return F.sub(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        return F.sub(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        return F.mul(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        return F.mul(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        return F.div(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return F.div(other, self)

    def __neg__(self) -> "Tensor":
        return F.neg(self)

    def __pow__(self, exponent: Any) -> "Tensor":
        return F.pow(self, exponent)

    def __rpow__(self, base: Any) -> "Tensor":
        return F.pow(base, self)

    def __matmul__(self, other: Any) -> "Tensor":
        return F.matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return F.matmul(other, self)

    def __getitem__(self, index: Any) -> "Tensor":
        return F.getitem(self, index)

    # comparisons: no gradient, a boolean tensor
    def __eq__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return _compare(self, other, "equal")

    def __ne__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return _compare(self, other, "not_equal")

    def __lt__(self, other: Any) -> "Tensor":
        return _compare(self, other, "less")

    def __le__(self, other: Any) -> "Tensor":
        return _compare(self, other, "less_equal")

    def __gt__(self, other: Any) -> "Tensor":
        return _compare(self, other, "greater")

    def __ge__(self, other: Any) -> "Tensor":
        return _compare(self, other, "greater_equal")

    # ------------------------------------------------------------------- methods
    def exp(self) -> "Tensor":
        return F.exp(self)

    def log(self) -> "Tensor":
        return F.log(self)

    def sqrt(self) -> "Tensor":
        return F.sqrt(self)

    def relu(self) -> "Tensor":
        return F.relu(self)

    def sum(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return F.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return F.mean(self, dim, keepdim)

    def max(self, dim: Optional[int] = None, keepdim: bool = False) -> Any:
        """The largest value, or with ``dim`` the pair ``(values, indices)`` as in PyTorch."""
        return F.max(self, dim, keepdim)

    def argmax(self, dim: Optional[int] = None, keepdim: bool = False) -> "Tensor":
        xp = backend.get_array_module(self.data)
        return Tensor(xp.asarray(self.data.argmax(axis=dim, keepdims=keepdim)))

    def reshape(self, *shape: Any) -> "Tensor":
        return F.reshape(self, _shape_arg(shape))

    def view(self, *shape: Any) -> "Tensor":
        return F.reshape(self, _shape_arg(shape))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        return F.flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        return F.transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> "Tensor":
        return F.permute(self, _shape_arg(dims))

    @property
    def T(self) -> "Tensor":
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def any(self) -> bool:
        return bool(self.data.any())

    def all(self) -> bool:
        return bool(self.data.all())


def _shape_arg(shape: Sequence[Any]) -> tuple:
    """Accept both ``x.reshape(2, 3)`` and ``x.reshape((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _compare(a: Tensor, b: Any, name: str) -> Tensor:
    b = as_tensor_like(b, a)
    if a.device != b.device:
        raise RuntimeError(f"comparison of tensors on different devices: {a.device} and {b.device}")
    xp = backend.get_array_module(a.data)
    return Tensor(getattr(xp, name)(a.data, b.data))


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
