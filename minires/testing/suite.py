"""The gradient-check suite behind ``minires gradcheck``: per operation, the properties the tests run.

Each ``Operation`` draws cases with Hypothesis (convolution and pooling geometry with groups,
dilation, stride, padding and ``ceil_mode``; ``count_include_pad``; every reduction axis;
broadcasting on leading and middle axes; batch norm in training and evaluation mode) and checks
each with ``gradcheck`` (plus ``adjoint_check`` for linear operations, and exact tests of the kink
rules: ReLU'(0) = 0, a max sends its gradient to its first maximum). Explicit examples cover the
configurations where classic mistakes hide, so a few examples per operation already find them.

``run_operation(op)`` never stops at a failure: it returns a ``Result`` with the smallest failing
case (Hypothesis shrinks it) and the message. Runs are deterministic: the same ``seed`` and
``examples`` draw the same cases. The operations themselves are in ``minires.testing.suite_ops``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import minires
from minires.testing.tiers import GradcheckError


@dataclass(frozen=True)
class Operation:
    """One operation's properties: how to draw a case, the cases that always run, and the check."""
    name: str
    cases: st.SearchStrategy                  # draws one case: a dict of plain values
    examples: Tuple[dict, ...]                # explicit cases: the configurations where mistakes hide
    check: Callable[[dict], None]             # raises (GradcheckError, mostly) when the backward is wrong


@dataclass(frozen=True)
class Result:
    """How one operation fared: passed, or the smallest failing case and its message."""
    name: str
    passed: bool
    seconds: float
    case: Optional[dict] = None
    message: str = ""

    def describe(self) -> str:
        """The case as ``key=value, ...``, as a reader would pass it."""
        return "" if self.case is None else ", ".join(f"{k}={v!r}" for k, v in self.case.items())


def leaf(values: numpy.ndarray) -> "minires.Tensor":
    """A float64 tensor that gradcheck differentiates."""
    return minires.tensor(numpy.asarray(values, dtype=numpy.float64), requires_grad=True)


def exact(rule: str, got: numpy.ndarray, want: numpy.ndarray) -> None:
    """An exact test of a kink rule: the gradient must be ``want`` to the last bit."""
    got, want = numpy.asarray(got), numpy.asarray(want)
    if got.shape != want.shape:
        raise GradcheckError(f"{rule}: the gradient has shape {got.shape}, expected {want.shape}")
    wrong = numpy.argwhere(got != want)
    if len(wrong):
        index = tuple(int(i) for i in wrong[0])
        raise GradcheckError(f"{rule}: at element {index} the gradient is {float(got[index]):g} but the rule gives "
                             f"{float(want[index]):g} ({len(wrong)} element(s) differ; finite differences cannot "
                             f"judge a kink, so this is an exact test)")


def run_operation(op: Operation, examples: int = 3, seed: int = 0) -> Result:
    """Run ``op``'s explicit cases and ``examples`` drawn ones; shrink a failure to its smallest case."""
    if examples < 1:
        raise ValueError(f"examples must be at least 1, got {examples}")
    last_failure: Dict[str, Any] = {}

    def check(case: dict) -> None:
        try:
            op.check(case)
        except Exception as error:                     # every exception is a failure, reported with its case
            last_failure.update(case=case, error=error)     # the last one Hypothesis runs is the smallest
            raise

    test = given(case=op.cases)(check)
    for case in reversed(op.examples):
        test = example(case=case)(test)
    test = settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                    report_multiple_bugs=False, verbosity=Verbosity.quiet,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))(test)
    test = hypothesis_seed(seed)(test)
    start = time.perf_counter()
    try:
        test()
    except Exception as error:
        error = last_failure.get("error", error)
        message = str(error) if isinstance(error, GradcheckError) else f"{type(error).__name__}: {error}"
        return Result(op.name, False, time.perf_counter() - start, last_failure.get("case"), message)
    return Result(op.name, True, time.perf_counter() - start)


def run_suite(names: Sequence[str], examples: int = 3, seed: int = 0,
              report: Optional[Callable[[Result], None]] = None) -> List[Result]:
    """Every named operation, each to its end whatever the others did; ``report`` sees each result."""
    from minires.testing.suite_ops import OPERATIONS

    unknown = [n for n in names if n not in OPERATIONS]
    if unknown:
        raise KeyError(f"unknown operation {unknown[0]!r}; choose one of: {', '.join(sorted(OPERATIONS))}")
    results = []
    for name in names:
        result = run_operation(OPERATIONS[name], examples=examples, seed=seed)
        if report is not None:
            report(result)
        results.append(result)
    return results
