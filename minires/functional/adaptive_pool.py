"""Adaptive average pooling: ``adaptive_avg_pool2d``, PyTorch's bins for any output size.

Unlike max and average pooling (pooling.py), the windows are not given: output row i averages the
input rows of bin i = [floor(i*H/oH), ceil((i+1)*H/oH)), and likewise for columns, so bins may overlap
and the output may be larger than the input. Averaging rows and then columns is two small matrix
products, ``out = A_h @ x @ A_w^T`` with A[i, r] = 1/len(bin i) for r in bin i, and its backward is
``dx = A_h^T @ dout @ A_w``. That holds for a finite input; a NaN or an infinity would be multiplied by
the zeros of every other bin (0 * NaN = NaN), so then each bin is summed on its own instead.

Takes (N, C, H, W) or, as in PyTorch, a single (C, H, W) image.

Derivation: docs/derivations/pooling.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import numpy

from minires.autograd import Function
from minires.backend import Array, get_array_module
from minires.functional.im2col import Pair, is_int
from minires.functional.pooling import _as_batch

if TYPE_CHECKING:
    from minires.tensor import Tensor


def _averaging_matrix(xp: Any, size: int, out: int, dtype: Any) -> Array:
    """A (out, size) with A[i, r] = 1 / len(bin i) for r in bin i = [floor(i*size/out), ceil((i+1)*size/out))."""
    i = xp.arange(out).reshape(out, 1)
    r = xp.arange(size).reshape(1, size)
    start = (i * size) // out                                              # (out, 1)
    end = ((i + 1) * size + out - 1) // out                                # (out, 1): a ceiling in integers
    inside = (r >= start) & (r < end)                                      # (out, size)
    return (inside / (end - start)).astype(dtype)


def _bins(size: int, out: int) -> List[Tuple[int, int]]:
    """The (start, end) of each bin i = [floor(i*size/out), ceil((i+1)*size/out)) along one axis."""
    return [((i * size) // out, ((i + 1) * size + out - 1) // out) for i in range(out)]


def _bin_means(x: Array, bins: List[Tuple[int, int]], axis: int) -> Array:
    """The mean of each bin of x along ``axis`` (-2 or -1), stacked on that axis: a sum over the bin
    alone, so a NaN or an infinity reaches only the bins that hold it (A @ x would multiply it by the
    zeros of every other bin: 0 * NaN = NaN)."""
    xp = get_array_module(x)
    with numpy.errstate(invalid="ignore", over="ignore"):        # inf - inf is NaN, as in PyTorch
        means = [xp.moveaxis(x, axis, 0)[start:end].sum(axis=0) / (end - start) for start, end in bins]
    return xp.stack(means, axis=axis)


def _add_bin_shares(dout: Array, bins: List[Tuple[int, int]], size: int, axis: int) -> Array:
    """The transpose of ``_bin_means``: entry i of ``dout`` along ``axis``, over the size of its bin,
    ADDED onto every position of bin i (bins overlap: their shares add up); the other axes as they are."""
    xp = get_array_module(dout)
    shape = list(dout.shape)
    shape[axis] = size
    grad = xp.zeros(shape, dtype=dout.dtype)
    moved = xp.moveaxis(grad, axis, 0)                            # a view: bin axis first
    shares = xp.moveaxis(dout, axis, 0)
    with numpy.errstate(invalid="ignore", over="ignore"):         # inf + -inf is NaN, as in PyTorch
        for i, (start, end) in enumerate(bins):
            moved[start:end] += shares[i] / (end - start)
    return grad


def _adaptive_size(output_size: Any, H: int, W: int) -> Pair:
    """output_size as (oH, oW): an int, or a pair whose None entries keep that input size."""
    sizes = (output_size, output_size) if is_int(output_size) else output_size
    if (isinstance(sizes, (tuple, list)) and len(sizes) == 2
            and all(v is None or (is_int(v) and v >= 1) for v in sizes)):
        return (H if sizes[0] is None else int(sizes[0]), W if sizes[1] is None else int(sizes[1]))
    raise ValueError(f"adaptive_avg_pool2d expects output_size as a positive int or a pair of positive ints "
                     f"(None keeps that input size), got {output_size!r}")


class AdaptiveAvgPool2d(Function):
    """out[n, c] = A_h @ x[n, c] @ A_w^T, A_h (oH, H) and A_w (oW, W) the averaging matrices;

    linear, so dx[n, c] = A_h^T @ dout[n, c] @ A_w.  output_size 1 is the plain mean over (H, W).
    A NaN or an infinity (in x, or in dout) goes only into its own bins, as in PyTorch: the matrix
    products would multiply it by zeros, so such arrays are summed bin by bin instead.

    Derivation: docs/derivations/pooling.md.
    """

    def __init__(self, output_size: Union[int, Sequence[Optional[int]]]):
        self.output_size = output_size

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        x4 = _as_batch("adaptive_avg_pool2d", x)
        H, W = x4.shape[2:]
        oh, ow = _adaptive_size(self.output_size, H, W)
        self.x_shape, self.unbatched = x4.shape, x.ndim == 3
        self.global_pool = (oh, ow) == (1, 1)
        if self.global_pool:                                               # the mean: ResNet's fast path
            with numpy.errstate(invalid="ignore", over="ignore"):          # inf - inf is NaN, as in PyTorch
                out = x4.mean(axis=(2, 3), keepdims=True)                  # (N, C, 1, 1)
        else:
            self.A_h = _averaging_matrix(xp, H, oh, x.dtype)               # (oH, H)
            self.A_w = _averaging_matrix(xp, W, ow, x.dtype)               # (oW, W)
            if xp.isfinite(x4).all():                                      # the common case: two matrix products
                out = self.A_h @ x4 @ self.A_w.T                           # (N, C, oH, oW)
            else:                                                          # 0 * NaN is NaN: sum each bin alone
                out = _bin_means(_bin_means(x4, _bins(H, oh), -2), _bins(W, ow), -1)   # (N, C, oH, oW)
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION adaptive_avg_pool2d
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                     # (N, C, oH, oW)
        N, C, H, W = self.x_shape
        if self.global_pool:
            dx = xp.broadcast_to(dout4 / (H * W), self.x_shape).copy()     # (N, C, H, W)
        elif xp.isfinite(dout4).all():
            dx = self.A_h.T @ dout4 @ self.A_w                             # (N, C, H, W)
        else:                                                              # a NaN in dout reaches only its bins
            oh, ow = dout4.shape[2:]
            dx = _add_bin_shares(_add_bin_shares(dout4, _bins(W, ow), W, -1), _bins(H, oh), H, -2)
        return (dx[0] if self.unbatched else dx,)
        # END SOLUTION


def adaptive_avg_pool2d(x: Any, output_size: Union[int, Sequence[Optional[int]]]) -> "Tensor":
    """PyTorch's ``F.adaptive_avg_pool2d``: average bins [floor(i*H/oH), ceil((i+1)*H/oH)) to any output size.

    ``output_size`` is an int or an (oH, oW) pair; None keeps that input size. Bins may overlap,
    and the output may be larger than the input. ``output_size=1`` is global average pooling.
    """
    return AdaptiveAvgPool2d.apply(x, output_size=output_size)
