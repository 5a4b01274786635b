"""docs/gradcheck.md teaches the toolkit with a worked example: every line of it must run."""
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "gradcheck.md"


def test_the_worked_example_in_docs_gradcheck_runs(capsys):
    """Every ```python block of the page, run in order, then the tests it defines."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "docs_gradcheck"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"<docs/gradcheck.md, python block {k}>", "exec"), namespace)
    namespace["test_softplus_gradcheck"]()
    namespace["test_softplus_float32_agrees_with_float64"]()
    printed = capsys.readouterr().out
    # the planted extra factor beta = 2 is caught, named, and shows as a ratio of 2
    assert re.search(r"input 0 \(shape \(3, 4\)\), worst element \(\d, \d\): analytic \S+, numeric \S+, "
                     r"relative error 0.5 ", printed), printed
    assert "finite differences need float64" in printed

