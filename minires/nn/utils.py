"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_``, as in ``torch.nn.utils``.

Both change the gradients in place, between ``loss.backward()`` and ``optimizer.step()``:

    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
"""
from __future__ import annotations

import math
from typing import Iterable, List, Union

import numpy

from minires import backend
from minires.autograd import no_grad
from minires.backend import Array
from minires.tensor import Tensor

#: What the clipping functions accept: one tensor, or an iterable of them (``model.parameters()``).
TensorOrTensors = Union[Tensor, Iterable[Tensor]]


def _gradients(parameters: TensorOrTensors) -> List[Tensor]:
    """The gradient Tensors of ``parameters`` that have one, all on one device."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    devices = sorted({g.device for g in grads})
    if len(devices) > 1:
        raise RuntimeError(f"gradient clipping got gradients on different devices: {devices}; clip the "
                           f"parameters of each device separately")
    return grads


def _vector_norm(array: Array, norm_type: float) -> Array:
    """``||array||_p`` over all its elements, as a 0-d array of its dtype (``p = inf``: max |a|)."""
    xp = backend.get_array_module(array)
    return xp.asarray(xp.linalg.norm(array.ravel(), ord=norm_type))


def clip_grad_norm_(parameters: TensorOrTensors, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    r"""Scale all gradients together so that their joint norm is at most ``max_norm``.

    The total norm treats every gradient as one long vector:
    $\|g\|_p = \big(\sum_i \|g_i\|_p^p\big)^{1/p}$ (for $p = \infty$, $\max_i \|g_i\|_\infty$).
    Each gradient is multiplied by $\min\big(1, \frac{\text{max\_norm}}{\|g\|_p + 10^{-6}}\big)$,
    so gradients already within the bound are (all but) unchanged, and their direction never
    changes. Returns the total norm from before clipping, as a 0-d Tensor (0.0 when no
    parameter has a gradient). ``error_if_nonfinite=True`` raises when it is inf or nan,
    instead of scaling every gradient to zero (inf) or to nan.
    """
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_ needs norm_type > 0 (e.g. 2.0, 1.0 or float('inf')), got {norm_type}")
    grads = _gradients(parameters)
    if not grads:
        return Tensor(numpy.asarray(0.0, dtype=numpy.float32))
    xp = backend.get_array_module(grads[0].data)
    with no_grad(), backend.device_context(grads[0].data):
        norms = xp.stack([_vector_norm(g.data, norm_type) for g in grads])      # (number of gradients,)
        total_norm = _vector_norm(norms, norm_type)
        if error_if_nonfinite and not math.isfinite(float(total_norm)):
            raise RuntimeError(f"the total norm of order {norm_type} of the gradients is {float(total_norm)}, so "
                               f"they cannot be clipped; look for the inf or nan in them, or pass "
                               f"error_if_nonfinite=False to scale them by it anyway")
        clip_coef = xp.asarray(xp.minimum(max_norm / (total_norm + 1e-6), 1.0))   # 0-d, on the device
        for grad in grads:
            grad.mul_(clip_coef)
    return Tensor(total_norm)


def clip_grad_value_(parameters: TensorOrTensors, clip_value: float) -> None:
    r"""Clamp every gradient element into $[-\text{clip\_value}, \text{clip\_value}]$, in place.

    Unlike ``clip_grad_norm_`` this changes the direction of the gradient.
    """
    clip_value = float(clip_value)
    if not clip_value >= 0:
        raise ValueError(f"clip_grad_value_ clamps into [-clip_value, clip_value], so clip_value must be >= 0, "
                         f"got {clip_value}")
    with no_grad():
        for grad in _gradients(parameters):
            grad.clamp_(min=-clip_value, max=clip_value)


__all__ = ["clip_grad_norm_", "clip_grad_value_"]
