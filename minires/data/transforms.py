"""Image transforms on NumPy arrays, one image or a whole batch at once.

Two layouts, told apart by dtype (see ``minires.data.image``): raw images are uint8
``(H, W, C)``, batches ``(N, H, W, C)``; after ``ToTensor`` they are float32 ``(C, H, W)`` in
``[0, 1]``, batches ``(N, C, H, W)``. Every transform here accepts both one image and a batch,
and the random ones draw for each image of a batch separately, image 0 first, from their
``generator`` or, when none is given, from minires's (``minires.manual_seed``).

The CIFAR-10 training recipe::

    transform = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(),
                         Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy

from minires.data.image import as_batch, channels, check_generator, check_image, generator_or_default, is_raw, unbatch
from minires.data.transforms_geometry import CenterCrop, RandomCrop, RandomResizedCrop, Resize

__all__ = ["Compose", "ToTensor", "Normalize", "RandomHorizontalFlip", "RandomCrop", "CenterCrop", "Resize",
           "RandomResizedCrop"]


class Compose:
    """Apply transforms one after the other: ``Compose([a, b])(x) == b(a(x))``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]):
        transforms = list(transforms)
        for t in transforms:
            if isinstance(t, type):         # callable, but calling it would build a transform, not apply one
                raise TypeError(f"Compose expects transform instances, got the class {t.__name__}: write "
                                f"{t.__name__}(...) instead of {t.__name__}")
            if not callable(t):
                raise TypeError(f"Compose expects a list of transforms (callables), got {type(t).__name__} {t!r}")
        self.transforms = transforms

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return type(self).__name__ + "(" + "".join(f"\n    {t}" for t in self.transforms) + "\n)"


class ToTensor:
    """uint8 ``(H, W, C)`` -> float32 ``(C, H, W)`` in ``[0, 1]`` (a batch: ``(N, H, W, C)`` -> ``(N, C, H, W)``).

    ``x / 255`` with the channels moved to the front, where a convolution expects them. The
    result is a NumPy array; the DataLoader turns batches into minires Tensors.
    """

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        check_image(images, "ToTensor")
        if not is_raw(images):
            raise ValueError(f"ToTensor expects uint8 images (H, W, C) or (N, H, W, C); this one is already "
                             f"{images.dtype} of shape {images.shape}, i.e. converted: use ToTensor() once, "
                             f"before the transforms that expect (C, H, W) such as Normalize")
        batch, single = as_batch(images, "ToTensor")
        out = batch.transpose(0, 3, 1, 2).astype(numpy.float32, order="C")   # (N, C, H, W)
        out /= 255
        return unbatch(out, single)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel ``c`` of float ``(C, H, W)`` or ``(N, C, H, W)`` images.

    ``mean`` and ``std`` hold one value per channel (or one for all), usually the dataset's
    statistics, so the network sees inputs centred at 0 with unit spread.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = [float(m) for m in numpy.atleast_1d(mean)]
        self.std = [float(s) for s in numpy.atleast_1d(std)]
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize needs one mean and one std per channel, got {len(self.mean)} means "
                             f"and {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize divides by std, which must be positive, got {self.std}")

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        check_image(images, "Normalize")
        if is_raw(images):
            raise ValueError(f"Normalize works on float (C, H, W) images, as ToTensor makes them; got uint8 of "
                             f"shape {images.shape}: put ToTensor() before Normalize in the Compose")
        batch, single = as_batch(images, "Normalize")
        if len(self.mean) not in (1, channels(batch)):
            raise ValueError(f"Normalize has {len(self.mean)} means and stds but the images have "
                             f"{channels(batch)} channels (shape {images.shape}); give one per channel")
        mean = numpy.asarray(self.mean, dtype=batch.dtype).reshape(-1, 1, 1)   # (C, 1, 1)
        std = numpy.asarray(self.std, dtype=batch.dtype).reshape(-1, 1, 1)
        return unbatch((batch - mean) / std, single)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, each image of a batch on its own draw."""

    def __init__(self, p: float = 0.5, generator: Optional[numpy.random.Generator] = None):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip's p is a probability in [0, 1], got {p!r}")
        check_generator(generator, "RandomHorizontalFlip")
        self.p, self.generator = float(p), generator

    def __call__(self, images: numpy.ndarray) -> numpy.ndarray:
        batch, single = as_batch(images, "RandomHorizontalFlip")
        flip = generator_or_default(self.generator).random(len(batch)) < self.p   # (N,): one draw per image
        mirrored = batch[:, :, ::-1] if is_raw(batch) else batch[:, :, :, ::-1]   # reverse the W axis
        return unbatch(numpy.where(flip[:, None, None, None], mirrored, batch), single)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"
