"""The layers: each agrees with its functional operation, initialises as PyTorch does, and
takes PyTorch's constructor arguments."""
import math

import numpy as np
import pytest

import minires
from minires import backend, functional as F, nn
from minires.functional.conv import conv2d
from minires.functional.loss import cross_entropy
from minires.functional.adaptive_pool import adaptive_avg_pool2d
from minires.functional.pooling import avg_pool2d, max_pool2d
from minires.reference import conv2d as reference_conv2d


def randn(rng, *shape, device="cpu"):
    return minires.tensor(rng.standard_normal(shape).astype(np.float32), device=device)


def test_conv2d_agrees_with_the_functional_op_and_the_oracle(xp, device):
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2).to(device)
    x = randn(rng, 2, 4, 7, 8, device=device)
    out = conv(x)
    expected = conv2d(x, conv.weight, conv.bias, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    oracle = reference_conv2d(x.numpy(), conv.weight.numpy(), conv.bias.numpy(), stride=(2, 1), padding=(1, 0),
                              dilation=(1, 2), groups=2)
    np.testing.assert_allclose(out.numpy(), oracle, rtol=1e-4, atol=1e-5)
    assert out.dtype == np.float32 and out.device == backend.normalize_device(device)


def test_conv2d_shapes_attributes_and_errors():
    conv = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    assert conv.weight.shape == (64, 3, 7, 7) and conv.bias is None
    assert (conv.kernel_size, conv.stride, conv.padding, conv.dilation) == ((7, 7), (2, 2), (3, 3), (1, 1))
    assert list(conv.state_dict()) == ["weight"]
    assert nn.Conv2d(8, 16, 3, groups=4).weight.shape == (16, 2, 3, 3)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(6, 4, 3, groups=4)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, 2.5)


def test_conv2d_gradients_reach_its_parameters():
    rng = np.random.default_rng(1)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    out = conv(randn(rng, 2, 2, 4, 4))
    out.backward(rng.standard_normal(out.shape).astype(np.float32))
    assert conv.weight.grad.shape == (3, 2, 3, 3) and conv.bias.grad.shape == (3,)


def test_linear_agrees_with_the_functional_op(xp, device):
    rng = np.random.default_rng(2)
    fc = nn.Linear(5, 3).to(device)
    x = randn(rng, 4, 5, device=device)
    np.testing.assert_array_equal(fc(x).numpy(), F.linear(x, fc.weight, fc.bias).numpy())
    np.testing.assert_allclose(fc(x).numpy(), x.numpy() @ fc.weight.numpy().T + fc.bias.numpy(), rtol=1e-6)
    assert nn.Linear(5, 3, bias=False).to(device)(x).shape == (4, 3)


@pytest.mark.parametrize("make, fan_in", [(lambda: nn.Conv2d(6, 8, 3, groups=2), 3 * 9),
                                          (lambda: nn.Linear(40, 30), 40)])
def test_default_init_is_pytorchs(make, fan_in):
    minires.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)                 # kaiming_uniform_(a=sqrt(5)) and the bias rule agree
    for p in (layer.weight, layer.bias):
        values = p.numpy()
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.5 * bound
    w = layer.weight.numpy()
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound    # U(-b, b) has std b / sqrt(3)


def test_manual_seed_makes_models_reproducible():
    def build():
        minires.manual_seed(42)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))

    a, b = build(), build()
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=key)
    assert not np.array_equal(a[0].weight.numpy(), nn.Conv2d(3, 4, 3).weight.numpy())


def test_constructors_take_device_and_dtype(xp, device):
    for layer in (nn.Conv2d(2, 3, 3, device=device, dtype="float64"), nn.Linear(2, 3, device=device,
                  dtype=np.float64), nn.BatchNorm2d(3, device=device, dtype=minires.float64)):
        for p in layer.parameters():
            assert p.dtype == np.float64 and p.device == backend.normalize_device(device)
    bn = nn.BatchNorm1d(3, device=device)
    assert bn.num_batches_tracked.device == backend.normalize_device(device)
    with pytest.raises(TypeError, match="floating-point"):
        nn.Linear(2, 3, dtype="int64")


@pytest.mark.parametrize("layers, expected", [
    (lambda: nn.Conv2d(3, 64, 7, 2, 3, bias=False), 9408),
    (lambda: nn.BatchNorm2d(64), 128),
    (lambda: nn.Linear(512, 1000), 513000),
    (lambda: nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()), 36992),
])
def test_parameter_counts(layers, expected):
    assert sum(p.numel() for p in layers().parameters()) == expected


def test_pooling_layers_agree_with_their_functional_ops(xp, device):
    rng = np.random.default_rng(3)
    x = randn(rng, 2, 3, 9, 9, device=device)
    pool = nn.MaxPool2d(3, 2, 1)
    assert pool.stride == 2
    np.testing.assert_array_equal(pool(x).numpy(), max_pool2d(x, 3, 2, 1).numpy())
    np.testing.assert_array_equal(nn.MaxPool2d(2, ceil_mode=True)(x).numpy(),
                                  max_pool2d(x, 2, 2, ceil_mode=True).numpy())
    avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(avg(x).numpy(), avg_pool2d(x, 3, 2, 1, count_include_pad=False).numpy())
    assert nn.AvgPool2d(2).stride == 2
    np.testing.assert_array_equal(nn.AdaptiveAvgPool2d((1, 1))(x).numpy(), adaptive_avg_pool2d(x, 1).numpy())
    assert nn.AdaptiveAvgPool2d((2, 3))(x).shape == (2, 3, 2, 3)


def test_relu_never_mutates_its_input_even_with_inplace():
    x = minires.tensor([[-1.0, 0.0, 2.0]])
    before = x.numpy().copy()
    for relu in (nn.ReLU(), nn.ReLU(inplace=True)):
        np.testing.assert_array_equal(relu(x).numpy(), [[0.0, 0.0, 2.0]])
        np.testing.assert_array_equal(x.numpy(), before)
    assert nn.ReLU(inplace=True).inplace


def test_flatten_and_identity():
    x = minires.zeros(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(2)(x).shape == (2, 3, 20)
    assert nn.Identity()(x) is x


def test_cross_entropy_loss_agrees_with_the_functional_op():
    rng = np.random.default_rng(4)
    logits = minires.tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=True)
    target = minires.tensor(np.array([0, 3, 1, 1, 2]))
    for kwargs in ({}, {"reduction": "sum"}, {"reduction": "none"}, {"label_smoothing": 0.1}):
        np.testing.assert_array_equal(nn.CrossEntropyLoss(**kwargs)(logits, target).numpy(),
                                      cross_entropy(logits, target, **kwargs).numpy())
    loss = nn.CrossEntropyLoss()(logits, target)
    loss.backward()
    assert loss.shape == () and logits.grad.shape == (5, 4)
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")(logits, target)
