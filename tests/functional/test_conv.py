"""conv2d: gradient checks, adjoints, agreement with the oracle and PyTorch, dtypes, errors.

Every test takes ``xp``/``device`` so it runs on NumPy and, where a GPU exists, on CuPy.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires
from minires import backend, reference
from minires.functional import conv as conv_module
from minires.functional.conv import Conv2d, conv2d, save_cols, saves_cols
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import conv2d_configs, normal_array, seeds

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "conv2d.npz"
# The xp/device fixtures only name a backend, so sharing them across Hypothesis examples is safe.
with_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def on(device, array, requires_grad=False):
    return minires.tensor(backend.to_device(np.asarray(array), device), requires_grad=requires_grad)


def host(a):
    return backend.to_numpy(a.data if isinstance(a, minires.Tensor) else a)


def inputs(cfg, seed, dtype=np.float64):
    """x, weight, bias for a drawn configuration, as NumPy arrays."""
    return (normal_array(cfg.x_shape, seed, dtype), normal_array(cfg.weight_shape, seed + 1, dtype),
            normal_array((cfg.out_channels,), seed + 2, dtype))


def forward_backward(device, x, w, b, dout, keep_cols=False, **kwargs):
    """conv2d and the gradients of <dout, out>: [out (a Tensor), dx, dw, db (arrays)]."""
    tensors = [on(device, a, requires_grad=True) for a in (x, w, b)]
    with save_cols(keep_cols):
        out = conv2d(*tensors, **kwargs)
    out.backward(backend.to_device(dout, device))
    return [out] + [t.grad for t in tensors]


# ------------------------------------------------------------------ gradient checks (float64)

@with_fixtures
@given(cfg=conv2d_configs(), seed=seeds(), bias=st.booleans(), keep_cols=st.booleans())
def test_gradcheck(xp, device, cfg, seed, bias, keep_cols):
    x, w, b = inputs(cfg, seed)
    args = [on(device, x, True), on(device, w, True), on(device, b, True) if bias else None]
    with save_cols(keep_cols):                          # gradcheck's forwards run inside the block
        gradcheck(lambda x, w, b: conv2d(x, w, b, **cfg.kwargs()), *args, seed=seed % 1000)


@with_fixtures
@given(cfg=conv2d_configs(), seed=seeds())
def test_adjoint_in_x_and_in_w(xp, device, cfg, seed):
    """conv is linear in x for a fixed w, and in w for a fixed x: <A v, y> = <v, A^T y> exactly."""
    x, w, _ = inputs(cfg, seed)
    x_t, w_t = on(device, x), on(device, w)
    adjoint_check(lambda v: conv2d(v, w_t, **cfg.kwargs()), cfg.x_shape, seed=seed, device=device)
    adjoint_check(lambda v: conv2d(x_t, v, **cfg.kwargs()), cfg.weight_shape, seed=seed, device=device)


@with_fixtures
@given(cfg=conv2d_configs(), seed=seeds())
def test_keeping_or_recomputing_cols_gives_the_same_gradients(xp, device, cfg, seed):
    x, w, b = inputs(cfg, seed)
    dout = normal_array(cfg.out_shape, seed + 3)
    kept = forward_backward(device, x, w, b, dout, keep_cols=True, **cfg.kwargs())
    recomputed = forward_backward(device, x, w, b, dout, keep_cols=False, **cfg.kwargs())
    for a, r in zip(kept, recomputed):
        np.testing.assert_array_equal(host(a), host(r))


# ------------------------------------------------------------------ agreement

@with_fixtures
@given(cfg=conv2d_configs(), seed=seeds(), bias=st.booleans())
def test_matches_reference(xp, device, cfg, seed, bias):
    x, w, b = inputs(cfg, seed)
    b = b if bias else None
    want = reference.conv2d(x, w, b, **cfg.kwargs())
    got = conv2d(on(device, x), on(device, w), None if b is None else on(device, b), **cfg.kwargs())
    assert got.shape == cfg.out_shape
    np.testing.assert_allclose(host(got), want, rtol=1e-10, atol=1e-10)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    got32 = conv2d(on(device, x32), on(device, w32), None if b is None else on(device, b.astype(np.float32)),
                   **cfg.kwargs())
    assert got32.dtype == np.float32
    np.testing.assert_allclose(host(got32), want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


@with_fixtures
@given(cfg=conv2d_configs(), seed=seeds())
def test_float32_stays_float32_and_agrees_with_float64(xp, device, cfg, seed):
    x, w, b = inputs(cfg, seed)
    dout = normal_array(cfg.out_shape, seed + 3)
    r64 = forward_backward(device, x, w, b, dout, **cfg.kwargs())
    r32 = forward_backward(device, *(a.astype(np.float32) for a in (x, w, b, dout)), **cfg.kwargs())
    for name, a32, a64 in zip(["out", "grad_x", "grad_weight", "grad_bias"], r32, r64):
        assert a32.dtype == np.float32, f"{name} drifted to {a32.dtype}"
        a64 = host(a64)
        np.testing.assert_allclose(host(a32), a64, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(a64).max()),
                                   err_msg=name)


def _fixture_cases() -> list:
    if not FIXTURE.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{FIXTURE.name} is not there"))]
    with np.load(FIXTURE, allow_pickle=False) as data:
        return list(range(int(data["meta/num_cases"])))


@pytest.mark.parametrize("keep_cols", [False, True], ids=["recompute", "keep"])
@pytest.mark.parametrize("case", _fixture_cases())
def test_matches_pytorch_fixtures(xp, device, case, keep_cols):
    with np.load(FIXTURE, allow_pickle=False) as data:
        arrays = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"case{case}/")}
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(str(arrays["params"])).items()}
    tight = str(arrays["dtype"]) == "float64"
    tol = dict(rtol=1e-10, atol=1e-12) if tight else dict(rtol=1e-4, atol=1e-5)
    x, w = on(device, arrays["x"], True), on(device, arrays["weight"], True)
    b = on(device, arrays["bias"], True) if "bias" in arrays else None
    with save_cols(keep_cols):
        out = conv2d(x, w, b, **params)
    out.backward(backend.to_device(arrays["dout"], device))
    assert out.dtype == arrays["x"].dtype and x.grad.dtype == arrays["x"].dtype
    np.testing.assert_allclose(host(out), arrays["out"], **tol)
    np.testing.assert_allclose(host(x.grad), arrays["grad_x"], **tol)
    np.testing.assert_allclose(host(w.grad), arrays["grad_weight"], **tol)
    if b is not None:
        np.testing.assert_allclose(host(b.grad), arrays["grad_bias"], **tol)


@pytest.mark.parametrize("x_shape, C_out, stride, groups", [
    ((2, 4, 5, 6), 6, 1, 1),
    ((2, 4, 5, 6), 6, 2, 2),            # ResNet's shortcut is 1x1 stride 2; odd sizes keep the last pixel
    ((1, 6, 4, 7), 3, (1, 3), 3),
    ((6, 3, 5), 4, (2, 1), 1),          # unbatched
])
def test_pointwise_path(xp, device, x_shape, C_out, stride, groups):
    """A 1x1 kernel without padding skips im2col (one product per image, on x as it lies)."""
    C_in = x_shape[-3]
    x, w, b = normal_array(x_shape, 1), normal_array((C_out, C_in // groups, 1, 1), 2), normal_array((C_out,), 3)
    args = [on(device, x, True), on(device, w, True), on(device, b, True)]
    with save_cols(True):
        out = conv2d(*args, stride=stride, groups=groups)
    assert out._creator.pointwise and out._creator.cols_g is None      # nothing to keep
    x4 = x if x.ndim == 4 else x[None]
    want = reference.conv2d(x4, w, b, stride=stride, groups=groups)
    np.testing.assert_allclose(host(out), want if x.ndim == 4 else want[0], rtol=1e-12, atol=1e-12)
    gradcheck(lambda x, w, b: conv2d(x, w, b, stride=stride, groups=groups), *args)


def test_unbatched_input_is_a_batch_of_one(xp, device):
    cfg_kwargs = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    x, w, b = normal_array((4, 7, 6), 1), normal_array((6, 2, 3, 2), 2), normal_array((6,), 3)
    dout = normal_array((6, 4, 6), 4)
    single = forward_backward(device, x, w, b, dout, **cfg_kwargs)
    batched = forward_backward(device, x[None], w, b, dout[None], **cfg_kwargs)
    assert single[0].shape == (6, 4, 6) and single[1].shape == (4, 7, 6)
    for s, bt in zip(single, batched):
        np.testing.assert_allclose(host(s), host(bt)[0] if host(s).ndim == 3 else host(bt), rtol=1e-13)


def test_non_contiguous_input(xp, device):
    """A transposed view (as another operation may return) convolves like its contiguous copy."""
    x = normal_array((5, 2, 6, 3), 5).transpose(1, 3, 0, 2)          # (2, 3, 5, 6), not contiguous
    w = normal_array((4, 3, 3, 3), 6)
    got = conv2d(on(device, x), on(device, w), padding=1)
    np.testing.assert_allclose(host(got), reference.conv2d(x, w, padding=1), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ only the asked-for work

def test_backward_skips_what_no_input_needs(xp, device, monkeypatch):
    """Without x's gradient there is no dx work (no col2im, no im2col of dout); without w's, no im2col
    of x in backward. Checked on both ways of computing dx: col2im (stride 2) and the turned kernel."""
    x, w = normal_array((2, 3, 5, 5), 1), normal_array((4, 3, 3, 3), 2)
    real_im2col = conv_module.im2col

    def refuse(*args, **kwargs):
        raise AssertionError("called although no input needs it")

    def im2col_refusing(source):                          # im2col, except of `source` (x or dout)
        def checked(a, *args, **kwargs):
            if a.shape[1:] == source.shape[1:]:
                raise AssertionError(f"im2col of an array shaped like {source.shape} although no input needs it")
            return real_im2col(a, *args, **kwargs)
        return checked

    for stride in (1, 2):
        out = conv2d(on(device, x), on(device, w, True), padding=1, stride=stride)   # x needs no gradient
        dout = on(device, normal_array(out.shape, 3)).data
        monkeypatch.setattr(conv_module, "col2im", refuse)
        monkeypatch.setattr(conv_module, "im2col", im2col_refusing(dout))
        out.backward(dout)
        monkeypatch.undo()
        out = conv2d(on(device, x, True), on(device, w), padding=1, stride=stride)   # w needs no gradient
        monkeypatch.setattr(conv_module, "im2col", im2col_refusing(x))
        out.backward(dout)
        monkeypatch.undo()


# ------------------------------------------------------------------ the memory policy

def test_save_cols_is_scoped_and_explicit():
    assert saves_cols() is False                                          # the measured default
    with save_cols(True):
        assert saves_cols() is True
        with save_cols(False):
            assert saves_cols() is False
        assert saves_cols() is True
    with pytest.raises(RuntimeError), save_cols(True):
        raise RuntimeError("an error inside the block")
    assert saves_cols() is False
    keep = save_cols(True)                                                # one instance, entered twice
    with keep, save_cols(False), keep:
        assert saves_cols() is True
    assert saves_cols() is False
    with pytest.raises(TypeError, match="True or False"):
        save_cols("keep")


def test_conv2d_function_takes_the_policy_as_an_argument(xp, device):
    x, w = on(device, normal_array((1, 2, 4, 4), 1), True), on(device, normal_array((3, 2, 3, 3), 2), True)
    for keep in (False, True):
        out = Conv2d.apply(x, w, None, padding=1, save_cols=keep)
        assert (out._creator.cols_g is not None) == keep


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("x_shape, w_shape, kwargs, error, match", [
    ((1, 4, 5, 5), (6, 4, 3, 3), dict(groups=3), ValueError, "divisible by groups"),
    ((1, 4, 5, 5), (5, 2, 3, 3), dict(groups=2), ValueError, "divisible by groups"),
    ((1, 4, 5, 5), (6, 4, 3), {}, ValueError, r"weight of shape \(C_out, C_in/groups, kH, kW\)"),
    ((1, 4, 5, 5), (6, 3, 3, 3), {}, ValueError, r"x has 4 channels.*weight.shape\[1\] must be"),
    ((1, 4, 5, 5), (6, 4, 3, 3), dict(groups=2), ValueError, r"weight.shape\[1\] must be C_in/groups = 2"),
    ((1, 4, 2, 5), (6, 4, 3, 3), {}, ValueError, "larger than the padded input"),
    ((1, 4, 3, 3), (6, 4, 3, 3), dict(dilation=2), ValueError, "dilated size 5x5"),
    ((4, 5, 5), (6, 4, 3, 3), dict(stride=0), ValueError, "stride >= 1"),
    ((4, 5, 5), (6, 4, 3, 3), dict(padding=-1), ValueError, "padding >= 0"),
    ((4, 5, 5), (6, 4, 3, 3), dict(padding="full"), ValueError, "an int, a pair of ints, 'valid' or 'same'"),
    ((4, 5, 5), (6, 4, 3, 3), dict(groups=0), ValueError, "groups must be a positive int"),
    ((5, 5), (6, 4, 3, 3), {}, ValueError, r"x of shape \(N, C_in, H, W\) or \(C_in, H, W\)"),
])
def test_errors_say_what_is_wrong(xp, device, x_shape, w_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        conv2d(on(device, np.zeros(x_shape)), on(device, np.zeros(w_shape)), **kwargs)


def test_bias_and_dtype_errors(xp, device):
    x, w = on(device, np.zeros((1, 2, 4, 4))), on(device, np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"bias of shape \(3,\)"):
        conv2d(x, w, on(device, np.zeros(4)))
    with pytest.raises(TypeError, match="float64 and float32"):
        conv2d(x, on(device, np.zeros((3, 2, 3, 3), np.float32)))
    with pytest.raises(TypeError, match="float64 and float32"):
        conv2d(x, w, on(device, np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match="floating-point"):
        conv2d(on(device, np.zeros((1, 2, 4, 4), np.int64)), on(device, np.zeros((3, 2, 3, 3), np.int64)))


@pytest.mark.gpu
def test_mixed_devices_are_refused():
    if not backend.cuda_is_available():
        pytest.skip("needs a CUDA device")
    x, w = on("cuda", np.zeros((1, 2, 4, 4))), on("cpu", np.zeros((3, 2, 3, 3)))
    with pytest.raises(RuntimeError, match="different devices.*cpu.*cuda:0"):
        conv2d(x, w)


@pytest.mark.parametrize("w_shape, kwargs", [((6, 4, 3, 3), dict(padding=1)), ((6, 2, 3, 3), dict(groups=2)),
                                             ((6, 4, 1, 1), dict(stride=2)), ((6, 4, 3, 3), dict(stride=2))])
def test_gradients_are_contiguous(xp, device, w_shape, kwargs):
    """Every gradient comes back in memory order, as PyTorch's do: an optimizer step over a transposed
    weight gradient ran 3x slower (40 against 13 ms for ResNet-18's SGD step)."""
    x, w, b = on(device, normal_array((3, 4, 7, 6), 1), True), on(device, normal_array(w_shape, 2), True), \
        on(device, normal_array((6,), 3), True)
    out = conv2d(x, w, b, **kwargs)
    out.backward(on(device, normal_array(out.shape, 4)).data)
    for t in (x, w, b):
        assert t.grad.data.flags.c_contiguous
