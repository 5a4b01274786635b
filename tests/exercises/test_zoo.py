"""The grader is itself tested: it must reject each known-wrong backward with the right hint."""
from __future__ import annotations

import pytest

from minires.exercises import grade_task
from minires.exercises.tasks import TASKS

from exercises.zoo import ZOO, write_student_file


@pytest.mark.parametrize("entry", sorted(ZOO))
def test_the_grader_rejects_each_known_wrong_backward_with_its_hint(entry, tmp_path):
    exercise, edits, hint = ZOO[entry]
    result = grade_task(write_student_file(tmp_path, exercise, edits), TASKS[exercise])
    assert result.status == "failed", result.text()
    assert hint in result.text(), result.text()
    assert "smallest failing configuration: " in result.text()


def test_the_smallest_failing_configuration_is_the_first_that_fails(tmp_path):
    exercise, edits, _ = ZOO["conv2d without the group loop"]
    result = grade_task(write_student_file(tmp_path, exercise, edits), TASKS[exercise])
    assert result.failed == [c.label for c in TASKS["conv2d"].configs() if "groups > 1" in c.features]
    assert f"smallest failing configuration: {result.failed[0]}" in result.text()
