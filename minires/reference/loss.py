"""log-softmax and cross-entropy by their definitions, in float64, PyTorch semantics."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def log_softmax(x: ArrayLike, dim: int = 1) -> np.ndarray:
    """log_softmax(x)_c = x_c - log(sum_k exp(x_k)), along axis `dim`.

    Computed stably as (x_c - m) - log(sum_k exp(x_k - m)) with m = max_k x_k: the largest
    exponent is exp(0) = 1, so nothing overflows, and the sum is at least 1, so its log is finite.
    """
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=dim, keepdims=True)  # shape of x with size 1 along dim
    shifted = x - m
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def cross_entropy(
    logits: ArrayLike, target: ArrayLike, reduction: str = "mean", label_smoothing: float = 0.0
) -> np.ndarray:
    """Cross-entropy of class logits against integer class targets, PyTorch semantics.

    With logp = log_softmax(logits, dim=1), C classes and smoothing ls, each sample i costs

        loss_i = (1 - ls) * (-logp[i, t_i]) + ls * (1/C) * sum_c (-logp[i, c])

    i.e. the cross-entropy against the target distribution (1 - ls) * onehot(t_i) + ls / C.

    Args:
        logits: shape (N, C), or (N, C, d1, d2, ...) for one prediction per position.
        target: integer class indices in [0, C), shape (N,) or (N, d1, d2, ...).
        reduction: "none" (one loss per sample, the shape of target), "mean" or "sum".
        label_smoothing: ls in [0, 1].

    Returns:
        float64 array: the shape of target for "none", a 0-d array otherwise.
    """
    logits = np.asarray(logits, dtype=np.float64)
    target = np.asarray(target)
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C, ...), got {logits.shape}; "
                         f"add a batch axis with logits[None]")
    N, C = logits.shape[:2]
    if target.shape != (N,) + logits.shape[2:]:
        raise ValueError(f"cross_entropy expects target of shape {(N,) + logits.shape[2:]} for logits of shape "
                         f"{logits.shape}, got {target.shape}")
    if target.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy expects integer class indices as target, got dtype {target.dtype}; "
                         f"convert with target.astype(np.int64)")
    if target.size and (target.min() < 0 or target.max() >= C):
        raise ValueError(f"cross_entropy expects targets in [0, {C}), got values from {target.min()} to "
                         f"{target.max()}; class indices start at 0")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"cross_entropy reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy label_smoothing must lie in [0, 1], got {label_smoothing}")

    logp = np.moveaxis(log_softmax(logits, dim=1), 1, -1).reshape(-1, C)  # (N*d1*..., C)
    flat_target = target.reshape(-1)  # (N*d1*...,)
    losses = np.empty(len(flat_target))
    for i, t in enumerate(flat_target):
        nll = -logp[i, t]
        smooth = -logp[i].mean()
        losses[i] = (1 - label_smoothing) * nll + label_smoothing * smooth
    if reduction == "none":
        return losses.reshape(target.shape)
    if reduction == "sum":
        return np.asarray(losses.sum())
    return np.asarray(losses.mean())
