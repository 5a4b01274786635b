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
from minires.functional.reduction import wrap_dim

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
        wrap_dim(self.dim, x.ndim)                            # out of range: PyTorch's IndexError
        out = stable_log_softmax(x, self.dim)
        self.softmax = get_array_module(x).exp(out)           # what the backward needs
        return out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION log_softmax
        return (dout - self.softmax * dout.sum(axis=self.dim, keepdims=True),)
        # END SOLUTION


def _check_logits(op: str, logits: Array) -> None:
    """Clear errors for logits that are not (N, C, d1, ...) or (C,) floating-point values."""
    if logits.ndim == 0:
        raise ValueError(f"{op} expects logits of shape (N, C) or (N, C, d1, ...), or (C,) for one sample, "
                         f"got a 0-d array; a loss needs at least one class axis")
    if logits.dtype.kind != "f":
        raise TypeError(f"{op} expects floating-point logits, got {logits.dtype}; convert with x.to('float32')")


def _check_target(op: str, logits: Array, target: Array, ignore_index: int) -> None:
    """Clear errors for integer targets (N, d1, ...) or () of logits (N, C, d1, ...) or (C,)."""
    _check_logits(op, logits)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op} expects integer class indices as target, got dtype {target.dtype}"
                        + ("; cross_entropy also takes class probabilities: a float target of the logits' "
                           f"shape {tuple(logits.shape)}" if op == "cross_entropy" else
                           ": convert with target.to('int64')"))
    expected = () if logits.ndim == 1 else (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{op} expects target of shape {expected} (one class index per sample and position) "
                         f"for logits of shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    C = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    outside = ((target < 0) | (target >= C)) & (target != ignore_index)
    outside = outside.reshape(-1)                              # flat, so a 0-d target works too
    if outside.any():
        value = int(target.reshape(-1)[outside][0])
        raise ValueError(f"{op} expects class indices in [0, {C}) for logits with {C} classes, or "
                         f"ignore_index={ignore_index} for positions that count for nothing; got the target "
                         f"value {value}; {int(outside.sum())} value(s) out of range. Class indices start at 0.")


def _check_weight(op: str, weight: Any, logits: Array) -> Any:
    """The class weights as an array of shape (C,) on logits' device and of their dtype, or None."""
    from minires.tensor import Tensor

    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else weight
    if not backend.is_array(w):
        w = backend.to_device(numpy.asarray(w, dtype=logits.dtype), backend.device_of(logits))
    C = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    if tuple(w.shape) != (C,):
        raise ValueError(f"{op} expects weight of shape ({C},), one weight per class, got {tuple(w.shape)}")
    if backend.device_of(w) != backend.device_of(logits):
        raise RuntimeError(f"{op} got weight on {backend.device_of(w)} and logits on "
                           f"{backend.device_of(logits)}; move the weight with weight.to(device)")
    return w.astype(logits.dtype, copy=False)


def _as_batch(logits: Array, target: Array) -> tuple:
    """(C,) logits and a 0-d target -> (1, C) and (1,): one code path for both forms."""
    return (logits[None], target[None]) if logits.ndim == 1 else (logits, target)


def _reduce(losses: Array, reduction: str, total_weight: Array) -> Array:
    """losses (N, d1, ...) -> as they are ("none"), their sum, or their sum / total_weight ("mean").

    ``total_weight`` is M, the number of positions, or with class weights or ignored positions the
    sum of the weights of the targets that count, as in PyTorch. 0 / 0 is NaN, as in PyTorch.
    """
    if reduction == "none":
        return losses
    xp = get_array_module(losses)
    with numpy.errstate(invalid="ignore", divide="ignore"):
        return losses.sum() if reduction == "sum" else xp.divide(losses.sum(), total_weight)


def _dloss(dout: Array, reduction: str, total_weight: Array, shape: tuple) -> Array:
    """dL/dloss_i for every position i, of ``shape`` (N, d1, ...): the backward of ``_reduce``."""
    xp = get_array_module(dout)
    if reduction == "none":
        return dout.reshape(shape)
    if reduction == "mean":                                   # each position gets dout / total_weight
        dout = dout / total_weight if total_weight != 0 else dout * 0   # nothing counted: no gradient
    return xp.broadcast_to(dout, shape)


def _onehot(target: Array, num_classes: int, dtype: Any) -> Array:
    """(N, d1, ...) class indices -> (N, C, d1, ...) with a 1 at each target class."""
    xp = get_array_module(target)
    classes = xp.arange(num_classes).reshape((1, num_classes) + (1,) * (target.ndim - 1))   # (1, C, 1, ...)
    return (target[:, None] == classes).astype(dtype)


def _class_axis(array: Array, ndim: int) -> Array:
    """(C,) per-class values -> (1, C, 1, ...) that broadcasts against (N, C, d1, ...) of ``ndim`` axes."""
    return array.reshape((1, -1) + (1,) * (ndim - 2))


def _index_target(logp: Array, target: Array, weight: Any, ignore_index: int) -> tuple:
    """The weighted one-hot q (N, C, d1, ...), -w[t] * logp[t] (N, d1, ...) and the total weight.

    q holds weight[t] at each target class and 0 at ignored positions; the total weight is the
    denominator of PyTorch's weighted mean: the sum of weight[t] over the positions that count.
    """
    xp = get_array_module(logp)
    counts = target != ignore_index                                         # (N, d1, ...)
    safe = xp.where(counts, target, 0)                                      # an ignored index gathers class 0
    w = counts.astype(logp.dtype) if weight is None else xp.where(counts, weight[safe], 0).astype(logp.dtype)
    nll = -xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0] * w      # (N, d1, ...) -w[t] * logp[t]
    q = _onehot(safe, logp.shape[1], logp.dtype) * w[:, None]               # (N, C, d1, ...)
    return q, nll, w.sum()


class CrossEntropy(Function):
    """loss = -sum_c w_c q_c log_softmax(logits)_c;  dlogits = (softmax * sum_c w_c q_c - w q) * dloss.

    q is the target distribution: (1 - ls) * onehot(target) + ls / C for class indices (0 at
    ignore_index), (1 - ls) * target + ls / C for class probabilities; w the class weights (1 when
    none are given). Without weights, q sums to 1 and dlogits = (softmax - q) * dloss.
    Derivation: docs/derivations/cross_entropy.md.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, weight: Any = None,
                 ignore_index: int = -100):
        self.reduction, self.label_smoothing = reduction, label_smoothing
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, logits: Array, target: Array) -> Array:
        xp = get_array_module(logits)
        self.logits_shape = logits.shape
        probabilities = target.dtype.kind == "f"
        if probabilities:
            _check_probabilities(logits, target, self.ignore_index)
        else:
            _check_target("cross_entropy", logits, target, self.ignore_index)
        loss_shape = logits.shape[:1] + logits.shape[2:] if logits.ndim > 1 else ()
        logits, target = _as_batch(logits, target)             # (N, C, d1, ...), (N, d1, ...) or (N, C, d1, ...)
        ls, C = self.label_smoothing, logits.shape[1]
        logp = stable_log_softmax(logits, axis=1)             # (N, C, d1, ...)
        w = 1 if self.weight is None else _class_axis(self.weight, logp.ndim)
        if probabilities:                                      # PyTorch: the mean is over positions
            self.q = ((1 - ls) * target.astype(logp.dtype) + ls / C) * w        # (N, C, d1, ...)
            losses = -(self.q * logp).sum(axis=1)
            self.total_weight = xp.asarray(math.prod(losses.shape), dtype=logp.dtype)
        else:
            onehot, losses, self.total_weight = _index_target(logp, target, self.weight, self.ignore_index)
            self.q = onehot
            if ls > 0:                                         # the ls/C mass on every (weighted) class
                counts = (target != self.ignore_index)[:, None]
                self.q = (1 - ls) * onehot + (ls / C) * w * counts
                losses = (1 - ls) * losses - (ls / C) * (w * logp * counts).sum(axis=1)
        self.softmax, self.loss_shape = xp.exp(logp), losses.shape
        return _reduce(losses.reshape(loss_shape), self.reduction, self.total_weight)

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION cross_entropy
        dloss = _dloss(dout, self.reduction, self.total_weight, self.loss_shape)   # (N, d1, ...)
        q = self.q                                          # (N, C, d1, ...): w_c q_c, 0 where ignored
        dlogits = (self.softmax * q.sum(axis=1, keepdims=True) - q) * dloss[:, None]   # (N, C, d1, ...)
        return dlogits.reshape(self.logits_shape), None
        # END SOLUTION


def _check_probabilities(logits: Array, target: Array, ignore_index: int) -> None:
    """Class-probability targets: floating point, of the logits' shape, no ignore_index (as PyTorch)."""
    _check_logits("cross_entropy", logits)
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(f"cross_entropy with class probabilities expects a target of the logits' shape "
                         f"{tuple(logits.shape)}, got {tuple(target.shape)}; for class indices pass an "
                         f"integer target")
    if ignore_index >= 0:
        raise ValueError(f"cross_entropy does not take ignore_index={ignore_index} with class probabilities "
                         f"(a float target): there is no class index to ignore; leave ignore_index at -100")


class NLLLoss(Function):
    """loss = -w[t] * logp[t] (logp: log-probabilities, e.g. from log_softmax);  dlogp = -w[t] * onehot * dloss.

    Derivation: docs/derivations/cross_entropy.md.
    """

    def __init__(self, reduction: str = "mean", weight: Any = None, ignore_index: int = -100):
        self.reduction, self.weight, self.ignore_index = reduction, weight, ignore_index

    def forward(self, logp: Array, target: Array) -> Array:
        _check_target("nll_loss", logp, target, self.ignore_index)
        self.logp_shape = logp.shape
        loss_shape = target.shape
        logp, target = _as_batch(logp, target)                 # (N, C, d1, ...), (N, d1, ...)
        self.q, losses, self.total_weight = _index_target(logp, target, self.weight, self.ignore_index)
        self.loss_shape = losses.shape
        return _reduce(losses.reshape(loss_shape), self.reduction, self.total_weight)

    def backward(self, dout: Array) -> tuple:
        dloss = _dloss(dout, self.reduction, self.total_weight, self.loss_shape)   # (N, d1, ...)
        dlogp = -self.q * dloss[:, None]                                            # (N, C, d1, ...)
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


def cross_entropy(logits: Any, target: Any, weight: Any = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> "Tensor":
    """PyTorch's ``F.cross_entropy``: log_softmax over the class axis and the negative log-likelihood, fused.

    Args:
        logits: (N, C) or (N, C, d1, d2, ...) (one prediction per position), or (C,) for one sample.
        target: integer class indices in [0, C), shape (N,) or (N, d1, ...), or 0-d for (C,) logits;
            or class probabilities: a float target of the logits' shape. A Tensor, an array, or
            Python numbers. It gets no gradient.
        weight: None, or one weight per class, shape (C,): each loss is scaled by the weight of its
            class, and "mean" divides by the sum of the weights of the targets that count.
        ignore_index: a target value that counts for nothing (no loss, no gradient, not in the mean).
        reduction: "none" (a loss per sample and position, shaped like target), "mean" or "sum".
        label_smoothing: ls in [0, 1]; the target distribution becomes (1 - ls) * q + ls / C.

    Returns:
        the loss, of the logits' dtype: 0-d for "mean" and "sum". Derivation: docs/derivations/cross_entropy.md.
    """
    _check_reduction("cross_entropy", reduction)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy expects label_smoothing in [0, 1] (0.1 is common), got {label_smoothing!r}")
    return CrossEntropy.apply(logits, _as_target(target, logits), reduction=reduction,
                              label_smoothing=float(label_smoothing), weight=_weight_of(weight, logits, "cross_entropy"),
                              ignore_index=_check_ignore_index("cross_entropy", ignore_index))


def nll_loss(logp: Any, target: Any, weight: Any = None, *, ignore_index: int = -100,
             reduction: str = "mean") -> "Tensor":
    """PyTorch's ``F.nll_loss``: -weight[t] * logp[t], for log-probabilities such as ``log_softmax(x, dim=1)``.

    ``nll_loss(log_softmax(x, dim=1), t)`` equals ``cross_entropy(x, t)``; the fused
    ``cross_entropy`` is the faster and more stable of the two. Shapes, ``weight`` and
    ``ignore_index`` as in ``cross_entropy`` (class indices only).
    """
    _check_reduction("nll_loss", reduction)
    return NLLLoss.apply(logp, _as_target(target, logp), reduction=reduction,
                         weight=_weight_of(weight, logp, "nll_loss"),
                         ignore_index=_check_ignore_index("nll_loss", ignore_index))


def _check_ignore_index(op: str, ignore_index: Any) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op} expects an integer ignore_index (default -100), got {ignore_index!r}")
    return int(ignore_index)


def _weight_of(weight: Any, logits: Any, op: str) -> Any:
    """Class weights as an array on the logits' device (a Tensor's array, an array, or Python numbers)."""
    from minires.tensor import Tensor

    anchor = logits.data if isinstance(logits, Tensor) else logits
    anchor = anchor if backend.is_array(anchor) else numpy.asarray(anchor)
    return _check_weight(op, weight, anchor)
