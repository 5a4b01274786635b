"""ImageFolder: a data set of image files, one folder per class, as torchvision reads it.

::

    root/daisy/100080576_f52e8ee070_n.jpg
    root/daisy/10140303196_b88d3d6cec.jpg
    root/roses/...
    root/tulips/sub/folders/are/searched/too.png

The class names are the folder names, sorted; class ``i`` is ``classes[i]``. Images are
decoded only when asked for (``dataset[i]``), with Pillow, into RGB uint8 arrays of shape
``(H, W, 3)``; their sizes may differ, so ``transform`` (a ``Resize`` or a crop, say) runs on
each image. Pillow is an optional extra: ``pip install "minires[image]"``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

import numpy

from minires.data.dataset import Dataset, Transform
from minires.data.datasets.download import PathLike

#: The file extensions taken for images, as torchvision's (compared case-insensitively).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('ImageFolder decodes images with Pillow, which is not installed: '
                          'pip install "minires[image]" (or pip install Pillow)') from None
    return Image


def pil_loader(path: str) -> numpy.ndarray:
    """The image in ``path`` as an RGB uint8 array of shape ``(H, W, 3)`` (grey and palette
    images are converted to RGB; an alpha channel is dropped)."""
    Image = _pillow()
    try:
        with Image.open(path) as image:
            return numpy.array(image.convert("RGB"), dtype=numpy.uint8)           # (H, W, 3)
    except (OSError, ValueError, Image.DecompressionBombError) as error:       # UnidentifiedImageError is an OSError
        raise ValueError(f"{path!r} could not be decoded as an image ({error}); remove or replace it") from None


def find_classes(directory: PathLike) -> tuple:
    """``(classes, class_to_idx)``: the sorted names of the folders in ``directory``, and name -> index."""
    name = os.fspath(directory)
    if not os.path.isdir(name):
        raise FileNotFoundError(f"ImageFolder: {name!r} is not a folder; expected a folder with one sub-folder "
                                f"of images per class, e.g. {os.path.join(name, 'cats', '1.jpg')!r}")
    classes = sorted(entry.name for entry in os.scandir(name) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"ImageFolder: {name!r} has no sub-folders; expected one folder of images per "
                                f"class, e.g. {os.path.join(name, 'cats', '1.jpg')!r}")
    return classes, {class_name: index for index, class_name in enumerate(classes)}


def make_samples(directory: str, class_to_idx: dict) -> list:
    """``(path, class_index)`` for every image file under each class folder, in sorted order."""
    samples, empty = [], []
    for class_name, index in sorted(class_to_idx.items(), key=lambda item: item[1]):
        found = 0
        for folder, _, files in sorted(os.walk(os.path.join(directory, class_name), followlinks=True)):
            for file_name in sorted(files):
                if file_name.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(folder, file_name), index))
                    found += 1
        if found == 0:
            empty.append(class_name)
    if empty:
        raise FileNotFoundError(f"ImageFolder: no image files in the class folder(s) {empty} of {directory!r}; "
                                f"expected files ending in {', '.join(IMG_EXTENSIONS)} (any case). Add images "
                                f"or remove the empty folders")
    return samples


class ImageFolder(Dataset):
    """Images in class folders: ``ImageFolder(root, transform=None, target_transform=None)``.

    As torchvision's: ``classes`` (sorted folder names), ``class_to_idx``, ``samples`` (a list
    of ``(path, class_index)``) and ``targets`` (the class indices, here an int64 array).
    ``dataset[i]`` decodes image ``i`` with ``loader`` (by default Pillow, to RGB uint8
    ``(H, W, 3)``) and returns ``(transform(image), target_transform(target))``.
    """

    def __init__(self, root: PathLike, transform: Optional[Transform] = None,
                 target_transform: Optional[Transform] = None,
                 loader: Optional[Callable[[str], Any]] = None):
        if loader is None:
            _pillow()                                 # fail now, not at the first batch, when Pillow is missing
            loader = pil_loader
        self.root = os.fspath(root)
        self.transform = transform
        self.target_transform = target_transform
        self.loader = loader
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples = make_samples(self.root, self.class_to_idx)
        self.targets = numpy.array([index for _, index in self.samples], dtype=numpy.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple:
        path, target = self.samples[index]
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self) -> str:
        lines = [type(self).__name__, f"    Number of images: {len(self)}", f"    Root: {self.root}",
                 f"    Classes: {len(self.classes)}"]
        if self.transform is not None:
            lines.append("    Transform: " + repr(self.transform).replace("\n", "\n    "))
        return "\n".join(lines)
