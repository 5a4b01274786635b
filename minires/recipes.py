"""What ``minires train`` trains: its settings, the tutorials' recipes, and the pieces built from them.

A run is described by one ``Settings``: the model, the data, the optimizer and the schedule.
``RECIPES`` names the setups of the tutorials this project grew from; ``minires train`` with no
arguments runs the first, ``digits``. ``build_data``, ``build_model`` and ``build_optimizer``
turn settings into a DataLoader pair, a Module, and an optimizer with its schedule, so the
training loop (``minires/train.py``) reads as the loop alone.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy

import minires
from minires import models, nn
from minires.data import CIFAR10, MNIST, DataLoader, Digits, FashionMNIST, ImageFolder, Subset
from minires.data import transforms as T
from minires.optim import SGD, Adam, AdamW, Optimizer, lr_scheduler


class SettingsError(ValueError):
    """A setting that cannot work; its message says how to fix it (the CLI prints it on one line)."""


@dataclasses.dataclass
class Settings:
    """Everything that decides a run. ``minires train --help`` describes each one."""

    model: str = "resnet20"
    dataset: str = "digits"             # digits, mnist, fashion-mnist, cifar10, or "folder" with data_dir
    data_dir: Optional[str] = None      # an image folder: class folders, or train/ and val/ holding them
    root: str = "data"                  # where MNIST, Fashion-MNIST and CIFAR-10 files are (torchvision's layout)
    download: bool = False
    resize: Optional[int] = None        # resize images to this size first (d2l: 96)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"              # sgd, adam, adamw
    momentum: float = 0.9               # SGD's; one-cycle cycles it between 0.85 and 0.95 instead
    nesterov: bool = True               # SGD's Nesterov momentum (the digits recipe only)
    weight_decay: float = 5e-4
    schedule: str = "onecycle"          # none, cosine, step, onecycle
    step_size: int = 7                  # epochs between lr drops (schedule "step")
    weights: Optional[str] = None       # pretrained weights (.safetensors, or a PyTorch .pth with torch installed)
    train_only: str = "all"             # all, layer4 (layer4 and fc), fc
    device: str = "cpu"
    seed: int = 0
    log_grad_norms: bool = False        # each weight layer's gradient norm per epoch: grad_norms.csv and .png


RECIPES: Dict[str, Dict[str, Any]] = {
    # The main job: the paper's ResNet-20 on the bundled 8x8 digits; seconds per epoch on a laptop.
    "digits": dict(model="resnet20", dataset="digits", epochs=20, batch_size=64, lr=0.1, optimizer="sgd",
                   momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle"),
    # ResNet-18 on CIFAR-10 (kuangliu/pytorch-cifar): SGD 0.1, momentum 0.9, wd 5e-4, cosine, crop + flip.
    "cifar10-resnet18": dict(model="cifar_resnet18", dataset="cifar10", epochs=200, batch_size=128, lr=0.1,
                             optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="cosine"),
    # He et al. 2016, section 4.2: the CIFAR-10 ResNets (and plain nets) with the paper's SGD; cosine over the
    # paper's 164 epochs (64k iterations at batch 128) in place of its lr / 10 at 32k and 48k iterations.
    "cifar10-paper": dict(model="resnet56", dataset="cifar10", epochs=164, batch_size=128, lr=0.1, optimizer="sgd",
                          momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="multistep"),
    # Dive into Deep Learning, section 8.6: ResNet-18 on Fashion-MNIST resized to 96, plain SGD.
    "fashion-mnist-d2l": dict(model="d2l_resnet18", dataset="fashion-mnist", resize=96, epochs=10, batch_size=256,
                              lr=0.05, optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0,
                              schedule="none"),
    # PyTorch's transfer-learning tutorial: ImageNet ResNet-34, a new fc, SGD 0.001, lr / 10 every 7 epochs.
    "transfer-resnet34": dict(model="resnet34", dataset="folder", epochs=25, batch_size=16, lr=0.001,
                              optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=0.0, schedule="step",
                              step_size=7),
}

DATASETS = ["digits", "mnist", "fashion-mnist", "cifar10", "folder"]
OPTIMIZERS = ["sgd", "adam", "adamw"]
SCHEDULES = ["none", "cosine", "step", "multistep", "onecycle"]
TRAIN_ONLY = ["all", "layer4", "fc"]

# Per-channel mean and standard deviation of each training set (ImageNet's for image folders).
_STATS = {"digits": ((0.3055,), (0.3759,)), "mnist": ((0.1307,), (0.3081,)),
          "fashion-mnist": ((0.2860,), (0.3530,)),
          "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
          "folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def model_names() -> List[str]:
    """The model builders of ``minires.models`` (functions, not classes or helpers)."""
    helpers = {"summary", "conv1x1", "conv3x3", "resnet_block"}
    return [name for name in models.__all__ if name[0].islower() and name not in helpers]


def check(settings: Settings) -> None:
    """Refuse settings that cannot work, before anything is loaded or trained."""
    s = settings
    choices = [("model", s.model, model_names()), ("dataset", s.dataset, DATASETS),
               ("optimizer", s.optimizer, OPTIMIZERS), ("schedule", s.schedule, SCHEDULES),
               ("train-only", s.train_only, TRAIN_ONLY)]
    for name, value, allowed in choices:
        if value not in allowed:
            raise SettingsError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
    for name, least in (("epochs", 1), ("batch_size", 1), ("step_size", 1), ("resize", 1), ("seed", 0)):
        value = getattr(s, name)
        if value is not None and value < least:
            raise SettingsError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    for name in ("lr", "momentum", "weight_decay"):
        value = getattr(s, name)
        if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            raise SettingsError(f"--{name.replace('_', '-')} must be a {'positive' if name == 'lr' else 'non-negative'} "
                                f"number, got {value}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", s.device):
        raise SettingsError(f"unknown device {s.device!r}; choose cpu, cuda or cuda:N")
    if s.dataset == "folder" and not s.data_dir:
        raise SettingsError("the image-folder dataset needs --data-dir DIR (class folders, or train/ and val/)")
    if s.data_dir and s.dataset != "folder":
        raise SettingsError(f"--data-dir is an image folder, but the dataset is {s.dataset!r}; leave out --dataset "
                            f"or give --dataset folder")
    if s.data_dir and not os.path.isdir(s.data_dir):
        raise SettingsError(f"--data-dir {s.data_dir!r} is not a folder; give the folder that holds one folder "
                            f"per class (or train/ and val/ folders that do)")
    if s.weights and not os.path.isfile(s.weights):
        raise SettingsError(f"--weights {s.weights!r} does not exist; give a .safetensors file (minires.save) "
                            f"or a PyTorch .pth checkpoint")
    if s.train_only != "all" and not s.weights:
        raise SettingsError(f"--train-only {s.train_only} freezes pretrained layers, so it needs --weights FILE")
    if s.device.startswith("cuda") and not minires.cuda_is_available():
        raise SettingsError(f"--device {s.device} needs CuPy and a CUDA GPU, and this machine has none usable; "
                            f"run with --device cpu, or install CuPy with pip install 'minires[gpu]'")


# ------------------------------------------------------------------------------------------ data
def _transforms(settings: Settings, train: bool) -> T.Compose:
    """Each dataset's usual pipeline: augmentation for training, then ToTensor and Normalize."""
    mean, std = _STATS[settings.dataset]
    steps: List[Any] = []
    if settings.dataset == "folder":          # the transfer-learning tutorial's pipeline, at 224x224
        steps = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
    elif settings.resize:
        steps = [T.Resize(settings.resize)]
    if settings.dataset == "cifar10" and train:
        steps += [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if settings.dataset == "digits" and train:   # CIFAR's crop scaled down: a shift of up to 1 pixel in 8; no flip
        size = settings.resize or 8
        steps += [T.RandomCrop(size, padding=size // 8)]
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])


def _datasets(settings: Settings) -> Tuple[Any, Any, List[str]]:
    name, train_tf, test_tf = settings.dataset, _transforms(settings, True), _transforms(settings, False)
    if name == "digits":
        return Digits(train=True, transform=train_tf), Digits(train=False, transform=test_tf), Digits.classes
    if name == "folder":
        return _folder_datasets(settings.data_dir, train_tf, test_tf, settings.seed)
    cls = {"mnist": MNIST, "fashion-mnist": FashionMNIST, "cifar10": CIFAR10}[name]
    try:
        train = cls(settings.root, train=True, transform=train_tf, download=settings.download)
        test = cls(settings.root, train=False, transform=test_tf, download=settings.download)
    except FileNotFoundError as err:
        raise SettingsError(f"{err} (or add --download to fetch the files into --root {settings.root!r})") from None
    return train, test, list(train.classes)


def _folder_datasets(data_dir: str, train_tf: Any, test_tf: Any, seed: int) -> Tuple[Any, Any, List[str]]:
    """train/ and val/ (or test/) subfolders when there are, else 20% of the images, drawn with ``seed``."""
    split = [os.path.join(data_dir, sub) for sub in ("train", "val", "test")]
    if os.path.isdir(split[0]) and (os.path.isdir(split[1]) or os.path.isdir(split[2])):
        held_out = split[1] if os.path.isdir(split[1]) else split[2]
        train, test = ImageFolder(split[0], transform=train_tf), ImageFolder(held_out, transform=test_tf)
        if train.classes != test.classes:
            raise SettingsError(f"{split[0]!r} and {held_out!r} hold different classes: {train.classes} and "
                                f"{test.classes}")
        return train, test, list(train.classes)
    train, test = ImageFolder(data_dir, transform=train_tf), ImageFolder(data_dir, transform=test_tf)
    order = numpy.random.default_rng(seed).permutation(len(train))
    n_test = max(1, len(train) // 5)
    return Subset(train, order[n_test:]), Subset(test, order[:n_test]), list(train.classes)


def build_data(settings: Settings) -> Tuple[DataLoader, DataLoader, List[str]]:
    """The training loader (shuffled, from minires's generator), the test loader, the class names."""
    train, test, classes = _datasets(settings)
    train_loader = DataLoader(train, batch_size=settings.batch_size, shuffle=True)
    test_loader = DataLoader(test, batch_size=max(settings.batch_size, 256))
    return train_loader, test_loader, classes


def image_channels(loader: DataLoader) -> int:
    """Channels of the dataset's images: 1 for grey digits and MNIST, 3 for colour."""
    image, _ = loader.dataset[0]
    return int(image.shape[0])


# ----------------------------------------------------------------------------------------- model
def build_model(settings: Settings, num_classes: int, in_channels: int) -> nn.Module:
    """The model, with pretrained weights loaded and a new classifier where ``--weights`` is given."""
    builder = getattr(models, settings.model)
    if not settings.weights:
        return builder(num_classes=num_classes, in_channels=in_channels)
    state = _read_weights(settings.weights)
    if "fc.weight" not in state:
        raise SettingsError(f"{settings.weights!r} has no fc.weight, so it is not a {settings.model} state dict "
                            f"(its first keys: {list(state)[:3]})")
    pretrained_classes, pretrained_channels = state["fc.weight"].shape[0], state["conv1.weight"].shape[1]
    model = builder(num_classes=pretrained_classes, in_channels=pretrained_channels)
    try:
        model.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise SettingsError(f"{settings.weights!r} does not fit {settings.model}: {first}") from None
    if pretrained_channels != in_channels:
        raise SettingsError(f"{settings.weights!r} expects {pretrained_channels}-channel images, the dataset has "
                            f"{in_channels}")
    if pretrained_classes != num_classes:   # a new head for the new classes (transfer learning)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    if settings.train_only != "all":
        trained = ("fc.",) if settings.train_only == "fc" else ("fc.", "layer4.")
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith(trained)
    return model


def _read_weights(path: str) -> Dict[str, Any]:
    if path.endswith((".pth", ".pt")):
        return dict(minires.io.import_torch_checkpoint(path))
    try:
        return dict(minires.load(path))
    except ValueError as err:
        raise SettingsError(str(err)) from None


# -------------------------------------------------------------------------------- optimizer, lr
def build_optimizer(settings: Settings, model: nn.Module,
                    steps_per_epoch: int) -> Tuple[Optimizer, Optional[lr_scheduler.LRScheduler]]:
    """The optimizer over the trainable parameters, and a schedule stepped once per batch (or None).

    Weight decay is not applied to batch-norm weights and biases (their own parameter group).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    s = settings
    if s.optimizer == "sgd":
        optimizer: Optimizer = SGD(groups, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                                   nesterov=s.nesterov and s.momentum > 0)
    else:
        cls = Adam if s.optimizer == "adam" else AdamW
        optimizer = cls(groups, lr=s.lr, weight_decay=s.weight_decay)
    total = s.epochs * steps_per_epoch
    if s.schedule == "cosine":
        return optimizer, lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if s.schedule == "step":
        return optimizer, lr_scheduler.StepLR(optimizer, step_size=s.step_size * steps_per_epoch, gamma=0.1)
    if s.schedule == "multistep":            # the paper's: lr / 10 at half and at three quarters of training
        return optimizer, lr_scheduler.MultiStepLR(optimizer, milestones=[total // 2, total * 3 // 4], gamma=0.1)
    if s.schedule == "onecycle":
        return optimizer, lr_scheduler.OneCycleLR(optimizer, max_lr=s.lr, total_steps=total)
    return optimizer, None
