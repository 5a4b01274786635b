"""Classroom exercises: student copies with stubbed backward passes, and the grader that checks them.

- ``new_copy(dest, tasks)`` (``minires exercises new DIR``): a copy of minires in which each chosen
  backward body, fenced by ``# BEGIN SOLUTION name`` / ``# END SOLUTION``, is a stub with a hint;
- ``grade(dir, tasks)`` (``minires exercises grade DIR``): each exercise checked in isolation, with
  the gradient-check toolkit, and a hint read from the numbers for each failure;
- ``TASKS``: the exercises, their configurations and hints. Tutorial: docs/exercises.md.
"""
from minires.exercises.grade import TaskResult, grade, grade_task
from minires.exercises.new import new_copy
from minires.exercises.tasks import TASKS, Task, select

__all__ = ["new_copy", "grade", "grade_task", "TaskResult", "TASKS", "Task", "select"]
