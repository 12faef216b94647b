"""The clean install from the README gives a working torchvision next to torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_torchvision_imports_and_runs_its_compiled_ops() -> None:
    # run in a fresh interpreter so nothing imported earlier can hide a broken install
    code = (
        "import torch, torchvision;"
        "b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]]);"
        "keep = torchvision.ops.nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5);"
        "print(keep.tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 2]"


def test_cli_entry_point_is_installed() -> None:
    script = Path(sys.executable).parent / "noisyclean"  # installed beside this python
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("noisyclean ")


def test_the_installed_version_is_the_packages_own() -> None:
    """The version is written once, in ``noisyclean.__version__``; the package metadata
    (what pip shows) reads it from there."""
    from importlib.metadata import version

    import noisyclean

    assert version("noisyclean") == noisyclean.__version__
    out = subprocess.run([str(Path(sys.executable).parent / "noisyclean"), "--version"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == f"noisyclean {noisyclean.__version__}"
