"""pad: linear, so gradcheck AND an adjoint test, and the forward against numpy.pad."""
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import normal_array, seeds

WITH_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def pads(draw):
    """A shape of 1 to 4 axes and PyTorch's flat pad tuple for some of its last axes (last axis first)."""
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)))
    axes = draw(st.integers(1, len(shape)))
    return shape, tuple(draw(st.lists(st.integers(0, 2), min_size=2 * axes, max_size=2 * axes)))


def numpy_pad(a, pad, value=0.0):
    widths = [(0, 0)] * (a.ndim - len(pad) // 2) + [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)][::-1]
    return np.pad(a, widths, constant_values=value)


@WITH_FIXTURE
@given(case=pads(), seed=seeds())
@example(case=((2, 3, 2, 2), (0, 0, 0, 0, 0, 3)), seed=0)      # the option-A shortcut: 3 more channels
@example(case=((2, 2, 3, 3), (1, 1, 1, 1)), seed=1)            # a conv's spatial padding
@example(case=((3,), (0, 0)), seed=2)                          # nothing to pad
def test_pad_gradcheck_adjoint_and_numpy(xp, device, case, seed):
    shape, pad = case
    a = normal_array(shape, seed)
    fn = lambda t: F.pad(t, pad)                                 # noqa: E731
    assert gradcheck(fn, mr.tensor(xp.asarray(a), requires_grad=True), seed=seed)
    assert adjoint_check(fn, shape, seed=seed, device=device)
    np.testing.assert_array_equal(backend.to_numpy(fn(mr.tensor(xp.asarray(a))).data), numpy_pad(a, pad))


def test_pad_with_a_value_and_its_gradient_ignores_the_padding(xp):
    x = mr.tensor(xp.asarray([[1.0, 2.0]]), requires_grad=True)
    out = F.pad(x, (1, 2), value=-1.5)
    np.testing.assert_array_equal(backend.to_numpy(out.data), [[-1.5, 1.0, 2.0, -1.5, -1.5]])
    out.backward(xp.asarray([[10.0, 20.0, 30.0, 40.0, 50.0]]))
    np.testing.assert_array_equal(backend.to_numpy(x.grad.data), [[20.0, 30.0]])


def test_float32_stays_float32(xp):
    x = mr.tensor(xp.asarray(normal_array((2, 3, 2, 2), 0), dtype=np.float32), requires_grad=True)
    out = F.pad(x, (0, 0, 0, 0, 0, 3))
    assert out.dtype == np.float32 and out.shape == (2, 6, 2, 2)
    out.backward(xp.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("pad, mode, message", [
    ((1,), "constant", "pairs"),
    ((0, 0, 0, 0, 0, 0, 0, 0, 1, 1), "constant", "at most the 4 axes"),
    ((-1, 0), "constant", "non-negative integers"),
    ((1.5, 0), "constant", "non-negative integers"),
    ((1, 1), "reflect", "mode='constant' only"),
])
def test_errors_say_what_was_expected(pad, mode, message):
    with pytest.raises(ValueError, match=message):
        F.pad(mr.tensor(np.zeros((1, 1, 2, 2))), pad, mode=mode)
