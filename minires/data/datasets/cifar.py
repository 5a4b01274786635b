"""CIFAR-10, read from the binary version of its files (so nothing is unpickled).

The files sit in ``root/cifar-10-batches-bin/``, as ``cifar-10-binary.tar.gz`` unpacks::

    data_batch_1.bin ... data_batch_5.bin    50,000 training images, 10,000 per file
    test_batch.bin                           10,000 test images
    batches.meta.txt                         the class names, one a line (not needed)

Each file is a run of 3,073-byte records: one label byte (0-9), then the 32x32 colour image as
three 1,024-byte planes, red, green, blue, each row-major. That is (C, H, W) order; minires's
raw images are (H, W, C), so the records are reshaped to ``(N, 3, 32, 32)`` and transposed.

torchvision reads the Python version instead (``cifar-10-batches-py``, pickled arrays); pickles
can run code when loaded, so minires does not read them. Data already downloaded for PyTorch
therefore needs the binary archive once more: ``CIFAR10(root, download=True)`` fetches it.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy

from minires.data.dataset import ArrayDataset, Transform
from minires.data.datasets.download import (DownloadError, PathLike, candidate_urls, extract_tar, fetch,
                                            has_md5, mirror_from_environment)

_HEIGHT, _WIDTH, _CHANNELS = 32, 32, 3
_RECORD = 1 + _CHANNELS * _HEIGHT * _WIDTH         # 3,073 bytes: the label, then the image
_NUM_CLASSES = 10


def read_cifar_batch(path: PathLike) -> tuple:
    """``(images, labels)`` from one binary batch file: uint8 ``(N, 32, 32, 3)`` and int64 ``(N,)``."""
    name = os.fspath(path)
    data = numpy.fromfile(name, dtype=numpy.uint8)
    if len(data) == 0 or len(data) % _RECORD:
        raise ValueError(f"{name!r} is not a CIFAR-10 binary batch: it has {len(data)} bytes, which is not a "
                         f"positive multiple of the {_RECORD}-byte record (1 label byte + 3x32x32 pixels); it "
                         f"may be truncated: delete the folder and download it again")
    records = data.reshape(-1, _RECORD)                                           # (N, 3073)
    labels = records[:, 0].astype(numpy.int64)                                    # (N,)
    if labels.max() >= _NUM_CLASSES:
        raise ValueError(f"{name!r} holds the label {labels.max()}, but CIFAR-10 has only 10 classes (0 to 9): "
                         f"is it a CIFAR-100 file?")
    planes = records[:, 1:].reshape(-1, _CHANNELS, _HEIGHT, _WIDTH)               # (N, C, H, W)
    images = numpy.ascontiguousarray(planes.transpose(0, 2, 3, 1))                # (N, H, W, C)
    return images, labels


class CIFAR10(ArrayDataset):
    """CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, in 10 classes.

    ``CIFAR10(root, train=True, transform=None, target_transform=None, download=False)`` as in
    torchvision; ``dataset[i]`` is ``(image, label)`` with ``image`` a uint8 array of shape
    ``(32, 32, 3)`` (before ``transform``). Files are read from ``root/cifar-10-batches-bin/``.
    ``download=True`` fetches ``root/cifar-10-binary.tar.gz`` when the folder is missing, checks
    its MD5 checksum and extracts it atomically; ``mirror`` (or the ``MINIRES_DATA_MIRROR``
    environment variable) fetches it from ``<mirror>/CIFAR10/`` instead.
    """

    base_folder = "cifar-10-batches-bin"
    mirrors = ["https://www.cs.toronto.edu/~kriz/"]
    archive = ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")   # (name, MD5): the official file
    train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
    test_files = ["test_batch.bin"]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root: PathLike, train: bool = True, transform: Optional[Transform] = None,
                 target_transform: Optional[Transform] = None, download: bool = False,
                 mirror: Optional[str] = None):
        self.root = os.fspath(root)
        self.train = train
        self.mirror = mirror if mirror is not None else mirror_from_environment()
        if download:
            self.download()
        self._check_folder()
        batches = [read_cifar_batch(os.path.join(self.folder, name))
                   for name in (self.train_files if train else self.test_files)]
        images = numpy.concatenate([images for images, _ in batches])              # (N, 32, 32, 3)
        labels = numpy.concatenate([labels for _, labels in batches])              # (N,)
        super().__init__(images, labels, transform=transform, target_transform=target_transform,
                         classes=type(self).classes)

    @property
    def folder(self) -> str:
        return os.path.join(self.root, self.base_folder)

    @property
    def class_to_idx(self) -> dict:
        return {name: index for index, name in enumerate(self.classes)}

    def _missing_files(self) -> list:
        """The batch files absent from the folder, or whose size is not a whole number of records."""
        missing = []
        for name in self.train_files + self.test_files:
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path) or os.path.getsize(path) == 0 or os.path.getsize(path) % _RECORD:
                missing.append(name)
        return missing

    def _check_folder(self) -> None:
        """A clear error when the binary files are not there, naming what is and how to get them."""
        if os.path.isdir(self.folder):
            missing = self._missing_files()
            if missing:
                raise FileNotFoundError(f"CIFAR10: {self.folder!r} is incomplete or damaged ({', '.join(missing)} "
                                        f"missing or of a wrong size); delete the folder and pass download=True")
            return
        url = candidate_urls(self.archive[0], self.mirrors, "CIFAR10", self.mirror)[0]
        if os.path.isdir(os.path.join(self.root, "cifar-10-batches-py")):
            raise FileNotFoundError(
                f"CIFAR10: {self.root!r} holds torchvision's Python version (cifar-10-batches-py, pickled), but "
                f"minires reads the binary version, which needs no unpickling. Pass download=True to fetch it, "
                f"or download {url} and extract it into {self.root!r}")
        raise FileNotFoundError(f"CIFAR10: {self.folder!r} does not exist. Pass download=True to fetch the files, "
                                f"or download {url} and extract it into {self.root!r}")

    def download(self) -> None:
        """Fetch and extract the binary archive, unless the batch files are already there.

        An archive already in ``root`` with the published checksum is extracted without
        downloading it again; one with another checksum is replaced. The archive is kept.
        """
        if os.path.isdir(self.folder):
            if not self._missing_files():
                return
            self._check_folder()                      # an incomplete folder: say so rather than overwrite it
        name, md5 = self.archive
        archive_path = os.path.join(self.root, name)
        if not has_md5(archive_path, md5):
            os.makedirs(self.root, exist_ok=True)
            try:
                fetch(candidate_urls(name, self.mirrors, "CIFAR10", self.mirror), archive_path, md5)
            except DownloadError as error:
                raise DownloadError(f"CIFAR10(download=True): {error}") from None
        extract_tar(archive_path, self.root, self.base_folder, required=self.train_files + self.test_files)

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return super().__repr__().replace("\n", f"\n    Split: {split}\n    Root: {self.root}\n", 1)
