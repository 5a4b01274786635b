"""The ``minires`` command.

    minires train [--recipe NAME] [...] train a model (default: ResNet-20 on the bundled digits)
    minires demo                        a ResNet block: forward, backward, gradient check
    minires gradcheck [OP ...|all] [--examples N] [--seed S]
                                        the test suite's gradient checks, per operation: passed or failed
    minires summary MODEL [--input-shape N,C,H,W]
                                        a model's layers, output shapes and parameter counts
    minires exercises new DIR [--ops ...] | grade DIR [--json FILE]
                                        a student copy with backward passes to write; its grading
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import minires
import minires.functional as F
from minires.testing import GradcheckError
from minires.exercises import cli as exercises_cli

if TYPE_CHECKING:
    from minires.recipes import Settings
    from minires.testing.suite import Operation

#: Drawn examples per operation for ``minires gradcheck`` (the explicit cases run as well).
DEFAULT_EXAMPLES = 25


def _checks() -> Dict[str, "Operation"]:
    """The operations ``minires gradcheck`` checks, by name (minires.testing.suite_ops)."""
    from minires.testing.suite_ops import OPERATIONS

    return OPERATIONS


def run_gradcheck(name: str, seed: int = 0, examples: int = DEFAULT_EXAMPLES) -> float:
    """Run one operation's properties; returns the seconds it took, raises ``GradcheckError`` on failure."""
    from minires.testing.suite import run_operation

    checks = _checks()
    if name not in checks:
        raise SystemExit(f"unknown operation {name!r}; choose one of: {', '.join(sorted(checks))}")
    result = run_operation(checks[name], examples=examples, seed=seed)
    if not result.passed:
        raise GradcheckError(f"{name} failed on {result.describe()}: {result.message}")
    return result.seconds


def run_gradcheck_suite(ops: List[str], examples: int = DEFAULT_EXAMPLES, seed: int = 0) -> int:
    """``minires gradcheck``: every operation to its end, a line each; 1 if any failed, else 0."""
    from minires.testing.suite import Result, run_suite

    checks = _checks()
    names = sorted(checks) if ops in ([], ["all"]) else list(dict.fromkeys(ops))
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise SystemExit(f"unknown operation {unknown[0]!r}; choose one of: all, {', '.join(sorted(checks))}")

    def report(result: Result) -> None:
        if result.passed:
            print(f"{result.name:<20} passed in {result.seconds:.2f} s", flush=True)
        else:
            print(f"{result.name:<20} FAILED in {result.seconds:.2f} s\n"
                  f"    smallest failing case: {result.describe()}\n    {result.message}", flush=True)

    results = run_suite(names, examples=examples, seed=seed, report=report)
    failed = [r.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} of {len(results)} operations passed"
          f"{'; failed: ' + ', '.join(failed) if failed else ''} ({examples} drawn examples each, seed {seed})")
    return 1 if failed else 0


def demo() -> None:
    """Forward, backward and a gradient check through one ResNet BasicBlock."""
    from minires.models import BasicBlock

    minires.manual_seed(0)
    print("A ResNet BasicBlock with a strided 1x1-convolution shortcut (torchvision's layout):")
    downsample = minires.nn.Sequential(minires.nn.Conv2d(16, 32, 1, stride=2, bias=False),
                                       minires.nn.BatchNorm2d(32))
    block = BasicBlock(16, 32, stride=2, downsample=downsample)
    print(block)
    x = minires.randn(8, 16, 32, 32)
    target = minires.randint(0, 10, (8,))
    start = time.perf_counter()
    out = block(x)                                                   # (8, 32, 16, 16)
    logits = F.linear(F.flatten(F.adaptive_avg_pool2d(out, 1), 1), minires.randn(10, 32) * 0.1)
    loss = F.cross_entropy(logits, target)
    loss.backward()
    elapsed = time.perf_counter() - start
    print(f"\nforward + backward on x{tuple(x.shape)} -> {tuple(out.shape)}: loss {loss.item():.4f} "
          f"in {elapsed * 1000:.1f} ms")
    for name, p in block.named_parameters():
        print(f"  d loss / d {name:<22} shape {str(tuple(p.shape)):<16} norm {p.grad.norm().item():.5f}")
    print(f"  running_mean of bn1 after one training step: {block.bn1.running_mean.numpy()[:4].round(5)} ...")
    print("\nGradient checks in float64 (central differences against the backward pass, random upstream G;")
    print("the blocks are checked in their input and in every weight, in training mode):")
    for name in ("conv2d", "batch_norm", "max_pool2d", "cross_entropy", "basic_block", "bottleneck"):
        seconds = run_gradcheck(name)
        print(f"  {name:<14} passed in {seconds:.2f} s")


#: Each model family's natural input, (C, H, W), by the module of ``minires.models`` that builds it.
NATURAL_INPUT = {"resnet": (3, 224, 224),      # torchvision's ImageNet models
                 "d2l": (1, 224, 224),         # the book's Fashion-MNIST model, resized to 224x224
                 "cifar": (3, 32, 32), "preact": (3, 32, 32),
                 "small": (3, 32, 32)}         # the paper's resnet20..110 and plain20..110


def natural_input_shape(model_name: str) -> Tuple[int, ...]:
    """The input ``minires summary MODEL`` uses when no ``--input-shape`` is given: batch 1, the model's own size."""
    import minires.models as models

    family = getattr(models, model_name).__module__.rsplit(".", 1)[-1]
    return (1,) + NATURAL_INPUT.get(family, (3, 224, 224))


def summary(model_name: str, input_shape: Optional[List[int]] = None) -> None:
    import minires.models as models
    from minires.recipes import model_names

    if model_name not in model_names():
        raise SystemExit(f"unknown model {model_name!r}; choose one of: {', '.join(model_names())}")
    shape = tuple(input_shape) if input_shape is not None else natural_input_shape(model_name)
    if len(shape) == 3:                  # C,H,W: one image, as a batch of 1
        shape = (1,) + shape
    print(models.summary(getattr(models, model_name)(), shape))


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    from minires.recipes import DATASETS, OPTIMIZERS, RECIPES, SCHEDULES, TRAIN_ONLY, Settings

    defaults = Settings()
    train = sub.add_parser(
        "train", help="train a model (default: ResNet-20 on the bundled digits, about 25 seconds on two cores)",
        description="Train a model and write metrics.csv, curves.png, checkpoints and the best model into --out. "
                    "Options left out come from --recipe (default: digits).")
    train.add_argument("--recipe", choices=sorted(RECIPES), help="a tutorial's whole setup (default: digits)")
    train.add_argument("--model", help=f"any model of minires.models (default: {defaults.model})")
    train.add_argument("--dataset", help=f"one of {', '.join(DATASETS)} (default: {defaults.dataset})")
    train.add_argument("--data-dir", help="an image folder: one folder per class, or train/ and val/ holding them "
                                          "(implies --dataset folder)")
    train.add_argument("--root", help=f"where MNIST, Fashion-MNIST and CIFAR-10 files are (default: {defaults.root})")
    train.add_argument("--download", action="store_true", default=None, help="fetch the dataset's files into --root")
    train.add_argument("--resize", type=int, help="resize images to this size first")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate (the peak for --schedule onecycle)")
    train.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)}")
    train.add_argument("--momentum", type=float, help="SGD's momentum (--schedule onecycle cycles it instead)")
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help="Nesterov momentum for SGD (the digits recipe's; the others use plain momentum)")
    train.add_argument("--weight-decay", type=float, help="not applied to batch-norm parameters and biases")
    train.add_argument("--schedule", help=f"learning-rate schedule, one of {', '.join(SCHEDULES)}")
    train.add_argument("--weights", help="start from these weights (.safetensors, or .pth with torch installed)")
    train.add_argument("--train-only", help=f"which layers learn, with --weights: {', '.join(TRAIN_ONLY)}")
    train.add_argument("--device", help="cpu or cuda (default: cpu)")
    train.add_argument("--seed", type=int)
    train.add_argument("--log-grad-norms", action="store_true", default=None,
                       help="each epoch, the gradient norm of every layer's weights: grad_norms.csv and .png")
    train.add_argument("--out", help="output folder (default: runs/<recipe>, or runs/<recipe>-2, ... if that holds "
                                     "a run)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")


def train_settings(args: argparse.Namespace) -> Tuple["Settings", str, bool]:
    """``(settings, output folder, resume?)`` for ``minires train``: the recipe's settings with the
    options given on top, or, with ``--resume DIR``, the settings saved in DIR."""
    from minires.recipes import RECIPES, Settings, SettingsError
    from minires.train import SETTINGS

    names = [f.name for f in dataclasses.fields(Settings)]
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if not args.resume:
        recipe = args.recipe or "digits"
        if "data_dir" in given and "dataset" not in given:
            given["dataset"] = "folder"
        return Settings(**{**RECIPES[recipe], **given}), args.out or _free_run_folder(recipe), False
    extra = sorted(set(given) - {"device"}) + (["recipe"] if args.recipe else []) + (["out"] if args.out else [])
    if extra:
        raise SettingsError(f"--resume takes the run's settings from its folder; leave out "
                            f"{', '.join('--' + e.replace('_', '-') for e in extra)}")
    path = os.path.join(args.resume, SETTINGS)
    if not os.path.isfile(path):
        raise SettingsError(f"--resume: {args.resume!r} has no {SETTINGS}; give the --out folder of an earlier run")
    try:
        with open(path) as f:
            return Settings(**{**json.load(f), **given}), args.resume, True
    except (ValueError, TypeError) as err:
        raise SettingsError(f"--resume: {path!r} is not a settings file of this minires ({err})") from None


def _free_run_folder(recipe: str) -> str:
    """``runs/<recipe>``, or the first of ``runs/<recipe>-2``, ``-3``, ... that holds no run yet."""
    from minires.train import CHECKPOINT, SETTINGS

    for n in itertools.count(1):
        folder = os.path.join("runs", recipe if n == 1 else f"{recipe}-{n}")
        if not any(os.path.exists(os.path.join(folder, name)) for name in (CHECKPOINT, SETTINGS)):
            return folder
    raise AssertionError("unreachable")


def run_train(args: argparse.Namespace) -> int:
    """``minires train``: one line on standard error and exit status 2 for any setting that cannot work."""
    from minires.recipes import SettingsError
    from minires.train import Interrupted, train

    try:
        settings, out, resume = train_settings(args)
        train(settings, out, resume=resume)
    except (SettingsError, FileNotFoundError, NotADirectoryError, PermissionError, ImportError) as err:
        print(f"minires train: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"minires train: {err}", file=sys.stderr)
        return 130
    return 0


def _shape(text: str) -> List[int]:
    """``N,C,H,W`` or ``C,H,W`` (a batch of 1), each a positive whole number."""
    try:
        shape = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        shape = []
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,3,224,224 (N,C,H,W) or 3,32,32 (C,H,W, a "
                                         f"batch of 1), of positive whole numbers; got {text!r}")
    return shape


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minires", description="a from-scratch deep-learning framework")
    parser.add_argument("--version", action="version", version=f"%(prog)s {minires.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    sub.add_parser("demo", help="forward, backward and gradient check of a ResNet block")
    check = sub.add_parser(
        "gradcheck", help="check backward passes against finite differences (the test suite's properties)",
        description="For each operation, run the properties the test suite runs (Hypothesis-drawn configurations "
                    "and the explicit cases where mistakes hide) and report it as passed or failed, with the "
                    "smallest failing case. Deterministic: the same options give the same result.")
    check.add_argument("ops", nargs="*", metavar="OP", help="operation names, or 'all' (the default)")
    check.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                       help=f"drawn examples per operation, on top of the explicit ones (default: {DEFAULT_EXAMPLES})")
    check.add_argument("--seed", type=int, default=0, help="which examples Hypothesis draws (default: 0)")
    summ = sub.add_parser("summary", help="layer-by-layer table of a model")
    summ.add_argument("model", help="e.g. resnet18, d2l_resnet18, cifar_resnet18")
    summ.add_argument("--input-shape", type=_shape, default=None, metavar="N,C,H,W",
                      help="the input's shape, N,C,H,W or C,H,W (default: the model's own: 1,1,224,224 for "
                           "d2l_resnet18, 1,3,32,32 for the CIFAR models, 1,3,224,224 for the ImageNet ones)")
    exercises_cli.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "exercises":
        return exercises_cli.run(args)
    if args.command == "train":
        return run_train(args)
    try:
        if args.command == "demo":
            demo()
        elif args.command == "gradcheck":
            if args.examples < 1:
                raise SystemExit(f"minires gradcheck: --examples must be at least 1, got {args.examples}")
            return run_gradcheck_suite(args.ops, args.examples, args.seed)
        elif args.command == "summary":
            summary(args.model, args.input_shape)
    except GradcheckError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
