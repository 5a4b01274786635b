"""Shared by the model tests: a directional gradient check through a whole block."""
import numpy as np
import pytest

import minires
from minires import nn
from minires.testing import gradcheck_module


def _check_block(block: nn.Module, x_shape: tuple, seed: int) -> None:
    """Directional gradcheck of <G, block(x)> in x and in every parameter, in training mode (float64)."""
    block.to("float64").train()
    x = minires.tensor(np.random.default_rng(seed).standard_normal(x_shape), requires_grad=True)
    assert gradcheck_module(block, x, elementwise=False, n_directions=3, seed=seed)


@pytest.fixture
def check_block():
    """``check_block(block, x_shape, seed)``: gradcheck a block in x and all its parameters, training mode."""
    return _check_block


def _zero(tensor, *args, **kwargs):
    tensor.data[...] = 0
    return tensor


@pytest.fixture
def skip_initialisation(monkeypatch):
    """Build models with zeros in place of random weights.

    For tests where the values do not matter (sizes, keys, shapes) or are all overwritten (the torchvision
    fixtures fill every entry): drawing 89 million normal numbers, twice (Conv2d's default, then the
    ResNet's Kaiming-normal), takes seconds. The initialisation itself is tested in test_resnet.py.
    """
    for name in ("kaiming_normal_", "kaiming_uniform_", "uniform_", "normal_"):
        monkeypatch.setattr(nn.init, name, _zero)
