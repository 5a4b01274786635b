"""Image arrays: the two layouts, and the cropping and padding the transforms share.

A transform receives one image or a batch, in one of two layouts, told apart by dtype:

- raw, ``uint8``: ``(H, W, C)`` for one image, ``(N, H, W, C)`` for a batch (channels last,
  as an image file decodes);
- tensor, floating: ``(C, H, W)`` for one image, ``(N, C, H, W)`` for a batch (what
  ``ToTensor`` makes and a network eats).

Each transform turns one image into a batch of one (``as_batch``), works on the batch, and
takes the batch axis away again at the end, so the batch code is the only code.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy

from minires.random import default_generator

SizeLike = Union[int, Sequence[int]]


def check_image(x: Any, who: str) -> None:
    """Raise a clear error unless ``x`` is one image or a batch in one of the two layouts."""
    if not isinstance(x, numpy.ndarray):
        hint = "; a minires Tensor becomes one with .numpy()" if hasattr(x, "numpy") else ""
        raise TypeError(f"{who} works on NumPy arrays, got {type(x).__name__}{hint}")
    if x.ndim not in (3, 4) or not (x.dtype == numpy.uint8 or numpy.issubdtype(x.dtype, numpy.floating)):
        raise ValueError(
            f"{who} expects one image or a batch: uint8 (H, W, C) / (N, H, W, C), or floating (C, H, W) / "
            f"(N, C, H, W) after ToTensor; got a {x.dtype} array of shape {x.shape}"
            + ("; a grey image of shape (H, W) needs a channel axis: image[..., None]" if x.ndim == 2 else ""))


def is_raw(x: numpy.ndarray) -> bool:
    """True for the raw layout (uint8, channels last), False for the tensor layout (float, channels first)."""
    return x.dtype == numpy.uint8


def as_batch(x: numpy.ndarray, who: str) -> Tuple[numpy.ndarray, bool]:
    """``(batch, single)``: ``x`` with a batch axis (added when ``x`` is one image), and whether it was added."""
    check_image(x, who)
    return (x[None], True) if x.ndim == 3 else (x, False)


def unbatch(batch: numpy.ndarray, single: bool) -> numpy.ndarray:
    """Undo ``as_batch``."""
    return batch[0] if single else batch


def image_size(batch: numpy.ndarray) -> Tuple[int, int]:
    """``(H, W)`` of a batch in either layout."""
    return (batch.shape[1], batch.shape[2]) if is_raw(batch) else (batch.shape[2], batch.shape[3])


def channels(batch: numpy.ndarray) -> int:
    return batch.shape[3] if is_raw(batch) else batch.shape[1]


def parse_size(size: SizeLike, who: str) -> Tuple[int, int]:
    """torchvision's size argument: ``s`` or ``(s,)`` means ``(s, s)``; ``(h, w)`` is itself."""
    values = [size] if isinstance(size, (int, numpy.integer)) else \
        list(size) if isinstance(size, (tuple, list)) else None
    if values is None or len(values) not in (1, 2) or any(
            not isinstance(v, (int, numpy.integer)) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{who} expects a size as a positive int or a (height, width) pair, got {size!r}")
    return (int(values[0]), int(values[-1]))


def parse_padding(padding: SizeLike, who: str) -> Tuple[int, int, int, int]:
    """torchvision's padding argument as ``(left, top, right, bottom)``: ``p`` pads every side by
    ``p``; ``(a, b)`` pads left and right by ``a``, top and bottom by ``b``; 4 values are each side."""
    values = [padding] if isinstance(padding, (int, numpy.integer)) else list(padding) \
        if isinstance(padding, (tuple, list)) else None
    if values is None or len(values) not in (1, 2, 4) or any(
            not isinstance(v, (int, numpy.integer)) or isinstance(v, bool) or v < 0 for v in values):
        raise ValueError(f"{who} expects padding as a non-negative int, or 2 or 4 of them "
                         f"(left/right, top/bottom) or (left, top, right, bottom); got {padding!r}")
    if len(values) == 1:
        values = values * 4
    elif len(values) == 2:
        values = values * 2
    return tuple(int(v) for v in values)


PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


def pad(batch: numpy.ndarray, padding: Tuple[int, int, int, int], fill: Union[float, Sequence[float]],
        mode: str) -> numpy.ndarray:
    """Pad the height and width of ``batch`` by ``(left, top, right, bottom)`` pixels.

    ``mode`` is torchvision's (and NumPy's): ``constant`` fills with ``fill`` (one value, or one
    per channel), ``edge`` repeats the border pixel, ``reflect`` mirrors without repeating it
    (``c b | a b c``), ``symmetric`` mirrors with it (``b a | a b c``).
    """
    left, top, right, bottom = padding
    if not any(padding):
        return batch
    h_axis, w_axis = (1, 2) if is_raw(batch) else (2, 3)
    if mode != "constant":
        widths = [(0, 0)] * 4
        widths[h_axis], widths[w_axis] = (top, bottom), (left, right)
        return numpy.pad(batch, widths, mode=mode)
    shape = list(batch.shape)
    shape[h_axis] += top + bottom
    shape[w_axis] += left + right
    out = numpy.empty(shape, dtype=batch.dtype)
    out[...] = fill_values(fill, batch)
    index = [slice(None)] * 4
    index[h_axis], index[w_axis] = slice(top, top + batch.shape[h_axis]), slice(left, left + batch.shape[w_axis])
    out[tuple(index)] = batch
    return out


def fill_values(fill: Union[float, Sequence[float]], batch: numpy.ndarray) -> numpy.ndarray:
    """``fill`` as an array that broadcasts over ``batch``'s channels (one value, or one per channel)."""
    values = numpy.asarray(fill, dtype=numpy.float64).reshape(-1)
    if values.size not in (1, channels(batch)):
        raise ValueError(f"fill has {values.size} values, but the images have {channels(batch)} channels; "
                         f"give one value, or one per channel")
    if is_raw(batch) and (values.min() < 0 or values.max() > 255 or numpy.any(values != numpy.round(values))):
        raise ValueError(f"fill for uint8 images must be whole numbers in [0, 255], got {fill!r}")
    values = values.astype(batch.dtype)
    return values if is_raw(batch) else values.reshape(-1, 1, 1)     # (C,) for (H, W, C); (C, 1, 1) for (C, H, W)


def window(batch: numpy.ndarray, top: int, left: int, height: int, width: int) -> numpy.ndarray:
    """The same ``height`` x ``width`` window of every image, at ``(top, left)``: a view, not a copy."""
    rows, cols = slice(top, top + height), slice(left, left + width)
    return batch[:, rows, cols] if is_raw(batch) else batch[:, :, rows, cols]


def crop(batch: numpy.ndarray, tops: numpy.ndarray, lefts: numpy.ndarray, height: int, width: int) -> numpy.ndarray:
    """Cut a ``height`` x ``width`` window out of each image, image ``n``'s at ``(tops[n], lefts[n])``.

    Every window has the same size, so the whole batch is one gather: row ``r`` of window ``n``
    is row ``tops[n] + r`` of image ``n``.
    """
    n = numpy.arange(len(batch))
    rows = tops[:, None] + numpy.arange(height)                   # (N, height)
    cols = lefts[:, None] + numpy.arange(width)                   # (N, width)
    if is_raw(batch):                                             # (N, H, W, C) -> (N, height, width, C)
        return batch[n[:, None, None], rows[:, :, None], cols[:, None, :]]
    c = numpy.arange(batch.shape[1])                              # (N, C, H, W) -> (N, C, height, width)
    return batch[n[:, None, None, None], c[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def check_generator(generator: Optional[numpy.random.Generator], who: str) -> None:
    if generator is not None and not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"{who}'s generator must be a numpy.random.Generator or None (minires's own), got "
                        f"{type(generator).__name__}; make one with numpy.random.default_rng(seed)")


def generator_or_default(generator: Optional[numpy.random.Generator]) -> numpy.random.Generator:
    """``generator``, or minires's (``minires.random.default_generator()``) when it is None."""
    return generator if generator is not None else default_generator()


def uniform_integers(generator: numpy.random.Generator, counts: numpy.ndarray) -> numpy.ndarray:
    """One integer in ``[0, count)`` for each entry of ``counts``, drawn in C order.

    Drawn as ``floor(u * count)`` from one uniform ``u`` each, so that ``N`` draws of one
    value give the same numbers as one draw of ``N``: a batch gets exactly the offsets its
    images would get one at a time. (``Generator.integers`` does not promise that.)
    """
    counts = numpy.asarray(counts, dtype=numpy.int64)
    u = generator.random(counts.shape)
    return numpy.minimum(numpy.floor(u * counts).astype(numpy.int64), counts - 1)
