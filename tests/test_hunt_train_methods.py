"""Defects a second bug hunt of ``train`` (its methods, ``--val``, ``--truth``,
``--resume``) found, each through the real CLI on a tiny real image folder."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from noisyclean.cli import app

runner = CliRunner()
CLASSES = ("cat", "dog", "fox")
FAST = ["--epochs", "2", "--width", "4", "--batch-size", "8", "--quiet", "--no-cache"]


def _folder(root: Path, names: tuple[str, ...] = CLASSES, per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (12, 12, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _ok(result: object) -> str:
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_whole_dataset_truth_serves_a_classes_subset(tmp_path: Path) -> None:
    """The truth's 'dog' rows name images a ``--classes cat,fox`` run does not train on:
    they were refused as 'not training classes' instead of ignored."""
    data = _folder(tmp_path / "data")
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\n" + "".join(
        f"{c}/{i}.png,{c}\n" for c in CLASSES for i in range(8)))
    out = tmp_path / "out"
    _ok(_invoke("train", data, "--classes", "cat,fox", "--truth", truth, "--method",
                "standard", "--out", out, *FAST))
    metrics = json.loads((out / "summary.json").read_text())["truth_metrics"]
    assert metrics["n"] == 16 and metrics["n_wrong"] == 0


def test_a_run_keeps_a_filled_review_sheet(tmp_path: Path) -> None:
    """Resuming a finished run removed a reviewer's filled-in review.csv (silently under
    --quiet), though it wrote the same results again; any other run now refuses to start
    rather than remove it."""
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    _ok(_invoke("train", data, "--method", "standard", "--out", out, *FAST))
    _ok(_invoke("export", out, "-f", "csv", "--all"))
    sheet = pd.read_csv(out / "review.csv", dtype=str, keep_default_na=False)
    sheet.loc[0, "decision"] = "keep"
    sheet.to_csv(out / "review.csv", index=False)
    filled = (out / "review.csv").read_bytes()
    _ok(_invoke("report", out))
    scores = (out / "scores.csv").read_bytes()
    _ok(_invoke("train", data, "--resume", out, "--quiet"))
    assert (out / "review.csv").read_bytes() == filled and (out / "report.html").is_file()
    assert (out / "scores.csv").read_bytes() == scores
    for command, other in (("train", tmp_path / "other"), ("scan", tmp_path / "scanned")):
        other.mkdir()
        (other / "review.csv").write_bytes(filled)
        method = ["--method", "standard"] if command == "train" else []
        result = _invoke(command, data, *method, "--out", other, "--epochs", "1", "--width",
                         "4", "--quiet", "--no-cache")
        assert result.exit_code == 2, result.output
        assert "holds a reviewer's work" in " ".join(result.output.split())
    assert (out / "review.csv").read_bytes() == filled


def test_val_class_names_match_in_nfc(tmp_path: Path) -> None:
    """A --val folder copied from macOS names 'café' in NFD: it was refused as 'not a
    training class ('café', ...)'."""
    nfc, nfd = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    data = _folder(tmp_path / "data", (nfc, "dog"))
    val = _folder(tmp_path / "val", (nfd, "dog"), per_class=3)
    out = tmp_path / "out"
    _ok(_invoke("train", data, "--val", val, "--method", "standard", "--out", out, *FAST))
    history = pd.read_csv(out / "history.csv")
    assert history["val_acc"].notna().all()


@pytest.mark.parametrize(("method", "options", "warning"), [
    ("dynamic-bootstrap", ["--warmup-epochs", "1", "--mixup-alpha", "8"],
     "--mixup-alpha does not apply to --method dynamic-bootstrap without --mixup: ignored"),
    ("coteaching", ["--forget-rate", "0.2", "--warmup-epochs", "1"],
     "--warmup-epochs does not apply to --method coteaching with --forget-rate"),
])
def test_options_unused_with_other_settings_are_warned(
    tmp_path: Path, method: str, options: list[str], warning: str
) -> None:
    data = _folder(tmp_path / "data")
    result = _invoke("train", data, "--method", method, *options, "--out", tmp_path / "o",
                     "--epochs", "2", "--width", "4", "--batch-size", "8", "--no-cache")
    assert warning in " ".join(_ok(result).split())


def test_a_resume_does_not_need_the_initial_weights_file(tmp_path: Path) -> None:
    """The checkpoint holds every weight, but a resume built the networks from the
    --weights file again, and failed once it was gone."""
    data = _folder(tmp_path / "data")
    _ok(_invoke("train", data, "--method", "standard", "--out", tmp_path / "pre",
                "--epochs", "1", "--width", "4", "--batch-size", "8", "--quiet", "--no-cache"))
    weights = tmp_path / "init.pt"
    weights.write_bytes((tmp_path / "pre" / "net1.pt").read_bytes())
    run = tmp_path / "run"
    _ok(_invoke("train", data, "--method", "standard", "--weights", weights, "--out", run,
                *FAST))
    scores = (run / "scores.csv").read_bytes()
    weights.unlink()
    _ok(_invoke("train", data, "--resume", run, "--quiet"))
    assert (run / "scores.csv").read_bytes() == scores


def test_a_resume_normalises_as_the_run_started_when_the_weights_run_is_gone(
    tmp_path: Path
) -> None:
    """Training from a noisyclean run's net1.pt normalises by that run's statistics (from
    the summary.json beside it). A resume took them from there again, and with that run
    gone fell back to ImageNet's: a finished run resumed wrote other scores."""
    data = _folder(tmp_path / "data")
    pre = tmp_path / "pre"
    _ok(_invoke("train", data, "--method", "standard", "--out", pre,
                "--epochs", "1", "--width", "4", "--batch-size", "8", "--quiet", "--no-cache"))
    pre_norm = json.loads((pre / "summary.json").read_text())["normalisation"]
    run = tmp_path / "run"
    _ok(_invoke("train", data, "--method", "standard", "--weights", pre / "net1.pt",
                "--out", run, *FAST))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["normalisation"] == pre_norm
    assert summary["training"]["weights_run"] == str(pre / "summary.json")
    scores = (run / "scores.csv").read_bytes()
    shutil.rmtree(pre)
    _ok(_invoke("train", data, "--resume", run, "--quiet"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["normalisation"] == pre_norm
    assert summary["training"]["weights_run"] == str(pre / "summary.json")  # from the checkpoint
    assert (run / "scores.csv").read_bytes() == scores


def test_a_checkpoint_from_before_the_normalisation_was_recorded_resumes_as_it_began(
    tmp_path: Path
) -> None:
    """A checkpoint written before this version records no normalisation. Its run, started
    from a --weights file, normalised by ImageNet's statistics whatever the file; a resume
    must go on so, not switch to the statistics of the run beside the file."""
    data = _folder(tmp_path / "data")
    pre = tmp_path / "pre"
    _ok(_invoke("train", data, "--method", "standard", "--out", pre,
                "--epochs", "1", "--width", "4", "--batch-size", "8", "--quiet", "--no-cache"))
    run = tmp_path / "run"
    _ok(_invoke("train", data, "--method", "standard", "--weights", pre / "net1.pt",
                "--out", run, *FAST))
    # as that older version wrote it
    checkpoint = run / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["extra"].pop("normalisation") is not None
    assert payload["extra"].pop("weights_run") == str(pre / "summary.json")
    torch.save(payload, checkpoint)
    _ok(_invoke("train", data, "--resume", run, "--quiet"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["normalisation"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert summary["training"]["weights_run"] is None


def test_a_diverged_training_stops_at_its_first_epoch(tmp_path: Path) -> None:
    """With --lr 1e8 a single-network method trained every epoch on NaN weights and
    checkpointed them before failing; it now stops at the first epoch whose weights are
    not finite, before that epoch's checkpoint."""
    data = _folder(tmp_path / "data")
    out = tmp_path / "out"
    result = _invoke("train", data, "--method", "sce", "--lr", "1e8", "--momentum", "0",
                     "--out", out, "--epochs", "5", "--width", "4", "--batch-size", "8",
                     "--quiet", "--no-cache")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "training diverged in epoch" in text and "weights are not finite" in text
    diverged = int(text.split("diverged in epoch ")[1].split()[0])
    assert diverged < 5
    # the epochs before it are in history.csv, finite; none after
    history = pd.read_csv(out / "history.csv")
    assert len(history) == diverged - 1


def test_small_train_details(tmp_path: Path) -> None:
    from noisyclean.train import TrainConfig  # beside train, as the README's Python example

    assert TrainConfig().method == "dividemix"
    data = _folder(tmp_path / "data")
    out = tmp_path / "b"
    text = _ok(_invoke("train", data, "--method", "bootstrap", "--lr-drop-epoch", "2",
                       "--out", out, "--epochs", "2", "--width", "4", "--batch-size", "8",
                       "--no-cache"))
    assert "--lr-drop-epoch 2 is not before the last of 2 epochs" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bootstrap"] == {"mode": "hard", "beta": 0.8}
