"""Time whole ResNets, minires against the same network in PyTorch, side by side in one run.

Per model and input size, in float32: inference (evaluation mode, forward under ``no_grad``) and one
training step (training mode, forward + cross-entropy + backward, no optimiser): medians, their ratio
(minires / torch), peak memory, and what the graph keeps for backward. The torch network is torchvision's
layout written out here, loaded with minires's weights; the script first checks both compute the same.
profile_step.py, beside it, shows where the time of one training step goes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_models.py --out models-cpu
    python benchmarks/bench_models.py --device cuda --cases resnet18:224:64,resnet50:224:32 --out models-gpu
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                                     # run from a checkout, uninstalled

import minires                                                    # noqa: E402
from minires import backend                                       # noqa: E402
from minires import functional as F                               # noqa: E402
from bench_ops import (WAKE_S, blas_info, enable_peak_memory, machine, median_ms, num,  # noqa: E402
                       peak_mb, publish)

try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = None

Step = Callable[[], None]
MODES = ("inference", "training step")
# name -> (Bottleneck blocks?, blocks per stage); a "cifar_" prefix swaps the stem (see minires/models/cifar.py)
LAYOUTS = {"resnet18": (False, (2, 2, 2, 2)), "resnet34": (False, (3, 4, 6, 3)), "resnet50": (True, (3, 4, 6, 3)),
           "resnet101": (True, (3, 4, 23, 3)), "resnet152": (True, (3, 8, 36, 3))}


@dataclass(frozen=True)
class Case:
    model: str       # a builder in minires.models: resnet18, resnet50, cifar_resnet18, ...
    size: int        # images are size x size
    batch: int

    @staticmethod
    def parse(text: str) -> "Case":
        parts = text.split(":")
        if len(parts) != 3 or parts[0].removeprefix("cifar_") not in LAYOUTS or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"expected MODEL:SIZE:BATCH such as resnet18:224:8, got {text!r}; MODEL is one of "
                             f"{sorted(LAYOUTS)}, optionally with the prefix cifar_")
        return Case(parts[0], int(parts[1]), int(parts[2]))

    def __str__(self) -> str:
        return f"{self.model}, {self.shape()}"

    def shape(self) -> str:
        return f"{self.batch}x3x{self.size}x{self.size}"


# --------------------------------------------------------------------------------- the torch twin

def torch_resnet(name: str, num_classes: int) -> "torch.nn.Module":
    """torchvision's ResNet (v1.5, ReLU and residual add in place), with its attribute names, so that
    minires's state dict loads into it key for key; "cifar_*" has the 3x3 stride-1 stem and no max pool."""
    nn = torch.nn
    cifar = name.startswith("cifar_")
    bottleneck, depths = LAYOUTS[name.removeprefix("cifar_")]
    expansion = 4 if bottleneck else 1

    class Block(nn.Module):
        def __init__(self, c_in: int, planes: int, stride: int) -> None:
            super().__init__()
            c_out = planes * expansion
            convs = ([(c_in, planes, 1, 1), (planes, planes, 3, stride), (planes, c_out, 1, 1)] if bottleneck
                     else [(c_in, planes, 3, stride), (planes, planes, 3, 1)])    # (in, out, kernel, stride)
            for i, (a, b, k, s) in enumerate(convs, 1):
                setattr(self, f"conv{i}", nn.Conv2d(a, b, k, s, k // 2, bias=False))
                setattr(self, f"bn{i}", nn.BatchNorm2d(b))
            self.relu = nn.ReLU(inplace=True)
            self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                               if stride != 1 or c_in != c_out else None)
            self.depth = len(convs)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            out = x
            for i in range(1, self.depth + 1):
                out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
                out = self.relu(out) if i < self.depth else out
            out += x if self.downsample is None else self.downsample(x)     # in place, as torchvision
            return self.relu(out)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = (nn.Conv2d(3, 64, 3, 1, 1, bias=False) if cifar else nn.Conv2d(3, 64, 7, 2, 3, bias=False))
            self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
            self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
            for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), depths)):   # c_in: what enters the stage
                c_in, stride = (64, 1) if i == 0 else (planes * expansion // 2, 2)
                setattr(self, f"layer{i + 1}", nn.Sequential(Block(c_in, planes, stride), *[
                    Block(planes * expansion, planes, 1) for _ in range(blocks - 1)]))
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512 * expansion, num_classes)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return Net()


# --------------------------------------------------------------------------------- the two sides

def build_sides(case: Case, device: str, with_torch: bool, dtype: str = "float32") -> list:
    """minires's model for ``case``, and torch's twin with the same weights, on the same random batch."""
    minires.manual_seed(0)
    model = getattr(minires.models, case.model)()
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((case.batch, 3, case.size, case.size)).astype(dtype)
    y = rng.integers(0, model.fc.weight.shape[0], case.batch)
    sides: list = [MiniresSide(model.to(device).to(numpy.dtype(dtype)), x, y, device)]
    if with_torch:
        sides.append(TorchSide(torch_twin(case.model, model).to(device, getattr(torch, dtype)), x, y, device))
    return sides


def torch_twin(name: str, model: Any) -> "torch.nn.Module":
    """``torch_resnet(name)`` on the CPU, holding minires ``model``'s weights and buffers (copied)."""
    twin = torch_resnet(name, model.fc.weight.shape[0])
    twin.load_state_dict({k: torch.from_numpy(backend.to_numpy(v.data).copy()) for k, v in model.state_dict().items()})
    return twin


class Side:
    """One library's model on one batch: the two timed passes, ``infer`` and ``train`` (``collect=True``
    returns their results as NumPy arrays: logits, and for training also the loss and every gradient).
    Each library's subclass sets ``no_grad`` and ``cross_entropy`` and defines ``to_numpy``."""

    def __init__(self, model: Any, x: Any, y: Any) -> None:
        self.model, self.x, self.y = model, x, y
        self.steps: Dict[str, Step] = {"inference": self.infer, "training step": self.train}

    def infer(self, collect: bool = False) -> Optional[numpy.ndarray]:
        self.model.eval()
        with self.no_grad():
            logits = self.model(self.x)
        return self.to_numpy(logits) if collect else None

    def train(self, collect: bool = False) -> Optional[tuple]:
        self.model.train()
        logits = self.model(self.x)
        loss = self.cross_entropy(logits, self.y)
        loss.backward()
        grads = {name: self.to_numpy(p.grad.data) for name, p in self.model.named_parameters()} if collect else {}
        self.model.zero_grad()                          # gradients to None, in both libraries
        return (self.to_numpy(logits), self.to_numpy(loss), grads) if collect else None


class MiniresSide(Side):
    def __init__(self, model: Any, x: numpy.ndarray, y: numpy.ndarray, device: str) -> None:
        super().__init__(model, minires.tensor(x, device=device), minires.tensor(y, device=device))
        self.no_grad, self.cross_entropy = minires.no_grad, F.cross_entropy

    @staticmethod
    def to_numpy(t: Any) -> numpy.ndarray:
        return backend.to_numpy(t.data if isinstance(t, minires.Tensor) else t)

    def graph_bytes(self) -> int:
        """Distinct memory that one training forward's graph keeps until backward, parameters and buffers
        excluded: what its Functions saved (the graph links a Function to its inputs' creators, not to the
        input tensors, so nothing else is held)."""
        self.model.train()
        loss = F.cross_entropy(self.model(self.x), self.y)
        state = {id(root(t.data)) for t in chain(self.model.parameters(), self.model.buffers())}
        saved: Dict[int, Any] = {}
        stack, visited = [loss._creator], set()
        while stack:
            fn = stack.pop()
            if id(fn) not in visited:
                visited.add(id(fn))
                for a in (v for k, v in vars(fn).items() if not k.startswith("_") and backend.is_array(v)):
                    saved.setdefault(id(root(a)), root(a))
                stack += [p for p in fn._parents if isinstance(p, minires.Function)]
        return sum(getattr(a, "nbytes", 0) for k, a in saved.items() if k not in state)


def root(array: Any) -> Any:
    """The object that owns an array's memory (views, as_strided included, lead back to it)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


class TorchSide(Side):
    def __init__(self, model: Any, x: numpy.ndarray, y: numpy.ndarray, device: str) -> None:
        super().__init__(model, torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        self.no_grad, self.cross_entropy = torch.no_grad, TF.cross_entropy

    @staticmethod
    def to_numpy(t: Any) -> numpy.ndarray:
        return t.detach().cpu().numpy()

    def graph_bytes(self) -> int:
        """Distinct storage that autograd saves for backward, less the parameters and buffers."""
        self.model.train()
        state = {t.untyped_storage().data_ptr() for t in chain(self.model.parameters(), self.model.buffers())}
        held: Dict[int, int] = {}

        def pack(t: "torch.Tensor") -> "torch.Tensor":
            if t.untyped_storage().data_ptr() not in state:
                held[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            TF.cross_entropy(self.model(self.x), self.y)
        return sum(held.values())


def relative(a: numpy.ndarray, b: numpy.ndarray) -> float:                 # max |a - b| / max |b|
    return float(numpy.max(numpy.abs(a - b)) / max(float(numpy.max(numpy.abs(b))), 1e-300))


def check_same(case: Case, sides: list, device: str) -> List[float]:
    """Raise unless both libraries compute the same thing from the same weights and batch. In float32
    on the case: training logits, loss, fc's weight gradient, then evaluation logits, to 1e-3 relative. In
    float64 at batch 4, at most 64x64: every gradient, to 1e-8 (float32 rounding alone moves conv1's gradient
    by up to 2e-2, in both libraries alike). Returns those differences, with conv1's float32 one before the last."""
    (logits, loss, grads), (t_logits, t_loss, t_grads) = sides[0].train(True), sides[1].train(True)
    errors = [relative(logits, t_logits), relative(loss, t_loss), relative(grads["fc.weight"], t_grads["fc.weight"]),
              relative(sides[0].infer(True), sides[1].infer(True))]
    small = build_sides(Case(case.model, min(case.size, 64), 4), device, True, "float64")
    (_, _, grads64), (_, _, t_grads64) = small[0].train(True), small[1].train(True)
    worst64 = max(relative(grads64[name], t_grads64[name]) for name in t_grads64)
    if worst64 > 1e-8 or set(grads64) != set(t_grads64):
        raise RuntimeError(f"{case}: minires and torch disagree on the float64 gradients (worst relative "
                           f"difference {worst64:.1e}, expected below 1e-8): not the same computation")
    for what, error in zip(("logits", "loss", "fc.weight gradient", "evaluation logits"), errors):
        if error > 1e-3:
            raise RuntimeError(f"{case}: minires and torch disagree on the float32 {what}: relative difference "
                               f"{error:.1e}, expected below 1e-3. In float64 they agree ({worst64:.0e}), so this is "
                               f"float32 rounding, amplified where batch norm sees few values per channel (a 1x1 "
                               f"map at a small batch): use a larger batch or image for a fair comparison")
    return errors + [relative(grads["conv1.weight"], t_grads["conv1.weight"]), worst64]


# --------------------------------------------------------------------------------- main

def cpu_ticks() -> Optional[Tuple[int, int, int]]:
    """(busy, all) CPU ticks of the machine and the ticks of this process (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]    # user nice system idle iowait irq softirq steal
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()                # fields after the command name
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), int(own[11]) + int(own[12])   # utime + stime


def others_share(before: Optional[tuple], after: Optional[tuple]) -> Optional[float]:
    """The percentage of the machine's CPU time that other processes used between two ``cpu_ticks``."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return 100 * max(0, (after[0] - before[0]) - (after[2] - before[2])) / (after[1] - before[1])


def revision() -> str:
    """The commit of minires measured, and whether minires/ differs from it (read-only git commands)."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        changed = subprocess.run(git + ["diff", "--quiet", "HEAD", "--", "minires"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return f"- minires {minires.__version__}, not from a git checkout"
    return f"- minires at commit {head.stdout.strip()}" + (", with uncommitted changes in minires/" * changed)


def report(args: argparse.Namespace, header: List[str], rows: list, checks: list) -> List[str]:
    lines = [f"# minires vs PyTorch: whole ResNets, {args.device}", ""] + header + [
        f"- float32; median of {3 * args.repeats} runs after 2 warm-up runs: turns of a 0.25 s pause, untimed runs "
        f"for {1e3 * WAKE_S:.0f} ms (at least one) and 3 timed runs back to back, the libraries taking turns; "
        "ratio = minires / torch (below 1: minires is faster)",
        "- inference: evaluation mode, forward under no_grad; training step: training mode, forward + "
        "cross-entropy + backward, gradients set to None after it (no optimiser)",
        "- peak MB: the most memory one pass held above what it started with ("
        + ("resident set size" if args.device == "cpu" else "each library's GPU allocator") + "); graph MB: "
        "what one training forward keeps for the backward (distinct buffers, parameters and buffers excluded)",
        "- torch runs torchvision's layout (ReLU and residual add in place) with minires's weights",
        "- others' CPU: the share of the machine's CPU time that other processes took while the row was timed "
        f"(the machine is shared; a row is timed again, twice at most, above {args.max_others:.0f} %)", "",
        "| model | input | pass | minires ms | torch ms | ratio | minires peak MB | torch peak MB | "
        "minires graph MB | torch graph MB | others' CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case, mode, ms, peaks, graph, others in rows:
        theirs = ms[1] if len(ms) > 1 else None
        graphs = ([f"{graph[0] / 1e6:.0f}", f"{graph[1] / 1e6:.0f}" if len(graph) > 1 else "-"]
                  if graph else ["", ""])
        lines.append(f"| {case.model} | {case.shape()} | {mode} | {ms[0]:.0f} | {num(theirs, 0)} | "
                     f"{num(ms[0] / theirs if theirs else None, 2)} | {num(peaks[0], 0)} | "
                     f"{num(peaks[1] if len(peaks) > 1 else None, 0)} | {graphs[0]} | {graphs[1]} | "
                     f"{num(others, 0)} % |")
    if checks:
        lines += ["", "Same computation: largest relative difference minires vs torch, max |a - b| / max |b| "
                  "(float32 on the case itself, limit 1e-3; float64 on every parameter's gradient at batch 4 "
                  "and at most 64x64, limit 1e-8). conv1's float32 gradient is not checked: float32 rounding "
                  "alone moves it this much in either library.", "",
                  "| model | input | logits | loss | fc.weight grad | eval logits | conv1.weight grad (float32) | "
                  "all gradients (float64) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {case.model} | {case.shape()} | "
                  + " | ".join(f"{e:.0e}" for e in errors) + " |" for case, errors in checks]
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: CuPy vs torch CUDA")
    parser.add_argument("--cases", default="resnet18:224:8,resnet50:224:8,resnet18:32:32,cifar_resnet18:32:32",
                        help="comma-separated MODEL:SIZE:BATCH, MODEL a builder of minires.models")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per pass; the median is reported")
    parser.add_argument("--max-others", type=float, default=10, help="time a row again (twice at most) when other "
                        "processes took more than this percentage of the CPU meanwhile")
    parser.add_argument("--out", help="also write the report to benchmarks/results/<OUT>.md")
    args = parser.parse_args(argv)
    try:
        cases = [Case.parse(text) for text in args.cases.split(",")]
    except ValueError as error:
        parser.error(f"--cases: {error}")
    if args.device == "cuda" and not minires.backend.cuda_is_available():
        parser.error("--device cuda needs CuPy and a CUDA device; this machine has neither or not both")
    if args.device == "cuda" and torch is not None and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build has no CUDA; install a CUDA build of torch")
    threads, blas = blas_info()
    if torch is not None:
        torch.set_num_threads(threads)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False   # float32, as CuPy
    header = machine(args.device, threads, blas) + [revision()]      # the load average before we add to it
    with_torch = torch is not None

    rows, checks = [], []                               # every timing first; then memory (changes the allocator)
    for case in cases:
        sides = build_sides(case, args.device, with_torch)
        if with_torch:
            checks.append((case, check_same(case, sides, args.device)))
        for mode in MODES:
            for _ in range(3):                          # timed again while others took over --max-others
                before = cpu_ticks()
                ms = median_ms([side.steps[mode] for side in sides], args.repeats, args.device)
                others = others_share(before, cpu_ticks())
                if others is None or others <= args.max_others:
                    break
            rows.append([case, mode, ms, sides, [], others])
            print(f"{case}, {mode}: {' / '.join(f'{t:.0f}' for t in ms)} ms, others' CPU {num(others, 0)} %",
                  flush=True)
    measured = enable_peak_memory(args.device)
    for row in rows:                                    # row[3]: the sides timed, then their peak memory
        row[4] = [side.graph_bytes() for side in row[3]] if row[1] == "training step" else []
        row[3] = [peak_mb(side.steps[row[1]], args.device) if measured else None for side in row[3]]

    publish(report(args, header, rows, checks), args.out)


if __name__ == "__main__":
    main()
