"""The prepared GPU run of the ``--full`` benchmark (``benchmarks/gpu_full.sh`` and
``benchmarks/pack_cifar.py``), run here on the CPU on a small CIFAR-10-shaped data folder
made from scikit-learn's digits, so that it works the day a GPU machine is lent. It runs as
the GPU machine would: a Python without the ``noisyclean`` console script next to it and
without the package installed (the checkout goes on the path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from .conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_full.sh"
PACK = ROOT / "benchmarks" / "pack_cifar.py"
N = 200


def _data_dir(path):
    """``cifar10.npz`` and ``cifar10n_labels.npz`` of N digits as 32 x 32 RGB images; the
    'worst' labels have two of every five (40%) moved to the next class."""
    digits = load_digits()
    x = (digits.images[:N] * 15).astype(np.uint8)
    x = np.repeat(np.kron(x, np.ones((4, 4), dtype=np.uint8))[..., None], 3, axis=3)
    y = digits.target[:N].astype(np.int64)
    worse = y.copy()
    flipped = np.arange(N) % 5 < 2
    worse[flipped] = (y[flipped] + 1) % 10
    path.mkdir()
    np.savez(path / "cifar10.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    np.savez(path / "cifar10n_labels.npz", clean_label=y, aggre_label=y, worse_label=worse,
             random_label1=worse, random_label2=worse, random_label3=worse)
    return x, y, int(flipped.sum())


def _bare_python(tmp_path):
    """A Python as on the GPU machine: no ``noisyclean`` script beside it, the package not
    installed; the test environment's site-packages on the path for torch and the rest."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.symlink_to(os.path.realpath(sys.executable))
    site = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = site
    probe = subprocess.run([str(python), "-c", "import noisyclean"], env=env, cwd=tmp_path,
                           capture_output=True, text=True)
    if probe.returncode == 0:  # noisyclean importable without the checkout: not bare
        pytest.skip("noisyclean is importable from site-packages itself (a non-editable "
                    "install); the bare-machine path cannot be shown here")
    return python, env


def test_pack_and_unpack_give_back_every_pixel(tmp_path):
    x, y, _ = _data_dir(tmp_path / "data")
    packed, unpacked = tmp_path / "packed", tmp_path / "unpacked"
    for argv in (["pack", "--data-dir", str(tmp_path / "data"), "--out", str(packed)],
                 ["unpack", str(packed), "--out", str(unpacked)]):
        subprocess.run([sys.executable, str(PACK), *argv], check=True, capture_output=True)
    with np.load(unpacked / "cifar10.npz") as arrays:
        np.testing.assert_array_equal(arrays["x_train"], x)
        np.testing.assert_array_equal(arrays["y_train"], y)
        assert arrays["x_test"].shape == (0, 32, 32, 3)
    assert (unpacked / "cifar10n_labels.npz").read_bytes() == (
        tmp_path / "data" / "cifar10n_labels.npz").read_bytes()
    # a pack whose pixels do not decode to the packed checksum is refused
    with np.load(packed / "cifar10-train.npz") as arrays:
        fields = dict(arrays)
    fields["sha256"] = np.array("0" * 64)
    np.savez(packed / "cifar10-train.npz", **fields)
    refused = subprocess.run([sys.executable, str(PACK), "unpack", str(packed), "--out",
                              str(tmp_path / "again")], capture_output=True, text=True)
    assert refused.returncode != 0 and "decoded to other pixels" in refused.stderr


def test_gpu_full_script_runs_every_step_on_a_bare_python(tmp_path):
    _, _, n_wrong = _data_dir(tmp_path / "data")
    gpu_dir, work = tmp_path / "gpu", tmp_path / "work"
    env = {**os.environ, "GPU_DIR": str(gpu_dir), "PACK_DATA_DIR": str(tmp_path / "data"),
           "NO_WHEELS": "1", "PYTHON": sys.executable}
    subprocess.run(["bash", str(SCRIPT), "--prepare"], env=env, check=True,
                   capture_output=True, timeout=300)
    assert (gpu_dir / "data" / "cifar10-train.npz").is_file()

    python, bare = _bare_python(tmp_path)
    bare.update(GPU_DIR=str(gpu_dir), WORK=str(work), PYTHON=str(python), SETTINGS="worst",
                METHODS="scan-gmm,plain", EXTRA="--epochs 1", BUDGET_S="900")
    subprocess.run(["bash", str(SCRIPT)], env=bare, check=True, capture_output=True,
                   timeout=900)
    out = work / "out"
    report = json.loads((out / "worst.json").read_text())
    assert report["complete"] is True
    methods = [row["method"] for row in report["rows"]]
    assert methods[0].startswith("noisyclean") and "--model preact-resnet18" in methods[0]
    assert len(methods) == 3 and methods[1].startswith("plain")
    assert methods[2] == "oracle: top-n plain-recipe losses, n = true count"
    assert "no GPU, malloc " in report["machine"]
    assert ", CPU training in " in report["machine"]
    assert f"{N} images from index 0, real noise rate 0.400 ({n_wrong} wrong)" in report["data"]
    summary = json.loads((work / "work-worst" / "scan-gmm" / "summary.json").read_text())
    assert summary["settings"]["model"] == "preact-resnet18"
    assert summary["counts"]["used"] == N
    assert (out / "results.md").read_text().count("### cifar10 200 images, human worst") == 1
    assert (out / "machine.txt").is_file() and "done in" in (out / "log.txt").read_text()

    # the budget: a setting starts only with MIN_LEFT_S seconds of it left
    bare.update(SETTINGS="sym50", BUDGET_S="5", MIN_LEFT_S="60")
    subprocess.run(["bash", str(SCRIPT)], env=bare, check=True, capture_output=True,
                   timeout=300)
    assert "stopping before sym50" in (out / "log.txt").read_text()
    assert not (out / "sym50.json").exists()


def test_gpu_full_rewrites_a_half_written_folder_and_keeps_to_its_budget(tmp_path):
    """A folder left without noise.json by a stopped run is written again, and the time
    detect.py gets is what is left of BUDGET_S once the folder is written (here writing it
    takes 4 s more, and detect.py would run until stopped)."""
    _data_dir(tmp_path / "data")
    gpu_dir, work = tmp_path / "gpu", tmp_path / "work"
    env = {**os.environ, "GPU_DIR": str(gpu_dir), "PACK_DATA_DIR": str(tmp_path / "data"),
           "NO_WHEELS": "1", "PYTHON": sys.executable}
    subprocess.run(["bash", str(SCRIPT), "--prepare"], env=env, check=True,
                   capture_output=True, timeout=300)
    python = tmp_path / "python3"  # make_noisy.py slower by 4 s; detect.py never ends
    python.write_text(f"""#!/usr/bin/env bash
case "$1" in
    *make_noisy.py) sleep 4 ;;
    *detect.py) exec sleep 600 ;;
esac
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    half = work / "full-sym50" / "images" / "cat"
    half.mkdir(parents=True)
    (half / "stale.png").write_bytes(b"half-written")
    env.update(WORK=str(work), PYTHON=str(python), SETTINGS="sym50", BUDGET_S="20",
               MIN_LEFT_S="1")
    start = time.perf_counter()
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=120)
    took = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((work / "full-sym50" / "noise.json").read_text())["n"] == 200
    assert not (half / "stale.png").exists()
    log = (work / "out" / "log.txt").read_text()
    assert "sym50: stopped, the budget was spent" in log
    assert took < 20 + 3, log
