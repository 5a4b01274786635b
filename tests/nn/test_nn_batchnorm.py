"""BatchNorm2d / BatchNorm1d as modules: buffers, the running update, num_batches_tracked,
momentum=None, evaluation mode (by .eval(), never by no_grad), and PyTorch's reference outputs."""
import json
from pathlib import Path

import numpy as np
import pytest

import minires
from minires import backend, nn
from minires.reference import batch_norm as reference_batch_norm

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "batch_norm.npz"


def batch(rng, shape, device):
    return minires.tensor(rng.standard_normal(shape) * 2 + 0.5, device=device)


def test_parameters_buffers_and_initial_values():
    bn = nn.BatchNorm2d(3)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.numpy(), 1)
    np.testing.assert_array_equal(bn.bias.numpy(), 0)
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0, err_msg="batch norm's running_mean")
    np.testing.assert_array_equal(bn.running_var.numpy(), 1, err_msg="batch norm's running_var")
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    assert int(bn.num_batches_tracked) == 0
    assert not bn.running_mean.requires_grad
    assert nn.BatchNorm2d(3, dtype="float64").running_var.dtype == np.float64


def test_affine_bias_and_tracking_switches():
    assert list(nn.BatchNorm2d(3, affine=False).state_dict()) == ["running_mean", "running_var",
                                                                  "num_batches_tracked"]
    no_beta = nn.BatchNorm2d(3, bias=False)
    assert no_beta.bias is None and [n for n, _ in no_beta.named_parameters()] == ["weight"]
    untracked = nn.BatchNorm2d(3, track_running_stats=False)
    assert list(untracked.state_dict()) == ["weight", "bias"] and untracked.running_mean is None


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_running_update_over_several_batches_matches_the_oracle(xp, device, momentum):
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm2d(3, momentum=momentum).to(device).to("float64")
    mean, var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = batch(rng, (4, 3, 5, 5), device).to("float64")
        out = bn(x)
        expected, mean, var = reference_batch_norm(x.numpy(), mean, var, training=True, momentum=momentum)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(bn.running_mean.data), mean, rtol=1e-12,
                                   err_msg="batch norm's running_mean")
        np.testing.assert_allclose(backend.to_numpy(bn.running_var.data), var, rtol=1e-12,
                                   err_msg="batch norm's running_var")
        assert int(bn.num_batches_tracked) == step + 1
    assert bn.num_batches_tracked.dtype == np.int64


def test_momentum_none_is_a_cumulative_average(xp, device):
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm1d(4, momentum=None).to(device).to("float64")
    mean, var = np.zeros(4), np.ones(4)
    batch_means, batch_vars = [], []
    for step in range(4):
        x = batch(rng, (6, 4), device).to("float64")
        out = bn(x)
        expected, mean, var = reference_batch_norm(x.numpy(), mean, var, training=True, momentum=None,
                                                   num_batches_tracked=step)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
        batch_means.append(x.numpy().mean(axis=0))
        batch_vars.append(x.numpy().var(axis=0, ddof=1))
    # factor 1, 1/2, 1/3, 1/4: the running statistics are the plain averages of the batches'
    np.testing.assert_allclose(backend.to_numpy(bn.running_mean.data), np.mean(batch_means, axis=0), rtol=1e-12,
                               err_msg="batch norm's running_mean")
    np.testing.assert_allclose(backend.to_numpy(bn.running_var.data), np.mean(batch_vars, axis=0), rtol=1e-12,
                               err_msg="batch norm's running_var")
    np.testing.assert_allclose(backend.to_numpy(bn.running_mean.data), mean, rtol=1e-12,
                               err_msg="batch norm's running_mean")
    assert int(bn.num_batches_tracked) == 4


def test_eval_mode_uses_running_statistics_and_updates_nothing():
    rng = np.random.default_rng(2)
    bn = nn.BatchNorm2d(3).to("float64")
    bn(batch(rng, (4, 3, 5, 5), "cpu").to("float64"))                     # one training step
    bn.weight.data[...] = [1.5, -0.5, 2.0]
    state = {k: v.numpy().copy() for k, v in bn.state_dict().items()}
    bn.eval()
    x = batch(rng, (2, 3, 4, 4), "cpu").to("float64")
    out = bn(x)
    expected, _, _ = reference_batch_norm(x.numpy(), state["running_mean"], state["running_var"],
                                          state["weight"], state["bias"], training=False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key], err_msg=key)
    single = minires.tensor(rng.standard_normal((1, 3, 1, 1)))                # one value per channel is fine
    assert bn(single).shape == (1, 3, 1, 1)


def test_no_grad_does_not_switch_to_evaluation():
    rng = np.random.default_rng(3)
    x = batch(rng, (4, 3, 3, 3), "cpu")
    trained, frozen = nn.BatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    with minires.no_grad():
        out = frozen(x)
    expected = trained(x)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())              # batch statistics still
    np.testing.assert_array_equal(frozen.running_mean.numpy(), trained.running_mean.numpy(),
                                  err_msg="batch norm's running_mean")
    assert int(frozen.num_batches_tracked) == 1                               # and still counted
    assert not out.requires_grad and expected.requires_grad


def test_untracked_layer_uses_batch_statistics_in_eval_too():
    rng = np.random.default_rng(4)
    x = batch(rng, (4, 2, 3, 3), "cpu").to("float64")
    bn = nn.BatchNorm2d(2, track_running_stats=False).to("float64").eval()
    expected, _, _ = reference_batch_norm(x.numpy(), None, None, training=True)
    np.testing.assert_allclose(bn(x).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_input_rank_and_single_value_errors():
    with pytest.raises(ValueError, match="4-D input.*BatchNorm1d"):
        nn.BatchNorm2d(3)(minires.zeros(2, 3))
    with pytest.raises(ValueError, match="2-D.*BatchNorm2d"):
        nn.BatchNorm1d(3)(minires.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3)(minires.zeros(1, 3, 1, 1))
    assert nn.BatchNorm1d(3)(minires.randn(2, 3, 5)).shape == (2, 3, 5)


def test_gradients_flow_to_gamma_beta_and_x():
    rng = np.random.default_rng(5)
    bn = nn.BatchNorm2d(3).to("float64")
    x = minires.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
    out = bn(x)
    out.backward(rng.standard_normal(out.shape))
    assert x.grad.shape == x.shape and bn.weight.grad.shape == (3,) and bn.bias.grad.shape == (3,)
    np.testing.assert_allclose(x.grad.sum(dim=(0, 2, 3)).numpy(), 0, atol=1e-12)    # per-channel sum is zero


with np.load(FIXTURE, allow_pickle=False) as _data:
    NUM_CASES = int(_data["meta/num_cases"])


@pytest.mark.parametrize("case", range(NUM_CASES))
def test_module_agrees_with_pytorch_fixtures(case):
    data = np.load(FIXTURE, allow_pickle=False)
    get = lambda name: data[f"case{case}/{name}"]                           # noqa: E731
    params = json.loads(str(get("params")))
    x = get("x")
    layer = {"BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d}.get(
        params.get("module"), nn.BatchNorm2d if x.ndim == 4 else nn.BatchNorm1d)
    bn = layer(x.shape[1], eps=params["eps"], momentum=params["momentum"], affine=f"case{case}/weight" in data,
               dtype=x.dtype)
    state = {"running_mean": get("running_mean"), "running_var": get("running_var"),
             "num_batches_tracked": np.array(params.get("num_batches_tracked", 0), np.int64)}
    if bn.affine:
        state.update(weight=get("weight"), bias=get("bias"))
    bn.load_state_dict(state)
    bn.train(params["training"])
    xt = minires.tensor(x, requires_grad=True)
    out = bn(xt)
    out.backward(get("dout"))
    tol = dict(rtol=1e-10, atol=1e-12) if x.dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), get("out"), **tol)
    np.testing.assert_allclose(xt.grad, get("grad_x"), **tol)
    np.testing.assert_allclose(bn.running_mean.numpy(), get("running_mean_after"), **tol,
                               err_msg="batch norm's running_mean")
    np.testing.assert_allclose(bn.running_var.numpy(), get("running_var_after"), **tol,
                               err_msg="batch norm's running_var")
    if bn.affine:
        np.testing.assert_allclose(bn.weight.grad, get("grad_weight"), **tol)
        np.testing.assert_allclose(bn.bias.grad, get("grad_bias"), **tol)
    assert int(bn.num_batches_tracked) == params.get("num_batches_tracked", 0) + int(params["training"])
