"""im2col and col2im: the lowering that convolution and pooling share.

A 2-D convolution slides a kH x kW window over the input. ``im2col`` copies every window into
a column, so that the whole convolution becomes ONE matrix product (which the BLAS or cuBLAS
runs at full speed); pooling reduces each column instead. ``col2im`` is its adjoint: it adds
each column back onto the window it came from, which is exactly the backward of ``im2col``
(where windows overlap, their gradients add up).

Layout. For an input (N, C, H, W) and an output grid (oH, oW), the columns are stored as

    cols[c, i, j, n, y, x] = x_padded[n, c, y * sH + i * dH, x * sW + j * dW]      # (C, kH, kW, N, oH, oW)

so ``cols.reshape(C * kH * kW, N * oH * oW)`` is the matrix the convolution multiplies, with
one column per output pixel of the whole batch.

``im2col`` needs no loop: every window is already in ``x_padded``, one stride away from its
neighbour, so the six-axis array above is a strided *view* of ``x_padded`` (stepping a kernel
offset moves ``dilation`` pixels, stepping an output pixel moves ``stride`` pixels), and one
copy materialises it. ``col2im`` cannot use that view: windows overlap, and writing through
overlapping memory would drop all but one contribution. It loops over the kH * kW kernel
offsets (9 for a 3x3 kernel) and adds a whole (C, N, oH, oW) slab at each: the loop is short,
the additions are long, and the same code runs on NumPy and CuPy. ``window_slices`` names the
slab of each offset; pooling loops over the same slabs (``pooling.py``).

Derivation: docs/derivations/im2col.md.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterator, Optional, Tuple

import numpy

from minires.backend import Array, get_array_module
from minires.parallel import scratch

Pair = Tuple[int, int]


def pair(value: Any, name: str) -> Pair:
    """An int or a pair of ints as a pair: ``3 -> (3, 3)``; NumPy integers count as ints (as in
    PyTorch); anything else is a clear error."""
    if is_int(value):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def is_int(value: Any) -> bool:
    """A Python or NumPy integer (``numpy.int64(3)`` from an array), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, numpy.bool_))


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis: floor((size + 2p - d(k - 1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """Like ``conv_output_size``, but with ``ceil_mode`` rounding up (PyTorch's rule): the last
    window is then kept only if it starts inside the input or its left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1                                  # ceil(span / stride) + 1
    if (out - 1) * stride >= size + padding:                      # last window starts past the input
        out -= 1
    return out


def padded_shape(x_shape: tuple, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
                 out_size: Pair) -> Pair:
    """Height and width of the padded input the windows need (ceil_mode may need a few extra
    rows or columns past the right padding, which are never real input)."""
    H, W = x_shape[2], x_shape[3]
    need_h = (out_size[0] - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1
    need_w = (out_size[1] - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1
    return max(H + 2 * padding[0], need_h), max(W + 2 * padding[1], need_w)


def window_slices(kernel: Pair, stride: Pair, dilation: Pair, out_size: Pair) -> Iterator[Tuple[int, int, tuple]]:
    """``(i, j, window)`` for each kernel offset (i, j), in row-major order: ``x_pad[window]`` is what
    offset (i, j) sees at every output pixel, ``x_pad[window][..., y, x] = x_pad[..., y*sH + i*dH,
    x*sW + j*dW]``, a strided view of shape (..., oH, oW) for any leading axes. It is entry (i, j) of
    every window at once: ``im2col`` copies exactly these slabs into ``cols[:, i, j]``."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, c = i * dilation[0], j * dilation[1]
            yield i, j, (Ellipsis,
                         slice(r, r + stride[0] * (out_size[0] - 1) + 1, stride[0]),
                         slice(c, c + stride[1] * (out_size[1] - 1) + 1, stride[1]))


def im2col(x: Array, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair,
           pad_value: float = 0.0, out: Optional[Array] = None) -> Array:
    """Copy every (kH, kW) window of ``x`` into the columns of a (C, kH, kW, N, oH, oW) array.

    ``pad_value`` fills the padding: 0 for convolution and average pooling, -inf for max pooling.
    ``out``, if given, is the array to fill: any array that reshapes to that shape as a view, e.g. a
    reused scratch matrix (C*kH*kW, N*oH*oW) with padded rows (``minires.parallel.scratch_matrix``).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw = kernel
    Hp, Wp = padded_shape(x.shape, kernel, stride, padding, dilation, out_size)
    if (Hp, Wp) == (H, W):
        x_pad = x
    else:                                    # the padded copy never leaves this function: scratch memory
        x_pad = scratch("im2col.x_pad", (N, C, Hp, Wp), x.dtype, xp)             # (N, C, Hp, Wp)
        top, left = padding
        x_pad[:, :, top:top + H, left:left + W] = x
        x_pad[:, :, :top] = pad_value                                        # the border: rows above,
        x_pad[:, :, top + H:] = pad_value                                    # rows below (and ceil_mode's extra),
        x_pad[:, :, top:top + H, :left] = pad_value                          # left of the image,
        x_pad[:, :, top:top + H, left + W:] = pad_value                      # right of it
    # cols[c, i, j, n, y, x] = x_pad[n, c, y*sH + i*dH, x*sW + j*dW] is a view of x_pad: only
    # the step sizes (in bytes) of its six axes differ. Nothing is copied before `cols[...] =`.
    sN, sC, sH, sW = x_pad.strides
    windows = xp.lib.stride_tricks.as_strided(
        x_pad, shape=(C, kh, kw, N) + tuple(out_size),
        strides=(sC, sH * dilation[0], sW * dilation[1], sN, sH * stride[0], sW * stride[1]))
    cols = xp.empty(windows.shape, dtype=x.dtype) if out is None else out.reshape(windows.shape)
    if out is not None and cols.size and not xp.may_share_memory(cols, out):   # (an empty one has no memory)
        raise ValueError(f"im2col: out of shape {out.shape} and strides {out.strides} cannot be seen as "
                         f"{windows.shape} without a copy, so the columns would not reach it")
    cols[...] = windows                                                     # the one copy
    return cols


def col2im(cols: Array, x_shape: tuple, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
           out: Optional[Array] = None) -> Array:
    """The adjoint of ``im2col``: add each column back onto its window; returns (N, C, H, W).

    Where windows overlap (stride < kernel) an input pixel receives from several columns,
    so this must ADD (``+=``); assigning would keep only the last window's share. The sums
    run in a (C, N, Hp, Wp) buffer, the axis order of ``cols``, so each addition reads both
    arrays in memory order; one transposing copy at the end gives (N, C, H, W), written into
    ``out`` if given.
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    oh, ow = cols.shape[-2:]                                                # cols: (C, kH, kW, N, oH, oW)
    Hp, Wp = padded_shape(x_shape, kernel, stride, padding, dilation, (oh, ow))
    dx_pad = scratch("col2im.dx_pad", (C, N, Hp, Wp), cols.dtype, xp)        # (C, N, Hp, Wp)
    dx_pad.fill(0)
    for i, j, window in window_slices(kernel, stride, dilation, (oh, ow)):
        dx_pad[window] += cols[:, i, j]                                       # (C, N, oH, oW)
    dx = dx_pad[:, :, padding[0]:padding[0] + H, padding[1]:padding[1] + W]     # (C, N, H, W)
    if out is None:
        out = xp.empty((N, C, H, W), dtype=cols.dtype)
    out[...] = dx.transpose(1, 0, 2, 3)                                         # (N, C, H, W)
    return out
