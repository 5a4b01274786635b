"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d.

Max and average pooling slide a (kH, kW) window over each channel, as a convolution does, but
reduce each window on its own instead of multiplying it by a weight. Both reuse ``im2col``:
it lays every window out along two axes, (C, kH, kW, N, oH, oW), so that

    max pooling     = the max of each window,   backward: ``dout`` to the window's first maximum;
    average pooling = the sum of each window / its divisor,   backward: ``dout / divisor`` to all of it;

and both backward passes hand their per-window gradients to ``col2im``, which adds them back where
windows overlap. Adaptive average pooling is different: its bins follow from the input and the
output size, and it is two small matrix products, ``out = A_h @ x @ A_w^T``.

Every operation takes (N, C, H, W) or, as in PyTorch, a single (C, H, W) image.
Derivations: docs/derivations/pooling.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

from minires.autograd import Function
from minires.backend import Array, get_array_module
from minires.functional.im2col import Pair, col2im, im2col, pair, pool_output_size

if TYPE_CHECKING:
    from minires.tensor import Tensor

IntOrPair = Union[int, Tuple[int, int]]


# ------------------------------------------------------------------------------- shared checks

def _as_batch(name: str, x: Array) -> Array:
    """(N, C, H, W) as it is, (C, H, W) with a batch axis of 1 added; anything else is an error."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} expects x of shape (N, C, H, W) or (C, H, W), got a {x.ndim}-D input of "
                         f"shape {tuple(x.shape)}; for one single-channel image use x.reshape(1, 1, H, W)")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} works on floating-point inputs, got {x.dtype}; convert with x.to('float32')")
    if min(x.shape[-3:]) < 1:
        raise ValueError(f"{name} needs non-empty channel and spatial axes, got shape {tuple(x.shape)}")
    return x if x.ndim == 4 else x[None]


def _window_params(name: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> tuple:
    """kernel, stride (defaults to the kernel), padding, dilation as checked pairs."""
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    p, d = pair(padding, "padding"), pair(dilation, "dilation")
    if min(*k, *s, *d) < 1 or min(p) < 0:
        raise ValueError(f"{name} needs kernel_size, stride, dilation >= 1 and padding >= 0, got "
                         f"kernel_size={k}, stride={s}, padding={p}, dilation={d}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:   # PyTorch's rule: half the kernel, dilation ignored
        raise ValueError(f"{name}: pad should be smaller than or equal to half of kernel size, got "
                         f"padding={p} for kernel_size={k}; use padding <= {(k[0] // 2, k[1] // 2)}")
    return k, s, p, d


def _output_size(name: str, x_shape: tuple, k: Pair, s: Pair, p: Pair, d: Pair, ceil_mode: bool) -> Pair:
    """(oH, oW) by ``pool_output_size``; an error when the window does not fit at all."""
    H, W = x_shape[2], x_shape[3]
    out = (pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode),
           pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode))
    if min(out) < 1:
        raise ValueError(f"{name}: output size {out} is too small: the window (kernel_size={k}, dilation={d}) "
                         f"does not fit the input of size {(H, W)} with padding={p}; use a larger input, "
                         f"more padding or a smaller kernel")
    return out


# ------------------------------------------------------------------------------- max pooling

class MaxPool2d(Function):
    """out[n, c, i, j] = max_{u, v} x_pad[n, c, i*sH + u*dH, j*sW + v*dW]   (x padded with -inf);

    dx[n, c, r, q] = sum of dout[n, c, i, j] over the windows (i, j) whose winner is x[n, c, r, q],
    the winner being the window's FIRST maximum in row-major order (strict ``>``, as in PyTorch).
    """

    def __init__(self, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
                 dilation: IntOrPair = 1, ceil_mode: bool = False):
        self.kernel, self.stride, self.padding, self.dilation = _window_params(
            "max_pool2d", kernel_size, stride, padding, dilation)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        x4 = _as_batch("max_pool2d", x)
        N, C, H, W = x4.shape
        (kh, kw), geometry = self.kernel, (self.kernel, self.stride, self.padding, self.dilation)
        oh, ow = _output_size("max_pool2d", x4.shape, *geometry, self.ceil_mode)
        cols = im2col(x4, *geometry, (oh, ow), pad_value=-float("inf"))     # (C, kH, kW, N, oH, oW)
        cols = cols.reshape(C, kh * kw, N, oh, ow)                         # (C, kH*kW, N, oH, oW)
        out = cols.max(axis=1)                                             # (C, N, oH, oW)
        # The winner is the FIRST offset k (row-major in the window) where the window holds its
        # maximum: scan k from last to first, so the earliest match is written last. That is
        # cols.argmax(axis=1), but twice as fast: NumPy's argmax is slow over a short axis.
        # Backward needs only the winning offset: one byte per output for kernels up to 16x16.
        winner = xp.zeros(out.shape, dtype=xp.uint8 if kh * kw <= 256 else xp.int32)  # (C, N, oH, oW)
        for k in reversed(range(kh * kw)):
            xp.copyto(winner, k, where=cols[:, k] == out)
        # Padding is -inf, so it ties with the maximum only in a window whose real elements are
        # all -inf; the scan may then pick a padding position, but PyTorch picks the window's
        # first REAL element. ``first_real`` is that offset, found from a mask of real pixels.
        # (A window with no real element at all keeps its padding winner: col2im drops it.)
        real = im2col(xp.ones((1, 1, H, W), dtype=x.dtype), *geometry, (oh, ow))   # (1, kH, kW, 1, oH, oW)
        first_real = real.reshape(kh * kw, oh, ow).argmax(axis=0)                # (oH, oW)
        self.winner = xp.where(out == -xp.inf, first_real, winner).astype(winner.dtype)  # (C, N, oH, oW)
        self.x_shape, self.unbatched = x4.shape, x.ndim == 3
        out = xp.ascontiguousarray(out.transpose(1, 0, 2, 3))              # (N, C, oH, oW)
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                     # (N, C, oH, oW)
        N, C, oh, ow = dout4.shape
        kh, kw = self.kernel
        offsets = xp.arange(kh * kw).reshape(1, kh * kw, 1, 1, 1)
        hit = offsets == self.winner[:, None]                              # (C, kH*kW, N, oH, oW): one True per window
        dcols = hit * dout4.transpose(1, 0, 2, 3)[:, None]                 # (C, kH*kW, N, oH, oW)
        dcols = dcols.reshape(C, kh, kw, N, oh, ow)                        # (C, kH, kW, N, oH, oW)
        dx = col2im(dcols, self.x_shape, self.kernel, self.stride, self.padding, self.dilation)  # (N, C, H, W)
        return (dx[0] if self.unbatched else dx,)


# ------------------------------------------------------------------------------- average pooling

def _window_counts(xp: Any, size: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> Array:
    """How many positions of each window count, along one axis (PyTorch's divisor rule).

    Window i covers padded positions start = i*s - p up to start + k. With count_include_pad the
    padding counts but the part of a ceil_mode window hanging past the padded input does not;
    without it only the real positions [0, size) count.
    """
    start = xp.arange(out) * s - p                                         # (out,)
    end = xp.minimum(start + k, size + p)                                  # clipped to the padded input
    if count_include_pad:
        return end - start
    return xp.minimum(end, size) - xp.maximum(start, 0)                    # clipped to the real input


class AvgPool2d(Function):
    """out[n, c, i, j] = (sum of x_pad[n, c] over window (i, j)) / divisor[i, j]   (x padded with 0);

    linear, so dx = col2im(dout / divisor copied to every position of its window).
    """

    def __init__(self, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Optional[int] = None):
        self.kernel, self.stride, self.padding, _ = _window_params("avg_pool2d", kernel_size, stride, padding, 1)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override == 0):
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int or None, got {divisor_override!r}")
        self.divisor_override = divisor_override

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        x4 = _as_batch("avg_pool2d", x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        geometry = (self.kernel, self.stride, self.padding, (1, 1))
        oh, ow = _output_size("avg_pool2d", x4.shape, *geometry, self.ceil_mode)
        if self.divisor_override is not None:
            divisor = xp.full((oh, ow), self.divisor_override, dtype=x.dtype)
        else:
            count_h = _window_counts(xp, x4.shape[2], kh, sh, ph, oh, self.count_include_pad)  # (oH,)
            count_w = _window_counts(xp, x4.shape[3], kw, sw, pw, ow, self.count_include_pad)  # (oW,)
            divisor = (count_h[:, None] * count_w[None, :]).astype(x.dtype)                    # (oH, oW)
        cols = im2col(x4, *geometry, (oh, ow))                             # (C, kH, kW, N, oH, oW)
        out = cols.sum(axis=(1, 2)) / divisor                              # (C, N, oH, oW)
        self.divisor, self.x_shape, self.unbatched = divisor, x4.shape, x.ndim == 3
        out = xp.ascontiguousarray(out.transpose(1, 0, 2, 3))              # (N, C, oH, oW)
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                     # (N, C, oH, oW)
        N, C, oh, ow = dout4.shape
        kh, kw = self.kernel
        share = dout4.transpose(1, 0, 2, 3) / self.divisor                 # (C, N, oH, oW)
        dcols = xp.broadcast_to(share[:, None, None], (C, kh, kw, N, oh, ow))  # (C, kH, kW, N, oH, oW), no copy
        dx = col2im(dcols, self.x_shape, self.kernel, self.stride, self.padding, (1, 1))  # (N, C, H, W)
        return (dx[0] if self.unbatched else dx,)


# ------------------------------------------------------------------------------- adaptive average pooling

def _averaging_matrix(xp: Any, size: int, out: int, dtype: Any) -> Array:
    """A (out, size) with A[i, r] = 1 / len(bin i) for r in bin i = [floor(i*size/out), ceil((i+1)*size/out))."""
    i = xp.arange(out).reshape(out, 1)
    r = xp.arange(size).reshape(1, size)
    start = (i * size) // out                                              # (out, 1)
    end = ((i + 1) * size + out - 1) // out                                # (out, 1): a ceiling in integers
    inside = (r >= start) & (r < end)                                      # (out, size)
    return (inside / (end - start)).astype(dtype)


def _adaptive_size(output_size: Any, H: int, W: int) -> Pair:
    """output_size as (oH, oW): an int, or a pair whose None entries keep that input size."""
    sizes = (output_size, output_size) if isinstance(output_size, int) else output_size
    if (isinstance(sizes, (tuple, list)) and len(sizes) == 2
            and all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in sizes)):
        return (H if sizes[0] is None else sizes[0], W if sizes[1] is None else sizes[1])
    raise ValueError(f"adaptive_avg_pool2d expects output_size as a positive int or a pair of positive ints "
                     f"(None keeps that input size), got {output_size!r}")


class AdaptiveAvgPool2d(Function):
    """out[n, c] = A_h @ x[n, c] @ A_w^T, A_h (oH, H) and A_w (oW, W) the averaging matrices;

    linear, so dx[n, c] = A_h^T @ dout[n, c] @ A_w.  output_size 1 is the plain mean over (H, W).
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
            out = x4.mean(axis=(2, 3), keepdims=True)                      # (N, C, 1, 1)
        else:
            self.A_h = _averaging_matrix(xp, H, oh, x.dtype)               # (oH, H)
            self.A_w = _averaging_matrix(xp, W, ow, x.dtype)               # (oW, W)
            out = self.A_h @ x4 @ self.A_w.T                               # (N, C, oH, oW)
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                     # (N, C, oH, oW)
        N, C, H, W = self.x_shape
        if self.global_pool:
            dx = xp.broadcast_to(dout4 / (H * W), self.x_shape).copy()     # (N, C, H, W)
        else:
            dx = self.A_h.T @ dout4 @ self.A_w                             # (N, C, H, W)
        return (dx[0] if self.unbatched else dx,)


# ------------------------------------------------------------------------------- PyTorch's functions

def max_pool2d(x: Any, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
               dilation: IntOrPair = 1, ceil_mode: bool = False) -> "Tensor":
    """PyTorch's ``F.max_pool2d``: the max of each window, padding counts as -inf.

    ``stride`` defaults to ``kernel_size``; ``padding`` may be at most half the kernel; ``ceil_mode``
    rounds the output size up, dropping a last window that would start in the right padding.
    The gradient of each window goes to its first maximum (row-major); overlapping windows add up.
    """
    return MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding,
                           dilation=dilation, ceil_mode=ceil_mode)


def avg_pool2d(x: Any, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> "Tensor":
    """PyTorch's ``F.avg_pool2d``: the sum of each window (zero padding) over its divisor.

    The divisor counts the window's positions inside the padded input (``count_include_pad=True``)
    or only its real input positions (``False``); ``divisor_override`` replaces it with a constant.
    """
    return AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                           count_include_pad=count_include_pad, divisor_override=divisor_override)


def adaptive_avg_pool2d(x: Any, output_size: Union[int, Sequence[Optional[int]]]) -> "Tensor":
    """PyTorch's ``F.adaptive_avg_pool2d``: average bins [floor(i*H/oH), ceil((i+1)*H/oH)) to any output size.

    ``output_size`` is an int or an (oH, oW) pair; None keeps that input size. Bins may overlap,
    and the output may be larger than the input. ``output_size=1`` is global average pooling.
    """
    return AdaptiveAvgPool2d.apply(x, output_size=output_size)
