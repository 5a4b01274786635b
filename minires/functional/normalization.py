"""Batch normalization: batch statistics in training, running statistics in evaluation.

For an input x of shape (N, C) or (N, C, *spatial) (images: (N, C, H, W)), each channel c is
normalised over its m = N * H * W values and then scaled and shifted:

    xhat = (x - mean_c) * inv_std_c,    inv_std_c = 1 / sqrt(var_c + eps)
    out  = gamma_c * xhat + beta_c

Training: mean_c and var_c are the batch's mean and its BIASED variance (divide by m), and the
running statistics, which are buffers and not inputs of the graph, move towards the batch in
place, with the UNBIASED variance (divide by m - 1):

    running = (1 - momentum) * running + momentum * batch

Evaluation: mean_c and var_c are the running statistics; the batch is never measured and
nothing is updated, so the output is an affine function of x.

The backward pass (derivation: docs/derivations/batch_norm.md), with sums over a channel's m values:

    dbeta  = sum(dout)                 dgamma = sum(dout * xhat)
    dx     = (1/m) * gamma * inv_std * (m * dout - sum(dout) - xhat * sum(dout * xhat))   (training)
    dx     = gamma * inv_std * dout                                                       (evaluation)

Channels never mix, so both passes run a few channels at a time (``_channel_blocks``), the CPU's
cores taking blocks in turn: on the CPU a block stays in cache through all the steps of the formula,
which then cost little more than reading x (or dout) once from memory. Each step writes into an
array it already has (``out=``): the forward allocates only its output, the backward only ``dx``.
The backward needs ``xhat``: it recomputes it from x, a block at a time, instead of keeping another
array of x's size.

A float16 x is normalised in float32, as in PyTorch: the square of a deviation of 256 or more
overflows float16. Each block is converted on its way in and rounded back on its way out; the
statistics may be float16 or float32 buffers. NaN and infinity propagate as in PyTorch (a NaN makes
its whole channel NaN in training), without NumPy warnings.

Derivation: docs/derivations/batch_norm.md.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy

from minires.autograd import Function
from minires.backend import Array, get_array_module, items_per_block
from minires.functional.arithmetic import check_same_dtype
from minires.parallel import for_each_chunk, get_num_threads, scratch

if TYPE_CHECKING:
    from minires.tensor import Tensor


#: From this size of x on, its channels are cut into at least one block per thread and the blocks are
#: shared among the threads; below it they run in turn on the calling thread, because handing them over
#: costs more than the second core saves. Training (about ten passes over each block, forward and backward)
#: pays from 2 MB, evaluation (two passes) from 4 MB: with 1 MB of x, training took 0.49 ms on one thread
#: against 0.56 on two, evaluation 0.06 against 0.12 (benchmarks/README.md, "Chunks and threads").
SHARED_BYTES = {"training": 2 << 20, "evaluation": 4 << 20}


def _channel_blocks(x: Array, training: bool) -> Tuple[List[Tuple[int, int]], bool]:
    """Consecutive ranges of channels ``(start, stop)``, and whether to share them among the threads
    (``minires.parallel.for_each_chunk``): on the CPU about 1 MB of x each, which stays in cache through
    every step of the formula (2x faster than each step over the whole batch), and at least one per
    thread once x is large enough to be shared (``SHARED_BYTES``); on a GPU one range of all of them.
    Channels never mix, so the ranges change no result."""
    C = x.shape[1]
    per_block = items_per_block(x, x.nbytes // max(1, C), C)
    share = isinstance(x, numpy.ndarray) and x.nbytes >= SHARED_BYTES["training" if training else "evaluation"]
    if share:
        per_block = min(per_block, -(-C // get_num_threads()))
    return [(c, min(c + per_block, C)) for c in range(0, C, per_block)] or [(0, 0)], share


# A block of c channels is handled as a matrix (N, c * pixels): one row per image, each channel's pixels
# side by side. Every step is then a pass along whole rows, with the per-channel numbers spread to one per
# pixel (``_per_pixel``): 1.5-1.7x faster than NumPy's broadcasting of a (1, c, 1, 1) vector over
# (N, c, H, W), whose inner loops are one image row long (benchmarks/README.md, "Chunks and threads").
# Maps of more than WIDE_MAP pixels keep each channel's pixels as an axis of its own, (N, c, pixels), with one
# number per channel: there a channel's pixels are a long row already, and spreading the numbers cost 9 %.
WIDE_MAP = 4096


def _block_shape(N: int, channels: int, pixels: int) -> Tuple[int, ...]:
    """The shape a block of ``channels`` channels is worked on in: (N, channels * pixels), or for maps of
    more than WIDE_MAP pixels (N, channels, pixels)."""
    return (N, channels * pixels) if pixels <= WIDE_MAP else (N, channels, pixels)


def _per_pixel(values: Array, pixels: int) -> Array:
    """(c,) -> what broadcasts over a block (``_block_shape``): each channel's number repeated at each of its
    pixels, (c * pixels,); or, for maps of more than WIDE_MAP pixels, one per channel, (c, 1)."""
    return values.repeat(pixels) if pixels <= WIDE_MAP else values[:, None]


def _channel_sums(block: Array, pixels: int) -> Array:
    """Each channel's sum of a block (``_block_shape``) -> (c,): first over the batch (whole rows added at
    once), then over each channel's pixels (pairwise). The same sums as NumPy's ``x.sum(axis=(0, 2, 3))``
    up to rounding, and 3 to 10x faster on small maps, where that sum's inner loops are short."""
    return block.sum(axis=0).reshape(-1, pixels).sum(axis=1)


def _compute_dtype(x: Array) -> Any:
    """The dtype the statistics are computed in: float32 for a float16 x, as in PyTorch (the square
    of a float16 deviation of 256 or more overflows to inf), else x's own dtype."""
    return numpy.dtype(numpy.float32) if x.dtype == numpy.float16 else x.dtype


def _update_running_stat(running: Array, batch: Array, momentum: float) -> None:
    """running <- (1 - momentum) * running + momentum * batch, in place on the buffer (rounded once
    to the buffer's dtype, which may be float16 while batch is float32)."""
    with numpy.errstate(invalid="ignore", over="ignore"):      # inf - inf is NaN, as in PyTorch
        running[...] = (1 - momentum) * running + momentum * batch


class BatchNorm(Function):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1).

    Inputs: x (N, C, ...), running_mean (C,), running_var (C,), weight = gamma (C,),
    bias = beta (C,); any of the last four may be None. Only x, weight and bias get gradients:
    the running statistics are buffers, updated in place when training.

    Derivation: docs/derivations/batch_norm.md.
    """

    def __init__(self, training: bool = False, momentum: float = 0.1, eps: float = 1e-5):
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x: Array, running_mean: Optional[Array], running_var: Optional[Array],
                weight: Optional[Array], bias: Optional[Array]) -> Array:
        xp = get_array_module(x)
        _check_arguments(x, running_mean, running_var, weight, bias, self.training)
        C = x.shape[1]
        dtype = _compute_dtype(x)                              # float32 for float16: see _compute_dtype
        gamma = xp.ones(C, dtype=dtype) if weight is None else weight.astype(dtype, copy=False)  # (C,)
        beta = xp.zeros(C, dtype=dtype) if bias is None else bias.astype(dtype, copy=False)      # (C,)
        if self.training and x.size == 0:                      # an empty batch: no statistics, and (as in
            mean, var = xp.zeros(C, dtype=dtype), xp.ones(C, dtype=dtype)    # PyTorch) no update either
        elif self.training:
            mean, var = xp.empty(C, dtype=dtype), xp.empty(C, dtype=dtype)   # (C,) each, filled below
        else:                                                  # (C,) each; a copy of the mean for backward
            mean, var = running_mean.astype(dtype, copy=True), running_var.astype(dtype, copy=False)
        inv_std = xp.empty(C, dtype=dtype)                     # (C,)
        N, pixels = x.shape[0], math.prod(x.shape[2:])         # pixels per channel: H * W (1 for (N, C))
        m = N * pixels                                         # values per channel
        out = xp.empty(x.shape, dtype=x.dtype)                 # (N, C, ...): the only array of x's size

        def normalize_block(k: int, start: int, stop: int) -> None:
            c, shape = slice(start, stop), _block_shape(N, stop - start, pixels)   # a few channels
            with numpy.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN, inf: as in PyTorch
                xc = x[:, c].reshape(shape).astype(dtype, copy=False)   # float32 for a float16 x
                # a view of out that the steps below write into; for float16, a float32 block copied in at the end
                y = out[:, c].reshape(shape) if dtype == x.dtype else xp.empty_like(xc)
                if self.training and x.size:
                    mean[c] = _channel_sums(xc, pixels) / m
                    xp.subtract(xc, _per_pixel(mean[c], pixels), out=y)      # x - mean
                    square = xp.square(y, out=scratch("batch_norm.square", y.shape, dtype, xp))
                    var[c] = _channel_sums(square, pixels) / m               # biased: divide by m
                    inv_std[c] = 1 / xp.sqrt(var[c] + self.eps)
                    y *= _per_pixel(gamma[c] * inv_std[c], pixels)           # gamma * xhat
                    y += _per_pixel(beta[c], pixels)                         # out = gamma * xhat + beta
                else:                       # evaluation: out = alpha * x + (beta - alpha * mean), two passes
                    inv_std[c] = 1 / xp.sqrt(var[c] + self.eps)              # (PyTorch's CPU kernel computes
                    alpha = gamma[c] * inv_std[c]                            # it in this form too)
                    xp.multiply(xc, _per_pixel(alpha, pixels), out=y)
                    y += _per_pixel(beta[c] - alpha * mean[c], pixels)
                if dtype != x.dtype:
                    out[:, c] = y.reshape(out[:, c].shape)                   # rounded to float16 once

        blocks, share = _channel_blocks(x, self.training)
        for_each_chunk(normalize_block, blocks, xp, share)                  # channel blocks, on every core
        if self.training and running_mean is not None and x.size:
            _update_running_stat(running_mean, mean, self.momentum)
            _update_running_stat(running_var, var * (m / (m - 1)), self.momentum)  # unbiased
        # Backward needs xhat. It keeps x (the graph holds it anyway) and recomputes xhat, a block at
        # a time, rather than keeping a second array of x's size alive until the backward pass.
        self.x, self.mean, self.inv_std, self.gamma = x, mean, inv_std, gamma
        self.param_dtype = x.dtype if weight is None else weight.dtype     # the dtype of dweight, dbias
        return out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION batch_norm
        xp = get_array_module(dout)
        C = dout.shape[1]
        m = dout.size // max(1, C)                             # values per channel: N * H * W
        scale = self.gamma * self.inv_std                      # (C,) gamma * inv_std
        dtype = self.inv_std.dtype                             # as in the forward: float32 for float16
        dbias, dweight = xp.empty(C, dtype=dtype), xp.empty(C, dtype=dtype)  # (C,) each
        N, pixels = dout.shape[0], math.prod(dout.shape[2:])   # pixels per channel: H * W (1 for (N, C))
        dx = xp.empty(dout.shape, dtype=dout.dtype)            # (N, C, ...)

        def backward_block(k: int, start: int, stop: int) -> None:
            c, shape = slice(start, stop), _block_shape(N, stop - start, pixels)   # a few channels
            with numpy.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN, inf: as in PyTorch
                g = dout[:, c].reshape(shape).astype(dtype, copy=False)  # float32 for a float16 dout
                d = dx[:, c].reshape(shape) if dtype == dx.dtype else xp.empty_like(g)  # a view of dx, or float32
                xhat = xp.subtract(self.x[:, c].reshape(shape), _per_pixel(self.mean[c], pixels),
                                   out=scratch("batch_norm.xhat", g.shape, dtype, xp))
                xhat *= _per_pixel(self.inv_std[c], pixels)                  # xhat, as in the forward
                dbias[c] = _channel_sums(g, pixels)                          # dbeta  = sum(dout)
                dweight[c] = _channel_sums(xp.multiply(g, xhat, out=d), pixels)  # dgamma = sum(dout * xhat)
                if not self.needs_input_grad[0]:
                    return
                if self.training:
                    # dx = (1/m) * gamma * inv_std * (m * dout - sum(dout) - xhat * sum(dout * xhat))
                    #    = scale * (dout - mean(dout) - xhat * mean(dout * xhat)),   scale = gamma * inv_std
                    xp.multiply(xhat, _per_pixel(dweight[c] / m, pixels), out=d)  # xhat * mean(dout * xhat)
                    d += _per_pixel(dbias[c] / m, pixels)                    #   + mean(dout)
                    xp.subtract(g, d, out=d)                                 # dout - both
                    d *= _per_pixel(scale[c], pixels)
                else:
                    xp.multiply(g, _per_pixel(scale[c], pixels), out=d)      # the mean and inv_std are constants
                if dtype != dx.dtype:
                    dx[:, c] = d.reshape(dx[:, c].shape)                     # rounded to float16 once

        blocks, share = _channel_blocks(dout, self.training)
        for_each_chunk(backward_block, blocks, xp, share)                   # channel blocks, on every core
        dweight, dbias = dweight.astype(self.param_dtype, copy=False), dbias.astype(self.param_dtype, copy=False)
        return (dx if self.needs_input_grad[0] else None, None, None,
                dweight if self.needs_input_grad[3] else None,
                dbias if self.needs_input_grad[4] else None)
        # END SOLUTION


def _check_arguments(x: Array, running_mean: Optional[Array], running_var: Optional[Array],
                  weight: Optional[Array], bias: Optional[Array], training: bool) -> None:
    """Clear errors for the mistakes a caller can make; silent on valid input."""
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects x of shape (N, C) or (N, C, *spatial), e.g. (N, C, H, W), "
                         f"got {tuple(x.shape)}; add a batch axis with x.reshape(1, -1) if it is one sample")
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm expects a floating-point x, got {x.dtype}; convert it with x.to('float32')")
    C = x.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if v is None:
            continue
        if tuple(v.shape) != (C,):
            raise ValueError(f"batch_norm expects {name} of shape ({C},) for x of shape {tuple(x.shape)} "
                             f"(one value per channel, axis 1), got {tuple(v.shape)}")
        if not (x.dtype == numpy.float16 and v.dtype == numpy.float32):   # PyTorch's float16 x, float32 statistics
            check_same_dtype(f"batch_norm ({name} and x)", x, v)
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm got only one of running_mean and running_var; pass both, or neither "
                         "(training=True without running statistics)")
    if running_mean is None and not training:
        raise ValueError("batch_norm with training=False normalises with running_mean and running_var, "
                         "but they are None; pass them, or use training=True to normalise with batch statistics")
    if training and x.size // max(C, 1) == 1:                  # an empty batch is fine, as in PyTorch
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{tuple(x.shape)}; the batch variance needs at least two values per channel: "
                         f"use a larger batch, or training=False")


def batch_norm(x: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: Optional[float] = 0.1, eps: float = 1e-5, *,
               num_batches_tracked: Any = None) -> "Tensor":
    """PyTorch's ``F.batch_norm``: normalise each channel (axis 1) of x, then scale and shift.

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W), float16, float32 or float64. A float16 x is
            normalised in float32, as in PyTorch (its squares would overflow float16), and the
            output rounded to float16; its statistics, weight and bias may be float16 or float32.
        running_mean, running_var: (C,) buffers, Tensors or arrays of x's dtype. With
            ``training=True`` they are updated IN PLACE (``running = (1 - momentum) * running +
            momentum * batch``, the unbiased variance for ``running_var``), or may both be None
            (no running statistics kept). With ``training=False`` they are required, and read only.
        weight, bias: gamma and beta, (C,); None means 1 and 0.
        training: True normalises with the batch mean and biased variance; False with the
            running statistics (evaluation). ``no_grad()`` does not change this.
        momentum: the weight of the new batch in the running statistics (0.1: keep 90%), or
            None for a cumulative average of every batch seen: that needs the count of batches,
            so pass it as ``num_batches_tracked``.
        eps: added to the variance before the square root.
        num_batches_tracked: (keyword only; not in PyTorch's functional form, which leaves the
            count to the module) a 0-d integer Tensor or array counting the training batches.
            When given, training adds 1 to it in place, and ``momentum=None`` then uses
            ``momentum = 1 / num_batches_tracked`` (1 for the first batch, 1/2 for the second, ...),
            which makes the running statistics the plain average of all batches.

    Returns:
        a Tensor shaped like x, of x's dtype. Derivation: docs/derivations/batch_norm.md.
    """
    if momentum is not None and (not isinstance(momentum, numbers.Real) or isinstance(momentum, bool)):
        raise TypeError(f"batch_norm expects momentum to be a number such as 0.1, or None, got {momentum!r}")
    if training and running_mean is not None and num_batches_tracked is not None:
        count = getattr(num_batches_tracked, "data", num_batches_tracked)
        count += 1                                              # count this batch, in place
        if momentum is None:
            momentum = 1.0 / int(count)                         # cumulative average
    if momentum is None:
        if training and running_mean is not None:
            raise ValueError(
                "batch_norm got momentum=None, the cumulative average of all batches, but no "
                "num_batches_tracked to count them; pass num_batches_tracked= (a 0-d integer tensor "
                "that batch_norm increments), or a number such as momentum=0.1")
        momentum = 0.0                                          # nothing is updated: any factor does
    return BatchNorm.apply(x, running_mean, running_var, weight, bias,
                           training=bool(training), momentum=float(momentum), eps=float(eps))
