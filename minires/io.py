"""Weights in and out: safetensors files, and PyTorch checkpoints.

minires saves a state dict (name -> array) as a safetensors file: a JSON header that names
each tensor's dtype, shape and byte range, followed by the raw bytes. Reading one cannot run
code, unlike a pickle, which is why minires uses no pickle anywhere. Writes are atomic: the
file is written beside its destination under a temporary name, flushed to disk, and only then
renamed over the destination, so a crash mid-write leaves the old file as it was.

    minires.save(model, "resnet18.safetensors")           # or a state dict
    model.load_state_dict(minires.load("resnet18.safetensors"))

PyTorch checkpoints (``.pth``, e.g. torchvision's published ResNet weights) come in with
``import_torch_checkpoint`` and go out with ``export_torch_checkpoint``; both need torch,
which minires itself never imports.

The safetensors package is an optional extra: ``pip install "minires[io]"``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import IO, Any, Iterator, Optional, Union

import numpy

from minires import backend
from minires.backend import DeviceLike
from minires.nn.module import Module
from minires.tensor import Tensor

PathLike = Union[str, "os.PathLike[str]"]

_ORDER_KEY = "minires.keys"              # header metadata: the state dict's key order, as JSON
_CHUNK = 64 * 1024 * 1024                # bytes per write() call
_MAX_HEADER = 100 * 1024 * 1024          # the safetensors format's own limit on the header
_STALE_SECONDS = 60 * 60                 # a temporary file untouched this long is a killed save's leftover
# The dtypes a safetensors file holds that NumPy has (bfloat16 and float8 have no NumPy dtype; complex64
# only newer readers know, and no operation in minires makes one).
_SAFETENSORS_DTYPES = frozenset(numpy.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64"))


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError('minires.save and minires.load need the safetensors package, which is not installed: '
                          'pip install "minires[io]"') from None
    return safetensors.numpy


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("reading or writing a PyTorch checkpoint needs torch, which is not installed: "
                          "pip install torch (minires itself never needs it)") from None
    return torch


def _numpy_state(obj: Any) -> "OrderedDict[str, numpy.ndarray]":
    """A Module's state dict, or a mapping name -> Tensor/array, as contiguous NumPy arrays on the CPU."""
    if isinstance(obj, Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a Module or a state dict (a mapping of name -> Tensor or array), "
                        f"got {type(obj).__name__}")
    arrays: "OrderedDict[str, numpy.ndarray]" = OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"state dict keys must be strings, got {key!r} ({type(key).__name__})")
        array = value.data if isinstance(value, Tensor) else value
        if not backend.is_array(array):
            hint = ("; a training checkpoint with an optimizer's state is saved flat: see "
                    "minires.optim.optimizer_state_to_arrays, or minires/train.py" if isinstance(value, Mapping) else "")
            raise TypeError(f"the value for {key!r} is a {type(value).__name__}; expected a Tensor or a "
                            f"NumPy/CuPy array{hint}")
        array = backend.to_numpy(array)
        arrays[key] = array if array.flags.c_contiguous else array.copy(order="C")   # keeps 0-d arrays 0-d
    return arrays


# ---------------------------------------------------------------------------- safetensors

def save(obj: Any, path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Save a Module's ``state_dict()`` (or any state dict) to ``path`` as safetensors, atomically.

    The key order is kept in the file's metadata, so ``load`` gives the keys back in it. The
    same state always gives the same bytes. ``metadata`` (text by name, e.g. JSON) is stored in
    the same file's header, so arrays and the words about them are written all at once;
    ``load_metadata`` reads it back.
    """
    st = _safetensors_numpy()
    arrays = _numpy_state(obj)
    _check_writable(arrays)
    extra = dict(metadata or {})
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str) or k == _ORDER_KEY]
    if bad:
        raise TypeError(f"metadata must map text to text (and may not use the key {_ORDER_KEY!r}); "
                        f"these entries do not: {bad}. Store structures as JSON text: json.dumps(value)")
    extra[_ORDER_KEY] = json.dumps(list(arrays))          # safetensors does not keep key order itself
    atomic_write(path, st.save(dict(arrays), metadata=extra))


def _check_writable(arrays: Mapping[str, numpy.ndarray]) -> None:
    """Refuse, before any file is touched, a key or a dtype that a safetensors file cannot hold."""
    for key, array in arrays.items():
        if key == "__metadata__":
            raise ValueError("the key '__metadata__' is reserved by the safetensors format for the file's "
                             "metadata; rename that entry of the state dict")
        if array.dtype.newbyteorder("=") not in _SAFETENSORS_DTYPES:
            names = ", ".join(sorted(str(d) for d in _SAFETENSORS_DTYPES))
            raise TypeError(f"the value for {key!r} has dtype {array.dtype}, which a safetensors file cannot "
                            f"hold; expected one of {names}. Convert it first, e.g. array.astype(numpy.float32)")


def load(path: PathLike, device: DeviceLike = "cpu") -> "OrderedDict[str, Tensor]":
    """Read a safetensors file as an ordered dict name -> Tensor on ``device``.

    The order is the one ``save`` recorded (a file from another writer: the order of its
    bytes). A truncated file, or a file that is not safetensors, is a clear ``ValueError``.
    """
    st = _safetensors_numpy()
    header = _read_header(path)
    try:
        arrays = st.load_file(os.fspath(path))
    except Exception as error:  # safetensors raises its own SafetensorError
        raise ValueError(f"{os.fspath(path)!r} could not be read as a safetensors file: {error}") from None
    return OrderedDict((key, Tensor(backend.to_device(arrays[key], device))) for key in _key_order(header))


def load_metadata(path: PathLike) -> "dict[str, str]":
    """The text saved with ``save(..., metadata=...)`` (an empty dict if there is none)."""
    metadata = dict(_read_header(path).get("__metadata__") or {})
    metadata.pop(_ORDER_KEY, None)
    return metadata


def _read_header(path: PathLike) -> dict:
    """Parse the header (8-byte little-endian length, then JSON) and check that the file is whole."""
    name = os.fspath(path)
    size = os.path.getsize(name)
    with open(name, "rb") as f:
        start = f.read(9)
        if start[:4] == b"PK\x03\x04":
            raise ValueError(f"{name!r} is a zip archive, as PyTorch's .pth checkpoints are, not a safetensors "
                             f"file; read it with minires.io.import_torch_checkpoint(path)")
        if size < 9 or start[8:9] != b"{":
            raise ValueError(f"{name!r} is not a safetensors file: it does not start with an 8-byte header "
                             f"length and a JSON header ({size} bytes in all; it may also be truncated)")
        length = int.from_bytes(start[:8], "little")
        if length > _MAX_HEADER:
            raise ValueError(f"{name!r} is not a safetensors file: its first 8 bytes give a header length of "
                             f"{length} bytes, more than the format allows")
        if 8 + length > size:
            raise ValueError(f"{name!r} is truncated: its header needs {8 + length} bytes but the file has only "
                             f"{size}; save it again")
        f.seek(8)
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise ValueError(f"{name!r} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name!r} is not a safetensors file: its header is JSON but not an object")
    _check_metadata(header.get("__metadata__"), name)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    try:
        data_end = max((int(v["data_offsets"][1]) for v in entries.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise ValueError(f"{name!r} is not a safetensors file: its header entries have no data_offsets") from None
    if 8 + length + data_end > size:
        raise ValueError(f"{name!r} is truncated: its tensors need {8 + length + data_end} bytes but the file "
                         f"has only {size}; save it again")
    return header


def _check_metadata(metadata: Any, name: str) -> None:
    """A damaged ``__metadata__`` (not text by name, or a key order that is not a JSON list of names) is
    an error naming the file, not a failure deep inside ``load``."""
    if metadata is None:
        return
    if not isinstance(metadata, dict) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{name!r} has damaged metadata: the header's '__metadata__' must map text to text, "
                         f"got {json.dumps(metadata)[:200]}; save the file again")
    if _ORDER_KEY in metadata:
        try:
            order = json.loads(metadata[_ORDER_KEY])
        except ValueError:
            order = None
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            raise ValueError(f"{name!r} has damaged metadata: {_ORDER_KEY!r} must be a JSON list of the tensor "
                             f"names, got {metadata[_ORDER_KEY][:200]!r}; save the file again")


def _key_order(header: dict) -> list:
    """The keys in the order minires saved them, else in the order of their bytes in the file."""
    entries = [k for k in header if k != "__metadata__"]
    recorded = (header.get("__metadata__") or {}).get(_ORDER_KEY)
    if recorded is not None:
        order = json.loads(recorded)
        if sorted(order) == sorted(entries):
            return order
    return sorted(entries, key=lambda k: header[k]["data_offsets"][0])


# ---------------------------------------------------------------------------- atomic writes

def _write_bytes(f: io.BufferedWriter, data: bytes) -> None:
    """Write ``data`` to the open file ``f`` in chunks."""
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        f.write(view[start:start + _CHUNK])


def _remove_stale_temporaries(directory: str, basename: str) -> None:
    """Remove the temporary files that killed saves of ``basename`` left behind (``.NAME.<hex>.tmp``,
    untouched for ``_STALE_SECONDS``); a younger one may belong to a save still running, and stays."""
    pattern = re.compile(re.escape(f".{basename}.") + r"[0-9a-f]{12}\.tmp")
    now = time.time()
    with os.scandir(directory) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):          # another save may remove it first
                    if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_SECONDS:
                        os.remove(entry.path)


@contextlib.contextmanager
def atomic_file(path: PathLike) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is flushed to disk and
    renamed over ``path`` (a rename within a directory is atomic), on an exception it is removed.
    Either way ``path`` holds the old bytes or the new ones, never a mix.

    Overwriting keeps the old file's permission bits (its owner and group are those of whoever
    saves), and a symbolic link stays a link: the file it points to is replaced. The leftovers of
    a save killed mid-write (``.NAME.<hex>.tmp`` beside the file) are removed by a later save
    once they are an hour old."""
    name = os.path.realpath(os.fspath(path))       # through a symbolic link, to the file it names
    directory, basename = os.path.split(name)
    _remove_stale_temporaries(directory, basename)
    temporary = os.path.join(directory, f".{basename}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):   # a new file keeps the mode the umask gives it
            os.chmod(temporary, stat.S_IMODE(os.stat(name).st_mode))
        os.replace(temporary, name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):           # make the rename itself durable (POSIX)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (see ``atomic_file``)."""
    with atomic_file(path) as f:
        _write_bytes(f, data)


# ---------------------------------------------------------------------------- PyTorch checkpoints

def import_torch_checkpoint(path: PathLike) -> "OrderedDict[str, numpy.ndarray]":
    """Read a PyTorch checkpoint (``.pth``) as an ordered dict name -> NumPy array, ready for
    ``model.load_state_dict``. Needs torch.

    The file is opened with ``torch.load(path, map_location="cpu", weights_only=True)``, which
    refuses to run code from it. It may hold a state dict itself, or a dict with the state dict
    under "state_dict" or "model" (as training scripts often save). bfloat16 values become
    float32 (NumPy has no bfloat16). Checkpoints older than PyTorch 0.4, such as torchvision's
    original ResNet weights, have no ``num_batches_tracked``; as PyTorch does when it loads
    them, each batch norm's count is then set to 0.
    """
    torch = _torch()
    name = os.fspath(path)
    checkpoint = torch.load(name, map_location="cpu", weights_only=True)
    state = _find_state_dict(checkpoint, name, torch.Tensor)
    arrays: "OrderedDict[str, numpy.ndarray]" = OrderedDict()
    for key, value in state.items():
        value = value.detach()
        if value.dtype == torch.bfloat16:
            value = value.float()
        arrays[key] = value.numpy()
        if key.endswith("running_var"):
            count_key = key[:-len("running_var")] + "num_batches_tracked"
            if count_key not in state:
                arrays[count_key] = numpy.zeros((), dtype=numpy.int64)
    return arrays


def _find_state_dict(checkpoint: Any, name: str, tensor_type: type) -> Mapping:
    """The mapping of name -> tensor in a loaded checkpoint, or a clear error."""
    if isinstance(checkpoint, Mapping) and checkpoint and \
            all(isinstance(v, tensor_type) for v in checkpoint.values()):
        return checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            inner = checkpoint.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, tensor_type) for v in inner.values()):
                return inner
        raise ValueError(f"{name!r} holds a dict with keys {list(checkpoint)[:10]} but no state dict: expected "
                         f"name -> tensor, or one under 'state_dict' or 'model'")
    raise ValueError(f"{name!r} holds a {type(checkpoint).__name__}, not a state dict; save one with "
                     f"torch.save(model.state_dict(), path)")


def export_torch_checkpoint(obj: Any, path: PathLike) -> None:
    """Write a Module's ``state_dict()`` (or a state dict) as a PyTorch checkpoint that
    ``torch.load`` and ``torchvision_model.load_state_dict`` accept. Needs torch; atomic."""
    torch = _torch()
    state = OrderedDict((key, torch.from_numpy(array.copy())) for key, array in _numpy_state(obj).items())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())
