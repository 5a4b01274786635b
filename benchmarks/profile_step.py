"""Where the time of one training step goes: each minires operation's forward and backward, next to
torch's profiler on the same network (bench_models.py's torch twin), its operators grouped the same way.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_step.py resnet18:224:8
    python benchmarks/profile_step.py resnet18:224:64 --device cuda

The operations are timed by wrapping every ``Function`` subclass's ``forward`` and ``backward`` here,
for the duration of the measurement; minires itself is not changed.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Tuple

from bench_models import Case, Step, blas_info, build_sides, machine, num, revision, torch
from bench_ops import WAKE_S, publish, synchronize

import minires                           # found through the checkout that bench_models put on sys.path
from minires.autograd import Function


class OpTimer:
    """Milliseconds in each minires operation's forward and backward (after a device synchronisation on a
    GPU), by wrapping every Function subclass's methods inside a ``with`` block. A Function works on arrays
    only, so no operation runs inside another. Convolutions are labelled by kernel size."""

    def __init__(self, device: str) -> None:
        self.device, self.ms, self.calls = device, defaultdict(float), defaultdict(int)
        self._saved: List[Tuple[type, str, Callable]] = []

    def __enter__(self) -> "OpTimer":
        todo, classes = [Function], []
        while todo:                                     # every subclass, however deep
            todo += todo[0].__subclasses__()
            classes.append(todo.pop(0))
        for cls, phase in ((c, p) for c in classes[1:] for p in ("forward", "backward") if p in vars(c)):
            self._saved.append((cls, phase, vars(cls)[phase]))
            setattr(cls, phase, self._timed(vars(cls)[phase], phase))
        return self

    def __exit__(self, *exc: Any) -> None:
        for cls, phase, method in self._saved:
            setattr(cls, phase, method)
        self._saved.clear()

    def _timed(self, method: Callable, phase: str) -> Callable:
        def timed(fn: Function, *args: Any) -> Any:
            if phase == "forward":                      # the label, kept on the Function for its backward
                kernel = "x".join(map(str, args[1].shape[-2:])) if type(fn).__name__ == "Conv2d" else ""
                fn._op_label = f"{type(fn).__name__} {kernel}".strip()
            start = time.perf_counter()
            try:
                return method(fn, *args)
            finally:
                synchronize(self.device)
                self.ms[fn._op_label, phase] += 1e3 * (time.perf_counter() - start)
                self.calls[fn._op_label, phase] += 1
        return timed


# torch's operators (substrings of their names, first match wins) grouped as minires's operations
TORCH_GROUPS = [("conv", "Conv2d"), ("batch_norm", "BatchNorm"), ("max_pool", "MaxPool2d"), ("threshold", "ReLU"),
                ("relu", "ReLU"), ("clamp_min", "ReLU"), ("addmm", "Linear"), ("mm", "Linear"), ("add", "Add"),
                ("adaptive_avg_pool", "AdaptiveAvgPool2d"), ("mean", "AdaptiveAvgPool2d"),
                ("softmax", "CrossEntropy"), ("nll", "CrossEntropy")]


def torch_op_ms(step: Step, device: str, totals: Dict[str, float]) -> None:
    """Add torch's profile of one step to ``totals``: self time per group of operators, and under "rest"
    the wall time of the step outside them (other operators, autograd, Python), as for minires."""
    activities = [torch.profiler.ProfilerActivity.CPU] + [torch.profiler.ProfilerActivity.CUDA] * (device != "cpu")
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        step()
        synchronize(device)
        totals["rest"] += 1e3 * (time.perf_counter() - start)
    for event in prof.key_averages():
        group = next((g for pattern, g in TORCH_GROUPS if pattern in event.key), None)
        gpu_us = getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0))  # torch < 2.4
        ms = (event.self_cpu_time_total if device == "cpu" else gpu_us) / 1e3
        if group is not None:
            totals[group] += ms
            totals["rest"] -= ms


def pause_and_wake(step: Step, device: str) -> None:
    """As bench_ops.median_ms before its timed runs: 0.25 s of quiet (the other library's threads go to
    sleep), then untimed runs for WAKE_S (at least one), so that the profiled pass runs awake."""
    time.sleep(0.25)
    awake = time.perf_counter() + WAKE_S
    while time.perf_counter() < awake:
        step()
        synchronize(device)


def profile(case: Case, device: str, repeats: int, with_torch: bool, pass_: str = "training step") -> List[str]:
    """Each operation's share of one pass (a training step or inference): minires's OpTimer and torch's
    profiler, taking turns."""
    sides = build_sides(case, device, with_torch)
    for side in sides + sides:
        side.steps[pass_]()                   # warm-up, as for the timings
    timer, step_ms, theirs = OpTimer(device), 0.0, defaultdict(float)
    for _ in range(repeats):
        pause_and_wake(sides[0].steps[pass_], device)
        start = time.perf_counter()
        with timer:
            sides[0].steps[pass_]()
            synchronize(device)
        step_ms += 1e3 * (time.perf_counter() - start) / repeats
        if with_torch:
            pause_and_wake(sides[1].steps[pass_], device)
            torch_op_ms(sides[1].steps[pass_], device, theirs)
    mean = {key: ms / repeats for key, ms in timer.ms.items()}
    labels = sorted({label for label, _ in mean}, key=lambda k: -mean[k, "forward"] - mean.get((k, "backward"), 0))
    conv_ms = sum(ms for (label, _), ms in mean.items() if label.startswith("Conv2d"))
    lines = [f"One {pass_} of {case}: minires's time in each operation (mean of {repeats} passes, "
             f"{step_ms:.0f} ms each)" + (f"; torch's profiler on the same steps ({sum(theirs.values()) / repeats:.0f}"
                                          " ms), its operators grouped the same way" if theirs else "") + ".", "",
             "| operation | calls | forward ms | backward ms | total ms | share | torch ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, fwd, bwd, calls, group in [
            (k, mean[k, "forward"], mean.get((k, "backward"), 0.0), timer.calls[k, "forward"] // repeats, k)
            for k in labels] + [("outside the operations (graph walk, gradient sums at branches, modules)",
                                 step_ms - sum(mean.values()), 0.0, "", "rest"),
                                ("all convolutions", conv_ms, 0.0, "", "Conv2d")]:
        phases = f"{fwd:.1f} | {bwd:.1f}" if calls != "" else " | "
        torch_ms = theirs[group] / repeats if group in theirs else None
        lines.append(f"| {label} | {calls} | {phases} | {fwd + bwd:.1f} | {100 * (fwd + bwd) / step_ms:.0f} % | "
                     f"{num(torch_ms, 1)} |")
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", nargs="?", default="resnet18:224:8", help="MODEL:SIZE:BATCH, as in bench_models.py")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="profiled steps of each library; the mean is reported")
    parser.add_argument("--pass", dest="pass_", choices=["training step", "inference"], default="training step",
                        help="the pass to profile (inference: evaluation mode under no_grad)")
    parser.add_argument("--out", help="also write the report to benchmarks/results/<OUT>.md")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not minires.backend.cuda_is_available():
        parser.error("--device cuda needs CuPy and a CUDA device; this machine has neither or not both")
    threads, blas = blas_info()
    if torch is not None:
        torch.set_num_threads(threads)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False   # float32, as CuPy
    header = machine(args.device, threads, blas) + [revision()]
    try:
        case = Case.parse(args.case)
    except ValueError as error:
        parser.error(str(error))
    lines = [f"# Where {'an' if args.pass_ == 'inference' else 'a'} {args.pass_}'s time goes, {args.device}", ""] + \
        header + [""] + profile(case, args.device, args.repeats, torch is not None, args.pass_)
    publish(lines, args.out)


if __name__ == "__main__":
    main()
