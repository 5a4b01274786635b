"""DataLoader: a dataset in shuffled batches of Tensors, prepared in a background thread.

One epoch is one ``for`` loop over the loader. At its start, in the caller's thread, the
loader draws two things from its generator (minires's, ``minires.manual_seed``, unless one is
given): the order of the examples (shuffled, or 0, 1, 2, ... without ``shuffle``) and a seed.
A background thread then builds the batches in that order, ``prefetch`` of them ahead of the
training step, running the transforms with a generator made from that seed (installed as
``minires.random.default_generator()`` for that thread only). So the batches of an epoch are
fixed the moment it starts, whatever the main thread draws meanwhile: with or without the
thread, and after resuming from a checkpoint of the generator, they come out the same.

A batch is built in one of two ways:

- the fast path, for datasets with ``get_batch(indices)`` (``ArrayDataset``, ``TensorDataset``)
  when no ``collate_fn`` is given: the dataset gathers the batch and transforms it at once;
- the general path: ``dataset[i]`` for each index, then ``collate_fn`` (``default_collate``
  unless one is given) stacks the examples into Tensors.
"""
from __future__ import annotations

import collections.abc
import math
import queue
import threading
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy

from minires import backend
from minires.random import default_generator, using_generator
from minires.tensor import Tensor

Collate = Callable[[List[Any]], Any]


def default_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of examples into one batch, as PyTorch's ``default_collate``.

    Arrays and Tensors are stacked along a new first axis into a Tensor; Python ints become an
    int64 Tensor, floats float64, bools bool; NumPy scalars keep their dtype. Tuples, lists and
    dicts are collated field by field (``[(x0, y0), (x1, y1)]`` -> ``(stack(x), stack(y))``);
    strings stay a list.
    """
    if len(batch) == 0:
        raise ValueError("default_collate needs at least one example")
    first = batch[0]
    if isinstance(first, Tensor):
        arrays = [b.data for b in batch]
        return Tensor(_stack(backend.get_array_module(arrays[0]), arrays))
    if backend.is_array(first):
        return Tensor(_stack(backend.get_array_module(first), list(batch)))
    if isinstance(first, numpy.generic):
        return Tensor(numpy.array(batch))
    if isinstance(first, bool):
        return Tensor(numpy.array(batch, dtype=numpy.bool_))
    if isinstance(first, int):
        return Tensor(numpy.array(batch, dtype=numpy.int64))
    if isinstance(first, float):
        return Tensor(numpy.array(batch, dtype=numpy.float64))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        return {key: default_collate([example[key] for example in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(example) != len(first) for example in batch):
            raise ValueError(f"default_collate needs examples of the same length, got lengths "
                             f"{sorted({len(example) for example in batch})}")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):     # a namedtuple keeps its type
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(f"default_collate stacks arrays, Tensors, numbers, strings and tuples/lists/dicts of "
                    f"them, got {type(first).__name__}; pass DataLoader(collate_fn=...) to batch it your way")


def _stack(xp: Any, arrays: list) -> Any:
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"default_collate stacks examples of one shape, got shapes {sorted(shapes)}; resize or "
                         f"crop them to one size in the dataset's transform")
    return xp.stack(arrays)


def as_tensors(batch: Any) -> Any:
    """What ``get_batch`` returned, with every array made a Tensor (tuples, lists and dicts kept)."""
    if isinstance(batch, Tensor):
        return batch
    if backend.is_array(batch):
        return Tensor(batch)
    if isinstance(batch, collections.abc.Mapping):
        return {key: as_tensors(value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(as_tensors(value) for value in batch)
    raise TypeError(f"get_batch must return arrays or Tensors (in tuples, lists or dicts), got {type(batch).__name__}")


def make_batch(dataset: Any, indices: numpy.ndarray, collate_fn: Optional[Collate]) -> Any:
    """The batch of ``dataset`` at ``indices``: the fast path where there is one, else example by example."""
    if collate_fn is None and hasattr(dataset, "get_batch"):
        return as_tensors(dataset.get_batch(indices))
    return (collate_fn or default_collate)([dataset[int(i)] for i in indices])


class DataLoader:
    """Batches of a dataset, optionally shuffled, prepared ahead in a background thread.

    ``for images, targets in DataLoader(dataset, batch_size=32, shuffle=True): ...`` yields
    minires Tensors on the CPU. ``drop_last`` leaves out a last, smaller batch. ``collate_fn``
    turns a list of examples into a batch (``default_collate``). ``generator``: where the
    order and the transforms' seed come from (minires's generator when None). ``prefetch``:
    how many batches the background thread keeps ready; 0 builds each batch when asked, in the
    caller's thread, with the same results. ``num_workers`` and ``pin_memory`` are accepted so
    that PyTorch code runs unchanged, and change nothing: minires always prepares batches in that
    one background thread (NumPy releases the GIL while it copies), and has no pinned memory.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 collate_fn: Optional[Collate] = None, generator: Optional[numpy.random.Generator] = None,
                 prefetch: int = 2, num_workers: int = 0, pin_memory: bool = False):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__, got {type(dataset).__name__}")
        for name, value, least in (("batch_size", batch_size, 1), ("prefetch", prefetch, 0),
                                   ("num_workers", num_workers, 0)):
            if not isinstance(value, (int, numpy.integer)) or isinstance(value, bool) or value < least:
                raise ValueError(f"DataLoader's {name} must be an integer >= {least}, got {value!r}")
        for name, value in (("shuffle", shuffle), ("drop_last", drop_last), ("pin_memory", pin_memory)):
            if not isinstance(value, bool):
                raise TypeError(f"DataLoader's {name} must be True or False, got {value!r}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader's collate_fn must be a function of a list of examples, got {collate_fn!r}")
        if generator is not None and not isinstance(generator, numpy.random.Generator):
            raise TypeError(f"DataLoader's generator must be a numpy.random.Generator or None (minires's own), got "
                            f"{type(generator).__name__}; for a seed, pass numpy.random.default_rng({generator!r})")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, int(batch_size), shuffle, drop_last
        self.collate_fn, self.generator, self.prefetch = collate_fn, generator, int(prefetch)

    def __len__(self) -> int:
        """The number of batches in one epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> "BatchIterator":
        generator = self.generator if self.generator is not None else default_generator()
        n = len(self.dataset)
        order = generator.permutation(n) if self.shuffle else numpy.arange(n)
        seed = int(generator.integers(2 ** 63))
        batches = [order[start:start + self.batch_size] for start in range(0, len(self) * self.batch_size,
                                                                            self.batch_size)]
        return BatchIterator(self.dataset, batches, self.collate_fn, seed, self.prefetch)


class BatchIterator:
    """One epoch of a DataLoader. ``close()`` (also called on garbage collection, and by ``with``)
    stops its background thread; a ``for`` loop that ends, breaks or raises drops the iterator,
    which closes it."""

    def __init__(self, dataset: Any, batches: List[numpy.ndarray], collate_fn: Optional[Collate], seed: int,
                 prefetch: int):
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._dataset, self._batches, self._collate_fn = dataset, batches, collate_fn
        self._generator = numpy.random.default_rng(seed)     # the transforms' randomness for this epoch
        self._next = 0                                       # batches handed out so far
        self._queue: "queue.Queue[tuple]" = queue.Queue(maxsize=max(prefetch, 1))
        if prefetch > 0 and batches:
            # The thread gets what it needs, not `self`: then dropping the iterator frees it, and closes it.
            self._thread = threading.Thread(
                target=_produce, args=(dataset, batches, collate_fn, self._generator, self._queue, self._stop),
                name="minires-DataLoader", daemon=True)
            self._thread.start()

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._next >= len(self._batches) or self._stop.is_set():
            self.close()
            raise StopIteration
        if self._thread is None:                             # prefetch=0: build it here, with the epoch's generator
            with using_generator(self._generator):
                batch = make_batch(self._dataset, self._batches[self._next], self._collate_fn)
        else:
            kind, batch = self._take()
            if kind == "error":
                self.close()
                raise batch                                  # the original exception, with the thread's traceback
        self._next += 1
        return batch

    def _take(self) -> tuple:
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the DataLoader's background thread ended without a batch or an error")

    def close(self) -> None:
        """Stop the background thread (it finishes the batch it is building, then ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "BatchIterator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _produce(dataset: Any, batches: List[numpy.ndarray], collate_fn: Optional[Collate],
             generator: numpy.random.Generator, out: "queue.Queue[tuple]", stop: threading.Event) -> None:
    """The background thread: build the batches in order and put them in ``out`` until done or stopped."""
    for indices in batches:
        if stop.is_set():
            return
        try:
            with using_generator(generator):
                item = ("batch", make_batch(dataset, indices, collate_fn))
        except BaseException as error:          # handed to the caller, who re-raises it
            _put(out, ("error", error), stop)
            return
        if not _put(out, item, stop):
            return


def _put(out: "queue.Queue[tuple]", item: tuple, stop: threading.Event) -> bool:
    """Put ``item`` in the queue, waiting for room, unless asked to stop meanwhile (then False)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
