"""2-D convolution by its definition: one dot product per output element, in float64."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

IntOrPair = Union[int, Sequence[int]]


def _pair(value: IntOrPair, name: str) -> Tuple[int, int]:
    """Turn an int or a pair of ints into a (height, width) pair."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(
            f"{name} must be an int or a pair of ints (height, width), got {value!r}; "
            f"pass e.g. {name}=1 or {name}=(1, 2)"
        )
    return int(pair[0]), int(pair[1])


def conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: Optional[ArrayLike] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """2-D cross-correlation (what deep learning calls convolution), PyTorch semantics.

    With x zero-padded by p on each side (x_pad), stride s, dilation d, and G groups of
    C_in/G input and C_out/G output channels, output channel o belongs to group
    g = o // (C_out/G) and reads only that group's input channels:

        out[n, o, i, j] = bias[o] + sum_{c < C_in/G} sum_{u < kH} sum_{v < kW}
                          weight[o, c, u, v] * x_pad[n, g*C_in/G + c, i*sH + u*dH, j*sW + v*dW]

        H_out = floor((H + 2*pH - dH*(kH - 1) - 1) / sH) + 1     (and likewise W_out)

    Args:
        x: input, shape (N, C_in, H, W).
        weight: filters, shape (C_out, C_in / groups, kH, kW).
        bias: optional, shape (C_out,).
        stride, padding, dilation: an int or a (height, width) pair.
        groups: number of channel groups; C_in and C_out must both be divisible by it.

    Returns:
        float64 array of shape (N, C_out, H_out, W_out).
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(
            f"conv2d expects x of shape (N, C_in, H, W) and weight of shape (C_out, C_in/groups, kH, kW), "
            f"got x {x.shape} and weight {weight.shape}; add a batch axis with x[None] for a single image"
        )
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0 or groups < 1:
        raise ValueError(
            f"conv2d needs stride >= 1, dilation >= 1, padding >= 0 and groups >= 1, got "
            f"stride={(sh, sw)}, dilation={(dh, dw)}, padding={(ph, pw)}, groups={groups}"
        )
    N, C_in, H, W = x.shape
    C_out, C_in_g, kh, kw = weight.shape
    if C_in % groups or C_out % groups or C_in_g != C_in // groups:
        raise ValueError(
            f"conv2d with groups={groups} needs C_in and C_out divisible by groups and weight.shape[1] == "
            f"C_in / groups, got C_in={C_in}, C_out={C_out}, weight {weight.shape}; "
            f"use weight of shape ({C_out}, {C_in // groups}, {kh}, {kw}) with a compatible groups"
        )
    b = np.zeros(C_out) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (C_out,):
        raise ValueError(f"conv2d expects bias of shape ({C_out},), got {b.shape}")

    H_out = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    W_out = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"conv2d output would be empty: input {H}x{W} with padding {(ph, pw)} is smaller than the "
            f"dilated kernel {dh * (kh - 1) + 1}x{dw * (kw - 1) + 1}; use a larger input or more padding"
        )

    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C_in, H + 2ph, W + 2pw)
    C_out_g = C_out // groups
    out = np.empty((N, C_out, H_out, W_out))  # (N, C_out, H_out, W_out)
    for n in range(N):
        for o in range(C_out):
            g = o // C_out_g
            channels = slice(g * C_in_g, (g + 1) * C_in_g)
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    window = x_pad[n, channels, rows, cols]  # (C_in/groups, kH, kW)
                    out[n, o, i, j] = np.sum(window * weight[o]) + b[o]
    return out
