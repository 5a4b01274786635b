"""benchmarks/bench_train.py runs end to end with tiny settings, without PyTorch, in a few seconds.

The script is run in a subprocess (it sets the allocator's options for its memory measurement) with
``torch`` made unimportable, so the test needs no PyTorch and checks that its side is skipped with a note.
"""
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

RUN_WITHOUT_TORCH = """
import runpy, sys
sys.modules["torch"] = None                       # `import torch` raises ImportError, as where it is missing
sys.path.insert(0, {benchmarks!r})
sys.argv = ["bench_train.py"] + {args!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def run_bench_train(*args: str) -> subprocess.CompletedProcess:
    code = RUN_WITHOUT_TORCH.format(benchmarks=str(BENCHMARKS), args=list(args),
                                    script=str(BENCHMARKS / "bench_train.py"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_bench_train_runs_without_torch():
    done = run_bench_train("--batch-size", "2", "--steps", "2", "--block", "1", "--repeats", "1", "--images", "8",
                            "--max-others", "100")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "PyTorch is not installed" in out
    assert "| minires |" in out and "| torch |" not in out
    assert "loader + optimizer share" in out
    for optimizer in ("SGD", "Adam", "AdamW"):
        assert f"| {optimizer}" in out


def test_bench_train_refuses_a_gpu_it_does_not_have_or_bad_settings():
    from minires import backend
    if not backend.cuda_is_available():
        done = run_bench_train("--device", "cuda")
        assert done.returncode == 2 and "--device cuda needs CuPy and a CUDA device" in done.stderr
    done = run_bench_train("--batch-size", "4", "--images", "2")
    assert done.returncode == 2 and "--images at least --batch-size" in done.stderr
