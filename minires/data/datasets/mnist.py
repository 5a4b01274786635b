"""MNIST and Fashion-MNIST, read from their IDX files (gzipped or not).

The files sit where torchvision leaves them, so data already downloaded for PyTorch is found
as it is::

    root/MNIST/raw/train-images-idx3-ubyte[.gz]    60,000 images, 28x28
    root/MNIST/raw/train-labels-idx1-ubyte[.gz]
    root/MNIST/raw/t10k-images-idx3-ubyte[.gz]     10,000 test images
    root/MNIST/raw/t10k-labels-idx1-ubyte[.gz]
    root/FashionMNIST/raw/...                      the same four names

The IDX format (LeCun et al.) is a header and then the raw values, big-endian:

    bytes 0-1   zero
    byte  2     the type code of the values: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     the number of dimensions, d
    then        d sizes, each a 4-byte big-endian integer
    then        the values, row-major (the last index varies fastest)

so an image file starts ``00 00 08 03`` (2051) and a label file ``00 00 08 01`` (2049).
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Optional

import numpy

from minires.data.dataset import ArrayDataset, Transform
from minires.data.datasets.download import (DownloadError, PathLike, candidate_urls, fetch, has_md5,
                                            mirror_from_environment)

# type code -> big-endian NumPy dtype of the values
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> numpy.ndarray:
    """The array stored in an IDX file (gzipped or not: told apart by the gzip magic bytes).

    Values come back in the machine's byte order. A wrong magic number, a truncated file or
    extra bytes after the values are a ``ValueError`` that names the file.
    """
    name = os.fspath(path)
    data = _read_maybe_gzipped(name)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name!r} is not an IDX file: it should start with two zero bytes, a type code and a "
                         f"number of dimensions, but starts with {data[:4].hex(' ') or 'nothing'}")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_TYPES:
        raise ValueError(f"{name!r} is not an IDX file: its type code is 0x{type_code:02X}, expected one of "
                         f"{', '.join(f'0x{code:02X}' for code in _IDX_TYPES)}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name!r} is truncated: its header announces {ndim} dimensions ({header} bytes of header) "
                         f"but the file has only {len(data)} bytes")
    shape = tuple(int(size) for size in numpy.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = numpy.dtype(_IDX_TYPES[type_code])
    needed = header + math.prod(shape) * dtype.itemsize
    if len(data) < needed:
        raise ValueError(f"{name!r} is truncated: its header announces an array of shape {shape}, which needs "
                         f"{needed} bytes, but the file has only {len(data)}; download it again")
    if len(data) > needed:
        raise ValueError(f"{name!r} has {len(data) - needed} bytes after the array of shape {shape} its header "
                         f"announces: it is not a well-formed IDX file")
    values = numpy.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))                          # a native-order copy we own


def _read_maybe_gzipped(name: str) -> bytes:
    with open(name, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{name!r} is a damaged gzip file ({error}); it may be truncated: delete it and "
                         f"download it again") from None


class MNIST(ArrayDataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images, grey, 28x28.

    ``MNIST(root, train=True, transform=None, target_transform=None, download=False)`` as in
    torchvision; ``dataset[i]`` is ``(image, label)`` with ``image`` a uint8 array of shape
    ``(28, 28, 1)`` (before ``transform``). Files are read from ``root/MNIST/raw/`` (see the
    module docstring). ``download=True`` fetches the four official ``.gz`` files there when they
    are missing, checks their MD5 checksums and writes them atomically; ``mirror`` (or the
    ``MINIRES_DATA_MIRROR`` environment variable) fetches them from ``<mirror>/MNIST/`` instead.
    """

    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    # (file name as published, its MD5 checksum): torchvision's table
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root: PathLike, train: bool = True, transform: Optional[Transform] = None,
                 target_transform: Optional[Transform] = None, download: bool = False,
                 mirror: Optional[str] = None):
        self.root = os.fspath(root)
        self.train = train
        self.mirror = mirror if mirror is not None else mirror_from_environment()
        if download:
            self.download()
        prefix = "train" if train else "t10k"
        images_file = self._find(f"{prefix}-images-idx3-ubyte")
        labels_file = self._find(f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or images.dtype != numpy.uint8:
            raise ValueError(f"{images_file!r} should hold uint8 images of shape (N, H, W), but holds a "
                             f"{images.dtype} array of shape {images.shape}: is it a label file?")
        if labels.ndim != 1 or labels.dtype != numpy.uint8:
            raise ValueError(f"{labels_file!r} should hold uint8 labels of shape (N,), but holds a "
                             f"{labels.dtype} array of shape {labels.shape}: is it an image file?")
        if len(images) != len(labels):
            raise ValueError(f"{images_file!r} holds {len(images)} images but {labels_file!r} holds "
                             f"{len(labels)} labels; one of them is from another data set or damaged")
        if len(labels) and labels.max() >= len(self.classes):
            raise ValueError(f"{labels_file!r} holds the label {labels.max()}, but {type(self).__name__} has "
                             f"only {len(self.classes)} classes (0 to {len(self.classes) - 1})")
        super().__init__(images[..., None], labels.astype(numpy.int64), transform=transform,   # (N, H, W, 1)
                         target_transform=target_transform, classes=type(self).classes)

    @property
    def raw_folder(self) -> str:
        """``root/<class name>/raw``: where torchvision keeps the files."""
        return os.path.join(self.root, type(self).__name__, "raw")

    @property
    def class_to_idx(self) -> dict:
        return {name: index for index, name in enumerate(self.classes)}

    def _find(self, name: str) -> str:
        """The path of ``name`` or ``name.gz`` in the raw folder (the plain file first)."""
        for candidate in (name, name + ".gz"):
            path = os.path.join(self.raw_folder, candidate)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"{type(self).__name__}: neither {name} nor {name}.gz is in {self.raw_folder!r}. "
                                f"Pass download=True to fetch the files, or put torchvision's files there "
                                f"(root is the folder that holds {type(self).__name__}/raw/)")

    def _present(self, gz_name: str, md5: str) -> bool:
        """True when a file is already there: the unpacked file, or the .gz with its published checksum."""
        plain = os.path.join(self.raw_folder, gz_name[:-len(".gz")])
        return os.path.isfile(plain) or has_md5(os.path.join(self.raw_folder, gz_name), md5)

    def download(self) -> None:
        """Fetch the official ``.gz`` files that are not already in the raw folder.

        A file counts as present when its unpacked form is there (as torchvision leaves it) or
        its ``.gz`` has the published checksum; a ``.gz`` with another checksum is replaced.
        """
        missing = [(name, md5) for name, md5 in self.resources if not self._present(name, md5)]
        if not missing:
            return
        os.makedirs(self.raw_folder, exist_ok=True)
        for name, md5 in missing:
            urls = candidate_urls(name, self.mirrors, type(self).__name__, self.mirror)
            try:
                fetch(urls, os.path.join(self.raw_folder, name), md5)
            except DownloadError as error:
                raise DownloadError(f"{type(self).__name__}(download=True): {error}") from None

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return super().__repr__().replace("\n", f"\n    Split: {split}\n    Root: {self.root}\n", 1)


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 60,000 training and 10,000 test images of clothes, grey, 28x28.

    The same files, layout and arguments as ``MNIST``, under ``root/FashionMNIST/raw/``.
    """

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
