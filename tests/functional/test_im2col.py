"""im2col / col2im: the definition, the adjoint pair, padding and ceil_mode's extra rows.

Every test takes ``xp``/``device`` so it runs on NumPy and, where a GPU exists, on CuPy.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from minires import backend
from minires.functional.im2col import col2im, conv_output_size, im2col, pool_output_size
from minires.testing import adjoint_check
from minires.testing.strategies import conv2d_configs, normal_array, pool2d_configs, seeds

# The xp/device fixtures only name a backend, so sharing them across Hypothesis examples is safe.
with_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def geometry(cfg) -> tuple:
    return cfg.kernel_size, cfg.stride, cfg.padding, cfg.dilation


def im2col_by_definition(x, kernel, stride, padding, dilation, out_size, pad_value):
    """cols[c, i, j, n, y, x] = x_pad[n, c, y*sH + i*dH, x*sW + j*dW], element by element;
    a position outside the input (padding, or ceil_mode's extra rows) holds pad_value."""
    N, C, H, W = x.shape
    cols = np.empty((C,) + tuple(kernel) + (N,) + tuple(out_size))
    for c, i, j, n, y, z in np.ndindex(*cols.shape):
        r = y * stride[0] + i * dilation[0] - padding[0]
        s = z * stride[1] + j * dilation[1] - padding[1]
        cols[c, i, j, n, y, z] = x[n, c, r, s] if 0 <= r < H and 0 <= s < W else pad_value
    return cols


def col2im_by_definition(cols, x_shape, kernel, stride, padding, dilation):
    """Each column entry added back onto the input pixel it came from; padding is dropped."""
    N, C, H, W = x_shape
    dx = np.zeros(x_shape)
    for c, i, j, n, y, z in np.ndindex(*cols.shape):
        r = y * stride[0] + i * dilation[0] - padding[0]
        s = z * stride[1] + j * dilation[1] - padding[1]
        if 0 <= r < H and 0 <= s < W:
            dx[n, c, r, s] += cols[c, i, j, n, y, z]
    return dx


@with_fixtures
@given(cfg=pool2d_configs(), seed=seeds())
def test_im2col_and_col2im_match_their_definitions(xp, cfg, seed):
    """Pooling geometry covers ceil_mode's extra rows; pad_value -inf is max pooling's."""
    x = normal_array(cfg.x_shape, seed)
    for pad_value in (0.0, -np.inf):
        cols = im2col(xp.asarray(x), *geometry(cfg), cfg.out_size, pad_value=pad_value)
        want = im2col_by_definition(x, *geometry(cfg), cfg.out_size, pad_value)
        np.testing.assert_array_equal(backend.to_numpy(cols), want)
    y = normal_array(want.shape, seed + 1)
    dx = col2im(xp.asarray(y), cfg.x_shape, *geometry(cfg))
    np.testing.assert_allclose(backend.to_numpy(dx), col2im_by_definition(y, cfg.x_shape, *geometry(cfg)),
                               rtol=1e-13, atol=1e-13)


@with_fixtures
@given(cfg=conv2d_configs(), seed=seeds())
def test_col2im_is_the_adjoint_of_im2col(xp, device, cfg, seed):
    adjoint_check(lambda x: im2col(x, *geometry(cfg), cfg.out_size),
                  cfg.x_shape, adjoint_fn=lambda y: col2im(y, cfg.x_shape, *geometry(cfg)),
                  seed=seed, device=device)


@with_fixtures
@given(cfg=pool2d_configs(ceil_mode=True), seed=seeds())
def test_adjoint_with_ceil_mode_extra_rows(xp, device, cfg, seed):
    adjoint_check(lambda x: im2col(x, *geometry(cfg), cfg.out_size),
                  cfg.x_shape, adjoint_fn=lambda y: col2im(y, cfg.x_shape, *geometry(cfg)),
                  seed=seed, device=device)


@pytest.mark.parametrize("size, kernel, stride, padding, out", [
    (5, 2, 2, 1, 3),          # ceil would give 4, but the 4th window starts past the input: dropped
    (6, 3, 2, 1, 4),          # the kept last window reaches one row past the right padding
])
def test_ceil_mode_extra_rows(xp, device, size, kernel, stride, padding, out):
    assert pool_output_size(size, kernel, stride, padding, 1, ceil_mode=True) == out
    geo = ((kernel, kernel), (stride, stride), (padding, padding), (1, 1))
    x_shape = (1, 2, size, size)
    adjoint_check(lambda x: im2col(x, *geo, (out, out)), x_shape,
                  adjoint_fn=lambda y: col2im(y, x_shape, *geo), device=device)
    x = normal_array(x_shape, 3)
    cols = im2col(backend.to_device(x, device), *geo, (out, out), pad_value=-np.inf)
    np.testing.assert_array_equal(backend.to_numpy(cols), im2col_by_definition(x, *geo, (out, out), -np.inf))


def test_float32_stays_float32_and_cols_never_alias_x(xp):
    x = xp.asarray(normal_array((1, 3, 4, 4), 1, np.float32))
    cols = im2col(x, (1, 1), (1, 1), (0, 0), (1, 1), (4, 4))     # a 1x1 window is x itself...
    assert cols.dtype == np.float32 and cols.shape == (3, 1, 1, 1, 4, 4)
    cols[...] = 0                                                   # ...but a copy of it
    assert float(abs(x).sum()) > 0
    dx = col2im(cols, x.shape, (1, 1), (1, 1), (0, 0), (1, 1))
    assert dx.dtype == np.float32 and dx.shape == x.shape


def test_non_contiguous_input(xp):
    x = normal_array((4, 2, 5, 3), 2).transpose(1, 3, 0, 2)        # (2, 3, 4, 5), not contiguous
    geo = ((2, 3), (2, 1), (1, 1), (1, 2))
    out = tuple(conv_output_size(n, *a) for n, a in zip((4, 5), zip(*geo)))
    cols = im2col(xp.asarray(x), *geo, out)
    np.testing.assert_array_equal(backend.to_numpy(cols), im2col_by_definition(x, *geo, out, 0.0))
