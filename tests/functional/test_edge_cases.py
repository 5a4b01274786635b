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
