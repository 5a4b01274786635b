"""max_pool2d, avg_pool2d, adaptive_avg_pool2d: gradients, PyTorch's rules, agreement with references.

Every test takes ``xp``/``device`` so it runs on NumPy and, where a GPU exists, on CuPy.
"""
import json
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires
from minires import backend, reference
from minires.functional import pooling
from minires.functional.im2col import im2col, padded_shape, window_slices
from minires.functional.adaptive_pool import adaptive_avg_pool2d
from minires.functional.pooling import avg_pool2d, max_pool2d
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import distinct_values, normal_array, pool2d_configs, seeds

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"

# The xp/device fixtures are function-scoped but constant across examples: safe with @given.
fixtures_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def tensor(a, device, requires_grad=False):
    return minires.tensor(np.asarray(a), requires_grad=requires_grad, device=device)


def host(a):
    return backend.to_numpy(a.data if isinstance(a, minires.Tensor) else a)


def max_args(cfg):
    return dict(kernel_size=cfg.kernel_size, stride=cfg.stride, padding=cfg.padding,
                dilation=cfg.dilation, ceil_mode=cfg.ceil_mode)


def avg_args(cfg, count_include_pad):
    return dict(kernel_size=cfg.kernel_size, stride=cfg.stride, padding=cfg.padding,
                ceil_mode=cfg.ceil_mode, count_include_pad=count_include_pad)


def adaptive_cases():
    """(x_shape, output_size): output sizes larger or smaller than the input, None entries, ints."""
    side = st.integers(1, 7)
    out = st.one_of(st.integers(1, 9), st.tuples(st.none() | st.integers(1, 9), st.none() | st.integers(1, 9)))
    return st.tuples(st.tuples(st.integers(1, 2), st.integers(1, 2), side, side), out)


def backward(fn, x, device, dout=None, **kwargs):
    """(out, dx) of fn(x, **kwargs) with upstream gradient dout (random when None), on the host."""
    x_t = tensor(x, device, requires_grad=True)
    out = fn(x_t, **kwargs)
    if dout is None:
        dout = np.random.default_rng(0).standard_normal(out.shape).astype(x.dtype)
    out.backward(backend.to_device(np.asarray(dout, dtype=x.dtype), device))
    return host(out), host(x_t.grad)


# ------------------------------------------------------------------------------- gradients

@fixtures_ok
@given(cfg=pool2d_configs(), seed=seeds())
def test_max_pool_gradcheck(xp, device, cfg, seed):
    x = tensor(distinct_values(cfg.x_shape, seed), device, requires_grad=True)  # no ties: no kinks
    assert max_pool2d(x, **max_args(cfg)).shape == cfg.x_shape[:2] + cfg.out_size
    gradcheck(lambda x: max_pool2d(x, **max_args(cfg)), x)


@fixtures_ok
@given(cfg=pool2d_configs(dilation=False), count_include_pad=st.booleans(), seed=seeds())
def test_avg_pool_gradcheck_and_adjoint(xp, device, cfg, count_include_pad, seed):
    def pool(x):
        return avg_pool2d(x, **avg_args(cfg, count_include_pad))
    gradcheck(pool, tensor(normal_array(cfg.x_shape, seed), device, requires_grad=True))
    adjoint_check(pool, cfg.x_shape, seed=seed, device=device)


@fixtures_ok
@given(case=adaptive_cases(), seed=seeds())
def test_adaptive_avg_pool_gradcheck_and_adjoint(xp, device, case, seed):
    x_shape, output_size = case
    def pool(x):
        return adaptive_avg_pool2d(x, output_size)
    gradcheck(pool, tensor(normal_array(x_shape, seed), device, requires_grad=True))
    adjoint_check(pool, x_shape, seed=seed, device=device)


# ------------------------------------------------------------------------------- agreement with the oracles

@fixtures_ok
@given(cfg=pool2d_configs(), count_include_pad=st.booleans(), seed=seeds())
def test_forward_agrees_with_reference(xp, device, cfg, count_include_pad, seed):
    x = normal_array(cfg.x_shape, seed)
    np.testing.assert_array_equal(host(max_pool2d(tensor(x, device), **max_args(cfg))),
                                  reference.max_pool2d(x, **max_args(cfg)))
    if cfg.dilation == (1, 1):  # avg_pool2d has no dilation
        np.testing.assert_allclose(host(avg_pool2d(tensor(x, device), **avg_args(cfg, count_include_pad))),
                                   reference.avg_pool2d(x, **avg_args(cfg, count_include_pad)),
                                   rtol=1e-12, atol=1e-12)


@fixtures_ok
@given(case=adaptive_cases(), seed=seeds())
def test_adaptive_forward_agrees_with_reference(xp, device, case, seed):
    x_shape, output_size = case
    x = normal_array(x_shape, seed)
    np.testing.assert_allclose(host(adaptive_avg_pool2d(tensor(x, device), output_size)),
                               reference.adaptive_avg_pool2d(x, output_size), rtol=1e-12, atol=1e-12)


@fixtures_ok
@given(cfg=pool2d_configs(), seed=seeds())
def test_max_pool_backward_with_ties_and_minus_infinity_agrees_with_reference_exactly(xp, device, cfg, seed):
    # Few distinct integers: windows tie often, so only the first-maximum rule passes; some
    # -inf inputs tie with the padding, where the gradient must go to the first REAL element.
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, size=cfg.x_shape).astype(np.float64)
    x[rng.random(cfg.x_shape) < 0.2] = -np.inf
    dout = rng.integers(-4, 5, size=cfg.x_shape[:2] + cfg.out_size).astype(np.float64)  # exact sums
    out, dx = backward(max_pool2d, x, device, dout, **max_args(cfg))
    np.testing.assert_array_equal(out, reference.max_pool2d(x, **max_args(cfg)))
    np.testing.assert_array_equal(dx, reference.max_pool2d_backward(x, dout, **max_args(cfg)))


# ------------------------------------------------------------------------------- agreement with PyTorch

def fixture_cases(name):
    path = FIXTURES / f"{name}.npz"
    if not path.exists():
        return [pytest.param(name, None, marks=pytest.mark.skip(reason=f"{path.name} not generated"))]
    with np.load(path, allow_pickle=False) as f:
        return [pytest.param(name, k, id=f"{name}-case{k}") for k in range(int(f["meta/num_cases"]))]


POOLS = {"max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d, "adaptive_avg_pool2d": adaptive_avg_pool2d}


@pytest.mark.parametrize("name, k", fixture_cases("max_pool2d") + fixture_cases("avg_pool2d")
                         + fixture_cases("adaptive_avg_pool2d"))
def test_agrees_with_pytorch_fixtures(xp, device, name, k):
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as f:
        case = {key.split("/", 1)[1]: f[key] for key in f.files if key.startswith(f"case{k}/")}
    params = json.loads(str(case["params"]))
    params.pop("ties", None)                       # a marker of the tied case, not an argument
    x, dtype = case["x"], np.dtype(str(case["dtype"]))
    assert x.dtype == dtype
    out, dx = backward(POOLS[name], x, device, case["dout"], **params)
    assert out.dtype == dtype and dx.dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, case["out"], **tol)
    np.testing.assert_allclose(dx, case["grad_x"], **tol)


# ------------------------------------------------------------------------------- PyTorch's rules, exactly

def test_max_pool_gradient_goes_to_the_first_maximum_only(xp, device):
    x = np.array([[1.0, 5.0], [5.0, 2.0]]).reshape(1, 1, 2, 2)     # two equal maxima
    out, dx = backward(max_pool2d, x, device, [[[[7.0]]]], kernel_size=2)
    assert out[0, 0, 0, 0] == 5
    np.testing.assert_array_equal(dx[0, 0], [[0, 7], [0, 0]])        # the first in row-major order
    _, dx = backward(max_pool2d, np.full((1, 1, 2, 2), 3.0), device, [[[[1.0]]]], kernel_size=2)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])        # all equal: the top-left


def test_max_pool_overlapping_windows_accumulate(xp, device):
    x = np.array([[1.0, 3, 3], [3, 2, 0], [0, 3, 1]]).reshape(1, 1, 3, 3)
    dout = np.array([[1.0, 10], [100, 1000]]).reshape(1, 1, 2, 2)
    out, dx = backward(max_pool2d, x, device, dout, kernel_size=2, stride=1)
    np.testing.assert_array_equal(out[0, 0], [[3, 3], [3, 3]])
    # windows (0,0) and (0,1) both pick (0,1); (1,0) picks (1,0) over the tied (2,1); (1,1) picks (2,1)
    np.testing.assert_array_equal(dx[0, 0], [[0, 11, 0], [100, 0, 0], [0, 1000, 0]])


def test_max_pool_pads_with_minus_infinity_and_never_sends_gradient_to_padding(xp, device):
    x = -1.0 - np.arange(9.0).reshape(1, 1, 3, 3)                   # all negative: zero padding would win
    out, _ = backward(max_pool2d, x, device, kernel_size=3, stride=1, padding=1)
    np.testing.assert_array_equal(out[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    # an all -inf input ties with its padding in every window: each gradient goes to the window's
    # first real element: (0,0) <- 0+1+3+4, (0,1) <- 2+5, (1,0) <- 6+7, (1,1) <- 8
    out, dx = backward(max_pool2d, np.full((1, 1, 2, 2), -np.inf), device, np.arange(9.0).reshape(1, 1, 3, 3),
                       kernel_size=2, stride=1, padding=1)
    assert np.all(out == -np.inf)
    np.testing.assert_array_equal(dx[0, 0], [[8, 7], [13, 8]])
    # dilation 3 can make a window of padding only (rows -1 and 2 of a 2-row input): -inf, no gradient
    out, dx = backward(max_pool2d, np.ones((1, 1, 2, 2)), device, [[[[1.0]]]], kernel_size=2, padding=1, dilation=3)
    assert out[0, 0, 0, 0] == -np.inf and not dx.any()


def test_ceil_mode_drops_a_window_that_starts_in_the_right_padding(xp, device):
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    assert max_pool2d(tensor(x, device), 2).shape[2:] == (2, 2)                       # floor
    out = host(max_pool2d(tensor(x, device), 2, ceil_mode=True))                      # a last 1x1 window
    assert out.shape[2:] == (3, 3) and out[0, 0, 2, 2] == 24
    # k=2, s=2, p=1: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 3 would start at 6 - 1 = 5 = H: dropped
    assert max_pool2d(tensor(x, device), 2, 2, 1, ceil_mode=True).shape[2:] == (3, 3)
    assert avg_pool2d(tensor(x, device), 2, 2, 1, ceil_mode=True).shape[2:] == (3, 3)
    assert max_pool2d(tensor(x, device), 2, stride=3, padding=1, ceil_mode=True).shape[2:] == (2, 2)


def test_avg_pool_divisors_at_padding_and_ceil_mode_border(xp, device):
    # H=W=4, k=3, s=2, p=1, ceil_mode: windows cover rows [-1, 2), [1, 4), [3, 6); clipped to the
    # padded input [-1, 5) they hold 3, 3, 2 positions, clipped to the real input 2, 3, 1.
    ones = np.ones((1, 1, 4, 4))
    with_pad, dx = backward(avg_pool2d, ones, device, np.ones((1, 1, 3, 3)), kernel_size=3, stride=2, padding=1,
                            ceil_mode=True)
    real, padded = np.array([2, 3, 1]), np.array([3, 3, 2])
    np.testing.assert_allclose(with_pad[0, 0], np.outer(real, real) / np.outer(padded, padded), rtol=1e-15)
    assert with_pad[0, 0, 2, 2] == 1 / 4                      # padding counts, the overhang past it does not
    # pixel (3, 3) lies in windows (1,1), (1,2), (2,1), (2,2), whose divisors are 3*3, 3*2, 2*3, 2*2
    np.testing.assert_allclose(dx[0, 0, 3, 3], 1 / 9 + 1 / 6 + 1 / 6 + 1 / 4, rtol=1e-15)
    without_pad = host(avg_pool2d(tensor(ones, device), 3, 2, 1, ceil_mode=True, count_include_pad=False))
    np.testing.assert_array_equal(without_pad[0, 0], np.ones((3, 3)))
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    assert host(avg_pool2d(tensor(x, device), 3, 2, 1, ceil_mode=True))[0, 0, 2, 2] == 15 / 4
    assert host(avg_pool2d(tensor(x, device), 3, 2, 1, ceil_mode=True, count_include_pad=False))[0, 0, 2, 2] == 15
    out, dx = backward(avg_pool2d, ones, device, np.ones((1, 1, 2, 2)), kernel_size=2, divisor_override=3)
    np.testing.assert_allclose(out[0, 0], np.full((2, 2), 4 / 3), rtol=1e-15)
    np.testing.assert_allclose(dx[0, 0], np.full((4, 4), 1 / 3), rtol=1e-15)


def test_adaptive_bins_overlap_and_upsample(xp, device):
    x = np.arange(1.0, 6.0).reshape(1, 1, 5, 1)
    out, _ = backward(adaptive_avg_pool2d, x, device, output_size=(3, None))   # rows [0,2) [1,4) [3,5)
    np.testing.assert_allclose(out[0, 0, :, 0], [1.5, 3.0, 4.5], rtol=1e-15)
    # H=2 to 3 rows: bins [0,1) [0,2) [1,2), so A_h = [[1, 0], [.5, .5], [0, 1]] and dx = A_h^T dout
    out, dx = backward(adaptive_avg_pool2d, np.array([1.0, 3.0]).reshape(1, 1, 2, 1), device,
                       np.array([1.0, 10.0, 100.0]).reshape(1, 1, 3, 1), output_size=(3, 1))
    np.testing.assert_allclose(out[0, 0, :, 0], [1, 2, 3], rtol=1e-15)
    np.testing.assert_allclose(dx[0, 0, :, 0], [6, 105], rtol=1e-15)


def test_global_average_pooling_is_the_mean(xp, device):
    x = normal_array((2, 3, 4, 5), 0)
    dout = normal_array((2, 3, 1, 1), 1)
    for output_size in (1, (1, 1), [1, 1]):
        out, dx = backward(adaptive_avg_pool2d, x, device, dout, output_size=output_size)
        np.testing.assert_allclose(out, x.mean(axis=(2, 3), keepdims=True), rtol=1e-14)
        np.testing.assert_allclose(dx, np.broadcast_to(dout / 20, x.shape), rtol=1e-14)


# ------------------------------------------------------------------------------- slabs, blocks, memory

@fixtures_ok
@given(cfg=pool2d_configs(), seed=seeds())
def test_window_slices_are_the_slabs_that_im2col_copies(xp, cfg, seed):
    """Offset (i, j) sees x_pad[window]: entry (i, j) of every window, which is cols[:, i, j]."""
    x = normal_array(cfg.x_shape, seed)
    geometry = (cfg.kernel_size, cfg.stride, cfg.padding, cfg.dilation)
    (ph, pw), (H, W) = cfg.padding, cfg.in_size
    x_pad = np.full(cfg.x_shape[:2] + padded_shape(cfg.x_shape, *geometry, cfg.out_size), -np.inf)
    x_pad[:, :, ph:ph + H, pw:pw + W] = x                                          # (N, C, Hp, Wp)
    cols = host(im2col(xp.asarray(x), *geometry, cfg.out_size, pad_value=-np.inf))  # (C, kH, kW, N, oH, oW)
    offsets = list(window_slices(cfg.kernel_size, cfg.stride, cfg.dilation, cfg.out_size))
    kh, kw = cfg.kernel_size
    assert [(i, j) for i, j, _ in offsets] == [(i, j) for i in range(kh) for j in range(kw)]   # row-major
    for i, j, window in offsets:
        np.testing.assert_array_equal(x_pad[window], cols[:, i, j].transpose(1, 0, 2, 3))


@fixtures_ok
@given(cfg=pool2d_configs(max_batch=3), planes_per_block=st.integers(1, 4), seed=seeds())
def test_blocks_of_planes_change_nothing(xp, device, monkeypatch, cfg, planes_per_block, seed):
    """On the CPU the (N*C) planes are pooled a block at a time; wherever the blocks end (here after
    1 to 4 planes, the last block shorter), every bit of the outputs and gradients stays the same."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, size=cfg.x_shape).astype(np.float64)                  # ties, and -inf windows
    x[rng.random(cfg.x_shape) < 0.2] = -np.inf
    dout = rng.integers(-4, 5, size=cfg.x_shape[:2] + cfg.out_size).astype(np.float64)
    Hp, Wp = padded_shape(cfg.x_shape, cfg.kernel_size, cfg.stride, cfg.padding, cfg.dilation, cfg.out_size)
    monkeypatch.setattr(backend, "CPU_CACHE_BLOCK_BYTES", planes_per_block * Hp * Wp * x.itemsize)
    out, dx = backward(max_pool2d, x, device, dout, **max_args(cfg))
    np.testing.assert_array_equal(out, reference.max_pool2d(x, **max_args(cfg)))
    np.testing.assert_array_equal(dx, reference.max_pool2d_backward(x, dout, **max_args(cfg)))
    if cfg.dilation == (1, 1):                                                      # avg_pool2d has no dilation
        x = normal_array(cfg.x_shape, seed)
        blocked = backward(avg_pool2d, x, device, dout, **avg_args(cfg, True))
        monkeypatch.setattr(backend, "CPU_CACHE_BLOCK_BYTES", 1 << 40)                   # one block
        whole = backward(avg_pool2d, x, device, dout, **avg_args(cfg, True))
        for a, b in zip(blocked, whole):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernel, bytes_per_output", [(3, 1), (16, 1), ((17, 16), 4)])
def test_max_pool_keeps_only_the_winning_offset(xp, device, kernel, bytes_per_output):
    """Backward needs the offset of each window's winner: one byte per output up to 16x16 kernels
    (an int32 beyond), never the kH*kW-times larger columns."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = distinct_values((2, 3, kh + 2, kw + 1), 0)
    x_t = tensor(x, device, requires_grad=True)
    out = max_pool2d(x_t, kernel, stride=1)
    saved = [v for v in vars(out._creator).values() if backend.is_array(v)]
    assert sum(a.nbytes for a in saved) == out.data.size * bytes_per_output
    dout = np.random.default_rng(1).integers(-4, 5, size=out.shape).astype(np.float64)   # exact sums
    out.backward(backend.to_device(dout, device))
    np.testing.assert_array_equal(host(x_t.grad), reference.max_pool2d_backward(x, dout, kernel, stride=1))


def test_max_pool_propagates_nan(xp, device):
    """A NaN anywhere in a window makes that window's maximum NaN (as in PyTorch), wherever it sits."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 1, 3] = np.nan, np.nan           # first in one window, last in another
    out = host(max_pool2d(tensor(x, device), 2))
    np.testing.assert_array_equal(out[0, 0], [[np.nan, np.nan], [13, 15]])


# ------------------------------------------------------------------------------- dtypes, ranks, errors

@pytest.mark.parametrize("fn, kwargs", [(max_pool2d, dict(kernel_size=3, stride=2, padding=1)),
                                        (avg_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
                                        (adaptive_avg_pool2d, dict(output_size=(3, 2))),
                                        (adaptive_avg_pool2d, dict(output_size=1))])
def test_float32_in_float32_out_and_close_to_float64(xp, device, fn, kwargs):
    x64 = distinct_values((2, 3, 7, 6), 0)
    out64, dx64 = backward(fn, x64, device, **kwargs)
    out32, dx32 = backward(fn, x64.astype(np.float32), device, **kwargs)
    assert out32.dtype == np.float32 and dx32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn, kwargs", [(max_pool2d, dict(kernel_size=2, stride=1, padding=1)),
                                        (avg_pool2d, dict(kernel_size=3, padding=1, ceil_mode=True)),
                                        (adaptive_avg_pool2d, dict(output_size=(2, 4)))])
def test_unbatched_input_is_one_image(xp, device, fn, kwargs):
    x = distinct_values((3, 5, 4), 0)
    out4, dx4 = backward(fn, x[None], device, **kwargs)                 # (1, C, oH, oW)
    dout = np.random.default_rng(0).standard_normal(out4.shape)        # what backward() drew
    out3, dx3 = backward(fn, x, device, dout[0], **kwargs)
    assert out3.shape == out4.shape[1:] and dx3.shape == x.shape
    np.testing.assert_array_equal(out3, out4[0])
    np.testing.assert_array_equal(dx3, dx4[0])


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d])
def test_an_empty_batch_pools_to_an_empty_batch(xp, device, fn):
    out, dx = backward(fn, np.zeros((0, 3, 5, 5)), device, np.zeros((0, 3, 3, 3)), kernel_size=3, stride=2, padding=1)
    assert out.shape == (0, 3, 3, 3) and dx.shape == (0, 3, 5, 5)


@pytest.mark.parametrize("fn, kwargs", [(max_pool2d, dict(kernel_size=2)), (avg_pool2d, dict(kernel_size=2)),
                                        (adaptive_avg_pool2d, dict(output_size=2))])
def test_bad_inputs_are_clear_errors(xp, device, fn, kwargs):
    for shape in [(4, 4), (1, 1, 1, 4, 4)]:
        with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(C, H, W\)"):
            fn(tensor(np.zeros(shape), device), **kwargs)
    with pytest.raises(TypeError, match="floating-point"):
        fn(tensor(np.zeros((1, 1, 4, 4), dtype=np.int64), device), **kwargs)


def test_bad_pooling_arguments_are_clear_errors(xp, device):
    x = tensor(np.zeros((1, 1, 5, 5)), device)
    with pytest.raises(ValueError, match="half of kernel size"):
        max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="half of kernel size"):
        avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="half of kernel size"):             # the limit ignores dilation
        max_pool2d(tensor(np.zeros((1, 1, 20, 20)), device), 3, padding=2, dilation=3)
    with pytest.raises(ValueError, match="too small"):
        max_pool2d(tensor(np.zeros((1, 1, 2, 2)), device), 3)
    with pytest.raises(ValueError, match="stride"):
        max_pool2d(x, 2, stride=0)
    with pytest.raises(TypeError, match="kernel_size"):
        avg_pool2d(x, (2, 2, 2))
    with pytest.raises(ValueError, match="divisor_override"):
        avg_pool2d(x, 2, divisor_override=0)
    for output_size in (0, (2, 3, 4), (2, -1), 2.5):
        with pytest.raises(ValueError, match="output_size"):
            adaptive_avg_pool2d(x, output_size)
