"""Whole-model agreement with torchvision: one forward and backward pass of resnet18, resnet50 and
resnext50_32x4d in float64, from identical weights, against tests/fixtures/models/{name}_{mode}.npz.

Both sides fill every state-dict entry, in state-dict order, with ``fill_value`` from one
``np.random.default_rng(2026)``, then draw the input and the target from the same generator
(tests/fixtures/make_model_fixtures.py made the fixtures; tests/fixtures/README.md describes them).
Compared: logits, loss, the norm and the first 8 values of every parameter's gradient, and, in training
mode, the running statistics after the step.

Evaluation mode runs far from normalised activations (the filled running statistics do not match them):
logits reach the thousands and gradient norms ~1e5, so every comparison is relative to the scale of the
compared quantity.
"""
import os

import numpy as np
import pytest

import minires
from minires import backend, models, nn

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "models")
SEED = 2026
RTOL = 1e-10         # float64 agrees to ~3e-13 through ~50 layers (summed in another order than PyTorch)


def fill_value(rng: np.random.Generator, key: str, shape: tuple):
    """The fixture script's rule, tried in this order (None: leave the entry as it is, draw nothing)."""
    if key.endswith("num_batches_tracked"):
        return None
    if key.endswith("running_var"):
        return rng.uniform(0.5, 1.5, size=shape)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    if key.endswith("weight"):
        return 1.0 + 0.1 * rng.standard_normal(shape)
    return 0.1 * rng.standard_normal(shape)


def filled_model(name: str):
    """The float64 model (10 classes) with the fixture's weights, and the fixture's input and target.
    Every state-dict entry is overwritten (num_batches_tracked with its initial 0), so the model's own
    initialisation does not matter."""
    model = getattr(models, name)(num_classes=10).to("float64")
    rng = np.random.default_rng(SEED)
    state = {}
    for key, value in model.state_dict().items():
        filled = fill_value(rng, key, tuple(value.shape))
        state[key] = value.numpy() if filled is None else filled
    model.load_state_dict(state)
    x = rng.standard_normal((2, 3, 64, 64))
    target = rng.integers(0, 10, size=2)
    return model, x, target


def assert_close(actual, expected, what: str, scale=None) -> None:
    """|actual - expected| <= RTOL * scale elementwise, scale defaulting to max |expected|."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.max(np.abs(expected)) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def check_against_fixture(name: str, mode: str, device: str = "cpu") -> None:
    data = np.load(os.path.join(FIXTURES, f"{name}_{mode}.npz"), allow_pickle=False)
    model, x, target = filled_model(name)
    np.testing.assert_array_equal(x, data["x"], err_msg="the fill rule drifted from the fixture's")
    np.testing.assert_array_equal(target, data["target"])
    model.to(device).train(mode == "train")

    logits = model(minires.tensor(x, device=device))
    loss = nn.CrossEntropyLoss()(logits, minires.tensor(target, device=device))      # torch: F.cross_entropy, mean
    loss.backward()

    assert logits.dtype == np.float64
    assert_close(logits.numpy(), data["logits"], "logits")
    assert_close(loss.item(), data["loss"], "loss")
    named = dict(model.named_parameters())
    assert sorted(named) == sorted(k[len("grad_norm/"):] for k in data.files if k.startswith("grad_norm/"))
    for key, param in named.items():
        grad = backend.to_numpy(param.grad).reshape(-1)
        norm = data[f"grad_norm/{key}"]
        assert_close(np.linalg.norm(grad), norm, f"gradient norm of {key}")
        sample = data[f"grad_sample/{key}"]
        assert_close(grad[:sample.size], sample, f"gradient sample of {key}", scale=max(norm, 1e-300))
    if mode == "train":
        state = model.state_dict()
        for key in (k[len("after_norm/"):] for k in data.files if k.startswith("after_norm/")):
            after = state[key].numpy().reshape(-1)
            assert_close(np.linalg.norm(after), data[f"after_norm/{key}"], f"norm of {key} after the step")
            assert_close(after[:8], data[f"after_sample/{key}"], f"{key} after the step",
                         scale=data[f"after_norm/{key}"])
            assert int(state[key.rsplit(".", 1)[0] + ".num_batches_tracked"].item()) == 1


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resnet18_agrees_with_torchvision(skip_initialisation, mode):
    check_against_fixture("resnet18", mode)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resnet50_agrees_with_torchvision(skip_initialisation, mode):
    check_against_fixture("resnet50", mode)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resnext50_32x4d_agrees_with_torchvision(skip_initialisation, mode):
    check_against_fixture("resnext50_32x4d", mode)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resnet18_agrees_with_torchvision_on_the_gpu(skip_initialisation, mode):
    if not minires.cuda_is_available():
        pytest.skip("CuPy with a CUDA device is not available on this machine")
    check_against_fixture("resnet18", mode, device="cuda")
