"""A reviewer's sheet and the run's own files when things go wrong: a review sheet saved in
another encoding, one filled in while a run trains, a write that fails halfway, and the
``--labels`` manifest named from another folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import noisyclean.scanning as scanning
from noisyclean.config import ScanConfig
from noisyclean.outputs.write import filled_review_rows, remove_stale_outputs

from ..conftest import write_digits_folder
from .conftest import Scanned, clear_failure, runner

FAST = ["--epochs", "1", "--width", "4", "--quiet", "--no-cache"]


def _filled_sheet(scanned: Scanned, out: Path, encoding: str) -> bytes:
    """The scan's review sheet with one decision and a comment written with accents, saved
    in ``encoding`` as a spreadsheet may save it."""
    shutil.copytree(scanned.out, out)
    assert runner.invoke(from_app(), ["export", str(out), "-f", "csv"]).exit_code == 0
    sheet = pd.read_csv(out / "review.csv", dtype=str, keep_default_na=False)
    sheet.loc[0, "decision"] = "keep"
    sheet.loc[0, "comment"] = "déjà vu"
    sheet.to_csv(out / "review.csv", index=False, encoding=encoding)
    return (out / "review.csv").read_bytes()


def from_app():  # noqa: ANN201 - the Typer app, imported late as the other review tests do
    from noisyclean.cli import app

    return app


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_a_sheet_in_another_encoding_is_neither_removed_nor_overwritten(
    scanned: Scanned, tmp_path: Path, encoding: str
) -> None:
    out = tmp_path / "out"
    saved = _filled_sheet(scanned, out, encoding)
    assert filled_review_rows(out / "review.csv") is None
    clear_failure(runner.invoke(from_app(), ["scan", str(scanned.root), "--out", str(out),
                                             *FAST]),
                  "cannot be read as a UTF-8 CSV file", "may hold a reviewer's work",
                  "move it out")
    clear_failure(runner.invoke(from_app(), ["export", str(out), "-f", "csv"]),
                  "cannot be read as a UTF-8 CSV file", "--force")
    assert (out / "review.csv").read_bytes() == saved
    forced = runner.invoke(from_app(), ["export", str(out), "-f", "csv", "--force"])
    assert forced.exit_code == 0 and (out / "review.csv").read_bytes() != saved


def test_an_empty_sheet_is_no_reviewers_work(tmp_path: Path) -> None:
    (tmp_path / "review.csv").write_bytes(b"")
    assert filled_review_rows(tmp_path / "review.csv") == 0
    assert filled_review_rows(tmp_path / "missing.csv") == 0


def test_a_sheet_filled_in_while_the_run_trained_is_kept(
    scanned: Scanned, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    saved = _filled_sheet(scanned, out, "utf-8")
    (out / "report.html").write_text("old")
    warned: list[str] = []
    removed = remove_stale_outputs(out, warn=warned.append)
    assert "report.html" in removed and "review.csv" not in removed
    assert (out / "review.csv").read_bytes() == saved
    assert len(warned) == 1 and "filled in while this run ran: kept" in warned[0]
    assert "(1 row(s) with a decision or a comment)" in warned[0]


def test_a_write_that_fails_halfway_leaves_no_summary_of_other_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new scores.csv was written next to the earlier run's summary.json, which the
    review tools then read as its summary."""
    data = tmp_path / "data"
    write_digits_folder(data, per_class=12)
    out = tmp_path / "out"
    config = ScanConfig(data=data, out=out, epochs=1, width=4, use_cache=False)
    scanning.scan(config)
    assert (out / "summary.json").is_file()
    real = scanning.write_csv

    def full_disk(frame: pd.DataFrame, path: Path) -> None:
        if path.name == "relabeled.csv":
            raise OSError(28, "No space left on device")
        real(frame, path)

    monkeypatch.setattr(scanning, "write_csv", full_disk)
    with pytest.raises(OSError):
        scanning.scan(ScanConfig(data=data, out=out, epochs=1, width=4, use_cache=False,
                                 seed=5))
    assert (out / "scores.csv").is_file() and not (out / "summary.json").exists()
    clear_failure(runner.invoke(from_app(), ["report", str(out), "--no-images"]),
                  "summary.json")


def test_the_labels_manifest_is_protected_from_any_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    truth = write_digits_folder(data, per_class=12)
    manifest = tmp_path / "man.csv"
    pd.DataFrame({"path": list(truth), "label": list(truth.values())}).to_csv(
        manifest, index=False)
    before = manifest.read_bytes()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(from_app(), ["scan", "data", "--labels", "man.csv", "--out", "o",
                                        *FAST])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["labels_file"] == str(manifest) and summary["settings"]["labels"] == "man.csv"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    clear_failure(runner.invoke(from_app(), ["report", str(tmp_path / "o"), "--no-images",
                                             "-o", str(manifest)]), "--labels")
    assert manifest.read_bytes() == before


def test_review_outputs_never_replace_another_runs_files(
    scanned: Scanned, tmp_path: Path
) -> None:
    """``report -o`` and ``evaluate -o`` wrote over another scan's summary.json and
    scores.csv (exit 0); a new file of that name in a folder of no run is fine."""
    other = tmp_path / "other-run"
    shutil.copytree(scanned.out, other)
    before = {name: (other / name).read_bytes() for name in ("summary.json", "scores.csv")}
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"path": list(scanned.truth), "label": list(scanned.truth.values())}).to_csv(
        truth, index=False)
    for command in (["report", str(scanned.out), "--no-images", "-o", str(other / "summary.json")],
                    ["evaluate", str(scanned.out), "--truth", str(truth), "-o",
                     str(other / "scores.csv")]):
        clear_failure(runner.invoke(from_app(), command), "another run's output folder",
                      "would destroy that run's results")
    assert {name: (other / name).read_bytes() for name in before} == before
    loose = tmp_path / "loose"
    loose.mkdir()
    made = runner.invoke(from_app(), ["evaluate", str(scanned.out), "--truth", str(truth),
                                      "-o", str(loose / "scores.csv")])
    assert made.exit_code == 0, made.output
