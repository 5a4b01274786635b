"""Time minires's operations against PyTorch's, side by side in one run, on ResNet-18 shapes.

Each row is one forward + backward pass (random upstream gradient): the median of ``--repeats``
runs for minires and for PyTorch in the same process, their ratio (minires / torch) and the peak
memory of one pass. On a shared machine compare ratios, and read the load average in the header.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_ops.py --network --out cpu
    python benchmarks/bench_ops.py --device cuda --batch-imagenet 32 --network --out gpu

``--cols`` keeps conv2d's im2col buffer for backward, recomputes it, or times both
(``minires.functional.conv.save_cols``); ``--network`` times all twenty ResNet-18 convolutions
together, both ways, with their peak memory. See README.md here.
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

try:                                                # written by others; a missing one is skipped
    from minires.functional.pooling import max_pool2d
except ImportError:
    max_pool2d = None
try:
    from minires.functional.normalization import batch_norm
except ImportError:
    batch_norm = None

RESULTS = Path(__file__).resolve().parent / "results"
WAKE_S = 0.1             # seconds of untimed runs after each pause (median_ms)
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
        x, (C_out, _, k, _) = "x".join(map(str, self.x_shape)), self.weight_shape or (0,) * 4
        return f"{x} -> {C_out}, {k}x{k} s{self.stride} p{self.padding}" if self.op == "conv2d" else x


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

def library(lib: str, device: str) -> tuple:
    """(make a float32 tensor from an array, the three operations) for "minires" or "torch"."""
    if lib == "minires":
        ops = {"conv2d": conv2d, "max_pool2d": max_pool2d, "batch_norm": batch_norm}
        return (lambda a, grad: minires.tensor(a, requires_grad=grad, device=device)), ops
    ops = {"conv2d": TF.conv2d, "max_pool2d": TF.max_pool2d, "batch_norm": TF.batch_norm}
    return (lambda a, grad: torch.tensor(a, requires_grad=grad, device=device)), ops


def make_pass(lib: str, case: Case, device: str, keep_cols: bool = False) -> Optional[Step]:
    """One forward + backward of ``case`` in ``lib``; None where minires lacks the operation."""
    rng = numpy.random.default_rng(0)
    new, ops = library(lib, device)
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
    dout = rand(tuple(run().shape), False).data

    def step() -> None:
        with save_cols(keep_cols):                  # read by minires's conv2d during the forward
            out = run()
        out.backward(dout)
        for leaf in leaves:
            leaf.grad = None
    return step


def network_pass(lib: str, device: str, N: int, keep_cols: bool = False) -> Step:
    """Every ResNet-18 convolution forward, then every backward in reverse order, as in training:
    whatever the forwards keep is alive at once when the first backward starts."""
    rng = numpy.random.default_rng(0)
    new, ops = library(lib, device)
    rand = lambda shape, grad: new(rng.standard_normal(shape).astype(numpy.float32), grad)  # noqa: E731
    layers = [(c, rand(c.x_shape, c.input_grad), rand(c.weight_shape, True)) for c in network_convs(N)]

    def step() -> None:
        with save_cols(keep_cols):
            outs = [ops["conv2d"](x, w, None, stride=c.stride, padding=c.padding) for c, x, w in layers]
        for out in reversed(outs):
            out.backward(out.data)                  # any upstream gradient of the right shape
        for _, x, w in layers:
            x.grad = w.grad = None
    return step


# --------------------------------------------------------------------------------- measuring

def synchronize(device: str) -> None:
    """Wait for the GPU (both libraries' queues) before reading the clock; nothing on the CPU."""
    if device != "cpu":
        minires.backend.cupy.cuda.Device().synchronize()
        if torch is not None:
            torch.cuda.synchronize()


def median_ms(steps: List[Step], repeats: int, device: str) -> List[float]:
    """Median milliseconds of each step, the steps taking turns.

    BLAS and OpenMP worker threads keep spinning after their library's last call, on the cores
    the other library is about to use (OpenBLAS's for about 0.1 s: torch measured right after a
    NumPy product ran up to 3x slower here). A 0.25 s pause before every timed run lets them go
    to sleep, so neither side is timed against the other's idle threads. After the pause, untimed
    runs for WAKE_S (at least one), then three timed runs back to back, as in a training loop: a pause
    also lets this machine's cores go idle, and the runs right after it were up to 1.7x slower (a
    convolution on two threads: 51 against 30 ms back to back), which no training loop sees. Waking
    takes a time, not a number of runs: after a pause, minires's CIFAR stem convolution (2 ms back to
    back) took 3.3 ms for its first 17 runs, about 55 ms, and then 1.9-2.1 ms; on one thread it kept
    one speed, so it is the hand-over of chunks to the worker thread that wakes slowly. torch's first
    run took 3.2 ms, the next ones 1.7-2.3 ms. The median is over all timed runs (3 x ``repeats``).
    """
    times: List[List[float]] = [[] for _ in steps]
    for step in steps + steps:                      # warm-up: allocators, kernel choices, caches
        step()
    for _ in range(repeats):
        for k, step in enumerate(steps):
            time.sleep(0.25)
            awake = time.perf_counter() + WAKE_S
            while time.perf_counter() < awake:      # untimed: the cores awake again after the pause
                step()
                synchronize(device)
            for _ in range(3):                      # back to back, as in training
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                times[k].append(1e3 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


def enable_peak_memory(device: str) -> bool:
    """Make ``peak_mb`` exact; False where it cannot be measured (not Linux with glibc).

    On the CPU it reads the high-water mark of the resident set, which sees NumPy and torch
    alike. glibc keeps freed blocks resident for reuse, which would hide a peak: from here on
    every block over 64 KiB is its own mapping, returned when freed (and ``peak_mb`` first hands
    the free heap back). That slows allocation, so memory is measured after all the timings.
    """
    if device != "cpu":
        return True
    try:
        import ctypes
        open("/proc/self/clear_refs", "w").close()
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16))          # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def peak_mb(step: Step, device: str) -> float:
    """The most memory one call of ``step`` holds above what was in use when it started, in MB
    (GPU: each library's own allocator, CuPy's pool and torch's statistics)."""
    step()                                          # the first call may allocate caches
    if device == "cpu":
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                            # high-water mark := the current size
        start = rss_bytes("VmRSS")
        step()
        return (rss_bytes("VmHWM") - start) / 1e6
    cupy = minires.backend.cupy
    pool = cupy.get_default_memory_pool()
    synchronize(device)
    start = peak = pool.used_bytes()

    def tracking_malloc(size: int):
        nonlocal peak
        memory = pool.malloc(size)
        peak = max(peak, pool.used_bytes())
        return memory
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()
    torch_start = torch.cuda.memory_allocated() if torch is not None else 0
    cupy.cuda.set_allocator(tracking_malloc)
    try:
        step()
        synchronize(device)
    finally:
        cupy.cuda.set_allocator(pool.malloc)
    torch_peak = torch.cuda.max_memory_allocated() - torch_start if torch is not None else 0
    return (peak - start + torch_peak) / 1e6


def rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))


# --------------------------------------------------------------------------------- the machine

def blas_info() -> Tuple[int, str]:
    """NumPy's BLAS: its thread count and a description (exact with threadpoolctl installed;
    otherwise NumPy's build configuration and the usual thread-count variables, or every core)."""
    try:
        from threadpoolctl import threadpool_info
        b = next(p for p in threadpool_info() if p.get("user_api") == "blas")
        return int(b["num_threads"]), f"{b['internal_api']} {b.get('version')} ({b.get('architecture')} kernels)"
    except (ImportError, StopIteration):
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

def run_cases(args: argparse.Namespace, libs: List[str]) -> tuple:
    """[label, case, keep_cols, [ms per lib]] per row, and notes on what was skipped."""
    rows, notes = [], []
    policies = {"keep": [True], "recompute": [False], "both": [True, False]}[args.cols]
    for case in op_cases(args.suite, args.ops, args.batch_cifar, args.batch_imagenet):
        for keep in (policies if case.op == "conv2d" else [False]):
            steps = [make_pass(lib, case, args.device, keep) for lib in libs]
            if steps[0] is None:
                notes.append(f"- {case.op} is not in minires.functional yet: skipped")
                break
            both = args.cols == "both" and case.op == "conv2d"
            label = case.name + (f" ({'keep' if keep else 'recompute'} cols)" if both else "")
            rows.append([label, case, keep, median_ms(steps, args.repeats, args.device)])
            print(f"{label}: {' / '.join(f'{t:.1f}' for t in rows[-1][3])} ms", flush=True)
    return rows, notes


def run_network(args: argparse.Namespace, libs: List[str]) -> list:
    """[label, lib, keep_cols, ms] for the whole convolution stack."""
    runs = [("minires, im2col buffers kept", "minires", True),
            ("minires, im2col buffers recomputed", "minires", False)] + [("torch", "torch", False)] * (len(libs) - 1)
    steps = [network_pass(lib, args.device, args.batch_imagenet, keep) for _, lib, keep in runs]
    rows = [[label, lib, keep, ms] for (label, lib, keep), ms
            in zip(runs, median_ms(steps, args.repeats, args.device))]
    for label, _, _, ms in rows:
        print(f"network, {label}: {ms:.0f} ms", flush=True)
    return rows


def num(v: Optional[float], digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def report(args: argparse.Namespace, header: List[str], rows: list, network: list, notes: List[str]) -> List[str]:
    lines = [f"# minires vs PyTorch: forward + backward, {args.device}", ""] + header + [
        f"- float32; median of {3 * args.repeats} runs: {args.repeats} turns of a 0.25 s pause, untimed runs for "
        f"{1e3 * WAKE_S:.0f} ms (at least one) and "
        f"3 timed runs back to back; ratio = minires / torch (below 1: minires is faster)",
        "- peak MB: the most memory one pass held above what it started with ("
        + ("resident set size" if args.device == "cpu" else "each library's GPU allocator") + ")",
        "- conv2d without bias, as in ResNet; a stem's input needs no gradient (it is the image); minires "
        + {"keep": "keeps the im2col buffer", "recompute": "recomputes the im2col buffer (its default)",
           "both": "keeps or recomputes the im2col buffer, as the row says"}[args.cols], "",
        "| case | shape | minires ms | torch ms | ratio | minires peak MB | torch peak MB |",
        "|---|---|---:|---:|---:|---:|---:|"]
    for label, case, _, ms, mem in rows:
        theirs = ms[1] if len(ms) > 1 else None
        lines.append(f"| {label} | {case.describe()} | {ms[0]:.1f} | {num(theirs, 1)} | "
                     f"{num(ms[0] / theirs if theirs else None, 2)} | {num(mem[0], 0)} | "
                     f"{num(mem[1] if len(mem) > 1 else None, 0)} |")
    if network:
        torch_ms = network[-1][3] if network[-1][1] == "torch" else None
        lines += ["", f"All 20 ResNet-18 convolutions, batch {args.batch_imagenet}, 224x224: every forward, "
                  "then every backward in reverse order, as in training.", "",
                  "| run | total ms | ratio | peak MB |", "|---|---:|---:|---:|"]
        lines += [f"| {label} | {ms:.0f} | {num(ms / torch_ms if torch_ms else None, 2)} | {num(peak, 0)} |"
                  for label, _, _, ms, peak in network]
    return lines + ([""] + notes if notes else [])


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
    header = machine(args.device, threads, blas)        # the load average before we add to it
    libs = ["minires"] + (["torch"] if torch is not None else [])

    rows, notes = run_cases(args, libs)                 # every timing first; then memory, which
    network = run_network(args, libs) if args.network else []         # changes the allocator
    measured = enable_peak_memory(args.device)
    for row in rows:                                    # row: label, case, keep_cols, ms
        row.append([peak_mb(make_pass(lib, row[1], args.device, row[2]), args.device) if measured else None
                    for lib in libs])
    for row in network:                                 # row: label, lib, keep_cols, ms
        row.append(peak_mb(network_pass(row[1], args.device, args.batch_imagenet, row[2]), args.device)
                   if measured else None)

    publish(report(args, header, rows, network, notes), args.out)


def publish(lines: list, out: str) -> None:
    """Print the report, and with ``--out NAME`` also write it to benchmarks/results/NAME.md."""
    print("\n" + "\n".join(lines))
    if out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{out}.md").write_text("\n".join(lines) + "\n")
        print(f"\nwritten to benchmarks/results/{out}.md")


if __name__ == "__main__":
    main()
