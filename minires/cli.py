"""The ``minires`` command.

    minires demo                        a ResNet block: forward, backward, gradient check
    minires gradcheck OP [--seed S]     check one operation's backward pass against finite differences
    minires summary MODEL [--input-shape 1,3,224,224]
                                        a model's layers, output shapes and parameter counts
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy

import minires
import minires.functional as F
from minires.testing import GradcheckError, gradcheck, gradcheck_module


def _leaf(rng: numpy.random.Generator, *shape: int) -> minires.Tensor:
    return minires.tensor(rng.standard_normal(shape), requires_grad=True)


def _distinct(rng: numpy.random.Generator, *shape: int) -> minires.Tensor:
    n = int(numpy.prod(shape))
    return minires.tensor((rng.permutation(n) - n / 2 + 0.5).reshape(shape) / n, requires_grad=True)  # no 0, no ties


def _cross_entropy_check(rng: numpy.random.Generator) -> Tuple[Callable, list]:
    target = minires.tensor(rng.integers(0, 5, size=4))             # fixed for every evaluation
    return (lambda z: F.cross_entropy(z, target, label_smoothing=0.1)), [_leaf(rng, 4, 5)]


def _checks() -> Dict[str, Callable[[numpy.random.Generator], Tuple[Callable, list]]]:
    """Each operation's check: a function of the inputs, and float64 inputs (small shapes)."""
    from minires.models import BasicBlock, Bottleneck

    def block(cls: type, inplanes: int, planes: int) -> Callable:
        def make(rng: numpy.random.Generator) -> Tuple[Callable, list]:
            minires.manual_seed(int(rng.integers(2**31)))
            downsample = minires.nn.Sequential(
                minires.nn.Conv2d(inplanes, planes * cls.expansion, 1, stride=2, bias=False),
                minires.nn.BatchNorm2d(planes * cls.expansion))
            net = cls(inplanes, planes, stride=2, downsample=downsample).to("float64").train()
            return net, [_leaf(rng, 2, inplanes, 6, 6)]
        return make

    return {
        "relu": lambda rng: (F.relu, [_distinct(rng, 3, 4)]),
        "linear": lambda rng: (F.linear, [_leaf(rng, 4, 5), _leaf(rng, 3, 5), _leaf(rng, 3)]),
        "conv2d": lambda rng: (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
                               [_leaf(rng, 2, 3, 5, 5), _leaf(rng, 4, 3, 3, 3), _leaf(rng, 4)]),
        "max_pool2d": lambda rng: (lambda x: F.max_pool2d(x, 3, 2, 1), [_distinct(rng, 2, 2, 5, 5)]),
        "avg_pool2d": lambda rng: (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [_leaf(rng, 2, 2, 6, 6)]),
        "adaptive_avg_pool2d": lambda rng: (lambda x: F.adaptive_avg_pool2d(x, 3), [_leaf(rng, 2, 2, 5, 7)]),
        "batch_norm": lambda rng: (
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            [_leaf(rng, 4, 3, 2, 2), _leaf(rng, 3), _leaf(rng, 3)]),
        "cross_entropy": lambda rng: _cross_entropy_check(rng),
        "basic_block": block(BasicBlock, 4, 6),
        "bottleneck": block(Bottleneck, 8, 2),
    }


def run_gradcheck(name: str, seed: int = 0) -> float:
    """Run one operation's gradient check; returns the seconds it took, raises on failure."""
    checks = _checks()
    if name not in checks:
        raise SystemExit(f"unknown operation {name!r}; choose one of: {', '.join(sorted(checks))}")
    fn, inputs = checks[name](numpy.random.default_rng(seed))
    start = time.perf_counter()
    if isinstance(fn, minires.nn.Module):                            # a block: its input and every weight
        gradcheck_module(fn, *inputs, seed=seed, elementwise=False, n_directions=3)
    else:
        gradcheck(fn, *inputs, seed=seed)
    return time.perf_counter() - start


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


def summary(model_name: str, input_shape: List[int]) -> None:
    import minires.models as models

    builder = getattr(models, model_name, None)
    if builder is None or not callable(builder):
        raise SystemExit(f"unknown model {model_name!r}; choose one of: {', '.join(models.__all__)}")
    print(models.summary(builder(), tuple(input_shape)))


def _shape(text: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,3,224,224, got {text!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="minires", description="a from-scratch deep-learning framework")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="forward, backward and gradient check of a ResNet block")
    check = sub.add_parser("gradcheck", help="check one operation's backward pass")
    check.add_argument("op", help="operation name, or 'all'")
    check.add_argument("--seed", type=int, default=0)
    summ = sub.add_parser("summary", help="layer-by-layer table of a model")
    summ.add_argument("model", help="e.g. resnet18, d2l_resnet18, cifar_resnet18")
    summ.add_argument("--input-shape", type=_shape, default=[1, 3, 224, 224])
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo()
        elif args.command == "gradcheck":
            names = sorted(_checks()) if args.op == "all" else [args.op]
            for name in names:
                print(f"{name:<20} passed in {run_gradcheck(name, args.seed):.2f} s")
        elif args.command == "summary":
            summary(args.model, args.input_shape)
    except GradcheckError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
