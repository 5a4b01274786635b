"""How the CPU's cores share a big operation: batch chunks, worker threads and reused scratch memory.

A convolution lowered by im2col spends much of its time copying (im2col, col2im), and NumPy copies on
one core. Cutting the batch into chunks of a few images fixes three things at once:

- **every core works**: each chunk is copy -> matrix product -> copy, NumPy and the BLAS release
  Python's lock for all three, so the chunks run side by side on worker threads (the BLAS runs one
  thread per chunk meanwhile, so the cores are not asked twice);
- **the columns stay in the cache**: a chunk's im2col buffer is a few MB, so the product reads it
  straight after it was written, instead of from main memory;
- **no fresh memory**: each thread reuses its scratch buffers (``scratch``) from call to call, so the
  operating system does not have to hand out (and zero) hundreds of MB of new pages every step.

The chunks depend only on the shapes, never on the number of threads, and a result that sums over
chunks adds them in chunk order: a batch cut into several chunks gives the same numbers, bit for bit,
on 1 thread or on 16. A batch small enough to be one chunk has its products split by rows among the
threads instead (``matmul``), and the BLAS may round a product of fewer rows differently (a difference
in the last bits); every run on the same machine and thread count gives the same bits.
On a GPU none of this applies: the whole batch is one chunk, and CuPy's memory pool reuses memory.

The measurements behind the choices here are in ``benchmarks/README.md`` ("Chunks and threads").
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy

from minires.backend import Array

Chunk = Tuple[int, int]                       # images [start, stop) of the batch

#: The im2col buffer a chunk aims at: small enough to stay in the processor's cache between the copy that
#: writes it and the product that reads it (benchmarks/README.md, "Chunks and threads").
CHUNK_BYTES = 4 << 20


def batch_chunks(batch: int, bytes_per_image: int, min_images: int = 1, xp: Any = numpy) -> List[Chunk]:
    """Cut ``batch`` images into runs of at least ``CHUNK_BYTES`` of work buffer each (a little more where
    the batch does not divide evenly) and at least ``min_images`` long (a product needs enough columns to
    be worth reading its weights for), as equal as they can be, and an even number of them (an odd count
    leaves one of two threads idle at the end: 3 chunks took as long as 4; benchmarks/README.md). A batch
    of at least half of ``CHUNK_BYTES`` that would be one chunk is two, if each half is long enough: one
    chunk per core copies and multiplies faster than one chunk whose product is split by rows. On a GPU
    (``xp`` is CuPy) the whole batch is one chunk: the device is wide enough for all of it at once.

    >>> batch_chunks(32, 1 << 20)        # 1 MB per image: 4 images per chunk
    [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24), (24, 28), (28, 32)]
    """
    if batch == 0 or xp is not numpy:
        return [(0, batch)]
    per_chunk = max(1, min_images, CHUNK_BYTES // max(1, bytes_per_image))
    per_chunk = min(per_chunk, batch)
    count = batch // per_chunk                                         # chunks of per_chunk or a few more
    if count > 1 and count % 2:
        count -= 1                            # an even count: two (or four...) threads then finish together
    if count == 1 and 2 * batch * bytes_per_image >= CHUNK_BYTES and batch >= 2 * max(1, min_images):
        count = 2                             # half the buffer or more, long enough to halve: one chunk per core
    size, extra = divmod(batch, count)                                 # the first `extra` chunks take one more
    bounds = [k * size + min(k, extra) for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


#: An elementwise pass over an array of at least this size runs in blocks of about this size on the threads
#: (``flat_blocks``); below it, handing out the blocks cost more than the second core saved.
ELEMENTWISE_BLOCK_BYTES = 1 << 20


def flat_blocks(size: int, itemsize: int, xp: Any = numpy) -> List[Chunk]:
    """Ranges ``(start, stop)`` of a flattened array of ``size`` items for an elementwise pass on the threads:
    blocks of about ``ELEMENTWISE_BLOCK_BYTES``, an even number of them (one range below that size, or on a
    GPU). ReLU's forward on 2 threads: 1.6x faster from 2 MB up, 0.7x at 800 KB (benchmarks/README.md)."""
    count = size * itemsize // ELEMENTWISE_BLOCK_BYTES if xp is numpy else 0
    count = max(1, count - count % 2)
    bounds = [size * k // count for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# ------------------------------------------------------------------------------ scratch memory


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.buffers = {}                      # name -> the largest 1-D byte buffer asked for so far


_scratch = _Scratch()


def scratch(name: str, shape: Sequence[int], dtype: Any, xp: Any = numpy) -> Array:
    """A work array of ``shape`` that this thread reuses from call to call under ``name``.

    Its contents are garbage: fill it before reading it. It is valid until the same thread asks for
    ``name`` again, so it must never leave the operation that asked for it (never returned, never
    kept for backward). On a GPU it is a fresh ``cupy.empty``: CuPy's memory pool already reuses.
    """
    if xp is not numpy:
        return xp.empty(tuple(shape), dtype=dtype)
    dtype = numpy.dtype(dtype)
    nbytes = math.prod(int(n) for n in shape) * dtype.itemsize        # Python ints: 5x faster than numpy.prod
    buffer = _scratch.buffers.get(name)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = _scratch.buffers[name] = numpy.empty(max(nbytes, 1), dtype=numpy.uint8)
    return buffer[:nbytes].view(dtype).reshape(tuple(shape))


def scratch_matrix(name: str, rows: int, columns: int, dtype: Any, xp: Any = numpy) -> Array:
    """A (rows, columns) scratch matrix (``scratch``) for a matrix product, its rows one cache line
    further apart than ``columns`` when a row is a multiple of 2 KB long. Rows that are such a multiple
    apart share the cache sets of a set-associative cache, and a product that reads a column of them
    keeps evicting its own data: with 1024 or 2048 columns (CIFAR chunks) each product ran 9-24 %
    slower here (benchmarks/README.md, "Chunks and threads"). The matrix is a view with that row
    stride, which the BLAS takes as its leading dimension; reshaping its columns is still a view."""
    itemsize = numpy.dtype(dtype).itemsize
    stride = columns + (64 // itemsize if xp is numpy and columns and columns * itemsize % 2048 == 0 else 0)
    return scratch(name, (rows, stride), dtype, xp)[:, :columns]


def release_scratch() -> None:
    """Give this thread's scratch buffers back to the system (they come back on the next operation). The
    worker threads keep theirs until ``set_num_threads`` replaces the pool."""
    _scratch.buffers = {}


# ------------------------------------------------------------------------------ worker threads


class _Threads:
    """The worker pool and the BLAS it must not compete with; set up on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: Optional[int] = None        # None: not decided yet
        self.pool: Optional[ThreadPoolExecutor] = None
        self.blas: List[Any] = []               # threadpoolctl's handles on the loaded BLAS libraries

    def ready(self) -> int:
        with self.lock:
            if self.count is None:
                self.blas = _blas_controllers()
                self.count = max([1] + [c.num_threads for c in self.blas])  # as many as the BLAS
            return self.count


_threads = _Threads()
_inside = threading.local()                     # .worker: this thread is running a share of chunks


def _after_fork_in_child() -> None:
    """A forked process (``multiprocessing`` on Linux) has none of its parent's threads: the parent's pool
    would take work and never run it. The child starts a pool of its own on first use."""
    _threads.lock = threading.Lock()
    _threads.pool = None


if hasattr(os, "register_at_fork"):             # POSIX; elsewhere there is no fork to survive
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _blas_controllers() -> list:
    """threadpoolctl's controllers for NumPy's BLAS (OpenBLAS, MKL, BLIS), or [] without threadpoolctl:
    then minires runs its chunks one after the other and lets the BLAS use the cores."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    return [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The BLAS on one thread inside the block, as it was after it."""
    limits = [c.num_threads for c in _threads.blas]
    for controller in _threads.blas:
        controller.set_num_threads(1)
    try:
        yield
    finally:
        for controller, limit in zip(_threads.blas, limits):
            controller.set_num_threads(limit)


def get_num_threads() -> int:
    """How many threads minires's CPU operations use (by default, as many as NumPy's BLAS)."""
    return _threads.ready()


def set_num_threads(count: int) -> None:
    """Use ``count`` threads for minires's CPU operations and for NumPy's BLAS, like
    ``torch.set_num_threads``. Results depend on it at most in their last bits (see the module's
    docstring)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {count!r}")
    _threads.ready()
    with _threads.lock:
        for controller in _threads.blas:
            controller.set_num_threads(count)
        _threads.count = count
        if _threads.pool is not None:
            _threads.pool.shutdown(wait=True)
            _threads.pool = None


def for_each_chunk(work: Callable[[int, int, int], None], chunks: Sequence[Chunk], xp: Any = numpy,
                   share: bool = True) -> None:
    """Run ``work(k, start, stop)`` for every chunk ``k``, spread over the worker threads (CPU) or one
    after the other (GPU, one thread, or ``share=False``: work too small to be worth handing over, which
    costs about 50 us a call here, more while the cores wake). ``work`` must write only its own chunk's
    part of any shared output. Every chunk has finished when this returns; the first error is raised
    after that."""
    on_threads = share and xp is numpy and not getattr(_inside, "worker", False)
    count = _threads.ready() if on_threads else 1
    if count == 1 or len(chunks) == 1:
        for k, (start, stop) in enumerate(chunks):
            work(k, start, stop)
        return
    workers = min(count, len(chunks))
    todo = iter(range(len(chunks)))             # each worker takes the next chunk when it is free
    todo_lock = threading.Lock()

    def run_share() -> None:
        _inside.worker = True                   # work that asks for chunks again runs them here, in turn
        try:
            while True:
                with todo_lock:
                    k = next(todo, None)
                if k is None:
                    return
                try:
                    work(k, *chunks[k])
                except BaseException:
                    with todo_lock:                 # no new chunk starts after an error
                        for _ in todo:
                            pass
                    raise
        finally:
            _inside.worker = False

    with _threads.lock:
        if _threads.pool is None:
            _threads.pool = ThreadPoolExecutor(max(1, _threads.count - 1), thread_name_prefix="minires")
        pool = _threads.pool
    with _one_blas_thread():                    # one BLAS thread per chunk: the chunks use the cores
        futures = [pool.submit(run_share) for _ in range(workers - 1)]
        errors = []
        try:
            run_share()                         # the calling thread works too
        except BaseException as error:          # noqa: B036 - wait for the workers before raising it
            errors.append(error)
        for future in futures:
            try:
                future.result()
            except BaseException as error:      # noqa: B036
                errors.append(error)
        if errors:
            raise errors[0]


def matmul(a: Array, b: Array, out: Array, xp: Any = numpy) -> Array:
    """``out[...] = a @ b`` for (..., R, K) @ (..., K, C), the rows of ``a`` and ``out`` shared among the
    worker threads, one BLAS thread each. Inside a chunk (already on a worker) it is one plain product.

    Why not let the BLAS run its own threads here: after a multithreaded product, OpenBLAS keeps its
    threads spinning for a while, and they take cores from the worker threads of the next operation
    (a CIFAR ResNet-18 training step took 773 ms instead of 547 ms that way; ResNet-18's inference at
    224x224 took 174 ms instead of 129 ms while only its last layer's small product ran on the BLAS's
    threads; benchmarks/README.md). So a product of one row, which is not split, runs on one BLAS thread.
    """
    if xp is not numpy or getattr(_inside, "worker", False):
        return xp.matmul(a, b, out=out)
    R = a.shape[-2]
    parts = min(get_num_threads(), R)
    if parts <= 1:
        with _one_blas_thread():
            return xp.matmul(a, b, out=out)
    bounds = [R * p // parts for p in range(parts + 1)]                # rows [bounds[p], bounds[p + 1])
    for_each_chunk(lambda k, start, stop: xp.matmul(a[..., start:stop, :], b, out=out[..., start:stop, :]),
                   list(zip(bounds[:-1], bounds[1:])), xp)
    return out


__all__ = ["batch_chunks", "flat_blocks", "scratch", "scratch_matrix", "release_scratch", "for_each_chunk",
           "get_num_threads", "set_num_threads", "matmul", "CHUNK_BYTES"]
