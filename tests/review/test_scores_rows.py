"""scores.csv as a spreadsheet may leave it: blank rows are no images, and a table with no
rows at all is one clear error for every command, not numpy warnings on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from noisyclean.cli import app

from .conftest import clear_failure, make_outputs, write_image

runner = CliRunner()


def _outputs(base: Path) -> Path:
    data = base / "data"
    spec = [("a/1.png", "a", "keep", 0.9), ("a/2.png", "a", "review", 0.1),
            ("b/3.png", "b", "keep", 0.8), ("b/4.png", "b", "review", 0.2)]
    rows = []
    for i, (path, label, action, prob) in enumerate(spec):
        write_image(data / path, i)
        rows.append({"path": path, "label": label, "action": action, "clean_prob": prob})
    return make_outputs(base / "out", data, rows, ["a", "b"])


def test_blank_spreadsheet_rows_are_left_out(tmp_path: Path) -> None:
    """A row of empty cells (``,,,,,,,,,,,``; one of spaces too) in scores.csv used to fail
    every command with "column clean_prob has a non-numeric value on row 3"."""
    out = _outputs(tmp_path)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\na/1.png,a\na/2.png,b\nb/3.png,b\nb/4.png,b\n")
    lines = (out / "scores.csv").read_text().splitlines()
    width = lines[0].count(",")
    lines.insert(2, "," * width)
    lines.append(" ," * width + " ")
    (out / "scores.csv").write_text("\n".join(lines) + "\n")
    for args in (["report", str(out)], ["export", str(out), "--format", "csv"],
                 ["evaluate", str(out), "--truth", str(truth)],
                 ["apply", str(out), "--to", str(tmp_path / "clean")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    metrics = json.loads((out / "evaluation.json").read_text())
    assert (metrics["n"], metrics["n_wrong"], metrics["precision"]) == (4, 1, 0.5)
    assert len((out / "review.csv").read_text().splitlines()) == 1 + 2
    # a row with something in it is still checked, and named by its line in the file
    lines.insert(4, "b/5.png,b,x,False,0.1,b,0.9,b,keep,0.05,1,0.1")
    (out / "scores.csv").write_text("\n".join(lines) + "\n")
    clear_failure(runner.invoke(app, ["report", str(out)]),
                  "column clean_prob has a non-numeric value on row 5")


@pytest.mark.parametrize("blank", ["", ",,,,\n"], ids=["header-only", "blank-rows-only"])
@pytest.mark.parametrize("command", ["report", "export", "apply", "evaluate"])
def test_a_header_only_table_is_one_clear_error(
    tmp_path: Path, command: str, blank: str
) -> None:
    """A scores.csv with its header and no row (or only blank ones): report and evaluate
    used to print numpy's RuntimeWarnings (a histogram and a mean of nothing) and write
    empty results."""
    out = _outputs(tmp_path)
    header = (out / "scores.csv").read_text().splitlines()[0]
    (out / "scores.csv").write_text(header + "\n" + blank)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\na/1.png,a\n")
    extra = {"report": [], "export": ["--format", "csv"], "apply": ["--to", tmp_path / "c"],
             "evaluate": ["--truth", truth]}[command]
    run = subprocess.run(
        [sys.executable, "-c", "from noisyclean.cli import app; app()", command, str(out),
         *map(str, extra)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        f"error: {out / 'scores.csv'} has no rows, only a header: give the --out folder of "
        "a finished `noisyclean scan`"]
    assert not any(out.glob("*.html")) and not (out / "evaluation.json").exists()
