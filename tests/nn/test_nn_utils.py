"""nn.utils.clip_grad_norm_ and clip_grad_value_: PyTorch's formulas, written out by hand here."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires
from minires import backend, nn
from minires.nn.utils import clip_grad_norm_, clip_grad_value_


def params_with_grads(grads, device="cpu", dtype="float64"):
    """One parameter per entry of ``grads``; ``None`` leaves that parameter without a gradient."""
    params = []
    for g in grads:
        shape = (1,) if g is None else np.shape(g)
        p = nn.Parameter(minires.zeros(*shape, dtype=dtype, device=device))
        if g is not None:
            p.grad = minires.tensor(np.asarray(g, dtype=np.float64), dtype=dtype, device=device)
        params.append(p)
    return params


def grads_of(params):
    return [None if p.grad is None else backend.to_numpy(p.grad.data) for p in params]


GRADS = [np.array([[3.0, -4.0], [0.5, 1.0]]), np.array([12.0, -0.25, 2.0])]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 5.0, 1e3])
def test_clip_grad_norm_by_hand(device, norm_type, max_norm):
    params = params_with_grads(GRADS + [None], device)
    flat = np.concatenate([g.ravel() for g in GRADS])
    total = np.max(np.abs(flat)) if norm_type == float("inf") else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    coef = min(max_norm / (total + 1e-6), 1.0)
    returned = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(returned, minires.Tensor) and returned.shape == () and returned.device == params[0].device
    assert returned.item() == pytest.approx(total, rel=1e-14)              # the norm from before clipping
    for got, g in zip(grads_of(params), GRADS + [None]):
        if g is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, g * coef, rtol=1e-14)
    clipped = np.concatenate([g.ravel() for g in grads_of(params)[:2]])
    assert np.linalg.norm(clipped, ord=norm_type) <= max_norm * (1 + 1e-12)


def test_clip_grad_norm_changes_the_gradients_in_place():
    params = params_with_grads(GRADS)
    grad, array = params[0].grad, params[0].grad.data
    version = grad._version
    clip_grad_norm_(params, 1.0)
    assert params[0].grad is grad and grad.data is array and grad._version > version


def test_clip_grad_norm_takes_one_tensor_and_a_generator():
    (p,) = params_with_grads(GRADS[:1])
    assert clip_grad_norm_(p, 100.0).item() == pytest.approx(math.sqrt(9 + 16 + 0.25 + 1))
    model = nn.Linear(2, 1, dtype="float64")
    model(minires.tensor(np.array([[1.0, 2.0]]))).sum().backward()
    total = clip_grad_norm_(model.parameters(), 0.1)
    assert total.item() == pytest.approx(math.sqrt(1 + 4 + 1))
    assert math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in model.parameters())) == pytest.approx(0.1, rel=1e-5)


def test_clip_grad_norm_without_any_gradient_returns_zero():
    total = clip_grad_norm_(params_with_grads([None, None]), 1.0)
    assert total.item() == 0.0
    assert clip_grad_norm_([], 1.0).item() == 0.0


def test_clip_grad_norm_keeps_float32(xp, device):
    params = params_with_grads(GRADS, device, dtype="float32")
    total = clip_grad_norm_(params, 1.0)
    assert total.dtype == np.float32 and isinstance(total.data, xp.ndarray)
    assert all(p.grad.dtype == np.float32 for p in params)


def test_non_finite_norms():
    params = params_with_grads([np.array([1.0, np.inf])])
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(grads_of(params)[0], [1.0, np.inf])       # nothing was changed
    with np.errstate(invalid="ignore"):
        total = clip_grad_norm_(params, 1.0)                                # as PyTorch: scale by 0 anyway
    assert total.item() == math.inf
    np.testing.assert_array_equal(grads_of(params)[0], [0.0, np.nan])


@pytest.mark.parametrize("norm_type", [0, -1.0, float("-inf"), float("nan")])
def test_clip_grad_norm_refuses_norms_that_are_not_norms(norm_type):
    with pytest.raises(ValueError, match="norm_type > 0"):
        clip_grad_norm_(params_with_grads(GRADS), 1.0, norm_type=norm_type)


@given(shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4),
       max_norm=st.floats(0.01, 10.0), seed=st.integers(0, 2 ** 16))
def test_clip_grad_norm_property(shapes, max_norm, seed):
    """After clipping, the joint 2-norm is min(total, ~max_norm); the direction never changes."""
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(tuple(s)) for s in shapes]
    params = params_with_grads(grads)
    total = clip_grad_norm_(params, max_norm).item()
    before = np.concatenate([g.ravel() for g in grads])
    after = np.concatenate([g.ravel() for g in grads_of(params)])
    assert total == pytest.approx(np.linalg.norm(before), rel=1e-12)
    assert np.linalg.norm(after) == pytest.approx(min(total, max_norm * total / (total + 1e-6)), rel=1e-12)
    np.testing.assert_allclose(after, before * min(1.0, max_norm / (total + 1e-6)), rtol=1e-13)


def test_clip_grad_value_by_hand(device):
    params = params_with_grads(GRADS + [None], device)
    grad = params[0].grad
    assert clip_grad_value_(params, 1.0) is None
    for got, g in zip(grads_of(params), GRADS + [None]):
        if g is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, np.clip(g, -1.0, 1.0))
    assert params[0].grad is grad and grad._version == 1
    (p,) = params_with_grads(GRADS[1:])
    clip_grad_value_(p, 0)
    np.testing.assert_array_equal(grads_of([p])[0], 0.0)


def test_clip_grad_value_refuses_a_negative_bound():
    with pytest.raises(ValueError, match="clip_value must be >= 0, got -1.0"):
        clip_grad_value_(params_with_grads(GRADS), -1.0)


def test_clipping_runs_under_recording():
    """Gradients are changed with recording on, as after backward(): no error, no graph."""
    params = params_with_grads(GRADS)
    assert minires.is_grad_enabled()
    clip_grad_norm_(params, 1.0)
    clip_grad_value_(params, 0.1)
    assert all(p.grad.grad_fn is None for p in params)
