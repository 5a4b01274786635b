"""Tensor: how one is built, what it reports, how it converts, and its operators and methods.

The gradients of the operations themselves are proved in tests/functional/; here each
method is checked to call the right operation, with the right arguments, on the right data.
"""
import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.tensor import Tensor


def on(xp, values, dtype=np.float64, requires_grad=False):
    return mr.tensor(xp.asarray(values, dtype=dtype), requires_grad=requires_grad)


# ------------------------------------------------------------------ construction

@pytest.mark.parametrize("data, dtype", [
    (1.5, np.float32), ([1.0, 2.0], np.float32), ([1, 2.5], np.float32), ([[0.5]], np.float32),
    (3, np.int64), ([1, 2], np.int64), (True, np.bool_), ([], np.float32),
    (np.float64(1.5), np.float64), (np.float32(1.5), np.float32),
])
def test_python_values_take_pytorchs_default_dtypes(data, dtype):
    assert mr.tensor(data).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32, np.int64, np.bool_])
def test_arrays_keep_their_dtype(xp, dtype):
    assert mr.tensor(xp.zeros((2, 3), dtype=dtype)).dtype == dtype


def test_dtype_and_device_arguments(xp, device):
    assert mr.tensor([1, 2], dtype="float64").dtype == np.float64
    assert mr.tensor(1.5, dtype=np.float64).dtype == np.float64
    assert mr.tensor(np.ones(3), dtype=np.float32).dtype == np.float32
    t = mr.tensor([1.0, 2.0], device=device)
    assert t.device == backend.normalize_device(device)
    assert backend.get_array_module(t.data) is xp
    assert mr.tensor(xp.ones(2)).device == backend.normalize_device(device)  # an array stays where it is


def test_the_data_is_copied(xp):
    source = xp.ones(3)
    t = mr.tensor(source)
    source[0] = 5.0
    assert float(t.data[0]) == 1.0
    u = mr.tensor(t)
    t.data[1] = 7.0
    assert float(u.data[1]) == 1.0


def test_tensor_wraps_only_arrays():
    with pytest.raises(TypeError, match=r"use minires.tensor\(data\)"):
        Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="mixed or ragged"):
        mr.tensor([None, 1])


def test_only_floating_tensors_can_require_grad(xp):
    message = "only floating-point tensors can require gradients, this one is int64"
    with pytest.raises(TypeError, match=message):
        mr.tensor([1, 2], requires_grad=True)
    t = mr.tensor(xp.arange(3))
    with pytest.raises(TypeError, match=r"x.to\('float32'\)"):
        t.requires_grad = True
    with pytest.raises(TypeError, match="bool"):
        mr.tensor(True).requires_grad_()


# ------------------------------------------------------------------ properties

def test_properties(xp, device):
    t = on(xp, np.zeros((2, 3, 4)), np.float32)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tuple)
    assert t.dtype == np.float32 and t.ndim == 3 and t.dim() == 3
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24 and len(t) == 2
    assert t.device == backend.normalize_device(device)
    assert t.is_leaf and t.grad_fn is None and t.grad is None and not t.requires_grad
    with pytest.raises(TypeError, match="0-d"):
        len(mr.tensor(1.0))


def test_recorded_results_know_their_creator(xp):
    x = on(xp, [1.0, 2.0], requires_grad=True)
    y = x * 2.0
    assert not y.is_leaf and type(y.grad_fn).__name__ == "Mul" and y.requires_grad
    with pytest.raises(RuntimeError, match=r"use .detach\(\)"):
        y.requires_grad = False


def test_repr_says_what_matters():
    assert repr(mr.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "dtype=float64" in repr(mr.tensor(np.ones(2)))
    x = mr.tensor([1.0], requires_grad=True)
    assert "requires_grad=True" in repr(x) and "grad_fn=<Mul>" in repr(x * 2.0)


# ------------------------------------------------------------------ leaving the graph, converting

def test_detach_shares_the_values_but_not_the_graph(xp):
    x = on(xp, [1.0, 2.0], requires_grad=True)
    y = (x * 3.0).detach()
    assert y.is_leaf and not y.requires_grad
    d = x.detach()
    d.data[0] = 9.0                                                     # shared memory, as in PyTorch
    assert float(x.data[0]) == 9.0


def test_item_and_python_numbers(xp):
    assert on(xp, [[2.5]]).item() == 2.5 and isinstance(on(xp, 2.5).item(), float)
    assert mr.tensor(3).item() == 3 and isinstance(mr.tensor(3).item(), int)
    assert float(on(xp, 1.5)) == 1.5 and int(mr.tensor(7)) == 7 and bool(on(xp, 1.0))
    with pytest.raises(ValueError, match=r"single-value tensor, this one has shape \(2,\)"):
        on(xp, [1.0, 2.0]).item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(on(xp, [1.0, 2.0]))


def test_numpy_and_tolist(xp):
    t = on(xp, [[1.0, 2.0]])
    array = t.numpy()
    assert isinstance(array, np.ndarray) and array.dtype == np.float64
    np.testing.assert_array_equal(array, [[1.0, 2.0]])
    assert t.tolist() == [[1.0, 2.0]]


def test_numpy_shares_memory_on_the_cpu():
    t = mr.tensor([1.0, 2.0])
    t.numpy()[0] = 5.0
    assert float(t.data[0]) == 5.0


def test_to_dtype(xp):
    x = on(xp, [1.5, -2.5], np.float32, requires_grad=True)
    d = x.to("float64")
    assert d.dtype == np.float64 and not d.is_leaf and d.requires_grad   # stays in the graph, as in PyTorch
    (d * d).sum().backward()
    assert x.grad.dtype == np.float32                                   # the gradient comes back in x's dtype
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [3.0, -5.0])
    assert x.to(np.float32) is x                                        # already there: itself
    assert x.double().dtype == np.float64 and d.float().dtype == np.float32
    i = x.to("int64")
    assert i.dtype == np.int64 and not i.requires_grad
    np.testing.assert_array_equal(backend.to_numpy(i.data), [1, -2])


def test_to_device_and_back(xp, device):
    x = on(xp, [1.0, 2.0])
    assert x.to(device) is x
    assert x.to("cpu").device == "cpu" and x.cpu().device == "cpu"
    np.testing.assert_array_equal(x.to("cpu").data, [1.0, 2.0])


@pytest.mark.skipif(backend.cuda_is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="'cuda'"):
        mr.tensor([1.0]).to("cuda")
    with pytest.raises(TypeError, match=r"a device \('cpu', 'cuda', 'cuda:N'\) or a dtype .* got 'gpu'"):
        mr.tensor([1.0]).to("gpu")


# ------------------------------------------------------------------ operators and methods

def test_operators_with_python_numbers_keep_the_tensors_dtype(xp):
    x = on(xp, [1.0, 2.0, 4.0], np.float32)
    expected = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    cases = {"x + 1": (x + 1, expected + 1), "1 + x": (1 + x, 1 + expected),
             "x - 0.5": (x - 0.5, expected - 0.5), "3 - x": (3 - x, 3 - expected),
             "2 * x": (2 * x, 2 * expected), "x / 4": (x / 4, expected / 4), "1 / x": (1 / x, 1 / expected),
             "-x": (-x, -expected), "x ** 2": (x ** 2, expected ** 2), "2 ** x": (2 ** x, 2 ** expected)}
    for name, (got, want) in cases.items():
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(backend.to_numpy(got.data), want, rtol=1e-6, err_msg=name)


def test_an_int_tensor_and_a_python_float_do_not_mix(xp):
    with pytest.raises(TypeError, match=r"mixes the int64 tensor with the float 0.5"):
        mr.tensor(xp.arange(3)) + 0.5
    assert (mr.tensor(xp.arange(3)) + 1).dtype == np.int64


def test_comparisons_give_boolean_tensors_without_a_graph(xp):
    x = on(xp, [1.0, 2.0, 3.0], requires_grad=True)
    for result, want in [(x > 2.0, [0, 0, 1]), (x >= 2.0, [0, 1, 1]), (x < 2.0, [1, 0, 0]),
                         (x <= 2.0, [1, 1, 0]), (x == 2.0, [0, 1, 0]), (x != 2.0, [1, 0, 1])]:
        assert result.dtype == np.bool_ and not result.requires_grad
        np.testing.assert_array_equal(backend.to_numpy(result.data), np.array(want, dtype=bool))
    assert (x > 0.0).all() and (x > 2.0).any() and not (x > 5.0).any()
    assert len({x, x * 1.0}) == 2                                       # hashed by identity


def test_shape_methods_agree_with_numpy(xp):
    a = np.arange(24.0).reshape(2, 3, 4)
    x = on(xp, a)
    cases = [(x.reshape(4, 6), a.reshape(4, 6)), (x.reshape((6, -1)), a.reshape(6, -1)),
             (x.view(-1), a.reshape(-1)), (x.flatten(), a.reshape(-1)), (x.flatten(1), a.reshape(2, 12)),
             (x.flatten(0, 1), a.reshape(6, 4)), (x.transpose(0, 2), a.transpose(2, 1, 0)),
             (x.transpose(-1, -2), a.swapaxes(-1, -2)), (x.permute(2, 0, 1), a.transpose(2, 0, 1)),
             (x.permute((1, 2, 0)), a.transpose(1, 2, 0)), (x.T, a.T)]
    for got, want in cases:
        np.testing.assert_array_equal(backend.to_numpy(got.data), want)


def test_reduction_and_elementwise_methods(xp):
    a = np.array([[1.0, 4.0, 2.0], [3.0, 0.5, 5.0]])
    x = on(xp, a)
    np.testing.assert_allclose(x.sum().item(), a.sum())
    np.testing.assert_allclose(backend.to_numpy(x.sum(1).data), a.sum(1))
    np.testing.assert_allclose(backend.to_numpy(x.mean(0, keepdim=True).data), a.mean(0, keepdims=True))
    np.testing.assert_array_equal(backend.to_numpy(x.max(1).values.data), a.max(1))
    np.testing.assert_array_equal(backend.to_numpy(x.argmax(1).data), [1, 2])
    np.testing.assert_allclose(backend.to_numpy(x.exp().data), np.exp(a))
    np.testing.assert_allclose(backend.to_numpy(x.log().data), np.log(a))
    np.testing.assert_allclose(backend.to_numpy(x.sqrt().data), np.sqrt(a))
    np.testing.assert_array_equal(backend.to_numpy((x - 2.0).relu().data), np.maximum(a - 2.0, 0.0))
    np.testing.assert_allclose(backend.to_numpy((x @ x.T).data), a @ a.T)


# ------------------------------------------------------------------ indexing

@pytest.mark.parametrize("index", [
    (1,), (slice(None), 2), (slice(1, None), slice(None, None, -1)), (Ellipsis, 0), (None, 1),
    (np.array([2, 0, 2, 2]),), (slice(None), [1, 1, 0]), ([0, 1, 1], [3, 3, 3]),
    (np.array([True, False, True]),), (np.array([[0, 0], [2, 0]]), slice(1, 3)),
])
def test_indexing_agrees_with_numpy_and_repeated_indices_accumulate(xp, index):
    a = np.arange(12.0).reshape(3, 4)
    x = on(xp, a, requires_grad=True)
    device_index = tuple(xp.asarray(i) if isinstance(i, np.ndarray) else i for i in index)
    y = x[device_index if len(index) > 1 else device_index[0]]
    want = a[index if len(index) > 1 else index[0]]
    np.testing.assert_array_equal(backend.to_numpy(y.data), want)
    dout = np.random.default_rng(0).standard_normal(want.shape)
    y.backward(xp.asarray(dout))
    expected = np.zeros_like(a)
    flat_positions = np.arange(a.size).reshape(a.shape)[index if len(index) > 1 else index[0]]
    for position, value in zip(np.ravel(flat_positions), np.ravel(dout)):  # one addition per pick
        expected.reshape(-1)[position] += value
    np.testing.assert_allclose(backend.to_numpy(x.grad), expected, rtol=1e-12, atol=1e-12)


def test_indexing_with_an_integer_tensor(xp):
    x = on(xp, [10.0, 20.0, 30.0], requires_grad=True)
    picks = mr.tensor(xp.asarray([2, 2, 0]))
    y = x[picks]
    np.testing.assert_array_equal(backend.to_numpy(y.data), [30.0, 30.0, 10.0])
    y.backward(xp.ones(3))
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [1.0, 0.0, 2.0])


# ------------------------------------------------------------------ creation and random numbers

def test_creation_functions(xp, device):
    assert mr.zeros(2, 3).shape == (2, 3) and mr.zeros(2, 3).dtype == np.float32
    assert mr.ones((2, 3)).shape == (2, 3) and float(mr.ones(2).data.sum()) == 2.0
    assert mr.full((2,), 7.0, dtype="float64").dtype == np.float64
    z = mr.zeros(3, device=device, dtype=np.float64, requires_grad=True)
    assert z.device == backend.normalize_device(device) and z.requires_grad
    like = mr.ones_like(on(xp, np.zeros((2, 2)), np.float64))
    assert like.dtype == np.float64 and like.device == backend.normalize_device(device)
    assert mr.zeros_like(like).shape == (2, 2)
    assert mr.arange(5).dtype == np.int64 and mr.arange(0.0, 1.0, 0.25).dtype == np.float32
    np.testing.assert_array_equal(mr.arange(1, 7, 2).data, [1, 3, 5])


def test_manual_seed_makes_random_numbers_reproducible(device):
    mr.manual_seed(123)
    first = mr.randn(3, 4, device=device)
    mr.manual_seed(123)
    second = mr.randn(3, 4, device=device)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert first.dtype == np.float32 and first.shape == (3, 4)
    assert not np.array_equal(mr.randn(3, 4).numpy(), first.numpy())   # the stream moves on
    mr.manual_seed(124)
    assert not np.array_equal(mr.randn(3, 4).numpy(), first.numpy())


def test_other_random_tensors(device):
    mr.manual_seed(0)
    u = mr.rand(1000, dtype=np.float64, device=device)
    assert u.dtype == np.float64 and 0.0 <= float(u.data.min()) and float(u.data.max()) < 1.0
    k = mr.randint(2, 5, (50,), device=device)
    assert k.dtype == np.int64 and set(k.numpy().tolist()) <= {2, 3, 4}
    assert mr.randn((2, 2), requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative integer"):
        mr.manual_seed(-1)
