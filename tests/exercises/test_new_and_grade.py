"""``minires exercises new`` and ``grade`` end to end: the full solution passes, a stub is "not attempted",
one broken operation fails one task only, and the CLI's exit status and results.json follow."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import minires
from minires.cli import build_parser
from minires.exercises import TASKS, grade, new_copy, select
from minires.exercises import cli as exercises_cli
from minires.exercises.markers import MarkerError, find_regions, replace

from exercises.zoo import ZOO, write_student_file


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict:
    """Two student copies made once: every exercise stubbed, and none (the full solution)."""
    root = tmp_path_factory.mktemp("copies")
    return {"stub": new_copy(root / "stub", select()), "full": new_copy(root / "full", [])}


def test_every_exercise_has_its_markers_in_the_package():
    for task in TASKS.values():
        source = (Path(minires.__file__).parent / task.path).read_text()
        region = find_regions(source, task.path)[task.name]
        assert "def backward(" in source.split("\n")[region.begin - 1], f"{task.name}: markers not at backward's top"


def test_the_full_solution_passes_every_exercise(copies, capsys):
    results = grade(copies["full"], select())
    assert [r.status for r in results] == ["passed"] * len(TASKS)
    assert f"{len(TASKS)} of {len(TASKS)} exercises passed" in capsys.readouterr().out


def test_a_stub_copy_is_not_attempted_in_every_exercise(copies):
    results = grade(copies["stub"], select(), echo=False)
    assert [r.status for r in results] == ["not attempted"] * len(TASKS)


def test_the_stub_carries_the_hint_and_raises_it(copies):
    text = (copies["stub"] / "minires" / "functional" / "conv.py").read_text()
    body = text.split("# BEGIN SOLUTION conv2d")[1].split("# END SOLUTION")[0]
    assert "raise NotImplementedError(" in body and "dx of shape x.shape" in body
    assert "docs/derivations/conv2d.md" in body and "col2im" in body
    assert (copies["stub"] / "README.md").read_text().count("| conv2d |") == 1
    assert not list(copies["stub"].rglob("__pycache__"))


def test_only_the_chosen_exercises_are_stubbed(tmp_path):
    copy = new_copy(tmp_path / "one", select("conv2d"))
    assert "NotImplementedError(\n" in (copy / "minires/functional/conv.py").read_text()
    assert (copy / "minires/functional/pooling.py").read_text() == \
        (Path(minires.__file__).parent / "functional/pooling.py").read_text()


def test_new_refuses_a_folder_that_is_not_empty_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        new_copy(tmp_path / "taken", select("relu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert new_copy(tmp_path / "empty", []) == (tmp_path / "empty").resolve()   # an empty folder is fine


def test_one_broken_operation_fails_one_exercise_only(copies, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(copies["full"], copy)
    for entry in ("conv2d without the group loop", "max_pool2d to the last maximum"):
        exercise, edits, _ = ZOO[entry]
        write_student_file(copy, exercise, edits)
    failed = [r.name for r in grade(copy, select(), echo=False) if not r.passed]
    assert failed == ["conv2d", "max_pool2d"]                    # avg_pool2d shares max_pool2d's file


def test_a_file_that_does_not_load_fails_its_exercise_with_the_error(tmp_path):
    write_student_file(tmp_path, "relu", [("return (dout * self.mask,)", "return (dout * self.mask,")])
    result = grade(tmp_path, select("relu"), echo=False)[0]
    assert result.status == "failed" and "SyntaxError" in result.text()


def test_the_cli_writes_gradescope_results_and_exits_1_on_a_failure(copies, tmp_path, capsys):
    exercise, edits, _ = ZOO["relu with ReLU'(0) = 1"]
    write_student_file(tmp_path / "copy", exercise, edits)
    args = build_parser().parse_args(["exercises", "grade", str(tmp_path / "copy"), "--ops", "relu",
                                      "--json", str(tmp_path / "results.json")])
    assert exercises_cli.run(args) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 0.0
    assert [(t["name"], t["score"], t["max_score"], t["status"]) for t in results["tests"]] == \
        [("relu", 0.0, 1.0, "failed")]
    assert "ReLU'(0) = 0" in results["tests"][0]["output"]
    args = build_parser().parse_args(["exercises", "grade", str(copies["full"]), "--ops", "relu,conv2d"])
    assert exercises_cli.run(args) == 0
    assert "2 of 2 exercises passed" in capsys.readouterr().out


def test_the_cli_refuses_unknown_exercises_and_missing_copies(tmp_path, capsys):
    assert exercises_cli.run(build_parser().parse_args(["exercises", "new", str(tmp_path / "x"), "--ops", "conv"])) == 2
    assert "unknown exercise(s) conv" in capsys.readouterr().err
    assert exercises_cli.run(build_parser().parse_args(["exercises", "grade", str(tmp_path)])) == 2
    assert "holds no minires/ folder" in capsys.readouterr().err


def test_markers_that_do_not_pair_up_are_refused():
    with pytest.raises(MarkerError, match="has no '# END SOLUTION'"):
        find_regions("    # BEGIN SOLUTION relu\n    return x\n")
    with pytest.raises(MarkerError, match="without a '# BEGIN SOLUTION name'"):
        find_regions("    return x\n    # END SOLUTION\n")
    source = "def f():\n    # BEGIN SOLUTION f\n    return 1\n    # END SOLUTION\n"
    assert replace(source, "f", ["raise NotImplementedError('f')"]) == \
        "def f():\n    # BEGIN SOLUTION f\n    raise NotImplementedError('f')\n    # END SOLUTION\n"
