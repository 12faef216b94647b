"""What ``scan`` and ``train`` refuse up front, and what they leave in an output folder they
share: seeds out of range, infinite or NaN option values, an input file that the run would
overwrite, an output folder inside a linked class folder, a training checkpoint a scan
would destroy, files of an earlier run of the other command, ``--out`` with ``--resume``;
and what they print: the class that ``--folds`` lacks images of, a quoted resume command,
``1 epoch``, the listing of ``train``."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from noisyclean.cli import app

from .conftest import tree_digest, write_digits_folder
from .test_scan_guards import _clear_failure

runner = CliRunner()
TINY = ["--epochs", "1", "--width", "8", "--image-size", "16", "--quiet"]
# for train: dividemix needs an epoch after its warm-up
TRAIN = ["--epochs", "2", "--warmup-epochs", "1", "--width", "8", "--image-size", "16",
         "--batch-size", "16", "--quiet"]


def _run(command: str, *args: object) -> object:
    return runner.invoke(app, [command, *map(str, args)])


def _text(result: object) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A 3-class folder of 36 digits."""
    root = tmp_path / "small"
    write_digits_folder(root, per_class=12, flip=3)
    return root


# --------------------------------------------------------------------------- the seed


@pytest.mark.parametrize("command", ["scan", "train"])
def test_a_seed_out_of_range_is_refused_before_any_work(
    small: Path, tmp_path: Path, command: str
) -> None:
    """numpy's and scikit-learn's random states take 0 .. 2**32 - 1: a seed outside used to
    end the whole training in a traceback from the mixture, the folds or torch."""
    out = tmp_path / "out"
    extra = ["--folds", "2"] if command == "scan" else ["--method", "standard"]
    for seed in ("-5", "4294967296", "99999999999999999999"):
        result = _run(command, small, "--out", out, "--seed", seed, *extra, *TINY)
        _clear_failure(result, "--seed must be between 0 and 4294967295")
        assert not out.exists()
    # the largest seed reaches every random state (the folds, the mixtures, torch)
    result = _run(command, small, "--out", out, "--seed", "4294967295", *extra, *TINY)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- option values


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("scan", ["--weight-decay", "-1"], "--weight-decay must not be negative"),
        ("scan", ["--workers", "0"], "--workers must be at least 1, not 0"),
        ("train", ["--workers", "-3"], "--workers must be at least 1, not -3"),
        ("scan", ["--lr", "inf"], "--lr must be a finite number, not inf"),
        ("scan", ["--lr", "nan"], "--lr must be a finite number, not nan"),
        ("scan", ["--weight-decay", "inf"], "--weight-decay must be a finite number"),
        ("train", ["--alpha", "inf"], "--alpha must be a finite number, not inf"),
        ("train", ["--lambda-u", "inf"], "--lambda-u must be a finite number"),
        ("train", ["--lambda-r", "inf"], "--lambda-r must be a finite number"),
        ("train", ["--weight-decay", "inf"], "--weight-decay must be a finite number"),
        ("train", ["--method", "mixup", "--mixup-alpha", "inf"],
         "--mixup-alpha must be a finite number"),
        ("train", ["--method", "sce", "--sce-beta", "inf"], "--sce-beta must be a finite number"),
    ],
)
def test_scan_and_train_refuse_the_same_bad_values_up_front(
    small: Path, tmp_path: Path, command: str, args: list[str], message: str
) -> None:
    """scan used to accept a negative weight decay, both took --workers 0 for 1, and an
    infinite value trained to a misleading "diverged; try a lower --lr"."""
    out = tmp_path / "out"
    fast = TRAIN if command == "train" else TINY
    _clear_failure(_run(command, small, "--out", out, *args, *fast), message)
    assert not out.exists()


# --------------------------------------------------------------------------- input files


def test_an_input_file_the_run_would_overwrite_is_refused(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest, truth file or weights file in --out under the name of one of the run's
    outputs would be replaced (or removed) by the run: refused, however it is spelled, and
    the file stays as it was."""
    out = tmp_path / "out"
    assert _run("scan", small, "--out", out, *TINY).exit_code == 0
    manifest = out / "relabeled.csv"
    manifest.write_text(manifest.read_text().replace("\n", ",my notes\n", 1))  # a column more
    before = tree_digest(out)
    for labels in (manifest, out / "." / "scores.csv"):
        _clear_failure(_run("scan", small, "--labels", labels, "--out", out, *TINY),
                       f"--labels {labels}", "choose another --out")
    _clear_failure(_run("train", small, "--method", "standard", "--labels", manifest,
                        "--out", out, *TRAIN), "--labels", "relabeled.csv", "another --out")
    _clear_failure(_run("train", small, "--method", "standard", "--truth", manifest,
                        "--out", out, *TRAIN), "--truth", "relabeled.csv", "another --out")
    (out / "net1.pt").write_bytes(b"weights")  # a scan removes the networks of a train run
    before["net1.pt"] = tree_digest(out)["net1.pt"]
    _clear_failure(_run("scan", small, "--weights", out / "net1.pt", "--out", out, *TINY),
                   "--weights", "net1.pt", "another --out")
    monkeypatch.chdir(out)  # the default spelling of a feed-back loop
    _clear_failure(_run("scan", small, "--labels", "relabeled.csv", "--out", ".", *TINY),
                   "--labels relabeled.csv")
    assert tree_digest(out) == before
    # into another folder the same manifest is fine
    result = _run("scan", small, "--labels", manifest, "--out", tmp_path / "other", *TINY)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- a shared --out


def test_train_removes_the_files_of_an_earlier_scan(small: Path, tmp_path: Path) -> None:
    """pred_probs.npy and report.html describe the scan; a train run that replaces its
    scores.csv must not leave them. A network of an earlier run that this one does not
    write (net2.pt, by a one-network method) goes too."""
    out = tmp_path / "out"
    result = _run("scan", small, "--out", out, "--save-probs", "--report", *TINY)
    assert result.exit_code == 0, result.output
    assert (out / "pred_probs.npy").is_file() and (out / "report.html").is_file()
    (out / "net2.pt").write_bytes(b"an earlier run's second network")
    (out / "notes.txt").write_text("the user's own")
    result = _run("train", small, "--method", "standard", "--out", out,
                  *[a for a in TRAIN if a != "--quiet"])
    assert result.exit_code == 0, result.output
    assert ("removed pred_probs.npy, report.html, net2.pt from "
            f"{out}: an earlier run's, which would not match this one") in _text(result)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "history.csv", "net1.pt", "notes.txt", "relabeled.csv", "scores.csv",
        "skipped.csv", "summary.json"]


def test_a_scan_keeps_a_training_checkpoint_and_removes_train_files(
    small: Path, tmp_path: Path
) -> None:
    """A scan into a train run's folder is refused while it holds the run's checkpoint (as a
    fresh train run is), leaving every file; without the checkpoint the scan replaces the
    run's outputs and removes its history and networks."""
    out = tmp_path / "out"
    assert _run("train", small, "--method", "standard", "--out", out, *TRAIN).exit_code == 0
    before = tree_digest(out)
    other = tmp_path / "other"
    write_digits_folder(other, classes=(2, 3), per_class=10, flip=2)
    _clear_failure(_run("scan", other, "--out", out, *TINY),
                   f"{out} already holds a training checkpoint", "choose another --out")
    assert tree_digest(out) == before
    (out / "checkpoint.pt").unlink()
    result = _run("scan", other, "--out", out, *TINY[:-1])
    assert result.exit_code == 0, result.output
    assert f"removed history.csv, net1.pt from {out}" in _text(result)
    assert sorted(p.name for p in out.iterdir()) == [
        "relabeled.csv", "scores.csv", "skipped.csv", "summary.json"]


def test_an_output_folder_in_a_linked_class_folder_is_refused(tmp_path: Path) -> None:
    """Class folders that are links to folders elsewhere are walked by discovery: an --out
    inside one would be read as images of that class by the next scan. A link that loops
    (to a folder holding the dataset) is not followed, and an --out beside it is fine."""
    real, linked = tmp_path / "real", tmp_path / "linked"
    write_digits_folder(real, classes=(0, 1), per_class=10, flip=0)
    linked.mkdir()
    for name in ("0", "1"):
        (linked / name).symlink_to(real / name, target_is_directory=True)
    (linked / "loop").symlink_to(tmp_path, target_is_directory=True)
    before = tree_digest(real)
    for out in (real / "0" / "out", real / "1"):
        _clear_failure(_run("scan", linked, "--out", out, *TINY), "inside the class folder")
        _clear_failure(_run("train", linked, "--method", "standard", "--out", out, *TRAIN),
                       "inside the class folder")
    assert tree_digest(real) == before
    result = _run("scan", linked, "--out", real / "out", *TINY)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- resume


def test_resume_into_another_out_is_refused(small: Path, tmp_path: Path) -> None:
    """A resumed run writes into the folder it resumes: an --out naming another folder is
    refused (it used to be dropped without a word); the same folder spelled otherwise is
    fine."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert _run("train", small, "--method", "standard", "--out", run, *TRAIN).exit_code == 0
    _clear_failure(_run("train", small, "--resume", run, "--out", elsewhere),
                   f"--out {elsewhere} and --resume {run} name different folders")
    assert not elsewhere.exists()
    result = _run("train", small, "--resume", run, "--out", run / ".", "--quiet")
    assert result.exit_code == 0, result.output


def test_ctrl_c_prints_a_resume_command_the_shell_reads_back(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("noisyclean.train.run.train", interrupted)
    data = tmp_path / "base sp"
    small.rename(data)
    out = tmp_path / "t int's"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an epoch's checkpoint")
    result = _run("train", data, "--out", out, *TRAIN)
    assert result.exit_code == 130
    line = next(x for x in result.output.splitlines() if "continue with:" in x)
    command = line.split("continue with: ", 1)[1]
    assert shlex.split(command) == ["noisyclean", "train", str(data), "--resume", str(out)]
    # the options a resumed run takes from its command line, not its checkpoint, go too
    manifest = tmp_path / "my labels.csv"
    manifest.write_text("path,label\n")
    result = _run("train", data, "--out", out, "--labels", manifest, "--classes",
                  r"0,1\, one", "--report", *TRAIN)
    assert result.exit_code == 130
    line = next(x for x in result.output.splitlines() if "continue with:" in x)
    command = line.split("continue with: ", 1)[1]
    assert shlex.split(command) == ["noisyclean", "train", str(data), "--resume", str(out),
                                    "--labels", str(manifest), "--classes", r"0,1\, one",
                                    "--report"]


# --------------------------------------------------------------------------- messages


def test_folds_names_the_class_short_of_images(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_digits_folder(root, classes=(0, 1), per_class=10, flip=0)
    odd = root / "fox's"
    odd.mkdir()
    next((root / "0").iterdir()).rename(odd / "only.png")
    _clear_failure(_run("scan", root, "--folds", "2", "--out", tmp_path / "out", *TINY),
                   "--folds 2 needs at least 2 images in every class; class \"fox's\" has 1")


def test_one_epoch_is_one_epoch(small: Path, tmp_path: Path) -> None:
    loud = TINY[:-1]
    result = _run("scan", small, "--out", tmp_path / "a", *loud)
    assert result.exit_code == 0, result.output
    assert "small-cnn x1, 1 epoch on" in _text(result)
    assert "1 epoch at 16 px" in _text(result) and "1 epochs" not in _text(result)
    result = _run("train", small, "--method", "standard", "--out", tmp_path / "b", *loud)
    assert result.exit_code == 0, result.output
    assert "standard for 1 epoch on" in _text(result)


def test_the_listing_summary_of_train_reads_on_its_own() -> None:
    """``noisyclean --help`` shows the first paragraph of train's help only: it must not
    point at a list of methods "below" that the listing does not show."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "1000"})
    row = next(line for line in result.output.splitlines() if "│ train " in line)
    assert "--method" in row and "below" not in row
