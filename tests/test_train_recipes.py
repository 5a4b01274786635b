"""The tutorials' recipes end to end through `minires train`, on tiny files in each dataset's real format."""
import importlib.util
import os

import numpy as np
import pytest

import minires
import minires.train as T
from minires.cli import main
from minires.recipes import Settings, build_model

import datafiles

needs_pillow = pytest.mark.skipif(importlib.util.find_spec("PIL") is None,
                                  reason="image folders need Pillow: pip install 'minires[image]'")


def test_the_cifar10_recipe_trains_on_cifar_files(tmp_path, capsys):
    datafiles.write_cifar(tmp_path / "data", per_batch=2)
    out = tmp_path / "run"
    assert main(["train", "--recipe", "cifar10-resnet18", "--root", str(tmp_path / "data"), "--epochs", "1",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("cifar_resnet18 (11,173,962 trainable parameters) on cifar10: 10 training and 2 test")
    assert (out / T.METRICS).is_file()


def test_the_d2l_recipe_resizes_fashion_mnist_to_96(tmp_path, capsys):
    datafiles.write_mnist(tmp_path / "data", name="FashionMNIST", n_train=6, n_test=2)
    out = tmp_path / "run"
    assert main(["train", "--recipe", "fashion-mnist-d2l", "--root", str(tmp_path / "data"), "--epochs", "1",
                 "--out", str(out)]) == 0
    assert "d2l_resnet18" in capsys.readouterr().out
    settings = Settings(**__import__("json").loads((out / T.SETTINGS).read_text()))
    assert (settings.resize, settings.lr, settings.batch_size, settings.optimizer) == (96, 0.05, 256, "sgd")
    from minires.recipes import build_data
    train_loader, _, _ = build_data(settings)
    images, _ = next(iter(train_loader))
    assert images.shape == (6, 1, 96, 96)


def write_image_folder(root, classes=("daisy", "rose"), per_class=3, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (30 + 5 * i, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


@needs_pillow
@pytest.mark.parametrize("train_only, learned", [
    ("fc", ("fc.",)), ("layer4", ("fc.", "layer4.")), ("all", ("",))])
def test_transfer_learning_trains_exactly_the_chosen_layers(tmp_path, train_only, learned, capsys):
    write_image_folder(tmp_path / "flowers")
    minires.manual_seed(7)
    pretrained = minires.models.resnet34()                        # stands in for ImageNet weights: 1000 classes
    weights = tmp_path / "resnet34.safetensors"
    minires.save(pretrained, weights)
    out = tmp_path / "run"
    assert main(["train", "--recipe", "transfer-resnet34", "--data-dir", str(tmp_path / "flowers"),
                 "--weights", str(weights), "--train-only", train_only, "--epochs", "1", "--batch-size", "4",
                 "--out", str(out)]) == 0
    assert "on folder: 5 training and 1 test images, 2 classes" in capsys.readouterr().out
    trained = minires.load(out / T.BEST)
    assert trained["fc.weight"].shape == (2, 512)                 # a new head for the 2 classes
    before = pretrained.state_dict()
    for name, p in pretrained.named_parameters():
        if name.startswith("fc."):
            continue
        changed = not np.array_equal(trained[name].numpy(), before[name].numpy())
        assert changed == name.startswith(learned), name


@needs_pillow
def test_an_image_folder_with_train_and_val_folders_is_used_as_split(tmp_path, capsys):
    write_image_folder(tmp_path / "data" / "train", per_class=2)
    write_image_folder(tmp_path / "data" / "val", per_class=1, seed=1)
    settings = Settings(model="resnet18", dataset="folder", data_dir=str(tmp_path / "data"), epochs=1, batch_size=4)
    from minires.recipes import build_data
    train_loader, test_loader, classes = build_data(settings)
    assert (len(train_loader.dataset), len(test_loader.dataset), classes) == (4, 2, ["daisy", "rose"])
    images, labels = next(iter(test_loader))
    assert images.shape == (2, 3, 224, 224)


def test_a_pytorch_checkpoint_loads_as_weights(tmp_path):
    torch = pytest.importorskip("torch")
    model = minires.models.resnet20(num_classes=10, in_channels=1)
    path = tmp_path / "w.pth"
    torch.save({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}, path)
    loaded = build_model(Settings(model="resnet20", weights=str(path)), 3, 1)
    assert loaded.fc.weight.shape == (3, 64)
    np.testing.assert_array_equal(loaded.conv1.weight.numpy(), model.conv1.weight.numpy())
