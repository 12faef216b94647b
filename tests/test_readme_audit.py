"""What an audit of the README against the tool's behaviour found wrong in the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from noisyclean.data.discover import discover
from noisyclean.errors import NoisyCleanError


def test_the_readme_s_python_scan_import_gives_the_function(tmp_path: Path) -> None:
    """``from noisyclean import ScanConfig, scan`` gave the module ``noisyclean.scan``
    (``TypeError: 'module' object is not callable``), whatever was imported before."""
    code = (
        "import noisyclean.train.run\n"  # imports the scan's module first
        "from noisyclean import ScanConfig, scan\n"
        "import noisyclean\n"
        "assert callable(scan) and scan.__name__ == 'scan', scan\n"
        "assert noisyclean.scan is scan\n"
    )
    for source in (code, code.split("\n", 1)[1]):
        done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)


def test_manifest_paths_that_are_missing_or_outside_cite_their_lines(tmp_path: Path) -> None:
    """The README says a manifest's error messages cite line numbers; a missing path and a
    path outside the root did not."""
    root = tmp_path / "data"
    for name in ("cat/a.png", "dog/b.png"):
        _png(root / name)
    _png(tmp_path / "elsewhere" / "x.png")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\ncat/a.png,cat\n\ndog/b.png,dog\ncat/ghost.png,cat\n")
    with pytest.raises(NoisyCleanError) as info:
        discover(root, labels_csv=manifest)
    assert "'cat/ghost.png' (line 5)" in str(info.value)
    manifest.write_text("path,label\ncat/a.png,cat\n../elsewhere/x.png,dog\n")
    with pytest.raises(NoisyCleanError) as info:
        discover(root, labels_csv=manifest)
    assert "'../elsewhere/x.png' (line 3)" in str(info.value)
