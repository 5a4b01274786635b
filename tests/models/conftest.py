"""Shared by the model tests: a directional gradient check through a whole block."""
import numpy as np
import pytest

import minires
from minires import nn
from minires.testing import gradcheck


def _check_block(block: nn.Module, x_shape: tuple, seed: int) -> None:
    """Directional gradcheck of <G, block(x)> in x and in every parameter, in training mode (float64).

    gradcheck differentiates the tensors it is given, so for the duration of the check each parameter
    attribute of the block is pointed at the matching leaf that gradcheck hands to ``fn`` (and put back after).
    The parameters are nudged away from their initial values (gamma = 1, beta = 0) to a generic point.
    """
    block.to("float64").train()
    owners = [(owner, name) for _, owner in block.named_modules()
              for name, _ in owner.named_parameters(recurse=False)]
    originals = [getattr(owner, name) for owner, name in owners]
    rng = np.random.default_rng(seed)
    x = minires.tensor(rng.standard_normal(x_shape), requires_grad=True)
    params = [minires.tensor(p.data + 0.1 * rng.standard_normal(p.shape), requires_grad=True) for p in originals]

    def block_output(x, *leaves):
        for (owner, name), leaf in zip(owners, leaves):
            object.__setattr__(owner, name, leaf)
        return block(x)

    try:
        assert gradcheck(block_output, x, *params, elementwise=False, n_directions=3, seed=seed)
    finally:
        for (owner, name), original in zip(owners, originals):
            object.__setattr__(owner, name, original)


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
