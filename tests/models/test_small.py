"""The paper's CIFAR networks: ResNet-20 ... 110 with option-A shortcuts, and their plain twins."""
import numpy as np
import pytest

import minires
from minires import backend, models
from minires.models import BasicBlock, PlainBlock, ShortcutA, SmallResNet

# 6n + 2 layers; parameters for 10 classes and 3-channel images. The paper's table 6 gives 0.27M, 0.46M,
# 0.66M, 0.85M and 1.7M: option-A shortcuts have no parameters, so a plain network has exactly as many.
PARAMETERS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
PAPER = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


def weight_layers(model):
    """The convolutions and the fc: the layers the paper counts."""
    return [name for name, p in model.named_parameters() if p.ndim >= 2]


@pytest.mark.parametrize("depth", list(PARAMETERS))
def test_parameter_counts_and_depths_are_the_papers(skip_initialisation, depth):
    resnet, plain = getattr(models, f"resnet{depth}")(), getattr(models, f"plain{depth}")()
    assert num_parameters(resnet) == num_parameters(plain) == PARAMETERS[depth]
    assert abs(PARAMETERS[depth] - PAPER[depth]) / PAPER[depth] < 0.02
    assert len(weight_layers(resnet)) == len(weight_layers(plain)) == depth
    assert list(resnet.state_dict()) == list(plain.state_dict())        # same layers, same names
    assert not any("downsample" in key for key in resnet.state_dict())   # option A: parameter-free


def test_shapes_through_the_stages_and_the_arguments_kept(skip_initialisation):
    model = models.resnet20(num_classes=7, in_channels=1)
    x = minires.tensor(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert model(x).shape == (2, 7)
    assert model.layer2[0].downsample.extra_channels == 16 and model.layer3[0].downsample.stride == 2
    assert model.layer1[0].downsample is None
    assert isinstance(model.layer3[2], BasicBlock)
    assert all(isinstance(b, PlainBlock) for b in models.plain20().layer2)
    assert models.plain32().fc.out_features == 10
    with pytest.raises(ValueError, match="blocks_per_stage must be at least 1"):
        SmallResNet(0)


def test_shortcut_a_takes_every_other_pixel_and_pads_zeros(xp):
    x = minires.tensor(xp.asarray(np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)))
    out = backend.to_numpy(ShortcutA(extra_channels=3, stride=2)(x).data)
    assert out.shape == (2, 6, 2, 2)
    np.testing.assert_array_equal(out[:, :3], backend.to_numpy(x.data)[:, :, ::2, ::2])
    np.testing.assert_array_equal(out[:, 3:], 0)


def test_a_plain_block_has_no_shortcut():
    """Zero the block's second batch norm: a ResNet block then passes relu(x) on, a plain block only zeros."""
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 4, 3, 3)))
    for block, expected in [(BasicBlock(4, 4), np.maximum(x.numpy(), 0)), (PlainBlock(4, 4), 0)]:
        block.to("float64").train()
        block.bn2.weight.data[...] = 0
        np.testing.assert_allclose(block(x).numpy(), np.broadcast_to(expected, x.shape), atol=1e-12)


@pytest.mark.parametrize("residual", [True, False], ids=["resnet", "plain"])
def test_gradients_through_a_whole_small_network(check_block, residual):
    """Directional gradcheck in the input and every parameter, shortcuts across the stage changes included."""
    minires.manual_seed(0)
    check_block(SmallResNet(1, num_classes=3, in_channels=2, residual=residual), (2, 2, 4, 4), seed=0)
