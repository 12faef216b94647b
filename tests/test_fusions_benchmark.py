"""``benchmarks/fusions.py`` rescores a real scan's saved predictions with every fusion and
reproduces the scan's own table, so its figures in RESULTS.md can be trusted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from noisyclean.cli import app

from .conftest import ROOT, write_digits_folder


def test_fusions_benchmark_reproduces_the_scan_and_scores_every_fusion(tmp_path: Path) -> None:
    folder = tmp_path / "noisy"
    truth = write_digits_folder(folder / "images", per_class=60, flip=18)
    pd.DataFrame({"path": list(truth), "label": list(truth.values())}).to_csv(
        folder / "truth.csv", index=False)
    result = CliRunner().invoke(app, [
        "scan", str(folder / "images"), "--out", str(folder / "scan"), "--epochs", "3",
        "--width", "8", "--batch-size", "16", "--quiet", "--save-probs"])
    assert result.exit_code == 0, result.output
    rows_json = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fusions.py"), str(folder),
         "--json", str(rows_json)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    assert "| noisy |" in done.stdout
    (row,) = json.loads(rows_json.read_text())
    assert row["fusion"] == "hybrid" and row["same"] is True
    # hybrid flags minmax's count; the scan's own F1 is the one rescored
    assert row["hybrid"]["flags"] == row["minmax"]["flags"]
    table = pd.read_csv(folder / "scan" / "scores.csv", dtype=str, keep_default_na=False)
    flagged = table["is_noisy"].str.lower().eq("true")
    wrong = table["path"].map(truth) != table["label"]
    tp = int((flagged & wrong).sum())
    f1 = 2 * tp / (int(flagged.sum()) + int(wrong.sum()))
    assert abs(row["hybrid"]["f1"] - f1) < 1e-12
    assert int(flagged.sum()) == row["hybrid"]["flags"]
