"""Elementwise arithmetic: add, sub, mul, div, neg, pow, exp, log, sqrt, clamp, and the copies
behind in-place updates (clone, fill).

Each operation is a Function whose forward and backward sit side by side. The binary ones
broadcast like NumPy; their backward sums the gradient back to each input's own shape
(``sum_to_shape``), because an input that was broadcast was, in effect, used many times.

Derivation: docs/derivations/arithmetic.md.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from minires.autograd import Function
from minires.backend import Array, get_array_module


def sum_to_shape(grad: Array, shape: Sequence[int]) -> Array:
    """Undo broadcasting: sum ``grad`` over the axes that broadcasting added or stretched.

    If ``x`` of shape (3, 1) was broadcast to (2, 3, 4), each x[i, 0] fed 2 * 4 outputs,
    so dL/dx[i, 0] is the sum of dL/dout over those outputs.
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead))) if lead > 0 else grad       # drop added axes
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)                   # fold stretched axes
    return grad


def check_same_dtype(op: str, a: Array, b: Array) -> None:
    """Refuse float32 with float64 (or float with int): minires never changes a dtype silently."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op} got inputs of dtypes {a.dtype} and {b.dtype}; minires does not promote dtypes "
            f"silently. Convert one of them first, e.g. y = y.to('{a.dtype}')")


class Add(Function):
    """out = a + b;  da = dout, db = dout (each summed back to its shape).

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, a: Array, b: Array) -> Array:
        check_same_dtype("add", a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, dout: Array) -> tuple:
        return sum_to_shape(dout, self.a_shape), sum_to_shape(dout, self.b_shape)


class Sub(Function):
    """out = a - b;  da = dout, db = -dout.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, a: Array, b: Array) -> Array:
        check_same_dtype("sub", a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, dout: Array) -> tuple:
        return sum_to_shape(dout, self.a_shape), sum_to_shape(-dout, self.b_shape)


class Mul(Function):
    """out = a * b;  da = dout * b, db = dout * a.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, a: Array, b: Array) -> Array:
        check_same_dtype("mul", a, b)
        self.a, self.b = a, b
        return a * b

    def backward(self, dout: Array) -> tuple:
        da = sum_to_shape(dout * self.b, self.a.shape) if self.needs_input_grad[0] else None
        db = sum_to_shape(dout * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """out = a / b;  da = dout / b, db = -dout * a / b**2 = -dout * out / b.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, a: Array, b: Array) -> Array:
        check_same_dtype("div", a, b)
        self.a_shape, self.b = a.shape, b
        self.out = a / b
        return self.out

    def backward(self, dout: Array) -> tuple:
        da = sum_to_shape(dout / self.b, self.a_shape) if self.needs_input_grad[0] else None
        db = sum_to_shape(-dout * self.out / self.b, self.b.shape) if self.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    """out = -x;  dx = -dout.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, x: Array) -> Array:
        return -x

    def backward(self, dout: Array) -> tuple:
        return (-dout,)


class Pow(Function):
    """out = a ** b;  da = dout * b * a**(b-1), db = dout * out * log(a).

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, a: Array, b: Array) -> Array:
        check_same_dtype("pow", a, b)
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        da = db = None
        if self.needs_input_grad[0]:
            da = sum_to_shape(dout * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_input_grad[1]:
            db = sum_to_shape(dout * self.out * xp.log(self.a), self.b.shape)
        return da, db


class Exp(Function):
    """out = exp(x);  dx = dout * out.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, x: Array) -> Array:
        self.out = get_array_module(x).exp(x)
        return self.out

    def backward(self, dout: Array) -> tuple:
        return (dout * self.out,)


class Log(Function):
    """out = log(x);  dx = dout / x.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, x: Array) -> Array:
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, dout: Array) -> tuple:
        return (dout / self.x,)


class Sqrt(Function):
    """out = sqrt(x);  dx = dout / (2 * out).

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, x: Array) -> Array:
        self.out = get_array_module(x).sqrt(x)
        return self.out

    def backward(self, dout: Array) -> tuple:
        return (dout / (2 * self.out),)


class Clamp(Function):
    """out = min(max(x, lo), hi);  dx = dout where lo <= x <= hi, else 0.

    At the bounds themselves the gradient passes (PyTorch's rule), so ``clamp(x, 0)`` differs
    from ``relu(x)`` only at x = 0.

    Derivation: docs/derivations/arithmetic.md.
    """

    def __init__(self, lo: Optional[float], hi: Optional[float]):
        if lo is None and hi is None:
            raise ValueError("clamp needs at least one of min and max")
        self.lo, self.hi = lo, hi

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        self.passes = xp.ones(x.shape, dtype=bool)
        if self.lo is not None:
            self.passes &= x >= self.lo
        if self.hi is not None:
            self.passes &= x <= self.hi
        return xp.clip(x, self.lo, self.hi)

    def backward(self, dout: Array) -> tuple:
        return (dout * self.passes,)


class Clone(Function):
    """out = x, in new memory;  dx = dout.

    Derivation: docs/derivations/arithmetic.md.
    """

    def forward(self, x: Array) -> Array:
        return x.copy()

    def backward(self, dout: Array) -> tuple:
        return (dout,)


class Fill(Function):
    """out = value everywhere (x's shape and dtype);  dx = 0: the new values forget the old ones.

    This is what ``x.fill_(v)`` records when ``x`` is part of a graph.

    Derivation: docs/derivations/arithmetic.md.
    """

    def __init__(self, value: float):
        self.value = value

    def forward(self, x: Array) -> Array:
        return get_array_module(x).full_like(x, self.value)

    def backward(self, dout: Array) -> tuple:
        return (get_array_module(dout).zeros_like(dout),)


def add(a: Any, b: Any):
    return Add.apply(a, b)


def sub(a: Any, b: Any):
    return Sub.apply(a, b)


def mul(a: Any, b: Any):
    return Mul.apply(a, b)


def div(a: Any, b: Any):
    return Div.apply(a, b)


def neg(x: Any):
    return Neg.apply(x)


def pow(a: Any, b: Any):  # noqa: A001 - PyTorch's name
    return Pow.apply(a, b)


def exp(x: Any):
    return Exp.apply(x)


def log(x: Any):
    return Log.apply(x)


def sqrt(x: Any):
    return Sqrt.apply(x)


def clamp(x: Any, min: Optional[float] = None, max: Optional[float] = None):  # noqa: A002 - PyTorch's names
    return Clamp.apply(x, lo=min, hi=max)


def clone(x: Any):
    return Clone.apply(x)


def fill(x: Any, value: float):
    return Fill.apply(x, value=value)
