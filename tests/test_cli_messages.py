"""The CLI's one-line messages print the user's paths as given: no Rich markup read into
them (``[v2]`` or ``[/]`` in a path), and no hard wrapping mid-path when stderr is a pipe or
a narrow terminal, so that a path can be copied from the message whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .review.conftest import make_outputs, write_image

#: The real CLI in a child process, its stderr a pipe; COLUMNS as a narrow terminal's.
CLI = [sys.executable, "-c", "from noisyclean.cli import app; app()"]


def _run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "40"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def _one_line(run: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    """Exit status ``code``, no traceback, and ``line`` as one whole line of stderr."""
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert line in run.stderr.splitlines(), run.stderr


def _small_outputs(base: Path) -> Path:
    """Hand-made outputs of a two-image scan whose dataset folder is ``base/data``."""
    data = base / "data"
    rows = []
    for i, (path, label, action) in enumerate([("a/1.png", "a", "keep"),
                                               ("b/2.png", "b", "review")]):
        write_image(data / path, i)
        rows.append({"path": path, "label": label, "action": action})
    return make_outputs(base / "out", data, rows, ["a", "b"])


def test_brackets_in_paths_are_printed_as_given(tmp_path: Path) -> None:
    """``[v2]`` was read as a markup tag and eaten, ``[/]`` raised Rich's MarkupError (a
    traceback and exit 1), and the long paths were wrapped at 40 columns."""
    versioned = tmp_path / "scans" / "[v2]"
    versioned.mkdir(parents=True)
    _one_line(_run("report", versioned), 2,
              f"error: {versioned / 'summary.json'} not found: give the --out folder of a "
              "finished `noisyclean scan`")
    _one_line(_run("report", "nonexist[/]", cwd=tmp_path), 2,
              "error: output folder nonexist[/] does not exist or is not a folder")
    out = _small_outputs(tmp_path)
    missing = tmp_path / "nope[bold].csv"
    run = _run("evaluate", out, "--truth", missing)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    line, = run.stderr.splitlines()
    assert line.startswith(f"error: cannot read truth file {missing}: "), run.stderr


def test_export_prints_the_document_root_on_one_line(tmp_path: Path) -> None:
    """The Label Studio line is meant to be copied into a shell: the whole document root
    (a long path holding ``[x]``) on one line."""
    base = tmp_path / "projects" / "labelling [x]" / "round-2"
    out = _small_outputs(base)
    run = _run("export", out, "--format", "labelstudio", "--all")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert f"wrote 2 tasks to {out / 'labelstudio.json'}" in lines, run.stderr
    assert f"labeling config: {out / 'labelstudio.xml'}" in lines, run.stderr
    assert ("start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={base.resolve()}") in lines, run.stderr


def test_scan_log_lines_and_summary_take_paths_as_given(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A scan into a folder ``o[/]`` that holds an earlier scan's report: the log line
    naming the folder, and the summary table's output row, used to raise MarkupError after
    the whole scan had run."""
    root, _ = digits_folder
    out = tmp_path / "o[" / "]"  # "[/]" in its path: a folder "]" in a folder "o["
    out.mkdir(parents=True)
    (out / "report.html").write_text("an earlier scan's")
    run = _run("scan", root, "--out", out, "--epochs", "1", "--width", "8", "--no-cache")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert (f"removed report.html from {out}: an earlier run's, which would not match this "
            "one") in run.stderr.splitlines(), run.stderr
    assert "o[/]" in "".join(run.stderr.split())  # the table may wrap, but shows the name
    assert (out / "scores.csv").is_file() and not (out / "report.html").exists()
