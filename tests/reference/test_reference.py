"""The oracles against facts computed by hand, and (where torch is installed) against PyTorch."""

import math

import numpy as np
import pytest

from minires.reference import (
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    cross_entropy,
    log_softmax,
    max_pool2d,
    max_pool2d_backward,
)

X33 = np.arange(9.0).reshape(1, 1, 3, 3)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


# ---------------------------------------------------------------- conv2d, by hand

def test_conv_2x2_kernel_on_3x3_by_hand():
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    # out[0, 0] = 0*1 + 1*2 + 3*3 + 4*4 = 27, and so on, plus the bias 1
    np.testing.assert_array_equal(conv2d(X33, w, bias=[1.0])[0, 0], [[28, 38], [58, 68]])


def test_conv_padding_stride_dilation_by_hand():
    ones3 = np.ones((1, 1, 3, 3))
    # zero padding 1, stride 2: each output sums the 2x2 corner block of real pixels
    np.testing.assert_array_equal(conv2d(X33, ones3, stride=2, padding=1)[0, 0], [[8, 12], [20, 24]])
    # dilation 2: a 2x2 kernel touches the four corners
    np.testing.assert_array_equal(conv2d(X33, np.ones((1, 1, 2, 2)), dilation=2)[0, 0], [[16]])
    # floor((H + 2p - d(k-1) - 1) / s) + 1: H = floor((7 + 2 - 4 - 1) / 2) + 1 = 3, W = (9 + 2 - 4 - 1) + 1 = 7
    out = conv2d(np.zeros((2, 3, 7, 9)), np.zeros((4, 3, 3, 3)), stride=(2, 1), padding=1, dilation=2)
    assert out.shape == (2, 4, 3, 7)


def test_conv_groups_do_not_mix_channels():
    x = np.stack([X33[0, 0], 10 * X33[0, 0]])[None]  # (1, 2, 3, 3)
    w = np.array([2.0, 3.0]).reshape(2, 1, 1, 1)
    out = conv2d(x, w, groups=2)
    np.testing.assert_array_equal(out[0, 0], 2 * X33[0, 0])
    np.testing.assert_array_equal(out[0, 1], 30 * X33[0, 0])


def test_conv_errors_say_what_is_expected():
    with pytest.raises(ValueError, match="groups"):
        conv2d(np.zeros((1, 3, 4, 4)), np.zeros((2, 3, 1, 1)), groups=2)
    with pytest.raises(ValueError, match="empty"):
        conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="pair"):
        conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), stride=(1, 1, 1))


# ---------------------------------------------------------------- pooling, by hand

def test_max_pool_gradient_goes_to_the_first_maximum_and_accumulates():
    x = np.array([[1.0, 3, 3], [3, 2, 0], [0, 3, 1]]).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(max_pool2d(x, 2, stride=1)[0, 0], [[3, 3], [3, 3]])
    dout = np.array([[1.0, 10], [100, 1000]]).reshape(1, 1, 2, 2)
    # windows (0,0) and (0,1) both pick (0,1) (the first 3 in row-major order); (1,0) picks (1,0)
    # although (2,1) ties with it; (1,1) picks (2,1)
    dx = max_pool2d_backward(x, dout, 2, stride=1)
    np.testing.assert_array_equal(dx[0, 0], [[0, 11, 0], [100, 0, 0], [0, 1000, 0]])
    # an all-equal window sends everything to its top-left element
    np.testing.assert_array_equal(max_pool2d_backward(np.full((1, 1, 2, 2), 5.0), np.ones((1, 1, 1, 1)), 2)[0, 0],
                                  [[1, 0], [0, 0]])


def test_max_pool_pads_with_minus_infinity():
    x = -1.0 - np.arange(9.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    out = max_pool2d(x, 3, stride=1, padding=1)[0, 0]
    np.testing.assert_array_equal(out, [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])


def test_max_pool_never_sends_gradient_to_padding_even_for_minus_infinity_inputs():
    # every window of an all -inf input ties with its padding; the gradient goes to the window's
    # first REAL element (as in PyTorch), so the 9 windows of k=2, s=1, p=1 over a 2x2 input give
    # (0,0) <- 0+1+3+4, (0,1) <- 2+5, (1,0) <- 6+7, (1,1) <- 8
    x = np.full((1, 1, 2, 2), -np.inf)
    dx = max_pool2d_backward(x, np.arange(9.0).reshape(1, 1, 3, 3), 2, stride=1, padding=1)
    np.testing.assert_array_equal(dx[0, 0], [[8, 7], [13, 8]])


def test_pool_output_size_ceil_mode_rules():
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    assert max_pool2d(x, 2).shape[2:] == (2, 2)  # floor
    out = max_pool2d(x, 2, ceil_mode=True)  # ceil: a last, partial 1x1 window
    assert out.shape[2:] == (3, 3) and out[0, 0, 2, 2] == 24
    # H=5, k=2, s=3, p=1: ceil gives 3, but window 3 would start at 2*3 = 6 >= H + p: dropped
    assert max_pool2d(x, 2, stride=3, padding=1, ceil_mode=True).shape[2:] == (2, 2)
    with pytest.raises(ValueError, match="half of kernel size"):
        max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="half of kernel size"):
        avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="half of kernel size"):  # the limit ignores dilation
        max_pool2d(np.zeros((1, 1, 20, 20)), 3, padding=2, dilation=3)


def test_avg_pool_divisors_at_a_ceil_mode_border():
    # H=W=4, k=3, s=2, p=1, ceil_mode: three windows per axis, in real rows [-1, 2), [1, 4), [3, 6).
    # Clipped to the padded input [-1, 5) they hold 3, 3, 2 positions; clipped to the real input 2, 3, 1.
    ones = np.ones((1, 1, 4, 4))
    with_pad = avg_pool2d(ones, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)[0, 0]
    real, padded = np.array([2, 3, 1]), np.array([3, 3, 2])
    np.testing.assert_allclose(with_pad, np.outer(real, real) / np.outer(padded, padded))
    assert with_pad[2, 2] == 1 / 4  # divisor 2*2: padding counts, the overhang past it does not
    without_pad = avg_pool2d(ones, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)[0, 0]
    np.testing.assert_array_equal(without_pad, np.ones((3, 3)))
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    assert avg_pool2d(x, 3, 2, 1, ceil_mode=True)[0, 0, 2, 2] == 15 / 4
    assert avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)[0, 0, 2, 2] == 15


def test_adaptive_bins_overlap_and_upsample():
    x = np.arange(1.0, 6.0).reshape(1, 1, 5, 1)
    # H=5, out=3: rows [0, 2), [1, 4), [3, 5); rows 1 and 3 are shared
    np.testing.assert_allclose(adaptive_avg_pool2d(x, (3, None))[0, :, :, 0], [[1.5, 3.0, 4.5]])
    # H=2, out=3: rows [0, 1), [0, 2), [1, 2)
    np.testing.assert_allclose(adaptive_avg_pool2d([[[[1.0], [3.0]]]], (3, 1))[0, 0, :, 0], [1, 2, 3])
    np.testing.assert_allclose(adaptive_avg_pool2d(X33, 1)[0, 0], [[4.0]])  # global average


# ---------------------------------------------------------------- batch norm, by hand

def test_batch_norm_training_normalises_biased_and_tracks_unbiased():
    x = np.array([[1.0], [2.0], [6.0]])  # mean 3, biased var 14/3, unbiased var 7
    rm, rv = np.array([0.0]), np.array([1.0])
    out, new_rm, new_rv = batch_norm(x, rm, rv, weight=[2.0], bias=[0.5], training=True)
    np.testing.assert_allclose(out[:, 0], 2 * (x[:, 0] - 3) / np.sqrt(14 / 3 + 1e-5) + 0.5)
    np.testing.assert_allclose(new_rm, [0.9 * 0 + 0.1 * 3])
    np.testing.assert_allclose(new_rv, [0.9 * 1 + 0.1 * 7])
    assert rm[0] == 0 and rv[0] == 1  # pure: the arguments are untouched


def test_batch_norm_momentum_none_is_a_cumulative_average():
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(4, 2, 3, 3)) for _ in range(3)]
    rm, rv = np.zeros(2), np.ones(2)
    for step, b in enumerate(batches):  # step = num_batches_tracked before this batch
        _, rm, rv = batch_norm(b, rm, rv, training=True, momentum=None, num_batches_tracked=step)
    np.testing.assert_allclose(rm, np.mean([b.mean(axis=(0, 2, 3)) for b in batches], axis=0))
    np.testing.assert_allclose(rv, np.mean([b.var(axis=(0, 2, 3), ddof=1) for b in batches], axis=0))
    # factor 1 / (3 + 1) after three tracked batches
    _, rm, _ = batch_norm([[1.0], [5.0]], [1.0], [1.0], training=True, momentum=None, num_batches_tracked=3)
    np.testing.assert_allclose(rm, [0.75 * 1 + 0.25 * 3])


def test_batch_norm_eval_uses_running_stats_and_returns_copies():
    x = np.arange(8.0).reshape(2, 2, 2, 1)
    rm, rv = np.array([1.0, -1.0]), np.array([4.0, 0.25])
    out, new_rm, new_rv = batch_norm(x, rm, rv, eps=0.0)
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 1) / 2)
    np.testing.assert_allclose(out[:, 1], (x[:, 1] + 1) / 0.5)
    np.testing.assert_array_equal(new_rm, rm)
    assert new_rm is not rm and new_rv is not rv
    with pytest.raises(ValueError, match="evaluation mode needs running_mean"):
        batch_norm(x, None, None)


def test_batch_norm_single_value_per_channel_raises_in_training_only():
    message = r"Expected more than 1 value per channel when training, got input size \(1, 3\)"
    with pytest.raises(ValueError, match=message):
        batch_norm(np.ones((1, 3)), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm(np.ones((1, 3, 1, 1)), np.zeros(3), np.ones(3), training=True)
    batch_norm(np.ones((1, 3, 2, 1)), np.zeros(3), np.ones(3), training=True)  # two values: fine
    batch_norm(np.ones((1, 3)), np.zeros(3), np.ones(3), training=False)  # evaluation: fine


# ---------------------------------------------------------------- loss, by hand

def test_cross_entropy_by_hand():
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    logits, target = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [2, 1]
    np.testing.assert_allclose(cross_entropy(logits, target, reduction="none"), [lse - 3, lse - 2])
    np.testing.assert_allclose(cross_entropy(logits, target), lse - 2.5)
    np.testing.assert_allclose(cross_entropy(logits, target, reduction="sum"), 2 * lse - 5)
    # ls = 0.1: 0.9 * (lse - x_t) + 0.1 * mean_c(lse - x_c), and mean_c x_c = 2
    np.testing.assert_allclose(cross_entropy(logits[:1], [2], label_smoothing=0.1), lse - 0.9 * 3 - 0.1 * 2)


def test_cross_entropy_spatial_targets_and_errors():
    logits = np.zeros((2, 4, 3))  # (N, C, d1): uniform predictions cost log(4) everywhere
    target = np.array([[0, 1, 2], [3, 3, 0]])
    np.testing.assert_allclose(cross_entropy(logits, target, reduction="none"), np.full((2, 3), math.log(4)))
    with pytest.raises(ValueError, match=r"targets in \[0, 4\)"):
        cross_entropy(logits, target + 1)
    with pytest.raises(ValueError, match="integer class indices"):
        cross_entropy(logits, target.astype(float))
    with pytest.raises(ValueError, match="target of shape"):
        cross_entropy(logits, target[:, :2])


def test_log_softmax_is_stable():
    np.testing.assert_allclose(log_softmax([[1000.0, 0.0]]), [[0.0, -1000.0]])
    np.testing.assert_allclose(np.exp(log_softmax([[1.0, 2.0], [3.0, 5.0]], dim=0)).sum(axis=0), [1, 1])


# ---------------------------------------------------------------- against PyTorch, where installed

@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), ((2, 1), (1, 2), (2, 1), 2), (1, 2, 2, 4), (3, (0, 1), 1, 1),
])
def test_conv_agrees_with_torch(stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(2, 4, 7, 6)), rng.normal(size=(8, 4 // groups, 3, 2)), rng.normal(size=8)
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b),
                                          stride, padding, dilation, groups).numpy()
    out = conv2d(x, w, b, stride, padding, dilation, groups)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


POOL_CONFIGS = [  # (H, W, kernel_size, stride, padding, dilation, ceil_mode)
    (6, 6, 2, None, 0, 1, False),
    (7, 5, 3, 2, 1, 1, True),  # ceil_mode with padding: partial last windows
    (5, 5, 2, 3, 1, 1, True),  # ceil_mode drops a window that would start in the padding
    (8, 7, (3, 2), (2, 1), (1, 0), (2, 1), True),
    (9, 9, 3, 2, 1, 2, False),
]


@pytest.mark.parametrize("H, W, k, s, p, d, ceil_mode", POOL_CONFIGS)
def test_max_pool_and_its_backward_agree_with_torch(H, W, k, s, p, d, ceil_mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    for x in (rng.normal(size=(2, 3, H, W)), rng.integers(0, 3, size=(2, 3, H, W)).astype(float)):  # ties too
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.max_pool2d(xt, k, s, p, d, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(max_pool2d(x, k, s, p, d, ceil_mode), yt.detach().numpy())
        dout = rng.normal(size=tuple(yt.shape))
        yt.backward(torch.tensor(dout))
        dx = max_pool2d_backward(x, dout, k, s, p, d, ceil_mode)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("H, W, k, s, p, d, ceil_mode", [c for c in POOL_CONFIGS if c[5] == 1])
def test_avg_pool_agrees_with_torch(H, W, k, s, p, d, ceil_mode, count_include_pad):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=(2, 3, H, W))
    expected = torch.nn.functional.avg_pool2d(torch.tensor(x), k, s, p, ceil_mode, count_include_pad)
    out = avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H, W, output_size", [(5, 5, 3), (7, 4, (3, 6)), (6, 9, (None, 4)), (3, 3, 1), (2, 5, (5, 2))])
def test_adaptive_avg_pool_agrees_with_torch(H, W, output_size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).normal(size=(2, 3, H, W))
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), output_size)
    np.testing.assert_allclose(adaptive_avg_pool2d(x, output_size), expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2, 5)])
@pytest.mark.parametrize("training, momentum", [(True, 0.1), (True, 0.3), (True, None), (False, 0.1)])
def test_batch_norm_agrees_with_torch(shape, training, momentum):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, gamma, beta = rng.normal(2, 3, size=shape), rng.normal(size=3), rng.normal(size=3)
    rm, rv = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(3, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
        bn.running_mean.copy_(torch.tensor(rm))
        bn.running_var.copy_(torch.tensor(rv))
        bn.num_batches_tracked.fill_(4)  # torch counts this batch first, then uses 1 / 5 when momentum is None
        expected = bn.train(training)(torch.tensor(x))
    out, new_rm, new_rv = batch_norm(x, rm, rv, gamma, beta, training, momentum, num_batches_tracked=4)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new_rm, bn.running_mean.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new_rv, bn.running_var.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 2, 3)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_and_log_softmax_agree_with_torch(shape, reduction, label_smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    logits = 3 * rng.normal(size=shape)
    target = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(target), reduction=reduction,
                                                 label_smoothing=label_smoothing)
    out = cross_entropy(logits, target, reduction, label_smoothing)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-12, atol=1e-12)
    expected = torch.nn.functional.log_softmax(torch.tensor(logits), dim=1)
    np.testing.assert_allclose(log_softmax(logits, dim=1), expected.numpy(), rtol=1e-12, atol=1e-12)
