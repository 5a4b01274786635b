"""The handwritten digits that ship inside minires: a data set that needs no download.

1,797 grey 8x8 images of the digits 0-9 from the UCI "Optical Recognition of Handwritten
Digits" data set (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0), the copy scikit-learn ships.
Each pixel counts the "on" pixels in a 4x4 block of a 32x32 bitmap, so it lies in 0..16.
The file, ``minires/data/bundled/digits.npz``, its licence and the script that made it sit
side by side in the package; the split into 1,438 training and 359 test images is stored in
the file (a stratified draw: a fifth of each digit's images, chosen with seed 0, for testing).
"""
from __future__ import annotations

import importlib.resources
import os
from typing import Optional

import numpy

from minires.data.dataset import ArrayDataset, Transform
from minires.data.datasets.download import PathLike

_FILE = "digits.npz"
_ARRAYS = ("images", "labels", "is_test")


def to_uint8(counts: numpy.ndarray) -> numpy.ndarray:
    """Pixel counts 0..16 as the usual 0..255 grey levels: ``round(v * 255 / 16)``, so 16 -> 255."""
    return ((counts.astype(numpy.uint16) * 255 + 8) // 16).astype(numpy.uint8)


class Digits(ArrayDataset):
    """The bundled UCI handwritten digits: 1,438 training or 359 test images, grey, 8x8.

    ``Digits(train=True, transform=None, target_transform=None)``; ``dataset[i]`` is
    ``(image, label)`` with ``image`` a uint8 array of shape ``(8, 8, 1)`` in 0..255 (before
    ``transform``) and ``label`` the digit. ``root=None`` reads the copy inside the package;
    ``root`` may instead name a folder that holds a ``digits.npz`` made by
    ``minires/data/bundled/make_digits.py``.
    """

    classes = [str(digit) for digit in range(10)]

    def __init__(self, root: Optional[PathLike] = None, train: bool = True, transform: Optional[Transform] = None,
                 target_transform: Optional[Transform] = None):
        self.root = None if root is None else os.fspath(root)
        self.train = train
        counts, labels, is_test = _load(self.root)
        keep = ~is_test if train else is_test
        images = to_uint8(counts[keep])[..., None]                                # (N, 8, 8, 1)
        super().__init__(images, labels[keep], transform=transform, target_transform=target_transform,
                         classes=type(self).classes)

    @property
    def class_to_idx(self) -> dict:
        return {name: index for index, name in enumerate(self.classes)}

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return super().__repr__().replace("\n", f"\n    Split: {split}\n", 1)


def _load(root: Optional[str]) -> tuple:
    """``(images, labels, is_test)`` from the bundled file, or from ``root/digits.npz``."""
    if root is None:
        name = "minires/data/bundled/digits.npz"
        bundled = importlib.resources.files("minires.data").joinpath("bundled").joinpath(_FILE)
        if not bundled.is_file():
            raise FileNotFoundError(f"{name} is missing from the installed package: reinstall minires, or make "
                                    f"the file with minires/data/bundled/make_digits.py")
        opened = bundled.open("rb")
    else:
        name = os.path.join(root, _FILE)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"Digits: {name!r} does not exist. Digits() with no root reads the copy "
                                    f"inside minires; a root must hold a digits.npz made by make_digits.py")
        opened = open(name, "rb")
    with opened as f, numpy.load(f) as archive:                # an .npz: arrays only, never a pickle
        missing = [key for key in _ARRAYS if key not in archive.files]
        if missing:
            raise ValueError(f"{name!r} lacks the arrays {missing}; expected {list(_ARRAYS)}, as make_digits.py "
                             f"writes them")
        return tuple(archive[key] for key in _ARRAYS)
