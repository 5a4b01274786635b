"""The training loop behind ``minires train``: epochs, evaluation, metrics, checkpoints, resume.

One epoch is the loop every tutorial writes::

    for images, labels in train_loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

then an evaluation on the test set. After each epoch the output folder gets ``metrics.csv``,
``curves.png`` (loss and accuracy; needs matplotlib), ``checkpoint.safetensors`` (model,
optimizer, schedule and random-generator state in one file, written atomically) and
``best.safetensors`` (the model's state dict at its best test accuracy); ``settings.json``
records the run's settings once. With ``--log-grad-norms`` each step also measures the gradient
norm ||dL/dW|| of every weight layer (convolutions and fc, in depth order), and each epoch's mean
goes into ``grad_norms.csv`` and ``grad_norms.png``: where a deep plain network stops learning.

Resuming (``--resume DIR``) gives exactly the numbers of a run that was never stopped: the
checkpoint holds minires's random generator as it was when its epoch began, so the resumed
epoch draws the same order and the same augmentations, skips the batches already trained on,
and goes on. Ctrl-C stops after the current step and saves such a checkpoint first; a second
Ctrl-C stops at once.
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import minires
import minires.functional as F
from minires import backend
from minires import random as mr_random
from minires.io import atomic_write, load_metadata
from minires.optim import optimizer_state_from_arrays, optimizer_state_to_arrays
from minires.recipes import Settings, SettingsError, build_data, build_model, build_optimizer, check, image_channels

CHECKPOINT, BEST, METRICS, CURVES, SETTINGS = ("checkpoint.safetensors", "best.safetensors", "metrics.csv",
                                                "curves.png", "settings.json")
COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "images_per_s"]
GRAD_NORMS, GRAD_NORMS_PLOT = "grad_norms.csv", "grad_norms.png"
TIMING = {"seconds", "images_per_s"}          # the columns that differ from run to run


class Interrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved, the message says how to continue."""


@dataclasses.dataclass
class Progress:
    """Where a run stands; everything here goes into the checkpoint."""

    epoch: int = 0                      # epochs finished
    step: int = 0                       # batches finished in the current epoch
    epoch_rng: Optional[dict] = None    # minires's generator as it was when the current epoch began
    loss_sum: float = 0.0               # the current epoch's running sums
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    best_acc: float = -1.0
    rows: List[Dict[str, float]] = dataclasses.field(default_factory=list)
    grad_norm_sums: List[float] = dataclasses.field(default_factory=list)   # this epoch's, one per layer
    grad_norms: List[List[float]] = dataclasses.field(default_factory=list)  # each epoch's means


# ------------------------------------------------------------------------------------ the loop
def train(settings: Settings, out: str, resume: bool = False, log: Callable[[str], None] = print) -> List[dict]:
    """Train as ``settings`` say, writing into ``out``; returns the metrics, one row per epoch."""
    check(settings)
    _check_out(out, resume)
    minires.manual_seed(settings.seed)
    train_loader, test_loader, classes = build_data(settings)
    model = build_model(settings, len(classes), image_channels(train_loader)).to(settings.device)
    optimizer, schedule = build_optimizer(settings, model, len(train_loader))
    progress = Progress()
    if resume:
        progress = _load_checkpoint(os.path.join(out, CHECKPOINT), model, optimizer, schedule)
        log(f"resuming {out} at epoch {progress.epoch + 1}, batch {progress.step}")
    else:                                   # only now, so that a run that cannot start leaves nothing
        os.makedirs(out, exist_ok=True)
        _write_text(os.path.join(out, SETTINGS), json.dumps(dataclasses.asdict(settings), indent=2) + "\n")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"{settings.model} ({trainable:,} trainable parameters) on {settings.dataset}: {len(train_loader.dataset)} "
        f"training and {len(test_loader.dataset)} test images, {len(classes)} classes, {settings.device}")

    with _StopOnCtrlC() as stop:
        while progress.epoch < settings.epochs:
            if progress.step == 0:
                progress.epoch_rng = mr_random.default_generator().bit_generator.state
            _train_one_epoch(settings, model, optimizer, schedule, train_loader, progress, stop, out)
            test_loss, test_acc = evaluate(model, test_loader, settings.device)
            _finish_epoch(settings, model, optimizer, schedule, progress, test_loss, test_acc, out, log)
    last = progress.rows[-1]
    log(f"test accuracy {100 * last['test_acc']:.2f}% after {int(last['epoch'])} epochs "
        f"(best {100 * progress.best_acc:.2f}%); model, metrics and curves in {out}")
    return progress.rows


def _train_one_epoch(settings: Settings, model: minires.nn.Module, optimizer: Any, schedule: Any,
                     loader: minires.data.DataLoader, progress: Progress, stop: "_StopOnCtrlC", out: str) -> None:
    mr_random.default_generator().bit_generator.state = progress.epoch_rng   # this epoch's order and augmentations
    model.train()
    layers = weight_layers(model) if settings.log_grad_norms else []
    bar = _bar(len(loader), f"epoch {progress.epoch + 1}/{settings.epochs}")
    bar.update(progress.step)
    started = time.perf_counter()
    batches = iter(loader)
    try:
        for index, (images, labels) in enumerate(batches):
            if index < progress.step:                     # trained on before the interruption
                continue
            images, labels = images.to(settings.device), labels.to(settings.device)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            if layers:
                _add_grad_norms(layers, progress)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            n = labels.shape[0]
            progress.loss_sum += loss.item() * n
            progress.correct += int((logits.argmax(1) == labels).numpy().sum())
            progress.seen += n
            progress.step += 1
            elapsed = progress.seconds + time.perf_counter() - started
            bar.update(1, loss=progress.loss_sum / progress.seen, acc=progress.correct / progress.seen,
                       images_per_s=progress.seen / max(elapsed, 1e-9))
            if stop.requested:
                progress.seconds = elapsed
                _save_checkpoint(os.path.join(out, CHECKPOINT), model, optimizer, schedule, progress)
                raise Interrupted(f"stopped at epoch {progress.epoch + 1}, batch {progress.step}; checkpoint saved. "
                                  f"Continue with: minires train --resume {out}")
    finally:
        batches.close()
        bar.close()
    progress.seconds += time.perf_counter() - started


def evaluate(model: minires.nn.Module, loader: minires.data.DataLoader, device: str = "cpu") -> tuple:
    """Mean cross-entropy and accuracy of ``model`` (in evaluation mode) over ``loader``."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with minires.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(1) == labels).numpy().sum())
            seen += labels.shape[0]
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _finish_epoch(settings: Settings, model: Any, optimizer: Any, schedule: Any, progress: Progress,
                  test_loss: float, test_acc: float, out: str, log: Callable[[str], None]) -> None:
    seen = max(progress.seen, 1)
    progress.rows.append({
        "epoch": progress.epoch + 1, "train_loss": progress.loss_sum / seen, "train_acc": progress.correct / seen,
        "test_loss": test_loss, "test_acc": test_acc, "lr": optimizer.param_groups[0]["lr"],
        "seconds": progress.seconds, "images_per_s": progress.seen / max(progress.seconds, 1e-9)})
    if test_acc > progress.best_acc:
        progress.best_acc = test_acc
        minires.save(model, os.path.join(out, BEST))
    if settings.log_grad_norms:
        progress.grad_norms.append([total / max(progress.step, 1) for total in progress.grad_norm_sums])
        progress.grad_norm_sums = []
        names = [name for name, _ in weight_layers(model)]
        _write_grad_norms(os.path.join(out, GRAD_NORMS), names, progress.grad_norms)
        _plot_grad_norms(os.path.join(out, GRAD_NORMS_PLOT), progress.grad_norms)
    progress.epoch, progress.step = progress.epoch + 1, 0
    progress.loss_sum, progress.correct, progress.seen, progress.seconds = 0.0, 0, 0, 0.0
    progress.epoch_rng = mr_random.default_generator().bit_generator.state   # where the next epoch begins
    _write_metrics(os.path.join(out, METRICS), progress.rows)
    _plot(os.path.join(out, CURVES), progress.rows)
    _save_checkpoint(os.path.join(out, CHECKPOINT), model, optimizer, schedule, progress)
    row = progress.rows[-1]
    log(f"epoch {row['epoch']:>3}/{settings.epochs}: train loss {row['train_loss']:.4f} acc "
        f"{100 * row['train_acc']:.2f}% | test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.2f}% | "
        f"{row['seconds']:.1f} s, {row['images_per_s']:.0f} images/s")


# ---------------------------------------------------------------------------- gradient norms
def weight_layers(model: minires.nn.Module) -> List[tuple]:
    """``(name, parameter)`` of every trainable weight of a convolution or linear layer (2 or more
    dimensions), in the order the model registers them: depth order for the ResNets."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]


def _add_grad_norms(layers: List[tuple], progress: Progress) -> None:
    """Add this step's ||dL/dW|| (the Frobenius norm) of each layer to the epoch's running sums."""
    grads = [p.grad.data for _, p in layers]
    xp = backend.get_array_module(grads[0])
    squares = backend.to_numpy(xp.stack([(g * g).sum() for g in grads])).astype("float64")   # (layers,)
    norms = [float(v) ** 0.5 for v in squares]
    sums = progress.grad_norm_sums or [0.0] * len(norms)
    progress.grad_norm_sums = [total + norm for total, norm in zip(sums, norms)]


def _write_grad_norms(path: str, names: List[str], epochs: List[List[float]]) -> None:
    """One row per epoch and layer: the layer's depth (1 = first), its weight's name, the mean norm."""
    lines = ["epoch,depth,layer,grad_norm"]
    lines += [f"{e},{d},{name},{norm!r}" for e, norms in enumerate(epochs, 1)
              for d, (name, norm) in enumerate(zip(names, norms), 1)]
    _write_text(path, "\n".join(lines) + "\n")


def _plot_grad_norms(path: str, epochs: List[List[float]]) -> None:
    """The mean gradient norm by layer depth, one line per epoch (dark = early), log scale."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    colours = plt.get_cmap("viridis")
    for e, norms in enumerate(epochs):
        ax.plot(range(1, len(norms) + 1), norms, marker=".", color=colours(e / max(len(epochs) - 1, 1)),
                label=f"epoch {e + 1}" if e in (0, len(epochs) - 1) else None)
    ax.set(xlabel="layer (depth)", ylabel="||dL/dW||, mean over the epoch", yscale="log",
           title="gradient norm of each layer's weights")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, path)


# ------------------------------------------------------------------------------ checkpoints
def _check_out(out: str, resume: bool) -> None:
    """A new run never overwrites another; a resumed one needs its checkpoint."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise SettingsError(f"--out {out!r} is a file; give a folder for the run's outputs")
    checkpoint, settings = os.path.join(out, CHECKPOINT), os.path.join(out, SETTINGS)
    if not resume and (os.path.exists(checkpoint) or os.path.exists(settings)):
        raise SettingsError(f"{out!r} already holds a run; continue it with --resume {out}, or give another --out")
    if resume and not os.path.isfile(checkpoint):
        raise SettingsError(f"the run in {out!r} stopped before its first checkpoint, so there is nothing to resume; "
                            f"delete the folder and start the run again without --resume")


def _save_checkpoint(path: str, model: Any, optimizer: Any, schedule: Any, progress: Progress) -> None:
    """Model and optimizer arrays, and everything else as JSON in the same file's header."""
    opt_arrays, opt_meta = optimizer_state_to_arrays(optimizer.state_dict())
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer.{k}": v for k, v in opt_arrays.items()})
    meta = {"model": json.dumps(list(model.state_dict())), "optimizer": json.dumps(opt_meta),
            "schedule": json.dumps(schedule.state_dict() if schedule is not None else None),
            "progress": json.dumps(dataclasses.asdict(progress))}
    minires.save(arrays, path, metadata=meta)


def _load_checkpoint(path: str, model: Any, optimizer: Any, schedule: Any) -> Progress:
    try:
        meta, arrays = load_metadata(path), minires.load(path)
        model_state = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
        model.load_state_dict(model_state)
        opt_arrays = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
        optimizer.load_state_dict(optimizer_state_from_arrays(opt_arrays, json.loads(meta["optimizer"])))
        if schedule is not None:
            schedule.load_state_dict(json.loads(meta["schedule"]))
        return Progress(**json.loads(meta["progress"]))
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
        first = " ".join(lines[:3])[:300]
        raise SettingsError(f"--resume: {path!r} does not fit this run's model and settings ({first}); was it "
                            f"written by another model or version?") from None


def _write_metrics(path: str, rows: List[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)                    # full precision: a resumed run's file equals an unbroken one's
    _write_text(path, text.getvalue())


def _write_text(path: str, text: str) -> None:
    atomic_write(path, text.encode())


def _plot(path: str, rows: List[dict]) -> None:
    """Loss and accuracy per epoch, train and test, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], marker="o", label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in rows], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _save_figure(fig, path)


def _save_figure(fig: Any, path: str) -> None:
    """Write a matplotlib figure as a PNG, atomically, and free it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, png.getvalue())


# ------------------------------------------------------------------------- progress and Ctrl-C
class _PlainBar:
    """What is shown without tqdm: one line per epoch, at its end."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done, self.stats = total, desc, 0, {}

    def update(self, n: int, **stats: float) -> None:
        self.done += n
        self.stats = stats or self.stats

    def close(self) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in self.stats.items())
        print(f"{self.desc}: {self.done}/{self.total} batches {shown}", file=sys.stderr)


class _TqdmBar:
    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)

    def update(self, n: int, **stats: float) -> None:
        if stats:
            self.bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{100 * stats['acc']:.1f}%",
                                 img_s=f"{stats['images_per_s']:.0f}", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _bar(total: int, desc: str) -> Any:
    return _TqdmBar(total, desc) if importlib.util.find_spec("tqdm") else _PlainBar(total, desc)


class _StopOnCtrlC:
    """The first Ctrl-C asks the loop to stop after its current step; the second stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step to save a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    def __enter__(self) -> "_StopOnCtrlC":
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:              # not the main thread: Ctrl-C cannot reach us anyway
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def compare_metrics(a: List[dict], b: List[dict]) -> bool:
    """True when two runs' metrics agree in everything but their timings."""
    strip = [[{k: v for k, v in row.items() if k not in TIMING} for row in rows] for rows in (a, b)]
    return strip[0] == strip[1]
