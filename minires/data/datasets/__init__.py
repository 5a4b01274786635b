"""Image data sets: the bundled digits, MNIST, Fashion-MNIST, CIFAR-10 and image folders.

Each keeps raw images as uint8 arrays of shape ``(H, W, C)`` and gives ``(image, label)``
pairs, with torchvision's constructor arguments and folder layout, so files already
downloaded for PyTorch are found where they are. ``download=True`` fetches the official files,
checks their MD5 checksums and writes them atomically (see ``minires.data.datasets.download``
for mirrors).
"""
from minires.data.datasets.cifar import CIFAR10
from minires.data.datasets.digits import Digits
from minires.data.datasets.download import MIRROR_VARIABLE, DownloadError
from minires.data.datasets.folder import IMG_EXTENSIONS, ImageFolder
from minires.data.datasets.mnist import MNIST, FashionMNIST, read_idx

__all__ = ["Digits", "MNIST", "FashionMNIST", "CIFAR10", "ImageFolder", "DownloadError", "IMG_EXTENSIONS",
           "MIRROR_VARIABLE", "read_idx"]
