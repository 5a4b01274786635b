"""Tiny dataset files in the real formats (IDX for MNIST, binary batches for CIFAR-10), for tests.

``tests/conftest.py`` puts this folder on ``sys.path``, so a test module writes ``import datafiles``.
"""
import gzip
import os
import struct

import numpy as np

from minires.data.datasets import CIFAR10

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: two zero bytes, the type code, the rank, the sizes, the values."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(root, name="MNIST", n_train=5, n_test=3, size=28, compress=True, seed=0):
    """Tiny MNIST-layout files; returns {split: (images (N, H, W), labels (N,))}."""
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, name, "raw")
    os.makedirs(raw, exist_ok=True)
    made = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            path = os.path.join(raw, f"{prefix}-{kind}-ubyte")
            with open(path + ".gz" if compress else path, "wb") as f:
                f.write(gzip.compress(data) if compress else data)
        made[prefix] = (images, labels)
    return made


def cifar_bytes(images_hwc: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: per image, the label byte, then the R, G and B planes."""
    planes = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)       # (N, 3*32*32)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def write_cifar(root, per_batch=2, seed=0):
    """A tiny cifar-10-batches-bin folder; returns (train images, train labels, test images, test labels)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-bin")
    os.makedirs(folder, exist_ok=True)
    parts = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        with open(os.path.join(folder, name + ".bin"), "wb") as f:
            f.write(cifar_bytes(images, labels))
        parts[name] = (images, labels)
    with open(os.path.join(folder, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CIFAR10.classes) + "\n\n")
    train = [parts[f"data_batch_{i}"] for i in range(1, 6)]
    return (np.concatenate([i for i, _ in train]), np.concatenate([l for _, l in train]), *parts["test_batch"])
