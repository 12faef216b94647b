"""Every command's ``--help`` shows each option's help text whole: Rich reads ``[...]`` as
markup and silently drops it unless escaped, which once hid train's documented defaults."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from noisyclean.cli import app

runner = CliRunner()
COMMAND = typer.main.get_command(app)  # the group of subcommands


def _flat(text: str) -> str:
    """Text with Rich's box characters removed and whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("name", sorted(COMMAND.commands))
def test_bracketed_help_survives_rendering(name: str) -> None:
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    bracketed = 0
    for param in COMMAND.commands[name].params:
        text = " ".join((getattr(param, "help", None) or "").replace("\\[", "[").split())
        for segment in re.findall(r"\[[^\]]*\]", text):
            bracketed += 1
            assert segment in shown, f"{name} {param.name}: {segment!r} missing from --help"
    if name in ("scan", "train"):
        assert bracketed >= 5  # the defaults documented in brackets are really checked


def test_help_before_the_fix_would_fail() -> None:
    """The check above sees markup loss: an unescaped bracket disappears from the output."""
    demo = typer.Typer()

    @demo.command()
    def run(x: int = typer.Option(0, help="An option [default, on when asked].")) -> None:
        """Demo."""

    result = runner.invoke(demo, ["--help"], env={"COLUMNS": "1000"})
    assert "[default, on when asked]" not in _flat(result.output)


@pytest.mark.parametrize("name", sorted(COMMAND.commands))
def test_command_summary_is_one_line_in_the_listing(name: str) -> None:
    """``noisyclean --help`` lists each command's summary on one line of a wide terminal
    (a docstring's line break used to split scan's summary mid-sentence there)."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    rows = [_flat(line) for line in result.output.splitlines()]
    row = next(r for r in rows if r.split(" ", 1)[0] == name)
    summary = COMMAND.commands[name].get_short_help_str(limit=10_000)
    assert row == f"{name} {' '.join(summary.split())}"
