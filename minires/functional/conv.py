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
input pixel that sits in several windows collects every window's gradient. With stride 1, dx
is also a convolution of dout with the kernel turned by 180 degrees, which the code uses when it
is the faster way (``backward``).

Speed. No image's columns depend on another's, so the code runs the formulas above on a few
images at a time (``minires.parallel``): a chunk's columns (a few MB) are still in the cache when
the product reads them, the chunks run on all of the CPU's cores, and each thread reuses one
scratch buffer for them. Each chunk's dW is a share of the sum over M; the shares are added in
chunk order. On a GPU the batch is one chunk.

Memory. ``cols`` is kH*kW times larger than ``x`` (230 MB for one ResNet-18 layer at batch 32,
224x224), and ``dW`` needs it again in the backward pass. Keeping it from the forward costs
that memory for every convolution of the network until its backward runs; recomputing it costs
one more ``im2col`` (a copy, no arithmetic) into the chunk's scratch buffer. ``save_cols``
chooses, around the forward pass: recomputing is the default, from the measurements in
``benchmarks/results/``.

A 1x1 kernel without padding needs no im2col: its "columns" are the pixels of x, so each image
is multiplied as it lies.

Derivation: docs/derivations/conv2d.md.
"""
from __future__ import annotations

import contextlib
import numbers
import threading
from typing import Any, List, Optional, Tuple, Union

import numpy

from minires.autograd import Function
from minires.backend import Array, get_array_module
from minires.functional.arithmetic import check_same_dtype
from minires.functional.im2col import Pair, col2im, conv_output_size, im2col, pair
from minires.functional.padding import pad
from minires.parallel import Chunk, batch_chunks, for_each_chunk, get_num_threads, matmul, scratch_matrix

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
        G, Og, K = self.groups, C_out // self.groups, Cg * kh * kw
        oh, ow = _output_size(x4.shape, (kh, kw), self.stride, self.padding, self.dilation)
        w_g = weight.reshape(G, Og, K)                                       # (G, Og, K)
        self.x, self.w_g, self.kernel, self.unbatched = x4, w_g, (kh, kw), x.ndim == 3
        # A 1x1 kernel without padding sees one pixel per window: its cols would only be x with the
        # channels moved first. One product per image, on x as it lies, skips that copy and gives
        # (N, C_out, oH, oW) directly. A stride keeps every s-th pixel: a strided slice.
        self.pointwise = (kh, kw) == (1, 1) and self.padding == (0, 0)
        self.chunks = _chunks(xp, N, C_in * kh * kw * oh * ow * x.dtype.itemsize, Og, oh * ow)
        # A batch that is one chunk has its products split by rows among the threads (parallel.matmul); its
        # im2col copies are split too, by channels, when they are large enough to be worth handing over.
        self.split_copies = (xp is numpy and len(self.chunks) == 1
                             and N * C_in * kh * kw * oh * ow * x.dtype.itemsize >= SPLIT_COPY_BYTES)
        self.cols_g = [None] * len(self.chunks) if self.save_cols and not self.pointwise else None
        out = xp.empty((N, C_out, oh, ow), dtype=x.dtype)                    # (N, C_out, oH, oW)

        def forward_chunk(k: int, start: int, stop: int) -> None:           # images start..stop-1
            n = stop - start
            if self.pointwise:
                x_s = x4[start:stop, :, ::self.stride[0], ::self.stride[1]]  # (n, C_in, oH, oW), a view
                out_c = out[start:stop].reshape(n, G, Og, oh * ow)            # (n, G, Og, oH*oW), a view
                matmul(w_g, x_s.reshape(n, G, Cg, oh * ow), out_c, xp)      # one product per image
                if bias is not None:
                    out[start:stop] += bias.reshape(1, C_out, 1, 1)
                return
            keep = self.cols_g is not None                                 # kept for backward: fresh memory
            buffer = (xp.empty((G * K, n * oh * ow), dtype=x.dtype) if keep
                      else scratch_matrix("conv.cols", G * K, n * oh * ow, x.dtype, xp))
            cols = self._im2col(x4[start:stop], self.stride, self.padding, (oh, ow), buffer)
            cols_g = cols.reshape(G, K, n * oh * ow)                         # (G, K, n*oH*oW)
            if n == 1 or K < Og:
                # One product per image, straight into out, whose (C_out, oH*oW) per image is the products'
                # own layout: no transposing copy. Worth it for one image, and where the output is larger
                # than the columns (a stem's 27 rows against 64 filters: 0.76 -> 0.55 ms for 16 CIFAR
                # images on one thread; benchmarks/README.md, "Chunks and threads").
                per_image = cols_g.reshape(G, K, n, oh * ow).transpose(2, 0, 1, 3)   # (n, G, K, oH*oW)
                matmul(w_g, per_image, out[start:stop].reshape(n, G, Og, oh * ow), xp)  # a view of out
                if bias is not None:
                    out[start:stop] += bias.reshape(C_out, 1, 1)
            else:
                out_g = matmul(w_g, cols_g, scratch_matrix("conv.out", C_out, n * oh * ow, x.dtype, xp).reshape(
                    G, Og, n * oh * ow), xp)                                 # (G, Og, n*oH*oW)
                out_c = out_g.reshape(C_out, n, oh, ow).transpose(1, 0, 2, 3)  # (n, C_out, oH, oW), a view
                if bias is None:                                             # one pass makes it contiguous
                    out[start:stop] = out_c
                else:                                                        # ... and adds the bias on the way
                    xp.add(out_c, bias.reshape(1, C_out, 1, 1), out=out[start:stop])
            if keep:
                self.cols_g[k] = cols_g

        for_each_chunk(forward_chunk, self.chunks, xp)                       # the batch, chunk by chunk
        return out[0] if self.unbatched else out

    def backward(self, dout: Array) -> tuple:
        # BEGIN SOLUTION conv2d
        xp = get_array_module(dout)
        dout4 = dout[None] if self.unbatched else dout                       # (N, C_out, oH, oW)
        x4, w_g, chunks = self.x, self.w_g, self.chunks
        N, C_out, oh, ow = dout4.shape
        C_in, H, W = x4.shape[1:]
        G, Og, K = w_g.shape
        kh, kw = self.kernel
        Cg = K // (kh * kw)
        need_dx, need_dw, need_db = self.needs_input_grad
        dx = dw = db = None
        if need_db:
            db = dout4.sum(axis=(0, 2, 3))                                   # (C_out,)
        if need_dx:
            strided_1x1 = self.pointwise and self.stride != (1, 1)          # pixels the stride skipped get 0
            dx = (xp.zeros if strided_1x1 else xp.empty)(x4.shape, dtype=dout.dtype)  # (N, C_in, H, W)
        # With up to 128 filters, dW_g = dout_g @ cols_g^T is computed as its transpose, dW_g^T = cols_g @ dout_g^T
        # (G, K, Og): the same sums, 1.27-1.46x faster from the BLAS here; with more filters the gain (3-11 %)
        # is less than the transposing copy back costs (benchmarks/README.md, "Chunks and threads").
        dw_transposed = Og <= 128
        dw_chunks = xp.empty((len(chunks), G) + ((K, Og) if dw_transposed else (Og, K)),
                             dtype=dout.dtype) if need_dw else None
        # With stride 1, dx is itself a convolution: of dout, padded by d(k-1) - p, with the kernel turned
        # by 180 degrees and its in/out channels swapped (docs/derivations/conv2d.md, section 3). That is an
        # im2col copy of dout and a product, faster than col2im's kH*kW scatter-adds when dout has no more
        # channels than x (the copy is C_out*kH*kW rows; benchmarks/README.md, "Chunks and threads").
        flip_pad = tuple(d * (k - 1) - p for k, d, p in zip(self.kernel, self.dilation, self.padding))
        as_conv = (need_dx and not self.pointwise and self.stride == (1, 1) and min(flip_pad) >= 0
                   and C_out <= C_in)
        if as_conv:
            w_flip = self.w_g.reshape(G, Og, Cg, kh, kw)[..., ::-1, ::-1]   # (G, Og, Cg, kH, kW), turned
            w_flip = xp.ascontiguousarray(w_flip.transpose(0, 2, 1, 3, 4))  # (G, Cg, Og, kH, kW), swapped
            w_flip = w_flip.reshape(G, Cg, Og * kh * kw)                     # (G, Cg, Og*kH*kW)

        def backward_chunk(k: int, start: int, stop: int) -> None:          # images start..stop-1
            n, M = stop - start, (stop - start) * oh * ow
            if need_dw or (need_dx and not self.pointwise and not as_conv):
                if n == 1:                               # one image: dout[start] is (C_out, oH*oW) already
                    dout_g = xp.ascontiguousarray(dout4[start]).reshape(G, Og, M)  # (G, Og, M)
                else:
                    dout_g = scratch_matrix("conv.dout", C_out, M, dout.dtype, xp).reshape(C_out, n, oh, ow)
                    dout_g[...] = dout4[start:stop].transpose(1, 0, 2, 3)  # (C_out, n, oH, oW)
                    dout_g = dout_g.reshape(G, Og, M)                        # (G, Og, M)
            if need_dw:
                cols_g = None if self.cols_g is None else self.cols_g[k]
                if cols_g is None:                                           # recompute what forward dropped
                    cols_g = self._im2col(x4[start:stop], self.stride, self.padding, (oh, ow),
                                          scratch_matrix("conv.cols", G * K, M, dout.dtype, xp))
                    cols_g = cols_g.reshape(G, K, M)                         # (G, K, M)
                if dw_transposed:                                            # this chunk's share of dW
                    matmul(cols_g, dout_g.transpose(0, 2, 1), dw_chunks[k], xp)  # (G, K, Og)
                else:
                    matmul(dout_g, cols_g.transpose(0, 2, 1), dw_chunks[k], xp)  # (G, Og, K)
            if need_dx and self.pointwise:                                   # the 1x1 path, backwards
                dout_c = dout4[start:stop].reshape(n, G, Og, oh * ow)        # (n, G, Og, oH*oW)
                dx_s = matmul(w_g.transpose(0, 2, 1), dout_c,
                              xp.empty((n, G, Cg, oh * ow), dtype=dout.dtype), xp)  # (n, G, Cg, oH*oW)
                dx[start:stop, :, ::self.stride[0], ::self.stride[1]] = dx_s.reshape(n, C_in, oh, ow)
            elif as_conv:                                                    # dx = conv(dout, turned kernel)
                dcols = self._im2col(dout4[start:stop], (1, 1), flip_pad, (H, W),
                                     scratch_matrix("conv.cols", C_out * kh * kw, n * H * W, dout.dtype, xp))
                dx_g = dx[start].reshape(G, Cg, H * W) if n == 1 else scratch_matrix(  # one image: straight
                    "conv.dx", C_in, n * H * W, dout.dtype, xp).reshape(G, Cg, n * H * W)  # into dx
                matmul(w_flip, dcols.reshape(G, Og * kh * kw, n * H * W), dx_g, xp)  # (G, Cg, n*H*W)
                if n > 1:
                    dx[start:stop] = dx_g.reshape(C_in, n, H, W).transpose(1, 0, 2, 3)   # (n, C_in, H, W)
            elif need_dx:
                # dcols has the shape of cols, and cols is dead once dW is computed: its scratch buffer takes it.
                dcols = matmul(w_g.transpose(0, 2, 1), dout_g, scratch_matrix(
                    "conv.cols", G * K, M, dout.dtype, xp).reshape(G, K, M), xp)  # (G, K, M)
                dcols = dcols.reshape(C_in, kh, kw, n, oh, ow)               # (C_in, kH, kW, n, oH, oW)
                col2im(dcols, (n, C_in, H, W), self.kernel, self.stride, self.padding, self.dilation,
                       out=dx[start:stop])                                   # (n, C_in, H, W)

        for_each_chunk(backward_chunk, chunks, xp)                           # the batch, chunk by chunk
        if need_dw:                                                          # the chunks' shares, in chunk order
            dw = dw_chunks[0] if len(chunks) == 1 else dw_chunks.sum(axis=0)  # (G, K, Og) or (G, Og, K)
            if dw_transposed:                                                # (G, Og, K), in memory order: an
                dw = xp.ascontiguousarray(dw.transpose(0, 2, 1))             # optimizer reads it 3x faster then
            dw = dw.reshape(C_out, Cg, kh, kw)                               # (C_out, C_in/G, kH, kW)
        if dx is not None and self.unbatched:
            dx = dx[0]                                                       # (C_in, H, W)
        return dx, dw, db
        # END SOLUTION

    def _im2col(self, x: Array, stride: Pair, padding: Pair, out_size: Pair, out: Array) -> Array:
        """``im2col(x)`` with this convolution's kernel and dilation, into ``out`` (a matrix of C*kH*kW rows,
        one per channel and kernel offset) -> out. One copy; or, where the batch is one chunk and the copy
        large (``split_copies``), one range of channels per thread, each range's rows copied on its thread."""
        xp, C, taps = get_array_module(x), x.shape[1], self.kernel[0] * self.kernel[1]
        parts = min(C, get_num_threads()) if self.split_copies else 1
        bounds = [C * p // parts for p in range(parts + 1)]
        for_each_chunk(lambda k, c0, c1: im2col(x[:, c0:c1], self.kernel, stride, padding, self.dilation, out_size,
                                                out=out[c0 * taps:c1 * taps]),
                       list(zip(bounds[:-1], bounds[1:])), xp)
        return out


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


#: A batch that is one chunk (ResNet-18's last stage at 224x224 and batch 8: eight 7x7 maps) copies its im2col
#: columns in one range of channels per thread from this many bytes on (``Conv2d._im2col``); below it, one copy.
SPLIT_COPY_BYTES = 2 << 20


def _chunks(xp: Any, N: int, cols_bytes_per_image: int, filters: int, pixels: int) -> List[Chunk]:
    """The batch cut into chunks (``minires.parallel``): runs of images whose columns fill a few MB, each
    with at least half as many columns (output pixels) as the weight matrix has rows: with fewer, reading
    the weights costs more than the product saves (the measured best; benchmarks/README.md)."""
    return batch_chunks(N, cols_bytes_per_image, min_images=-(-filters // max(1, 2 * pixels)), xp=xp)


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
