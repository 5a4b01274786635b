"""Time a whole training step of the CIFAR ResNet-18, minires against PyTorch, side by side in one run.

One step = the data loader's next batch + forward + cross-entropy + backward + the optimizer's update,
each framework with its own loader and augmentation (RandomCrop(32, padding=4), RandomHorizontalFlip,
ToTensor, Normalize) over the same in-memory CIFAR-shaped uint8 images, and SGD(lr=0.1, momentum=0.9,
weight_decay=5e-4, nesterov=True) on the same starting weights. Reported per framework: the median step
split into loader wait, forward + backward and optimizer step, the ratio minires / torch, the peak memory
of one step, and the share of the step that the loader and the optimizer add. Then the optimizers alone
(SGD, Adam, AdamW) over ResNet-18's parameters. Without torch, only minires's side runs.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py --out train-cpu
    python benchmarks/bench_train.py --device cuda --out train-gpu              # batch 128, CuPy vs torch CUDA
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy

from bench_models import cpu_ticks, others_share, relative, revision, torch, torch_twin
from bench_ops import RESULTS, blas_info, enable_peak_memory, machine, num, peak_mb, publish, synchronize

import minires                           # found through the checkout that bench_models put on sys.path
from minires import backend
from minires import functional as F
from minires.data import ArrayDataset, DataLoader
from minires.data import transforms as T

MODEL = "cifar_resnet18"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)     # CIFAR-10's, as in the recipe
SIZE, PADDING = 32, 4
SGD_SETTINGS = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
OPTIMIZERS = {"SGD (momentum, nesterov, weight decay)": ("SGD", SGD_SETTINGS),  # label -> (class name, settings)
              "Adam": ("Adam", dict(lr=1e-3)), "AdamW": ("AdamW", dict(lr=1e-3, weight_decay=1e-2))}
PHASES = ("loader wait", "forward + backward", "optimizer step")


def cifar_like(n: int, seed: int = 0) -> tuple:
    """``n`` random CIFAR-shaped images, uint8 ``(n, 32, 32, 3)``, and their labels in ``[0, 10)``."""
    rng = numpy.random.default_rng(seed)
    return rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=numpy.uint8), rng.integers(0, 10, n)


# --------------------------------------------------------------------------------- the two loaders

def minires_loader(images: numpy.ndarray, labels: numpy.ndarray, batch: int, prefetch: int = 2) -> DataLoader:
    """minires's own: an ArrayDataset whose transforms run on each gathered batch, in the DataLoader's
    background thread (``prefetch`` batches ahead; 0: in the caller's thread)."""
    transform = T.Compose([T.RandomCrop(SIZE, padding=PADDING), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    return DataLoader(ArrayDataset(images, labels, transform), batch_size=batch, shuffle=True, drop_last=True,
                      generator=numpy.random.default_rng(1), prefetch=prefetch)


class TorchAugment:
    """The same augmentation in plain torch operations on a uint8 ``(B, H, W, C)`` batch (torchvision's
    transforms work on one image at a time, and torchvision is not needed here): zero padding, then one
    gather that crops each image at its own random offset and mirrors the ones drawn for a flip, then
    ``x / 255`` and the per-channel normalisation, giving float32 ``(B, C, H, W)``."""

    def __init__(self, generator: "torch.Generator") -> None:
        self.generator = generator
        self.mean = torch.tensor(MEAN).reshape(1, 3, 1, 1)
        self.std = torch.tensor(STD).reshape(1, 3, 1, 1)

    def __call__(self, batch: tuple) -> tuple:
        images, labels = batch                                              # (B, H, W, C) uint8, (B,)
        B, H, W, C = images.shape
        padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2), (PADDING,) * 4)   # (B, C, H + 2p, W + 2p)
        top, left = torch.randint(0, 2 * PADDING + 1, (2, B, 1), generator=self.generator)   # (B, 1) each
        flip = torch.rand(B, 1, generator=self.generator) < 0.5                              # (B, 1)
        rows = top + torch.arange(H)                                        # (B, H): padded rows to take
        cols = left + torch.where(flip, torch.arange(W - 1, -1, -1), torch.arange(W))        # (B, W), mirrored
        out = padded[torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]        # (B, C, H, W) uint8
        return (out.float().div_(255) - self.mean) / self.std, labels


def torch_loader(images: numpy.ndarray, labels: numpy.ndarray, batch: int) -> "torch.utils.data.DataLoader":
    """torch's own DataLoader over a TensorDataset (sharing the images' memory): each batch gathered with
    one index and augmented at once by ``TorchAugment``, in the main process (num_workers=0)."""
    data = torch.utils.data
    dataset = data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    generator = torch.Generator().manual_seed(1)
    batches = data.BatchSampler(data.RandomSampler(dataset, generator=generator), batch, drop_last=True)
    return data.DataLoader(dataset, sampler=batches, batch_size=None, collate_fn=TorchAugment(generator))


# --------------------------------------------------------------------------------- the two sides

class Trainer:
    """One framework's training loop, a step at a time. minires and torch share one API here: ``model(x)``,
    ``cross_entropy``, ``loss.backward()``, ``x.to(device)``, ``optimizer.step()`` and ``zero_grad()``; each
    subclass sets ``name``, ``cross_entropy`` and the optimizers' module ``optim``, and defines ``tensor``
    and ``to_numpy``. ``loader`` feeds the training steps, ``alone`` builds its batch in the caller's thread."""
    name: str
    optim: Any
    cross_entropy: Callable

    def __init__(self, model: Any, loader: Any, alone: Any, device: str) -> None:
        self.model, self.device = model.to(device), device
        self.model.train()
        self.optimizer = self.optim.SGD(self.model.parameters(), **SGD_SETTINGS)
        self.batches, self.alone = epochs(loader), epochs(alone)

    def step(self) -> List[float]:
        """One training step; milliseconds of each phase (after a device synchronisation on a GPU)."""
        start = time.perf_counter()
        x, y = next(self.batches)
        x, y = x.to(self.device), y.to(self.device)
        synchronize(self.device)
        loaded = time.perf_counter()
        self.cross_entropy(self.model(x), y).backward()
        synchronize(self.device)
        backward = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad()
        synchronize(self.device)
        end = time.perf_counter()
        return [1e3 * (loaded - start), 1e3 * (backward - loaded), 1e3 * (end - backward)]

    def load_alone(self) -> None:
        """One batch from the loader that builds it in the caller's thread: the loader's work, not overlapped."""
        for t in next(self.alone):
            t.to(self.device)

    def train_on(self, x: numpy.ndarray, y: numpy.ndarray) -> tuple:
        """One step on a given batch, without the loader: the loss, and every parameter after the update."""
        loss = self.cross_entropy(self.model(self.tensor(x)), self.tensor(y))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return self.to_numpy(loss), {k: self.to_numpy(p) for k, p in self.model.named_parameters()}


class MiniresTrainer(Trainer):
    name, optim, cross_entropy = "minires", minires.optim, staticmethod(F.cross_entropy)

    def __init__(self, model: Any, images: numpy.ndarray, labels: numpy.ndarray, batch: int, device: str) -> None:
        super().__init__(model, minires_loader(images, labels, batch), minires_loader(images, labels, batch, 0),
                         device)

    def tensor(self, a: numpy.ndarray) -> Any:
        return minires.tensor(a, device=self.device)

    @staticmethod
    def to_numpy(t: Any) -> numpy.ndarray:
        return backend.to_numpy(t.data)


class TorchTrainer(Trainer):
    name = "torch"

    def __init__(self, model: Any, images: numpy.ndarray, labels: numpy.ndarray, batch: int, device: str) -> None:
        self.optim, self.cross_entropy = torch.optim, torch.nn.functional.cross_entropy
        loader = torch_loader(images, labels, batch)            # already in the caller's thread
        super().__init__(model, loader, loader, device)

    def tensor(self, a: numpy.ndarray) -> Any:
        return torch.from_numpy(a).to(self.device)

    @staticmethod
    def to_numpy(t: Any) -> numpy.ndarray:
        return t.detach().cpu().numpy()


def epochs(loader: Any) -> Iterator[Any]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def build_trainers(images: numpy.ndarray, labels: numpy.ndarray, batch: int, device: str,
                   names: Sequence[str]) -> List[Trainer]:
    """minires's CIFAR ResNet-18 and/or torch's twin holding the same weights, as ``names`` asks."""
    minires.manual_seed(0)
    model = getattr(minires.models, MODEL)()
    twin = torch_twin(MODEL, model) if "torch" in names else None     # copied before minires's model moves
    return [MiniresTrainer(model, images, labels, batch, device) if name == "minires" else
            TorchTrainer(twin, images, labels, batch, device) for name in names]


def peak_in_subprocess(name: str, args: argparse.Namespace) -> Optional[float]:
    """The peak memory of one training step of ``name`` ("minires" or "torch"), measured in a process of its
    own (this script with ``--peak-of``): with torch's model trained in the same process, minires's step
    measured 60 MB more. None where it cannot be measured."""
    command = [sys.executable, __file__, "--peak-of", name, "--device", args.device, "--batch-size",
               str(args.batch_size), "--images", str(args.images)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {name}'s peak memory failed:\n{done.stderr}")
    value = json.loads(done.stdout.strip().splitlines()[-1])
    return None if value is None else float(value)


def print_peak_of(name: str, args: argparse.Namespace) -> None:
    """``--peak-of NAME``: print the peak MB of one training step of that framework alone, as JSON."""
    images, labels = cifar_like(args.images)
    trainer, = build_trainers(images, labels, args.batch_size, args.device, [name])
    for _ in range(3):                                  # optimizer state, the loader's queue, caches
        trainer.step()
    print(json.dumps(peak_mb(trainer.step, args.device) if enable_peak_memory(args.device) else None))


def check_same(trainers: List[Trainer], images: numpy.ndarray, labels: numpy.ndarray, batch: int) -> Dict[str, float]:
    """One step of each on the same batch (not augmented) from the same weights: the losses must agree to
    1e-3 relative, and the updates (parameters after - before, all together) to 2e-2 in the L2 norm. float32
    rounding alone moves the gradients by a few 1e-3 (bench_models.py checks them in float64); a wrong update
    rule (no Nesterov term, another learning rate) would differ by tens of %."""
    x = ((images[:batch].transpose(0, 3, 1, 2) / numpy.float32(255) - numpy.reshape(MEAN, (1, 3, 1, 1)))
         / numpy.reshape(STD, (1, 3, 1, 1))).astype(numpy.float32)                # (B, C, H, W), not augmented
    before = {k: trainers[1].to_numpy(p).copy() for k, p in trainers[1].model.named_parameters()}
    (loss, params), (t_loss, t_params) = (t.train_on(x, labels[:batch]) for t in trainers)
    if set(params) != set(t_params):
        raise RuntimeError(f"minires and torch name their parameters differently: "
                           f"{sorted(set(params) ^ set(t_params))}")
    update, t_update = (numpy.concatenate([(p[k] - before[k]).ravel() for k in sorted(before)])
                        for p in (params, t_params))
    errors = {"loss": relative(loss, t_loss),
              "update": float(numpy.linalg.norm(update - t_update) / numpy.linalg.norm(t_update))}
    if errors["loss"] > 1e-3 or errors["update"] > 2e-2:
        raise RuntimeError(f"minires and torch disagree after one training step on the same batch: relative "
                           f"difference of the loss {errors['loss']:.1e} (limit 1e-3), of the update "
                           f"{errors['update']:.1e} (limit 2e-2): not the same computation")
    return errors


# --------------------------------------------------------------------------------- measuring

def take_turns(runs: List[Callable[[], List[float]]], count: int, block: int, device: str, max_others: float,
               label: str) -> tuple:
    """``count`` timed calls of each run (a run returns the milliseconds of its phases), and the most CPU
    that other processes took during a turn that was kept. The runs take turns, ``block`` calls each, back to
    back as in training, each turn after a 0.25 s pause (the BLAS and OpenMP threads of the other framework go
    to sleep, see bench_ops.median_ms) and one untimed call (caches and allocators back); a turn during which
    other processes took more than ``max_others`` % of the CPU is timed again, twice at most, and the quietest
    try is kept."""
    times: List[List[List[float]]] = [[] for _ in runs]
    for run in runs:                                    # warm-up: allocators, optimizer state, kernel choices
        for _ in range(3):
            run()
    worst = 0.0
    while len(times[0]) < count:
        n = min(block, count - len(times[0]))
        for k, run in enumerate(runs):
            tries = []                                  # (others' share, the turn's times)
            while len(tries) < 3 and (not tries or tries[-1][0] > max_others):
                time.sleep(0.25)
                synchronize(device)
                run()
                before = cpu_ticks()
                turn = [run() for _ in range(n)]
                tries.append((others_share(before, cpu_ticks()) or 0.0, turn))
            others, turn = min(tries, key=lambda t: t[0])       # the quietest try
            times[k] += turn
            worst = max(worst, others)
        print(f"{label}, {len(times[0])} of {count}: " + " / ".join(
            f"{statistics.median(map(sum, ms)):.1f}" for ms in times) + " ms", flush=True)
    return times, worst


def timed(fn: Callable[[], Any], device: str) -> Callable[[], List[float]]:
    """``fn`` as a run of ``take_turns``: one phase, its milliseconds after a device synchronisation."""
    def run() -> List[float]:
        start = time.perf_counter()
        fn()
        synchronize(device)
        return [1e3 * (time.perf_counter() - start)]
    return run


def summarize(name: str, phases: List[List[float]], loader_alone: float, peak: Optional[float]) -> Dict[str, Any]:
    """Medians of each phase and of the whole step, and the share the loader and optimizer add."""
    totals = [sum(p) for p in phases]
    medians = {phase: statistics.median(p[i] for p in phases) for i, phase in enumerate(PHASES)}
    step = statistics.median(totals)
    return {"framework": name, "step ms": step, **{f"{k} ms": v for k, v in medians.items()},
            "loader alone ms": loader_alone, "peak MB": peak,
            "loader + optimizer share": (medians["loader wait"] + medians["optimizer step"]) / step,
            "loader alone + optimizer share": (loader_alone + medians["optimizer step"]) / step,
            "steps": [[round(v, 3) for v in p] for p in phases]}


def optimizer_rows(args: argparse.Namespace, with_torch: bool) -> tuple:
    """Each optimizer's ``step()`` alone over the CIFAR ResNet-18's parameters, holding random gradients;
    and the most CPU that other processes took meanwhile."""
    minires.manual_seed(0)
    model = getattr(minires.models, MODEL)().to(args.device)
    twin = torch_twin(MODEL, model).to(args.device) if with_torch else None
    rng = numpy.random.default_rng(2)
    for name, p in model.named_parameters():
        grad = rng.standard_normal(p.shape).astype(numpy.float32)
        p.grad = minires.tensor(grad, device=args.device)
        if twin is not None:
            twin.get_parameter(name).grad = torch.from_numpy(grad).to(args.device)
    count = sum(int(numpy.prod(p.shape)) for p in model.parameters())
    rows, worst = [], 0.0
    for label, (cls, settings) in OPTIMIZERS.items():
        runs = [timed(getattr(minires.optim, cls)(model.parameters(), **settings).step, args.device)]
        if twin is not None:
            runs.append(timed(getattr(torch.optim, cls)(twin.parameters(), **settings).step, args.device))
        times, others = take_turns(runs, args.repeats, args.block, args.device, args.max_others, label)
        ms = [statistics.median(t[0] for t in run) for run in times]
        rows.append({"optimizer": label, "parameters": count, "minires ms": ms[0],
                     "torch ms": ms[1] if len(ms) > 1 else None})
        worst = max(worst, others)
    return rows, worst


# --------------------------------------------------------------------------------- report

def report(args: argparse.Namespace, header: List[str], sides: List[Dict[str, Any]], optimizers: list,
           check: Optional[Dict[str, float]], others: Optional[float]) -> List[str]:
    theirs = sides[1] if len(sides) > 1 else None
    lines = [f"# minires vs PyTorch: a whole training step, {args.device}", ""] + header + [
        f"- {MODEL}, batch {args.batch_size}, 10 classes, float32; a data set of {args.images} random CIFAR-shaped "
        "uint8 images in memory",
        "- each framework's own loader: minires.data.DataLoader over an ArrayDataset, the transforms on the whole "
        "batch in the loader's background thread (2 batches ahead); torch.utils.data.DataLoader over a "
        "TensorDataset, the same augmentation in torch operations on the batch, in the main process (num_workers=0)",
        "- augmentation: RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize (CIFAR-10's mean, std)",
        "- SGD(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True), then zero_grad() (gradients to None)",
        f"- median of {args.steps} steps, the frameworks taking turns {args.block} steps at a time, back to back "
        "as in training, each turn after a 0.25 s pause and one untimed step; ratio = minires / torch",
        f"- others' CPU: at most {num(others, 0)} % of the machine's CPU time went to other processes during a "
        f"turn that was kept (the machine is shared; a turn above {args.max_others:.0f} % is timed again, twice at "
        "most, and the quietest try kept)",
        "- loader alone: one batch built in the caller's thread (minires: prefetch=0), median of "
        f"{args.repeats}, timed the same way: the loader's work when nothing overlaps it",
        "- peak MB: the most memory one whole step held above what it started with (" +
        ("resident set size" if args.device == "cpu" else "each library's GPU allocator") +
        "), each framework in a process of its own, after 3 steps; the weights and the momentum buffers were "
        "there before it", ""]
    if check:
        lines += [f"- same computation: one step on the same batch from the same weights, relative difference "
                  f"minires vs torch: loss {check['loss']:.0e}, the SGD update of all parameters {check['update']:.0e} "
                  "(L2 norm; float32 rounding of the gradients)", ""]
    lines += ["| framework | step ms | loader wait ms | forward + backward ms | optimizer step ms | "
              "loader + optimizer share | loader alone ms | peak MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sides:
        lines.append(f"| {s['framework']} | {s['step ms']:.1f} | {s['loader wait ms']:.2f} | "
                     f"{s['forward + backward ms']:.1f} | {s['optimizer step ms']:.1f} | "
                     f"{100 * s['loader + optimizer share']:.1f} % | {s['loader alone ms']:.2f} | "
                     f"{num(s['peak MB'], 0)} |")
    if theirs:
        ratio = lambda key, d=2: num(sides[0][key] / theirs[key] if theirs[key] else None, d)    # noqa: E731
        lines.append(f"| ratio | {ratio('step ms')} | {ratio('loader wait ms')} | {ratio('forward + backward ms')} | "
                     f"{ratio('optimizer step ms')} | | {ratio('loader alone ms')} | {ratio('peak MB')} |")
    lines += ["", f"Optimizers alone: one step() over the {optimizers[0]['parameters']:,} parameters of {MODEL} "
              f"with random gradients, median of {args.repeats}, timed the same way (turns of {args.block} steps); "
              "torch's default implementation (foreach on CUDA, a loop over the parameters on the CPU).", "",
              "| optimizer | minires ms | torch ms | ratio |", "|---|---:|---:|---:|"]
    for row in optimizers:
        t = row["torch ms"]
        lines.append(f"| {row['optimizer']} | {row['minires ms']:.1f} | {num(t, 1)} | "
                     f"{num(row['minires ms'] / t if t else None, 2)} |")
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: CuPy vs torch CUDA")
    parser.add_argument("--batch-size", type=int, help="images per step (default 32 on the CPU, 128 on a GPU)")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per framework (the median "
                        "is reported)")
    parser.add_argument("--block", type=int, default=5, help="steps per turn before the other framework's turn")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs of each optimizer alone, and of the "
                        "loader alone")
    parser.add_argument("--max-others", type=float, default=10, help="time a turn again (twice at most; the "
                        "quietest try is kept) when other processes took more than this %% of the CPU meanwhile")
    parser.add_argument("--images", type=int, default=50000, help="images in the in-memory data set")
    parser.add_argument("--peak-of", choices=["minires", "torch"], help="only print the peak MB of one step of "
                        "this framework, as JSON (how the full run measures each framework in a process of its own)")
    parser.add_argument("--out", help="also write the report to benchmarks/results/<OUT>.md and the numbers, "
                        "every step's phases included, to <OUT>.json")
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or (32 if args.device == "cpu" else 128)
    if min(args.batch_size, args.steps, args.block, args.repeats) < 1 or args.images < args.batch_size:
        parser.error("--batch-size, --steps, --block and --repeats must be at least 1, and --images at least "
                     "--batch-size")
    if args.device == "cuda" and not minires.backend.cuda_is_available():
        parser.error("--device cuda needs CuPy and a CUDA device; this machine has neither or not both")
    if args.device == "cuda" and torch is not None and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build has no CUDA; install a CUDA build of torch")
    threads, blas = blas_info()
    if torch is not None:
        torch.set_num_threads(threads)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False   # float32, as CuPy
    if args.peak_of:                                    # the child process of peak_in_subprocess
        print_peak_of(args.peak_of, args)
        return
    header = machine(args.device, threads, blas) + [revision()]      # the load average before we add to it
    with_torch = torch is not None

    images, labels = cifar_like(args.images)
    trainers = build_trainers(images, labels, args.batch_size, args.device, ["minires", "torch"][:1 + with_torch])
    check = check_same(trainers, images, labels, args.batch_size) if with_torch else None
    if check:
        print(f"same computation: loss {check['loss']:.0e}, update {check['update']:.0e}", flush=True)
    phases, others = take_turns([t.step for t in trainers], args.steps, args.block, args.device, args.max_others,
                                "training steps")
    alone, others_alone = take_turns([timed(t.load_alone, args.device) for t in trainers], args.repeats, args.block,
                                     args.device, args.max_others, "loader alone")
    alone = [statistics.median(t[0] for t in run) for run in alone]
    optimizers, others_optimizers = optimizer_rows(args, with_torch)
    others = max(others, others_alone, others_optimizers)
    peaks = [peak_in_subprocess(t.name, args) for t in trainers]
    sides = [summarize(t.name, p, a, m) for t, p, a, m in zip(trainers, phases, alone, peaks)]
    for s in sides:
        print(f"{s['framework']}: step {s['step ms']:.0f} ms, loader + optimizer "
              f"{100 * s['loader + optimizer share']:.1f} %", flush=True)

    publish(report(args, header, sides, optimizers, check, others), args.out)
    if args.out:
        numbers = {"header": header, "settings": vars(args), "others' CPU %": others, "same computation": check,
                   "training step": sides, "optimizers alone": optimizers}
        (RESULTS / f"{args.out}.json").write_text(json.dumps(numbers, indent=1) + "\n")
        print(f"written to benchmarks/results/{args.out}.json")


if __name__ == "__main__":
    main()
