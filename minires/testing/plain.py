"""``check_backward``: the gradient check for plain NumPy code, with no minires in sight.

Most courses have students write a layer as two functions:

    out, cache = forward(x, w, b, ...)      # the arrays, and what the backward needs
    dx, dw, db = backward(dout, cache)      # one gradient per array input, dout = dL/d(out)

``check_backward(forward, backward, x, w, b)`` checks such a pair exactly as ``gradcheck`` checks a
minires operation: float64 central differences of ``L = <G, f(x)>`` with a random upstream
gradient G, in three tiers (one random direction through all inputs; one input at a time; each
element, for a readable diagnosis), with the same messages. Non-float arguments (class labels,
a ``conv_param`` dict, an int) pass through unchanged and get no gradient.
``backward_property`` runs it over Hypothesis strategies.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional

import numpy

from minires.testing.gradcheck import _generator
from minires.testing.tiers import Tiers


def _parameter_names(forward: Callable, count: int) -> list:
    """The names of ``forward``'s first ``count`` parameters, where Python can tell them."""
    try:
        params = [p.name for p in inspect.signature(forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params[:count] + [""] * (count - len(params[:count]))


def check_backward(forward: Callable[..., Any], backward: Callable[[Any, Any], Any], *args: Any,
                   eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4, seed: int = 0,
                   n_directions: int = 2, elementwise: Optional[bool] = None, max_elementwise: int = 512,
                   name: Optional[str] = None) -> bool:
    """Check ``backward`` against central differences of ``forward``; raise ``GradcheckError`` if wrong.

    ``forward(*args)`` returns ``(out, cache)``; ``backward(dout, cache)`` returns the gradients of
    the floating-point array arguments, in the order ``forward`` takes them (a tuple, or one array
    when there is one). Those arrays must be float64; the caller's arrays are never changed.
    Messages call the check ``name``, by default the backward function's name. Returns True.
    """
    work = [a.copy() if isinstance(a, numpy.ndarray) else a for a in args]
    checked = [i for i, a in enumerate(work) if isinstance(a, numpy.ndarray) and a.dtype.kind == "f"]
    params = _parameter_names(forward, len(work))
    names = {i: f"input {i} '{params[i]}'" if params[i] else f"input {i}" for i in checked}
    if not checked:
        raise ValueError("check_backward: none of the arguments is a floating-point NumPy array, so there is "
                         "nothing to differentiate; pass the inputs as float64 arrays")
    for i in checked:
        if work[i].dtype != numpy.float64:
            raise TypeError(f"check_backward: {names[i]} is {work[i].dtype}; finite differences need float64 "
                            f"(float32 cannot resolve a derivative below ~1e-5). Pass x.astype(np.float64).")
    label = name or getattr(backward, "__name__", "backward")

    def run_forward() -> tuple:
        result = forward(*work)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"check_backward: forward must return (out, cache), got {type(result).__name__}"
                            f"{'' if not isinstance(result, tuple) else f' of length {len(result)}'}")
        out = numpy.asarray(result[0])
        if out.dtype != numpy.float64:
            raise TypeError(f"check_backward: forward returned out of dtype {out.dtype} from float64 inputs: "
                            f"a silent dtype change")
        return out, result[1]

    def vjp(G: Any) -> Dict[int, Any]:
        _, cache = run_forward()
        grads = backward(G.copy(), cache)                       # a copy: backward may change dout
        grads = (grads,) if isinstance(grads, numpy.ndarray) else tuple(grads)
        if len(grads) != len(checked):
            raise TypeError(f"check_backward: backward returned {len(grads)} gradient(s), but forward takes "
                            f"{len(checked)} float array(s) ({', '.join(names[i] for i in checked)}); return "
                            f"one gradient per array, in the order forward takes them")
        result = {}
        for i, g in zip(checked, grads):
            g = numpy.asarray(g, dtype=numpy.float64)
            if g.shape != work[i].shape:
                raise ValueError(f"check_backward: the gradient of {names[i]} has shape {g.shape}, but "
                                 f"{names[i]} has shape {work[i].shape}; a gradient has its input's shape")
            result[i] = g
        return result

    rng = _generator(seed)

    def random_like(a: Any) -> Any:
        return rng.standard_normal(a.shape)

    out, _ = run_forward()
    G = random_like(out)                                        # the random upstream gradient
    analytic = vjp(G)
    tiers = Tiers(label, {i: work[i] for i in checked}, lambda: run_forward()[0], vjp, G, eps, atol, rtol,
                  input_names=names, symbols={i: params[i] or f"input{i}" for i in checked})
    return tiers.run(analytic, random_like, n_directions, elementwise, max_elementwise)


def backward_property(forward: Callable[..., Any], backward: Callable[[Any, Any], Any], args: Any,
                      **options: Any) -> Callable[[], None]:
    """A Hypothesis test: ``args`` (a strategy of argument tuples) feeds ``check_backward``.

    ``test_affine = backward_property(affine_forward, affine_backward, affine_args())`` is a test
    function pytest collects; call it to run it by hand. ``options`` go to ``check_backward``.
    Wrap it with ``hypothesis.settings(...)`` for more or fewer examples.
    """
    from hypothesis import given

    @given(drawn=args)
    def test(drawn: tuple) -> None:
        check_backward(forward, backward, *drawn, **options)

    test.__name__ = f"test_{getattr(backward, '__name__', 'backward')}"
    return test
