"""Numerical gradient checks: ``gradcheck`` (finite differences) and ``adjoint_check`` (no step).

How ``gradcheck`` tests a backward pass. It never reduces the output with ``.sum()``: batch
norm's input gradient is exactly zero under an all-ones upstream gradient, so a backward that
returned zeros would pass. It checks the scalar

    L(x) = <G, f(x)>        with G a fixed random array of f(x)'s shape,

whose gradient is what ``f(x).backward(G)`` computes. Central differences
``(L(x + h v) - L(x - h v)) / 2h`` must agree with ``<dL/dx, v>``, in three tiers:

1. directional: one random direction v over all inputs at once (two forwards; cheap enough for
   a whole ResNet);
2. per input: a random direction in one input at a time (which input is wrong?);
3. per element: v = each unit vector of one input (where, and by how much?). It runs for small
   inputs always, and for any input that failed a cheaper tier, to name the worst element.

Finite differences are only trusted in float64 (float32 cannot get below ~1e-5 relative error),
so every input must be float64. Derivation: docs/gradcheck.md.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy

from minires import backend
from minires.tensor import Tensor
from minires.testing.tiers import GradcheckError, Tiers, rel


# The checks draw G and their directions from their own stream: salting the seed keeps them from
# ever equalling the caller's inputs (with inputs drawn from default_rng(0) and G from
# default_rng(0), x == G, and a backward that transposes x^T G would pass unseen).
_SALT = 0x6D696E6972657321


def _generator(seed: int) -> numpy.random.Generator:
    return numpy.random.default_rng([_SALT, seed])


def _as_inputs(inputs: Sequence[Any]) -> list:
    """Leaf copies of the inputs, so checking never touches the caller's tensors or their .grad."""
    leaves = []
    for x in inputs:
        if isinstance(x, Tensor):
            leaves.append(Tensor(x.data.copy(), requires_grad=x.requires_grad))
        elif backend.is_array(x):
            leaves.append(Tensor(x.copy()))
        else:
            leaves.append(x)                                  # a hyper-parameter passed positionally
    return leaves


def _operation_name(fn: Callable, out: Tensor) -> str:
    """``fn``'s own name; for a lambda, the Functions met in its graph (``Conv2d + ReLU``)."""
    name = getattr(fn, "__name__", None)
    if name and name != "<lambda>":
        return name
    from minires.autograd import _topological_order

    met = [] if out._creator is None else [type(f).__name__ for f in _topological_order(out)]
    return " + ".join(dict.fromkeys(met)) or type(fn).__name__


def gradcheck(fn: Callable[..., Tensor], *inputs: Any, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-4, seed: int = 0, n_directions: int = 2,
              elementwise: Optional[bool] = None, max_elementwise: int = 512,
              name: Optional[str] = None) -> bool:
    """Check ``fn``'s backward pass against central differences; raise ``GradcheckError`` if wrong.

    ``fn`` takes the inputs (Tensors, or anything else passed through unchanged) and returns one
    Tensor. The inputs with ``requires_grad=True`` are checked; they must be float64.
    ``elementwise=None`` runs the per-element tier on every input of at most ``max_elementwise``
    elements (and on any input that failed a cheaper tier). Messages call the operation ``name``,
    by default ``fn.__name__`` or, for a lambda, the Functions in its graph. Returns True when all agree.
    """
    leaves = _as_inputs(inputs)
    checked = [i for i, t in enumerate(leaves) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check; "
                         "mark the inputs to differentiate with requires_grad=True")
    for i in checked:
        if leaves[i].dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {i} is {leaves[i].dtype}; finite differences need float64 "
                            f"(float32 cannot resolve a derivative below ~1e-5). Pass x.to('float64').")
    rng = _generator(seed)
    xp = backend.get_array_module(leaves[checked[0]].data)

    def random_like(a: Any) -> Any:
        return xp.asarray(rng.standard_normal(a.shape))

    def forward() -> Any:
        from minires.autograd import no_grad
        with no_grad():
            return fn(*leaves).data

    def vjp(G: Any) -> dict:
        out = fn(*leaves)
        out.backward(G)
        grads = {}
        for i in checked:
            grad = leaves[i].grad
            grads[i] = xp.zeros(leaves[i].shape) if grad is None else grad.data
            leaves[i].grad = None
        return grads

    out = fn(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.dtype != numpy.float64:
        raise TypeError(f"gradcheck: fn returned {out.dtype} from float64 inputs: a silent dtype change")
    label = name or _operation_name(fn, out)
    G = random_like(out)                                         # the random upstream gradient
    out.backward(G)
    analytic = {}
    for i in checked:
        grad = leaves[i].grad
        analytic[i] = xp.zeros(leaves[i].shape) if grad is None else grad.data
        leaves[i].grad = None
    tiers = Tiers(label, {i: leaves[i].data for i in checked}, forward, vjp, G, eps, atol, rtol)
    return tiers.run(analytic, random_like, n_directions, elementwise, max_elementwise)


def gradcheck_module(module: Any, *inputs: Any, perturb: float = 0.1, seed: int = 0,
                     **options: Any) -> bool:
    """``gradcheck`` of ``module(*inputs)`` in its inputs AND in every parameter, in float64.

    ``module`` is a ``minires.nn.Module`` (anything with ``named_modules`` and
    ``named_parameters``); it is checked in its current mode, so call ``.train()`` or ``.eval()``
    first, and its parameters must be float64 (``module.to("float64")``). The parameters are
    moved by ``perturb`` times a random normal to a generic point (a fresh batch norm has gamma 1
    and beta 0, where some bugs hide) and put back afterwards. ``options`` go to ``gradcheck``
    (for a whole block, ``elementwise=False`` keeps it to the directional tiers).
    """
    owners = [(owner, name) for _, owner in module.named_modules()
              for name, _ in owner.named_parameters(recurse=False)]
    originals = [getattr(owner, name) for owner, name in owners]
    rng = _generator(seed)
    xp = backend.get_array_module(originals[0].data) if originals else numpy
    leaves = [Tensor(p.data + perturb * xp.asarray(rng.standard_normal(p.shape)), requires_grad=True)
              for p in originals]

    def module_output(*args: Any) -> Tensor:
        for (owner, name), leaf in zip(owners, args[len(inputs):]):
            object.__setattr__(owner, name, leaf)          # the module now computes with the leaf
        return module(*args[:len(inputs)])

    try:
        options.setdefault("name", type(module).__name__)
        return gradcheck(module_output, *inputs, *leaves, seed=seed, **options)
    finally:
        for (owner, name), original in zip(owners, originals):
            object.__setattr__(owner, name, original)


def adjoint_check(linear_fn: Callable, x_shape: Sequence[int], adjoint_fn: Optional[Callable] = None,
                  seed: int = 0, rtol: float = 1e-10, atol: float = 1e-12, device: str = "cpu") -> bool:
    """Check ``<A x, y> == <x, A^T y>`` for a linear operation A, with no step size at all.

    With ``adjoint_fn=None``, ``linear_fn`` maps a Tensor to a Tensor and A^T y is its backward
    pass with upstream gradient y. With ``adjoint_fn``, both are plain array functions (for
    example im2col and col2im). Runs in float64; raises ``GradcheckError`` when the two sides differ.
    """
    rng = _generator(seed)
    x = backend.to_device(rng.standard_normal(tuple(x_shape)), device)
    if adjoint_fn is None:
        x_t = Tensor(x, requires_grad=True)
        Ax = linear_fn(x_t)
        label = _operation_name(linear_fn, Ax)
        y = backend.to_device(rng.standard_normal(Ax.shape), device)
        Ax.backward(y)
        ATy, Ax = x_t.grad.data, Ax.data
    else:
        Ax = linear_fn(x)
        label = f"{getattr(linear_fn, '__name__', 'fn')} and {getattr(adjoint_fn, '__name__', 'fn')}"
        y = backend.to_device(rng.standard_normal(tuple(Ax.shape)), device)
        ATy = adjoint_fn(y)
    if tuple(ATy.shape) != tuple(x.shape):
        raise GradcheckError(f"adjoint_check: A^T y has shape {tuple(ATy.shape)}, x has {tuple(x.shape)}")
    lhs, rhs = float((Ax * y).sum()), float((x * ATy).sum())
    if abs(lhs - rhs) > atol + rtol * max(abs(lhs), abs(rhs)):
        raise GradcheckError(f"adjoint_check of {label} failed: "
                             f"<A x, y> = {lhs:.15g} but <x, A^T y> = {rhs:.15g} "
                             f"(relative error {rel(lhs, rhs):.3g}); the backward is not the transpose "
                             f"of the forward")
    return True
