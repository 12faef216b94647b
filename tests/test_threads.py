"""``--threads``: the CPU threads a scan or a training run uses, recorded in summary.json,
the same scores as ``OMP_NUM_THREADS``, and torch's own count restored afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.config import TrainConfig
from noisyclean.device import cpu_threads, device_text
from noisyclean.errors import NoisyCleanError
from noisyclean.train.loop import Precision
from noisyclean.train.run import resume_config

runner = CliRunner()
SCAN_FAST = ["--epochs", "2", "--width", "8", "--loss-history", "2", "--quiet"]


def _threads_recorded(out: Path) -> int:
    return json.loads((out / "summary.json").read_text())["device"]["threads"]


def _one_thread_cpu_text() -> str:
    """How a run's first log line names a CPU run on one thread in this CPU's default
    precision: ``cpu (1 thread)``, or ``cpu (torch.bfloat16, 1 thread)`` on a CPU that
    computes in bfloat16 natively."""
    cpu = torch.device("cpu")
    with cpu_threads(1):
        return device_text(cpu, Precision.choose(cpu, None).dtype)


def test_cpu_threads_sets_the_count_and_restores_it() -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with cpu_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(other):
        raise RuntimeError("a failed run")
    assert torch.get_num_threads() == before  # restored on the way out of an error too
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(NoisyCleanError, match="--threads"), cpu_threads(0):
        pass


def test_scan_records_the_threads_it_ran_with_and_restores_torchs(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    out = tmp_path / "o"
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), "--threads",
                                 str(other), *SCAN_FAST])
    assert result.exit_code == 0, result.output
    assert _threads_recorded(out) == other
    assert torch.get_num_threads() == before
    for threads in ("0", "100000"):  # 100000: OpenMP aborted the process allocating them
        bad = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "b"),
                                  "--threads", threads, *SCAN_FAST])
        text = " ".join(bad.output.split())
        assert bad.exit_code == 2 and "--threads must be between 1 and 1024" in text
        assert "Traceback" not in bad.output


def test_threads_option_gives_the_scores_of_omp_num_threads(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``--threads 1`` in a process that would use every core, and ``OMP_NUM_THREADS=1``
    without the option: the same thread count, so the same bytes of scores.csv."""
    root, _ = digits_folder
    script = Path(sys.executable).parent / "noisyclean"
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    base["COLUMNS"] = "200"  # the log line on one line
    runs = {"option": (["--threads", "1"], base), "env": ([], {**base, "OMP_NUM_THREADS": "1"})}
    for name, (extra, env) in runs.items():
        done = subprocess.run(
            [str(script), "scan", str(root), "--out", str(tmp_path / name), "--seed", "5",
             *[a for a in SCAN_FAST if a != "--quiet"], *extra],
            capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        assert _threads_recorded(tmp_path / name) == 1
        assert f"on {_one_thread_cpu_text()}" in done.stderr  # the first log line says it
    option = (tmp_path / "option" / "scores.csv").read_bytes()
    assert option == (tmp_path / "env" / "scores.csv").read_bytes()


def test_device_text_names_the_precision_and_the_cpu_threads() -> None:
    with cpu_threads(1):
        assert device_text(torch.device("cpu")) == "cpu (1 thread)"
    with cpu_threads(2):
        shown = device_text(torch.device("cpu"), torch.bfloat16)
        assert shown == "cpu (torch.bfloat16, 2 threads)"
    assert device_text(torch.device("cuda"), torch.float16) == "cuda (torch.float16)"
    assert device_text(torch.device("mps")) == "mps"


def test_train_records_the_threads_and_a_resume_takes_them_from_the_command_line(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    out = tmp_path / "t"
    result = runner.invoke(app, [
        "train", str(root), "--method", "standard", "--out", str(out), "--epochs", "1",
        "--width", "8", "--batch-size", "16", "--threads", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert _threads_recorded(out) == 1
    assert f"for 1 epoch on {_one_thread_cpu_text()}" in result.output  # its first log line
    # how a run executes is never the checkpoint's: not reported as ignored, and used
    saved = TrainConfig(data=root, out=out, epochs=1, threads=1)
    merged, ignored = resume_config(TrainConfig(data=root, resume=out, threads=2), saved)
    assert merged.threads == 2 and ignored == []


def test_more_threads_than_cores_are_warned_of(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    from noisyclean.device import available_cores

    root, _ = digits_folder
    cores = available_cores()
    over = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "a"), *SCAN_FAST,
                               "--epochs", "1", "--threads", str(cores + 1)])
    assert over.exit_code == 0, over.output
    assert (f"torch runs {cores + 1} threads on {cores} core" in " ".join(over.output.split()))
    assert f"--threads {cores} or fewer" in over.output
    fits = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "b"), *SCAN_FAST,
                               "--epochs", "1", "--threads", str(cores)])
    assert fits.exit_code == 0 and "threads on" not in fits.output
