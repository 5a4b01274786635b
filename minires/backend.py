"""The one seam between NumPy and CuPy.

Every operation in minires is written once, against ``xp``: the array module of its inputs
(``numpy`` on the CPU, ``cupy`` on a GPU). Whatever differs between the two libraries is a
named function here, and this is the only module that imports CuPy. Importing minires
without CuPy installed works; asking for a GPU then raises a clear error.

Devices are named as in PyTorch: ``"cpu"``, ``"cuda"`` (the current GPU) and ``"cuda:1"``.
A device is always reported in its full form, ``"cpu"`` or ``"cuda:N"``.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Union

import numpy


def _import_cupy() -> "tuple[Any, Any, Union[Exception, None]]":
    """``(cupy, cupyx, None)``; without CuPy ``(None, None, None)``; and ``(None, None, error)`` when CuPy
    is installed but fails to import (a CUDA library missing, a cupy-cudaXXx for another CUDA version):
    the error is kept, to be shown when a GPU is asked for. CuPy is optional: the `gpu` extra installs it."""
    try:
        import cupy
        import cupyx
    except ModuleNotFoundError as error:
        if error.name in ("cupy", "cupyx"):
            return None, None, None
        return None, None, error
    except Exception as error:  # CuPy raises ImportError, and sometimes others, when CUDA is broken
        return None, None, error
    return cupy, cupyx, None


cupy, cupyx, _CUPY_IMPORT_ERROR = _import_cupy()

#: A NumPy or CuPy array. minires never sees any other kind of array.
Array = Any
#: Anything minires accepts as a device: "cpu", "cuda", "cuda:0", ...
DeviceLike = Union[str, None]


def cuda_is_available() -> bool:
    """True when CuPy is installed and at least one CUDA device answers."""
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device: CuPy raises its own runtime errors
        return False


def available_devices() -> list:
    """The device names this machine offers: ``["cpu"]``, then ``"cuda:0"``, ``"cuda:1"``, ... if any."""
    count = cupy.cuda.runtime.getDeviceCount() if cuda_is_available() else 0
    return ["cpu"] + [f"cuda:{i}" for i in range(count)]


def get_array_module(array: Array) -> ModuleType:
    """``numpy`` for a NumPy array (or a Python scalar), ``cupy`` for a CuPy array."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy
    return numpy


def is_array(obj: Any) -> bool:
    """True for a NumPy or CuPy array."""
    return isinstance(obj, numpy.ndarray) or (cupy is not None and isinstance(obj, cupy.ndarray))


def normalize_device(device: DeviceLike) -> str:
    """Canonical device name: ``None``/``"cpu"`` -> ``"cpu"``, ``"cuda"`` -> ``"cuda:<current>"``."""
    if device is None:
        return "cpu"
    name = str(device).strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        _require_cuda(name)
        if name == "cuda":
            return f"cuda:{cupy.cuda.runtime.getDevice()}"
        index = name[len("cuda:"):]
        if not index.isdigit():
            raise ValueError(f"expected a device like 'cuda:0', got {device!r}")
        count = cupy.cuda.runtime.getDeviceCount()
        if int(index) >= count:
            raise ValueError(f"device {device!r} does not exist: this machine has {count} CUDA device(s)")
        return f"cuda:{int(index)}"
    raise ValueError(f"expected a device 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def device_of(array: Array) -> str:
    """The canonical device name of an array: ``"cpu"`` or ``"cuda:N"``."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_device(array: Array, device: DeviceLike) -> Array:
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    target = normalize_device(device)
    if device_of(array) == target:
        return array
    if target == "cpu":
        return cupy.asnumpy(array)
    with cupy.cuda.Device(int(target.split(":")[1])):
        return cupy.asarray(array)


def to_numpy(array: Array) -> numpy.ndarray:
    """A NumPy array with the same values (a device-to-host copy for CuPy)."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    return numpy.asarray(array)


def device_context(array: Array):
    """A context manager that makes ``array``'s GPU current (a no-op on the CPU)."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return array.device
    return _NullContext()


#: On the CPU, work on about this many bytes at a time so a block stays in a core's L2 cache
#: while several passes run over it (pooling's kH*kW offsets, batch norm's formula).
CPU_CACHE_BLOCK_BYTES = 1 << 20


def items_per_block(array: Array, item_bytes: int, count: int) -> int:
    """How many items of ``item_bytes`` each to process at a time, out of ``count``.

    On the CPU: as many as fit in ``CPU_CACHE_BLOCK_BYTES`` (at least one), because several
    passes over a cache-sized block beat the same passes over main memory. On a GPU: all of
    them in one block, since each extra block costs more kernel launches and buys nothing.
    """
    if cupy is not None and isinstance(array, cupy.ndarray):
        return max(1, count)
    return max(1, CPU_CACHE_BLOCK_BYTES // max(1, item_bytes))


def erf(array: Array) -> Array:
    """The error function, elementwise: CuPy's on a GPU; on the CPU the C library's, one element at
    a time (NumPy has no erf of its own)."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(array)
    return numpy.asarray(numpy.frompyfunc(math.erf, 1, 1)(array), dtype=array.dtype)


def synchronize(array: Array) -> None:
    """Wait until the GPU that holds ``array`` has finished its queued work (a no-op on the CPU):
    GPU kernels run asynchronously, so a timing must wait for them."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        array.device.synchronize()


def may_share_memory(a: Array, b: Array) -> bool:
    """True when the two arrays' memory may overlap (a fast bounds check, no false negatives)."""
    xp = get_array_module(a)
    if xp is not get_array_module(b):
        return False
    return bool(xp.may_share_memory(a, b))


def broadcast_shapes(*shapes: tuple) -> tuple:
    """The shape that arrays of these shapes broadcast to (NumPy's rule; CuPy follows it)."""
    return tuple(numpy.broadcast_shapes(*shapes))


def scatter_add(target: Array, index: Any, values: Array) -> None:
    """``target[index] += values`` where repeated indices accumulate (unbuffered)."""
    if cupy is not None and isinstance(target, cupy.ndarray):
        cupyx.scatter_add(target, index, values)
    else:
        numpy.add.at(target, index, values)


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _require_cuda(name: str) -> None:
    if cupy is None and _CUPY_IMPORT_ERROR is not None:
        error = _CUPY_IMPORT_ERROR
        raise RuntimeError(
            f"device {name!r} needs CuPy, which is installed but failed to import: {type(error).__name__}: "
            f"{error}. Check that the cupy-cudaXXx package matches this machine's CUDA version "
            f"(python -c 'import cupy' shows the whole error)") from error
    if cupy is None:
        raise RuntimeError(
            f"device {name!r} needs CuPy, which is not installed: pip install 'minires[gpu]'")
    if not cuda_is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CuPy finds no CUDA device on this machine")
