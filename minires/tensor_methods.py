"""What a Tensor can do: its operators, its methods, and its in-place updates.

``Tensor`` (in ``tensor.py``) holds the state: the array, the gradient, the graph link and
the version counter. This mixin holds the behaviour, and holds no math of its own: every
operator and method is one call into ``minires.functional`` (the one sanctioned loop in the
dependency arrows), and every in-place method is one call of ``_update`` below.

In-place updates (``x += y``, ``x.add_(y)``, ``p.zero_()``) write into the tensor's own array,
so every view of it sees the change, and bump its version counter. They follow PyTorch's rules:

1. Nothing recorded (inside ``no_grad()``, or no tensor involved requires a gradient): the
   array changes in place with one NumPy/CuPy call that writes into it. An optimizer step
   takes this path.
2. A leaf that requires a gradient, while recording: refused. Its gradient would otherwise be
   the gradient of a value that no longer exists.
3. Anything else while recording (``out += identity`` in a residual block): recorded like the
   out-of-place form, computed from a snapshot of the old values (so the new node's backward
   never reads overwritten ones); the result is written into the array, and the tensor now
   stands for the new node of the graph, exactly as ``out = out + identity`` would.

A Function that saved the old array (``exp`` keeps its output) sees the version change and
refuses its backward (see ``autograd``), instead of returning a wrong gradient. A tensor that
shares its memory with another tensor of the graph (a view, or the base of a live view) cannot
change in place while recording: minires does not follow views through the graph, so it refuses
rather than let the other tensor's gradient go wrong.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from minires import backend
from minires.autograd import is_grad_enabled
from minires.backend import Array

if TYPE_CHECKING:
    from minires.tensor import Tensor

Number = Any  # a Python or NumPy number


class TensorMethods:
    """Operators, methods and in-place updates of ``Tensor`` (see the module docstring)."""

    data: Array

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

    def eq(self, other: Any) -> "Tensor":
        return _compare(self, other, "equal")

    def ne(self, other: Any) -> "Tensor":
        return _compare(self, other, "not_equal")

    # ------------------------------------------------------------------- methods
    def exp(self) -> "Tensor":
        return F.exp(self)

    def log(self) -> "Tensor":
        return F.log(self)

    def sqrt(self) -> "Tensor":
        return F.sqrt(self)

    def relu(self) -> "Tensor":
        return F.relu(self)

    def sigmoid(self) -> "Tensor":
        return F.sigmoid(self)

    def tanh(self) -> "Tensor":
        return F.tanh(self)

    def abs(self) -> "Tensor":
        return F.abs(self)

    def softmax(self, dim: int) -> "Tensor":
        return F.softmax(self, dim)

    def clamp(self, min: Optional[Number] = None, max: Optional[Number] = None) -> "Tensor":  # noqa: A002
        return F.clamp(self, min, max)

    def pow(self, exponent: Any) -> "Tensor":
        return F.pow(self, exponent)

    def where(self, condition: Any, other: Any) -> "Tensor":
        """``condition ? self : other``, elementwise (PyTorch's ``x.where(condition, y)``)."""
        return F.where(condition, self, other)

    def sum(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return F.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return F.mean(self, dim, keepdim)

    def norm(self, p: float = 2) -> "Tensor":
        """The Euclidean norm sqrt(sum(x**2)) of all values (PyTorch's default ``p=2``)."""
        if p != 2:
            raise ValueError(f"norm supports p=2, got p={p!r}; write other norms out, e.g. x.abs().max()")
        return F.sqrt(F.sum(F.mul(self, self)))

    def max(self, dim: Optional[int] = None, keepdim: bool = False) -> Any:
        """The largest value, or with ``dim`` the pair ``(values, indices)`` as in PyTorch."""
        return F.max(self, dim, keepdim)

    def argmax(self, dim: Optional[int] = None, keepdim: bool = False) -> "Tensor":
        from minires.tensor import Tensor
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

    # --------------------------------------------------------- in-place updates
    def __iadd__(self, other: Any) -> "Tensor":
        return self.add_(other)

    def __isub__(self, other: Any) -> "Tensor":
        return self.sub_(other)

    def __imul__(self, other: Any) -> "Tensor":
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> "Tensor":
        return self.div_(other)

    def add_(self, other: Any, alpha: Number = 1) -> "Tensor":
        """self += alpha * other."""
        return _update(self, "add_", [other], lambda x, o: xp_of(x).add(x, _scaled(o, alpha), out=x),
                       lambda x, o: x + (o if alpha == 1 else o * alpha))

    def sub_(self, other: Any, alpha: Number = 1) -> "Tensor":
        """self -= alpha * other."""
        return _update(self, "sub_", [other], lambda x, o: xp_of(x).subtract(x, _scaled(o, alpha), out=x),
                       lambda x, o: x - (o if alpha == 1 else o * alpha))

    def mul_(self, other: Any) -> "Tensor":
        """self *= other."""
        return _update(self, "mul_", [other], lambda x, o: xp_of(x).multiply(x, o, out=x), F.mul)

    def div_(self, other: Any) -> "Tensor":
        """self /= other."""
        return _update(self, "div_", [other], lambda x, o: xp_of(x).divide(x, o, out=x), F.div)

    def addcmul_(self, t1: Any, t2: Any, value: Number = 1) -> "Tensor":
        """self += value * t1 * t2 (Adam's second moment)."""
        return _update(self, "addcmul_", [t1, t2],
                       lambda x, a, b: xp_of(x).add(x, _scaled(a * b, value), out=x),
                       lambda x, a, b: x + a * b * value)

    def addcdiv_(self, t1: Any, t2: Any, value: Number = 1) -> "Tensor":
        """self += value * t1 / t2 (Adam's step)."""
        return _update(self, "addcdiv_", [t1, t2],
                       lambda x, a, b: xp_of(x).add(x, _scaled(a / b, value), out=x),
                       lambda x, a, b: x + a / b * value)

    def lerp_(self, end: Any, weight: Number) -> "Tensor":
        """self += weight * (end - self): a step of ``weight`` from self towards ``end``."""
        return _update(self, "lerp_", [end], lambda x, e: xp_of(x).add(x, (e - x) * weight, out=x),
                       lambda x, e: x + (e - x) * weight)

    def sqrt_(self) -> "Tensor":
        return _update(self, "sqrt_", [], lambda x: xp_of(x).sqrt(x, out=x), F.sqrt)

    def clamp_(self, min: Optional[Number] = None, max: Optional[Number] = None) -> "Tensor":  # noqa: A002
        """Limit each value to [min, max] (either bound may be left out)."""
        return _update(self, "clamp_", [], lambda x: xp_of(x).clip(x, min, max, out=x),
                       lambda x: F.clamp(x, min, max))

    def fill_(self, value: Number) -> "Tensor":
        """Every value becomes ``value``; the old values get no gradient."""
        return _update(self, "fill_", [], lambda x: x.fill(value), lambda x: F.fill(x, value))

    def zero_(self) -> "Tensor":
        return self.fill_(0)

    def copy_(self, src: Any) -> "Tensor":
        """Copy ``src``'s values (broadcast to this shape, converted to this dtype and device)."""
        from minires.tensor import Tensor
        if isinstance(src, Tensor) and (src.device != self.device or src.dtype != self.dtype):
            src = src.to(self.device).to(self.dtype)                   # in the graph, as PyTorch
        elif backend.is_array(src) and backend.device_of(src) != self.device:
            src = backend.to_device(src, self.device)
        return _update(self, "copy_", [src], lambda x, s: xp_of(x).copyto(x, s),
                       lambda x, s: F.add(F.fill(x, 0), s))


def xp_of(array: Array):
    return backend.get_array_module(array)


def _scaled(array: Array, factor: Number) -> Array:
    return array if factor == 1 else array * factor


def _update(t: "Tensor", name: str, operands: Sequence[Any],
            write: Callable[..., Any], record: Callable[..., "Tensor"]) -> "Tensor":
    """Change ``t`` in place: ``write(t.data, *operand arrays)`` writes the new values into the
    array; ``record(t, *operand tensors)`` is the same update written out of place, for the graph."""
    from minires.tensor import Tensor, as_tensor_like

    others = [as_tensor_like(o, t) for o in operands]
    for o in others:
        if o.device != t.device:
            raise RuntimeError(f"{name} got a tensor on {o.device} for a tensor on {t.device}; "
                               f"move it first, e.g. other.to({t.device!r})")
        if backend.broadcast_shapes(t.shape, o.shape) != t.shape:
            raise RuntimeError(f"{name} cannot change a tensor of shape {t.shape} in place with one of "
                               f"shape {o.shape}: the result would have another shape. Write the "
                               f"out-of-place form instead, e.g. y = x + other")
    if is_grad_enabled() and (t.requires_grad or any(o.requires_grad for o in others)):
        if t.is_leaf and t.requires_grad:
            raise RuntimeError(
                f"{name} on a leaf tensor that requires grad, while the graph is being recorded: its "
                f"gradient would be that of a value that no longer exists. Update parameters inside "
                f"`with minires.no_grad():` (as an optimizer step does), or work on a copy: x = x.clone()")
        if any(u is not t and u.requires_grad for u in t._version_counter.sharers()):
            raise RuntimeError(
                f"{name} on a tensor that shares its memory with another one in the graph (a view such as "
                f"x[0:2], x.reshape(...), x.T, or the tensor such a view was taken from), while the graph "
                f"is being recorded: the other tensor would change too, and minires does not follow views "
                f"through the graph, so its gradient would be wrong. Write it out of place, e.g. "
                f"y = x * 3 instead of x[0:2].mul_(3)")
        snapshot = Tensor(t.data.copy(), requires_grad=t.requires_grad, _creator=t._creator)
        result = record(snapshot, *others)
        if result.dtype != t.dtype:
            raise TypeError(f"{name} would turn a {t.dtype} tensor into {result.dtype}; convert the "
                            f"other operand first, e.g. other.to('{t.dtype}')")
        with backend.device_context(t.data):
            xp_of(t.data).copyto(t.data, result.data)
        t._creator, t._requires_grad = result._creator, result.requires_grad
    else:
        try:
            with backend.device_context(t.data):
                write(t.data, *[o.data for o in others])
        except TypeError as err:                       # NumPy: e.g. float result into an int array
            raise TypeError(f"{name} cannot write its result into a {t.dtype} tensor ({err}); "
                            f"convert the tensor first, e.g. x = x.to('float32')") from None
    t._version_counter.bump()
    return t


def _shape_arg(shape: Sequence[Any]) -> tuple:
    """Accept both ``x.reshape(2, 3)`` and ``x.reshape((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _compare(a: "Tensor", b: Any, name: str) -> "Tensor":
    from minires.tensor import Tensor, as_tensor_like

    b = as_tensor_like(b, a)
    if a.device != b.device:
        raise RuntimeError(f"comparison of tensors on different devices: {a.device} and {b.device}")
    xp = backend.get_array_module(a.data)
    return Tensor(getattr(xp, name)(a.data, b.data))



# The one sanctioned loop in the dependency arrows: Tensor's operators call functional.
from minires import functional as F  # noqa: E402
