"""matmul and linear: gradients, adjoints in each argument, NumPy values, PyTorch fixtures, errors."""
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.testing import GradcheckError, adjoint_check, gradcheck
from minires.testing.strategies import normal_array, seeds

WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


def constant(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype))


@st.composite
def matmul_shapes(draw):
    """Shape pairs for every matmul rule; the sizes m, k, n are drawn distinct so that every
    matrix is non-square and a misplaced transpose cannot fit by accident."""
    m, k, n = draw(st.permutations([2, 3, 4]))
    batch, other = draw(st.sampled_from([((2,), (2,)), ((3, 1), (2,)), ((1,), (3,))]))
    return draw(st.sampled_from([
        ((m, k), (k, n)),                                                 # matrix @ matrix
        ((k,), (k, n)), ((m, k), (k,)), ((k,), (k,)),                    # vectors
        (batch + (m, k), (k, n)), ((m, k), batch + (k, n)),               # a batch against a matrix
        (batch + (m, k), other + (k, n)),                                 # batches that broadcast
        ((k,), batch + (k, n)), (batch + (m, k), (k,)),
    ]))


# ------------------------------------------------------------------ matmul

@WITH_FIXTURE
@given(shapes=matmul_shapes(), seed=seeds())
def test_matmul_gradcheck(xp, shapes, seed):
    a, b = normal_array(shapes[0], seed), normal_array(shapes[1], seed + 1)
    assert gradcheck(F.matmul, leaf(xp, a), leaf(xp, b), seed=seed)


M, K, N = 2, 3, 4                                                         # distinct: no transpose fits by accident
BATCH_PAIRS = {
    "leading": ((2, 3, M, K), (1, 3, K, N)),
    "middle": ((2, 3, 2, M, K), (2, 1, 2, K, N)),
    "last-batch-axis": ((2, 3, M, K), (2, 1, K, N)),
    "missing-leading": ((2, 3, M, K), (3, K, N)),
    "matrix": ((2, 3, M, K), (K, N)),
    "both-sides": ((2, 1, M, K), (1, 3, K, N)),
    "vector-left": ((K,), (2, 3, K, N)),
    "vector-right": ((2, 1, M, K), (K,)),
}


def matmul_gradcheck(xp, a_shape, b_shape, seed=11):
    a, b = normal_array(a_shape, seed), normal_array(b_shape, seed + 1)
    return gradcheck(F.matmul, leaf(xp, a), leaf(xp, b), seed=seed)             # random upstream G


@pytest.mark.parametrize("case", sorted(BATCH_PAIRS))
def test_matmul_gradient_broadcasts_batches_along_every_axis(xp, case):
    """Explicit cases, so that a derandomized CI run broadcasts each kind of batch axis."""
    assert matmul_gradcheck(xp, *BATCH_PAIRS[case])


@pytest.mark.parametrize("case", ["leading", "middle", "both-sides"])
def test_the_batch_cases_catch_a_sum_to_shape_that_forgets_stretched_axes(xp, monkeypatch, case):
    linear = importlib.import_module("minires.functional.linear")     # F.linear is the function

    def first_copy_of_stretched_axes(grad, shape):                          # a planted bug
        lead = grad.ndim - len(shape)
        grad = grad.sum(axis=tuple(range(lead))) if lead > 0 else grad
        return grad[tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)]
    monkeypatch.setattr(linear, "sum_to_shape", first_copy_of_stretched_axes)
    with pytest.raises(GradcheckError):
        matmul_gradcheck(xp, *BATCH_PAIRS[case])


@WITH_FIXTURE
@given(shapes=matmul_shapes(), seed=seeds())
def test_matmul_adjoint_in_each_argument(xp, device, shapes, seed):
    a, b = constant(xp, normal_array(shapes[0], seed)), constant(xp, normal_array(shapes[1], seed + 1))
    assert adjoint_check(lambda t: F.matmul(t, b), shapes[0], seed=seed, device=device)
    assert adjoint_check(lambda t: F.matmul(a, t), shapes[1], seed=seed, device=device)


@WITH_FIXTURE
@given(shapes=matmul_shapes(), seed=seeds())
def test_matmul_agrees_with_numpy(xp, shapes, seed):
    a, b = normal_array(shapes[0], seed), normal_array(shapes[1], seed + 1)
    out = F.matmul(constant(xp, a), constant(xp, b))
    want = np.matmul(a, b)
    assert out.shape == np.shape(want)
    np.testing.assert_allclose(backend.to_numpy(out.data), want, rtol=1e-12, atol=1e-14)


def test_matmul_float32_stays_float32(xp):
    a, b = leaf(xp, normal_array((2, 3), 0), np.float32), leaf(xp, normal_array((3, 4), 1), np.float32)
    out = a @ b
    assert out.dtype == np.float32
    out.backward(xp.ones((2, 4), dtype=np.float32))
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32


def test_matmul_errors_say_what_fits(xp):
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not fit: the last axis of "
                                         r"the first must equal the second-to-last axis of the second"):
        F.matmul(constant(xp, np.ones((2, 3))), constant(xp, np.ones((4, 5))))
    with pytest.raises(ValueError, match="the only axis of the second"):
        F.matmul(constant(xp, np.ones((2, 3))), constant(xp, np.ones(4)))
    with pytest.raises(ValueError, match="use \\* for scalars"):
        F.matmul(constant(xp, 2.0), constant(xp, np.ones(3)))
    with pytest.raises(TypeError, match="matmul got inputs of dtypes float64 and int64"):
        F.matmul(constant(xp, np.ones((2, 2))), constant(xp, np.ones((2, 2)), np.int64))


# ------------------------------------------------------------------ linear

@st.composite
def linear_cases(draw):
    """x of shape (in,), (N, in) or (B, N, in); weight (out, in) with out != in; bias or not."""
    features_in, features_out = draw(st.permutations([2, 3, 4]))[:2]
    lead = draw(st.sampled_from([(), (3,), (2, 3)]))
    return lead + (features_in,), (features_out, features_in), draw(st.booleans())


@WITH_FIXTURE
@given(case=linear_cases(), seed=seeds())
def test_linear_gradcheck(xp, case, seed):
    x_shape, w_shape, with_bias = case
    inputs = [leaf(xp, normal_array(x_shape, seed)), leaf(xp, normal_array(w_shape, seed + 1))]
    if with_bias:
        inputs.append(leaf(xp, normal_array(w_shape[:1], seed + 2)))
    assert gradcheck(F.linear, *inputs, seed=seed)


@WITH_FIXTURE
@given(case=linear_cases(), seed=seeds())
def test_linear_adjoint_in_x_and_in_weight(xp, device, case, seed):
    x_shape, w_shape, _ = case
    x, w = constant(xp, normal_array(x_shape, seed)), constant(xp, normal_array(w_shape, seed + 1))
    assert adjoint_check(lambda t: F.linear(t, w), x_shape, seed=seed, device=device)
    assert adjoint_check(lambda t: F.linear(x, t), w_shape, seed=seed, device=device)


@WITH_FIXTURE
@given(case=linear_cases(), seed=seeds())
def test_linear_agrees_with_numpy(xp, case, seed):
    x_shape, w_shape, with_bias = case
    x, w = normal_array(x_shape, seed), normal_array(w_shape, seed + 1)
    b = normal_array(w_shape[:1], seed + 2)
    out = F.linear(constant(xp, x), constant(xp, w), constant(xp, b) if with_bias else None)
    want = x @ w.T + (b if with_bias else 0.0)
    np.testing.assert_allclose(backend.to_numpy(out.data), want, rtol=1e-12, atol=1e-14)


def test_linear_float32_stays_float32(xp):
    x, w, b = (leaf(xp, normal_array(s, i), np.float32) for i, s in enumerate([(2, 3), (4, 3), (4,)]))
    out = F.linear(x, w, b)
    assert out.dtype == np.float32
    out.backward(xp.ones((2, 4), dtype=np.float32))
    assert all(t.grad.dtype == np.float32 for t in (x, w, b))


def test_linear_errors(xp):
    x, w = constant(xp, np.ones((2, 3))), constant(xp, np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"input has 3 features but the weight \(4, 5\) expects 5 "
                                         r"\(weight is \(out_features, in_features\)\)"):
        F.linear(x, w)
    w = constant(xp, np.ones((4, 3)))
    with pytest.raises(TypeError, match="linear got inputs of dtypes float64 and float32"):
        F.linear(x, w, constant(xp, np.ones(4), np.float32))             # the bias too: no silent float64
    with pytest.raises(TypeError, match="linear got inputs of dtypes float64 and float32"):
        F.linear(x, constant(xp, np.ones((4, 3)), np.float32))


# ------------------------------------------------------------------ PyTorch's answers

def fixture_cases(name):
    path = FIXTURES / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"{path.name} has not been made yet")
    data = np.load(path, allow_pickle=False)
    for k in range(int(data["meta/num_cases"])):
        case = {key.split("/", 1)[1]: data[key] for key in data.files if key.startswith(f"case{k}/")}
        yield k, case


def test_linear_agrees_with_pytorch(xp):
    for k, case in fixture_cases("linear"):
        params = json.loads(str(case["params"]))
        dtype = np.dtype(str(case["dtype"]))
        tight = dtype == np.float64
        tol = dict(rtol=1e-12, atol=1e-12) if tight else dict(rtol=1e-5, atol=1e-5)
        inputs = {name: leaf(xp, case[name], dtype) for name in ("x", "weight", "bias") if name in case}
        out = F.linear(inputs["x"], inputs["weight"], inputs.get("bias"), **params)
        assert out.dtype == dtype, k
        np.testing.assert_allclose(backend.to_numpy(out.data), case["out"], **tol, err_msg=f"case {k}")
        out.backward(xp.asarray(case["dout"]))
        for name, t in inputs.items():
            np.testing.assert_allclose(backend.to_numpy(t.grad), case[f"grad_{name}"], **tol,
                                       err_msg=f"case {k}: grad_{name}")
