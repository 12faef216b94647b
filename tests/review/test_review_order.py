"""The review commands' shared ranking (``review_order``), the clean probability as people
read it (``clean_prob_text``), and ``report --no-images`` for an output folder without its
dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.outputs.table import clean_prob_text, review_order

from .conftest import Scanned, clear_failure, make_outputs, moved_scan, write_image
from .test_report import Page

runner = CliRunner()

#: (path, clean_prob, loss): three ties at 0 with different losses, a tie at 0 and one loss
#: (broken by path), and two rows above; the scan's ranking is the order of ``RANKED``.
ROWS = [
    ("b/4.png", 0.0, 5.0),
    ("a/1.png", 0.0, 3.0),
    ("a/3.png", 0.0, 2.0),
    ("b/2.png", 0.0, 2.0),
    ("a/2.png", 1e-12, 9.0),
    ("b/1.png", 0.2, 1.0),
]
RANKED = [p for p, _, _ in ROWS]


def _tied_scan(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Hand-made outputs for :data:`ROWS` (every row flagged), with ``scores.csv`` sorted
    by path as a spreadsheet user might leave it."""
    data = tmp_path / "images"
    for i, (path, _, _) in enumerate(ROWS):
        write_image(data / path, 30 * i)
    rows = [{"path": p, "label": p[0], "action": "review", "clean_prob": c, "loss": loss}
            for p, c, loss in ROWS]
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    scores = pd.read_csv(out / "scores.csv", dtype={"path": str, "label": str})
    scores.sort_values("path").to_csv(out / "scores.csv", index=False)
    return out, scores


def test_review_order_breaks_ties_by_loss_then_path() -> None:
    table = pd.DataFrame(ROWS, columns=["path", "clean_prob", "loss"]).sample(
        frac=1.0, random_state=3)
    assert review_order(table)["path"].tolist() == RANKED
    # whatever order the rows come in
    assert review_order(table.sort_values("path"))["path"].tolist() == RANKED


def test_clean_prob_text() -> None:
    assert clean_prob_text(0.0) == "0"
    assert clean_prob_text(8.846910692402477e-11) == "8.8e-11"
    assert clean_prob_text(1e-60) == "1.0e-60"
    assert clean_prob_text(0.0004) == "4.0e-04"
    assert clean_prob_text(0.001) == "0.001"
    assert clean_prob_text(0.73449) == "0.734"
    assert clean_prob_text(1.0) == "1.000"


def test_a_re_sorted_table_gives_the_scan_s_ranking_everywhere(tmp_path: Path) -> None:
    """``scores.csv`` re-sorted by path, four rows tied at clean_prob 0: export --top, the
    CSV export, the report's gallery and evaluate's top rows all take the scan's order."""
    out, _ = _tied_scan(tmp_path)
    sheet = tmp_path / "top.csv"
    result = runner.invoke(app, ["export", str(out), "-f", "csv", "--top", "3", "-o",
                                 str(sheet)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(sheet, dtype=str)["path"].tolist() == RANKED[:3]
    every = tmp_path / "all.csv"
    result = runner.invoke(app, ["export", str(out), "-f", "csv", "-o", str(every)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(every, dtype=str)["path"].tolist() == RANKED

    tasks = tmp_path / "tasks.json"
    result = runner.invoke(app, ["export", str(out), "--top", "2", "-o", str(tasks)])
    assert result.exit_code == 0, result.output
    loaded = json.loads(tasks.read_text(encoding="utf-8"))
    assert [t["data"]["path"] for t in loaded] == RANKED[:2]

    report = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(out), "--top", "3", "-o", str(report)])
    assert result.exit_code == 0, result.output
    page = Page(report.read_text(encoding="utf-8"))
    # grouped by given class, the scan's order inside each group
    assert [a["data-path"] for a in page.items()] == ["a/1.png", "a/3.png", "b/4.png"]
    result = runner.invoke(app, ["report", str(out), "-o", str(report)])
    assert result.exit_code == 0, result.output
    text = Page(report.read_text(encoding="utf-8")).all_text()
    assert "clean_prob 1.0e-12" in text and "clean_prob 0.200" in text
    assert "clean_prob 0 " in text

    # evaluate's top rows at the estimate: the three most suspicious rows
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summary["estimated_wrong_labels"] = {"count": 3, "rate": 0.5}
    (out / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    truth = tmp_path / "truth.csv"
    wrong = set(RANKED[:3])
    pd.DataFrame({"path": RANKED,
                  "label": [("b" if p[0] == "a" else "a") if p in wrong else p[0]
                            for p in RANKED]}).to_csv(truth, index=False)
    target = tmp_path / "evaluation.json"
    result = runner.invoke(app, ["evaluate", str(out), "--truth", str(truth), "-o",
                                 str(target)])
    assert result.exit_code == 0, result.output
    top = json.loads(target.read_text(encoding="utf-8"))["top_estimated"]
    assert top == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_report_without_images_needs_no_dataset(scanned: Scanned, tmp_path: Path) -> None:
    """Only the output folder at hand: the report asks for --data and names --no-images;
    with --no-images it is written, counts and the gallery's text, no thumbnail."""
    out, old, moved = moved_scan(scanned, tmp_path)
    shutil.rmtree(moved)
    clear_failure(runner.invoke(app, ["report", str(out)]), str(old), "--data NEW_FOLDER",
                  "--no-images")
    result = runner.invoke(app, ["report", str(out), "--no-images"])
    assert result.exit_code == 0, result.output
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    scores = scanned.scores()
    flagged = scores[scores["is_noisy"]]
    assert len(page.items()) == len(flagged) > 0
    assert page.thumbs() == []
    assert "Images left out (--no-images)." in page.all_text()
    assert "Flagged and estimated wrong per class" in page.all_text()
    # export and apply still need the images
    clear_failure(runner.invoke(app, ["export", str(out), "-o", str(tmp_path / "t.json")]),
                  "--data NEW_FOLDER")
