"""Random numbers, reproducible on every device.

minires draws all its random numbers (weight initialisation, ``randn``, data shuffling) from
one NumPy generator on the CPU and copies them to the device, so the same seed gives the same
numbers on NumPy and on CuPy. ``manual_seed(s)`` resets that generator.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy

from minires import backend
from minires.backend import DeviceLike
from minires.tensor import Tensor, _FLOAT_DEFAULT

_generator = numpy.random.default_rng()
_thread_local = threading.local()  # .generator: this thread's override, set by `using_generator`


def manual_seed(seed: int) -> numpy.random.Generator:
    """Seed minires's random numbers; returns the new generator."""
    global _generator
    if not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
    _generator = numpy.random.default_rng(int(seed))
    return _generator


def default_generator() -> numpy.random.Generator:
    """The generator that minires draws from: the global one (reset by ``manual_seed``), or
    the current thread's override while a ``using_generator`` block runs in this thread."""
    override = getattr(_thread_local, "generator", None)
    return _generator if override is None else override


@contextlib.contextmanager
def using_generator(generator: numpy.random.Generator) -> Iterator[numpy.random.Generator]:
    """Make ``default_generator()`` return ``generator`` in this thread, for the ``with`` block.

    Other threads are not affected. The DataLoader's background thread runs its transforms
    inside such a block, with a generator seeded at the start of the epoch, so the batches
    are the same whatever the main thread draws meanwhile::

        with minires.random.using_generator(numpy.random.default_rng(0)):
            flipped = RandomHorizontalFlip()(image)     # draws from the seeded generator
    """
    if not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"using_generator expects a numpy.random.Generator, got {type(generator).__name__}; "
                        f"make one with numpy.random.default_rng(seed)")
    previous = getattr(_thread_local, "generator", None)
    _thread_local.generator = generator
    try:
        yield generator
    finally:
        _thread_local.generator = previous


def _shape(size: tuple) -> tuple:
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


def _make(values: numpy.ndarray, dtype: Any, device: DeviceLike, requires_grad: bool) -> Tensor:
    values = values.astype(_FLOAT_DEFAULT if dtype is None else dtype, copy=False)
    return Tensor(backend.to_device(values, device), requires_grad=requires_grad)


def randn(*size: Any, dtype: Any = None, device: DeviceLike = None, requires_grad: bool = False) -> Tensor:
    """Standard normal values of the given shape (float32 unless ``dtype`` says otherwise)."""
    return _make(default_generator().standard_normal(_shape(size)), dtype, device, requires_grad)


def rand(*size: Any, dtype: Any = None, device: DeviceLike = None, requires_grad: bool = False) -> Tensor:
    """Uniform values in [0, 1) of the given shape."""
    return _make(default_generator().random(_shape(size)), dtype, device, requires_grad)


def randint(low: int, high: int, size: tuple, device: DeviceLike = None) -> Tensor:
    """Integers in [low, high) of the given shape, int64."""
    return Tensor(backend.to_device(default_generator().integers(low, high, size=size, dtype=numpy.int64), device))
