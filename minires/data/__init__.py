"""Data for training: datasets, the DataLoader that batches them, and image transforms.

``Dataset``/``TensorDataset``/``ArrayDataset`` hold examples; ``DataLoader`` shuffles them,
groups them into batches and prepares the next batches in a background thread;
``minires.data.transforms`` holds the image transforms (one image or a whole batch at once).
"""
from minires.data.dataset import ArrayDataset, Dataset, Subset, TensorDataset, random_split
from minires.data.datasets import CIFAR10, MNIST, Digits, DownloadError, FashionMNIST, ImageFolder
from minires.data.loader import DataLoader, default_collate
from minires.data import transforms
