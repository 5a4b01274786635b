"""2-D pooling by its definition: one window per output element, in float64, PyTorch semantics."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from .conv import IntOrPair, _pair


def _output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length along one axis.

    floor((size + 2p - d(k-1) - 1) / s) + 1, or ceil(...) + 1 with ceil_mode; in ceil_mode the
    last window is dropped when it would start at or past size + p (entirely in the right padding).
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_geometry(
    name: str, x: np.ndarray, kernel_size: IntOrPair, stride: Optional[IntOrPair],
    padding: IntOrPair, dilation: IntOrPair, ceil_mode: bool,
) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """Check the arguments of a pooling call; return kernel, stride, padding, dilation, output size."""
    if x.ndim != 4:
        raise ValueError(f"{name} expects x of shape (N, C, H, W), got {x.shape}; add a batch axis with x[None]")
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    p = _pair(padding, "padding")
    d = _pair(dilation, "dilation")
    if min(*k, *s, *d) < 1 or min(p) < 0:
        raise ValueError(
            f"{name} needs kernel_size, stride, dilation >= 1 and padding >= 0, "
            f"got kernel_size={k}, stride={s}, dilation={d}, padding={p}"
        )
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{name}: pad should be smaller than or equal to half of kernel size, got padding={p} for "
            f"kernel_size={k}; use padding <= {(k[0] // 2, k[1] // 2)}"
        )
    H, W = x.shape[2:]
    out = (_output_size(H, k[0], s[0], p[0], d[0], ceil_mode), _output_size(W, k[1], s[1], p[1], d[1], ceil_mode))
    if min(out) < 1:
        raise ValueError(
            f"{name}: output size {out} is too small for input size {(H, W)} with kernel_size={k}, "
            f"padding={p}, dilation={d}; use a larger input, more padding or a smaller kernel"
        )
    return k, s, p, d, out


def max_pool2d(
    x: ArrayLike, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
    dilation: IntOrPair = 1, ceil_mode: bool = False,
) -> np.ndarray:
    """Max pooling: out[n, c, i, j] = max_{u < kH, v < kW} x_pad[n, c, i*sH + u*dH, j*sW + v*dW].

    x_pad is x padded with -inf, so padding never wins. A ceil_mode window that hangs past the
    padded input simply has fewer elements. Input (N, C, H, W), output (N, C, H_out, W_out).
    """
    x = np.asarray(x, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _pool_geometry(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)  # (N, C, H+2ph, W+2pw)
    out = np.empty(x.shape[:2] + (H_out, W_out))  # (N, C, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
            out[:, :, i, j] = x_pad[:, :, rows, cols].max(axis=(2, 3))  # (N, C)
    return out


def max_pool2d_backward(
    x: ArrayLike, dout: ArrayLike, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None,
    padding: IntOrPair = 0, dilation: IntOrPair = 1, ceil_mode: bool = False,
) -> np.ndarray:
    """Gradient of max_pool2d with respect to x.

    Each window sends dout[n, c, i, j] to the FIRST maximum of its window, scanning rows then
    columns with a strict `>` (ties go to the earliest element); padding is never chosen.
    Overlapping windows accumulate: dx[n, c, r, q] = sum of dout over the windows whose winner is (r, q).
    (NaN inputs are outside this definition; PyTorch sends the gradient to a window's last NaN.)
    """
    x = np.asarray(x, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _pool_geometry(
        "max_pool2d_backward", x, kernel_size, stride, padding, dilation, ceil_mode)
    N, C, H, W = x.shape
    if dout.shape != (N, C, H_out, W_out):
        raise ValueError(
            f"max_pool2d_backward expects dout of the output shape {(N, C, H_out, W_out)}, got {dout.shape}"
        )
    dx = np.zeros_like(x)  # (N, C, H, W)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    best = None  # (row, col) of the first maximum seen so far
                    for u in range(kh):
                        for v in range(kw):
                            r, q = i * sh - ph + u * dh, j * sw - pw + v * dw
                            if not (0 <= r < H and 0 <= q < W):
                                continue  # padding: -inf, never the maximum
                            if best is None or x[n, c, r, q] > x[n, c, best[0], best[1]]:
                                best = (r, q)
                    if best is not None:
                        dx[n, c, best[0], best[1]] += dout[n, c, i, j]
    return dx


def avg_pool2d(
    x: ArrayLike, kernel_size: IntOrPair, stride: Optional[IntOrPair] = None, padding: IntOrPair = 0,
    ceil_mode: bool = False, count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling: out[n, c, i, j] = (sum of x over the window's real elements) / divisor.

    The window spans rows h0 = i*sH - pH to h1 = h0 + kH (columns alike). The divisor, as in PyTorch:
      count_include_pad=True:  (min(h1, H + pH) - h0) * (min(w1, W + pW) - w0), i.e. padded positions
                               count, but the part of a ceil_mode window past the padding does not;
      count_include_pad=False: the number of real input elements in the window.
    Input (N, C, H, W), output (N, C, H_out, W_out).
    """
    x = np.asarray(x, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw), _, (H_out, W_out) = _pool_geometry(
        "avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    N, C, H, W = x.shape
    out = np.empty((N, C, H_out, W_out))  # (N, C, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)  # clipped to the padded input
            padded_count = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)  # clipped to the real input
            window = x[:, :, h0:h1, w0:w1]  # (N, C, h1 - h0, w1 - w0)
            divisor = padded_count if count_include_pad else (h1 - h0) * (w1 - w0)
            out[:, :, i, j] = window.sum(axis=(2, 3)) / divisor
    return out


def adaptive_avg_pool2d(x: ArrayLike, output_size: Union[int, Sequence[Optional[int]]]) -> np.ndarray:
    """Adaptive average pooling to a fixed output size, PyTorch's bins.

    Output row i averages input rows floor(i*H/H_out) <= r < ceil((i+1)*H/H_out) (columns alike).
    Neighbouring bins may overlap, and H_out may exceed H (rows are then repeated).
    output_size is an int or an (H_out, W_out) pair; None in the pair keeps that input size.
    Input (N, C, H, W), output (N, C, H_out, W_out).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(
            f"adaptive_avg_pool2d expects x of shape (N, C, H, W), got {x.shape}; add a batch axis with x[None]"
        )
    N, C, H, W = x.shape
    if isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    sizes = tuple(output_size)
    if len(sizes) != 2:
        raise ValueError(f"adaptive_avg_pool2d expects output_size as an int or a pair, got {output_size!r}")
    H_out, W_out = (H if sizes[0] is None else sizes[0]), (W if sizes[1] is None else sizes[1])
    if not all(isinstance(v, (int, np.integer)) and v >= 1 for v in (H_out, W_out)) or min(H, W) < 1:
        raise ValueError(
            f"adaptive_avg_pool2d needs a positive output size and a non-empty input, "
            f"got output_size={output_size!r} for input {x.shape}"
        )
    out = np.empty((N, C, H_out, W_out))  # (N, C, H_out, W_out)
    for i in range(H_out):
        h0 = (i * H) // H_out  # floor(i*H / H_out)
        h1 = ((i + 1) * H + H_out - 1) // H_out  # ceil((i+1)*H / H_out), in integers
        for j in range(W_out):
            w0, w1 = (j * W) // W_out, ((j + 1) * W + W_out - 1) // W_out
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))  # (N, C)
    return out
