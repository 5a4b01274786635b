"""Pooling: max_pool2d, avg_pool2d (adaptive_avg_pool2d is in adaptive_pool.py).

Max and average pooling slide a (kH, kW) window over each channel, as a convolution does, but
reduce each window on its own instead of multiplying it by a weight. Entry (i, j) of every window,
over the whole output grid, is one strided slab of the padded input (``window_slices``: the slabs
that ``im2col`` copies into its columns), so both loop over the kH * kW kernel offsets, one whole
slab at a time, and never build the kH*kW-times larger column buffer:

    max pooling      out = the running maximum of the slabs, remembering which offset won;
                     backward: ``dout`` goes back through the slab of the offset that won;
    average pooling  out = (the sum of the slabs) / divisor;
                     backward: ``dout / divisor`` goes back through every slab;

each backward ADDS into the padded input gradient, so overlapping windows add up. Channels never
mix: the (N*C) planes are pooled a block at a time (``_plane_blocks``), small enough on the CPU to
stay in cache while all kH*kW offsets pass over them, the CPU's cores taking blocks in turn.

Every operation takes (N, C, H, W) or, as in PyTorch, a single (C, H, W) image.

Derivation: docs/derivations/pooling.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, Union

import numpy

from minires.autograd import Function
from minires.backend import Array, get_array_module, items_per_block
from minires.functional.im2col import Pair, is_int, padded_shape, pair, pool_output_size, window_slices
from minires.parallel import for_each_chunk, scratch

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


def _plane_blocks(x: Array, planes: int, padded_plane_bytes: int) -> List[Tuple[int, int]]:
    """Split ``planes`` independent (H, W) planes into consecutive blocks ``(start, stop)``: on the CPU,
    blocks of about 1 MB of padded input, which stay in cache while all kH*kW offsets pass over them
    (2-3x faster than passing whole-batch slabs through main memory 9 times); on a GPU, one block."""
    per_block = items_per_block(x, padded_plane_bytes, planes)
    return [(start, min(start + per_block, planes))
            for start in range(0, max(1, planes), per_block)]               # an empty batch: one empty block


def _for_each_padded_block(planes: Array, padded_size: Pair, padding: Pair, fill: float,
                           work: Callable[[slice, Array], None]) -> None:
    """``work(block, x_pad)`` for consecutive blocks of the (P, H, W) planes, the blocks shared among the
    CPU's cores (``minires.parallel``): x_pad (b, Hp, Wp) holds ``planes[block]`` inside a border of
    ``fill`` (the padding, and any rows or columns a ceil_mode window needs past it), in a scratch
    buffer of the thread that runs the block."""
    xp = get_array_module(planes)
    P, H, W = planes.shape
    blocks = _plane_blocks(planes, P, padded_size[0] * padded_size[1] * planes.itemsize)

    def pad_block(k: int, start: int, stop: int) -> None:
        x_pad = scratch("pool.x_pad", (stop - start,) + tuple(padded_size), planes.dtype, xp)  # (b, Hp, Wp)
        x_pad.fill(fill)
        x_pad[:, padding[0]:padding[0] + H, padding[1]:padding[1] + W] = planes[start:stop]
        work(slice(start, stop), x_pad)

    for_each_chunk(pad_block, blocks, xp)


def _add_back_through_windows(slab_grad: Callable[[slice, int], Array], x_shape: tuple, geometry: tuple,
                              out_size: Pair, like: Array) -> Array:
    """dx (N, C, H, W) of a pooling: for each block of planes, ``slab_grad(block, k)`` (b, oH, oW), the
    gradient that kernel offset k sends back, is ADDED onto that offset's slab of a zero-padded gradient
    (windows overlap when stride < kernel: their shares pile up); then the padding is cropped away. The
    blocks are shared among the CPU's cores, like the forward's."""
    xp = get_array_module(like)
    N, C, H, W = x_shape
    kernel, stride, (ph, pw), dilation = geometry
    Hp, Wp = padded_shape(x_shape, *geometry, out_size)
    dx = xp.empty((N * C, H, W), dtype=like.dtype)                          # (N*C, H, W)
    blocks = _plane_blocks(like, N * C, Hp * Wp * like.itemsize)

    def add_back(k: int, start: int, stop: int) -> None:
        block = slice(start, stop)
        grad = scratch("pool.grad", (stop - start, Hp, Wp), like.dtype, xp)  # (b, Hp, Wp)
        grad.fill(0)
        with numpy.errstate(invalid="ignore"):                              # inf + -inf is NaN, as in PyTorch
            for i, j, window in window_slices(kernel, stride, dilation, out_size):
                grad[window] += slab_grad(block, i * kernel[1] + j)          # (b, oH, oW) onto a strided view
        dx[block] = grad[:, ph:ph + H, pw:pw + W]

    for_each_chunk(add_back, blocks, xp)
    return dx.reshape(x_shape)


# ------------------------------------------------------------------------------- max pooling

def _first_real_offset(xp: Any, size: int, k: int, s: int, p: int, d: int, out: int) -> Array:
    """Along one axis, the first kernel offset u of each window i that falls inside the input
    (position i*s - p + u*d in [0, size)); 0 for a window that lies wholly in the padding."""
    position = xp.arange(out)[:, None] * s - p + xp.arange(k)[None, :] * d  # (out, k)
    return ((position >= 0) & (position < size)).argmax(axis=1)            # (out,): argmax = first True


class MaxPool2d(Function):
    """out[n, c, i, j] = max_{u, v} x_pad[n, c, i*sH + u*dH, j*sW + v*dW]   (x padded with -inf);

    dx[n, c, r, q] = sum of dout[n, c, i, j] over the windows (i, j) whose winner is x[n, c, r, q],
    the winner being the window's FIRST maximum in row-major order (strict ``>``, as in PyTorch).

    Derivation: docs/derivations/pooling.md.
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
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        geometry = (self.kernel, self.stride, self.padding, self.dilation)
        oh, ow = _output_size("max_pool2d", x4.shape, *geometry, self.ceil_mode)
        # PyTorch's rule for a window whose real elements are all -inf: its gradient goes to its first
        # REAL element, never to the padding. So each window starts with that offset as its winner.
        first_real = (_first_real_offset(xp, H, kh, sh, ph, dh, oh)[:, None] * kw
                      + _first_real_offset(xp, W, kw, sw, pw, dw, ow)[None, :])   # (oH, oW)
        planes = xp.reshape(x4, (N * C, H, W))                             # (N*C, H, W): channels never mix
        out = xp.empty((N * C, oh, ow), dtype=x.dtype)                     # (N*C, oH, oW)
        # Backward needs only the winning offset: one byte per output for kernels up to 16x16. Under no_grad
        # no backward will run, and only the maximum is computed (1.8-2.1x faster here: benchmarks/README.md).
        keep = self.backward_possible
        winner = xp.empty((N * C, oh, ow), dtype=xp.uint8 if kh * kw <= 256 else xp.int32) if keep else None
        Hp, Wp = padded_shape(x4.shape, *geometry, (oh, ow))
        def pool_block(block: slice, x_pad: Array) -> None:                 # x_pad (b, Hp, Wp)
            best = out[block]                                              # (b, oH, oW), filled in place
            best.fill(-float("inf"))
            if keep:
                won = winner[block]                                        # (b, oH, oW), filled in place
                won[...] = first_real
            for i, j, window in window_slices(self.kernel, self.stride, self.dilation, (oh, ow)):
                k = i * kw + j                                             # the offset's number, row-major
                if not keep:                                               # the maximum only (NaN wins too)
                    xp.maximum(best, x_pad[window], out=best)
                    continue
                candidate = xp.ascontiguousarray(x_pad[window])            # (b, oH, oW): entry k of every window
                # strict: a tie keeps the earlier offset; a NaN always wins (the last NaN, as PyTorch's `||
                # isnan(val)`), so its window's output is NaN and its gradient goes to the NaN
                hit = (candidate > best) | xp.isnan(candidate)
                xp.maximum(best, candidate, out=best)
                xp.maximum(won, hit * won.dtype.type(k), out=won)          # k where hit: it beats every earlier k

        _for_each_padded_block(planes, (Hp, Wp), self.padding, -float("inf"), pool_block)
        # The padding is -inf and the test strict, so the padding never wins, and neither does a real
        # -inf: a window of -inf keeps its first real offset. A window lying wholly in the padding
        # (possible with dilation) keeps offset 0, in the padding too: backward crops its gradient away.
        self.winner, self.x_shape, self.unbatched = winner, x4.shape, x.ndim == 3
        out = out.reshape(N, C, oh, ow)                                    # (N, C, oH, oW)
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION max_pool2d
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                     # (N, C, oH, oW)
        N, C, oh, ow = dout4.shape
        douts = xp.reshape(dout4, (N * C, oh, ow))                         # (N*C, oH, oW)
        # dout * (winner == k) is where(winner == k, dout, 0) unless dout holds an inf or a NaN (inf * 0 is
        # NaN, where the selection gives 0, as PyTorch), and 7x faster in NumPy (no branch per element).
        finite = bool(xp.isfinite(douts).all())

        def slab_grad(block: slice, k: int) -> Array:                      # (b, oH, oW): dout where k won, else 0
            if finite:
                return douts[block] * (self.winner[block] == k)
            return xp.where(self.winner[block] == k, douts[block], 0)      # not dout * mask: inf * 0 is NaN

        geometry = (self.kernel, self.stride, self.padding, self.dilation)
        dx = _add_back_through_windows(slab_grad, self.x_shape, geometry, (oh, ow), dout)  # (N, C, H, W)
        return (dx[0] if self.unbatched else dx,)
        # END SOLUTION


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

    linear, so dx = the transpose: dout / divisor added back onto every position of its window.

    Derivation: docs/derivations/pooling.md.
    """

    def __init__(self, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Optional[int] = None):
        self.kernel, self.stride, self.padding, _ = _window_params("avg_pool2d", kernel_size, stride, padding, 1)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        if divisor_override is not None and (not is_int(divisor_override) or divisor_override == 0):
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int or None, got {divisor_override!r}")
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        x4 = _as_batch("avg_pool2d", x)
        N, C, H, W = x4.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        geometry = (self.kernel, self.stride, self.padding, (1, 1))
        oh, ow = _output_size("avg_pool2d", x4.shape, *geometry, self.ceil_mode)
        if self.divisor_override is not None:
            divisor = xp.full((oh, ow), self.divisor_override, dtype=x.dtype)
        else:
            count_h = _window_counts(xp, H, kh, sh, ph, oh, self.count_include_pad)   # (oH,)
            count_w = _window_counts(xp, W, kw, sw, pw, ow, self.count_include_pad)   # (oW,)
            divisor = (count_h[:, None] * count_w[None, :]).astype(x.dtype)           # (oH, oW)
        planes = xp.reshape(x4, (N * C, H, W))                             # (N*C, H, W): channels never mix
        out = xp.empty((N * C, oh, ow), dtype=x.dtype)                     # (N*C, oH, oW)
        Hp, Wp = padded_shape(x4.shape, *geometry, (oh, ow))
        def pool_block(block: slice, x_pad: Array) -> None:                 # x_pad (b, Hp, Wp)
            total = out[block]                                             # (b, oH, oW), filled in place
            total.fill(0)
            with numpy.errstate(invalid="ignore"):                         # inf + -inf is NaN, as in PyTorch
                for _, _, window in window_slices(self.kernel, self.stride, (1, 1), (oh, ow)):
                    total += x_pad[window]                                 # entry (i, j) of every window
            total /= divisor

        _for_each_padded_block(planes, (Hp, Wp), self.padding, 0.0, pool_block)
        self.divisor, self.x_shape, self.unbatched = divisor, x4.shape, x.ndim == 3
        out = out.reshape(N, C, oh, ow)                                    # (N, C, oH, oW)
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION avg_pool2d
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                     # (N, C, oH, oW)
        N, C, oh, ow = dout4.shape
        share = xp.reshape(dout4 / self.divisor, (N * C, oh, ow))          # (N*C, oH, oW): each position's share

        def slab_grad(block: slice, k: int) -> Array:                      # (b, oH, oW): the same for every k
            return share[block]

        geometry = (self.kernel, self.stride, self.padding, (1, 1))
        with numpy.errstate(invalid="ignore"):                             # inf + -inf is NaN, as in PyTorch
            dx = _add_back_through_windows(slab_grad, self.x_shape, geometry, (oh, ow), dout)  # (N, C, H, W)
        return (dx[0] if self.unbatched else dx,)
        # END SOLUTION


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
