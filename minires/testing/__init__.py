"""The gradient-check toolkit: public, so students and other projects can check their own operations.

- ``gradcheck(fn, *inputs)``: float64 central differences against the backward pass, with a
  random upstream gradient, in three tiers (directional, per input, per element);
- ``gradcheck_module(module, *inputs)``: the same through a whole layer or block, in its inputs
  and in every one of its parameters;
- ``check_backward(forward, backward, *arrays)``: the same tiers for a pair of plain NumPy
  functions, ``out, cache = forward(...)`` and ``dx, dw, ... = backward(dout, cache)``;
- ``minires.testing.suite``: the properties behind ``minires gradcheck``, per operation;
- ``adjoint_check(linear_fn, x_shape)``: ``<A x, y> == <x, A^T y>`` for linear operations;
- ``minires.testing.strategies``: Hypothesis strategies for valid convolution and pooling
  geometry and for arrays that keep clear of kinks (needs the ``test`` extra).
"""
from minires.testing.gradcheck import adjoint_check, gradcheck, gradcheck_module
from minires.testing.plain import backward_property, check_backward
from minires.testing.tiers import GradcheckError

__all__ = ["gradcheck", "gradcheck_module", "adjoint_check", "check_backward", "backward_property",
           "GradcheckError"]
