"""sigmoid, tanh, abs, leaky_relu, gelu, softmax: gradients, PyTorch's kink rules exactly, the oracle,
PyTorch's values, empty batches and NaN."""
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
SMOOTH = {
    "sigmoid": (F.sigmoid, ref.sigmoid),
    "tanh": (F.tanh, ref.tanh),
    "gelu": (F.gelu, ref.gelu),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: ref.gelu(x, approximate="tanh")),
}
KINKED = {
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: ref.leaky_relu(x, 0.2)),
    "abs": (F.abs, np.abs),
}
shapes = st.lists(st.integers(1, 4), max_size=3).map(tuple)


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


@given(name=st.sampled_from(sorted(SMOOTH)), shape=shapes, seed=seeds())
@example(name="sigmoid", shape=(2, 3), seed=0)
@example(name="tanh", shape=(4,), seed=1)
@example(name="gelu", shape=(3, 2), seed=2)
@example(name="gelu_tanh", shape=(2, 2, 2), seed=3)
def test_smooth_activations_gradcheck(xp, name, shape, seed):
    fn, _ = SMOOTH[name]
    assert gradcheck(fn, leaf(xp, normal_array(shape, seed, scale=2.0)), seed=seed, name=name)


@given(name=st.sampled_from(sorted(KINKED)), shape=shapes, seed=seeds())
@example(name="leaky_relu", shape=(3, 4), seed=0)
@example(name="abs", shape=(2, 3), seed=1)
def test_kinked_activations_gradcheck_away_from_the_kink(xp, name, shape, seed):
    fn, _ = KINKED[name]
    assert gradcheck(fn, leaf(xp, away_from_zero(shape, seed)), seed=seed, name=name)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), seed=seeds(), data=st.data())
@example(shape=(3, 4), seed=0, data=None)
@example(shape=(2, 3, 4), seed=1, data=None)
def test_softmax_gradcheck_along_each_axis(xp, shape, seed, data):
    dims = range(-len(shape), len(shape))
    for dim in ([data.draw(st.sampled_from(list(dims)))] if data is not None else dims):
        x = leaf(xp, normal_array(shape, seed, scale=2.0))
        assert gradcheck(lambda t: F.softmax(t, dim), x, seed=seed, name=f"softmax(dim={dim})")


@given(shape=shapes, seed=seeds())
@example(shape=(3, 4), seed=0)
def test_activations_agree_with_the_oracle(xp, shape, seed):
    a = normal_array(shape, seed, scale=3.0)
    for name, (fn, oracle) in {**SMOOTH, **KINKED}.items():
        out = backend.to_numpy(fn(mr.tensor(xp.asarray(a))).data)
        np.testing.assert_allclose(out, oracle(a), rtol=1e-12, atol=1e-15, err_msg=name)
    if a.ndim:
        np.testing.assert_allclose(backend.to_numpy(F.softmax(mr.tensor(xp.asarray(a)), -1).data),
                                   ref.softmax(a, -1), rtol=1e-12, atol=1e-15)


def test_leaky_relu_derivative_at_zero_is_the_slope_as_pytorch(xp):
    x = leaf(xp, [-1.0, -0.0, 0.0, 3.0])
    F.leaky_relu(x, 0.2).backward(xp.asarray([10.0, 10.0, 10.0, 10.0]))
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [2.0, 2.0, 2.0, 10.0])
    np.testing.assert_array_equal(10 * ref.leaky_relu_derivative([-1.0, -0.0, 0.0, 3.0], 0.2), [2.0, 2.0, 2.0, 10.0])


def test_abs_derivative_at_zero_and_nan_is_zero_as_pytorch(xp):
    x = leaf(xp, [-2.0, -0.0, 0.0, 3.0, np.nan])
    F.abs(x).backward(xp.asarray([10.0, 10.0, 10.0, 10.0, 10.0]))
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [-10.0, 0.0, 0.0, 10.0, 0.0])


def test_nan_and_inf_propagate_as_pytorch_without_warnings(xp):
    """The values PyTorch 2.13 gives for [-1, 0, 2, nan, inf] with an all-ones upstream gradient."""
    nan, inf = np.nan, np.inf
    expected = {   # name: (out, grad)
        "sigmoid": ([0.2689414213699951, 0.5, 0.8807970779778823, nan, 1.0],
                    [0.19661193324148185, 0.25, 0.10499358540350662, nan, 0.0]),
        "tanh": ([-0.7615941559557649, 0.0, 0.9640275800758169, nan, 1.0],
                 [0.41997434161402614, 1.0, 0.07065082485316443, nan, 0.0]),
        "gelu": ([-0.15865525393145702, 0.0, 1.9544997361036416, nan, inf],
                 [-0.08331547058768635, 0.5, 1.085231801078197, nan, nan]),
        "leaky_relu": ([-0.2, 0.0, 2.0, nan, inf], [0.2, 0.2, 1.0, 0.2, 1.0]),
        "abs": ([1.0, 0.0, 2.0, nan, inf], [-1.0, 0.0, 1.0, 0.0, 1.0]),
    }
    for name, (out_expected, grad_expected) in expected.items():
        fn = {**SMOOTH, **KINKED}[name][0]
        x = leaf(xp, [-1.0, 0.0, 2.0, nan, inf])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = fn(x)
            out.backward(xp.ones(5))
        np.testing.assert_allclose(backend.to_numpy(out.data), out_expected, rtol=1e-14, err_msg=name)
        np.testing.assert_allclose(backend.to_numpy(x.grad.data), grad_expected, rtol=1e-14, err_msg=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = F.softmax(mr.tensor(xp.asarray([[np.inf, 1.0], [-np.inf, 1.0]])), dim=1)
    np.testing.assert_array_equal(backend.to_numpy(row.data), [[nan, nan], [0.0, 1.0]])


def test_empty_batches_pass_both_ways(xp):
    for name, fn in {**{k: v[0] for k, v in {**SMOOTH, **KINKED}.items()}, "softmax": lambda t: F.softmax(t, 1)}.items():
        x = leaf(xp, np.zeros((0, 4)))
        out = fn(x)
        out.backward(xp.zeros((0, 4)))
        assert out.shape == (0, 4) and x.grad.shape == (0, 4), name


def test_softmax_dim_out_of_range_is_an_index_error(xp):
    with pytest.raises(IndexError, match=r"dim must lie in \[-2, 1\]"):
        F.softmax(mr.tensor(xp.zeros((2, 3))), 2)


def test_gelu_refuses_an_unknown_approximation(xp):
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        F.gelu(mr.tensor(xp.zeros(2)), approximate="erf")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensor_methods_keep_the_dtype(xp, dtype):
    x = mr.tensor(xp.asarray([[-1.0, 0.5], [2.0, -3.0]], dtype=dtype))
    for out in (x.sigmoid(), x.tanh(), x.abs(), x.softmax(1), x.softmax(dim=0)):
        assert out.dtype == dtype
    np.testing.assert_allclose(x.softmax(1).numpy().sum(axis=1), [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "abs", "leaky_relu", "gelu", "softmax"])
def test_activations_agree_with_pytorch(xp, name):
    data = np.load(FIXTURES, allow_pickle=False)
    import json
    for k in range(int(data[f"{name}/meta/num_cases"])):
        case = lambda key: data[f"{name}/case{k}/{key}"]  # noqa: E731
        dtype, params = np.dtype(str(case("dtype"))), json.loads(str(case("params")))
        x = leaf(xp, case("x"), dtype)
        out = getattr(F, name)(x, **params)
        assert out.dtype == dtype
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(backend.to_numpy(out.data), case("out"), **tol, err_msg=f"{name} case {k} out")
        out.backward(xp.asarray(case("dout")))
        np.testing.assert_allclose(backend.to_numpy(x.grad.data), case("grad_x"), **tol,
                                   err_msg=f"{name} case {k} grad_x")
