"""reshape, flatten, transpose, permute, getitem: all linear, so gradcheck AND an adjoint test."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import normal_array, seeds

WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

small_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


def check_everything(xp, device, fn, reference, shape, seed):
    """gradcheck, the adjoint identity, and the forward against NumPy's version of the same move."""
    a = normal_array(shape, seed)
    assert gradcheck(fn, leaf(xp, a), seed=seed)
    assert adjoint_check(fn, shape, seed=seed, device=device)
    np.testing.assert_array_equal(backend.to_numpy(fn(mr.tensor(xp.asarray(a))).data), reference(a))


@st.composite
def reshapes(draw):
    """A shape and another shape with the same number of elements (maybe with one -1)."""
    shape = draw(small_shapes)
    n = int(np.prod(shape))
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    first = draw(st.sampled_from(divisors))
    new = draw(st.sampled_from([(n,), (first, n // first), (n // first, 1, first)]))
    if draw(st.booleans()):
        new = tuple(-1 if i == 0 else m for i, m in enumerate(new))
    return shape, new


@WITH_FIXTURE
@given(case=reshapes(), seed=seeds())
def test_reshape(xp, device, case, seed):
    shape, new = case
    check_everything(xp, device, lambda t: F.reshape(t, new), lambda a: a.reshape(new), shape, seed)


@WITH_FIXTURE
@given(shape=small_shapes, data=st.data(), seed=seeds())
def test_flatten(xp, device, shape, data, seed):
    ndim = len(shape)
    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1)) - (ndim if data.draw(st.booleans()) else 0)
    merged = shape[:start] + (int(np.prod(shape[start:end % ndim + 1])),) + shape[end % ndim + 1:]
    check_everything(xp, device, lambda t: F.flatten(t, start, end), lambda a: a.reshape(merged), shape, seed)


@WITH_FIXTURE
@given(shape=small_shapes, data=st.data(), seed=seeds())
def test_transpose(xp, device, shape, data, seed):
    ndim = len(shape)
    dim0, dim1 = (data.draw(st.integers(-ndim, ndim - 1)) for _ in range(2))
    check_everything(xp, device, lambda t: F.transpose(t, dim0, dim1), lambda a: np.swapaxes(a, dim0, dim1),
                     shape, seed)


@WITH_FIXTURE
@given(shape=small_shapes, data=st.data(), seed=seeds())
def test_permute(xp, device, shape, data, seed):
    dims = tuple(data.draw(st.permutations(range(len(shape)))))
    if data.draw(st.booleans()):
        dims = tuple(d - len(shape) for d in dims)                       # negative axes name the same order
    check_everything(xp, device, lambda t: F.permute(t, dims), lambda a: np.transpose(a, dims), shape, seed)


INDICES = [
    (1,), (slice(None), -1), (slice(1, None), slice(None, None, -2)), (Ellipsis, 2), (None, 0),
    (slice(None), None, slice(1, 3)),
]


@pytest.mark.parametrize("index", INDICES, ids=[str(i) for i in INDICES])
def test_getitem_with_basic_indices(xp, device, index):
    check_everything(xp, device, lambda t: F.getitem(t, index), lambda a: a[index], (3, 4), 0)


@WITH_FIXTURE
@given(rows=st.lists(st.integers(0, 2), min_size=1, max_size=6), cols=st.integers(0, 3), seed=seeds())
def test_getitem_with_repeated_integer_indices(xp, device, rows, cols, seed):
    """Picking a row twice gives it the gradient twice: the backward must add, not assign."""
    picks = np.array(rows)
    check_everything(xp, device, lambda t: F.getitem(t, (xp.asarray(picks), slice(None))),
                     lambda a: a[picks, :], (3, 4), seed)
    check_everything(xp, device, lambda t: F.getitem(t, (xp.asarray(picks), cols)),
                     lambda a: a[picks, cols], (3, 4), seed)
    x = leaf(xp, normal_array((3, 4), seed))
    F.getitem(x, (xp.asarray(picks), slice(None))).backward(xp.ones((len(rows), 4)))
    np.testing.assert_array_equal(backend.to_numpy(x.grad)[:, 0], np.bincount(picks, minlength=3))


def test_getitem_with_a_boolean_mask(xp, device):
    mask = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
    check_everything(xp, device, lambda t: F.getitem(t, xp.asarray(mask)), lambda a: a[mask], (3, 4), 0)


@pytest.mark.parametrize("fn", [
    lambda t: F.reshape(t, (4, 3)), lambda t: F.flatten(t), lambda t: F.transpose(t, 0, 1),
    lambda t: F.permute(t, (1, 0)), lambda t: F.getitem(t, (slice(None), [0, 0])),
], ids=["reshape", "flatten", "transpose", "permute", "getitem"])
def test_float32_stays_float32(xp, fn):
    x = leaf(xp, normal_array((3, 4), 0), np.float32)
    out = fn(x)
    assert out.dtype == np.float32
    out.backward(xp.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32


def test_errors_say_what_was_expected(xp):
    x = mr.tensor(xp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into"):
        F.reshape(x, (4,))
    with pytest.raises(ValueError, match=r"permute needs each of the 2 dimensions once, got \(0, 0\)"):
        F.permute(x, (0, 0))
    with pytest.raises(ValueError, match="flatten needs start_dim <= end_dim"):
        F.flatten(x, 1, 0)
