"""Bilinear resizing as two matrix products.

Resizing an image is linear in its pixels, and separable: each output row is a weighted sum
of input rows, and each output column of input columns. So with a weight matrix per axis,
``A_h`` of shape ``(out_h, H)`` and ``A_w`` of shape ``(out_w, W)``,

    out = A_h @ image @ A_w^T          for each channel of a (C, H, W) image.

Row ``i`` of a weight matrix holds the weights of output pixel ``i``. Pixels are squares and
a pixel's value sits at its centre ("half-pixel centres", as in PIL, torchvision and
``torch.nn.functional.interpolate(..., align_corners=False)``): input pixel ``j`` sits at
``j + 0.5``, output pixel ``i`` at ``(i + 0.5) * scale`` in input units, ``scale = H / out_h``.
Its weights come from a triangle ("tent") filter of half-width ``support`` centred there:

    w_ij = max(0, 1 - |j + 0.5 - (i + 0.5) * scale| / support),   then each row scaled to sum to 1.

With ``support = 1`` this is ordinary bilinear interpolation: the two nearest input pixels,
weighted by closeness. When shrinking by ``scale > 1`` those two pixels skip over the ones in
between, which aliases (moire on fine patterns); with ``antialias`` the tent widens to
``support = scale`` so every input pixel under the output pixel contributes, which is what
PIL and torchvision do. At the borders the tent reaches past the image; the rows are
renormalised over the pixels that exist, which is the same as clamping for plain bilinear.

``RandomResizedCrop`` resizes a window of each image: the same products on the window.
"""
from __future__ import annotations

import numpy

from minires.data.image import is_raw


def resize_weights(in_size: int, out_size: int, antialias: bool) -> numpy.ndarray:
    """The ``(out_size, in_size)`` bilinear weight matrix of one axis; each row sums to 1."""
    scale = in_size / out_size
    support = max(scale, 1.0) if antialias else 1.0
    centres = (numpy.arange(out_size) + 0.5) * scale                      # (out,) in input units
    distance = (numpy.arange(in_size) + 0.5)[None, :] - centres[:, None]  # (out, in)
    weights = numpy.maximum(0.0, 1.0 - numpy.abs(distance) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_with_weights(batch: numpy.ndarray, rows: numpy.ndarray, cols: numpy.ndarray) -> numpy.ndarray:
    """Apply ``out = rows @ image @ cols^T`` to each channel of each image of ``batch``.

    ``rows``: ``(out_h, H)``, ``cols``: ``(out_w, W)``. Float batches keep their dtype; uint8
    batches are resized in float32 and rounded back to uint8 once at the end.
    """
    raw = is_raw(batch)
    dtype = numpy.float32 if raw else batch.dtype
    images = batch.transpose(0, 3, 1, 2).astype(dtype) if raw else batch     # (N, C, H, W)
    rows, cols_t = rows.astype(dtype), cols.T.astype(dtype)                  # (out_h, H), (W, out_w)
    (out_h, height), (width, out_w) = rows.shape, cols_t.shape
    # The product is associative: shrink the axis that saves the most multiplications first.
    if out_h * width * (height + out_w) <= out_w * height * (width + out_h):
        out = (rows @ images) @ cols_t                                       # (N, C, out_h, W) -> (N, C, out_h, out_w)
    else:
        out = rows @ (images @ cols_t)                                       # (N, C, H, out_w) -> (N, C, out_h, out_w)
    if not raw:
        return out
    out = numpy.clip(numpy.rint(out), 0, 255).astype(numpy.uint8)
    return numpy.ascontiguousarray(out.transpose(0, 2, 3, 1))                # (N, out_h, out_w, C)
