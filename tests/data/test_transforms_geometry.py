"""RandomCrop, CenterCrop, Resize, RandomResizedCrop: by definition, against PyTorch, one image vs a batch."""
import json
import pathlib

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minires.data import transforms as T
from minires.data.image import uniform_integers
from minires.data.interpolate import resize_weights

from .test_transforms import layouts_agree, per_image_equals_batch, raw_batch, shapes, tensor_batch

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
ROUNDING = 0.5 / 255 + 1e-6          # uint8 results are rounded: at most half a level from the float ones


# ---------------------------------------------------------------------------------- RandomCrop
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_is_a_window_of_the_padded_image(mode):
    raw = raw_batch(n=6, h=8, w=9)
    out = T.RandomCrop((8, 7), padding=(1, 2, 3, 4), padding_mode=mode, generator=np.random.default_rng(5))(raw)
    kwargs = {"constant_values": 0} if mode == "constant" else {}
    padded = np.pad(raw, [(0, 0), (2, 4), (1, 3), (0, 0)], mode=mode, **kwargs)        # top, bottom; left, right
    offsets = uniform_integers(np.random.default_rng(5), np.broadcast_to([14 - 8 + 1, 13 - 7 + 1], (6, 2)))
    expected = np.stack([p[i:i + 8, j:j + 7] for p, (i, j) in zip(padded, offsets)])
    np.testing.assert_array_equal(out, expected)


@given(shape=shapes, padding=st.integers(0, 3), size=st.integers(1, 9), seed=st.integers(0, 2 ** 16),
       mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]))
@example(shape=(4, 8, 8, 3), padding=2, size=8, seed=0, mode="constant")     # the CIFAR recipe, scaled down
@example(shape=(2, 1, 1, 1), padding=0, size=1, seed=0, mode="constant")     # nothing to choose
def test_random_crop_batch_equals_per_image_and_layouts_agree(shape, padding, size, seed, mode):
    make = lambda g: T.RandomCrop(size, padding=padding, pad_if_needed=True, padding_mode=mode,  # noqa: E731
                                  fill=7, generator=g)
    raw = raw_batch(*shape, seed=seed)
    out = per_image_equals_batch(make, raw, seed)
    assert out.shape == (shape[0], size, size, shape[3]) and out.dtype == np.uint8
    fill_as_float = lambda g: T.RandomCrop(size, padding=padding, pad_if_needed=True,  # noqa: E731
                                           padding_mode=mode, fill=7 / 255, generator=g)
    before = T.ToTensor()(make(np.random.default_rng(seed))(raw))
    after = fill_as_float(np.random.default_rng(seed))(T.ToTensor()(raw))
    np.testing.assert_allclose(before, after, atol=1e-7)


def test_random_crop_padding_forms_and_fill():
    raw = raw_batch(n=1, h=2, w=2, c=3)
    grown = T.RandomCrop((2 + 2 * 1, 2 + 2 * 3), padding=(3, 1), fill=(1, 2, 3))(raw)  # left/right 3, top/bottom 1
    assert grown.shape == (1, 4, 8, 3)
    np.testing.assert_array_equal(grown[0, 1:3, 3:5], raw[0])
    np.testing.assert_array_equal(grown[0, 0, 0], [1, 2, 3])
    small = T.RandomCrop(8, pad_if_needed=True, generator=np.random.default_rng(0))(raw_batch(n=3, h=5, w=5))
    assert small.shape == (3, 8, 8, 3)


def test_random_crop_with_nothing_to_choose_draws_nothing():
    raw, generator = raw_batch(), np.random.default_rng(0)
    state = generator.bit_generator.state
    np.testing.assert_array_equal(T.RandomCrop((6, 7), generator=generator)(raw), raw)
    assert generator.bit_generator.state == state


def test_random_crop_errors():
    with pytest.raises(ValueError, match=r"size \(9, 9\) does not fit in images of size \(6, 7\).*pad_if_needed"):
        T.RandomCrop(9)(raw_batch())
    with pytest.raises(ValueError, match="positive int or a \\(height, width\\) pair, got 0"):
        T.RandomCrop(0)
    with pytest.raises(ValueError, match="padding as a non-negative int"):
        T.RandomCrop(4, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        T.RandomCrop(4, padding_mode="wrap")
    with pytest.raises(ValueError, match=r"whole numbers in \[0, 255\], got 300"):
        T.RandomCrop(4, padding=1, fill=300)(raw_batch())
    with pytest.raises(ValueError, match="fill has 2 values, but the images have 3 channels"):
        T.RandomCrop(4, padding=1, fill=(1, 2))(raw_batch())
    assert repr(T.RandomCrop(32, padding=4)) == "RandomCrop(size=(32, 32), padding=4)"


# ---------------------------------------------------------------------------------- CenterCrop
def test_center_crop_rounds_like_torchvision():
    raw = raw_batch(n=2, h=5, w=8)
    out = T.CenterCrop((2, 3))(raw)
    np.testing.assert_array_equal(out, raw[:, 2:4, 2:5])        # round(1.5) = 2, round(2.5) = 2
    np.testing.assert_array_equal(T.CenterCrop((2, 3))(raw[1]), out[1])
    np.testing.assert_array_equal(T.CenterCrop((2, 3))(T.ToTensor()(raw)), T.ToTensor()(out))
    assert repr(T.CenterCrop(224)) == "CenterCrop(size=(224, 224))"


def test_center_crop_pads_small_images_with_zeros():
    image = raw_batch(n=1, h=3, w=3)[0]
    out = T.CenterCrop((6, 5))(image)                            # 3 rows: 1 above, 2 below; 2 columns: 1 each side
    assert out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out[1:4, 1:4], image)
    assert out.sum() == image.astype(np.int64).sum()


# -------------------------------------------------------------------------------------- Resize
def fixture_cases():
    """``(params, x, out, out_float)``; ``out_float`` (torch's float result for a uint8 ``x``) or None."""
    data = np.load(FIXTURES / "transforms.npz", allow_pickle=False)
    for k in range(int(data["meta/num_cases"])):
        out_float = data[f"case{k}/out_float"] if f"case{k}/out_float" in data else None
        yield json.loads(str(data[f"case{k}/params"])), data[f"case{k}/x"], data[f"case{k}/out"], out_float


def test_resize_agrees_with_pytorch():
    cases = list(fixture_cases())
    assert len(cases) == 21
    for params, x, expected, out_float in cases:
        resize = T.Resize(tuple(params["size"]), antialias=params["antialias"])
        if x.dtype == np.float32:                                # (N, C, H, W) is our tensor layout
            np.testing.assert_allclose(resize(x), expected, rtol=0, atol=1e-5, err_msg=str(params))
        else:   # we round once; torch's uint8 kernel (PIL's) also rounds between its two passes: within 1
            ours = resize(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)     # (N, H, W, C) is our raw layout
            np.testing.assert_allclose(ours, out_float, rtol=0, atol=0.5 + 1e-3)
            assert np.abs(ours.astype(np.int64) - expected).max() <= 1, params


def test_resize_weights_by_hand():
    """Halving 4 pixels: plain bilinear averages pairs; antialiased, the tent spans 2 pixels each side."""
    np.testing.assert_allclose(resize_weights(4, 2, antialias=False), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(resize_weights(4, 2, antialias=True),
                               [[3 / 7, 3 / 7, 1 / 7, 0], [0, 1 / 7, 3 / 7, 3 / 7]])
    np.testing.assert_allclose(resize_weights(2, 4, antialias=True), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_array_equal(resize_weights(5, 5, antialias=True), np.eye(5))


@pytest.mark.parametrize("hw, size, expected", [((20, 30), 10, (10, 15)), ((30, 20), 10, (15, 10)),
                                                ((7, 10), 4, (4, 5)), ((28, 28), 96, (96, 96)),
                                                ((28, 28), [96], (96, 96)), ((7, 10), (3, 2), (3, 2))])
def test_resize_output_size(hw, size, expected):
    out = T.Resize(size)(raw_batch(n=2, h=hw[0], w=hw[1]))
    assert out.shape == (2, *expected, 3) and out.dtype == np.uint8


@given(shape=shapes, out_h=st.integers(1, 12), out_w=st.integers(1, 12), antialias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
@example(shape=(2, 8, 8, 1), out_h=3, out_w=20, antialias=True, seed=0)
def test_resize_batch_equals_per_image_keeps_constants_and_layouts_agree(shape, out_h, out_w, antialias, seed):
    make = lambda g: T.Resize((out_h, out_w), antialias=antialias)  # noqa: E731
    raw = raw_batch(*shape, seed=seed)
    per_image_equals_batch(make, raw)
    layouts_agree(make, raw, atol=ROUNDING)
    flat = np.full(shape, 77, np.uint8)
    np.testing.assert_array_equal(make(None)(flat), 77)
    np.testing.assert_allclose(make(None)(T.ToTensor()(flat)), 77 / 255, rtol=1e-6)


def test_resize_keeps_the_float_dtype_and_prints_like_torchvision():
    assert T.Resize(3)(tensor_batch().astype(np.float64)).dtype == np.float64
    assert T.Resize(3)(tensor_batch()[0]).shape == (3, 3, 3)
    assert repr(T.Resize(32)) == "Resize(size=32, interpolation=bilinear, antialias=True)"
    assert repr(T.Resize((32, 16), antialias=False)) == "Resize(size=(32, 16), interpolation=bilinear, antialias=False)"


# --------------------------------------------------------------------------- RandomResizedCrop
@given(shape=shapes, size=st.integers(1, 10), seed=st.integers(0, 2 ** 16))
@example(shape=(6, 9, 5, 3), size=4, seed=0)
def test_random_resized_crop_batch_equals_per_image_and_layouts_agree(shape, size, seed):
    make = lambda g: T.RandomResizedCrop(size, generator=g)  # noqa: E731
    out = per_image_equals_batch(make, raw_batch(*shape, seed=seed), seed)
    assert out.shape == (shape[0], size, size, shape[3]) and out.dtype == np.uint8
    layouts_agree(make, raw_batch(*shape, seed=seed), seed, atol=ROUNDING)


@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2 ** 16))
@example(h=1, w=40, seed=0)
def test_random_resized_crop_params_fit_and_the_output_is_the_resized_crop(h, w, seed):
    transform = T.RandomResizedCrop((5, 6), generator=np.random.default_rng(seed))
    top, left, ch, cw = transform.get_params(h, w, np.random.default_rng(seed))
    assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
    image = tensor_batch(n=1, h=h, w=w, seed=seed)[0]
    expected = T.Resize((5, 6))(image[:, top:top + ch, left:left + cw])
    np.testing.assert_allclose(transform(image), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ratio, expected", [((2.0, 2.0), (2, 0, 4, 8)), ((0.5, 0.5), (0, 2, 8, 4)),
                                             ((1.0, 1.0), (0, 0, 8, 8))])
def test_random_resized_crop_falls_back_to_the_central_crop(ratio, expected):
    """scale=(1, 1) with a ratio the square image does not have never fits: the central crop within ratio."""
    transform = T.RandomResizedCrop(4, scale=(1.0, 1.0), ratio=ratio)
    assert transform.get_params(8, 8, np.random.default_rng(0)) == expected


def test_random_resized_crop_of_the_whole_image_is_a_resize():
    x = tensor_batch(n=3, h=9, w=9)
    whole = T.RandomResizedCrop(4, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x)
    np.testing.assert_allclose(whole, T.Resize(4)(x), atol=1e-6)


def test_random_resized_crop_errors_and_repr():
    with pytest.raises(ValueError, match=r"scale must be \(min, max\) with 0 < min <= max, got \(0.5, 0.2\)"):
        T.RandomResizedCrop(4, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="at most 1"):
        T.RandomResizedCrop(4, scale=(0.5, 2.0))
    with pytest.raises(ValueError, match="ratio must be"):
        T.RandomResizedCrop(4, ratio=(0.0, 1.0))
    assert repr(T.RandomResizedCrop(224)) == ("RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), "
                                              "ratio=(0.75, 1.3333), interpolation=bilinear, antialias=True)")


@pytest.mark.parametrize("transform, raw_shape", [
    (T.RandomCrop(4, padding=1), (0, 4, 4, 3)), (T.CenterCrop(2), (0, 2, 2, 3)), (T.Resize((3, 5)), (0, 3, 5, 3)),
    (T.RandomResizedCrop(3), (0, 3, 3, 3)), (T.RandomHorizontalFlip(), (0, 6, 7, 3)), (T.ToTensor(), (0, 3, 6, 7)),
])
def test_an_empty_batch_keeps_its_shape(transform, raw_shape):
    out = transform(raw_batch(n=0))
    assert out.shape == raw_shape
