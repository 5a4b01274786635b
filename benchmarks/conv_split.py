"""Where a convolution's time goes: minires's conv2d forward + backward, split into its parts.

For each convolution of ResNet-18 (CIFAR at 32x32 and ImageNet at 224x224, ``bench_ops.py``'s
shapes) the steps of ``minires/functional/conv.py`` are timed one at a time, each alone, on the
CPU: im2col (into a fresh buffer, as ``im2col()`` does, and into one that already exists), the
three matrix products (into an existing ``out=``, with their GFLOP/s), col2im, the two
transposing copies; then the whole ``conv2d`` forward + backward through ``minires.Tensor``s and
PyTorch's ``F.conv2d`` on the same shape, in the same process. What the parts do not explain is
reported as "Python and the rest".

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_split.py --suite all --out conv-split-cpu

The method is ``bench_ops.py``'s (a pause before a timed run, the parts and both libraries taking
turns, torch on the BLAS's thread count; ``median_ms`` below says where it differs); see README.md here.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy

from bench_models import cpu_ticks, others_share, revision                           # puts minires on the path
from bench_ops import Case, blas_info, machine, make_pass, op_cases, publish, torch   # noqa: E402
import minires                                                                        # noqa: E402
from minires.functional.conv import conv2d                                            # noqa: E402
from minires.functional.im2col import Pair, col2im, conv_output_size, im2col, padded_shape

Step = Callable[[], object]
PAUSE_S = 0.2                       # quiet before a timed run: OpenBLAS's threads spin ~0.1 s after a product
SGEMM_SIZE = 2048                   # the large square product that sets "this machine's sgemm rate"

# The parts of one pass, in the order of the table. A part a case does not have is left out.
IM2COL_FRESH, IM2COL_REUSED = "im2col fresh", "im2col reused"
FORWARD_FRESH, FORWARD, DW, DCOLS = "W @ cols fresh", "W @ cols", "dW", "dcols"
COL2IM, OUT_T, DOUT_T = "col2im", "out transpose", "dout transpose"
MINIRES, TORCH = "minires", "torch"
PRODUCTS = (FORWARD, DW, DCOLS)
# The order the steps take turns in: the copies first (after one pause, then back to back; col2im
# between the two im2col calls, so that neither finds x in the cache from the other), then the
# products, each after a pause, then the whole passes.
TURN_ORDER = (IM2COL_FRESH, COL2IM, IM2COL_REUSED, OUT_T, DOUT_T, FORWARD_FRESH, FORWARD, DW, DCOLS)
SINGLE_THREADED = {IM2COL_FRESH, IM2COL_REUSED, COL2IM, OUT_T, DOUT_T}        # NumPy copies: no threads left spinning


# --------------------------------------------------------------------------------- the parts

class Geometry:
    """One convolution's sizes: x (N, C_in, H, W), weight (C_out, C_in, k, k), output (oH, oW)."""

    def __init__(self, case: Case):
        H, W = case.x_shape[2:]
        k, s, p = case.weight_shape[2], case.stride, case.padding
        self.case, self.kernel, self.stride, self.padding, self.dilation = case, (k, k), (s, s), (p, p), (1, 1)
        self.out_size: Pair = (conv_output_size(H, k, s, p, 1), conv_output_size(W, k, s, p, 1))

    @property
    def pointwise(self) -> bool:
        """conv.py's 1x1 path: no im2col in the forward, one product per image on x as it lies."""
        return self.kernel == (1, 1) and self.padding == (0, 0)

    @property
    def flops(self) -> float:
        """Multiply-adds x 2 of each of the three products: C_out x K x M, K = C_in*kH*kW, M = N*oH*oW."""
        N, C_in = self.case.x_shape[:2]
        C_out, (kh, kw), (oh, ow) = self.case.weight_shape[0], self.kernel, self.out_size
        return 2.0 * C_out * (C_in * kh * kw) * (N * oh * ow)

    def im2col_args(self) -> tuple:
        return self.kernel, self.stride, self.padding, self.dilation, self.out_size


def im2col_into(x: numpy.ndarray, x_pad: Optional[numpy.ndarray], cols: numpy.ndarray, g: Geometry) -> None:
    """``im2col`` as written in im2col.py, but into buffers that already exist: the same padding
    fill, the same strided view, the same one copy; only the allocations (and the first touch of
    their pages) are missing. ``x_pad`` is None where no padding is needed."""
    N, C, H, W = x.shape
    if x_pad is None:
        x_pad = x
    else:
        x_pad.fill(0.0)                                                       # (N, C, Hp, Wp)
        x_pad[:, :, g.padding[0]:g.padding[0] + H, g.padding[1]:g.padding[1] + W] = x
    sN, sC, sH, sW = x_pad.strides
    windows = numpy.lib.stride_tricks.as_strided(                             # (C, kH, kW, N, oH, oW), a view
        x_pad, shape=(C,) + g.kernel + (N,) + g.out_size,
        strides=(sC, sH * g.dilation[0], sW * g.dilation[1], sN, sH * g.stride[0], sW * g.stride[1]))
    cols[...] = windows                                                       # the one copy


def conv_parts(g: Geometry, rng: numpy.random.Generator) -> Tuple[Dict[str, Step], tuple]:
    """Each step of conv.py's forward + backward as a call of its own, on random float32 data.

    The products write into arrays made here once (``out=``), so none of them pays for fresh
    pages; "W @ cols fresh" is the forward product as conv.py runs it, with a new result array.
    The transposing copies and col2im run as the code has them, new arrays included. Returns the
    steps (each returns its result) and the data they work on, (x, w_g, dout).
    """
    case = g.case
    N, C_in, H, W = case.x_shape
    C_out = case.weight_shape[0]
    (kh, kw), (oh, ow) = g.kernel, g.out_size
    K, M = C_in * kh * kw, N * oh * ow
    rand = lambda *shape: rng.standard_normal(shape).astype(numpy.float32)      # noqa: E731
    x, w_g, dout = rand(N, C_in, H, W), rand(1, C_out, K), rand(N, C_out, oh, ow)   # w_g: (G=1, Og, K)

    # The backward's buffers, as conv.py builds them: dout as (G, Og, M), cols recomputed as (G, K, M).
    dout_g = numpy.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(1, C_out, M)
    cols = im2col(x, *g.im2col_args())                                          # (C_in, kH, kW, N, oH, oW)
    cols_g = cols.reshape(1, K, M)
    Hp, Wp = padded_shape(x.shape, *g.im2col_args())
    x_pad = None if (Hp, Wp) == (H, W) else numpy.empty((N, C_in, Hp, Wp), numpy.float32)
    expected = cols.copy()
    cols.fill(numpy.nan)
    im2col_into(x, x_pad, cols, g)
    if not numpy.array_equal(cols, expected):
        raise RuntimeError("conv_split.py: im2col_into no longer gives what im2col() gives: "
                           "minires/functional/im2col.py has changed; update im2col_into to match it")
    dw = numpy.empty((1, C_out, K), numpy.float32)                               # (G, Og, K)
    parts: Dict[str, Step] = {
        IM2COL_FRESH: lambda: im2col(x, *g.im2col_args()),
        IM2COL_REUSED: lambda: im2col_into(x, x_pad, cols, g),
    }
    if g.pointwise:                   # forward and dx: one product per image, (Og, K) @ (K, oH*oW)
        s = g.stride
        x_s = numpy.ascontiguousarray(x[:, :, ::s[0], ::s[1]]).reshape(N, 1, C_in, oh * ow)   # (N, G, K, oH*oW)
        dout4 = dout.reshape(N, 1, C_out, oh * ow)                                            # (N, G, Og, oH*oW)
        out = numpy.empty((N, 1, C_out, oh * ow), numpy.float32)
        dx_s = numpy.empty((N, 1, C_in, oh * ow), numpy.float32)
        parts[FORWARD_FRESH] = lambda: w_g @ x_s
        parts[FORWARD] = lambda: numpy.matmul(w_g, x_s, out=out)
        parts[DW] = lambda: numpy.matmul(dout_g, cols_g.transpose(0, 2, 1), out=dw)
        parts[DCOLS] = lambda: numpy.matmul(w_g.transpose(0, 2, 1), dout4, out=dx_s)
        parts[DOUT_T] = lambda: numpy.ascontiguousarray(dout.transpose(1, 0, 2, 3))
        return parts, (x, w_g, dout)
    out_g = numpy.empty((1, C_out, M), numpy.float32)                             # (G, Og, M)
    dcols = numpy.empty((1, K, M), numpy.float32)                                 # (G, K, M)

    def out_transpose() -> numpy.ndarray:                                        # the forward's last copy (no bias)
        result = numpy.empty((N, C_out, oh, ow), numpy.float32)                  # (N, C_out, oH, oW)
        result[...] = out_g.reshape(C_out, N, oh, ow).transpose(1, 0, 2, 3)
        return result

    parts[FORWARD_FRESH] = lambda: w_g @ cols_g
    parts[FORWARD] = lambda: numpy.matmul(w_g, cols_g, out=out_g)
    parts[DW] = lambda: numpy.matmul(dout_g, cols_g.transpose(0, 2, 1), out=dw)
    if case.input_grad:                                                           # a stem has no dx
        parts[DCOLS] = lambda: numpy.matmul(w_g.transpose(0, 2, 1), dout_g, out=dcols)
        dcols6 = dcols.reshape(C_in, kh, kw, N, oh, ow)                           # (C_in, kH, kW, N, oH, oW)
        parts[COL2IM] = lambda: col2im(dcols6, x.shape, g.kernel, g.stride, g.padding, g.dilation)
    parts[OUT_T] = out_transpose
    parts[DOUT_T] = lambda: numpy.ascontiguousarray(dout.transpose(1, 0, 2, 3))
    return parts, (x, w_g, dout)


def check_parts(g: Geometry, parts: Dict[str, Step], data: Tuple[numpy.ndarray, ...]) -> None:
    """The parts, run in order, must give what ``conv2d`` gives on the same data (output, dW and
    dx), or their times would describe some other computation."""
    x, w_g, dout = data
    case = g.case
    xt = minires.tensor(x, requires_grad=case.input_grad)
    wt = minires.tensor(w_g.reshape(case.weight_shape), requires_grad=True)
    out = conv2d(xt, wt, None, stride=case.stride, padding=case.padding)
    out.backward(dout)
    forward = parts[FORWARD]()                           # (G, Og, M); on the 1x1 path (N, G, Og, oH*oW)
    got = {"output": forward.reshape(out.shape) if g.pointwise else parts[OUT_T](),
           "dW": parts[DW]().reshape(case.weight_shape)}
    want = {"output": out.data, "dW": wt.grad.data}
    if DCOLS in parts:
        dx = parts[DCOLS]()
        s = g.stride
        got["dx"] = dx.reshape(out.shape[0], -1, *out.shape[2:]) if g.pointwise else parts[COL2IM]()
        want["dx"] = xt.grad.data[:, :, ::s[0], ::s[1]] if g.pointwise else xt.grad.data
    for name in got:
        if not numpy.allclose(got[name], want[name], rtol=1e-4, atol=1e-3):
            raise RuntimeError(f"conv_split.py: the parts' {name} differs from conv2d's on {case.name}: "
                               f"minires/functional/conv.py has changed; update conv_parts to match it")


# --------------------------------------------------------------------------------- measuring

def median_ms(steps: Dict[str, Step], repeats: int) -> Dict[str, float]:
    """Median milliseconds of each step, the steps taking turns in their order, with a pause.

    bench_ops.median_ms's method: BLAS and OpenMP threads spin for about 0.1 s after their
    library's last call, so a timed run starts after PAUSE_S of quiet. One difference: a run that
    follows a single-threaded NumPy copy (SINGLE_THREADED) left nothing spinning and starts
    without the pause, which keeps a row of up to eleven steps to a few seconds.
    """
    for step in list(steps.values()) * 2:              # warm-up: allocator, oneDNN's kernel choice, caches
        step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    previous: Optional[str] = None
    for _ in range(repeats):
        for name, step in steps.items():
            if previous not in SINGLE_THREADED:
                time.sleep(PAUSE_S)
            start = time.perf_counter()
            step()
            times[name].append(1e3 * (time.perf_counter() - start))
            previous = name
    return {name: statistics.median(t) for name, t in times.items()}


def sgemm_gflops(repeats: int) -> float:
    """This machine's float32 rate on a large square product (SGEMM_SIZE^2), into an existing array."""
    rng = numpy.random.default_rng(1)
    a, b = (rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE)).astype(numpy.float32) for _ in range(2))
    c = numpy.empty_like(a)
    median = median_ms({"sgemm": lambda: numpy.matmul(a, b, out=c)}, repeats)["sgemm"]
    return 2.0 * SGEMM_SIZE ** 3 / (median * 1e6)


@dataclass
class Row:
    """One case's medians (ms per part), the share of the CPU others took meanwhile, and what follows."""
    geometry: Geometry
    ms: Dict[str, float]
    others: Optional[float]

    def get(self, part: str) -> float:
        return self.ms.get(part, 0.0)

    @property
    def im2col_calls(self) -> int:
        """im2col runs twice per pass (forward, recomputed in backward); a 1x1 once (backward, for dW)."""
        return 1 if self.geometry.pointwise else 2

    @property
    def alloc(self) -> float:
        """Fresh pages of the large buffers: each im2col's fresh-minus-reused, and the forward product's."""
        return (self.im2col_calls * (self.get(IM2COL_FRESH) - self.get(IM2COL_REUSED))
                + self.get(FORWARD_FRESH) - self.get(FORWARD))

    @property
    def products(self) -> float:
        return sum(self.get(p) for p in PRODUCTS)

    @property
    def copies(self) -> float:
        """im2col (reused buffer, every call), col2im and the transposing copies."""
        return self.im2col_calls * self.get(IM2COL_REUSED) + sum(self.get(p) for p in (COL2IM, OUT_T, DOUT_T))

    @property
    def rest(self) -> float:
        """The whole minires pass minus every part it was split into."""
        return self.get(MINIRES) - self.products - self.copies - self.alloc

    def gflops(self, part: str) -> Optional[float]:
        return self.geometry.flops / (self.ms[part] * 1e6) if part in self.ms else None


def run_cases(cases: List[Case], repeats: int, max_others: float) -> List[Row]:
    """Every case's row; a row during which other processes took more than ``max_others`` % of the
    CPU is timed again, twice at most, and the quietest try kept (on 2 cores, another job on one
    of them stalls every 2-thread product)."""
    rows: List[Row] = []
    rng = numpy.random.default_rng(0)
    for case in cases:
        g = Geometry(case)
        parts, data = conv_parts(g, rng)
        check_parts(g, parts, data)
        steps = {name: parts[name] for name in TURN_ORDER if name in parts}
        steps[MINIRES] = make_pass("minires", case, "cpu")       # conv2d through Tensors, .backward(dout)
        if torch is not None:
            steps[TORCH] = make_pass("torch", case, "cpu")
        tries = []
        for _ in range(3):
            before = cpu_ticks()
            medians = median_ms(steps, repeats)
            tries.append(Row(g, medians, others_share(before, cpu_ticks())))
            if tries[-1].others is None or tries[-1].others <= max_others:
                break
        rows.append(min(tries, key=lambda r: r.others or 0.0))
        print(f"{case.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].ms.items())
              + f"; others' CPU {ms(rows[-1].others)} %", flush=True)
    return rows


# --------------------------------------------------------------------------------- the report

def ms(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def rate(row: Row, part: str, peak: float) -> str:
    r = row.gflops(part)
    return "-" if r is None else f"{r:.0f} ({100 * r / peak:.0f} %)"


def table(rows: List[Row], peak: float) -> List[str]:
    lines = ["| case | shape | im2col fresh | im2col reused | alloc + first touch | W @ cols | dW | dcols | col2im "
             "| out transpose | dout transpose | Python and the rest | minires total | torch total | ratio "
             "| W @ cols GFLOP/s | dW GFLOP/s | dcols GFLOP/s | others' CPU % |",
             "|---|---|" + "---:|" * 17]
    for r in rows:
        t = r.ms.get(TORCH)
        cells = [r.geometry.case.name, r.geometry.case.describe(), ms(r.ms[IM2COL_FRESH]), ms(r.ms[IM2COL_REUSED]),
                 ms(r.alloc)] + [ms(r.ms.get(p)) for p in (FORWARD, DW, DCOLS, COL2IM, OUT_T, DOUT_T)]
        cells += [ms(r.rest), ms(r.ms[MINIRES]), ms(t), "-" if t is None else f"{r.ms[MINIRES] / t:.2f}"]
        cells += [rate(r, p, peak) for p in PRODUCTS] + ["-" if r.others is None else f"{r.others:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def share_range(rows: List[Row], value: Callable[[Row], float]) -> str:
    """'a to b %' of each row's whole minires pass, and the share over all rows together."""
    shares = [100 * value(r) / r.ms[MINIRES] for r in rows]
    total = 100 * sum(value(r) for r in rows) / sum(r.ms[MINIRES] for r in rows)
    return f"{min(shares):.0f} to {max(shares):.0f} % ({total:.0f} % of their summed time)"


def findings(rows: List[Row], peak: float) -> List[str]:
    """What the table shows, computed from it: every number here is one of the medians above."""
    lowered = [r for r in rows if not r.geometry.pointwise]
    pointwise = [r for r in rows if r.geometry.pointwise]
    lines: List[str] = []
    if lowered:
        rates = [(100 * r.gflops(p) / peak, r.geometry.case.name, p) for r in lowered for p in PRODUCTS if p in r.ms]
        low, high = min(rates), max(rates)
        lines.append(
            f"**The 3x3 and 7x7 rows** ({len(lowered)}): the three products take "
            f"{share_range(lowered, lambda r: r.products)} "
            f"of minires's pass; the copies (im2col twice into an existing buffer, col2im, the two transposes) "
            f"{share_range(lowered, lambda r: r.copies)}; allocation and first touch of the fresh buffers "
            f"{share_range(lowered, lambda r: r.alloc)}; Python and the rest {share_range(lowered, lambda r: r.rest)}. "
            f"The products ran at {low[0]:.0f}-{high[0]:.0f} % of the {SGEMM_SIZE}x{SGEMM_SIZE} sgemm rate "
            f"(lowest: {low[2]} of {low[1]}; highest: {high[2]} of {high[1]}).")
        if torch is not None:
            over = [r.geometry.case.name for r in lowered if r.products > r.ms[TORCH]]
            ratios = [r.ms[MINIRES] / r.ms[TORCH] for r in lowered]
            lines.append(
                f"minires took {min(ratios):.2f}-{max(ratios):.2f}x torch's time on these rows. "
                + (f"On {len(over)} of them the three products alone took longer than torch's whole forward + "
                   f"backward: {', '.join(over)}." if over else
                   "On every one of them torch's whole forward + backward took longer than minires's three products."))
    if pointwise:
        ratios = [r.ms[MINIRES] / r.ms[TORCH] for r in pointwise] if torch is not None else []
        lines.append(
            f"**The 1x1 shortcuts** ({len(pointwise)}): the products take "
            f"{share_range(pointwise, lambda r: r.products)} "
            f"of minires's pass, the backward's im2col (for dW) and dout transpose "
            f"{share_range(pointwise, lambda r: r.copies)}"
            + (f"; minires took {min(ratios):.2f}-{max(ratios):.2f}x torch's time." if ratios else "."))
    return lines


def report(rows: List[Row], peak: float, header: List[str], repeats: int, max_others: float) -> List[str]:
    lines = ["# Where a convolution's time goes: minires conv2d (im2col), forward + backward, cpu", ""] + header + [
        "- float32, conv2d without bias (as in ResNet); a stem's input needs no gradient (no dcols, no col2im); "
        "im2col recomputed in backward (minires's default)",
        f"- ms: median of {repeats} runs of each part alone, all parts and both libraries taking turns, each run "
        f"after a {PAUSE_S} s pause except right after a single-threaded copy (nothing left spinning); the parts run "
        f"on random data of the case's shapes, checked against `conv2d`'s output, dW and dx",
        "- **im2col fresh / reused**: one im2col call into a new buffer (as `im2col()` does) / into one that exists; "
        "a pass calls it twice (forward, and again in backward for dW), a 1x1 once (backward)",
        "- **alloc + first touch**: im2col's (fresh - reused) x its calls, plus the forward product's "
        "(new result - existing `out=`); col2im's and the transposes' own new arrays are inside their columns",
        "- **W @ cols, dW, dcols**: each product into an existing `out=`; GFLOP/s = 2 C_out K M / time, with "
        "% of the sgemm rate above. On the 1x1 rows `W @ cols` and `dcols` are one product per image on "
        "(strided) x and dout, as conv.py's 1x1 path runs them",
        "- **out transpose**: the forward's (C_out, N, oH, oW) -> (N, C_out, oH, oW) copy into a new array; "
        "**dout transpose**: the backward's (N, C_out, oH, oW) -> (C_out, N, oH, oW)",
        "- **Python and the rest** = minires total - (im2col reused x calls + alloc + products + col2im + transposes): "
        "the Tensor and autograd machinery, the copy of each gradient into its leaf's `.grad`, and on the 1x1 rows "
        "the forward's strided copy of x and the scatter of dx; negative where the parts' noise exceeds it",
        "- **minires total**: `minires.functional.conv2d` forward + `.backward(dout)` through `minires.Tensor`s; "
        "**torch total**: `F.conv2d` the same way; ratio = minires / torch",
        "- **others' CPU %**: the share of the machine's CPU time other processes took while the row was timed "
        f"(a row above {max_others:.0f} % is timed again, twice at most, and the quietest try kept)", ""]
    return lines + table(rows, peak) + [""] + findings(rows, peak)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=["cifar", "imagenet", "all"], default="all")
    parser.add_argument("--batch-cifar", type=int, default=32)
    parser.add_argument("--batch-imagenet", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per part; the median is reported")
    parser.add_argument("--max-others", type=float, default=10, help="time a row again (twice at most) when other "
                        "processes took more than this %% of the CPU meanwhile")
    parser.add_argument("--out", help="also write the report to benchmarks/results/<OUT>.md")
    args = parser.parse_args(argv)
    threads, blas = blas_info()
    if torch is not None:
        torch.set_num_threads(threads)
    header = machine("cpu", threads, blas) + [revision()]   # the load average before we add to it
    before = cpu_ticks()
    peak = sgemm_gflops(args.repeats)
    others = others_share(before, cpu_ticks())
    print(f"sgemm {SGEMM_SIZE}x{SGEMM_SIZE}: {peak:.0f} GFLOP/s; others' CPU {ms(others)} %", flush=True)
    header.append(f"- this machine's sgemm: {peak:.0f} GFLOP/s on a {SGEMM_SIZE}x{SGEMM_SIZE} float32 product "
                  f"(median of {args.repeats}, into an existing array; others' CPU meanwhile {ms(others)} %)")
    cases = op_cases(args.suite, "conv2d", args.batch_cifar, args.batch_imagenet)
    rows = run_cases(cases, args.repeats, args.max_others)
    publish(report(rows, peak, header, args.repeats, args.max_others), args.out)


if __name__ == "__main__":
    main()
