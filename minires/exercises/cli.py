"""``minires exercises new DIR`` and ``minires exercises grade DIR``: the classroom's two commands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minires.exercises.tasks import TASKS, select


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``exercises new|grade`` to the ``minires`` command's subcommands."""
    exercises = subparsers.add_parser(
        "exercises", help="classroom exercises: a student copy with stubbed backward passes, and its grader",
        description=f"Exercises: {', '.join(TASKS)}.")
    sub = exercises.add_subparsers(dest="exercises_command", required=True)
    new = sub.add_parser("new", help="write a student copy of minires with the chosen backward passes stubbed")
    new.add_argument("dir", help="a new (or empty) folder for the copy")
    new.add_argument("--ops", default="", help="comma-separated exercises, e.g. conv2d,batch_norm (default: all)")
    grade = sub.add_parser("grade", help="grade a student copy, exercise by exercise")
    grade.add_argument("dir", help="the student copy (the folder that `minires exercises new` wrote)")
    grade.add_argument("--ops", default="", help="comma-separated exercises to grade (default: all)")
    grade.add_argument("--json", metavar="RESULTS_JSON", help="also write Gradescope's results.json here")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 when done (every graded exercise passed), 1 when one failed, 2 for a usage error."""
    from minires.exercises.grade import grade
    from minires.exercises.new import new_copy

    try:
        tasks = select(args.ops)
        if args.exercises_command == "new":
            new_copy(Path(args.dir), tasks)
            print(f"wrote a student copy to {args.dir} with {len(tasks)} exercise(s): "
                  f"{', '.join(t.name for t in tasks)}; its README.md says what to do")
            return 0
        if not (Path(args.dir) / "minires").is_dir():
            raise FileNotFoundError(f"{args.dir} holds no minires/ folder; give the folder that "
                                    f"`minires exercises new` wrote")
        results = grade(Path(args.dir), tasks, Path(args.json) if args.json else None)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"minires exercises: error: {err}", file=sys.stderr)
        return 2
    return 0 if all(r.passed for r in results) else 1
