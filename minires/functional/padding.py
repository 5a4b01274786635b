"""Constant padding: ``pad``, PyTorch's ``F.pad(x, pad, mode="constant", value=0)``.

Padding copies ``x`` into the middle of a larger array filled with ``value``:

    out[..., a:a + H, b:b + W] = x          everything else is ``value``

It is linear in ``x`` (plus a constant), and its backward is the transpose of that copy:
cut the middle back out of ``dout``,

    dx = dout[..., a:a + H, b:b + W]

because every padded entry is a constant that no input moves. ``pad`` lists the amounts from the
LAST axis backwards, in (before, after) pairs, as PyTorch does: ``(left, right)`` pads the last
axis, ``(left, right, top, bottom)`` the last two, and ``(0, 0, 0, 0, 0, C)`` adds C channels of
zeros after the channels of an (N, C, H, W) batch: the zero-padded identity shortcut of the CIFAR
ResNets (He et al. 2016, option A; ``minires/models/small.py``).

Derivation: docs/derivations/padding.md.
"""
from __future__ import annotations

from typing import Any, Sequence, Tuple

from minires.autograd import Function
from minires.backend import Array, get_array_module


def _widths(pad: Sequence[int], ndim: int) -> Tuple[Tuple[int, int], ...]:
    """PyTorch's flat ``pad`` (last axis first) as one (before, after) pair per axis, first axis first."""
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise ValueError(f"pad takes (before, after) pairs for at most the {ndim} axes of the input, last axis "
                         f"first, e.g. (0, 0, 0, 0, 0, 16) for 16 more channels of an (N, C, H, W) batch; "
                         f"got {pad}")
    if any(not isinstance(p, int) or isinstance(p, bool) or p < 0 for p in pad):
        raise ValueError(f"pad amounts must be non-negative integers (cropping is x[...] indexing), got {pad}")
    pairs = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)]     # last axis first
    return tuple([(0, 0)] * (ndim - len(pairs)) + pairs[::-1])


class Pad(Function):
    """out = x in the middle of a ``value``-filled array;  dx = the middle of dout.

    Derivation: docs/derivations/padding.md.
    """

    def __init__(self, pad: Sequence[int], value: float = 0.0):
        self.pad, self.value = tuple(pad), value

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        widths = _widths(self.pad, x.ndim)
        self.middle = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
        shape = tuple(before + n + after for (before, after), n in zip(widths, x.shape))
        out = xp.full(shape, self.value, dtype=x.dtype)            # x.shape grown by the padding
        out[self.middle] = x
        return out

    def backward(self, dout: Array) -> tuple:
        dx = dout[self.middle]                                     # back to x.shape
        return (dx,)


def pad(x: Any, pad: Sequence[int], mode: str = "constant", value: float = 0.0):
    """``x`` padded with ``value``: ``pad`` is (before, after) pairs, last axis first, as in PyTorch's
    ``F.pad``. Only ``mode="constant"`` (the zero-padded shortcut's); derivation in this module's docstring."""
    if mode != "constant":
        raise ValueError(f"pad supports mode='constant' only, got mode={mode!r}; reflect and replicate padding "
                         f"are not part of minires")
    return Pad.apply(x, pad=pad, value=value)
