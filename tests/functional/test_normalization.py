"""batch_norm: gradient checks, batch norm's own properties, and agreement with the oracle and PyTorch."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires
from minires import backend, reference
from minires.functional import normalization
from minires.functional.normalization import batch_norm
from minires.testing import adjoint_check, gradcheck
from minires.testing.strategies import distinct_values, seeds

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "batch_norm.npz"
# The xp/device fixtures only name a backend, so sharing them across Hypothesis examples is safe.
with_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def bn_shapes(draw, ranks: tuple = (2, 3, 4)) -> tuple:
    """(N, C), (N, C, L) or (N, C, H, W) with at least two values per channel (built, not filtered)."""
    rank = draw(st.sampled_from(ranks))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(rank - 2))
    n = draw(st.integers(1 if math.prod(spatial) > 1 else 2, 3))
    return (n, draw(st.integers(1, 3))) + spatial


def spread_input(shape: tuple, seed: int, offset: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Values with gaps of at least ~4/size: every channel's variance stays well above 0."""
    return offset + scale * distinct_values(shape, seed)


def channel_params(C: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return dict(weight=1 + 0.5 * rng.standard_normal(C), bias=rng.standard_normal(C),
                running_mean=rng.standard_normal(C), running_var=rng.uniform(0.5, 1.5, C))


def on(device: str, array, requires_grad: bool = False) -> minires.Tensor:
    return minires.tensor(backend.to_device(np.asarray(array), device), requires_grad=requires_grad)


def channel_axes(x) -> tuple:
    return (0,) + tuple(range(2, np.ndim(x)))


# ------------------------------------------------------------------ gradient checks (float64)

@with_fixtures
@given(shape=bn_shapes(), seed=seeds(), affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-3]),
       offset=st.floats(-10, 10), scale=st.floats(0.5, 3))
def test_gradcheck_training(xp, device, shape, seed, affine, eps, offset, scale):
    p = channel_params(shape[1], seed + 1)
    rm, rv = on(device, p["running_mean"]), on(device, p["running_var"])
    x = on(device, spread_input(shape, seed, offset, scale), requires_grad=True)
    if affine:
        w, b = on(device, p["weight"], True), on(device, p["bias"], True)
        gradcheck(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=True, eps=eps), x, w, b)
    else:
        gradcheck(lambda x: batch_norm(x, rm, rv, training=True, eps=eps), x)


@with_fixtures
@given(shape=bn_shapes(), seed=seeds(), affine=st.booleans())
def test_gradcheck_evaluation(xp, device, shape, seed, affine):
    p = channel_params(shape[1], seed + 1)
    rm, rv = on(device, p["running_mean"]), on(device, p["running_var"])
    x = on(device, np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    if affine:
        w, b = on(device, p["weight"], True), on(device, p["bias"], True)
        gradcheck(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=False), x, w, b)
    else:
        gradcheck(lambda x: batch_norm(x, rm, rv, training=False), x)


@with_fixtures
@given(shape=bn_shapes(), seed=seeds())
def test_evaluation_is_affine_in_x_adjoint(xp, device, shape, seed):
    """out = A x + c in evaluation; A(x) = bn(x) - bn(0) is linear: <A x, y> == <x, A^T y>."""
    p = {k: on(device, v) for k, v in channel_params(shape[1], seed).items()}
    zero_out = batch_norm(on(device, np.zeros(shape)), training=False, **p)

    def linear_part(x):
        return batch_norm(x, training=False, **p) - zero_out

    adjoint_check(linear_part, shape, seed=seed, device=device)


# ------------------------------------------------------------------ batch norm's own properties

def test_all_ones_upstream_gradient_gives_a_zero_input_gradient(xp, device):
    """Why gradchecks never use out.sum(): per channel, sum(out) = m * beta whatever x is, so its
    derivative in x is exactly 0 and a backward that returned zeros would pass."""
    rng = np.random.default_rng(0)
    shape = (4, 3, 2, 2)
    p = channel_params(3, 1)
    x = on(device, rng.standard_normal(shape), requires_grad=True)
    batch_norm(x, None, None, on(device, p["weight"]), on(device, p["bias"]), training=True).sum().backward()
    np.testing.assert_allclose(backend.to_numpy(x.grad), 0, atol=1e-14)
    x.grad = None
    out = batch_norm(x, None, None, on(device, p["weight"]), on(device, p["bias"]), training=True)
    out.backward(on(device, rng.standard_normal(shape)))
    assert np.abs(backend.to_numpy(x.grad)).max() > 0.1          # a random G does see the gradient


@with_fixtures
@given(shape=bn_shapes(), seed=seeds())
def test_training_input_gradient_sums_to_zero_per_channel(xp, device, shape, seed):
    """dx removes from dout its mean and its xhat-component: per channel sum(dx) = 0, and with
    eps = 0 (so that sum(xhat^2) = m exactly) also sum(dx * xhat) = 0."""
    p = channel_params(shape[1], seed)
    x_np = spread_input(shape, seed, offset=3.0)
    dout = np.random.default_rng(seed + 2).standard_normal(shape)
    x = on(device, x_np, requires_grad=True)
    out = batch_norm(x, None, None, on(device, p["weight"]), on(device, p["bias"]), training=True, eps=0.0)
    out.backward(on(device, dout))
    dx, axes = backend.to_numpy(x.grad), channel_axes(x_np)
    xhat = (x_np - x_np.mean(axis=axes, keepdims=True)) / x_np.std(axis=axes, keepdims=True)
    scale = np.abs(p["weight"]) / x_np.std(axis=axes) * np.abs(dout).sum(axis=axes)   # size of each term
    np.testing.assert_allclose(dx.sum(axis=axes) / scale, 0, atol=1e-13)
    np.testing.assert_allclose((dx * xhat).sum(axis=axes) / scale, 0, atol=1e-13)


def test_running_statistics_recurrence(xp, device):
    """Normalise with the biased variance; running = 0.9 * running + 0.1 * batch with the unbiased one."""
    rng = np.random.default_rng(3)
    expected_mean, expected_var = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, 0.5])
    rm, rv = on(device, expected_mean), on(device, expected_var)
    buffers = (rm.data, rv.data)
    for _ in range(4):
        x = rng.standard_normal((5, 3, 2, 2)) * np.array([1.0, 2.0, 3.0])[:, None, None] + 4
        out = batch_norm(on(device, x), rm, rv, training=True, momentum=0.1)
        mean = x.mean(axis=(0, 2, 3))
        biased, unbiased = x.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
        expected_mean = 0.9 * expected_mean + 0.1 * mean
        expected_var = 0.9 * expected_var + 0.1 * unbiased
        np.testing.assert_allclose(rm.numpy(), expected_mean, rtol=1e-13)
        np.testing.assert_allclose(rv.numpy(), expected_var, rtol=1e-13)
        normalised = (x - mean[:, None, None]) / np.sqrt(biased[:, None, None] + 1e-5)
        np.testing.assert_allclose(out.numpy(), normalised, rtol=1e-12, atol=1e-12)
        with_unbiased = (x - mean[:, None, None]) / np.sqrt(unbiased[:, None, None] + 1e-5)
        assert not np.allclose(out.numpy(), with_unbiased, rtol=1e-3)
    assert rm.data is buffers[0] and rv.data is buffers[1]       # updated in place: the same buffers


def test_running_statistics_are_updated_in_place_on_plain_arrays_too(xp, device):
    rm, rv = backend.to_device(np.zeros(2), device), backend.to_device(np.ones(2), device)
    x = on(device, np.array([[1.0, 2.0], [3.0, 6.0]]))
    batch_norm(x, rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(backend.to_numpy(rm), [1.0, 2.0])             # 0.5 * 0 + 0.5 * (2, 4)
    np.testing.assert_allclose(backend.to_numpy(rv), [1.5, 4.5])             # 0.5 * 1 + 0.5 * (2, 8)


def test_momentum_none_without_a_count_is_refused_and_says_what_to_pass(xp, device):
    x, rm, rv = on(device, np.ones((4, 2))), on(device, np.zeros(2)), on(device, np.ones(2))
    with pytest.raises(ValueError, match=r"momentum=None.*pass num_batches_tracked="):
        batch_norm(x, rm, rv, training=True, momentum=None)
    with pytest.raises(TypeError, match="momentum"):
        batch_norm(x, rm, rv, training=True, momentum="0.1")


def test_momentum_one_over_batches_seen_is_the_cumulative_average(xp, device):
    """What nn.BatchNorm2d(momentum=None) passes: 1 / num_batches_tracked, after counting the batch."""
    rng = np.random.default_rng(5)
    rm, rv = on(device, rng.standard_normal(3)), on(device, rng.uniform(1, 2, 3))
    means, variances = [], []
    for num_batches_tracked in range(1, 5):
        x = rng.standard_normal((6, 3)) * 2 + rng.standard_normal(3)
        batch_norm(on(device, x), rm, rv, training=True, momentum=1 / num_batches_tracked)
        means.append(x.mean(axis=0))
        variances.append(x.var(axis=0, ddof=1))
        np.testing.assert_allclose(rm.numpy(), np.mean(means, axis=0), rtol=1e-12)  # the start is forgotten
        np.testing.assert_allclose(rv.numpy(), np.mean(variances, axis=0), rtol=1e-12)


def test_momentum_none_counts_batches_and_keeps_the_cumulative_average(xp, device):
    """The functional form does it too, given the count: num_batches_tracked goes up by one per
    training call, and running = the plain average of every batch seen."""
    rng = np.random.default_rng(6)
    rm, rv = on(device, rng.standard_normal(3)), on(device, rng.uniform(1, 2, 3))
    count = minires.tensor(xp.zeros((), dtype=np.int64))
    means, variances = [], []
    for seen in range(1, 5):
        x = rng.standard_normal((6, 3)) * 2 + rng.standard_normal(3)
        batch_norm(on(device, x), rm, rv, training=True, momentum=None, num_batches_tracked=count)
        means.append(x.mean(axis=0))
        variances.append(x.var(axis=0, ddof=1))
        assert count.item() == seen and count.dtype == np.int64
        np.testing.assert_allclose(rm.numpy(), np.mean(means, axis=0), rtol=1e-12)
        np.testing.assert_allclose(rv.numpy(), np.mean(variances, axis=0), rtol=1e-12)
    batch_norm(on(device, x), rm, rv, training=False, momentum=None, num_batches_tracked=count)
    assert count.item() == 4                                             # evaluation counts nothing


def test_evaluation_neither_reads_the_batch_nor_updates_anything(xp, device):
    rng = np.random.default_rng(7)
    p = channel_params(3, 8)
    rm, rv = on(device, p["running_mean"]), on(device, p["running_var"])
    w, b = on(device, p["weight"]), on(device, p["bias"])
    x = rng.standard_normal((6, 3, 2, 2)) * 5 + 7
    out = batch_norm(on(device, x), rm, rv, w, b, training=False).numpy()
    alone = batch_norm(on(device, x[:1]), rm, rv, w, b, training=False).numpy()   # a batch of one is fine
    others = x.copy()
    others[1:] = rng.standard_normal(others[1:].shape) * 100
    changed = batch_norm(on(device, others), rm, rv, w, b, training=False).numpy()
    np.testing.assert_array_equal(alone[0], out[0])
    np.testing.assert_array_equal(changed[0], out[0])
    np.testing.assert_array_equal(rm.numpy(), p["running_mean"])
    np.testing.assert_array_equal(rv.numpy(), p["running_var"])
    c = (slice(None), None, None)
    affine = p["weight"][c] * (x - p["running_mean"][c]) / np.sqrt(p["running_var"][c] + 1e-5) + p["bias"][c]
    np.testing.assert_allclose(out, affine, rtol=1e-13, atol=1e-13)


def test_no_grad_does_not_choose_evaluation_mode(xp, device):
    """no_grad() stops the graph, not the batch statistics: training still normalises the batch and updates."""
    x = np.arange(8.0).reshape(4, 2)
    rm, rv = on(device, np.zeros(2)), on(device, np.ones(2))
    with minires.no_grad():
        out = batch_norm(on(device, x), rm, rv, training=True)
    np.testing.assert_allclose(out.numpy().mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(rm.numpy(), 0.1 * x.mean(axis=0))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_training_with_one_value_per_channel_raises(xp, device, shape):
    rm, rv = on(device, np.zeros(3)), on(device, np.ones(3))
    x = on(device, np.ones(shape))
    message = rf"Expected more than 1 value per channel when training, got input size \({shape[0]}, 3"
    with pytest.raises(ValueError, match=message):
        batch_norm(x, rm, rv, training=True)
    with pytest.raises(ValueError, match=message):
        batch_norm(x, None, None, training=True)
    np.testing.assert_array_equal(rm.numpy(), 0)                 # the failed call changed nothing
    assert batch_norm(x, rm, rv, training=False).shape == shape  # evaluation needs no batch statistics


def test_errors_say_what_was_expected(xp, device):
    x, rm, rv = on(device, np.ones((4, 3, 2, 2))), on(device, np.zeros(3)), on(device, np.ones(3))
    with pytest.raises(ValueError, match=r"\(N, C\).*got \(4,\)"):
        batch_norm(on(device, np.ones(4)), None, None, training=True)
    with pytest.raises(ValueError, match=r"weight of shape \(3,\).*got \(2,\)"):
        batch_norm(x, rm, rv, on(device, np.ones(2)))
    with pytest.raises(TypeError, match="float32 and float64"):
        batch_norm(x.to("float32"), rm, rv, training=True)
    with pytest.raises(ValueError, match="only one of running_mean and running_var"):
        batch_norm(x, rm, None, training=True)
    with pytest.raises(ValueError, match="training=False.*running_mean and running_var"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match="floating-point"):
        batch_norm(on(device, np.ones((4, 3), dtype=np.int64)), None, None, training=True)


# ------------------------------------------------------------------ blocks of channels, saved memory

@with_fixtures
@given(n=st.integers(2, 3), channels=st.integers(2, 5), spatial=st.sampled_from([(), (2, 3)]),
       channels_per_block=st.integers(1, 3), training=st.booleans(), seed=seeds())
def test_blocks_of_channels_change_nothing(xp, device, monkeypatch, n, channels, spatial, channels_per_block,
                                           training, seed):
    """On the CPU the channels are normalised a block at a time; wherever the blocks end (here after
    1 to 3 channels, the last block shorter), outputs, gradients and running statistics agree with
    one block of all channels, and with the oracle."""
    shape = (n, channels) + spatial
    p = channel_params(channels, seed + 1)
    x = np.random.default_rng(seed).standard_normal(shape) * 2 + 1
    dout = np.random.default_rng(seed + 2).standard_normal(shape)
    results = []
    for block_bytes in (channels_per_block * x.nbytes // channels, 1 << 40):     # blocks, then one block
        monkeypatch.setattr(backend, "CPU_CACHE_BLOCK_BYTES", block_bytes)
        rm, rv = on(device, p["running_mean"]), on(device, p["running_var"])
        x_t = on(device, x, requires_grad=True)
        w, b = on(device, p["weight"], True), on(device, p["bias"], True)
        out = batch_norm(x_t, rm, rv, w, b, training=training)
        out.backward(on(device, dout))
        results.append([out.numpy(), x_t.grad, w.grad, b.grad, rm.numpy(), rv.numpy()])
    for blocked, whole in zip(*results):
        np.testing.assert_allclose(backend.to_numpy(blocked), backend.to_numpy(whole), rtol=1e-13, atol=1e-13)
    want = reference.batch_norm(x, p["running_mean"], p["running_var"], p["weight"], p["bias"], training, 0.1, 1e-5)
    for got, expected in zip([results[0][i] for i in (0, 4, 5)], want):    # out, running_mean, running_var
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
@pytest.mark.parametrize("training", [True, False])
def test_wide_maps_and_rows_of_channels_agree(xp, device, monkeypatch, training, dtype):
    """A block is (N, channels * pixels) with each channel's numbers spread over its pixels, or, for maps
    above WIDE_MAP pixels, (N, channels, pixels) with one number per channel: the same results both ways."""
    import minires.functional.normalization as N
    rng = np.random.default_rng(4)
    x, dout = (rng.standard_normal((3, 4, 5, 6)) * 2 + 1).astype(dtype), rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    p = channel_params(4, 5)
    results = []
    for wide in (0, 1 << 30):                                              # every map wide, then none
        monkeypatch.setattr(N, "WIDE_MAP", wide)
        rm, rv = on(device, p["running_mean"].astype(dtype)), on(device, p["running_var"].astype(dtype))
        x_t = on(device, x, requires_grad=True)
        w, b = on(device, p["weight"].astype(dtype), True), on(device, p["bias"].astype(dtype), True)
        out = batch_norm(x_t, rm, rv, w, b, training=training)
        out.backward(on(device, dout))
        results.append([backend.to_numpy(a) for a in (out.data, x_t.grad.data, w.grad.data, b.grad.data,
                                                           rm.data, rv.data)])
    tol = 1e-13 if dtype == np.float64 else 2e-3
    for wide, rows in zip(*results):
        np.testing.assert_allclose(wide.astype(np.float64), rows.astype(np.float64), rtol=tol, atol=tol)
    want = reference.batch_norm(x.astype(np.float64), p["running_mean"], p["running_var"], p["weight"], p["bias"],
                                training, 0.1, 1e-5)
    np.testing.assert_allclose(results[0][0].astype(np.float64), want[0], rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("training", [True, False])
def test_keeps_no_array_of_x_size_but_x_itself(xp, device, training):
    """The backward recomputes xhat from x, which the graph holds anyway: the Function keeps x and
    per-channel vectors only. And its output is its own array: editing it changes no gradient."""
    rng = np.random.default_rng(9)
    x, dout = rng.standard_normal((4, 3, 2, 5)), rng.standard_normal((4, 3, 2, 5))
    p = {k: on(device, v) for k, v in channel_params(3, 10).items()}
    grads = []
    for edit_output in (False, True):
        x_t = on(device, x, requires_grad=True)
        out = batch_norm(x_t, training=training, **p)
        saved = [a for a in vars(out._creator).values() if backend.is_array(a)]
        large = [a for a in saved if a.size == x.size]
        assert len(large) == 1 and large[0] is x_t.data
        assert all(a.shape == (3,) for a in saved if a is not x_t.data)
        if edit_output:
            out.data[...] = 0
        out.backward(on(device, dout))
        grads.append(backend.to_numpy(x_t.grad))
    np.testing.assert_array_equal(grads[1], grads[0])


# ------------------------------------------------------------------ agreement: oracle, PyTorch, float32

@with_fixtures
@given(shape=bn_shapes(ranks=(2, 4)), seed=seeds(), training=st.booleans(), affine=st.booleans(),
       momentum=st.floats(0, 1), eps=st.sampled_from([1e-5, 1e-3]), track=st.booleans())
def test_matches_the_reference(xp, device, shape, seed, training, affine, momentum, eps, track):
    p = channel_params(shape[1], seed + 1)
    x = np.random.default_rng(seed).standard_normal(shape) * 2 + 1
    w, b = (p["weight"], p["bias"]) if affine else (None, None)
    rm0, rv0 = (p["running_mean"], p["running_var"]) if track or not training else (None, None)
    want, want_rm, want_rv = reference.batch_norm(x, rm0, rv0, w, b, training, momentum, eps)
    rm, rv = [None if a is None else on(device, a) for a in (rm0, rv0)]
    out = batch_norm(on(device, x), rm, rv, None if w is None else on(device, w),
                     None if b is None else on(device, b), training=training, momentum=momentum, eps=eps)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    if rm is not None:
        np.testing.assert_allclose(rm.numpy(), want_rm, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(rv.numpy(), want_rv, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("training", [True, False])
def test_sequence_input_is_an_image_of_width_one(xp, device, training):
    """(N, C, L) normalises exactly like (N, C, L, 1); the reference covers (N, C) and (N, C, H, W)."""
    p = channel_params(3, 4)
    x = np.random.default_rng(4).standard_normal((2, 3, 5))
    outs = []
    for shape in ((2, 3, 5), (2, 3, 5, 1)):
        rm, rv = on(device, p["running_mean"]), on(device, p["running_var"])
        outs.append(batch_norm(on(device, x.reshape(shape)), rm, rv, on(device, p["weight"]),
                               on(device, p["bias"]), training=training).numpy().reshape(x.shape))
        outs.append(np.concatenate([rm.numpy(), rv.numpy()]))
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[3])


def _fixture_cases() -> list:
    if not FIXTURE.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{FIXTURE.name} is not there"))]
    with np.load(FIXTURE, allow_pickle=False) as data:
        return list(range(int(data["meta/num_cases"])))


@pytest.mark.parametrize("case", _fixture_cases())
def test_matches_pytorch_fixtures(xp, device, case):
    with np.load(FIXTURE, allow_pickle=False) as data:
        arrays = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"case{case}/")}
    params = json.loads(str(arrays["params"]))
    params.pop("module", None)
    if "num_batches_tracked" in params:   # nn.BatchNorm(momentum=None): the count before this batch
        params["num_batches_tracked"] = minires.tensor(xp.asarray(params["num_batches_tracked"], dtype=np.int64))
    tight = arrays["dtype"] == "float64"
    tol = dict(rtol=1e-10, atol=1e-12) if tight else dict(rtol=1e-4, atol=1e-5)
    rm, rv = on(device, arrays["running_mean"]), on(device, arrays["running_var"])
    x = on(device, arrays["x"], requires_grad=True)
    affine = {k: on(device, arrays[k], requires_grad=True) for k in ("weight", "bias") if k in arrays}
    out = batch_norm(x, rm, rv, **affine, **params)
    out.backward(on(device, arrays["dout"]))
    assert out.dtype == arrays["x"].dtype and x.grad.dtype == arrays["x"].dtype
    np.testing.assert_allclose(out.numpy(), arrays["out"], **tol)
    np.testing.assert_allclose(backend.to_numpy(x.grad), arrays["grad_x"], **tol)
    for k, t in affine.items():
        np.testing.assert_allclose(backend.to_numpy(t.grad), arrays[f"grad_{k}"], **tol)
    np.testing.assert_allclose(rm.numpy(), arrays["running_mean_after"], **tol)
    np.testing.assert_allclose(rv.numpy(), arrays["running_var_after"], **tol)


@pytest.mark.parametrize("training", [True, False])
def test_float32_stays_float32_and_agrees_with_float64(xp, device, training):
    """Statistics are computed in float32 (two passes: mean, then squared deviations), yet a large
    offset (x ~ 50 +- 3) loses no more than float32 rounding against the same values in float64."""
    rng = np.random.default_rng(11)
    shape = (16, 4, 12, 12)
    x32 = (50 + 3 * rng.standard_normal(shape)).astype(np.float32)
    dout32 = rng.standard_normal(shape).astype(np.float32)
    p32 = {k: v.astype(np.float32) for k, v in channel_params(4, 12).items()}
    if not training:
        p32["running_mean"] = (p32["running_mean"] + 50).astype(np.float32)
        p32["running_var"] = (p32["running_var"] * 9).astype(np.float32)
    results = {}
    for dtype in (np.float32, np.float64):
        x = on(device, x32.astype(dtype), requires_grad=True)
        w, b = on(device, p32["weight"].astype(dtype), True), on(device, p32["bias"].astype(dtype), True)
        rm, rv = on(device, p32["running_mean"].astype(dtype)), on(device, p32["running_var"].astype(dtype))
        out = batch_norm(x, rm, rv, w, b, training=training)
        out.backward(on(device, dout32.astype(dtype)))
        results[dtype] = [out.data, x.grad, w.grad, b.grad, rm.data, rv.data]
    names = ["out", "grad_x", "grad_weight", "grad_bias", "running_mean", "running_var"]
    for name, a32, a64 in zip(names, results[np.float32], results[np.float64]):
        assert a32.dtype == np.float32, f"{name} drifted to {a32.dtype}"
        a32, a64 = backend.to_numpy(a32), backend.to_numpy(a64)
        np.testing.assert_allclose(a32, a64, rtol=2e-5, atol=2e-5 * np.abs(a64).max(), err_msg=name)
