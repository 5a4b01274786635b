"""cat, stack, where: gradients (broadcasting along leading and middle axes for where), the oracle,
PyTorch's values, empty inputs, errors."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.reference import extra as ref
from minires.testing import GradcheckError, gradcheck
from minires.testing.strategies import normal_array, seeds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extra_ops.npz"


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
       sizes=st.lists(st.integers(0, 3), min_size=1, max_size=3), seed=seeds(), data=st.data())
@example(shape=(2, 3, 4), sizes=[1, 3, 2], seed=0, data=None)
def test_cat_gradcheck_and_oracle_along_each_axis(xp, shape, sizes, seed, data):
    dims = range(-len(shape), len(shape))
    for dim in ([data.draw(st.sampled_from(list(dims)))] if data is not None else dims):
        parts = []
        for k, n in enumerate(sizes):
            s = list(shape)
            s[dim] = n
            parts.append(normal_array(tuple(s), seed + k))
        out = F.cat([mr.tensor(xp.asarray(p)) for p in parts], dim)
        np.testing.assert_array_equal(backend.to_numpy(out.data), ref.cat(parts, dim))
        if sum(sizes):
            assert gradcheck(lambda *t: F.cat(list(t), dim), *[leaf(xp, p) for p in parts], seed=seed)


@given(shape=st.lists(st.integers(1, 3), max_size=3).map(tuple), n=st.integers(1, 3), seed=seeds(), data=st.data())
@example(shape=(2, 3), n=3, seed=0, data=None)
def test_stack_gradcheck_and_oracle_along_each_axis(xp, shape, n, seed, data):
    dims = range(-len(shape) - 1, len(shape) + 1)
    for dim in ([data.draw(st.sampled_from(list(dims)))] if data is not None else dims):
        parts = [normal_array(shape, seed + k) for k in range(n)]
        out = F.stack([mr.tensor(xp.asarray(p)) for p in parts], dim)
        np.testing.assert_array_equal(backend.to_numpy(out.data), ref.stack(parts, dim))
        assert gradcheck(lambda *t: F.stack(list(t), dim), *[leaf(xp, p) for p in parts], seed=seed)


SHAPES = [((3, 4), (3, 4), (3, 4)), ((3, 1, 4), (1, 2, 4), (3, 2, 1)), ((2, 3, 4), (1, 3, 4), (2, 1, 4)),
          ((2, 3), (3,), (2, 1)), ((4,), (2, 1, 4), ())]


@given(shapes=st.sampled_from(SHAPES), seed=seeds())
@example(shapes=SHAPES[1], seed=0)                       # a broadcast along the leading and the middle axis
@example(shapes=SHAPES[2], seed=1)
@example(shapes=SHAPES[4], seed=2)
def test_where_gradcheck_with_broadcasting(xp, shapes, seed):
    cshape, ashape, bshape = shapes
    cond = np.random.default_rng(seed).random(cshape) < 0.5
    a, b = normal_array(ashape, seed), normal_array(bshape, seed + 1)
    out = F.where(mr.tensor(xp.asarray(cond)), mr.tensor(xp.asarray(a)), mr.tensor(xp.asarray(b)))
    np.testing.assert_array_equal(backend.to_numpy(out.data), ref.where(cond, a, b))
    assert gradcheck(lambda s, t: F.where(mr.tensor(xp.asarray(cond)), s, t), leaf(xp, a), leaf(xp, b), seed=seed)


SMALL = {"leading": (1, 3, 4), "middle": (2, 1, 4), "missing-leading": (3, 4), "trailing": (2, 3, 1)}
WHERE_CASES = {f"{role}-{kind}": tuple(small if r == role else (2, 3, 4) for r in ("cond", "a", "b"))
               for role in ("cond", "a", "b") for kind, small in SMALL.items()}
WHERE_CASES["all-three"] = ((2, 1, 1), (1, 3, 1), (1, 1, 4))


def where_gradcheck(xp, shapes, seed=5):
    cshape, ashape, bshape = shapes
    cond = mr.tensor(xp.asarray(np.random.default_rng(seed).random(cshape) < 0.5))
    a, b = leaf(xp, normal_array(ashape, seed)), leaf(xp, normal_array(bshape, seed + 1))
    return gradcheck(lambda s, t: F.where(cond, s, t), a, b, seed=seed)          # random upstream G


@pytest.mark.parametrize("case", sorted(WHERE_CASES))
def test_where_gradient_broadcasts_each_argument_along_every_axis(xp, case):
    """Explicit cases: the condition, input and other each broadcast along a leading, a middle,
    a missing and a trailing axis, so a derandomized CI run checks every one."""
    assert where_gradcheck(xp, WHERE_CASES[case])


@pytest.mark.parametrize("case", ["a-middle", "b-leading", "all-three"])
def test_the_where_cases_catch_a_sum_to_shape_that_forgets_stretched_axes(xp, monkeypatch, case):
    import minires.functional.combine as combine

    def first_copy_of_stretched_axes(grad, shape):                          # a planted bug
        lead = grad.ndim - len(shape)
        grad = grad.sum(axis=tuple(range(lead))) if lead > 0 else grad
        return grad[tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)]
    monkeypatch.setattr(combine, "sum_to_shape", first_copy_of_stretched_axes)
    with pytest.raises(GradcheckError):
        where_gradcheck(xp, WHERE_CASES[case])


def test_where_takes_numbers_and_sends_no_gradient_to_the_other_branch(xp):
    x = leaf(xp, [-1.0, 2.0, np.nan])
    out = F.where(x > 0, x, 0.0)
    out.backward(xp.asarray([10.0, 10.0, 10.0]))
    np.testing.assert_array_equal(backend.to_numpy(out.data), [0.0, 2.0, 0.0])      # NaN > 0 is False
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [0.0, 10.0, 0.0])


def test_empty_inputs_pass_both_ways(xp):
    a, b = leaf(xp, np.zeros((0, 3))), leaf(xp, np.ones((2, 3)))
    F.cat([a, b], 0).backward(xp.ones((2, 3)))
    assert a.grad.shape == (0, 3) and b.grad.shape == (2, 3)
    c, d = leaf(xp, np.zeros((0, 3))), leaf(xp, np.zeros((0, 3)))
    out = F.stack([c, d], 1)
    out.backward(xp.zeros((0, 2, 3)))
    assert out.shape == (0, 2, 3) and c.grad.shape == (0, 3)
    out = F.where(mr.tensor(xp.zeros((0, 3), dtype=bool)), c, 1.0)
    out.backward(xp.zeros((0, 3)))
    assert out.shape == (0, 3)


def test_bad_arguments_are_clear_errors(xp):
    a, b = mr.tensor(xp.zeros((2, 3))), mr.tensor(xp.zeros((2, 4)))
    with pytest.raises(ValueError, match="must match except in dimension 0"):
        F.cat([a, b], 0)
    with pytest.raises(IndexError, match=r"range of \[-2, 1\], but got 2"):
        F.cat([a, a], 2)
    with pytest.raises(IndexError, match=r"range of \[-3, 2\], but got 3"):
        F.stack([a, a], 3)
    with pytest.raises(ValueError, match="non-empty list"):
        F.cat([], 0)
    with pytest.raises(ValueError, match="equal size"):
        F.stack([a, b])
    with pytest.raises(TypeError, match="dtypes float64 and float32"):
        F.cat([a, a.to("float32")])
    with pytest.raises(TypeError, match="boolean condition"):
        F.where(a, a, a)


@pytest.mark.parametrize("name", ["cat", "stack", "where"])
def test_combine_agrees_with_pytorch(xp, name):
    data = np.load(FIXTURES, allow_pickle=False)
    for k in range(int(data[f"{name}/meta/num_cases"])):
        prefix = f"{name}/case{k}/"
        dtype, params = np.dtype(str(data[prefix + "dtype"])), json.loads(str(data[prefix + "params"]))
        names = [n for n in "abc" if prefix + n in data]
        leaves = [leaf(xp, data[prefix + n], dtype) for n in names]
        if name == "where":
            out = F.where(mr.tensor(xp.asarray(data[prefix + "condition"])), *leaves)
        else:
            out = getattr(F, name)(leaves, **params)
        np.testing.assert_array_equal(backend.to_numpy(out.data), data[prefix + "out"])
        out.backward(xp.asarray(data[prefix + "dout"]))
        for n, t in zip(names, leaves):
            np.testing.assert_allclose(backend.to_numpy(t.grad.data), data[prefix + "grad_" + n],
                                       rtol=1e-6 if dtype == np.float32 else 1e-14, err_msg=f"{prefix}grad_{n}")
