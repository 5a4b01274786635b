"""torchvision's ResNet family: sizes, state-dict keys, initialisation, options, and gradients through a block."""
import json
import math
import os

import numpy as np
import pytest

import minires
from minires import models, nn
from minires.models import BasicBlock, Bottleneck, ResNet

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures")

with open(os.path.join(FIXTURES, "torchvision_state_dicts.json")) as f:
    TORCHVISION = json.load(f)["models"]

PUBLISHED = {  # torchvision's published parameter counts (1000 classes)
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
}


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_count_and_state_dict_match_torchvision(skip_initialisation, name):
    model = getattr(models, name)()
    assert num_parameters(model) == PUBLISHED[name] == TORCHVISION[name]["num_parameters"]
    ours = [[key, list(value.shape), str(value.dtype)] for key, value in model.state_dict().items()]
    expected = TORCHVISION[name]["state_dict"]
    assert [row[0] for row in ours] == [row[0] for row in expected]      # same keys, same order
    assert ours == expected                                               # and the same shapes and dtypes


def test_every_key_of_a_block_is_where_torchvision_puts_it(skip_initialisation):
    keys = list(models.resnet50().layer2[0].state_dict())
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked"]
    assert "downsample.0.weight" in keys and "downsample.1.running_var" in keys
    assert "downsample.0.weight" not in models.resnet50().layer2[1].state_dict()


def test_initialisation_is_kaiming_normal_fan_out():
    minires.manual_seed(0)
    model = models.resnet18()
    for key, conv in [("conv1", model.conv1), ("layer4.1.conv2", model.layer4[1].conv2),
                      ("layer3.0.downsample.0", model.layer3[0].downsample[0])]:
        w = conv.weight.numpy()
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        std = math.sqrt(2.0 / fan_out)
        assert abs(w.mean()) < 4 * std / math.sqrt(w.size), key
        assert abs(w.std() / std - 1) < 0.05, f"{key}: std {w.std()} instead of sqrt(2 / fan_out) = {std}"
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            np.testing.assert_array_equal(module.weight.numpy(), 1)
            np.testing.assert_array_equal(module.bias.numpy(), 0)


@pytest.mark.parametrize("builder, last_bn", [(models.resnet18, "bn2"), (models.resnet50, "bn3")])
def test_zero_init_residual_zeroes_each_blocks_last_gamma(skip_initialisation, builder, last_bn):
    default, zeroed = builder(), builder(zero_init_residual=True)
    blocks = [m for m in zeroed.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert len(blocks) == (8 if builder is models.resnet18 else 16)
    for block in blocks:
        np.testing.assert_array_equal(getattr(block, last_bn).weight.numpy(), 0)
        np.testing.assert_array_equal(block.bn1.weight.numpy(), 1)
    assert all(np.all(getattr(b, last_bn).weight.numpy() == 1)
               for b in default.modules() if isinstance(b, (BasicBlock, Bottleneck)))


def test_zero_init_residual_makes_each_block_the_identity_plus_relu():
    block_owner = models.resnet18(zero_init_residual=True)
    block = block_owner.layer1[0].eval()
    x = minires.tensor(np.random.default_rng(0).standard_normal((1, 64, 5, 5)))
    block.to("float64")
    np.testing.assert_allclose(block(x).numpy(), np.maximum(x.numpy(), 0), atol=1e-12)


@pytest.mark.parametrize("builder, features", [(models.resnet18, 512), (models.resnet50, 2048)])
def test_include_top_false_returns_the_pooled_features(skip_initialisation, builder, features):
    model = builder(include_top=False)
    assert not any(key.startswith("fc.") for key in model.state_dict())
    assert isinstance(model.fc, nn.Identity)
    model.eval()
    with minires.no_grad():
        out = model(minires.randn(2, 3, 32, 32))
    assert out.shape == (2, features)
    assert out.dtype == np.float32


def test_a_new_head_on_the_feature_extractor(skip_initialisation):
    model = models.resnet18(include_top=False)
    model.fc = nn.Linear(512, 5)
    assert list(model.state_dict())[-2:] == ["fc.weight", "fc.bias"]
    with minires.no_grad():
        assert model.eval()(minires.randn(1, 3, 32, 32)).shape == (1, 5)


def test_in_channels_and_num_classes(skip_initialisation):
    model = models.resnet34(in_channels=1, num_classes=7)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert model.fc.weight.shape == (7, 512)


def test_replace_stride_with_dilation_keeps_the_resolution(skip_initialisation):
    model = models.resnet50(replace_stride_with_dilation=[False, True, True], include_top=False)
    # the first block of a stage keeps the previous stage's dilation; the rest multiply it by the stride
    assert model.layer3[0].conv2.dilation == (1, 1) and model.layer3[0].conv2.stride == (1, 1)
    assert model.layer3[1].conv2.dilation == (2, 2)
    assert model.layer4[0].conv2.dilation == (2, 2) and model.layer4[0].conv2.stride == (1, 1)
    assert model.layer4[1].conv2.dilation == (4, 4) and model.layer4[1].conv2.padding == (4, 4)
    assert model.layer4[0].downsample[0].stride == (1, 1)
    table = models.summary(model, (1, 3, 64, 64), depth=1)
    shapes = {row.name: row.output_shape for row in table.rows}
    assert shapes["layer2"] == (1, 512, 8, 8)
    assert shapes["layer3"] == (1, 1024, 8, 8)             # no stride: still 8x8
    assert shapes["layer4"] == (1, 2048, 8, 8)


def test_basic_block_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1 and base_width=64"):
        BasicBlock(64, 64, groups=2)
    with pytest.raises(ValueError, match="base_width=64"):
        models.resnet18(width_per_group=128)
    with pytest.raises(NotImplementedError, match="Dilation > 1 not supported in BasicBlock"):
        models.resnet18(replace_stride_with_dilation=[False, False, True])


def test_resnet_checks_its_layout_arguments():
    with pytest.raises(ValueError, match="4 stages"):
        ResNet(BasicBlock, [2, 2, 2])
    with pytest.raises(ValueError, match="3-element"):
        ResNet(Bottleneck, [3, 4, 6, 3], replace_stride_with_dilation=[True, True])


def test_a_student_built_resnet(skip_initialisation):
    model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=3, groups=2, width_per_group=32)
    # layer1: planes 64, width = int(64 * 32 / 64) * 2 = 64, in 2 groups of 32 channels
    assert model.layer1[0].conv2.weight.shape == (64, 32, 3, 3)
    assert model.layer1[0].conv3.weight.shape == (256, 64, 1, 1)
    with minires.no_grad():
        assert model.eval()(minires.randn(1, 3, 32, 32)).shape == (1, 3)


# --------------------------------------------------------------------------- gradients through one block
@pytest.mark.parametrize("stride", [1, 2])
def test_gradcheck_basic_block_training_mode(check_block, stride):
    downsample = nn.Sequential(models.conv1x1(4, 6, stride), nn.BatchNorm2d(6))
    check_block(BasicBlock(4, 6, stride, downsample), (2, 4, 6, 6), seed=stride)


@pytest.mark.parametrize("stride, groups", [(1, 1), (2, 2)])
def test_gradcheck_bottleneck_training_mode(check_block, stride, groups):
    downsample = nn.Sequential(models.conv1x1(8, 4 * 4, stride), nn.BatchNorm2d(16))
    block = Bottleneck(8, 4, stride, downsample, groups=groups, base_width=64)
    check_block(block, (2, 8, 5, 5), seed=10 + stride)


def test_gradcheck_identity_shortcut_accumulates_into_x(check_block):
    check_block(BasicBlock(4, 4), (2, 4, 5, 5), seed=3)
