"""Step through a backward pass: what each Function received, kept and returned, and how long it took.

``minires.trace()`` is a context manager around ``backward()``::

    with minires.trace() as t:
        loss.backward()
    print(t)                  # one row per Function, in the order the backward pass ran them

Each row says which Function ran (``Sum``, ``ReLU``, ``Conv2d``, ...), the shape and dtype of the
gradient that came in (``dout = dL/d(output)``), the shapes of the gradients it returned (one per
input, ``-`` where an input needs none), the arrays its forward kept for this backward (attribute
names and shapes) and their bytes, and the wall time of its ``backward``.

How it works: ``run_backward`` (minires/autograd.py) has one hook, ``autograd._observer``. While a
trace is open it is set to ``_observe``, which notes what the Function saved, calls
``fn.backward(dout)`` itself, times it and returns its result unchanged; with no trace open the hook
costs one ``if`` per Function. A trace records only the backward passes run by the thread that opened
it; traces nested in one thread each see everything that runs while they are open.

Saved bytes count each kept array's ``nbytes``; an array that is a view of an input (Conv2d keeps
its input ``x``, MatMul its ``a`` and ``b``) shares that input's memory rather than adding to it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from minires import autograd, backend
from minires.autograd import Function
from minires.backend import Array

__all__ = ["trace", "Trace", "TraceRow"]


@dataclass(frozen=True)
class TraceRow:
    """One Function's step of the backward pass."""

    step: int                    # 1 for the first Function the backward pass ran
    name: str                    # the Function's class name
    dout: tuple                  # (shape, dtype) of dL/d(output), what came in
    grads: tuple                 # (shape, dtype) of each input's gradient, or None, what went out
    saved: tuple                 # (attribute, shape, dtype, nbytes) of each array the forward kept
    saved_bytes: int             # their nbytes, summed
    seconds: float               # wall time of fn.backward(dout)


class Trace:
    """The rows one ``minires.trace()`` recorded; ``print(t)`` shows them as a table."""

    def __init__(self, times: bool = True) -> None:
        self.rows: list = []
        self.times = times

    @property
    def total_seconds(self) -> float:
        return sum(row.seconds for row in self.rows)

    @property
    def total_saved_bytes(self) -> int:
        return sum(row.saved_bytes for row in self.rows)

    def table(self, times: Optional[bool] = None) -> str:
        """The rows as aligned text; ``times=False`` leaves the (run-dependent) times out."""
        times = self.times if times is None else times
        header = ["step", "function", "dout (in)", "grads (out)", "saved", "bytes"] + (["ms"] if times else [])
        lines = []
        for row in self.rows:
            cells = [str(row.step), row.name, _shape_dtype(*row.dout),
                     ", ".join("-" if g is None else _shape(g[0]) for g in row.grads),
                     ", ".join(f"{name} {_shape(shape)}" for name, shape, _, _ in row.saved) or "-",
                     _bytes(row.saved_bytes)]
            lines.append(cells + ([f"{row.seconds * 1e3:.3f}"] if times else []))
        total = f"total: {len(self.rows)} Functions, {_bytes(self.total_saved_bytes)} saved"
        if times:
            total += f", {self.total_seconds * 1e3:.3f} ms"
        widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
        right = {0, 5, 6}                                  # numbers align right
        text = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                          for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in [header] + lines]
        return "\n".join(text + [total])

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<Trace: {len(self.rows)} Functions, {_bytes(self.total_saved_bytes)} saved>"

    def _record(self, fn: Function, dout: Array, dinputs: Any, saved: tuple, seconds: float) -> None:
        grads = dinputs if isinstance(dinputs, tuple) else (dinputs,)
        self.rows.append(TraceRow(
            step=len(self.rows) + 1, name=type(fn).__name__, dout=(tuple(dout.shape), str(dout.dtype)),
            grads=tuple(None if g is None else (tuple(g.shape), str(g.dtype)) for g in grads),
            saved=saved, saved_bytes=sum(nbytes for _, _, _, nbytes in saved), seconds=seconds))


class trace:
    """Record every Function the backward passes inside this ``with`` block run (see the module doc).

    ``with minires.trace() as t: loss.backward()`` then ``print(t)``, ``t.rows``, ``t.table(times=False)``.
    """

    def __init__(self, times: bool = True) -> None:
        self._trace = Trace(times=times)

    def __enter__(self) -> Trace:
        with _lock:
            _open_traces().append(self._trace)
            _state.open += 1
            autograd._observer = _observe
        return self._trace

    def __exit__(self, *exc: Any) -> None:
        with _lock:
            _open_traces().remove(self._trace)
            _state.open -= 1
            if _state.open == 0:
                autograd._observer = None


class _Open:
    open = 0                     # traces open in any thread: the hook stays set while there are some


_state = _Open()
_lock = threading.Lock()
_per_thread = threading.local()


def _open_traces() -> list:
    """The traces this thread opened and has not closed yet."""
    if not hasattr(_per_thread, "traces"):
        _per_thread.traces = []
    return _per_thread.traces


def _saved_arrays(fn: Function) -> tuple:
    """(attribute, shape, dtype, nbytes) of each array the forward kept on ``fn`` (the names not
    starting with ``_``, as ``Function._release`` frees them)."""
    return tuple((name, tuple(value.shape), str(value.dtype), int(value.nbytes))
                 for name, value in vars(fn).items() if not name.startswith("_") and backend.is_array(value))


def _observe(fn: Function, dout: Array) -> Any:
    """``autograd._observer`` while a trace is open: run ``fn.backward(dout)`` and note it."""
    traces = _open_traces()
    if not traces:                                     # another thread's trace is open, not ours
        return fn.backward(dout)
    saved = _saved_arrays(fn)
    backend.synchronize(dout)
    start = time.perf_counter()
    dinputs = fn.backward(dout)
    backend.synchronize(dout)
    seconds = time.perf_counter() - start
    for t in traces:
        t._record(fn, dout, dinputs, saved, seconds)
    return dinputs


def _shape(shape: tuple) -> str:
    return str(tuple(shape))                           # (), (3,), (4, 3)


def _shape_dtype(shape: tuple, dtype: str) -> str:
    return f"{_shape(shape)} {dtype}"


def _bytes(n: int) -> str:
    """Bytes as a person reads them: 512 B, 1.5 KiB, 230.0 MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 ** 2:.1f} MiB"
