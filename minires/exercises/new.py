"""``minires exercises new DIR``: a student copy of minires with the chosen backward bodies stubbed.

The copy is the whole ``minires/`` source tree. In it, the body between ``# BEGIN SOLUTION name``
and ``# END SOLUTION`` of each chosen exercise becomes a stub that raises ``NotImplementedError``
with a hint: what must come out (the gradients and their shapes), the formula's name, and the
derivation page. The markers stay, so the student writes the answer in their place, and the
grader (``minires exercises grade DIR``) finds it there. The copy is built in a temporary folder
next to DIR and renamed into place at the end, so a failure never leaves half a copy behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import List, Sequence

import minires
from minires.exercises import markers
from minires.exercises.tasks import Task


def stub(task: Task) -> List[str]:
    """The lines that replace a solution: a hint, then the NotImplementedError that carries it."""
    message = (f"{task.name} backward is your exercise: return {task.returns}. Formula: {task.formula}. "
               f"Derivation: {task.page}")
    parts = textwrap.wrap(message, 80, drop_whitespace=False)          # short source lines, same text
    return (["# Your code: the gradients from dout and what forward kept on self.",
             "raise NotImplementedError("]
            + [f"    {part!r}" for part in parts[:-1]] + [f"    {parts[-1]!r})"])


def readme(tasks: Sequence[Task]) -> str:
    rows = "\n".join(f"| {t.name} | minires/{t.path} | {t.cls}.backward | {t.page} |" for t in tasks)
    ops = ",".join(t.name for t in tasks)
    return f"""# minires exercises: backward passes

Each exercise below is the backward pass of one operation. Its body in the file named here is a
stub that raises NotImplementedError with a hint; write your solution between its
`# BEGIN SOLUTION` and `# END SOLUTION` lines. The forward pass right above it shows what it kept
for you on `self`; change nothing else.

| exercise | file | where | derivation |
|---|---|---|---|
{rows}

Grade your work, exercise by exercise (each one is checked on its own, with every other
operation taken from the reference solution):

    minires exercises grade . --ops {ops}

A failing exercise shows its smallest failing configuration and a hint about the likely mistake.
To try your code by hand, run Python from this folder: `import minires` then imports this copy.
"""


def _ignore(folder: str, names: List[str]) -> List[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def new_copy(dest: Path, tasks: Sequence[Task]) -> Path:
    """Write the student copy into ``dest`` (absent or empty); returns ``dest``."""
    dest = Path(dest).resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} already exists and is not empty; give a new folder (the copy never "
                              f"overwrites anything)")
    source = Path(minires.__file__).resolve().parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))   # same disk: the rename is atomic
    try:
        shutil.copytree(source, build / "minires", ignore=_ignore)
        for task in tasks:
            path = build / "minires" / task.path
            path.write_text(markers.replace(path.read_text(), task.name, stub(task), str(path)))
        (build / "README.md").write_text(readme(tasks))
        umask = os.umask(0)
        os.umask(umask)
        build.chmod(0o777 & ~umask)                                            # mkdtemp's is private (0o700)
        if dest.exists():
            dest.rmdir()                                                       # empty, as checked above
        os.replace(build, dest)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return dest
