"""Reverse-mode automatic differentiation: ``Function``, the backward pass, ``no_grad``.

A ``Function`` is one operation. Its ``forward(*arrays)`` computes the output from raw arrays
(NumPy or CuPy, never Tensors) and keeps, on ``self``, what its backward will need. Its
``backward(dout)`` receives ``dout = dL/d(output)`` and returns one gradient per input, in
the order of the inputs (``None`` for an input that needs none).

``Function.apply(*inputs, **params)`` is how an operation is called: it unwraps the tensors,
runs ``forward``, and, when some input requires a gradient and recording is on, links the
output to this Function so that ``backward()`` can find its way back.

The backward pass (``run_backward``) visits the graph in reverse topological order with an
explicit stack, never recursion: a ResNet-152 graph is deeper than Python's recursion limit.
Where a tensor is used twice (a residual connection), its gradients add up.

Every tensor carries a version counter that each in-place change bumps. ``apply`` notes the
version of every tensor whose array the forward kept for the backward; before a Function's
backward runs, the versions are compared, and a changed one raises instead of computing a
gradient from values that are no longer the ones the forward saw.
"""
from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from minires import backend
from minires.backend import Array

if TYPE_CHECKING:
    from minires.tensor import Tensor


class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()``."""
    return _grad_mode.enabled


class _GradModeSwitch:
    """Set the recording mode inside a ``with`` block or a decorated function, then restore it.

    Each ``with`` and each call of a decorated function saves its own previous mode, so a
    decorated function that recurses (or runs in two threads at once) restores the right one.
    """

    mode: bool

    def __new__(cls, *args: Any) -> Any:
        if cls is not set_grad_enabled and len(args) == 1 and callable(args[0]):
            return cls()(args[0])             # `@no_grad` without brackets decorates the function itself
        return super().__new__(cls)

    def __enter__(self) -> "_GradModeSwitch":
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = self.mode
        return self

    def __exit__(self, *exc: Any) -> None:
        _grad_mode.enabled = self._previous

    def __call__(self, func: Callable) -> Callable:
        @functools.wraps(func)
        def with_mode(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)
        return with_mode

    def _fresh(self) -> "_GradModeSwitch":
        return type(self)()


class no_grad(_GradModeSwitch):
    """Stop recording the graph inside a ``with`` block (or a function decorated ``@no_grad()``).

    Operations still compute their outputs; they just do not remember how, so nothing can
    be differentiated and no memory is kept for a backward pass. This does NOT switch batch
    norm to evaluation mode: that is ``module.eval()``.
    """

    mode = False


class enable_grad(_GradModeSwitch):
    """Turn recording back on inside a ``no_grad()`` block."""

    mode = True


class VersionCounter:
    """How many times a tensor's array was changed in place. Tensors that share one array (a
    view, a ``detach()``) share one counter, so a change through any of them is seen by all;
    the counter also knows which of those tensors are still alive (``sharers``)."""

    __slots__ = ("value", "_sharers")

    def __init__(self) -> None:
        self.value = 0
        self._sharers: Optional[weakref.WeakSet] = None    # made when a second tensor shares the array

    def bump(self) -> None:
        self.value += 1

    def share(self, base: "Tensor", view: "Tensor") -> None:
        """``view`` now shares ``base``'s array, and so this counter."""
        if self._sharers is None:
            self._sharers = weakref.WeakSet([base])
        self._sharers.add(view)
        view._version_counter = self

    def sharers(self) -> list:
        """The live tensors that share this counter's array (empty until one is shared)."""
        return list(self._sharers) if self._sharers is not None else []


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` on arrays.

    Subclasses take their hyper-parameters (stride, axis, ...) in ``__init__`` and implement
    ``forward(*arrays) -> array`` and ``backward(dout) -> tuple of gradients``. Attributes whose
    names start with an underscore are the graph's bookkeeping; every other attribute is what
    the forward saved for the backward, and it is released once the backward has run (unless
    ``retain_graph=True``), so a graph frees its buffers as the backward pass goes.

    The graph links a Function to where its input gradients go, not to its input tensors: an
    intermediate result stays in memory only if some backward saved it, never just because it
    was an input (a batch norm's input, say, which its backward does not read).
    """

    # Bookkeeping, set by apply(). For each input: where its gradient goes (``_parents``: the
    # Function that made it, the leaf Tensor itself, or None when it needs no gradient) and its
    # shape; whether each input needs a gradient; whether the saved arrays were already released.
    _parents: tuple
    _input_shapes: tuple
    _needs_input_grad: tuple
    _released: bool = False
    # (counter, version at forward time, "input 0" / "output") for each tensor whose array the
    # forward kept; run_backward compares them before calling backward.
    _saved_versions: tuple = ()

    def forward(self, *arrays: Optional[Array]) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(*arrays)")

    def backward(self, dout: Array) -> tuple:
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dout)")

    @property
    def needs_input_grad(self) -> tuple:
        """One bool per input: does that input need a gradient? Skip the work where not. ``apply`` sets it
        before ``forward`` runs, as PyTorch's ``ctx.needs_input_grad``: all False when nothing will be
        recorded (under ``no_grad``, or no input requires a gradient)."""
        return self._needs_input_grad

    @property
    def backward_possible(self) -> bool:
        """For ``forward``: False only when ``apply`` knows that no backward will run (``no_grad``, or no
        input requires a gradient), so the forward need not save what only its backward reads (ReLU's mask,
        max pooling's winners). A Function called by hand, ``forward`` then ``backward``, saves it."""
        return any(getattr(self, "_needs_input_grad", (True,)))

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> "Tensor":
        """Run the operation on tensors and record it in the graph when that is needed."""
        from minires.tensor import Tensor, as_tensor_like

        tensors = _check_inputs(cls.__name__, inputs, as_tensor_like, Tensor)
        fn = cls(**params)
        arrays = [None if t is None else t.data for t in tensors]
        needs = tuple(t is not None and t.requires_grad for t in tensors)
        recording = is_grad_enabled() and any(needs)
        fn._needs_input_grad = needs if recording else (False,) * len(needs)   # read by forward, too
        with backend.device_context(arrays[0]):
            out_data = fn.forward(*arrays)
        if not backend.is_array(out_data):  # NumPy reductions return scalars, not 0-d arrays
            out_data = backend.get_array_module(arrays[0]).asarray(out_data)
        out = Tensor(out_data, requires_grad=recording, _creator=fn if recording else None)
        for t in tensors:                      # a view (reshape, transpose, x[i]) shares the
            if t is not None and backend.may_share_memory(out_data, t.data):  # counter of its base
                t._version_counter.share(t, out)
                break
        if recording:
            fn._parents = tuple(None if not need else (t if t._creator is None else t._creator)
                                for t, need in zip(tensors, needs))
            fn._input_shapes = tuple(None if t is None else t.shape for t in tensors)
            fn._saved_versions = _saved_versions(fn, tensors, out)
        return out

    def _check_versions(self) -> None:
        """Refuse to run backward if an array this Function saved was changed in place since."""
        for counter, version, role in self._saved_versions:
            if counter.value != version:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by an "
                    f"inplace operation: the {role} of {type(self).__name__} is at version "
                    f"{counter.value}; expected version {version} instead. Its backward would have "
                    f"read the changed values. Hint: write the out-of-place form (x = x + y instead "
                    f"of x += y), or change it in place only after backward().")

    def _release(self) -> None:
        for name in [n for n in vars(self) if not n.startswith("_")]:
            delattr(self, name)
        self._parents = ()             # and the links: a finished graph holds nothing
        self._saved_versions = ()
        self._released = True


def _check_inputs(op: str, inputs: Sequence[Any], as_tensor_like: Callable, tensor_type: type) -> list:
    """Wrap non-tensor inputs and refuse a mix of devices."""
    anchor = next((x for x in inputs if isinstance(x, tensor_type)), None)
    if anchor is None:
        raise TypeError(f"{op} expected at least one Tensor input, got {[type(x).__name__ for x in inputs]}")
    tensors = [None if x is None else as_tensor_like(x, anchor) for x in inputs]
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise RuntimeError(
            f"{op} got tensors on different devices: {sorted(devices)}. "
            f"Move them to one device first, e.g. with tensor.to({anchor.device!r}).")
    return tensors


def _saved_versions(fn: Function, inputs: Sequence[Any], out: "Tensor") -> tuple:
    """The version of each input and of the output whose array ``fn`` kept (or a view of it)."""
    saved = [v for name, v in vars(fn).items() if not name.startswith("_") and backend.is_array(v)]
    if not saved:
        return ()
    candidates = [(t, f"input {i}") for i, t in enumerate(inputs) if t is not None] + [(out, "output")]
    return tuple((t._version_counter, t._version_counter.value, role) for t, role in candidates
                 if any(backend.may_share_memory(a, t.data) for a in saved))


def _topological_order(root: "Tensor") -> list:
    """Functions that lead to ``root``, each after every Function that feeds it (post-order DFS)."""
    order: list = []
    visited: set = set()
    stack: list = [(root._creator, False)]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for parent in fn._parents:
            if isinstance(parent, Function) and id(parent) not in visited:
                stack.append((parent, False))
    return order


# The one hook of the backward pass: None, or a callable ``observer(fn, dout) -> fn.backward(dout)``
# that calls the backward itself and notes what went in, what came out and how long it took.
# ``minires.trace()`` sets it while it records (minires/trace.py); with no trace it costs one ``if``.
_observer: Optional[Callable[[Function, Array], Any]] = None


def run_backward(root: "Tensor", dout: Array, retain_graph: bool = False) -> None:
    """Backpropagate ``dout = dL/d(root)`` to every leaf that requires a gradient.

    Gradients of intermediate results live in ``grads`` only until their Function has
    consumed them; leaves accumulate theirs into ``.grad`` (``+=`` across calls, as in PyTorch).
    """
    order = _topological_order(root)
    grads: dict = {id(root._creator): dout}  # id(Function) -> dL/d(its output)
    for fn in reversed(order):
        if fn._released:
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved arrays were freed "
                "after the first backward. Call backward(retain_graph=True) the first time if you "
                "need to go through it again.")
        dout_fn = grads.pop(id(fn), None)
        if dout_fn is None:  # nothing reached this Function (cannot happen for a connected graph)
            continue
        fn._check_versions()
        retained = getattr(fn, "_retained_output", None)
        if retained is not None:
            retained._accumulate_grad(dout_fn)
        with backend.device_context(dout_fn):
            if _observer is None:
                dinputs = fn.backward(dout_fn)
            else:                   # minires.trace() is on: it calls fn.backward(dout_fn) itself, timed
                dinputs = _observer(fn, dout_fn)
        if not isinstance(dinputs, tuple):
            dinputs = (dinputs,)
        if len(dinputs) != len(fn._input_shapes):
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned {len(dinputs)} gradient(s) for "
                f"{len(fn._input_shapes)} input(s)")
        for parent, dt, shape in zip(fn._parents, dinputs, fn._input_shapes):
            if parent is None or dt is None:
                continue
            if tuple(dt.shape) != shape:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape {tuple(dt.shape)} "
                    f"for an input of shape {shape}")
            if isinstance(parent, Function):
                key = id(parent)
                grads[key] = dt if key not in grads else grads[key] + dt
            else:
                parent._accumulate_grad(dt)                    # a leaf: into its .grad
        if not retain_graph:
            fn._release()


class set_grad_enabled(_GradModeSwitch):
    """Turn recording on or off: at once when called (``set_grad_enabled(False)``), or for a
    ``with`` block or a decorated function, restoring the previous mode afterwards (as PyTorch's)."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = self.mode

    def __enter__(self) -> "set_grad_enabled":
        return self                              # the mode was set when it was called

    def __call__(self, func: Callable) -> Callable:
        _grad_mode.enabled = self._previous      # as a decorator, it sets the mode for each call only
        return super().__call__(func)

    def _fresh(self) -> "_GradModeSwitch":
        return type(self)(self.mode)


__all__ = ["Function", "VersionCounter", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled", "run_backward"]
