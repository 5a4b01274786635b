"""Every `minires train` command shown in the README and the guide parses and makes valid settings.

The recipes train for minutes to hours on data that is not here, so these commands are not run to the
end: each is parsed by the real command-line parser and its settings checked as `minires train` checks
them before it starts (a folder or file it names is made empty first, in a scratch directory).
"""
import dataclasses
import re
import shlex
from pathlib import Path

import pytest

import minires
from minires.cli import build_parser, train_settings
from minires.recipes import check

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))


def commands():
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", (ROOT / page).read_text(), re.DOTALL):
            for line in block.splitlines():
                for part in line.split("&&"):
                    words = shlex.split(part)
                    if words[:2] == ["minires", "train"]:
                        yield pytest.param(words[1:], id=f"{page}: {part.strip()}")


@pytest.mark.parametrize("argv", list(commands()))
def test_each_documented_train_command_parses_into_valid_settings(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(argv)
    if args.resume:
        return                                      # its settings come from a run folder: tested in test_train.py
    settings, out, resume = train_settings(args)
    if settings.device.startswith("cuda") and not minires.cuda_is_available():
        settings = dataclasses.replace(settings, device="cpu")   # a GPU command: everything else is checked
    if settings.data_dir:
        Path(settings.data_dir).mkdir(parents=True)
    if settings.weights:
        Path(settings.weights).touch()
    check(settings)


def test_the_readme_and_the_guide_show_the_main_job():
    assert "pip install . && minires train" in (ROOT / "README.md").read_text()
    assert len(list(commands())) >= 8
