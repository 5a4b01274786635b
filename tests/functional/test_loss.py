"""log_softmax, cross_entropy and nll_loss: gradient checks, stability, agreement with the oracles and PyTorch."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires
from minires import backend, reference
from minires.functional.loss import cross_entropy, log_softmax, nll_loss
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import normal_array, seeds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The xp/device fixtures only name a backend, so sharing them across Hypothesis examples is safe.
with_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REDUCTIONS = ["none", "mean", "sum"]


@st.composite
def classification(draw, max_spatial: int = 2) -> tuple:
    """(logits shape (N, C, d1, ...), target shape (N, d1, ...), C)."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, max_spatial))))
    return (n, c) + spatial, (n,) + spatial, c


smoothing = st.one_of(st.just(0.0), st.floats(0.0, 1.0))


def on(device: str, array, requires_grad: bool = False) -> minires.Tensor:
    return minires.tensor(backend.to_device(np.asarray(array), device), requires_grad=requires_grad)


def targets(shape: tuple, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=shape)


def oracle_gradient(logits: np.ndarray, target: np.ndarray, label_smoothing: float) -> np.ndarray:
    """d(sum of per-sample losses)/dlogits = softmax - q, q = (1 - ls) * onehot + ls / C, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    C = logits.shape[1]
    onehot = (target[:, None] == np.arange(C).reshape((1, C) + (1,) * (target.ndim - 1)))
    return np.exp(reference.log_softmax(logits, dim=1)) - ((1 - label_smoothing) * onehot + label_smoothing / C)


# ------------------------------------------------------------------ gradient checks (float64)

@with_fixtures
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data(), seed=seeds())
def test_gradcheck_log_softmax(xp, device, shape, data, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = on(device, normal_array(shape, seed, scale=3.0), requires_grad=True)
    gradcheck(lambda x: log_softmax(x, dim=dim), x)


@with_fixtures
@given(geometry=classification(), seed=seeds(), reduction=st.sampled_from(REDUCTIONS), ls=smoothing,
       scale=st.floats(0.1, 5.0))
def test_gradcheck_cross_entropy(xp, device, geometry, seed, reduction, ls, scale):
    shape, target_shape, C = geometry
    t = on(device, targets(target_shape, C, seed + 1))
    x = on(device, normal_array(shape, seed, scale=scale), requires_grad=True)
    gradcheck(lambda x: cross_entropy(x, t, reduction=reduction, label_smoothing=ls), x)


@with_fixtures
@given(geometry=classification(), seed=seeds(), reduction=st.sampled_from(REDUCTIONS))
def test_nll_loss_is_linear_in_logp_adjoint(xp, device, geometry, seed, reduction):
    shape, target_shape, C = geometry
    t = on(device, targets(target_shape, C, seed))
    adjoint_check(lambda logp: nll_loss(logp, t, reduction=reduction), shape, seed=seed, device=device)


@with_fixtures
@given(geometry=classification(), seed=seeds(), reduction=st.sampled_from(REDUCTIONS))
def test_cross_entropy_is_nll_loss_of_log_softmax(xp, device, geometry, seed, reduction):
    shape, target_shape, C = geometry
    t = on(device, targets(target_shape, C, seed + 1))
    dout = np.random.default_rng(seed + 2).standard_normal(() if reduction != "none" else target_shape)
    grads = []
    for loss_fn in (lambda x: cross_entropy(x, t, reduction=reduction),
                    lambda x: nll_loss(log_softmax(x, dim=1), t, reduction=reduction)):
        x = on(device, normal_array(shape, seed, scale=2.0), requires_grad=True)
        loss = loss_fn(x)
        loss.backward(on(device, dout))
        grads.append((loss.numpy(), backend.to_numpy(x.grad)))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)


def test_gradient_is_softmax_minus_the_smoothed_onehot(xp, device):
    rng = np.random.default_rng(1)
    logits, target = rng.standard_normal((4, 5)), np.array([0, 3, 4, 3])
    for reduction, ls, scale in (("sum", 0.0, 1.0), ("mean", 0.0, 1 / 4), ("mean", 0.2, 1 / 4)):
        x = on(device, logits, requires_grad=True)
        cross_entropy(x, on(device, target), reduction=reduction, label_smoothing=ls).backward()
        np.testing.assert_allclose(backend.to_numpy(x.grad), scale * oracle_gradient(logits, target, ls),
                                   rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------ agreement with the oracles

@with_fixtures
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data(), seed=seeds(),
       scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_log_softmax_matches_the_reference(xp, device, shape, data, seed, scale):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = normal_array(shape, seed, scale=scale)
    np.testing.assert_allclose(log_softmax(on(device, x), dim=dim).numpy(), reference.log_softmax(x, dim=dim),
                               rtol=1e-13, atol=1e-13)


@with_fixtures
@given(geometry=classification(), seed=seeds(), reduction=st.sampled_from(REDUCTIONS), ls=smoothing,
       scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_cross_entropy_matches_the_reference(xp, device, geometry, seed, reduction, ls, scale):
    shape, target_shape, C = geometry
    x, t = normal_array(shape, seed, scale=scale), targets(target_shape, C, seed + 1)
    want = reference.cross_entropy(x, t, reduction=reduction, label_smoothing=ls)
    got = cross_entropy(on(device, x), on(device, t), reduction=reduction, label_smoothing=ls)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_at_logit_scale_1e4(xp, device, dtype):
    """exp(1e4) overflows even float64; shifting by the max keeps loss and gradient finite and exact."""
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((6, 7, 2)) * 1e4).astype(dtype)
    target = rng.integers(0, 7, size=(6, 2))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-6)
    for ls in (0.0, 0.1):
        x = on(device, logits, requires_grad=True)
        loss = cross_entropy(x, on(device, target), reduction="sum", label_smoothing=ls)
        loss.backward()
        assert np.isfinite(loss.numpy()) and np.isfinite(backend.to_numpy(x.grad)).all()
        want = reference.cross_entropy(logits.astype(np.float64), target, reduction="sum", label_smoothing=ls)
        np.testing.assert_allclose(loss.numpy(), want, rtol=tol["rtol"])
        np.testing.assert_allclose(backend.to_numpy(x.grad), oracle_gradient(logits, target, ls), **tol)
    x = on(device, logits, requires_grad=True)
    out = log_softmax(x, dim=1)
    out.backward(on(device, rng.standard_normal(logits.shape).astype(dtype)))
    assert np.isfinite(out.numpy()).all() and np.isfinite(backend.to_numpy(x.grad)).all()
    np.testing.assert_allclose(out.numpy(), reference.log_softmax(logits.astype(np.float64), dim=1),
                               rtol=tol["rtol"], atol=tol["atol"] * 1e4)


def _cases(name: str) -> list:
    path = FIXTURES / f"{name}.npz"
    if not path.exists():
        return [pytest.param(name, None, marks=pytest.mark.skip(reason=f"{path.name} is not there"))]
    with np.load(path, allow_pickle=False) as data:
        return [(name, k) for k in range(int(data["meta/num_cases"]))]


@pytest.mark.parametrize("name,case", _cases("log_softmax") + _cases("cross_entropy"))
def test_matches_pytorch_fixtures(xp, device, name, case):
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        arrays = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"case{case}/")}
    params = json.loads(str(arrays["params"]))
    tol = dict(rtol=1e-10, atol=1e-12) if arrays["dtype"] == "float64" else dict(rtol=1e-5, atol=1e-6)
    x = on(device, arrays["x"], requires_grad=True)
    if name == "log_softmax":
        out = log_softmax(x, **params)
    else:
        out = cross_entropy(x, on(device, arrays["target"]), **params)
    out.backward(on(device, arrays["dout"]))
    assert out.dtype == arrays["x"].dtype and x.grad.dtype == arrays["x"].dtype
    assert out.shape == arrays["out"].shape
    np.testing.assert_allclose(out.numpy(), arrays["out"], **tol)
    np.testing.assert_allclose(backend.to_numpy(x.grad), arrays["grad_x"], **tol)


# ------------------------------------------------------------------ dtypes, forms of input, errors

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float32_stays_float32(xp, device, reduction):
    rng = np.random.default_rng(3)
    logits, target = rng.standard_normal((4, 5, 3)).astype(np.float32), on(device, rng.integers(0, 5, (4, 3)))
    for fn in (lambda x: cross_entropy(x, target, reduction=reduction, label_smoothing=0.1),
               lambda x: nll_loss(log_softmax(x, dim=1), target, reduction=reduction)):
        x = on(device, logits, requires_grad=True)
        loss = fn(x)
        loss.backward(on(device, rng.standard_normal(loss.shape).astype(np.float32)))
        assert loss.dtype == np.float32 and x.grad.dtype == np.float32


def test_one_sample_with_class_logits_and_a_0d_target(xp, device):
    """PyTorch's unbatched form: logits (C,), target (); the same as a batch of one."""
    logits = np.random.default_rng(4).standard_normal(5)
    for reduction in REDUCTIONS:
        x1, xb = on(device, logits, requires_grad=True), on(device, logits[None], requires_grad=True)
        single = cross_entropy(x1, on(device, np.array(3)), reduction=reduction, label_smoothing=0.1)
        batch = cross_entropy(xb, on(device, np.array([3])), reduction=reduction, label_smoothing=0.1)
        assert single.shape == ()
        np.testing.assert_allclose(single.numpy(), batch.numpy().reshape(()), rtol=1e-15)
        single.backward(on(device, np.array(0.7)))
        batch.backward(on(device, np.full(batch.shape, 0.7)))
        np.testing.assert_allclose(backend.to_numpy(x1.grad), backend.to_numpy(xb.grad)[0], rtol=1e-15)


def test_target_may_be_a_tensor_an_array_or_python_ints(xp, device):
    logits = on(device, np.random.default_rng(5).standard_normal((3, 4)))
    forms = [on(device, [1, 0, 3]), backend.to_device(np.array([1, 0, 3], dtype=np.int32), device), [1, 0, 3]]
    losses = [float(cross_entropy(logits, t)) for t in forms]
    assert losses[0] == losses[1] == losses[2]


def test_errors_say_what_was_expected(xp, device):
    x = on(device, np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\).*target value 7"):
        cross_entropy(x, on(device, [0, 1, 7, 2]))
    with pytest.raises(ValueError, match=r"or ignore_index=-100.*target value -5"):
        nll_loss(x, on(device, [0, -5, 1, 2]))
    with pytest.raises(ValueError, match=r"class probabilities.*logits' shape \(4, 5\), got \(4,\)"):
        cross_entropy(x, on(device, np.zeros(4)))
    with pytest.raises(TypeError, match="integer class indices.*float64"):
        nll_loss(x, on(device, np.zeros(4)))
    with pytest.raises(ValueError, match=r"target of shape \(4,\).*got \(3,\)"):
        cross_entropy(x, on(device, [0, 1, 2]))
    with pytest.raises(ValueError, match=r"target of shape \(4, 2\).*logits of shape \(4, 5, 2\).*got \(4,\)"):
        cross_entropy(on(device, np.zeros((4, 5, 2))), on(device, [0, 1, 2, 3]))
    with pytest.raises(ValueError, match="reduction must be one of.*'avg'"):
        cross_entropy(x, on(device, [0, 1, 2, 3]), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing in \[0, 1\].*1.5"):
        cross_entropy(x, on(device, [0, 1, 2, 3]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="0-d"):
        cross_entropy(on(device, np.array(1.0)), on(device, np.array(0)))
    with pytest.raises(TypeError, match="floating-point logits"):
        cross_entropy(on(device, np.zeros((4, 5), dtype=np.int64)), on(device, [0, 1, 2, 3]))
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        log_softmax(x, dim=2)
