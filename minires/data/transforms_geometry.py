"""Transforms that move pixels: crops and resizes (imported into ``minires.data.transforms``).

Each takes one image or a batch in either layout (see ``minires.data.image``) and returns the
same kind of array. The random ones draw their parameters for each image of a batch in turn,
image 0 first, so a batch gets exactly what its images would get one at a time.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy

from minires.data.image import (PADDING_MODES, SizeLike, as_batch, check_generator, crop, generator_or_default,
                                image_size, pad, parse_padding, parse_size, unbatch, uniform_integers, window)
from minires.data.interpolate import resize_weights, resize_with_weights


class RandomCrop:
    """Cut a ``size`` window at a random place, after optional padding (torchvision's ``RandomCrop``).

    ``padding`` (an int, or 2 or 4 values: left/right, top/bottom or left, top, right, bottom)
    is added first, filled according to ``padding_mode`` (``constant`` with ``fill``, ``edge``,
    ``reflect``, ``symmetric``). ``pad_if_needed`` pads images smaller than ``size`` so the crop
    fits. The CIFAR-10 recipe: ``RandomCrop(32, padding=4)``.
    """

    def __init__(self, size: SizeLike, padding: Optional[SizeLike] = None, pad_if_needed: bool = False,
                 fill: Union[float, Sequence[float]] = 0, padding_mode: str = "constant",
                 generator: Optional[numpy.random.Generator] = None):
        self.size = parse_size(size, "RandomCrop")
        self.padding = padding
        self._padding = parse_padding(padding, "RandomCrop") if padding is not None else (0, 0, 0, 0)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"RandomCrop's padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        check_generator(generator, "RandomCrop")
        self.pad_if_needed, self.fill, self.padding_mode, self.generator = pad_if_needed, fill, padding_mode, generator

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        batch, single = as_batch(images, "RandomCrop")
        batch = pad(batch, self._padding, self.fill, self.padding_mode)
        th, tw = self.size
        height, width = image_size(batch)
        if self.pad_if_needed and width < tw:       # torchvision pads both sides by the shortfall
            batch = pad(batch, (tw - width, 0, tw - width, 0), self.fill, self.padding_mode)
        if self.pad_if_needed and height < th:
            batch = pad(batch, (0, th - height, 0, th - height), self.fill, self.padding_mode)
        height, width = image_size(batch)
        if height < th or width < tw:
            raise ValueError(f"RandomCrop of size {self.size} does not fit in images of size {(height, width)} "
                             f"(after padding); use a larger padding or pad_if_needed=True")
        if (height, width) == (th, tw):             # nothing to choose: torchvision draws nothing either
            return unbatch(batch.copy(), single)
        # one (top, left) per image, image by image: (N, 2)
        offsets = uniform_integers(generator_or_default(self.generator),
                                   numpy.broadcast_to([height - th + 1, width - tw + 1], (len(batch), 2)))
        return unbatch(crop(batch, offsets[:, 0], offsets[:, 1], th, tw), single)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, padding={self.padding})"


class CenterCrop:
    """Cut a ``size`` window out of the middle; images smaller than ``size`` are padded with zeros first."""

    def __init__(self, size: SizeLike):
        self.size = parse_size(size, "CenterCrop")

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        batch, single = as_batch(images, "CenterCrop")
        th, tw = self.size
        height, width = image_size(batch)
        if th > height or tw > width:               # torchvision's split: the odd pixel goes right/bottom
            dh, dw = max(th - height, 0), max(tw - width, 0)
            batch = pad(batch, (dw // 2, dh // 2, (dw + 1) // 2, (dh + 1) // 2), 0, "constant")
            height, width = image_size(batch)
        top, left = int(round((height - th) / 2.0)), int(round((width - tw) / 2.0))
        return unbatch(window(batch, top, left, th, tw).copy(), single)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def resized_output_size(height: int, width: int, size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    """torchvision's rule: an int ``size`` sets the shorter edge and keeps the aspect ratio (the longer
    edge is truncated); a pair is ``(height, width)``."""
    if not isinstance(size, int):
        return size
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


class Resize:
    """Resize to ``size`` with bilinear interpolation (torchvision's ``Resize``).

    ``size`` an int: the shorter edge becomes ``size`` and the aspect ratio is kept; ``(h, w)``:
    exactly that. Pixels have half-pixel centres, as in PIL and torchvision; ``antialias``
    (the default, as in torchvision) widens the filter when shrinking so fine detail is
    averaged instead of aliased. uint8 images come back as uint8, rounded. See
    ``minires.data.interpolate`` for the math.
    """

    def __init__(self, size: SizeLike, antialias: bool = True):
        parsed = parse_size(size, "Resize")
        single_value = isinstance(size, (int, numpy.integer)) or len(size) == 1
        self.size: Union[int, Tuple[int, int]] = parsed[0] if single_value else parsed
        self.antialias = bool(antialias)

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        batch, single = as_batch(images, "Resize")
        height, width = image_size(batch)
        out_h, out_w = resized_output_size(height, width, self.size)
        if (out_h, out_w) == (height, width):
            return unbatch(batch.copy(), single)
        rows = resize_weights(height, out_h, self.antialias)         # (out_h, H)
        cols = resize_weights(width, out_w, self.antialias)          # (out_w, W)
        return unbatch(resize_with_weights(batch, rows, cols), single)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, interpolation=bilinear, antialias={self.antialias})"


class RandomResizedCrop:
    """Crop a random part of the image and resize it to ``size`` (torchvision's ``RandomResizedCrop``).

    The part covers a fraction of the area drawn uniformly from ``scale`` and has an aspect
    ratio (width / height) drawn log-uniformly from ``ratio``; up to 10 tries find one that
    fits, else the largest central crop within ``ratio`` is used. The crop is resized with
    bilinear interpolation (antialiased, as in torchvision). The ImageNet training recipe:
    ``RandomResizedCrop(224)``.
    """

    def __init__(self, size: SizeLike, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0), antialias: bool = True,
                 generator: Optional[numpy.random.Generator] = None):
        self.size = parse_size(size, "RandomResizedCrop")
        for name, pair in (("scale", scale), ("ratio", ratio)):
            if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
                raise ValueError(f"RandomResizedCrop's {name} must be (min, max) with 0 < min <= max, got {pair!r}")
        if scale[1] > 1:
            raise ValueError(f"RandomResizedCrop's scale is a fraction of the image's area, at most 1; got {scale!r}")
        check_generator(generator, "RandomResizedCrop")
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.antialias, self.generator = bool(antialias), generator

    def get_params(self, height: int, width: int, generator: numpy.random.Generator) -> Tuple[int, int, int, int]:
        """``(top, left, h, w)`` of one crop, drawn as torchvision draws it."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * generator.uniform(self.scale[0], self.scale[1])
            aspect_ratio = math.exp(generator.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                top, left = uniform_integers(generator, [height - h + 1, width - w + 1])
                return int(top), int(left), h, w
        in_ratio = width / height                   # fallback: the largest central crop within `ratio`
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        batch, single = as_batch(images, "RandomResizedCrop")
        height, width = image_size(batch)
        generator = generator_or_default(self.generator)
        th, tw = self.size
        out = []
        for n in range(len(batch)):                 # each window has its own size: one image at a time
            top, left, h, w = self.get_params(height, width, generator)
            out.append(resize_with_weights(window(batch[n:n + 1], top, left, h, w),
                                           resize_weights(h, th, self.antialias),     # (th, h)
                                           resize_weights(w, tw, self.antialias)))    # (tw, w)
        if not out:                                 # an empty batch: the right shape, nothing drawn
            return resize_with_weights(batch, resize_weights(height, th, self.antialias),
                                       resize_weights(width, tw, self.antialias))
        return unbatch(numpy.concatenate(out), single)

    def __repr__(self) -> str:
        scale = tuple(round(s, 4) for s in self.scale)
        ratio = tuple(round(r, 4) for r in self.ratio)
        return (f"{type(self).__name__}(size={self.size}, scale={scale}, ratio={ratio}, "
                f"interpolation=bilinear, antialias={self.antialias})")
