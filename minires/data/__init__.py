"""Data for training: datasets, the DataLoader that batches them, and image transforms.

``Dataset``/``TensorDataset``/``ArrayDataset`` hold examples; ``DataLoader`` shuffles them,
groups them into batches and prepares the next batches in a background thread;
``minires.data.transforms`` holds the image transforms (one image or a whole batch at once); the
datasets (the bundled digits, MNIST, Fashion-MNIST, CIFAR-10, image folders) are in
``minires.data.datasets``.
"""
from minires.data.dataset import ArrayDataset, Dataset, Subset, TensorDataset, random_split
from minires.data.datasets import CIFAR10, MNIST, Digits, DownloadError, FashionMNIST, ImageFolder
from minires.data.loader import DataLoader, default_collate
from minires.data import transforms

__all__ = [
    "Dataset", "TensorDataset", "Subset", "random_split", "ArrayDataset",
    "Digits", "MNIST", "FashionMNIST", "CIFAR10", "ImageFolder", "DownloadError",
    "DataLoader", "default_collate", "transforms",
]
