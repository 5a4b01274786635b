"""Elementwise arithmetic: gradients by finite differences, values against NumPy, dtypes kept."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.functional.arithmetic import check_same_dtype, sum_to_shape
from minires.testing import GradcheckError, gradcheck
from minires.testing.strategies import normal_array, seeds

WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


@st.composite
def broadcast_pairs(draw):
    """Two shapes that broadcast: each drops some leading axes of the result and sets some to 1."""
    out = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))

    def one_side():
        ndim = draw(st.integers(0, len(out)))
        return tuple(1 if draw(st.booleans()) else n for n in out[len(out) - ndim:])
    return one_side(), one_side()


def positive(shape, seed):
    """Values in about [0.5, 3]: log, sqrt and a pow base stay far from their singularity at 0."""
    return 0.5 + np.abs(normal_array(shape, seed))


BINARY = {"add": (F.add, np.add), "sub": (F.sub, np.subtract), "mul": (F.mul, np.multiply),
          "div": (F.div, np.divide), "pow": (F.pow, np.power)}
UNARY = {"neg": (F.neg, np.negative, normal_array), "exp": (F.exp, np.exp, normal_array),
         "log": (F.log, np.log, positive), "sqrt": (F.sqrt, np.sqrt, positive)}


def binary_inputs(name, shapes, seed):
    a_shape, b_shape = shapes
    a = positive(a_shape, seed) if name == "pow" else normal_array(a_shape, seed)
    b = positive(b_shape, seed + 1) if name == "div" else normal_array(b_shape, seed + 1)
    return a, b


# ------------------------------------------------------------------ gradients

@pytest.mark.parametrize("name", sorted(BINARY))
@WITH_FIXTURE
@given(shapes=broadcast_pairs(), seed=seeds())
def test_binary_gradcheck_with_broadcasting(xp, name, shapes, seed):
    op = BINARY[name][0]
    a, b = binary_inputs(name, shapes, seed)
    assert gradcheck(op, leaf(xp, a), leaf(xp, b), seed=seed)


# Explicit shape pairs, so that a derandomized CI run always broadcasts along every kind of axis.
BROADCAST_PAIRS = {
    "leading": ((2, 3, 4), (1, 3, 4)),
    "middle": ((2, 3, 4), (2, 1, 4)),
    "missing-leading": ((2, 3, 4), (3, 4)),
    "trailing": ((2, 3, 4), (2, 3, 1)),
    "both-sides": ((2, 1, 4), (1, 3, 1)),
    "missing-and-middle": ((2, 3, 4), (3, 1)),
    "scalar": ((2, 3, 4), ()),
}


@pytest.mark.parametrize("swap", [False, True], ids=["b-broadcasts", "a-broadcasts"])
@pytest.mark.parametrize("pair", sorted(BROADCAST_PAIRS))
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradient_broadcasts_along_every_axis(xp, name, pair, swap):
    a_shape, b_shape = BROADCAST_PAIRS[pair]
    shapes = (b_shape, a_shape) if swap else (a_shape, b_shape)
    a, b = binary_inputs(name, shapes, 7)
    assert gradcheck(BINARY[name][0], leaf(xp, a), leaf(xp, b), seed=7)     # random upstream G


def sum_leading_axes_only(grad, shape):
    """A planted bug: sums the axes broadcasting added, but of each stretched axis keeps only the
    first copy (the right shape, so only the values can give it away)."""
    shape = tuple(shape)
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead))) if lead > 0 else grad
    return grad[tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)]


@pytest.mark.parametrize("pair", ["leading", "middle", "both-sides", "missing-and-middle"])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_the_broadcast_cases_catch_a_sum_to_shape_that_forgets_stretched_axes(xp, monkeypatch, name, pair):
    import minires.functional.arithmetic as arithmetic
    monkeypatch.setattr(arithmetic, "sum_to_shape", sum_leading_axes_only)
    a, b = binary_inputs(name, BROADCAST_PAIRS[pair], 7)
    with pytest.raises(GradcheckError):
        gradcheck(BINARY[name][0], leaf(xp, a), leaf(xp, b), seed=7)


@pytest.mark.parametrize("name", sorted(UNARY))
@WITH_FIXTURE
@given(shape=st.lists(st.integers(1, 4), max_size=3).map(tuple), seed=seeds())
def test_unary_gradcheck(xp, name, shape, seed):
    op, _, values = UNARY[name]
    assert gradcheck(op, leaf(xp, values(shape, seed)), seed=seed)


@WITH_FIXTURE
@given(seed=seeds(), exponent=st.sampled_from([2, 3, -1, 0.5, 1.5]))
def test_pow_with_a_number_exponent(xp, seed, exponent):
    x = leaf(xp, positive((2, 3), seed))
    assert gradcheck(lambda t: t ** exponent, x, seed=seed)
    if exponent > 0:                                                     # a number base, a tensor exponent
        assert gradcheck(lambda t: exponent ** t, x, seed=seed)


def test_exact_derivatives_at_simple_points(xp):
    a, b = leaf(xp, [3.0]), leaf(xp, [2.0])
    F.div(a, b).backward(xp.ones(1))
    assert float(a.grad[0]) == 0.5 and float(b.grad[0]) == -0.75        # 1/b and -a/b^2
    a.grad = b.grad = None
    F.pow(a, b).backward(xp.ones(1))
    assert float(a.grad[0]) == 6.0                                       # b a^(b-1)
    np.testing.assert_allclose(float(b.grad[0]), 9.0 * np.log(3.0), rtol=1e-15)  # a^b log a


# ------------------------------------------------------------------ values and dtypes

@pytest.mark.parametrize("name", sorted(BINARY))
@WITH_FIXTURE
@given(shapes=broadcast_pairs(), seed=seeds())
def test_binary_forward_agrees_with_numpy(xp, name, shapes, seed):
    op, reference = BINARY[name]
    a, b = binary_inputs(name, shapes, seed)
    out = op(mr.tensor(xp.asarray(a)), mr.tensor(xp.asarray(b)))
    np.testing.assert_allclose(backend.to_numpy(out.data), reference(a, b), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward_agrees_with_numpy(xp, name):
    op, reference, values = UNARY[name]
    a = values((3, 4), 0)
    np.testing.assert_allclose(backend.to_numpy(op(mr.tensor(xp.asarray(a))).data), reference(a), rtol=1e-14)


@pytest.mark.parametrize("name", sorted(BINARY) + sorted(UNARY))
def test_float32_stays_float32(xp, name):
    if name in BINARY:
        a, b = binary_inputs(name, ((2, 3), (3,)), 0)
        x, y = leaf(xp, a, np.float32), leaf(xp, b, np.float32)
        out = BINARY[name][0](x, y)
        inputs = (x, y)
    else:
        x = leaf(xp, UNARY[name][2]((2, 3), 0), np.float32)
        out = UNARY[name][0](x)
        inputs = (x,)
    assert out.dtype == np.float32
    out.backward(xp.ones(out.shape, dtype=np.float32))
    assert all(t.grad.dtype == np.float32 for t in inputs)


def test_mixed_dtypes_are_refused_with_a_fix(xp):
    with pytest.raises(TypeError, match=r"mul got inputs of dtypes float64 and float32.*y.to\('float64'\)"):
        check_same_dtype("mul", xp.ones(1), xp.ones(1, dtype=np.float32))
    check_same_dtype("mul", xp.ones(1), xp.ones(2))


# ------------------------------------------------------------------ sum_to_shape

@WITH_FIXTURE
@given(shapes=broadcast_pairs(), seed=seeds())
def test_sum_to_shape_adds_up_every_copy(xp, shapes, seed):
    shape = shapes[0]
    out_shape = np.broadcast_shapes(*shapes)
    grad = normal_array(out_shape, seed)
    positions = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), out_shape)
    expected = np.bincount(positions.reshape(-1), weights=grad.reshape(-1),
                           minlength=int(np.prod(shape))).reshape(shape)   # by counting each copy
    got = sum_to_shape(xp.asarray(grad), shape)
    assert tuple(got.shape) == shape
    np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-12, atol=1e-12)
