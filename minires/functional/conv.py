"""2-D convolution: ``im2col`` and one matrix product per group.

A convolution slides each filter over the input. ``im2col`` copies every window of the input
into a column, and then the whole convolution is one matrix product, which the BLAS (CPU) or
cuBLAS (GPU) runs at full speed. With G groups, Cg = C_in/G input channels and Og = C_out/G
filters per group, K = Cg*kH*kW numbers per window and M = N*oH*oW windows in the batch:

    forward                                     backward
    cols = im2col(x)        (G, K, M)           dW    = dout_g @ cols^T          (G, Og, K)
    out  = W_g @ cols       (G, Og, M)          dcols = W_g^T @ dout_g           (G, K, M)
    out  = out + b          (N, C_out, oH, oW)  dx    = col2im(dcols)            (N, C_in, H, W)
                                                db    = sum of dout over n, y, x (C_out,)

Both products are the forward's product with one factor transposed: that is all the chain
rule says about a matrix product. ``col2im`` adds each column back onto its window, so an
input pixel that sits in several windows collects every window's gradient.

Memory. ``cols`` is kH*kW times larger than ``x`` (230 MB for one ResNet-18 layer at batch 32,
224x224), and ``dW`` needs it again in the backward pass. Keeping it from the forward costs
that memory for every convolution of the network until its backward runs; recomputing it costs
one more ``im2col`` (a copy, no arithmetic). ``save_cols`` chooses, around the forward pass:
recomputing is the default, from the measurements in ``benchmarks/results/``.

A 1x1 kernel without padding needs no im2col: its "columns" are the pixels of x, so each image
is multiplied as it lies.

Derivation: docs/derivations/conv2d.md.
"""
from __future__ import annotations

import contextlib
import numbers
import threading
from typing import Any, Optional, Tuple, Union

from minires.autograd import Function
from minires.backend import Array, get_array_module
from minires.functional.arithmetic import check_same_dtype
from minires.functional.im2col import Pair, col2im, conv_output_size, im2col, pair
from minires.functional.padding import pad

IntOrPair = Union[int, Tuple[int, int]]

# ------------------------------------------------------------------------------ memory policy


class _ColsPolicy(threading.local):
    save = False                      # the default: recompute (see benchmarks/results/)


_cols_policy = _ColsPolicy()


def saves_cols() -> bool:
    """True inside ``save_cols(True)``: convolutions then keep their im2col buffer for backward."""
    return _cols_policy.save


class save_cols(contextlib.ContextDecorator):
    """Choose what ``conv2d`` keeps for its backward pass, for the forwards run inside the block.

    ``save_cols(True)``: keep each convolution's im2col buffer until its backward (one ``im2col``
    less per convolution, kH*kW times the input's memory more). ``save_cols(False)``, the
    default: keep only the input and recompute the buffer in backward. The choice is read once
    per call, by ``conv2d``, and handed to ``Conv2d`` as an explicit argument::

        with save_cols(True):
            loss = model(x)           # forward: every convolution keeps its columns
        loss.backward()               # the backward uses what each forward kept
    """

    def __init__(self, enabled: bool):
        if not isinstance(enabled, bool):
            raise TypeError(f"save_cols takes True or False, got {enabled!r}")
        self.enabled = enabled
        self._previous: list = []                   # a stack: the same block may be entered again

    def __enter__(self) -> "save_cols":
        self._previous.append(_cols_policy.save)
        _cols_policy.save = self.enabled
        return self

    def __exit__(self, *exc: Any) -> None:
        _cols_policy.save = self._previous.pop()


# ------------------------------------------------------------------------------ the operation


class Conv2d(Function):
    """out[n, o] = b[o] + sum over the window of W[o] * x_pad[n, group of o]  (cross-correlation).

    As matrices, per group g:   out_g = W_g @ cols_g  with  cols = im2col(x),  then

        dW_g    = dout_g @ cols_g^T
        dcols_g = W_g^T @ dout_g,    dx = col2im(dcols)
        db      = dout summed over (n, y, x)

    with W_g (Og, K), cols_g (K, M), dout_g (Og, M); K = C_in/G*kH*kW, M = N*oH*oW.
    ``save_cols`` keeps ``cols`` for the backward pass instead of recomputing it there.
    Derivation: docs/derivations/conv2d.md.
    """

    def __init__(self, stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                 groups: int = 1, save_cols: bool = False):
        self.stride, self.padding, self.dilation = _geometry(stride, padding, dilation)
        if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
        self.groups, self.save_cols = int(groups), bool(save_cols)

    def forward(self, x: Array, weight: Array, bias: Optional[Array]) -> Array:
        xp = get_array_module(x)
        _check_inputs(x, weight, bias, self.groups)
        x4 = x[None] if x.ndim == 3 else x                                  # (N, C_in, H, W)
        N, C_in, H, W = x4.shape
        C_out, Cg, kh, kw = weight.shape
        G, K = self.groups, Cg * kh * kw
        oh, ow = _output_size(x4.shape, (kh, kw), self.stride, self.padding, self.dilation)
        w_g = weight.reshape(G, C_out // G, K)                               # (G, Og, K)
        self.x, self.w_g, self.kernel, self.unbatched = x4, w_g, (kh, kw), x.ndim == 3
        self.cols_g = None
        # A 1x1 kernel without padding sees one pixel per window: its cols would only be x with the
        # channels moved first. One product per image, on x as it lies, skips that copy and gives
        # (N, C_out, oH, oW) directly. A stride keeps every s-th pixel: a strided slice.
        self.pointwise = (kh, kw) == (1, 1) and self.padding == (0, 0)
        if self.pointwise:
            x_s = x4[:, :, ::self.stride[0], ::self.stride[1]]              # (N, C_in, oH, oW), a view
            out = w_g @ x_s.reshape(N, G, Cg, oh * ow)                       # (N, G, Og, oH*oW)
            out = out.reshape(N, C_out, oh, ow)                              # (N, C_out, oH, oW)
            if bias is not None:
                out += bias.reshape(1, C_out, 1, 1)
            return out[0] if self.unbatched else out
        cols = im2col(x4, (kh, kw), self.stride, self.padding, self.dilation, (oh, ow))  # (C_in, kH, kW, N, oH, oW)
        cols_g = cols.reshape(G, K, N * oh * ow)                             # (G, K, M)
        out_g = w_g @ cols_g                                                 # (G, Og, M): the one product
        out = out_g.reshape(C_out, N, oh, ow).transpose(1, 0, 2, 3)          # (N, C_out, oH, oW), a view
        result = xp.empty((N, C_out, oh, ow), dtype=x.dtype)                 # (N, C_out, oH, oW)
        if bias is None:                                                     # one pass makes it contiguous
            result[...] = out
        else:                                                                # ... and adds the bias on the way
            xp.add(out, bias.reshape(1, C_out, 1, 1), out=result)
        self.cols_g = cols_g if self.save_cols else None
        return result[0] if self.unbatched else result

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION conv2d
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                       # (N, C_out, oH, oW)
        N, C_out, oh, ow = dout4.shape
        G, Og, K = self.w_g.shape
        kh, kw = self.kernel
        need_dx, need_dw, need_db = self.needs_input_grad
        dx = dw = db = None
        if need_db:
            db = dout4.sum(axis=(0, 2, 3))                                   # (C_out,)
        if need_dw or (need_dx and not self.pointwise):
            dout_g = xp.ascontiguousarray(dout4.transpose(1, 0, 2, 3))       # (C_out, N, oH, oW)
            dout_g = dout_g.reshape(G, Og, N * oh * ow)                      # (G, Og, M)
        scratch = None                                                       # a dead (G, K, M) buffer, if any
        if need_dw:
            cols_g = self.cols_g
            if cols_g is None:                                               # recompute what forward dropped
                cols_g = im2col(self.x, self.kernel, self.stride, self.padding, self.dilation,
                                (oh, ow)).reshape(G, K, N * oh * ow)         # (G, K, M)
                scratch = cols_g                                             # dead once dW is computed
            dw = dout_g @ cols_g.transpose(0, 2, 1)                          # (G, Og, K)
            dw = dw.reshape(C_out, K // (kh * kw), kh, kw)                   # (C_out, C_in/G, kH, kW)
            del cols_g
        if need_dx and self.pointwise:                                       # the 1x1 path, backwards
            dx_s = self.w_g.transpose(0, 2, 1) @ dout4.reshape(N, G, Og, oh * ow)  # (N, G, Cg, oH*oW)
            dx_s = dx_s.reshape(N, self.x.shape[1], oh, ow)                  # (N, C_in, oH, oW)
            if self.stride == (1, 1):
                dx = dx_s
            else:                                                            # pixels the stride skipped get 0
                dx = xp.zeros(self.x.shape, dtype=dout.dtype)                # (N, C_in, H, W)
                dx[:, :, ::self.stride[0], ::self.stride[1]] = dx_s
        elif need_dx:
            # dcols has the shape of cols: written over a recomputed cols, it needs no new memory
            # (and no fresh pages from the operating system, which cost time as well).
            dcols = xp.matmul(self.w_g.transpose(0, 2, 1), dout_g, out=scratch)  # (G, K, M)
            dcols = dcols.reshape(self.x.shape[1], kh, kw, N, oh, ow)        # (C_in, kH, kW, N, oH, oW)
            dx = col2im(dcols, self.x.shape, self.kernel, self.stride, self.padding, self.dilation)
        if dx is not None and self.unbatched:
            dx = dx[0]                                                       # (C_in, H, W)
        return dx, dw, db
        # END SOLUTION


def conv2d(x: Any, weight: Any, bias: Any = None, stride: IntOrPair = 1,
           padding: Union[IntOrPair, str] = 0, dilation: IntOrPair = 1, groups: int = 1):
    """PyTorch's ``F.conv2d``: x (N, C_in, H, W) or (C_in, H, W), weight (C_out, C_in/groups, kH, kW),
    bias (C_out,) or None; stride, padding, dilation an int or a (height, width) pair.

    ``padding="valid"`` is no padding; ``padding="same"`` (stride 1 only) pads d*(k - 1) in all,
    half before and half after, the odd pixel after (right, bottom), as PyTorch does, so oH = H.

    Output (N, C_out, oH, oW) with oH = floor((H + 2*pH - dH*(kH - 1) - 1) / sH) + 1 (oW alike).
    Whether the im2col buffer is kept for backward follows ``save_cols`` (recomputed by default).
    """
    if isinstance(padding, str):
        padding, extra = _string_padding(padding, weight, stride, dilation)
        if any(extra):                           # "same" with an even kernel: the odd pixel goes right/bottom
            x = pad(x, (0, extra[1], 0, extra[0]))
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, save_cols=saves_cols())


# ------------------------------------------------------------------------------ checks


def _string_padding(padding: str, weight: Any, stride: IntOrPair, dilation: IntOrPair) -> Tuple[Pair, Pair]:
    """``"valid"`` -> no padding; ``"same"`` -> (symmetric padding, extra pixels after) per axis."""
    from minires.tensor import Tensor

    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"conv2d expects padding to be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    if pair(stride, "stride") != (1, 1):
        raise ValueError(f"conv2d: padding='same' is not supported for strided convolutions (stride={stride}); "
                         f"use stride=1, or give the padding as numbers")
    kernel = tuple((weight.data if isinstance(weight, Tensor) else weight).shape[-2:])
    total = tuple(d * (k - 1) for k, d in zip(kernel, pair(dilation, "dilation")))    # per axis
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def _geometry(stride: IntOrPair, padding: IntOrPair, dilation: IntOrPair) -> Tuple[Pair, Pair, Pair]:
    """Stride, padding and dilation as pairs, each in its valid range."""
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d needs stride >= 1, dilation >= 1 and padding >= 0, got stride={stride}, "
                         f"dilation={dilation}, padding={padding}")
    return stride, padding, dilation


def _check_inputs(x: Array, weight: Array, bias: Optional[Array], groups: int) -> None:
    """Ranks, dtypes and channel counts, each refused with what was expected and how to fix it."""
    if x.ndim not in (3, 4):
        raise ValueError(f"conv2d expects x of shape (N, C_in, H, W) or (C_in, H, W), got a {x.ndim}-d "
                         f"input of shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d expects weight of shape (C_out, C_in/groups, kH, kW), got a {weight.ndim}-d "
                         f"weight of shape {tuple(weight.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"conv2d works on floating-point tensors, got x of dtype {x.dtype}; "
                        f"convert it first, e.g. x.to('float32')")
    check_same_dtype("conv2d", x, weight)
    C_in, (C_out, Cg) = x.shape[-3], weight.shape[:2]
    if C_in % groups or C_out % groups:
        raise ValueError(f"conv2d with groups={groups} needs in and out channels divisible by groups, got "
                         f"C_in={C_in} and C_out={C_out}; choose groups that divides both")
    if Cg * groups != C_in:
        raise ValueError(f"conv2d: x has {C_in} channels, so weight.shape[1] must be C_in/groups = "
                         f"{C_in // groups}, got weight of shape {tuple(weight.shape)} (groups={groups})")
    if bias is not None:
        check_same_dtype("conv2d", x, bias)
        if tuple(bias.shape) != (C_out,):
            raise ValueError(f"conv2d expects bias of shape ({C_out},) (one per output channel), "
                             f"got {tuple(bias.shape)}")


def _output_size(x_shape: tuple, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """(oH, oW); a kernel that does not fit in the padded input is an error, not an empty output."""
    H, W = x_shape[2:]
    oh, ow = (conv_output_size(n, k, s, p, d) for n, k, s, p, d in zip((H, W), kernel, stride, padding, dilation))
    if oh < 1 or ow < 1:
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        raise ValueError(f"conv2d: the kernel (dilated size {span[0]}x{span[1]}) is larger than the padded "
                         f"input ({H + 2 * padding[0]}x{W + 2 * padding[1]}); use a larger input, more "
                         f"padding, or a smaller kernel or dilation")
    return oh, ow


__all__ = ["conv2d", "Conv2d", "save_cols", "saves_cols"]
