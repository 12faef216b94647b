"""Resuming a training run from wherever the user stands: relative paths, a manifest, the
options given (at their default values too), and what Ctrl-C says; plus the checks on
``--val``, ``--truth`` and ``--out`` that a run makes before training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app

from .test_train import write_truth, write_val_folder

runner = CliRunner()
FAST = ["--epochs", "2", "--warmup-epochs", "1", "--width", "8", "--batch-size", "16"]


def _train(*args: object) -> object:
    return runner.invoke(app, ["train", *map(str, args)])


def _text(result: object) -> str:
    return " ".join(result.output.split())


def test_a_run_resumes_from_another_folder_with_its_relative_paths(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--labels, --val and --truth given relative to where the run started are found when
    it is resumed from elsewhere (the checkpoint stores them absolute); --labels need not
    be given again; giving the same files again is not reported as ignored."""
    root, truth = digits_folder
    start = tmp_path / "start"
    write_val_folder(start / "val")
    write_truth(start / "truth.csv", truth)
    (start / "labels.csv").write_text(
        "path,label\n" + "".join(f"{p},{p.split('/')[0]}\n" for p in sorted(truth)))
    monkeypatch.chdir(start)
    out = tmp_path / "run"
    result = _train(root, "--labels", "labels.csv", "--val", "val", "--truth", "truth.csv",
                    "--method", "standard", "--out", out, "--quiet", *FAST)
    assert result.exit_code == 0, result.output
    first = (out / "scores.csv").read_bytes()
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["val"] == str(start / "val") and settings["labels"] == str(
        start / "labels.csv")

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "val").mkdir(parents=True)  # a folder of the same name must not be used
    monkeypatch.chdir(elsewhere)
    result = _train(root, "--resume", out, "--val", start / "val", "--truth",
                    start / "truth.csv")
    assert result.exit_code == 0, result.output
    assert "ignored" not in _text(result)
    assert f"validation: 30 images from {start / 'val'}" in _text(result)
    assert (out / "scores.csv").read_bytes() == first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth_metrics"]["n"] == 120
    assert pd.read_csv(out / "history.csv")["val_acc"].notna().all()


def test_resume_names_every_option_it_ignores_quiet_or_not(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """An option given on the command line with another value than the checkpoint's is
    reported, even when that value is the option's default (--epochs 100) and under
    --quiet; one given with the checkpoint's own value (--method) is not."""
    root, _ = digits_folder
    out = tmp_path / "run"
    assert _train(root, "--method", "standard", "--out", out, "--quiet", *FAST).exit_code == 0
    result = _train(root, "--resume", out, "--epochs", "100", "--warmup-epochs", "10",
                    "--method", "standard", "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: resuming: --epochs, --warmup-epochs ignored" in _text(result)
    assert "--method" not in _text(result)
    assert len(pd.read_csv(out / "history.csv")) == 2


def test_validation_may_be_a_small_subset_of_the_classes(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    val = tmp_path / "val"
    write_val_folder(val, classes=(7,), per_class=3)
    result = _train(root, "--method", "standard", "--val", val, "--out", tmp_path / "run",
                    *FAST)
    assert result.exit_code == 0, result.output
    assert "validation: 3 images" in _text(result)
    assert pd.read_csv(tmp_path / "run" / "history.csv")["val_acc"].between(0, 1).all()


def test_validation_takes_the_classes_of_classes_from_a_full_folder(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """--classes picks some classes; the whole validation folder serves it (its other class
    folders are left out, said in the log), as a whole truth file does."""
    root, _ = digits_folder
    classes = sorted(p.name for p in root.iterdir())[:2]
    val = tmp_path / "val"
    write_val_folder(val, classes=tuple(int(c) for c in classes) + (9,), per_class=3)
    result = _train(root, "--method", "standard", "--classes", ",".join(reversed(classes)),
                    "--val", val, "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 0, result.output
    assert f"--val {val}: 1 class folder(s) not among --classes left out" in _text(result)
    assert "validation: 6 images" in _text(result)
    # without --classes, a validation class the training set lacks is still refused
    without = _train(root, "--method", "standard", "--val", val, "--out", tmp_path / "r2",
                     *FAST)
    assert without.exit_code == 2 and "'9' are not training classes" in _text(without)


def test_truth_files_with_repeated_paths_or_unknown_labels_are_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    repeated = write_truth(tmp_path / "repeated.csv", truth)
    first = next(iter(truth))
    repeated.write_text(repeated.read_text() + f"{first},1\n")
    result = _train(root, "--truth", repeated, "--out", tmp_path / "a", *FAST)
    assert result.exit_code == 2 and "more than once" in _text(result), result.output
    renamed = write_truth(tmp_path / "renamed.csv", {p: f"x{c}" for p, c in truth.items()})
    result = _train(root, "--truth", renamed, "--out", tmp_path / "b", *FAST)
    assert result.exit_code == 2 and "are not training classes" in _text(result)
    assert "'x0'" in _text(result) and "Traceback" not in result.output


def test_an_output_folder_inside_the_dataset_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = digits_folder
    result = _train(root, "--out", root / "run", *FAST)
    assert result.exit_code == 2 and "inside the dataset folder" in _text(result)
    monkeypatch.chdir(root)  # the default --out, noisyclean-train, would land inside
    result = _train(".", *FAST)
    assert result.exit_code == 2 and "inside the dataset folder" in _text(result)
    assert not (root / "run").exists() and not (root / "noisyclean-train").exists()


def test_ctrl_c_says_whether_there_is_anything_to_resume(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = digits_folder

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("noisyclean.train.run.train", interrupted)
    out = tmp_path / "run"
    result = _train(root, "--out", out, *FAST)
    assert result.exit_code == 130
    assert "before the first epoch's checkpoint: nothing to resume" in _text(result)
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an epoch's checkpoint")
    result = _train(root, "--resume", out)
    assert result.exit_code == 130
    assert f"continue with: noisyclean train {root} --resume {out}" in _text(result)
    # how the run executed, given on its command line, is in the command: left out, the
    # resumed epochs would run in the machine's default precision and threads
    result = _train(root, "--resume", out, "--no-amp", "--threads", "1")
    assert f"continue with: noisyclean train {root} --resume {out} --no-amp --threads 1" in (
        _text(result))


def test_options_the_method_does_not_use_are_named(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """--tau, --lambda-u and --forget-rate mean nothing to GCE: the run says they are
    ignored (quiet or not), and names none of the options the method does use; DivideMix
    uses all of its own."""
    root, _ = digits_folder
    result = _train(root, "--method", "gce", "--gce-q", "0.5", "--tau", "0.7", "--lambda-u",
                    "5", "--forget-rate", "0.3", "--out", tmp_path / "a", "--quiet", *FAST)
    assert result.exit_code == 0, result.output
    # FAST's --warmup-epochs too: GCE has no warm-up
    assert ("warning: --tau, --lambda-u, --warmup-epochs, --forget-rate do not apply to "
            "--method gce: ignored") in _text(result)
    assert "--gce-q" not in _text(result)
    result = _train(root, "--method", "dividemix", "--tau", "0.6", "--lambda-u", "5",
                    "--out", tmp_path / "b", "--quiet", *FAST)
    assert result.exit_code == 0, result.output
    # no option named as ignored (FAST's tiny run gets the warning that its network learnt
    # next to nothing, which is no option's)
    assert "ignored" not in _text(result) and "do not apply" not in _text(result)


def test_resize_is_the_checkpoints_on_resume_and_checked(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """--resize is a setting of the run: recorded, kept on --resume (another value is
    reported as ignored), and an unknown mode is refused before anything runs."""
    root, _ = digits_folder
    out = tmp_path / "run"
    result = _train(root, "--method", "standard", "--resize", "squash", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "px (squash), small-cnn" in _text(result)
    assert json.loads((out / "summary.json").read_text())["settings"]["resize"] == "squash"
    resumed = _train(root, "--resume", out, "--resize", "pad")
    assert resumed.exit_code == 0, resumed.output
    assert "warning: resuming: --resize ignored" in _text(resumed)
    assert json.loads((out / "summary.json").read_text())["settings"]["resize"] == "squash"
    refused = _train(root, "--resize", "fit", "--out", tmp_path / "other")
    assert refused.exit_code == 2
    assert "--resize must be one of crop, pad, squash" in _text(refused)
    assert not (tmp_path / "other").exists()


def test_a_moved_validation_folder_is_named_with_the_way_out(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    write_val_folder(tmp_path / "val")
    out = tmp_path / "run"
    assert _train(root, "--method", "standard", "--val", tmp_path / "val", "--out", out,
                  "--quiet", *FAST).exit_code == 0
    (tmp_path / "val").rename(tmp_path / "moved")
    result = _train(root, "--resume", out)
    assert result.exit_code == 2
    assert (f"the checkpoint's --val {tmp_path / 'val'} no longer exists: give --val with its "
            "new place") in _text(result)
    assert _train(root, "--resume", out, "--val", tmp_path / "moved").exit_code == 0
