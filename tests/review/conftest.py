"""Fixtures of the review-workflow tests (report, export, apply, evaluate): one real scan of
a small digits folder per test session, and hand-made scan outputs for exact checks."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from noisyclean.cli import app

from ..conftest import write_digits_folder

runner = CliRunner()

#: A file that tries to inject a script tag. A file name cannot hold "/", so it lives in a
#: folder named "<script>alert(1)<" and its path relative to the dataset root reads exactly
#: "1/<script>alert(1)</script>.png".
SCRIPT_PATH = "1/<script>alert(1)</script>.png"
#: A plain file name with every character that matters inside an HTML attribute.
QUOTE_PATH = "7/a\"b&c'<i>.png"


@dataclass
class Scanned:
    """A real scan: ``root`` (the images), ``out`` (scan --out, written with --report),
    ``truth`` (relative path -> true class)."""

    root: Path
    out: Path
    truth: dict[str, str]

    def scores(self) -> pd.DataFrame:
        return pd.read_csv(self.out / "scores.csv", keep_default_na=False,
                           dtype={"path": str, "label": str, "predicted": str,
                                  "suggested_label": str, "action": str})


@pytest.fixture(scope="session")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    """Scan (3 epochs, tiny network: seconds) of a 3-class digits folder with 6 wrong labels
    plus two files with hostile names. ``--relabel-threshold 0.3`` so that the table holds
    relabel rows as well as review and keep rows."""
    base = tmp_path_factory.mktemp("review")
    root = base / "images"
    truth = write_digits_folder(root)
    source = root / next(iter(truth))
    (root / "1" / "<script>alert(1)<").mkdir()
    shutil.copy(source, root / SCRIPT_PATH)
    shutil.copy(source, root / QUOTE_PATH)
    truth[SCRIPT_PATH] = truth[QUOTE_PATH] = truth[source.relative_to(root).as_posix()]
    out = base / "out"
    result = runner.invoke(app, [
        "scan", str(root), "--out", str(out), "--epochs", "3", "--width", "8",
        "--loss-history", "2", "--relabel-threshold", "0.3", "--no-cache", "--quiet",
        "--report",
    ])
    assert result.exit_code == 0, result.output
    return Scanned(root, out, truth)


def write_image(path: Path, value: int, size: int = 12) -> None:
    """A small real PNG of one grey level, so every file's bytes differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size, 3), value % 256, dtype=np.uint8)
    pixels[0, 0] = (value * 7) % 256
    Image.fromarray(pixels).save(path)


def make_outputs(
    out: Path, data_root: Path, rows: list[dict], classes: list[str],
    mixture: list[dict] | None = None,
) -> Path:
    """Hand-made scan outputs: ``scores.csv`` from ``rows`` (each needs ``path``, ``label``,
    ``action``; the rest gets plausible defaults) and a minimal ``summary.json``."""
    full = []
    for i, row in enumerate(rows):
        action = row["action"]
        noisy = action != "keep"
        suggested = row.get("suggested_label", row["label"])
        predicted = row.get("predicted", suggested)
        full.append({
            "path": row["path"],
            "label": row["label"],
            "clean_prob": row.get("clean_prob", 0.1 + 0.01 * i if noisy else 0.9),
            "is_noisy": row.get("is_noisy", noisy),
            "loss": row.get("loss", 2.0 if noisy else 0.1),
            "predicted": predicted,
            "predicted_prob": row.get("predicted_prob", 0.9),
            "suggested_label": suggested,
            "action": action,
            "given_prob": row.get("given_prob", 0.05),
            "label_index": classes.index(row["label"]) if row["label"] in classes else 0,
            "fit_loss": row.get("fit_loss", 0.8 if noisy else 0.1),
        })
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(full).to_csv(out / "scores.csv", index=False)
    summary = {
        "noisyclean_version": "0.1.0",
        "data": str(data_root),
        "classes": classes,
        "counts": {"used": len(rows), "skipped": 0},
        "mixture": mixture if mixture is not None else [
            {"kind": "gmm", "degenerate": False, "weights": [0.7, 0.3], "means": [0.1, 0.8],
             "stds": [0.05, 0.1]}
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def clear_failure(result: object, *needles: str) -> None:
    """Exit code 2, no traceback, and every needle in the message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = "".join(result.output.split())  # Rich wraps long lines, even inside words
    for needle in needles:
        assert "".join(needle.split()) in text, result.output


@pytest.fixture
def mixed(scanned: Scanned, tmp_path: Path) -> Scanned:
    """The real scan's outputs, copied, with every other relabel row turned into a review
    row (suggested label = given label), so the table has keep, relabel and review rows
    whatever the tiny network learned."""
    out = tmp_path / "mixed-out"
    shutil.copytree(scanned.out, out)
    scores = scanned.scores()
    relabel = scores.index[scores["action"] == "relabel"]
    assert len(relabel) >= 2, "the fixture scan should suggest relabels"
    review = relabel[::2]
    scores.loc[review, "action"] = "review"
    scores.loc[review, "suggested_label"] = scores.loc[review, "label"]
    scores.to_csv(out / "scores.csv", index=False)
    return Scanned(scanned.root, out, scanned.truth)


def moved_scan(scanned: Scanned, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the real scan whose dataset folder was then moved: ``(out, the folder
    summary.json names, which no longer exists, the folder the images are in now)``."""
    old, moved, out = tmp_path / "images", tmp_path / "moved", tmp_path / "out"
    shutil.copytree(scanned.root, old)
    shutil.copytree(scanned.out, out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summary["data"] = str(old)
    (out / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    old.rename(moved)
    return out, old, moved
