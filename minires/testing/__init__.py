"""The gradient-check toolkit: public, so students and other projects can check their own operations.

- ``gradcheck(fn, *inputs)``: float64 central differences against the backward pass, with a
  random upstream gradient, in three tiers (directional, per input, per element);
- ``gradcheck_module(module, *inputs)``: the same through a whole layer or block, in its inputs
  and in every one of its parameters;
- ``adjoint_check(linear_fn, x_shape)``: ``<A x, y> == <x, A^T y>`` for linear operations;
- ``minires.testing.strategies``: Hypothesis strategies for valid convolution and pooling
  geometry and for arrays that keep clear of kinks (needs the ``test`` extra).
"""
from minires.testing.gradcheck import GradcheckError, adjoint_check, gradcheck, gradcheck_module

__all__ = ["gradcheck", "gradcheck_module", "adjoint_check", "GradcheckError"]
