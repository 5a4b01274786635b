"""The grader: each exercise of a student copy, checked on its own against the reference.

For one task, the student's file (``DIR/minires/functional/conv.py``) is imported as a separate
module under a name of its own, and its Function class (``Conv2d``) takes the reference class's
place in the reference module for the length of that task only. Every other operation, and
everything around this one (autograd, im2col, the public ``conv2d``), stays the reference's, so one
broken operation fails one task only.

Each task runs its fixed configurations, smallest first (``tasks.py``), each with fixed seeds:

1. the forward must still give the reference's output (the exercise is the backward);
2. at smooth points, ``minires.testing.gradcheck`` (float64 central differences, random upstream
   gradient), and ``adjoint_check`` for the linear operations (average pooling); at kinks (ties, zeros), where finite differences are undefined, the gradient must
   equal the reference rule's exactly;
3. a failing configuration is compared with the reference gradient, and ``diagnose`` names the
   likely mistake; across configurations, the one setting that all failing ones share.

A stub that still raises ``NotImplementedError`` is "not attempted".
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy

from minires.exercises import diagnose
from minires.exercises.cases import Case, Config
from minires.exercises.tasks import Task
from minires.tensor import Tensor
from minires.testing import GradcheckError, adjoint_check, gradcheck

_loaded = itertools.count()


class NotAttempted(Exception):
    """The student's backward still raises NotImplementedError."""


@dataclass
class TaskResult:
    name: str
    status: str                                   # "passed", "failed" or "not attempted"
    configs: int                                  # how many configurations ran
    failed: List[str] = field(default_factory=list)   # labels of the failing ones, smallest first
    lines: List[str] = field(default_factory=list)    # the report, one line each

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def text(self) -> str:
        return "\n".join(self.lines)


def load_student_class(root: Path, task: Task) -> type:
    """The student's Function class for ``task``, from their copy, imported under a unique name."""
    path = Path(root) / "minires" / task.path
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; grade the folder that `minires exercises new` wrote")
    name = f"_minires_student_{task.name}_{next(_loaded)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, task.cls, None)
    if not isinstance(cls, type):
        raise AttributeError(f"{path} defines no class {task.cls}; keep the class and its name as they were")
    return cls


@contextlib.contextmanager
def in_place_of_reference(task: Task, cls: type) -> Iterator[None]:
    """The student's class in the reference module, for the block only."""
    module = importlib.import_module(task.module)
    original = getattr(module, task.cls)
    setattr(module, task.cls, cls)
    try:
        yield
    finally:
        setattr(module, task.cls, original)


def _checked(case: Case) -> List[int]:
    return [i for i, t in enumerate(case.inputs) if isinstance(t, Tensor) and t.requires_grad]


def _run(case: Case, G: Optional[numpy.ndarray]) -> tuple:
    """(output array, upstream gradient, [gradient or None per checked input]) of one forward + backward."""
    out = case.fn(*case.inputs)
    if G is None:
        G = numpy.random.default_rng(12345).standard_normal(out.shape)
    out.backward(G)
    return out.data, G, [None if case.inputs[i].grad is None else case.inputs[i].grad.data for i in _checked(case)]


def check_config(task: Task, config: Config, student: type) -> List[str]:
    """[] when the student's class passes ``config``; else what went wrong and the hints."""
    reference = config.make()
    expected_out, G, expected = _run(reference, None)
    case = config.make()
    with in_place_of_reference(task, student):
        try:
            out, _, got = _run(case, G)
        except NotImplementedError as err:
            raise NotAttempted(str(err)) from None
        except Exception as err:                               # the student's code: report anything
            return [f"backward raised {type(err).__name__}: {err}", f"hint: backward must return {task.returns}"]
        if out.shape != expected_out.shape or not numpy.allclose(out, expected_out, rtol=1e-10, atol=1e-12):
            return ["the forward output differs from the reference's: the exercise is the backward only; "
                    "leave the forward as it was (it may keep more for the backward)"]
        names = [case.names[i] for i in _checked(case)]
        problem = None
        if case.kink:
            bad = [n for n, S, E in zip(names, got, expected) if S is None or diagnose.differs(S, E, 1e-10).any()]
            if bad:
                problem = f"at a kink (ties or zeros) the gradient of {', '.join(bad)} breaks the reference's rule"
        else:
            bad = [n for n, S, E in zip(names, got, expected) if S is None or diagnose.differs(S, E).any()]
            try:
                gradcheck(case.fn, *case.inputs, seed=0, elementwise=False)
            except GradcheckError:
                problem = ("gradcheck: finite differences disagree with the gradient of "
                           + (", ".join(bad) or "the inputs"))
            if problem is None and case.linear:
                try:                                               # <A x, y> == <x, A^T y>, no step size
                    adjoint_check(case.fn, case.inputs[0].shape)
                except GradcheckError:
                    problem = "adjoint_check: <A x, y> != <x, A^T y>: the backward is not the forward's transpose"
    if problem is None:
        return []
    hints = [h for n, S, E in zip(names, got, expected) for h in _hints(case, n, S, E, first=n == names[0])]
    return [problem] + [f"hint: {h}" for h in hints]


def _hints(case: Case, name: str, S: Optional[numpy.ndarray], E: numpy.ndarray, first: bool) -> List[str]:
    """What the numbers of one input's gradient say about the mistake (the masks describe input 0)."""
    if S is None:
        return [f"{name}: no gradient came back (backward returned None for it): forgot to return it"] \
            if E.any() else []
    wrong = diagnose.differs(S, E)
    if not wrong.any():
        return []
    if not S.any():
        return [f"{name}: the gradient is all zeros: it was never computed, or not returned"]
    ratio = diagnose.constant_ratio(S, E)
    if ratio is not None:
        named = diagnose.name_factor(ratio, case.factors)
        return [f"{name}: {ratio:.6g} times the right gradient everywhere: a missing or extra constant factor "
                f"(a mean's 1/N, a scale)" + (f"; it equals {named}" if named else "")]
    if case.channel_axes and diagnose.constant_per_channel(S, E, case.channel_axes):
        return [f"{name}: off by the same amount for every value of a channel: a missing (or extra) mean term, "
                f"such as - mean(dout)"]
    masks = case.masks if first else {}
    if diagnose.inside(wrong, masks.get("zero")):
        return [f"{name}: wrong only where x == 0: the kink rule ReLU'(0) = 0 (pass the gradient only where x > 0)"]
    if diagnose.inside(wrong, masks.get("tie")):
        where = ("sent to every tied maximum" if S.sum() > E.sum() + 1e-9 * abs(E).sum()
                 else "sent to another of the tied maxima")
        return [f"{name}: wrong only at ties, {where}: each window's gradient goes to ONE element, its FIRST "
                f"maximum in row-major order (strict >)"]
    if diagnose.inside(wrong, masks.get("overlap")):
        return [f"{name}: wrong only where windows overlap: a missing accumulation: the gradients of overlapping "
                f"windows must be ADDED (+=), not assigned"]
    if diagnose.moved_around(S, E):
        return [f"{name}: the right numbers in the wrong places: a transpose, or a reshape in the wrong axis order"]
    k = int(numpy.argmax(numpy.abs(S - E)))
    index = tuple(int(j) for j in numpy.unravel_index(k, E.shape))
    return [f"{name}: wrong at {int(wrong.sum())} of {wrong.size} elements; the worst at {index}: "
            f"got {S.flat[k]:.6g}, expected {E.flat[k]:.6g}"]


def grade_task(root: Path, task: Task) -> TaskResult:
    """Every configuration of one task, with the student's class in place of the reference's."""
    try:
        student = load_student_class(root, task)
    except Exception as err:                                   # a syntax error, a missing name: report it
        return TaskResult(task.name, "failed", 0, ["(loading)"],
                          [f"{task.name}: FAILED: could not load the student's {task.path}: "
                           f"{type(err).__name__}: {err}"])
    configs = task.configs()
    reports, attempted = [], False
    for config in configs:
        try:
            reports.append(check_config(task, config, student))
            attempted = True
        except NotAttempted as err:
            reports.append([f"backward raised NotImplementedError: {err}"])
    if not attempted:
        return TaskResult(task.name, "not attempted", len(configs), [c.label for c in configs],
                          [f"{task.name}: not attempted (its backward still raises NotImplementedError)"])
    failed = [bool(r) for r in reports]
    if not any(failed):
        return TaskResult(task.name, "passed", len(configs), [],
                          [f"{task.name}: passed ({len(configs)} configurations)"])
    first = failed.index(True)
    lines = [f"{task.name}: FAILED ({sum(failed)} of {len(configs)} configurations)",
             f"  smallest failing configuration: {configs[first].label}"]
    lines += ["  " + line for line in reports[first]]
    feature = diagnose.only_when(failed, [c.features for c in configs], task.only)
    if feature is not None:
        lines.append(f"  hint: it fails only with {feature}: {task.only[feature]}")
    lines.append(f"  the formula: {task.formula}  (derivation: {task.page})")
    return TaskResult(task.name, "failed", len(configs), [c.label for c, f in zip(configs, failed) if f], lines)


def grade(root: Path, tasks: Sequence[Task], json_path: Optional[Path] = None, echo: bool = True) -> List[TaskResult]:
    """Grade each task of the student copy at ``root``; print each report; write ``results.json``."""
    reference = Path(importlib.import_module("minires").__file__).resolve().parent
    if reference == (Path(root) / "minires").resolve():
        raise ValueError(f"the reference minires imported here is the student copy {root} itself, so it would "
                         f"be graded against itself; run the grader from outside that folder")
    start = time.perf_counter()
    results = []
    for task in tasks:
        result = grade_task(Path(root), task)
        results.append(result)
        if echo:
            print(result.text(), flush=True)
    if echo:
        print(f"{sum(r.passed for r in results)} of {len(results)} exercises passed")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(gradescope(results, time.perf_counter() - start), indent=2) + "\n")
    return results


def gradescope(results: Sequence[TaskResult], seconds: float) -> dict:
    """Gradescope's ``results.json``: one test per exercise, one point each."""
    tests = [{"name": r.name, "score": 1.0 if r.passed else 0.0, "max_score": 1.0, "output": r.text(),
              "status": "passed" if r.passed else "failed", "visibility": "visible"} for r in results]
    return {"score": float(sum(t["score"] for t in tests)), "execution_time": round(seconds, 2),
            "output": f"{sum(r.passed for r in results)} of {len(results)} exercises passed",
            "visibility": "visible", "stdout_visibility": "visible", "tests": tests}
