"""dropout and nn.Dropout: PyTorch's scaling, the seeded mask, eval mode, p = 0 and 1, PyTorch's values."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires as mr
from minires import backend
from minires import functional as F
from minires import nn
from minires.functional.dropout import Dropout as DropoutFunction
from minires.reference import extra as ref
from minires.testing import gradcheck
from minires.testing.strategies import normal_array, seeds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extra_ops.npz"


def leaf(xp, values, dtype=np.float64):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


@given(p=st.sampled_from([0.1, 0.5, 0.9]), seed=seeds())
@example(p=0.5, seed=0)
def test_dropout_gradcheck_and_oracle_with_a_fixed_mask(xp, p, seed):
    x = normal_array((3, 5), seed)
    keep = np.random.default_rng(seed).random((3, 5)) >= p
    fn = lambda t: DropoutFunction.apply(t, mask=xp.asarray(keep), p=p)  # noqa: E731
    np.testing.assert_allclose(backend.to_numpy(fn(mr.tensor(xp.asarray(x))).data), ref.dropout(x, keep, p),
                               rtol=1e-15)
    assert gradcheck(fn, leaf(xp, x), seed=seed, name="dropout")


def test_dropout_draws_from_minires_generator_and_scales_as_pytorch(xp):
    x = leaf(xp, np.ones((200, 50)))
    mr.manual_seed(3)
    out = F.dropout(x, p=0.25)
    mr.manual_seed(3)
    again = F.dropout(x, p=0.25)
    np.testing.assert_array_equal(out.numpy(), again.numpy())                      # reproducible
    assert set(np.unique(out.numpy())) == {0.0, np.float64(1 / 0.75)}
    assert abs((out.numpy() == 0).mean() - 0.25) < 0.02
    G = np.random.default_rng(0).standard_normal((200, 50))
    out.backward(xp.asarray(G))
    np.testing.assert_allclose(x.grad.numpy(), G * out.numpy())                    # dx = dout * mask / (1 - p)


def test_p_zero_eval_and_p_one_as_pytorch(xp):
    x = leaf(xp, [[1.0, np.nan, 3.0]])
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.5, training=False) is x
    out = F.dropout(x, 1.0)
    np.testing.assert_array_equal(out.numpy(), [[0.0, np.nan, 0.0]])                # NaN * 0 stays NaN
    x32 = mr.tensor(xp.ones((0, 4), dtype=np.float32), requires_grad=True)
    empty = F.dropout(x32, 0.5)
    empty.backward(xp.ones((0, 4), dtype=np.float32))
    assert empty.dtype == np.float32 and x32.grad.shape == (0, 4)


def test_module_is_off_in_eval_mode(xp):
    layer = nn.Dropout(0.5)
    x = mr.tensor(xp.ones((10, 10)))
    assert (layer(x).numpy() == 0).any()
    layer.eval()
    assert layer(x) is x
    assert repr(layer) == "Dropout(p=0.5, inplace=False)"


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5"])
def test_bad_probability_is_pytorchs_error(xp, p):
    with pytest.raises(ValueError, match="has to be between 0 and 1"):
        F.dropout(mr.tensor(xp.ones(3)), p)
    with pytest.raises(ValueError, match="has to be between 0 and 1"):
        nn.Dropout(p)


def test_dropout_agrees_with_pytorch_given_its_mask(xp):
    data = np.load(FIXTURES, allow_pickle=False)
    for k in range(int(data["dropout/meta/num_cases"])):
        prefix = f"dropout/case{k}/"
        dtype, params = np.dtype(str(data[prefix + "dtype"])), json.loads(str(data[prefix + "params"]))
        x, torch_out = leaf(xp, data[prefix + "x"], dtype), data[prefix + "out"]
        keep = torch_out != 0                                       # x has no zeros: the mask reads back
        out = DropoutFunction.apply(x, mask=xp.asarray(keep), p=params["p"])
        np.testing.assert_array_equal(backend.to_numpy(out.data), torch_out)
        out.backward(xp.asarray(data[prefix + "dout"]))
        np.testing.assert_array_equal(backend.to_numpy(x.grad.data), data[prefix + "grad_x"])
