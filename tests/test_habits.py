"""PyTorch's signatures and habits: code written for PyTorch runs unchanged on minires (issue 8)."""
import warnings

import numpy as np
import pytest

import minires
from minires import backend
from minires.functional.loss import cross_entropy, log_softmax, nll_loss
from minires.testing import gradcheck


def on(device: str, array, requires_grad: bool = False, dtype=None) -> minires.Tensor:
    return minires.tensor(backend.to_device(np.asarray(array, dtype=dtype), device), requires_grad=requires_grad)


# ---------------------------------------------------------------------------- backward(gradient=...)

def test_backward_takes_pytorchs_gradient_keyword(device):
    x = on(device, [1.0, 2.0, 3.0], requires_grad=True)
    (x * x).backward(gradient=on(device, [1.0, 0.5, 0.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 0.0])
    y = on(device, [1.0, 2.0], requires_grad=True)
    (y * 3).backward(grad=on(device, [1.0, 1.0]))          # minires' older name keeps working
    np.testing.assert_allclose(y.grad.numpy(), [3.0, 3.0])
    with pytest.raises(TypeError, match="both gradient= and grad="):
        (y * 3).backward(gradient=[1.0, 1.0], grad=[1.0, 1.0])


def test_backward_puts_a_python_gradient_on_the_tensors_device(device):
    x = on(device, [1.0, 2.0], requires_grad=True)
    (x * 2).backward([1.0, 10.0])                           # a list, as torch takes it
    assert x.grad.device == x.device
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 20.0])
    s = on(device, 3.0, requires_grad=True)
    (s * s).backward(2.0)
    np.testing.assert_allclose(s.grad.numpy(), 12.0)


# ---------------------------------------------------------------------------- cross_entropy, nll_loss

def test_ignore_index_is_left_out_of_the_loss_and_the_mean(device):
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
    x = on(device, logits, requires_grad=True)
    loss = cross_entropy(x, on(device, [0, -100, 2]))
    np.testing.assert_allclose(float(loss), -(np.log(0.5) + np.log(0.6)) / 2)    # 2 targets count, not 3
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy()[1], 0.0)
    np.testing.assert_allclose(float(nll_loss(on(device, logits), on(device, [1, 1, 2]), ignore_index=1)),
                               -np.log(0.6))
    none = cross_entropy(on(device, logits), on(device, [0, -100, 2]), reduction="none").numpy()
    np.testing.assert_allclose(none, [-np.log(0.5), 0.0, -np.log(0.6)])


def test_class_weights_give_pytorchs_weighted_mean(device):
    logits = np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]))
    w = [2.0, 1.0]
    loss = nll_loss(on(device, logits), on(device, [0, 1, 0]), on(device, w))
    expected = -(2 * np.log(0.5) + np.log(0.75) + 2 * np.log(0.9)) / (2 + 1 + 2)
    np.testing.assert_allclose(float(loss), expected)
    np.testing.assert_allclose(float(cross_entropy(on(device, logits), on(device, [0, 1, 0]), w)), expected)


def test_class_probability_targets(device):
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    expected = -(0.5 * np.log(0.5) + 0.5 * np.log(0.25) + np.log(0.1)) / 2
    np.testing.assert_allclose(float(cross_entropy(on(device, logits), on(device, q))), expected)
    with pytest.raises(ValueError, match="ignore_index=1 with class probabilities"):
        cross_entropy(on(device, logits), on(device, q), ignore_index=1)


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_weighted_ignored_and_smoothed_cross_entropy_has_right_gradients(device, probabilities, reduction,
                                                                         smoothing):
    rng = np.random.default_rng(3)
    x = on(device, rng.standard_normal((4, 3, 2)), requires_grad=True)
    w = on(device, [0.5, 2.0, 1.0])
    if probabilities:
        t = on(device, rng.dirichlet(np.ones(3), size=(4, 2)).transpose(0, 2, 1))
    else:
        t = on(device, [[0, 1], [-100, 2], [1, 1], [2, -100]])
    gradcheck(lambda z: cross_entropy(z, t, w, reduction=reduction, label_smoothing=smoothing), x)
    if not probabilities:
        gradcheck(lambda z: nll_loss(log_softmax(z, dim=1), t, w, reduction=reduction), x)


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_pytorch(probabilities, smoothing, weighted):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((5, 4, 3))
    target = rng.dirichlet(np.ones(4), size=(5, 3)).transpose(0, 2, 1) if probabilities \
        else np.where(rng.random((5, 3)) < 0.3, -100, rng.integers(0, 4, size=(5, 3)))
    weight = rng.random(4) + 0.5 if weighted else None
    for reduction in ["mean", "sum", "none"]:
        x = minires.tensor(logits, requires_grad=True)
        loss = cross_entropy(x, minires.tensor(target), None if weight is None else minires.tensor(weight),
                             reduction=reduction, label_smoothing=smoothing)
        loss.sum().backward()
        tx = torch.tensor(logits, requires_grad=True)
        tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(target),
                                                  None if weight is None else torch.tensor(weight),
                                                  reduction=reduction, label_smoothing=smoothing)
        tloss.sum().backward()
        np.testing.assert_allclose(loss.numpy(), tloss.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cross_entropy_loss_layer_takes_pytorchs_arguments():
    logits = np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]))
    criterion = minires.nn.CrossEntropyLoss(weight=minires.tensor([2.0, 1.0]), ignore_index=1)
    np.testing.assert_allclose(float(criterion(minires.tensor(logits), [0, 1, 0])),
                               -(np.log(0.5) + np.log(0.9)) / 2)


# ---------------------------------------------------------------------------- Module.to, old state dicts

@pytest.mark.parametrize("name", ["gpu", "mps", "tpu:0"])
def test_module_to_an_unknown_device_lists_the_devices(name):
    with pytest.raises(ValueError, match=r"neither a device nor a dtype.*devices here are cpu"):
        minires.nn.Linear(2, 2).to(name)
    layer = minires.nn.Linear(2, 2).to("float64")                 # a dtype name still works
    assert layer.weight.dtype == np.float64


def test_batch_norm_state_dict_without_num_batches_tracked_loads():
    old = minires.nn.BatchNorm2d(3)
    old.running_mean.data[...] = 0.5
    old.num_batches_tracked.data[...] = 7
    state = {k: v for k, v in old.state_dict().items() if not k.endswith("num_batches_tracked")}
    model = minires.nn.Sequential(minires.nn.BatchNorm2d(3))
    model[0].num_batches_tracked.data[...] = 4
    model.load_state_dict({f"0.{k}": v for k, v in state.items()})
    np.testing.assert_array_equal(model[0].running_mean.numpy(), 0.5)
    assert int(model[0].num_batches_tracked.item()) == 0           # PyTorch fills the count with 0
    result = model.load_state_dict({"0.weight": state["weight"]}, strict=False)   # only what is missing
    assert "0.num_batches_tracked" not in result.missing_keys and "0.bias" in result.missing_keys


# ---------------------------------------------------------------------------- conv2d padding="same", NumPy ints

@pytest.mark.parametrize("kernel, dilation", [((3, 3), 1), ((2, 4), 1), ((2, 3), (2, 1)), ((1, 1), 1)])
def test_conv2d_same_padding_keeps_the_size_and_pads_the_odd_pixel_after(device, kernel, dilation):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3) + kernel)
    out = minires.functional.conv2d(on(device, x), on(device, w), padding="same", dilation=dilation)
    assert out.shape == (2, 4, 5, 6)
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    total = [di * (k - 1) for k, di in zip(kernel, d)]           # PyTorch: left = total // 2, right the rest
    xp_ = np.pad(x, ((0, 0), (0, 0), (total[0] // 2, total[0] - total[0] // 2),
                     (total[1] // 2, total[1] - total[1] // 2)))
    expected = minires.functional.conv2d(on(device, xp_), on(device, w), dilation=dilation)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12)
    xg = on(device, x, requires_grad=True)
    gradcheck(lambda z: minires.functional.conv2d(z, on(device, w), padding="same", dilation=dilation), xg)


def test_conv2d_same_matches_pytorch_for_an_even_kernel():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((3, 2, 2, 4))
    out = minires.functional.conv2d(minires.tensor(x), minires.tensor(w), padding="same")
    with warnings.catch_warnings():                              # torch warns of its padded copy
        warnings.simplefilter("ignore")
        ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same")
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)


def test_conv2d_valid_and_the_errors_of_string_padding():
    x, w = minires.tensor(np.ones((1, 1, 5, 5), np.float32)), minires.tensor(np.ones((1, 1, 3, 3), np.float32))
    assert minires.functional.conv2d(x, w, padding="valid").shape == (1, 1, 3, 3)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        minires.functional.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="'valid' or 'same', got 'full'"):
        minires.functional.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        minires.nn.Conv2d(1, 1, 3, stride=2, padding="same")
    layer = minires.nn.Conv2d(1, 2, 4, padding="same")
    assert layer(x).shape == (1, 2, 5, 5)


def test_geometry_arguments_accept_numpy_integers():
    i = np.int64
    x = minires.tensor(np.ones((1, 4, 8, 8), np.float32))
    layer = minires.nn.Conv2d(i(4), i(4), i(3), stride=i(2), padding=(i(1), np.int32(1)), dilation=i(1),
                              groups=i(2))
    assert layer(x).shape == (1, 4, 4, 4) and layer.kernel_size == (3, 3)
    F = minires.functional
    assert F.conv2d(x, layer.weight, None, i(1), i(1), i(1), i(2)).shape == (1, 4, 8, 8)
    assert F.max_pool2d(x, i(2), i(2), i(0)).shape == (1, 4, 4, 4)
    assert F.avg_pool2d(x, (i(2), i(2)), divisor_override=i(2)).shape == (1, 4, 4, 4)
    assert F.adaptive_avg_pool2d(x, i(3)).shape == (1, 4, 3, 3)
    assert minires.nn.MaxPool2d(i(2))(x).shape == (1, 4, 4, 4)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        F.max_pool2d(x, np.bool_(True))


# ---------------------------------------------------------------------------- dim checked as PyTorch checks it

DIM_OPS = {
    "sum": lambda x, d: x.sum(dim=d),
    "mean": lambda x, d: x.mean(dim=d),
    "max": lambda x, d: x.max(dim=d),
    "flatten start": lambda x, d: x.flatten(d),
    "flatten end": lambda x, d: minires.functional.flatten(x, 0, d),
    "transpose": lambda x, d: x.transpose(0, d),
    "permute": lambda x, d: x.permute(0, d),
    "log_softmax": lambda x, d: log_softmax(x, dim=d),
}


@pytest.mark.parametrize("op", sorted(DIM_OPS))
@pytest.mark.parametrize("dim", [2, -3, 7])
def test_a_dim_out_of_range_is_pytorchs_index_error(op, dim):
    x = minires.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(IndexError, match=rf"^Dimension out of range \(expected to be in range of \[-2, 1\], "
                                         rf"but got {dim}\)$"):
        DIM_OPS[op](x, dim)


def test_a_repeated_dim_is_refused_not_reduced_once():
    x = minires.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"dim 0 appears multiple times in the list of dims \(0, -2\)"):
        x.sum(dim=(0, -2))
    with pytest.raises(ValueError, match="permute needs each of the 2 dimensions once"):
        x.permute(0, 0)
    scalar = minires.tensor(np.float32(3.0))                          # a 0-d tensor takes dim 0 and -1
    assert scalar.sum(dim=0).shape == () and scalar.flatten(0).shape == (1,)
    with pytest.raises(IndexError, match=r"range of \[-1, 0\], but got 1"):
        scalar.sum(dim=1)
    np.testing.assert_array_equal(minires.functional.max(scalar, 0).values.numpy(), 3.0)


def test_the_tensor_methods_and_top_level_functions_pytorch_code_calls():
    x = minires.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    y = minires.cat([x.clamp(-1, 1), x.pow(2), x.where(x > 0, 0.0), minires.sigmoid(x), minires.tanh(x).abs()])
    y.backward(minires.ones(15))
    s = 1 / (1 + np.exp(-x.numpy()))
    t = np.tanh(x.numpy())
    expected = (np.abs(x.numpy()) <= 1) + 2 * x.numpy() + (x.numpy() > 0) + s * (1 - s) + np.sign(t) * (1 - t ** 2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6, err_msg="gradient of x")
    assert minires.stack([x, x], dim=1).shape == (3, 2)
    assert minires.where(x > 0, x, 0.0).tolist() == [0.0, 0.5, 3.0]
    assert minires.softmax(x, dim=0).sum().item() == pytest.approx(1.0)
