"""mse_loss, l1_loss, binary_cross_entropy_with_logits: gradients, l1's kink, the oracle, PyTorch's
values, stability at large logits, empty batches and NaN."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.reference import extra as ref
from minires.testing import gradcheck
from minires.testing.strategies import away_from_zero, normal_array, seeds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extra_ops.npz"
REDUCTIONS = ["none", "mean", "sum"]


def leaf(xp, values, dtype=np.float64, grad=True):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=grad)


@given(reduction=st.sampled_from(REDUCTIONS), seed=seeds())
@example(reduction="mean", seed=0)
@example(reduction="none", seed=1)
@example(reduction="sum", seed=2)
def test_mse_and_l1_gradcheck_with_broadcast_targets(xp, reduction, seed):
    """The target broadcasts along a leading and a middle axis; l1 is checked away from x = y."""
    x = normal_array((2, 3, 4), seed)
    y = normal_array((1, 1, 4), seed + 1)
    assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction), leaf(xp, x), leaf(xp, y), seed=seed)
    x_far = y + away_from_zero((2, 3, 4), seed)
    assert gradcheck(lambda a, b: F.l1_loss(a, b, reduction), leaf(xp, x_far), leaf(xp, y), seed=seed)


@given(reduction=st.sampled_from(REDUCTIONS), weighted=st.booleans(), pos=st.booleans(), seed=seeds())
@example(reduction="mean", weighted=True, pos=True, seed=0)
@example(reduction="none", weighted=False, pos=True, seed=1)
@example(reduction="sum", weighted=True, pos=False, seed=2)
def test_bce_with_logits_gradcheck_in_every_input(xp, reduction, weighted, pos, seed):
    rng = np.random.default_rng(seed)
    x, y = leaf(xp, 3 * rng.standard_normal((4, 3))), leaf(xp, rng.uniform(0, 1, (4, 3)))
    w = leaf(xp, rng.uniform(0.5, 2, (1, 3))) if weighted else None
    p = leaf(xp, rng.uniform(0.5, 3, (3,))) if pos else None
    assert gradcheck(lambda *t: F.binary_cross_entropy_with_logits(t[0], t[1], t[2], reduction, t[3]),
                     x, y, w, p, seed=seed)


@given(reduction=st.sampled_from(REDUCTIONS), seed=seeds())
@example(reduction="mean", seed=0)
def test_losses_agree_with_the_oracle(xp, reduction, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    w, p = rng.uniform(0.5, 2, (3, 4)), rng.uniform(0.5, 3, (4,))
    T = lambda a: mr.tensor(xp.asarray(a))  # noqa: E731
    for name, ours, theirs in [
        ("mse", F.mse_loss(T(x), T(y), reduction), ref.mse_loss(x, y, reduction)),
        ("l1", F.l1_loss(T(x), T(y), reduction), ref.l1_loss(x, y, reduction)),
        ("bce", F.binary_cross_entropy_with_logits(T(x), T(y), T(w), reduction, T(p)),
         ref.binary_cross_entropy_with_logits(x, y, w, reduction, p)),
    ]:
        np.testing.assert_allclose(backend.to_numpy(ours.data), theirs, rtol=1e-12, atol=1e-14, err_msg=name)


def test_l1_derivative_where_input_equals_target_is_zero_as_pytorch(xp):
    x, y = leaf(xp, [1.0, 2.0, 3.0]), leaf(xp, [0.0, 2.0, 5.0])
    F.l1_loss(x, y, reduction="sum").backward(xp.asarray(10.0))
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [10.0, 0.0, -10.0])
    np.testing.assert_array_equal(backend.to_numpy(y.grad.data), [-10.0, 0.0, 10.0])


def test_bce_with_logits_is_finite_at_huge_logits_in_float32(xp):
    x = leaf(xp, [100.0, -100.0, 1000.0, -1000.0], np.float32)
    y = leaf(xp, [0.0, 1.0, 1.0, 0.0], np.float32, grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        loss.backward(xp.ones(4, dtype=np.float32))
    np.testing.assert_allclose(backend.to_numpy(loss.data), [100.0, 100.0, 0.0, 0.0])
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [1.0, -1.0, 0.0, 0.0])


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"])
def test_empty_batch_gives_nan_mean_zero_sum_and_empty_gradients(xp, name):
    fn = getattr(F, name)
    for reduction, expected in (("mean", np.nan), ("sum", 0.0)):
        x, y = leaf(xp, np.zeros((0, 3))), leaf(xp, np.zeros((0, 3)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = fn(x, y, reduction=reduction)
            loss.backward(xp.asarray(1.0))
        np.testing.assert_array_equal(backend.to_numpy(loss.data), expected)
        assert x.grad.shape == (0, 3) and y.grad.shape == (0, 3)


def test_nan_propagates_as_pytorch(xp):
    x, y = leaf(xp, [np.nan, 1.0]), leaf(xp, [0.0, 0.0], grad=False)
    F.mse_loss(x, y, reduction="none").backward(xp.ones(2))
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [np.nan, 2.0])
    x.grad = None
    out = F.l1_loss(x, y, reduction="none")
    out.backward(xp.ones(2))
    np.testing.assert_array_equal(backend.to_numpy(out.data), [np.nan, 1.0])
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [0.0, 1.0])          # sign(NaN) = 0 in PyTorch


def test_bad_arguments_are_clear_errors(xp):
    x = mr.tensor(xp.zeros((2, 3)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="do not broadcast"):
        F.l1_loss(x, mr.tensor(xp.zeros((4,))))
    with pytest.raises(ValueError, match="target of the input's shape"):
        F.binary_cross_entropy_with_logits(x, mr.tensor(xp.zeros((1, 3))))


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"])
def test_losses_agree_with_pytorch(xp, name):
    data = np.load(FIXTURES, allow_pickle=False)
    for k in range(int(data[f"{name}/meta/num_cases"])):
        prefix = f"{name}/case{k}/"
        dtype, params = np.dtype(str(data[prefix + "dtype"])), json.loads(str(data[prefix + "params"]))
        x, y = leaf(xp, data[prefix + "x"], dtype), leaf(xp, data[prefix + "target"], dtype)
        extra = {key: mr.tensor(xp.asarray(data[prefix + key])) for key in ("weight", "pos_weight")
                 if prefix + key in data}
        out = getattr(F, name)(x, y, **extra, **params)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(backend.to_numpy(out.data), data[prefix + "out"], **tol, err_msg=f"{prefix}out")
        out.backward(xp.asarray(data[prefix + "dout"]))
        for arg, t in (("x", x), ("target", y)):
            np.testing.assert_allclose(backend.to_numpy(t.grad.data), data[prefix + "grad_" + arg], **tol,
                                       err_msg=f"{prefix}grad_{arg}")
