"""End to end: the real CLI on real image folders, every output file and column, bad input."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean import cli
from noisyclean.allocator import glibc_version, user_choice
from noisyclean.cli import app
from noisyclean.config import ScanConfig
from noisyclean.outputs.table import SCORE_COLUMNS

from .conftest import tree_digest

runner = CliRunner()
FAST = ["--epochs", "3", "--width", "8", "--loss-history", "2", "--quiet"]


def _scan(*args: str) -> object:
    return runner.invoke(app, ["scan", *map(str, args)])


def test_a_small_cnn_scan_does_not_import_torchvision(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Importing torchvision costs seconds; a scan whose backbone is not a torchvision model
    (the default small-cnn) must not pay it, yet still records torchvision's version."""
    root, _ = digits_folder
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "from noisyclean.cli import app\n"
        f"try:\n    app([\"scan\", {str(root)!r}, \"--out\", {str(out)!r}, "
        "\"--epochs\", \"1\", \"--width\", \"8\", \"--quiet\"])\n"
        "except SystemExit as done:\n    assert done.code == 0, done.code\n"
        "print('torchvision' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["versions"]["torchvision"] == version("torchvision")
    # the command line keeps freed memory (glibc), unless the environment chose otherwise
    held = glibc_version() is not None and user_choice() is None
    assert summary["device"]["malloc"].startswith("held (" if held else "default (")


def test_scan_writes_every_output_with_every_column(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    # plus a few files that must be skipped and listed, not crash the run
    (root / "0" / "empty.png").write_bytes(b"")
    (root / "1" / "notes.txt").write_text("not an image")
    good = (root / "7").iterdir().__next__().read_bytes()
    (root / "7" / "truncated.png").write_bytes(good[: len(good) // 2])
    before = tree_digest(root)
    out = tmp_path / "out"
    result = _scan(root, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert tree_digest(root) == before  # input images untouched, nothing written there

    scores = pd.read_csv(out / "scores.csv", dtype={"label": str, "predicted": str,
                                                    "suggested_label": str})
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert sorted(scores["path"]) == sorted(truth)
    assert scores["clean_prob"].between(0, 1).all()
    assert (scores["is_noisy"] == (scores["clean_prob"] < 0.5)).all()
    assert scores["clean_prob"].is_monotonic_increasing  # most suspicious first
    assert set(scores["action"]) <= {"keep", "relabel", "review"}
    assert set(scores["label"]) == {"0", "1", "7"}
    assert set(scores["predicted"]) <= {"0", "1", "7"}
    assert (scores["loss"] >= 0).all() and scores["predicted_prob"].between(0, 1).all()
    keep = scores["action"] == "keep"
    assert (scores.loc[keep, "suggested_label"] == scores.loc[keep, "label"]).all()
    relabel = scores["action"] == "relabel"
    assert (scores.loc[relabel, "suggested_label"] == scores.loc[relabel, "predicted"]).all()

    relabeled = pd.read_csv(out / "relabeled.csv", dtype={"label": str, "original_label": str})
    assert list(relabeled.columns) == ["path", "label", "original_label", "changed"]
    assert len(relabeled) == len(scores)
    assert relabeled["changed"].sum() == relabel.sum()

    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped.columns) == ["path", "reason"]
    assert sorted(skipped["path"]) == ["0/empty.png", "1/notes.txt", "7/truncated.png"]
    reasons = dict(zip(skipped["path"], skipped["reason"], strict=True))
    assert "empty" in reasons["0/empty.png"]
    assert "not an image" in reasons["1/notes.txt"]
    assert "truncated" in reasons["7/truncated.png"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["used"] == len(scores) == 120
    assert summary["counts"]["skipped"] == 3
    assert summary["counts"]["found"] == 123
    assert summary["classes"] == ["0", "1", "7"]
    rates = summary["estimated_noise_rate"]
    assert rates["overall"] == pytest.approx(scores["is_noisy"].mean())
    assert set(rates["per_class"]) == {"0", "1", "7"}
    matrix = summary["label_matrix"]
    assert sum(sum(row.values()) for row in matrix.values()) == 120
    assert summary["mixture"][0]["kind"] == "gmm"
    assert summary["settings"]["epochs"] == 3 and summary["settings"]["mixture"] == "gmm"
    assert {"discover", "decode", "warmup", "score", "mixture"} <= set(summary["timings_s"])
    assert {"torch", "torchvision", "numpy", "scikit-learn"} <= set(summary["versions"])
    assert summary["device"]["type"] == "cpu"
    # no temp files left behind by the atomic writes
    assert sorted(p.name for p in out.iterdir()) == [
        "relabeled.csv", "scores.csv", "skipped.csv", "summary.json"
    ]


def test_relabeled_csv_feeds_back_as_a_manifest(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    assert _scan(root, "--out", tmp_path / "a", *FAST).exit_code == 0
    result = _scan(root, "--labels", tmp_path / "a" / "relabeled.csv", "--out", tmp_path / "b",
                   "--mixture", "bmm", "--networks", "2", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["counts"]["used"] == 120
    assert [m["kind"] for m in summary["mixture"]] == ["bmm", "bmm"]


def test_same_seed_same_scores_on_cpu(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    for name in ("a", "b"):
        assert _scan(root, "--out", tmp_path / name, "--seed", "3", *FAST).exit_code == 0
    a = (tmp_path / "a" / "scores.csv").read_bytes()
    assert a == (tmp_path / "b" / "scores.csv").read_bytes()
    assert _scan(root, "--out", tmp_path / "c", "--seed", "4", *FAST).exit_code == 0
    assert a != (tmp_path / "c" / "scores.csv").read_bytes()


def test_second_scan_uses_the_decode_cache(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        result = _scan(root, "--out", tmp_path / name, "--cache-dir", cache, *FAST)
        assert result.exit_code == 0, result.output
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    second = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert first["decode_cache"]["hit"] is False
    assert second["decode_cache"]["hit"] is True
    assert not any(p.suffix == ".npz" for p in root.rglob("*"))


def _assert_clear_failure(result: object, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())  # Rich may wrap long messages
    for needle in needles:
        assert needle in text, text


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    _assert_clear_failure(_scan(tmp_path / "images", "--out", tmp_path / "o"), "no images found")


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    _assert_clear_failure(_scan(tmp_path / "nope", "--out", tmp_path / "o"), "does not exist")


def test_single_class_is_a_clear_error(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    _assert_clear_failure(_scan(root, "--classes", "7", "--out", tmp_path / "o"), "one class")


def test_class_name_that_is_not_a_folder(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    _assert_clear_failure(_scan(root, "--classes", "0,cat", "--out", tmp_path / "o"), "'cat'")


def test_class_list_reads_an_escaped_comma_as_part_of_a_name() -> None:
    assert cli._class_list("a,b, c ,,") == ["a", "b", "c"]
    assert cli._class_list(r"Paris\, TX,Paris") == ["Paris, TX", "Paris"]
    assert cli._class_list(None) is None
    assert cli._class_list("") == [] and cli._class_list(" , ") == []


def test_an_empty_class_list_is_refused_not_read_as_every_class(tmp_path: Path) -> None:
    """``--classes ''`` (an empty shell variable) names no class: an error, not a scan of
    every class folder."""
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
    result = runner.invoke(cli.app, ["scan", str(data), "--classes", "", "--out",
                                     str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "the list of classes is empty" in result.output
    assert not (tmp_path / "out").exists()


def test_a_class_folder_with_a_comma_can_be_named(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``--classes`` splits at commas, so a folder named ``seven, 7`` could not be named;
    ``\\,`` now keeps a comma inside a name."""
    root, _ = digits_folder
    (root / "7").rename(root / "seven, 7")
    result = _scan(root, "--classes", r"seven\, 7,0,1", "--out", tmp_path / "o", "--epochs",
                   "1", "--width", "8", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["classes"] == ["seven, 7", "0", "1"]
    scores = pd.read_csv(tmp_path / "o" / "scores.csv", dtype=str, keep_default_na=False)
    assert (scores["label"] == "seven, 7").sum() == len(list((root / "seven, 7").glob("*.png")))


def test_manifest_with_missing_columns(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,class\n0/a.png,0\n")
    _assert_clear_failure(
        _scan(root, "--labels", manifest, "--out", tmp_path / "o"), "path", "label"
    )


@pytest.mark.parametrize(
    "row,needle",
    [("0/does_not_exist.png,0", "does_not_exist.png"), ("../outside.png,0", "outside")],
)
def test_manifest_paths_that_do_not_exist_or_escape(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, row: str, needle: str
) -> None:
    root, truth = digits_folder
    (tmp_path / "outside.png").write_bytes((root / next(iter(truth))).read_bytes())
    lines = [f"{p},{c}" for p, c in truth.items()] + [row]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "\n".join(lines) + "\n")
    _assert_clear_failure(_scan(root, "--labels", manifest, "--out", tmp_path / "o"), needle)


def test_manifest_with_duplicate_paths(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    first = next(iter(truth))
    lines = [f"{p},{c}" for p, c in truth.items()] + [f"{first},1"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "\n".join(lines) + "\n")
    _assert_clear_failure(
        _scan(root, "--labels", manifest, "--out", tmp_path / "o"), "duplicate", first
    )


def test_output_folder_that_is_a_file(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    (tmp_path / "o").write_text("I am a file")
    _assert_clear_failure(_scan(root, "--out", tmp_path / "o"), "not a folder")
    assert (tmp_path / "o").read_text() == "I am a file"


@pytest.mark.parametrize(
    "option,value,needle",
    [("--mixture", "kde", "--mixture"), ("--threshold", "1.5", "--threshold"),
     ("--networks", "3", "--networks"), ("--device", "tpu", "--device"),
     ("--model", "resnet9000", "unknown model")],
)
def test_bad_options_are_clear_errors(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, option: str, value: str,
    needle: str,
) -> None:
    root, _ = digits_folder
    result = _scan(root, option, value, "--out", tmp_path / "o", *FAST)
    _assert_clear_failure(result, needle)


def test_installed_command_runs_in_a_subprocess(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    script = Path(sys.executable).parent / "noisyclean"
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run([str(script), "scan", str(root), "--out", str(tmp_path / "o"),
                           "--epochs", "2", "--width", "8"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    # the progress on stderr, the summary table on stdout
    assert "warm-up epoch 2/2" in done.stderr and "flagged noisy" in done.stdout
    wrong = json.loads((tmp_path / "o" / "summary.json").read_text())["estimated_wrong_labels"]
    # the label column is as wide as the longest row name shown (which rows show varies)
    shown = rf"estimated wrong labels\s+│ ~{wrong['count']} \({wrong['rate']:.1%}\)"
    assert re.search(shown, done.stdout), done.stdout
    assert (tmp_path / "o" / "scores.csv").exists()
    bad = subprocess.run([str(script), "scan", str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert "error:" in bad.stderr and "Traceback" not in bad.stderr


def test_scan_options_default_to_the_library_defaults() -> None:
    """`noisyclean scan` and `scan(ScanConfig())` train the same way: every ScanConfig field
    that is also a scan option has the same default (the CLI passes each option
    explicitly, so a default changed in one place only would split them)."""
    options = inspect.signature(cli.scan).parameters
    defaults = ScanConfig()
    shared = [f.name for f in dataclasses.fields(ScanConfig)
              if f.name in options and f.name != "data"]  # data: a required argument
    assert {"batch_size", "lr", "epochs", "width", "mixture"} <= set(shared)
    differ = {name: (options[name].default, getattr(defaults, name)) for name in shared
              if options[name].default != getattr(defaults, name)}
    assert differ == {}


@pytest.mark.parametrize("command", [["scan"], ["train", "--method", "standard"]])
def test_the_summary_table_goes_to_stdout_and_the_log_to_stderr(
    tmp_path: Path, command: list[str]
) -> None:
    """As the README says: ``noisyclean scan ... > summary.txt`` keeps the table, while
    progress and log lines go to stderr."""
    from .conftest import write_digits_folder

    write_digits_folder(tmp_path / "data", per_class=15, flip=3)
    done = subprocess.run(
        [sys.executable, "-m", "noisyclean", *command[:1], str(tmp_path / "data"),
         *command[1:], "--out", str(tmp_path / "out"), "--epochs", "1", "--width", "8"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "images used" in done.stdout and "images used" not in done.stderr
    assert " images, 3 classes, " in done.stderr  # the first log line stays on stderr
    assert " images, 3 classes, " not in done.stdout
