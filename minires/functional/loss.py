"""Log-softmax, cross-entropy (fused and numerically stable) and the negative log-likelihood.

log_softmax along the class axis, computed from m = max_k x_k so that nothing overflows:

    logp_c = x_c - log(sum_k exp(x_k)) = (x_c - m) - log(sum_k exp(x_k - m))
    dx     = dout - softmax * sum_k dout_k                  (softmax = exp(logp))

cross_entropy is log_softmax and the loss in ONE Function. Against the target distribution
q = (1 - ls) * onehot(t) + ls / C (label smoothing ls, C classes), one sample costs

    loss = -sum_c q_c * logp_c
    dlogits = (softmax - q) * dloss                          (dloss = dout, or dout / M for "mean")

Fusing them gives that short gradient directly, and it stays finite for logits of any size.
Derivation: docs/derivations/cross_entropy.md.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy

from minires import backend
from minires.autograd import Function
from minires.backend import Array, get_array_module

if TYPE_CHECKING:
    from minires.tensor import Tensor

REDUCTIONS = ("none", "mean", "sum")


def stable_log_softmax(x: Array, axis: int) -> Array:
    """(x - m) - log(sum exp(x - m)), m the max along ``axis``: exp(0) = 1 is the largest term."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)             # <= 0 everywhere: exp cannot overflow
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))  # the sum is >= 1


class LogSoftmax(Function):
    """out = x - logsumexp(x) along ``dim``;  dx = dout - softmax * sum(dout) along ``dim``.

    Derivation: docs/derivations/cross_entropy.md.
    """

    def __init__(self, dim: int = 1):
        self.dim = dim

    def forward(self, x: Array) -> Array:
        if x.dtype.kind != "f":
            raise TypeError(f"log_softmax expects a floating-point x, got {x.dtype}; convert it with x.to('float32')")
        if x.ndim == 0 or not -x.ndim <= self.dim < x.ndim:
            raise IndexError(f"log_softmax got dim={self.dim} for x of shape {tuple(x.shape)}; "
                             f"dim must lie in [{-max(x.ndim, 1)}, {max(x.ndim - 1, 0)}]")
        out = stable_log_softmax(x, self.dim)
        self.softmax = get_array_module(x).exp(out)           # what the backward needs
        return out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION log_softmax
        return (dout - self.softmax * dout.sum(axis=self.dim, keepdims=True),)
        # END SOLUTION


def _check_target(op: str, logits: Array, target: Array) -> None:
    """Clear errors for logits (N, C, d1, ...) or (C,) and integer targets (N, d1, ...) or ()."""
    if logits.ndim == 0:
        raise ValueError(f"{op} expects logits of shape (N, C) or (N, C, d1, ...), or (C,) for one sample, "
                         f"got a 0-d array; a loss needs at least one class axis")
    if logits.dtype.kind != "f":
        raise TypeError(f"{op} expects floating-point logits, got {logits.dtype}; convert with x.to('float32')")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op} expects integer class indices as target, got dtype {target.dtype}; minires "
                        f"does not take class probabilities as a target: convert with target.to('int64')")
    expected = () if logits.ndim == 1 else (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{op} expects target of shape {expected} (one class index per sample and position) "
                         f"for logits of shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    C = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    outside = ((target < 0) | (target >= C)).reshape(-1)      # flat, so a 0-d target works too
    if outside.any():
        value = int(target.reshape(-1)[outside][0])
        hint = " (minires has no ignore_index)" if value < 0 else ""
        raise ValueError(f"{op} expects class indices in [0, {C}) for logits with {C} classes, got the target "
                         f"value {value}{hint}; {int(outside.sum())} value(s) out of range. "
                         f"Class indices start at 0.")


def _as_batch(logits: Array, target: Array) -> tuple:
    """(C,) logits and a 0-d target -> (1, C) and (1,): one code path for both forms."""
    return (logits[None], target[None]) if logits.ndim == 1 else (logits, target)


def _reduce(losses: Array, reduction: str) -> Array:
    """losses (N, d1, ...) -> as they are ("none"), their sum, or their mean over all M positions."""
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def _dloss(dout: Array, reduction: str, shape: tuple) -> Array:
    """dL/dloss_i for every position i, of ``shape`` (N, d1, ...): the backward of ``_reduce``."""
    xp = get_array_module(dout)
    if reduction == "none":
        return dout.reshape(shape)
    count = max(math.prod(shape), 1) if reduction == "mean" else 1
    return xp.broadcast_to(dout / count, shape)               # "mean": each of M positions gets dout / M


def _onehot(target: Array, num_classes: int, dtype: Any) -> Array:
    """(N, d1, ...) class indices -> (N, C, d1, ...) with a 1 at each target class."""
    xp = get_array_module(target)
    classes = xp.arange(num_classes).reshape((1, num_classes) + (1,) * (target.ndim - 1))   # (1, C, 1, ...)
    return (target[:, None] == classes).astype(dtype)


class CrossEntropy(Function):
    """loss = -sum_c q_c * log_softmax(logits)_c, q = (1 - ls) * onehot + ls / C;  dlogits = (softmax - q) * dloss.

    Derivation: docs/derivations/cross_entropy.md.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, logits: Array, target: Array) -> Array:
        xp = get_array_module(logits)
        _check_target("cross_entropy", logits, target)
        self.logits_shape, target_shape = logits.shape, target.shape
        logits, target = _as_batch(logits, target)             # (N, C, d1, ...), (N, d1, ...)
        ls = self.label_smoothing
        logp = stable_log_softmax(logits, axis=1)             # (N, C, d1, ...)
        losses = -xp.take_along_axis(logp, target[:, None], axis=1)[:, 0]   # (N, d1, ...) -logp[target]
        if ls > 0:
            losses = (1 - ls) * losses - ls * logp.mean(axis=1)   # the ls/C mass on every class
        self.softmax, self.target = xp.exp(logp), target
        return _reduce(losses.reshape(target_shape), self.reduction)

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION cross_entropy
        C, ls = self.softmax.shape[1], self.label_smoothing
        dloss = _dloss(dout, self.reduction, self.target.shape)                     # (N, d1, ...)
        q = (1 - ls) * _onehot(self.target, C, self.softmax.dtype) + ls / C       # (N, C, d1, ...)
        dlogits = (self.softmax - q) * dloss[:, None]                               # (N, C, d1, ...)
        return dlogits.reshape(self.logits_shape), None
        # END SOLUTION


class NLLLoss(Function):
    """loss = -logp[target] (logp: log-probabilities, e.g. from log_softmax);  dlogp = -onehot * dloss.

    Derivation: docs/derivations/cross_entropy.md.
    """

    def __init__(self, reduction: str = "mean"):
        self.reduction = reduction

    def forward(self, logp: Array, target: Array) -> Array:
        xp = get_array_module(logp)
        _check_target("nll_loss", logp, target)
        self.logp_shape, target_shape = logp.shape, target.shape
        logp, target = _as_batch(logp, target)                 # (N, C, d1, ...), (N, d1, ...)
        losses = -xp.take_along_axis(logp, target[:, None], axis=1)[:, 0]   # (N, d1, ...)
        self.target, self.num_classes = target, logp.shape[1]
        return _reduce(losses.reshape(target_shape), self.reduction)

    def backward(self, dout: Array) -> tuple:
        dloss = _dloss(dout, self.reduction, self.target.shape)                     # (N, d1, ...)
        dlogp = -_onehot(self.target, self.num_classes, dout.dtype) * dloss[:, None]  # (N, C, d1, ...)
        return dlogp.reshape(self.logp_shape), None


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op} reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _as_target(target: Any, logits: Any) -> Any:
    """A Tensor or array as it is; Python ints (a list, a number) as an int64 array on logits' device."""
    from minires.tensor import Tensor

    if isinstance(target, Tensor) or backend.is_array(target):
        return target
    anchor = logits.data if isinstance(logits, Tensor) else logits
    return backend.to_device(numpy.asarray(target), backend.device_of(anchor))


def log_softmax(x: Any, dim: int = 1) -> "Tensor":
    """PyTorch's ``F.log_softmax``: x - log(sum(exp(x))) along ``dim``, computed stably."""
    return LogSoftmax.apply(x, dim=int(dim))


def cross_entropy(logits: Any, target: Any, *, reduction: str = "mean", label_smoothing: float = 0.0) -> "Tensor":
    """PyTorch's ``F.cross_entropy``: log_softmax over the class axis and the negative log-likelihood, fused.

    Args:
        logits: (N, C) or (N, C, d1, d2, ...) (one prediction per position), or (C,) for one sample.
        target: integer class indices in [0, C), shape (N,) or (N, d1, ...), or 0-d for (C,) logits:
            a Tensor, an array, or Python ints. It gets no gradient.
        reduction: "none" (a loss per sample and position, shaped like target), "mean" (over all
            of them) or "sum".
        label_smoothing: ls in [0, 1]; the target distribution becomes (1 - ls) * onehot + ls / C.

    Returns:
        the loss, of the logits' dtype: 0-d for "mean" and "sum". Derivation: docs/derivations/cross_entropy.md.
    """
    _check_reduction("cross_entropy", reduction)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy expects label_smoothing in [0, 1] (0.1 is common), got {label_smoothing!r}")
    return CrossEntropy.apply(logits, _as_target(target, logits), reduction=reduction,
                              label_smoothing=float(label_smoothing))


def nll_loss(logp: Any, target: Any, *, reduction: str = "mean") -> "Tensor":
    """PyTorch's ``F.nll_loss``: -logp[target], for log-probabilities such as ``log_softmax(x, dim=1)``.

    ``nll_loss(log_softmax(x, dim=1), t)`` equals ``cross_entropy(x, t)``; the fused
    ``cross_entropy`` is the faster and more stable of the two. Shapes as in ``cross_entropy``.
    """
    _check_reduction("nll_loss", reduction)
    return NLLLoss.apply(logp, _as_target(target, logp), reduction=reduction)
