"""Edge cases of pooling and batch norm, as PyTorch has them: an empty batch, NaN and infinity."""
import numpy as np
import pytest

import minires
import minires.functional as F

nan, inf = float("nan"), float("inf")


def _forward_backward(op, x):
    """op(x) and d(sum op(x))/dx, with the upstream gradient all ones."""
    xt = minires.tensor(x, requires_grad=True)
    y = op(xt)
    y.sum().backward()
    return y.numpy(), xt.grad.numpy()


@pytest.mark.parametrize("op, out_shape", [
    (lambda x: F.max_pool2d(x, 2), (0, 3, 2, 2)),
    (lambda x: F.max_pool2d(x, 3, stride=1, padding=1, dilation=1, ceil_mode=True), (0, 3, 4, 4)),
    (lambda x: F.avg_pool2d(x, 2, padding=1), (0, 3, 3, 3)),
    (lambda x: F.adaptive_avg_pool2d(x, 1), (0, 3, 1, 1)),
    (lambda x: F.adaptive_avg_pool2d(x, (3, 5)), (0, 3, 3, 5)),
    (lambda x: F.batch_norm(x, minires.zeros(3), minires.ones(3), training=False), (0, 3, 4, 4)),
])
def test_an_empty_batch_goes_forward_and_backward(op, out_shape):
    x = np.zeros((0, 3, 4, 4), np.float32)
    out, dx = _forward_backward(op, x)
    assert out.shape == out_shape and out.dtype == np.float32
    assert dx.shape == x.shape and dx.dtype == np.float32


def test_a_max_pool_window_holding_a_nan_sends_its_gradient_to_the_nan():
    # PyTorch's rule (`val > maxval || isnan(val)`): a window with a NaN outputs NaN, and its
    # gradient goes to its last NaN; infinity wins as a number does.
    x = np.array([[[[nan, 1.0, nan, 2.0],
                    [3.0, nan, 0.0, 0.0],
                    [0.0, inf, -inf, 5.0],
                    [1.0, 0.0, -inf, -inf]]]], np.float32)
    out, dx = _forward_backward(lambda t: F.max_pool2d(t, 2), x)
    np.testing.assert_array_equal(out, [[[[nan, nan], [inf, 5.0]]]])
    np.testing.assert_array_equal(dx, [[[[0, 0, 1, 0],
                                         [0, 1, 0, 0],
                                         [0, 1, 0, 1],
                                         [0, 0, 0, 0]]]])


def test_overlapping_max_pool_windows_send_each_nans_gradient_to_it():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = nan
    out, dx = _forward_backward(lambda t: F.max_pool2d(t, 3, stride=1, padding=1), x)
    expected_out = np.array([[nan, nan, nan, 7], [nan, nan, nan, 11], [nan, nan, nan, 15], [13, 14, 15, 15]])
    np.testing.assert_array_equal(out[0, 0], expected_out)
    expected_dx = np.array([[0, 0, 0, 0],               # PyTorch's: the nine windows that hold the NaN
                            [0, 9, 0, 1],               # send it nine; the others go to their maxima
                            [0, 0, 0, 1],
                            [0, 1, 1, 3]])
    np.testing.assert_array_equal(dx[0, 0], expected_dx)


# Bins of a (4, 5) input pooled to (3, 2): rows [0,2) [1,3) [2,4), columns [0,3) [2,5).
_ADAPTIVE_X = np.array([[[[1.0, 2.0, 3.0, 4.0, 5.0],
                          [6.0, nan, 8.0, 9.0, 10.0],
                          [11.0, 12.0, 13.0, inf, 15.0],
                          [16.0, 17.0, 18.0, 19.0, -inf]]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_avg_pool_sends_nan_and_inf_only_into_their_own_bins(dtype):
    xt = minires.tensor(_ADAPTIVE_X.astype(dtype), requires_grad=True)
    out = F.adaptive_avg_pool2d(xt, (3, 2))
    # torch 2.13, F.adaptive_avg_pool2d(x, (3, 2)): a matrix product would make every bin NaN
    np.testing.assert_array_equal(out.numpy(), [[[[nan, 6.5], [nan, inf], [14.5, nan]]]])
    dout = np.array([[[[1.0, 0.0], [inf, 0.0], [0.0, nan]]]], dtype)
    out.backward(minires.tensor(dout))
    sixth = dtype(1) / 6
    np.testing.assert_array_equal(xt.grad.numpy(), [[[[sixth, sixth, sixth, 0, 0],    # torch 2.13's x.grad
                                                      [inf, inf, inf, 0, 0],
                                                      [inf, inf, nan, nan, nan],
                                                      [0, 0, nan, nan, nan]]]])


def test_adaptive_avg_pool_bin_by_bin_agrees_with_the_matrix_products_outside_the_nans_bin():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    finite_out, finite_dx = _forward_backward(lambda t: F.adaptive_avg_pool2d(t, (4, 5)), x)
    x[:, :, 6, 5] = nan                                             # the corner: only in the last bin
    out, dx = _forward_backward(lambda t: F.adaptive_avg_pool2d(t, (4, 5)), x)
    assert np.isnan(out[:, :, 3, 4]).all()
    out[:, :, 3, 4] = finite_out[:, :, 3, 4]
    np.testing.assert_allclose(out, finite_out, rtol=1e-12)
    np.testing.assert_allclose(dx, finite_dx, rtol=1e-12)           # dout has no NaN: the same products


def test_global_adaptive_avg_pool_of_inf_and_minus_inf_is_nan_without_a_warning():
    out, dx = _forward_backward(lambda t: F.adaptive_avg_pool2d(t, 1), _ADAPTIVE_X)
    np.testing.assert_array_equal(out, [[[[nan]]]])                  # torch 2.13: nan
    np.testing.assert_array_equal(dx, np.full((1, 1, 4, 5), 1 / 20))


# Values 300..2600: their deviations from the channel mean reach ~1000, whose square overflows float16.
_BIG_HALF = (np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) * 100 + 300).astype(np.float16)


def test_float16_batch_norm_computes_its_statistics_in_float32_and_keeps_float16_buffers():
    bn = minires.nn.BatchNorm2d(3, dtype="float16")
    x = minires.tensor(_BIG_HALF, requires_grad=True)
    out = bn(x)
    assert out.dtype == np.float16 and bn.running_mean.dtype == np.float16   # as torch's BatchNorm2d(3).half()
    # torch 2.13: nn.BatchNorm2d(3).half()(x)
    np.testing.assert_array_equal(out.numpy()[0, 0], np.array([[-1.228515625, -1.0654296875],
                                                               [-0.9013671875, -0.7373046875]], np.float16))
    np.testing.assert_array_equal(out.numpy()[1, 2], np.array([[0.7373046875, 0.9013671875],
                                                               [1.0654296875, 1.228515625]], np.float16))
    np.testing.assert_array_equal(bn.running_mean.numpy(), np.array([105.0, 145.0, 185.0], np.float16))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.array([42560.0] * 3, np.float16))
    out.backward(minires.tensor(np.ones((2, 3, 2, 2), np.float16)))
    assert x.grad.dtype == np.float16 and np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), 0, atol=1e-3)                 # d(sum xhat)/dx = 0
    assert bn.weight.grad.dtype == np.float16
    np.testing.assert_array_equal(bn.bias.grad.numpy(), np.full(3, 8, np.float16))
    bn.eval()
    assert np.isfinite(bn(x).numpy()).all()


def test_float16_batch_norm_takes_float32_running_statistics_as_torch_does():
    running_mean, running_var = minires.zeros(3), minires.ones(3)            # float32
    out = F.batch_norm(minires.tensor(_BIG_HALF), running_mean, running_var, training=True)
    assert out.dtype == np.float16 and running_mean.dtype == np.float32
    # torch 2.13: F.batch_norm(x.half(), torch.zeros(3), torch.ones(3), training=True)
    np.testing.assert_array_equal(out.numpy()[0, 0], np.array([[-1.228515625, -1.0654296875],
                                                               [-0.9013671875, -0.7373046875]], np.float16))
    np.testing.assert_array_equal(running_mean.numpy(), np.array([105.0, 145.0, 185.0], np.float32))
    np.testing.assert_allclose(running_var.numpy(), [42572.328125] * 3, rtol=1e-6)


def test_avg_pool_propagates_nan_and_inf_as_torch_without_a_warning():
    x = np.array([[[[1.0, nan, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, inf, 12.0], [13.0, 14.0, 15.0, -inf]]]])
    xt = minires.tensor(x, requires_grad=True)
    out = F.avg_pool2d(xt, 2, stride=1)
    np.testing.assert_array_equal(out.numpy(), [[[[nan, nan, 5.5], [7.5, inf, inf], [11.5, inf, nan]]]])  # torch 2.13
    out.backward(minires.tensor(np.array([[[[1.0, 2.0, 3.0], [4.0, -inf, 6.0], [7.0, 8.0, inf]]]])))
    np.testing.assert_array_equal(xt.grad.numpy(), [[[[0.25, 0.75, 1.25, 0.75],       # torch 2.13's x.grad
                                                      [1.25, -inf, -inf, 2.25],
                                                      [2.75, -inf, nan, inf],
                                                      [1.75, 3.75, inf, inf]]]])


# (N=2, C=2, L=2): channel 0 holds a NaN, channel 1 an infinity; torch 2.13's values.
_BN_X = np.array([[[1.0, 2.0], [3.0, 4.0]], [[nan, 6.0], [inf, 8.0]]])
_BN_DOUT = np.array([[[1.0, nan], [1.0, 1.0]], [[1.0, 1.0], [inf, 1.0]]])


def _batch_norm_forward_backward(x, dout, training):
    running_mean, running_var = minires.zeros(2, dtype="float64"), minires.ones(2, dtype="float64")
    xt = minires.tensor(x, requires_grad=True)
    weight = minires.ones(2, dtype="float64", requires_grad=True)
    bias = minires.zeros(2, dtype="float64", requires_grad=True)
    out = F.batch_norm(xt, running_mean, running_var, weight, bias, training=training)
    out.backward(minires.tensor(dout))
    return (out.numpy(), xt.grad.numpy(), weight.grad.numpy(), bias.grad.numpy(),
            running_mean.numpy(), running_var.numpy())


def test_training_batch_norm_spreads_nan_over_the_channel_as_torch_does_without_a_warning():
    out, dx, dweight, dbias, running_mean, running_var = _batch_norm_forward_backward(_BN_X, _BN_DOUT, True)
    assert np.isnan(out).all() and np.isnan(dx).all() and np.isnan(dweight).all()
    np.testing.assert_array_equal(dbias, [nan, inf])
    np.testing.assert_array_equal(running_mean, [nan, inf])
    np.testing.assert_array_equal(running_var, [nan, nan])
    finite_x = np.arange(1.0, 9.0).reshape(2, 2, 2)                  # a NaN in dout alone
    out, dx, dweight, dbias, running_mean, running_var = _batch_norm_forward_backward(finite_x, _BN_DOUT, True)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(np.isnan(dx), [[[True, True], [True, True]], [[True, True], [True, False]]])
    assert dx[1, 1, 1] == -inf
    np.testing.assert_array_equal(dweight, [nan, inf])
    np.testing.assert_array_equal(dbias, [nan, inf])


def test_evaluation_batch_norm_keeps_nan_and_inf_where_they_are_as_torch_does():
    out, dx, dweight, dbias, running_mean, running_var = _batch_norm_forward_backward(_BN_X, _BN_DOUT, False)
    scale = 1 / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(out, _BN_X * scale)                    # nan and inf stay in their places
    np.testing.assert_allclose(dx, _BN_DOUT * scale)
    np.testing.assert_array_equal(dweight, [nan, inf])
    np.testing.assert_array_equal(dbias, [nan, inf])
    np.testing.assert_array_equal(running_mean, [0, 0])
    np.testing.assert_array_equal(running_var, [1, 1])


def test_an_infinite_upstream_gradient_reaches_only_the_max_pool_winner():
    x = minires.tensor(np.array([[[[1.0, 3.0], [2.0, 0.0]]]]), requires_grad=True)
    y = F.max_pool2d(x, 2)
    y.backward(minires.tensor(np.array([[[[np.inf]]]])))
    assert x.grad.numpy().ravel().tolist() == [0.0, np.inf, 0.0, 0.0]      # torch: the same, no NaN


def test_a_nan_upstream_gradient_changes_only_its_winners_gradient_in_overlapping_max_pools():
    """max pooling's backward multiplies dout by each offset's mask when dout is finite and selects with where()
    when it is not: the two give the same bits except at the NaN's own winner."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    dout = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    grads = []
    for nan_at in (None, (1, 2, 3, 4)):
        xt = minires.tensor(x, requires_grad=True)
        d = dout.copy()
        if nan_at:
            d[nan_at] = nan
        F.max_pool2d(xt, 3, stride=2, padding=1).backward(minires.tensor(d))
        grads.append(xt.grad.numpy())
    finite, with_nan = grads
    assert np.isnan(with_nan).sum() == 1 and np.isnan(with_nan[1, 2]).sum() == 1
    keep = ~np.isnan(with_nan)
    np.testing.assert_array_equal(with_nan[keep], finite[keep])


@pytest.mark.parametrize("kernel, stride, groups", [(3, 1, 1), (1, 1, 1), (1, 2, 1), (3, 2, 1), (3, 1, 3)])
def test_an_empty_batch_goes_through_conv2d_both_ways(kernel, stride, groups):
    x = minires.zeros(0, 3, 5, 5, requires_grad=True)
    w = minires.randn(6, 3 // groups, kernel, kernel, requires_grad=True)
    b = minires.randn(6, requires_grad=True)
    y = F.conv2d(x, w, b, stride=stride, padding=kernel // 2, groups=groups)
    y.backward(minires.zeros(*y.shape))
    assert y.shape[0] == 0 and x.grad.shape == x.shape
    assert w.grad.numpy().sum() == 0 and b.grad.numpy().sum() == 0      # torch: zero gradients, no error


def test_an_empty_batch_trains_batch_norm_as_pytorch_does():
    # torch 2.13: output empty, running statistics untouched, num_batches_tracked counts the batch
    from minires import nn
    x = minires.zeros(0, 3, 4, 4, requires_grad=True)
    bn = nn.BatchNorm2d(3)
    y = bn(x)
    y.backward(minires.zeros(0, 3, 4, 4))
    assert y.shape == (0, 3, 4, 4) and x.grad.shape == (0, 3, 4, 4)
    assert bn.running_mean.tolist() == [0.0] * 3 and bn.running_var.tolist() == [1.0] * 3
    assert bn.num_batches_tracked.item() == 1
    assert bn.weight.grad.tolist() == [0.0] * 3 and bn.bias.grad.tolist() == [0.0] * 3
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm2d(3)(minires.zeros(1, 3, 1, 1))                   # one value per channel still raises


def test_an_empty_batch_goes_through_a_whole_resnet_and_its_loss():
    model = minires.models.resnet20()
    images, labels = minires.zeros(0, 3, 8, 8), minires.zeros(0, dtype="int64")
    loss = F.cross_entropy(model(images), labels)
    assert np.isnan(loss.item())                                     # torch: the mean of nothing is NaN
    loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all() for p in model.parameters())
