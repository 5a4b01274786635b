"""sum, mean and max: gradients, adjoints, NumPy values, the first-maximum rule, dtypes, errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import distinct_values, normal_array, seeds

WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


def host(array):
    return backend.to_numpy(array)


@st.composite
def shapes_and_dims(draw, single_dim: bool = False):
    """A shape of 1-3 axes and a `dim`: None, one axis (maybe negative) or, unless single_dim,
    a tuple of distinct axes."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    ndim = len(shape)
    one = st.integers(0, ndim - 1).flatmap(lambda d: st.sampled_from([d, d - ndim]))
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    dim = draw(st.one_of(st.none(), one) if single_dim else st.one_of(st.none(), one, several))
    return shape, dim, draw(st.booleans())


def numpy_axis(dim):
    return tuple(dim) if isinstance(dim, tuple) else dim


# ------------------------------------------------------------------ gradients and adjoints

@pytest.mark.parametrize("op", [F.sum, F.mean], ids=["sum", "mean"])
@WITH_FIXTURE
@given(case=shapes_and_dims(), seed=seeds())
def test_sum_and_mean_gradcheck_and_adjoint(xp, device, op, case, seed):
    shape, dim, keepdim = case
    assert gradcheck(lambda t: op(t, dim, keepdim), leaf(xp, normal_array(shape, seed)), seed=seed)
    assert adjoint_check(lambda t: op(t, dim, keepdim), shape, seed=seed, device=device)


@WITH_FIXTURE
@given(case=shapes_and_dims(single_dim=True), seed=seeds())
def test_max_gradcheck_away_from_ties(xp, case, seed):
    shape, dim, keepdim = case
    x = leaf(xp, distinct_values(shape, seed))                           # no ties: max is smooth here
    assert gradcheck(lambda t: max_values(t, dim, keepdim), x, seed=seed)


EVERY_DIM = [0, 1, 2, -1, (0, 2), None]
EVERY_AXIS_CASES = [(name, dim) for name in ("sum", "mean", "max") for dim in EVERY_DIM
                    if not (name == "max" and isinstance(dim, tuple))]    # max takes one dim, as torch.max


@pytest.mark.parametrize("keepdim", [False, True], ids=["dropdim", "keepdim"])
@pytest.mark.parametrize("name, dim", EVERY_AXIS_CASES, ids=[f"{n}-{d}" for n, d in EVERY_AXIS_CASES])
def test_backward_along_every_axis_of_a_3d_input(xp, name, dim, keepdim):
    """Explicit cases, so that a derandomized CI run reduces along each axis, both keepdims."""
    op = {"sum": F.sum, "mean": F.mean, "max": max_values}[name]
    x = leaf(xp, distinct_values((2, 3, 4), 3))                          # no ties: max is smooth here
    assert gradcheck(lambda t: op(t, dim, keepdim), x, seed=3)          # random upstream G
    want = getattr(np, name)(host(x.data), axis=numpy_axis(dim), keepdims=keepdim)
    assert op(x, dim, keepdim).shape == np.shape(want)


def test_mean_divides_by_the_count_exactly(xp):
    x = leaf(xp, np.ones((2, 3, 4)))
    F.mean(x, (0, 2)).backward(xp.ones(3))
    np.testing.assert_array_equal(host(x.grad), np.full((2, 3, 4), 1 / 8))
    x.grad = None
    x.mean().backward()
    np.testing.assert_array_equal(host(x.grad), np.full((2, 3, 4), 1 / 24))


# ------------------------------------------------------------------ values

@pytest.mark.parametrize("name", ["sum", "mean"])
@WITH_FIXTURE
@given(case=shapes_and_dims(), seed=seeds())
def test_sum_and_mean_agree_with_numpy(xp, name, case, seed):
    shape, dim, keepdim = case
    a = normal_array(shape, seed)
    out = getattr(F, name)(mr.tensor(xp.asarray(a)), dim, keepdim)
    want = getattr(np, name)(a, axis=numpy_axis(dim), keepdims=keepdim)
    assert out.shape == np.shape(want)
    np.testing.assert_allclose(host(out.data), want, rtol=1e-13, atol=1e-15)


@WITH_FIXTURE
@given(case=shapes_and_dims(single_dim=True), seed=seeds())
def test_max_agrees_with_numpy(xp, case, seed):
    shape, dim, keepdim = case
    a = normal_array(shape, seed)
    out = max_values(mr.tensor(xp.asarray(a)), dim, keepdim)
    want = np.max(a, axis=dim, keepdims=keepdim)
    assert out.shape == np.shape(want)
    np.testing.assert_array_equal(host(out.data), want)
    if dim is not None:
        indices = F.max(mr.tensor(xp.asarray(a)), dim, keepdim).indices
        np.testing.assert_array_equal(host(indices.data), np.argmax(a, axis=dim, keepdims=keepdim))


def test_reductions_of_a_single_value(xp):
    x = leaf(xp, 2.5)
    for op in (F.sum, F.mean, F.max):
        x.grad = None
        out = op(x)
        assert out.shape == () and out.item() == 2.5
        out.backward()
        assert float(x.grad) == 1.0


# ------------------------------------------------------------------ the first-maximum rule, exactly

TIES = [[1.0, 3.0, 3.0, 2.0],
        [1.0, 3.0, 3.0, 0.0]]


@pytest.mark.parametrize("values, dim, keepdim, expected", [
    (TIES, None, False, [[0, 1, 0, 0], [0, 0, 0, 0]]),                  # first of the four 3s, row-major
    (TIES, 1, False, [[0, 1, 0, 0], [0, 1, 0, 0]]),
    (TIES, -1, True, [[0, 1, 0, 0], [0, 1, 0, 0]]),
    (TIES, 0, False, [[1, 1, 1, 1], [0, 0, 0, 0]]),                     # every column ties or row 0 wins
    ([[0.0, 5.0, 1.0], [4.0, 5.0, 1.0]], 0, True, [[0, 1, 1], [1, 0, 0]]),
])
def test_max_sends_the_gradient_to_the_first_maximum_only(xp, values, dim, keepdim, expected):
    x = leaf(xp, values)
    out = max_values(x, dim, keepdim)
    out.backward(xp.ones(out.shape))
    np.testing.assert_array_equal(host(x.grad), expected)


def max_values(x, dim, keepdim=False):
    """The values of ``max``: with ``dim`` it returns ``(values, indices)``, as torch.max does."""
    return F.max(x, dim, keepdim) if dim is None else F.max(x, dim, keepdim).values


def test_max_along_a_dim_returns_values_and_indices_like_torch(xp):
    x = leaf(xp, [[1.0, 9.0, 3.0], [7.0, 2.0, 7.0]])
    values, indices = x.max(1)
    np.testing.assert_array_equal(host(values.data), [9.0, 7.0])
    np.testing.assert_array_equal(host(indices.data), [1, 0])                   # first of the tied 7s
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert x.max(0, keepdim=True).indices.shape == (1, 3)


def test_max_of_all_equal_values_picks_the_first(xp):
    x = leaf(xp, np.full((3, 2), 7.0))
    F.max(x, 0).values.backward(xp.asarray([2.0, 5.0]))
    np.testing.assert_array_equal(host(x.grad), [[2.0, 5.0], [0.0, 0.0], [0.0, 0.0]])


# ------------------------------------------------------------------ dtypes and errors

@pytest.mark.parametrize("op", [F.sum, F.mean, max_values], ids=["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [None, 1])
def test_float32_stays_float32(xp, op, dim):
    x = leaf(xp, distinct_values((3, 4), 0), np.float32)
    out = op(x, dim)
    assert out.dtype == np.float32
    out.backward(xp.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("op", [F.sum, F.mean, F.max], ids=["sum", "mean", "max"])
def test_a_dimension_out_of_range_is_a_clear_error(xp, op):
    x = mr.tensor(xp.ones((2, 3)))
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        op(x, 2)
    with pytest.raises(IndexError, match=r"in range of \[-2, 1\], but got -3"):
        op(x, -3)


def test_max_over_several_dims_is_a_clear_type_error():
    x = mr.randn(2, 3, 4)
    with pytest.raises(TypeError, match=r"max takes one dim \(an int\).*got \(0, 2\)"):
        F.max(x, (0, 2))
