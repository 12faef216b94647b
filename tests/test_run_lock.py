"""One run at a time writes into an output folder: a second scan or training into the same
folder is refused while the first runs, and a lock left by a killed run is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import noisyclean.scanning as scanning
from noisyclean.cli import app
from noisyclean.outputs.write import LOCK_NAME

runner = CliRunner()
FAST = ["--epochs", "1", "--width", "4", "--quiet", "--no-cache"]


def _ended_pid() -> int:
    """The id of a process that has ended (a short-lived child, waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_folder_another_run_writes_into_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.csv").write_text("an earlier run's\n")
    host = socket.gethostname()
    (out / LOCK_NAME).write_text(f"{os.getpid()} {host}\n")  # this process: alive
    for command in (["scan"], ["train", "--method", "standard"]):
        result = runner.invoke(app, [*command, str(root), "--out", str(out), *FAST])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert f"another noisyclean run (process {os.getpid()} on {host}) is writing" in text
        assert f"remove {out / LOCK_NAME}" in text
    assert (out / "scores.csv").read_text() == "an earlier run's\n"
    assert (out / LOCK_NAME).is_file()  # the other run's lock is left alone


@pytest.mark.parametrize("content", ["{pid} {host}\n", "", "garbled"])
def test_a_lock_whose_run_has_ended_is_taken_over(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, content: str
) -> None:
    root, _ = digits_folder
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(content.format(pid=_ended_pid(), host=socket.gethostname()))
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert (out / "scores.csv").is_file() and not lock.exists()


def test_the_lock_lasts_as_long_as_the_run(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = digits_folder
    out = tmp_path / "out"
    seen: list[bool] = []
    real = scanning.warm_up

    def watched(*args: object, **kwargs: object) -> object:
        seen.append((out / LOCK_NAME).is_file())
        return real(*args, **kwargs)

    monkeypatch.setattr(scanning, "warm_up", watched)
    assert runner.invoke(app, ["scan", str(root), "--out", str(out), *FAST]).exit_code == 0
    assert seen == [True] and not (out / LOCK_NAME).exists()
    # a run refused for its data leaves neither a lock nor the folder it created
    refused = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "new"),
                                  "--classes", "0,nope", *FAST])
    assert refused.exit_code == 2 and not (tmp_path / "new").exists()
