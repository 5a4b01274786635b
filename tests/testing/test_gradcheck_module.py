"""gradcheck_module: a whole layer or block, checked in its input and in every parameter."""
import numpy as np
import pytest

import minires
from minires import nn
from minires.autograd import Function
from minires.testing import GradcheckError, gradcheck_module


class _LinearWithWrongWeightGrad(Function):
    """out = x @ W^T; the backward forgets a transpose in dW (W is square, so the shapes still fit)."""

    def forward(self, x, w):
        self.x, self.w = x, w
        return x @ w.T

    def backward(self, dout):
        return dout @ self.w, self.x.T @ dout                   # right: dout.T @ x


class _Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(minires.randn(3, 3, dtype="float64"))

    def forward(self, x):
        return _LinearWithWrongWeightGrad.apply(x, self.weight)


def _x(shape, seed=0):
    return minires.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def test_a_correct_block_passes_and_gets_its_parameters_back():
    minires.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU()).to("float64").train()
    before = [p for p in block.parameters()]
    values = [p.data.copy() for p in before]
    assert gradcheck_module(block, _x((2, 2, 4, 4)), elementwise=False)
    assert [p for p in block.parameters()] == before                    # the same Parameter objects
    for p, v in zip(before, values):
        np.testing.assert_array_equal(p.data, v)                        # with their values untouched


def test_a_wrong_parameter_gradient_is_caught_and_named():
    """x comes from default_rng(0) and the check runs with seed=0: if the check drew its upstream G
    from default_rng(0) as well, G would equal x, x^T G would be symmetric, and the dropped
    transpose would pass unseen. The check's own salted stream keeps them apart."""
    minires.manual_seed(1)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(3, 3\)\)"):  # input 0 is x, 1 the weight
        gradcheck_module(_Planted(), _x((4, 3)))
