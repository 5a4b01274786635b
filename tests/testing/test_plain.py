"""check_backward: plain NumPy forward/backward pairs, checked with the same tiers and messages."""
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minires.testing import GradcheckError, backward_property, check_backward
from minires.testing.strategies import normal_array

ELEMENT = re.compile(r"gradcheck of (\w+) failed: input (\d) '(\w+)' \(shape \(([\d, ]*)\)\), worst element "
                     r"\(([\d, ]*)\): analytic \S+, numeric \S+, relative error \S+ \(eps=")


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    return dout * (x > 0)                               # one input: one array, not a tuple


def softmax_loss_forward(x, y):
    """A scalar loss with integer labels: y passes through and gets no gradient."""
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean(), (np.exp(logp), y)


def softmax_loss_backward(dout, cache):
    p, y = cache
    dx = p.copy()
    dx[np.arange(len(y)), y] -= 1
    return (dx * dout / len(y),)


def arrays(*shapes, seed=0):
    return [normal_array(s, seed + k) for k, s in enumerate(shapes)]


def test_correct_pairs_pass_and_the_caller_arrays_are_left_alone():
    x, w, b = arrays((4, 5), (5, 3), (3,))
    before = [a.copy() for a in (x, w, b)]
    assert check_backward(affine_forward, affine_backward, x, w, b)
    for a, kept in zip((x, w, b), before):
        np.testing.assert_array_equal(a, kept)
    assert check_backward(relu_forward, relu_backward, normal_array((3, 4), 1) + 0.5)
    y = np.array([0, 2, 1, 2])
    assert check_backward(softmax_loss_forward, softmax_loss_backward, normal_array((4, 3), 2), y)


@pytest.mark.parametrize("wrong, position, name", [
    (lambda dout, c: (dout @ c[1].T, c[0].T @ dout, dout.mean(axis=0)), 2, "b"),     # db averaged
    (lambda dout, c: (dout @ c[1].T, c[0].T @ dout * 2, dout.sum(axis=0)), 1, "w"),  # a factor 2 in dw
    (lambda dout, c: (dout @ c[1].T / 4, c[0].T @ dout, dout.sum(axis=0)), 0, "x"),  # 1/N where none is
])
def test_a_wrong_gradient_is_named_by_input_position_and_parameter_name(wrong, position, name):
    wrong.__name__ = "affine_backward"
    with pytest.raises(GradcheckError) as caught:
        check_backward(affine_forward, wrong, *arrays((4, 5), (5, 3), (3,)))
    match = ELEMENT.search(str(caught.value))
    assert match, str(caught.value)
    assert match.group(1) == "affine_backward" and int(match.group(2)) == position and match.group(3) == name
    assert "weighted by G" in str(caught.value) and "The Jacobian entry d out[" in str(caught.value)


def test_a_zero_gradient_does_not_hide_behind_a_sum_of_ones():
    """Centring: sum(out) is constant, so an all-ones check would pass dx = 0. A random G does not."""
    def forward(x):
        return x - x.mean(), None

    def zero_backward(dout, cache):
        return np.zeros_like(dout)
    with pytest.raises(GradcheckError, match="input 0 'x'"):
        check_backward(forward, zero_backward, normal_array((5,), 3))


def test_mistakes_in_the_shape_of_the_pair_are_clear_errors():
    x, w, b = arrays((4, 5), (5, 3), (3,))
    with pytest.raises(TypeError, match=r"backward returned 2 gradient\(s\), but forward takes 3 float array"):
        check_backward(affine_forward, lambda dout, c: (dout @ c[1].T, c[0].T @ dout), x, w, b)
    with pytest.raises(ValueError, match=r"the gradient of input 2 'b' has shape \(4, 3\), but input 2 'b' has "
                                         r"shape \(3,\)"):
        check_backward(affine_forward, lambda dout, c: (dout @ c[1].T, c[0].T @ dout, dout), x, w, b)
    with pytest.raises(TypeError, match=r"forward must return \(out, cache\)"):
        check_backward(lambda x: x * 2, relu_backward, x)
    with pytest.raises(TypeError, match=r"input 0 'x' is float32; finite differences need float64"):
        check_backward(relu_forward, relu_backward, x.astype(np.float32))
    with pytest.raises(ValueError, match="none of the arguments is a floating-point NumPy array"):
        check_backward(relu_forward, relu_backward, [1.0, 2.0])


@st.composite
def affine_args(draw):
    n, d, m, seed = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 99))
    return tuple(arrays((n, d), (d, m), (m,), seed=seed))


test_affine_backward_property = settings(max_examples=10)(backward_property(affine_forward, affine_backward,
                                                                            affine_args()))


def test_backward_property_finds_a_wrong_backward():
    def wrong(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout, dout[0]          # the bias gradient of the first row only
    with pytest.raises(GradcheckError, match="input 2 'b'"):
        settings(max_examples=20, database=None)(backward_property(affine_forward, wrong, affine_args()))()


@given(n=st.integers(1, 3), seed=st.integers(0, 99))
@example(n=3, seed=0)
def test_check_backward_runs_under_given(n, seed):
    assert check_backward(affine_forward, affine_backward, *arrays((n, 2), (2, 3), (3,), seed=seed), seed=seed)
