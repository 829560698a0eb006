"""The README tells the truth about the command line: every ``python -m pipeline …`` command it shows
exists, and every option it names for a command is one that command accepts."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.settings import PROJECT_ROOT

GROUPS = {"alerts", "compare", "profile"}  # commands whose next word is a sub-command
_COMMAND = re.compile(r"python -m pipeline ([a-z][a-z-]*)((?: [a-z][a-z-]*)?)([^`|\n#]*)")


def documented() -> dict[tuple[str, ...], set[str]]:
    """(command, sub-command) → the options the README shows with it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for name, sub, rest in _COMMAND.findall((PROJECT_ROOT / "README.md").read_text(encoding="utf-8")):
        words = (name, sub.strip()) if name in GROUPS and sub.strip() else (name,)
        tail = rest if len(words) == 2 or not sub else sub + rest
        found.setdefault(words, set()).update(re.findall(r"(--[a-z][a-z-]*|-o\b)", tail))
    return found


def test_every_command_the_readme_shows_exists_with_the_options_it_names() -> None:
    commands = documented()
    assert ("demo",) in commands and ("compare", "story") in commands and ("standalone",) in commands
    runner = CliRunner()
    for words, options in sorted(commands.items()):
        result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exit_code == 0, f"README shows `python -m pipeline {' '.join(words)}`: {result.output}"
        for option in options:
            assert option in result.output, f"README shows {option} for `{' '.join(words)}`; --help has no such option"
