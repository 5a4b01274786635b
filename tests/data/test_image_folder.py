"""ImageFolder: classes from sorted folder names, images found by extension (any case, in
sub-folders too), decoded lazily with Pillow into RGB uint8 (H, W, 3), and clear errors for
empty folders, undecodable files and a missing Pillow. Tests that decode images skip where
Pillow is not installed."""
import importlib.util
import os
import sys

import numpy as np
import pytest

from minires.data.datasets import IMG_EXTENSIONS, ImageFolder

needs_pillow = pytest.mark.skipif(importlib.util.find_spec("PIL") is None,
                                  reason='Pillow is not installed (pip install "minires[image]")')


def save(path, array):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def relative(path, root):
    return os.path.relpath(path, root).replace(os.sep, "/")


@pytest.fixture
def flowers(tmp_path):
    """root/roses (2 PNGs, a grey one, one in a sub-folder), root/daisy (a JPEG, an RGBA .PNG, a BMP),
    root/tulips (a JPEG named .JPG); plus files that are not images."""
    rng = np.random.default_rng(0)
    pixels = {}
    for name, shape in [("roses/a.png", (5, 7, 3)), ("roses/sub/b.png", (6, 4, 3)), ("daisy/c.bmp", (3, 3, 3))]:
        pixels[name] = rng.integers(0, 256, shape, dtype=np.uint8)
        save(tmp_path / name, pixels[name])
    grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    save(tmp_path / "roses" / "grey.png", grey)
    pixels["roses/grey.png"] = np.repeat(grey[..., None], 3, axis=2)
    rgba = rng.integers(0, 256, (2, 3, 4), dtype=np.uint8)
    save(tmp_path / "daisy" / "d.PNG", rgba)
    pixels["daisy/d.PNG"] = rgba[..., :3]
    save(tmp_path / "daisy" / "e.jpeg", np.full((8, 8, 3), 200, np.uint8))
    save(tmp_path / "tulips" / "f.JPG", np.full((8, 10, 3), 50, np.uint8))
    (tmp_path / "roses" / "notes.txt").write_text("not an image")
    (tmp_path / "daisy" / "e.jpeg.json").write_text("{}")
    (tmp_path / "README.png").write_bytes(b"a file at the top is not a class")
    return tmp_path, pixels


@needs_pillow
def test_classes_samples_and_targets_as_torchvision(flowers):
    root, _ = flowers
    data = ImageFolder(root)
    assert data.classes == ["daisy", "roses", "tulips"]
    assert data.class_to_idx == {"daisy": 0, "roses": 1, "tulips": 2}
    names = [relative(path, root) for path, _ in data.samples]
    assert names == ["daisy/c.bmp", "daisy/d.PNG", "daisy/e.jpeg",
                     "roses/a.png", "roses/grey.png", "roses/sub/b.png", "tulips/f.JPG"]
    assert data.targets.dtype == np.int64 and data.targets.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert [target for _, target in data.samples] == data.targets.tolist() and len(data) == 7


@needs_pillow
def test_images_decode_to_rgb_uint8_hwc(flowers):
    root, pixels = flowers
    data = ImageFolder(root)
    for index, (path, target) in enumerate(data.samples):
        image, label = data[index]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and label == target
        name = relative(path, root)
        if name in pixels:                                     # lossless formats: exactly the pixels written
            np.testing.assert_array_equal(image, pixels[name])
    jpeg, _ = data[2]
    assert jpeg.shape == (8, 8, 3) and np.abs(jpeg.astype(int) - 200).max() <= 2


@needs_pillow
def test_transforms_run_per_image(flowers):
    root, _ = flowers
    shapes = []
    data = ImageFolder(root, transform=lambda image: (shapes.append(image.shape), image[:2, :2])[1],
                       target_transform=lambda target: data.classes[target])
    image, label = data[5]
    assert image.shape == (2, 2, 3) and label == "roses" and shapes == [(6, 4, 3)]


@needs_pillow
def test_images_are_decoded_only_when_asked_for(flowers):
    root, _ = flowers
    (root / "tulips" / "broken.png").write_bytes(b"\x89PNG but not really")
    data = ImageFolder(root)                                    # listing the files decodes nothing
    assert len(data) == 8
    with pytest.raises(ValueError, match=r"broken.png' could not be decoded as an image"):
        data[data.samples.index((str(root / "tulips" / "broken.png"), 2))]


def test_extensions_are_torchvisions():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"} == set(IMG_EXTENSIONS)


@needs_pillow
def test_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no sub-folders; expected one folder of images per class"):
        ImageFolder(tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    save(tmp_path / "dogs" / "1.png", np.zeros((2, 2, 3), np.uint8))
    (tmp_path / "cats" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"no image files in the class folder\(s\) \['cats'\]"):
        ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageFolder(tmp_path / "nowhere")


def test_without_pillow_the_error_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "1.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)               # `from PIL import Image` now fails
    with pytest.raises(ImportError, match=r'pip install "minires\[image\]"'):
        ImageFolder(tmp_path)


def test_a_custom_loader_needs_no_pillow(tmp_path, monkeypatch):
    for name in ("cats/1.png", "dogs/2.png"):
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)
    data = ImageFolder(tmp_path, loader=lambda path: np.zeros((2, 2, 3), np.uint8) + len(path) % 7)
    image, target = data[1]
    assert image.shape == (2, 2, 3) and target == 1


@needs_pillow
def test_images_of_different_sizes_batch_after_a_resize(flowers):
    from minires.data import DataLoader, transforms
    root, _ = flowers
    data = ImageFolder(root, transform=transforms.Compose([transforms.Resize((6, 6)), transforms.ToTensor()]))
    images, targets = next(iter(DataLoader(data, batch_size=4)))
    assert images.shape == (4, 3, 6, 6) and str(images.dtype) == "float32"
    assert targets.data.tolist() == [0, 0, 0, 1]
