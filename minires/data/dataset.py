"""Datasets: indexable collections of examples.

A dataset is anything with ``len(dataset)`` and ``dataset[i]`` (an example, usually an
``(input, target)`` pair), as in PyTorch. A dataset may also offer ``get_batch(indices)``,
which returns a whole batch at once, as arrays: one fancy index gathers the images and the
transform runs on the batch, which is much faster than one image at a time. The DataLoader
uses ``get_batch`` where a dataset has it.

Images follow one convention throughout ``minires.data``: a raw image is a uint8 array laid
out ``(H, W, C)`` (channels last, ``C = 1`` for grey images), as an image file decodes;
``transforms.ToTensor`` turns it into float32 ``(C, H, W)`` in ``[0, 1]``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import numpy

from minires import backend
from minires.random import default_generator
from minires.tensor import Tensor

Transform = Callable[[Any], Any]


class Dataset:
    """The base class of datasets: a subclass defines ``__len__`` and ``__getitem__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) to return one example")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__() to return its number of examples")


def _first_dim(value: Any) -> int:
    shape = value.shape if isinstance(value, Tensor) or backend.is_array(value) else None
    if shape is None:
        raise TypeError(f"TensorDataset holds minires Tensors or NumPy/CuPy arrays, got {type(value).__name__}; "
                        f"convert it with numpy.asarray(...) or minires.tensor(...)")
    if len(shape) == 0:
        raise ValueError("TensorDataset needs arrays with a first dimension to index, got a 0-d one")
    return shape[0]


class TensorDataset(Dataset):
    """Example ``i`` is ``(tensors[0][i], tensors[1][i], ...)``: inputs and targets side by side.

    ``TensorDataset(x, y)`` with ``x`` of shape ``(N, ...)`` and ``y`` of shape ``(N,)``. The
    tensors (minires Tensors or arrays) must all have the same first dimension.
    """

    def __init__(self, *tensors: Any):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor, e.g. TensorDataset(x, y)")
        lengths = [_first_dim(t) for t in tensors]
        if len(set(lengths)) != 1:
            raise ValueError(f"TensorDataset needs tensors with the same first dimension (one row per example), "
                             f"got first dimensions {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return _first_dim(self.tensors[0])

    def __getitem__(self, index: int) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices: numpy.ndarray) -> tuple:
        """The examples at ``indices``, each tensor gathered with one fancy index."""
        return tuple(_gather(t, indices) for t in self.tensors)


def _gather(value: Any, indices: numpy.ndarray) -> Any:
    if isinstance(value, Tensor):               # the rows, outside any graph: a batch is data, not a result
        return Tensor(_gather(value.data, indices))
    if backend.get_array_module(value) is not numpy:
        indices = backend.to_device(numpy.asarray(indices), backend.device_of(value))
    return value[indices]


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``, in that order: ``Subset(d, idx)[k] == d[idx[k]]``."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = numpy.asarray(indices, dtype=numpy.int64).reshape(-1)
        if len(self.indices) and (self.indices.min() < -len(dataset) or self.indices.max() >= len(dataset)):
            raise IndexError(f"Subset indices must lie in [0, {len(dataset)}) for a dataset of {len(dataset)} "
                             f"examples, got values from {self.indices.min()} to {self.indices.max()}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    # A property, so that `hasattr(subset, "get_batch")` is true exactly when the wrapped dataset
    # has the fast path: the DataLoader asks that question before choosing how to build a batch.
    @property
    def get_batch(self) -> Callable[[numpy.ndarray], Any]:
        if not hasattr(self.dataset, "get_batch"):
            raise AttributeError(f"get_batch: the wrapped {type(self.dataset).__name__} has no get_batch")
        return lambda indices: self.dataset.get_batch(self.indices[numpy.asarray(indices, dtype=numpy.int64)])


def random_split(dataset: Any, lengths: Sequence[Union[int, float]],
                 generator: Optional[numpy.random.Generator] = None) -> list:
    """Split ``dataset`` at random into non-overlapping ``Subset``s of the given lengths.

    ``lengths`` are either counts that add up to ``len(dataset)``, or fractions that add up to
    1: then each part gets ``floor(fraction * len(dataset))`` examples and the ones left over go
    one each to the parts in turn (PyTorch's rule). The permutation is drawn from ``generator``,
    or from minires's generator (``minires.manual_seed``) when none is given.
    """
    if generator is not None and not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"random_split's generator must be a numpy.random.Generator, got "
                        f"{type(generator).__name__}; make one with numpy.random.default_rng(seed)")
    n = len(dataset)
    lengths = list(lengths)
    if not lengths or any(not isinstance(v, (int, float, numpy.integer, numpy.floating)) or v < 0 for v in lengths):
        raise ValueError(f"random_split's lengths are non-negative counts or fractions, got {lengths}")
    if all(isinstance(v, (int, numpy.integer)) for v in lengths):
        counts = [int(v) for v in lengths]
    elif math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1.0:
        counts = [int(math.floor(n * fraction)) for fraction in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        raise ValueError(f"random_split's fractions must add up to 1, got {lengths} (sum {sum(lengths)})")
    if sum(counts) != n:
        raise ValueError(f"random_split's lengths add up to {sum(counts)}, but the dataset has {n} examples; "
                         f"give counts that add up to {n}, or fractions that add up to 1")
    permutation = (generator if generator is not None else default_generator()).permutation(n)
    ends = numpy.cumsum(counts)
    return [Subset(dataset, permutation[end - count:end]) for count, end in zip(counts, ends)]


class ArrayDataset(Dataset):
    """Images and labels held in memory as two arrays: the base of minires's image datasets.

    ``images`` is a uint8 array of shape ``(N, H, W, C)`` (channels last, ``C = 1`` for grey
    images); ``targets`` holds ``N`` integer class labels (stored as int64). ``dataset[i]`` is
    ``(transform(images[i]), target_transform(targets[i]))``. ``get_batch(indices)`` gathers a
    batch with one fancy index and runs ``transform`` once on the whole ``(B, H, W, C)`` batch:
    every transform in ``minires.data.transforms`` accepts one image or a batch. ``classes``
    names the labels: ``classes[target]``.
    """

    def __init__(self, images: numpy.ndarray, targets: Any, transform: Optional[Transform] = None,
                 target_transform: Optional[Transform] = None, classes: Optional[Sequence[str]] = None):
        if not isinstance(images, numpy.ndarray) or images.dtype != numpy.uint8 or images.ndim != 4:
            got = (f"a {images.dtype} array of shape {images.shape}" if isinstance(images, numpy.ndarray)
                   else type(images).__name__)
            raise ValueError(f"ArrayDataset expects images as a uint8 NumPy array of shape (N, H, W, C), got {got}; "
                             f"grey images of shape (N, H, W) need a channel axis: images[..., None]")
        targets = numpy.asarray(targets)
        if targets.ndim != 1 or not numpy.issubdtype(targets.dtype, numpy.integer) or len(targets) != len(images):
            raise ValueError(f"ArrayDataset expects targets as {len(images)} integer labels, shape ({len(images)},), "
                             f"one per image; got a {targets.dtype} array of shape {targets.shape}")
        if classes is not None and len(targets) and (targets.min() < 0 or targets.max() >= len(classes)):
            raise ValueError(f"ArrayDataset targets must lie in [0, {len(classes)}) to name one of the "
                             f"{len(classes)} classes, got values from {targets.min()} to {targets.max()}")
        self.images = images
        self.targets = targets.astype(numpy.int64, copy=False)
        self.transform = transform
        self.target_transform = target_transform
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple:
        image, target = self.images[index], int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def get_batch(self, indices: Any) -> tuple:
        """``(images, targets)`` for ``indices``: ``transform`` runs once on the ``(B, H, W, C)`` batch."""
        indices = numpy.asarray(indices, dtype=numpy.int64)
        images, targets = self.images[indices], self.targets[indices]      # (B, H, W, C), (B,)
        if self.transform is not None:
            images = self.transform(images)
        if self.target_transform is not None:
            targets = numpy.stack([numpy.asarray(self.target_transform(int(t))) for t in targets])
        return images, targets

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}", f"    Number of examples: {len(self)}",
                 f"    Image shape (H, W, C): {self.images.shape[1:]}"]
        if self.classes is not None:
            lines.append(f"    Classes: {len(self.classes)}")
        if self.transform is not None:
            lines.append("    Transform: " + repr(self.transform).replace("\n", "\n    "))
        return "\n".join(lines)
