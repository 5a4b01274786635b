"""The d2l and pre-activation layouts against the reference code they follow, written here in PyTorch.

torchvision has no such models, so each reference is restated below from its source: the book's
``Residual`` / ``resnet_block`` (Dive into Deep Learning, chapter "Residual Networks (ResNet)", PyTorch
edition) and kuangliu/pytorch-cifar's ``PreActBlock`` / ``PreActBottleneck``. minires's weights are loaded
into the PyTorch model by state-dict key, which also checks that the keys are the references' own.
"""
import numpy as np
import pytest

import minires
from minires import models

torch = pytest.importorskip("torch")
tnn = torch.nn
tF = torch.nn.functional


class TorchResidual(tnn.Module):
    """The book's block (PyTorch edition, with explicit input channels)."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = tnn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = tnn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = tnn.BatchNorm2d(num_channels)
        self.bn2 = tnn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = tF.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return tF.relu(Y)


def torch_d2l_resnet18(in_channels, num_classes):
    def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(TorchResidual(input_channels, num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(TorchResidual(num_channels, num_channels))
        return blk

    b1 = tnn.Sequential(tnn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), tnn.BatchNorm2d(64),
                        tnn.ReLU(), tnn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = tnn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = tnn.Sequential(*resnet_block(64, 128, 2))
    b4 = tnn.Sequential(*resnet_block(128, 256, 2))
    b5 = tnn.Sequential(*resnet_block(256, 512, 2))
    return tnn.Sequential(b1, b2, b3, b4, b5, tnn.AdaptiveAvgPool2d((1, 1)), tnn.Flatten(),
                          tnn.Linear(512, num_classes))


class TorchPreActBlock(tnn.Module):
    """kuangliu's PreActBlock, with the shortcut as a bare 1x1 convolution (minires's key: shortcut.weight)."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = tnn.BatchNorm2d(in_planes)
        self.conv1 = tnn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = tnn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x):
        out = tF.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(tF.relu(self.bn2(out)))
        out += shortcut
        return out


class TorchPreActBottleneck(tnn.Module):
    """kuangliu's PreActBottleneck, shortcut as above."""

    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = tnn.BatchNorm2d(in_planes)
        self.conv1 = tnn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = tnn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x):
        out = tF.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(tF.relu(self.bn2(out)))
        out = self.conv3(tF.relu(self.bn3(out)))
        out += shortcut
        return out


def randomised(model, seed):
    """Give every floating state-dict entry generic values (BN gamma near 1, running_var positive)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.numpy()
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, size=value.shape)
        else:
            scale = 1 / np.sqrt(np.prod(value.shape[1:])) if value.ndim >= 2 else 0.1
            state[key] = (1.0 if key.endswith("weight") and value.ndim == 1 else 0.0) \
                + scale * rng.standard_normal(value.shape)
    model.load_state_dict(state)
    return model


def assert_same_outputs(ours, theirs, x_shape, seed, training):
    """Load ours into theirs by key, run both on one input in float64, compare outputs and running stats."""
    ours = randomised(ours.to("float64"), seed).train(training)
    theirs = theirs.double().train(training)
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    x = np.random.default_rng(seed + 1).standard_normal(x_shape)
    with minires.no_grad():
        out = ours(minires.tensor(x)).numpy()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=key)


@pytest.mark.parametrize("training", [True, False])
def test_d2l_resnet18_is_the_books_model(skip_initialisation, training):
    ours, theirs = models.d2l_resnet18(in_channels=1, num_classes=10), torch_d2l_resnet18(1, 10)
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters())
    assert_same_outputs(ours, theirs, (2, 1, 32, 32), seed=0, training=training)


@pytest.mark.parametrize("block, theirs, in_planes, planes, stride", [
    (models.PreActBlock, TorchPreActBlock, 8, 8, 1),
    (models.PreActBlock, TorchPreActBlock, 8, 16, 2),
    (models.PreActBottleneck, TorchPreActBottleneck, 8, 4, 1),
    (models.PreActBottleneck, TorchPreActBottleneck, 16, 4, 2),
])
def test_preact_blocks_are_kuangliu_blocks(block, theirs, in_planes, planes, stride):
    assert_same_outputs(block(in_planes, planes, stride), theirs(in_planes, planes, stride), (2, in_planes, 6, 6),
                        seed=planes + stride, training=True)
