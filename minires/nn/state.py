"""The checks and the copy behind ``Module.load_state_dict``.

Loading is two passes: first every key is checked (present? an array? the right shape? a
compatible dtype?), and only when nothing is wrong are the values copied into the module's
own arrays. A checkpoint that does not fit therefore leaves the model untouched.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Tuple

from minires import backend
from minires.autograd import no_grad
from minires.backend import Array
from minires.tensor import Tensor

# dtype kinds that may be copied into each other: floats into floats, integers into integers.
_KIND_FAMILY = {"f": "floating-point", "i": "integer", "u": "integer", "b": "bool", "c": "complex"}


def check_state_dict(targets: Mapping, state_dict: Any) -> Tuple[List[str], List[str], List[str], Dict[str, Array]]:
    """Compare ``state_dict`` with the module's own ``targets`` (name -> Tensor).

    Returns (missing keys, unexpected keys, error messages, name -> array to copy).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"load_state_dict expects a mapping of name -> Tensor or array (e.g. what "
                        f"minires.load returns), got {type(state_dict).__name__}")
    missing = [key for key in targets if key not in state_dict]
    unexpected = [key for key in state_dict if key not in targets]
    errors: List[str] = []
    arrays: Dict[str, Array] = {}
    for key, target in targets.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        array = value.data if isinstance(value, Tensor) else value
        if not backend.is_array(array):
            errors.append(f"value for {key} is a {type(value).__name__}; expected a Tensor or a NumPy/CuPy array")
            continue
        if tuple(array.shape) != target.shape:
            errors.append(f"size mismatch for {key}: checkpoint {tuple(array.shape)}, model {target.shape}")
            continue
        have = _KIND_FAMILY.get(array.dtype.kind, str(array.dtype))
        want = _KIND_FAMILY.get(target.dtype.kind, str(target.dtype))
        if have != want:
            errors.append(f"dtype mismatch for {key}: checkpoint {array.dtype}, model {target.dtype} "
                          f"(a {have} value cannot be copied into a {want} one)")
            continue
        arrays[key] = array
    return missing, unexpected, errors, arrays


def copy_state_dict(targets: Mapping, arrays: Dict[str, Array]) -> None:
    """Copy each array into its target's existing array, on the target's device and in its dtype."""
    for key, array in arrays.items():
        target = targets[key]
        with no_grad():                                                # in place, counted in its version
            target.copy_(backend.to_device(array, target.device))      # casts to target.dtype
