"""Time minires's operations against PyTorch's, side by side in one run, on ResNet-18 shapes.

Each row is one forward + backward pass (random upstream gradient): the median of ``--repeats``
runs for minires and for PyTorch in the same process, their ratio (minires / torch: below 1,
minires is faster) and the peak memory of one pass. On a shared machine compare the ratios,
not the milliseconds, and read the load average in the header.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_ops.py --network --out cpu
    python benchmarks/bench_ops.py --suite cifar --ops conv2d --cols both
    python benchmarks/bench_ops.py --device cuda --batch-imagenet 32 --network --out gpu

``--cols`` times convolutions with their im2col buffer kept from the forward pass, recomputed
in backward, or both (``minires.functional.conv.save_cols``); ``--network`` runs all twenty
ResNet-18 convolutions both ways, for the total time and the peak memory. See README.md here.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout, uninstalled

import minires                                                    # noqa: E402
from minires.functional.conv import conv2d, save_cols             # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = None
try:
    from minires.functional.pooling import max_pool2d
except ImportError:
    max_pool2d = None
try:
    from minires.functional.normalization import batch_norm
except ImportError:
    batch_norm = None

RESULTS = Path(__file__).resolve().parent / "results"
Step = Callable[[], None]


# --------------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    name: str
    op: str                                  # "conv2d", "max_pool2d" (3, 2, 1) or "batch_norm" (training)
    x_shape: Tuple[int, ...]
    weight_shape: Tuple[int, ...] = ()
    stride: int = 1
    padding: int = 0
    input_grad: bool = True                  # False for a stem: the image needs no gradient

    def describe(self) -> str:
        x = "x".join(map(str, self.x_shape))
        if self.op != "conv2d":
            return x
        C_out, _, k, _ = self.weight_shape
        return f"{x} -> {C_out}, {k}x{k} s{self.stride} p{self.padding}"


def conv(name: str, N: int, C_in: int, size: int, C_out: int, k: int, stride: int = 1,
         input_grad: bool = True) -> Case:
    return Case(name, "conv2d", (N, C_in, size, size), (C_out, C_in, k, k), stride, k // 2, input_grad)


def stage_convs(prefix: str, N: int, C_in: int, size: int) -> List[Case]:
    """A stage that halves the size: its stride-2 3x3 conv, the 3x3 conv after it, the 1x1 shortcut."""
    C_out = 2 * C_in
    return [conv(f"{prefix} 3x3 s2", N, C_in, size, C_out, 3, 2),
            conv(f"{prefix} 3x3", N, C_out, size // 2, C_out, 3),
            conv(f"{prefix} 1x1 s2 shortcut", N, C_in, size, C_out, 1, 2)]


def op_cases(suite: str, ops: str, batch_cifar: int, batch_imagenet: int) -> List[Case]:
    """ResNet-18's shapes: CIFAR (32x32, 3x3 stem, no max pool) and ImageNet (224x224)."""
    cases: List[Case] = []
    if suite in ("cifar", "all"):
        N = batch_cifar
        cases += [conv("cifar stem 3x3", N, 3, 32, 64, 3, input_grad=False),
                  conv("cifar layer1 3x3", N, 64, 32, 64, 3), *stage_convs("cifar layer2", N, 64, 32),
                  *stage_convs("cifar layer3", N, 128, 16), *stage_convs("cifar layer4", N, 256, 8),
                  Case("cifar batch norm", "batch_norm", (N, 64, 32, 32))]
    if suite in ("imagenet", "all"):
        N = batch_imagenet
        cases += [conv("imagenet stem 7x7 s2", N, 3, 224, 64, 7, 2, input_grad=False),
                  Case("imagenet max pool", "max_pool2d", (N, 64, 112, 112)),
                  Case("imagenet batch norm", "batch_norm", (N, 64, 112, 112)),
                  conv("imagenet layer1 3x3", N, 64, 56, 64, 3), *stage_convs("imagenet layer2", N, 64, 56),
                  *stage_convs("imagenet layer3", N, 128, 28), *stage_convs("imagenet layer4", N, 256, 14)]
    wanted = set(ops.split(","))
    return [c for c in cases if c.op in wanted]


def network_convs(N: int) -> List[Case]:
    """All 20 convolutions of ResNet-18 at 224x224, in the order of the forward pass."""
    cases = [conv("stem", N, 3, 224, 64, 7, 2, input_grad=False)]
    cases += [conv("layer1", N, 64, 56, 64, 3)] * 4
    for C, size in ((64, 56), (128, 28), (256, 14)):
        first, second, shortcut = stage_convs("", N, C, size)
        cases += [first, shortcut] + [second] * 3
    return cases


# --------------------------------------------------------------------------------- the two sides

def make_pass(lib: str, case: Case, device: str, keep_cols: bool = False) -> Optional[Step]:
    """One forward + backward of ``case`` in ``lib`` ("minires" or "torch"); None where minires
    does not have the operation yet."""
    rng = numpy.random.default_rng(0)
    if lib == "minires":
        ops = {"conv2d": conv2d, "max_pool2d": max_pool2d, "batch_norm": batch_norm}
        new = lambda a, grad: minires.tensor(a, requires_grad=grad, device=device)    # noqa: E731
    else:
        ops = {"conv2d": TF.conv2d, "max_pool2d": TF.max_pool2d, "batch_norm": TF.batch_norm}
        new = lambda a, grad: torch.tensor(a, requires_grad=grad, device=device)      # noqa: E731
    op = ops[case.op]
    if op is None:
        return None
    rand = lambda shape, grad=True: new(rng.standard_normal(shape).astype(numpy.float32), grad)  # noqa: E731
    x = rand(case.x_shape, case.input_grad)
    leaves = [x]
    if case.op == "conv2d":
        w = rand(case.weight_shape)
        leaves.append(w)
        run = lambda: op(x, w, None, stride=case.stride, padding=case.padding)         # noqa: E731
    elif case.op == "max_pool2d":
        run = lambda: op(x, 3, 2, 1)                                                   # noqa: E731
    else:
        C = case.x_shape[1]
        gamma, beta = rand((C,)), rand((C,))
        leaves += [gamma, beta]
        mean, var = new(numpy.zeros(C, numpy.float32), False), new(numpy.ones(C, numpy.float32), False)
        run = lambda: op(x, mean, var, gamma, beta, training=True)                     # noqa: E731
    dout = rand(tuple(run().shape), False)
    dout = dout.data if lib == "minires" else dout

    def step() -> None:
        with save_cols(keep_cols):                  # read by minires's conv2d during the forward
            out = run()
        out.backward(dout)
        for leaf in leaves:
            leaf.grad = None
    return step


def network_pass(device: str, N: int, keep_cols: bool) -> Step:
    """Every ResNet-18 convolution forward, then every backward in reverse order, as in training:
    all the buffers the forwards keep are alive at once when the first backward starts."""
    rng = numpy.random.default_rng(0)
    new = lambda shape, grad: minires.tensor(                                          # noqa: E731
        rng.standard_normal(shape).astype(numpy.float32), requires_grad=grad, device=device)
    layers = [(c, new(c.x_shape, c.input_grad), new(c.weight_shape, True)) for c in network_convs(N)]

    def step() -> None:
        with save_cols(keep_cols):
            outs = [conv2d(x, w, None, stride=c.stride, padding=c.padding) for c, x, w in layers]
        for out in reversed(outs):
            out.backward(out.data)                  # any upstream gradient of the right shape
        for _, x, w in layers:
            x.grad = w.grad = None
    return step


# --------------------------------------------------------------------------------- measuring

def synchronizer(device: str) -> Step:
    """Wait for the GPU (both libraries' queues) before reading the clock; nothing on the CPU."""
    if device == "cpu":
        return lambda: None

    def sync() -> None:
        minires.backend.cupy.cuda.Device().synchronize()
        if torch is not None:
            torch.cuda.synchronize()
    return sync


def median_ms(steps: List[Step], repeats: int, sync: Step) -> List[float]:
    """Median milliseconds of each step, the steps taking turns.

    BLAS and OpenMP worker threads keep spinning for a moment after their library's last call,
    on the cores the other library is about to use; a short pause before each timed run lets
    them go to sleep, so neither side is timed against the other's idle threads.
    """
    times: List[List[float]] = [[] for _ in steps]
    for step in steps:                              # warm-up: allocators, kernel choices, caches
        step()
        step()
    for _ in range(repeats):
        for k, step in enumerate(steps):
            time.sleep(0.05)
            sync()
            start = time.perf_counter()
            step()
            sync()
            times[k].append(1e3 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


class PeakMemory:
    """The most memory one call holds above what was in use when it started, in MB.

    CPU: the high-water mark of the resident set (Linux; reset through /proc/self/clear_refs),
    which sees NumPy and torch alike. glibc keeps freed blocks for reuse below a threshold that
    grows as the program runs, which would hide later peaks; ``enable()`` fixes it at 64 KiB
    so each large block goes back to the system when freed. That slows allocation, so memory is
    measured after all the timings. GPU: each library's allocator (CuPy's pool, torch's stats).
    """

    def __init__(self, device: str, sync: Step):
        self.device, self.sync = device, sync

    def enable(self) -> bool:
        if self.device != "cpu":
            return True
        try:
            import ctypes
            open("/proc/self/clear_refs", "w").close()
            return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16))     # M_MMAP_THRESHOLD
        except (OSError, AttributeError):
            return False

    def measure(self, step: Step) -> float:
        step()                                      # the first call may allocate caches
        if self.device == "cpu":
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                        # high-water mark := the current size
            start = self._rss("VmRSS")
            step()
            return (self._rss("VmHWM") - start) / 1e6
        cupy = minires.backend.cupy
        pool = cupy.get_default_memory_pool()
        self.sync()
        start = peak = pool.used_bytes()

        def tracking_malloc(size: int):
            nonlocal peak
            memory = pool.malloc(size)
            peak = max(peak, pool.used_bytes())
            return memory
        torch_start = torch.cuda.memory_allocated() if torch is not None else 0
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()
        cupy.cuda.set_allocator(tracking_malloc)
        try:
            step()
            self.sync()
        finally:
            cupy.cuda.set_allocator(pool.malloc)
        torch_peak = torch.cuda.max_memory_allocated() - torch_start if torch is not None else 0
        return (peak - start + torch_peak) / 1e6

    @staticmethod
    def _rss(field: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field}")


# --------------------------------------------------------------------------------- the machine

def blas_info() -> Tuple[int, str]:
    """NumPy's BLAS: its thread count and a description (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            b = blas[0]
            return int(b["num_threads"]), f"{b['internal_api']} {b.get('version')} ({b.get('architecture')} kernels)"
    except ImportError:
        pass
    config = numpy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    threads = next((int(os.environ[v]) for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
                    if os.environ.get(v, "").isdigit()), cores())
    return threads, f"{config.get('name', 'unknown')} {config.get('version', '')}"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine(device: str, threads: int, blas: str) -> List[str]:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), cpu)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    lines = [f"- CPU: {cpu}, {cores()} cores; load average {load} at the start",
             f"- Python {platform.python_version()}, NumPy {numpy.__version__}, BLAS {blas}, {threads} threads"]
    lines.append(f"- PyTorch {torch.__version__}, torch.set_num_threads({threads}) to match the BLAS"
                 if torch is not None else "- PyTorch is not installed: its columns are empty")
    if device == "cuda":
        cupy = minires.backend.cupy
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
        lines.append(f"- GPU: {name}, CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    return lines


# --------------------------------------------------------------------------------- main

def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: CuPy vs torch CUDA")
    parser.add_argument("--suite", choices=["cifar", "imagenet", "all"], default="all")
    parser.add_argument("--ops", default="conv2d,max_pool2d,batch_norm", help="comma-separated")
    parser.add_argument("--batch-cifar", type=int, default=32)
    parser.add_argument("--batch-imagenet", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case; the median is reported")
    parser.add_argument("--cols", choices=["keep", "recompute", "both"], default="recompute",
                        help="conv2d: keep the im2col buffer for backward, recompute it, or time both")
    parser.add_argument("--network", action="store_true", help="also time all ResNet-18 convolutions together")
    parser.add_argument("--out", help="also write the report to benchmarks/results/<OUT>.md")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not minires.backend.cuda_is_available():
        parser.error("--device cuda needs CuPy and a CUDA device; this machine has neither or not both")
    if args.device == "cuda" and torch is not None and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build has no CUDA; install a CUDA build of torch")
    threads, blas = blas_info()
    if torch is not None:
        torch.set_num_threads(threads)
    sync = synchronizer(args.device)

    # Timings first, every case; then memory, which changes how the allocator behaves.
    rows, notes = [], []
    policies = {"keep": [True], "recompute": [False], "both": [True, False]}[args.cols]
    for case in op_cases(args.suite, args.ops, args.batch_cifar, args.batch_imagenet):
        for keep in (policies if case.op == "conv2d" else [False]):
            libs = ["minires"] + (["torch"] if torch is not None else [])
            steps = [make_pass(lib, case, args.device, keep) for lib in libs]
            if steps[0] is None:
                notes.append(f"- {case.op} is not in minires.functional yet: skipped")
                break
            label = case.name + (f" ({'keep' if keep else 'recompute'} cols)" if args.cols == "both"
                                 and case.op == "conv2d" else "")
            rows.append([label, case, keep, median_ms(steps, args.repeats, sync)])
            print(f"{label}: {' / '.join(f'{t:.1f}' for t in rows[-1][3])} ms", flush=True)
    network = []
    if args.network:
        for keep in (True, False):
            ms = median_ms([network_pass(args.device, args.batch_imagenet, keep)], 3, sync)[0]
            network.append([keep, ms])
            print(f"network, {'keep' if keep else 'recompute'} cols: {ms:.0f} ms", flush=True)

    memory = PeakMemory(args.device, sync)
    measured = memory.enable()
    for row in rows:
        _, case, keep, _ = row
        row.append([memory.measure(make_pass(lib, case, args.device, keep)) if measured else None
                    for lib in (["minires"] + (["torch"] if torch is not None else []))])
    for row in network:
        row.append(memory.measure(network_pass(args.device, args.batch_imagenet, row[0])) if measured else None)

    def num(v: Optional[float], digits: int) -> str:
        return "-" if v is None else f"{v:.{digits}f}"
    report = [f"# minires vs PyTorch: forward + backward, {args.device}", ""]
    report += machine(args.device, threads, blas) + [
        f"- float32; median of {args.repeats} runs; ratio = minires / torch (below 1: minires is faster)",
        "- peak MB: the most memory one pass held above what it started with ("
        + ("resident set size" if args.device == "cpu" else "each library's GPU allocator") + ")",
        f"- conv2d without bias, as in ResNet; a stem's input needs no gradient (it is the image); "
        f"minires {'keeps' if args.cols == 'keep' else 'recomputes'} the im2col buffer"
        + (" (both rows shown)" if args.cols == "both" else ""), "",
        "| case | shape | minires ms | torch ms | ratio | minires peak MB | torch peak MB |",
        "|---|---|---:|---:|---:|---:|---:|"]
    for label, case, _, ms, mem in rows:
        theirs = ms[1] if len(ms) > 1 else None
        report.append(f"| {label} | {case.describe()} | {ms[0]:.1f} | {num(theirs, 1)} | "
                      f"{num(ms[0] / theirs if theirs else None, 2)} | {num(mem[0], 0)} | "
                      f"{num(mem[1] if len(mem) > 1 else None, 0)} |")
    if network:
        report += ["", f"All 20 ResNet-18 convolutions, batch {args.batch_imagenet}, 224x224: every forward, "
                   "then every backward in reverse order (minires only).", "",
                   "| im2col buffers | total ms | peak MB |", "|---|---:|---:|"]
        report += [f"| {'kept' if keep else 'recomputed'} | {ms:.0f} | {num(peak, 0)} |" for keep, ms, peak in network]
    report += [""] + notes if notes else []
    print("\n" + "\n".join(report))
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.out}.md").write_text("\n".join(report) + "\n")
        print(f"\nwritten to benchmarks/results/{args.out}.md")


if __name__ == "__main__":
    main()
