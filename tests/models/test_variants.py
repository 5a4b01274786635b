"""The tutorials' variants: the CIFAR layout, Dive into Deep Learning's ResNet-18, the pre-activation ResNet."""
import json
import os

import numpy as np
import pytest

import minires
from minires import models, nn
from minires.models import PreActBlock, PreActBottleneck, Residual

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures")


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def stage_shapes(model: nn.Module, input_shape: tuple) -> dict:
    """Output shape of each of the model's children, from one forward pass."""
    return {row.name: row.output_shape for row in models.summary(model, input_shape, depth=1).rows}


# ----------------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("name, count", [
    ("cifar_resnet18", 11_173_962),      # the kuangliu/pytorch-cifar ResNet18
    ("cifar_resnet34", 21_282_122),
    ("cifar_resnet50", 23_520_842),
])
def test_cifar_parameter_counts(skip_initialisation, name, count):
    # torchvision's count, less the 7x7 stem (9,408 -> 1,728) and the 1000-class head (513,000 -> 5,130 or 20,490)
    assert num_parameters(getattr(models, name)()) == count


def test_cifar_state_dict_is_torchvisions_with_a_3x3_stem_and_10_classes(skip_initialisation):
    with open(os.path.join(FIXTURES, "torchvision_state_dicts.json")) as f:
        torchvision = json.load(f)["models"]["resnet18"]["state_dict"]
    changed = {"conv1.weight": [64, 3, 3, 3], "fc.weight": [10, 512], "fc.bias": [10]}
    expected = [[key, changed.get(key, shape)] for key, shape, _ in torchvision]
    ours = [[key, list(value.shape)] for key, value in models.cifar_resnet18().state_dict().items()]
    assert ours == expected                                     # same keys in the same order, same shapes


def test_cifar_stem_keeps_32x32(skip_initialisation):
    model = models.cifar_resnet18()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    shapes = stage_shapes(model, (2, 3, 32, 32))
    assert shapes["conv1"] == (2, 64, 32, 32)
    assert [shapes[f"layer{i}"] for i in range(1, 5)] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8),
                                                          (2, 512, 4, 4)]
    assert shapes["fc"] == (2, 10)


def test_cifar_stem_is_initialised_like_the_rest():
    minires.manual_seed(1)
    w = models.cifar_resnet18().conv1.weight.numpy()
    assert abs(w.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.1         # Kaiming-normal, fan_out = 64 * 3 * 3


# ------------------------------------------------------------------------------------- Dive into Deep Learning
def test_d2l_residual_shapes_as_in_the_book():
    x = minires.randn(4, 3, 6, 6)
    with minires.no_grad():
        assert Residual(3, 3)(x).shape == (4, 3, 6, 6)
        assert Residual(3, 6, use_1x1conv=True, strides=2)(x).shape == (4, 6, 3, 3)


def test_d2l_layout_biased_convolutions_and_a_shortcut_without_batch_norm(skip_initialisation):
    keys = list(models.d2l_resnet18().state_dict())
    assert keys[:3] == ["0.0.weight", "0.0.bias", "0.1.weight"]
    assert "1.0.conv1.bias" in keys and "1.0.conv3.weight" not in keys      # first stage: no 1x1 shortcut
    assert "2.0.conv3.weight" in keys and "2.0.conv3.bias" in keys
    assert not any(key.startswith("2.0.bn3") for key in keys)              # no BN on the shortcut
    assert keys[-2:] == ["7.weight", "7.bias"]
    assert num_parameters(models.d2l_resnet18()) == 11_178_378
    assert num_parameters(models.d2l_resnet18(in_channels=3, num_classes=100)) == 11_178_378 + 2 * 49 * 64 + 90 * 513


# ------------------------------------------------------------------------------------------ pre-activation
def test_preact_resnet18_parameter_count(skip_initialisation):
    # kuangliu's PreActResNet18 has 11,171,146; bn_final adds gamma and beta for 512 channels
    assert num_parameters(models.preact_resnet18()) == 11_171_146 + 2 * 512


def test_preact_layout(skip_initialisation):
    model = models.preact_resnet50()
    keys = list(model.state_dict())
    assert keys[0] == "conv1.weight" and keys[1].startswith("layer1.0.bn1")   # no BN between stem and block
    assert "layer1.0.shortcut.weight" in keys                                 # 64 -> 256 channels
    assert "layer1.1.shortcut.weight" not in keys
    assert model.layer2[0].conv2.stride == (2, 2)                             # the stride on the 3x3
    assert keys[-7:-2] == ["bn_final.weight", "bn_final.bias", "bn_final.running_mean", "bn_final.running_var",
                           "bn_final.num_batches_tracked"]


@pytest.mark.parametrize("builder, features", [(models.preact_resnet18, 512), (models.preact_resnet50, 2048)])
def test_preact_shapes(skip_initialisation, builder, features):
    shapes = stage_shapes(builder(), (1, 3, 32, 32))
    assert shapes["layer1"] == (1, features // 8, 32, 32)
    assert shapes["layer4"] == (1, features, 4, 4)
    assert shapes["fc"] == (1, 10)


def test_preact_without_the_top_returns_the_pooled_features():
    model = models.preact_resnet18(include_top=False)
    assert isinstance(model.fc, nn.Identity) and not any(k.startswith("fc.") for k in model.state_dict())
    with minires.no_grad():
        assert model.eval()(minires.randn(2, 3, 16, 16)).shape == (2, 512)


def test_preact_block_has_no_relu_after_the_sum():
    block = PreActBlock(4, 4).to("float64").eval()
    x = minires.tensor(-np.ones((1, 4, 3, 3)))                    # negative input, identity shortcut
    for name in ("conv1", "conv2"):
        nn.init.zeros_(getattr(block, name).weight)               # residual branch 0: out = x exactly
    with minires.no_grad():
        np.testing.assert_array_equal(block(x).numpy(), x.numpy())


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcheck_preact_block_training_mode(check_block, stride):
    check_block(PreActBlock(4, 6, stride), (2, 4, 6, 6), seed=20 + stride)


def test_gradcheck_preact_bottleneck_training_mode(check_block):
    check_block(PreActBottleneck(8, 2, stride=2), (2, 8, 5, 5), seed=30)


def test_gradcheck_d2l_residual_training_mode(check_block):
    check_block(Residual(3, 4, use_1x1conv=True, strides=2), (2, 3, 6, 6), seed=40)
