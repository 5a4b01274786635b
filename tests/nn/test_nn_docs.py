"""docs/nn.md runs as written, and prints what it says it prints."""
import contextlib
import io
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "nn.md"


def test_the_examples_in_docs_nn_run_and_print_what_the_page_shows():
    text = DOC.read_text()
    blocks = [part.split("```")[0] for part in text.split("```python\n")[1:]]
    shown = text.split("```text\n")[1].split("```")[0]
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], str(DOC), "exec"), namespace)         # noqa: S102 - our own docs
    assert printed.getvalue() == shown
    for block in blocks[1:]:
        exec(compile(block, str(DOC), "exec"), namespace)             # noqa: S102
    assert namespace["predictions"].shape == (2,)
