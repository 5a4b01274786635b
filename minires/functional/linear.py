"""Matrix products: ``matmul`` and the fully connected layer's ``linear``.

For out = a @ b, each out[i, j] = sum_k a[i, k] * b[k, j], so
    da = dout @ b^T     and     db = a^T @ dout.
Batched products broadcast over the leading axes; the backward sums those back.

Derivation: docs/derivations/linear.md.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy

from minires.autograd import Function
from minires.backend import Array, get_array_module
from minires.functional.arithmetic import check_same_dtype, sum_to_shape
from minires.parallel import matmul as _rows_on_threads


def _mT(x: Array) -> Array:
    """Swap the last two axes (the matrix transpose of a batch of matrices)."""
    return get_array_module(x).swapaxes(x, -1, -2)


def product(a: Array, b: Array) -> Array:
    """``a @ b`` with NumPy's matmul rules (a 1-D operand is a row or a column, dropped again after), its
    rows shared among minires's threads with the BLAS on one thread each (``minires.parallel.matmul``),
    as in every other operation: a product on the BLAS's own threads leaves them spinning on the cores
    the next operations need (benchmarks/README.md, "Chunks and threads")."""
    xp = get_array_module(a)
    a2 = a if a.ndim > 1 else a[None, :]                                  # (k,) -> (1, k)
    b2 = b if b.ndim > 1 else b[:, None]                                  # (k,) -> (k, 1)
    shape = numpy.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
    out = _rows_on_threads(a2, b2, xp.empty(shape, dtype=xp.result_type(a2, b2)), xp)
    if a.ndim == 1:
        out = out[..., 0, :]
    return out[..., 0] if b.ndim == 1 else out


class MatMul(Function):
    """out = a @ b (NumPy's matmul rules);  da = dout @ b^T, db = a^T @ dout.

    Derivation: docs/derivations/linear.md.
    """

    def forward(self, a: Array, b: Array) -> Array:
        check_same_dtype("matmul", a, b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul needs tensors with at least one dimension; use * for scalars")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit: the "
                             f"last axis of the first must equal the {'second-to-last' if b.ndim > 1 else 'only'} "
                             f"axis of the second")
        self.a, self.b = a, b
        return product(a, b)

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION matmul
        a2 = self.a if self.a.ndim > 1 else self.a[None, :]              # (k,) -> (1, k)
        b2 = self.b if self.b.ndim > 1 else self.b[:, None]              # (k,) -> (k, 1)
        if self.a.ndim == 1:
            dout = dout[..., None, :] if self.b.ndim > 1 else dout[..., None]
        if self.b.ndim == 1:
            dout = dout[..., None]                                       # now (..., m, n)
        da = db = None
        if self.needs_input_grad[0]:
            da = sum_to_shape(product(dout, _mT(b2)), a2.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            db = sum_to_shape(product(_mT(a2), dout), b2.shape).reshape(self.b.shape)
        return da, db
        # END SOLUTION


class Linear(Function):
    """out = x @ W^T + b, x (..., in), W (out, in), b (out,).

    dx = dout @ W;  dW = dout^T @ x (over all leading axes);  db = dout summed over them.

    Derivation: docs/derivations/linear.md.
    """

    def forward(self, x: Array, weight: Array, bias: Optional[Array]) -> Array:
        check_same_dtype("linear", x, weight)
        if bias is not None:
            check_same_dtype("linear", x, bias)
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input has {x.shape[-1]} features but the weight {tuple(weight.shape)} "
                             f"expects {weight.shape[1]} (weight is (out_features, in_features))")
        self.x, self.weight = x, weight
        out = product(x, weight.T)                                       # (..., out)
        return out if bias is None else out + bias

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION linear
        dout2 = dout.reshape(-1, dout.shape[-1])                         # (M, out)
        dx = product(dout, self.weight) if self.needs_input_grad[0] else None   # (..., in)
        dw = product(dout2.T, self.x.reshape(-1, self.x.shape[-1])) if self.needs_input_grad[1] else None
        db = dout2.sum(axis=0) if self.needs_input_grad[2] else None
        return dx, dw, db
        # END SOLUTION


def matmul(a: Any, b: Any):
    return MatMul.apply(a, b)


def linear(x: Any, weight: Any, bias: Any = None):
    """PyTorch's ``F.linear``: ``x @ weight.T + bias``."""
    return Linear.apply(x, weight, bias)
