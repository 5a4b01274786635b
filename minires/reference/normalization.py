"""Batch normalization by its definition, one channel at a time, in float64."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike


def batch_norm(
    x: ArrayLike,
    running_mean: Optional[ArrayLike],
    running_var: Optional[ArrayLike],
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    training: bool = False,
    momentum: Optional[float] = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: int = 0,
) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Batch normalization, PyTorch semantics, as a pure function.

    For each channel c, over the m = N*H*W values x[:, c] (m = N for x of shape (N, C)):

        out[:, c] = weight[c] * (x[:, c] - mean_c) / sqrt(var_c + eps) + bias[c]

    Training: mean_c and var_c are the batch mean and the BIASED batch variance
    (sum (x - mean)^2 / m), and the running statistics move towards the batch, using the
    UNBIASED variance (sum (x - mean)^2 / (m - 1)):

        running = (1 - f) * running + f * batch,   f = momentum,
                  or f = 1 / (num_batches_tracked + 1) when momentum is None (a cumulative average;
                  num_batches_tracked counts the batches seen BEFORE this one).

    Evaluation: mean_c and var_c are running_mean[c] and running_var[c]; nothing is updated.

    Nothing is modified in place. running_mean and running_var may be None in training
    (no running statistics are kept; None is returned for them).

    Args:
        x: input of shape (N, C) or (N, C, H, W).
        running_mean, running_var: shape (C,).
        weight, bias: the affine scale (gamma) and shift (beta), shape (C,); default 1 and 0.

    Returns:
        (out, new_running_mean, new_running_var): out has the shape of x.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm expects x of shape (N, C) or (N, C, H, W), got {x.shape}")
    C = x.shape[1]

    def channel_vector(value: Optional[ArrayLike], name: str, default: float) -> np.ndarray:
        v = np.full(C, default) if value is None else np.array(value, dtype=np.float64)  # a copy
        if v.shape != (C,):
            raise ValueError(f"batch_norm expects {name} of shape ({C},) for x of shape {x.shape}, got {v.shape}")
        return v

    gamma, beta = channel_vector(weight, "weight", 1.0), channel_vector(bias, "bias", 0.0)
    if running_mean is None or running_var is None:
        if not training:
            raise ValueError("batch_norm in evaluation mode needs running_mean and running_var; "
                             "pass them, or use training=True to normalise with batch statistics")
        new_mean = new_var = None
    else:
        new_mean = channel_vector(running_mean, "running_mean", 0.0)
        new_var = channel_vector(running_var, "running_var", 1.0)

    out = np.empty_like(x)
    for c in range(C):
        values = x[:, c]  # (N,) or (N, H, W)
        if training:
            m = values.size
            if m <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training, got input size {x.shape}; "
                    f"use a batch with more than one value per channel, or training=False"
                )
            mean = values.sum() / m
            var = ((values - mean) ** 2).sum() / m  # biased: normalises the batch
            if new_mean is not None:
                unbiased_var = var * m / (m - 1)  # unbiased: estimates the population
                f = 1.0 / (num_batches_tracked + 1) if momentum is None else momentum
                new_mean[c] = (1 - f) * new_mean[c] + f * mean
                new_var[c] = (1 - f) * new_var[c] + f * unbiased_var
        else:
            mean, var = new_mean[c], new_var[c]
        out[:, c] = gamma[c] * (values - mean) / np.sqrt(var + eps) + beta[c]
    return out, new_mean, new_var
