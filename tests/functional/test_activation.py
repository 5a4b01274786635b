"""ReLU: gradients away from the kink, the kink rule ReLU'(0) = 0 exactly, NumPy and PyTorch values."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.testing import gradcheck
from minires.testing.strategies import away_from_zero, normal_array, seeds

WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


@WITH_FIXTURE
@given(shape=st.lists(st.integers(1, 4), max_size=4).map(tuple), seed=seeds())
def test_relu_gradcheck_away_from_the_kink(xp, shape, seed):
    assert gradcheck(F.relu, leaf(xp, away_from_zero(shape, seed)), seed=seed)


@WITH_FIXTURE
@given(shape=st.lists(st.integers(1, 5), max_size=3).map(tuple), seed=seeds())
def test_relu_agrees_with_numpy(xp, shape, seed):
    a = normal_array(shape, seed)
    out = F.relu(mr.tensor(xp.asarray(a)))
    np.testing.assert_array_equal(mr.tensor(a).relu().numpy(), np.maximum(a, 0.0))
    np.testing.assert_array_equal(backend.to_numpy(out.data), np.maximum(a, 0.0))


def test_relu_derivative_at_zero_is_zero_exactly(xp):
    """Finite differences cannot decide a kink (they see 1/2 at 0), so the convention is pinned here."""
    x = leaf(xp, [-1.0, -0.0, 0.0, 1e-300, 2.0])
    out = F.relu(x)
    out.backward(xp.asarray([10.0, 10.0, 10.0, 10.0, 10.0]))
    np.testing.assert_array_equal(backend.to_numpy(out.data), [0.0, 0.0, 0.0, 1e-300, 2.0])
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [0.0, 0.0, 0.0, 10.0, 10.0])


def test_relu_backward_multiplies_so_an_infinite_gradient_through_a_dead_unit_is_nan(xp):
    """dx = dout * mask, so inf or NaN in dout where x <= 0 gives inf * 0 = NaN; PyTorch selects 0 there
    (docs/derivations/relu.md says why minires keeps the product). Finite gradients are exactly PyTorch's."""
    x = leaf(xp, [-1.0, -1.0, 0.0, 2.0, 2.0])
    with np.errstate(invalid="ignore"):
        F.relu(x).backward(xp.asarray([np.inf, np.nan, 3.0, np.inf, np.nan]))
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [np.nan, np.nan, 0.0, np.inf, np.nan])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_keeps_the_dtype(xp, dtype):
    x = leaf(xp, [-1.0, 0.0, 2.0], dtype)
    out = F.relu(x)
    assert out.dtype == dtype
    out.backward(xp.ones(3, dtype=dtype))
    assert x.grad.dtype == dtype


def test_relu_agrees_with_pytorch(xp):
    path = FIXTURES / "relu.npz"
    if not path.exists():
        pytest.skip("relu.npz has not been made yet")
    data = np.load(path, allow_pickle=False)
    for k in range(int(data["meta/num_cases"])):
        dtype = np.dtype(str(data[f"case{k}/dtype"]))
        x = leaf(xp, data[f"case{k}/x"], dtype)
        assert (data[f"case{k}/x"] == 0).any(), "the fixtures put exact zeros in, where the rule matters"
        out = F.relu(x)
        assert out.dtype == dtype
        np.testing.assert_array_equal(backend.to_numpy(out.data), data[f"case{k}/out"])
        out.backward(xp.asarray(data[f"case{k}/dout"]))
        np.testing.assert_array_equal(backend.to_numpy(x.grad), data[f"case{k}/grad_x"])  # exact: a mask
