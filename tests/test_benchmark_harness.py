"""The detection benchmark harness runs end to end on a tiny CIFAR-10 subset, so it cannot
rot. The real benchmark runs are scripts (benchmarks/), not tests."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from noisyclean.confident_joint import estimate_wrong_labels

from .conftest import ROOT, SHARED_DATA

NEEDED = ("cifar10.npz", "cifar10n_labels.npz")
pytestmark = pytest.mark.skipif(
    not all((SHARED_DATA / name).is_file() for name in NEEDED),
    reason="needs ../shared/data/cifar10.npz and cifar10n_labels.npz (benchmark data)",
)


def _make(tmp_path, *args: str):
    out = tmp_path / "noisy"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_noisy.py"), "--out", str(out), *args],
        capture_output=True, text=True, check=True,
    )
    return out, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "expected_rate"),
    [
        (["--noise", "sym", "--rate", "0.3"], 0.3),
        (["--noise", "asym", "--rate", "0.4"], None),
        (["--noise", "human", "--human", "worst"], None),
    ],
)
def test_make_noisy_writes_an_image_folder_with_its_truth(tmp_path, args, expected_rate):
    out, info = _make(tmp_path, "--n", "200", "--test-n", "20", *args)
    truth = pd.read_csv(out / "truth.csv", dtype=str)
    images = out / "images"
    files = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png"))
    assert sorted(truth["path"]) == files and len(files) == 200
    given = truth["path"].str.split("/").str[0]
    wrong = (given != truth["label"]).to_numpy()
    assert info["wrong"] == int(wrong.sum())
    if expected_rate is not None:
        assert wrong.mean() == pytest.approx(expected_rate)
    with np.load(SHARED_DATA / "cifar10.npz") as data:
        true_index = data["y_train"][:200]
    classes = sorted(set(truth["label"]) | set(given))
    assert len(classes) <= 10
    if args[1] == "asym":
        flips = {("truck", "automobile"), ("bird", "airplane"), ("deer", "horse"),
                 ("cat", "dog"), ("dog", "cat")}
        assert set(zip(truth["label"][wrong], given[wrong], strict=True)) <= flips
        assert wrong.sum() > 0
    if args[1] == "human":
        with np.load(SHARED_DATA / "cifar10n_labels.npz") as human:
            worse = human["worse_label"][:200]
        assert wrong.sum() == int((worse != true_index).sum())
    assert len(list((out / "test").rglob("*.png"))) == 20


def test_make_noisy_start_takes_a_later_subset_named_by_its_index(tmp_path):
    """``--start 100 --n 50``: training images 100..149, with their own human labels."""
    out, info = _make(tmp_path, "--n", "50", "--start", "100", "--noise", "human",
                      "--human", "worst")
    truth = pd.read_csv(out / "truth.csv", dtype=str)
    names = sorted(p.split("/")[1] for p in truth["path"])
    assert names == [f"{i:05d}.png" for i in range(100, 150)]
    with np.load(SHARED_DATA / "cifar10.npz") as data:
        true_index, first = data["y_train"][100:150], data["x_train"][100]
        last = len(data["y_train"]) - 50
    with np.load(SHARED_DATA / "cifar10n_labels.npz") as human:
        worse = human["worse_label"][100:150]
    given = truth["path"].str.split("/").str[0]
    assert info["start"] == 100
    assert info["wrong"] == int((given != truth["label"]).sum()) == int(
        (worse != true_index).sum())
    path = next(p for p in truth["path"] if p.endswith("/00100.png"))
    with Image.open(out / "images" / path) as image:
        np.testing.assert_array_equal(np.asarray(image), first)
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_noisy.py"), "--out",
         str(tmp_path / "bad"), "--n", "50", "--start", str(last + 1)],
        capture_output=True, text=True)
    assert bad.returncode != 0 and f"--start must be between 0 and {last}" in bad.stderr


def test_make_noisy_n_all_takes_every_training_image(tmp_path):
    """``--n all`` (what ``--full`` asks for): every training image of the data file, here a
    small CIFAR-10-shaped file made by the test; noise.json records how many it held."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data_dir / "cifar10.npz",
             x_train=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(5))
    out, info = _make(tmp_path, "--n", "all", "--noise", "sym", "--rate", "0.2",
                      "--data-dir", str(data_dir))
    assert (info["n"], info["train_size"], info["wrong"]) == (30, 30, 6)
    assert len(list((out / "images").rglob("*.png"))) == 30
    _, later = _make(tmp_path / "later", "--n", "all", "--start", "10", "--noise", "none",
                     "--data-dir", str(data_dir))
    assert (later["n"], later["start"], later["train_size"]) == (20, 10, 30)
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_noisy.py"), "--out",
         str(tmp_path / "bad"), "--n", "0", "--data-dir", str(data_dir)],
        capture_output=True, text=True)
    assert bad.returncode != 0 and "--n must be between 1 and 30" in bad.stderr
    past_end = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_noisy.py"), "--out",
         str(tmp_path / "past-end"), "--n", "all", "--start", "30", "--data-dir", str(data_dir)],
        capture_output=True, text=True)
    assert past_end.returncode != 0
    assert "--start must be between 0 and 29 for --n all" in past_end.stderr


@pytest.mark.skipif(not (SHARED_DATA / "mnist.npz").is_file(),
                    reason="needs ../shared/data/mnist.npz (benchmark data)")
def test_make_noisy_writes_mnist_with_digit_class_names(tmp_path):
    out, info = _make(tmp_path, "--dataset", "mnist", "--n", "100", "--noise", "sym",
                      "--rate", "0.2", "--seed", "3")
    truth = pd.read_csv(out / "truth.csv", dtype=str)
    with np.load(SHARED_DATA / "mnist.npz") as data:
        true_index, first = data["y_train"][:100], data["x_train"][0]
    assert list(truth["label"]) == [str(k) for k in true_index]
    given = truth["path"].str.split("/").str[0]
    assert set(given) <= {str(k) for k in range(10)}
    assert info["dataset"] == "mnist"
    assert info["wrong"] == int((given != truth["label"]).sum()) == 20
    with Image.open(out / "images" / truth["path"][0]) as image:
        np.testing.assert_array_equal(np.asarray(image), first)


def test_detect_runs_every_method_and_appends_a_table(tmp_path):
    folder, info = _make(tmp_path, "--n", "300", "--noise", "sym", "--rate", "0.3")
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n")
    rows_json = tmp_path / "rows.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "detect.py"), str(folder), "--epochs", "1",
         "--folds", "2", "--results", str(results), "--json", str(rows_json),
         "--work", str(tmp_path / "work"), "--model", "small-cnn", "--no-amp"],
        capture_output=True, text=True, check=True, timeout=600,
    )
    # --model and --no-amp reach every method: the scans and the workers (cleanlab, plain)
    work = tmp_path / "work"
    for scan in ("scan-gmm", "scan-bmm", "scan-n2"):
        summary = json.loads((work / scan / "summary.json").read_text())
        assert summary["settings"]["model"] == "small-cnn"
        assert summary["device"]["precision"] == "torch.float32"
    for name in ("cleanlab", "plain", "plain-onecycle"):
        arrays = np.load(work / f"{name}.npz")
        assert str(arrays["model"]) == "small-cnn"
        assert str(arrays["precision"]) == "float32"
    # --full refuses a folder that is not every CIFAR-10 training image, before any training
    full = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "detect.py"), str(folder), "--full",
         "--work", str(tmp_path / "full")],
        capture_output=True, text=True, timeout=120,
    )
    assert full.returncode != 0 and "--n all" in full.stderr
    assert f"({len(np.load(SHARED_DATA / 'cifar10.npz')['y_train'])})" in full.stderr
    assert not (tmp_path / "full").exists()
    report = json.loads(rows_json.read_text())
    methods = [row["method"] for row in report["rows"]]
    assert len(methods) == 8  # six methods, and an oracle row of plain's and one-cycle's
    assert any(m.startswith("noisyclean") and "--mixture bmm" in m for m in methods)
    assert any("--networks 2" in m for m in methods)
    assert any(m.startswith("cleanlab") for m in methods)
    assert any(m.startswith("oracle") for m in methods)
    for row in report["rows"]:
        assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["recall"] <= 1.0
        assert 0.0 <= row["auroc"] <= 1.0
        assert row["seconds"] > 0 and row["peak_mib"] > 10
        # the kernel's counts for the run's process: it trained, so it used CPU and memory
        assert row["cpu_user_s"] > 0 and row["cpu_system_s"] >= 0 and row["minor_faults"] > 0
    oracles = [r for r in report["rows"] if r["method"].startswith("oracle")]
    assert [r["method"] for r in oracles] == [
        "oracle: top-n plain-recipe losses, n = true count",
        "oracle: top-n one-cycle losses, n = true count"]
    for oracle in oracles:
        assert oracle["flags"] == info["wrong"] == 90
        assert oracle["precision"] == pytest.approx(oracle["recall"])
    for row in report["rows"]:
        # noisyclean's flags and the oracle's are top-n cuts of their own rankings
        if row["method"].startswith(("noisyclean", "oracle")):
            assert row["best_cut_f1"] >= row["f1"] - 1e-12
    text = results.read_text()
    assert text.startswith("# results\n") and text.count("| noisyclean") == 3
    assert "real noise rate 0.300" in text and "detect.py" in text and "best-cut F1" in text
    assert "CPU training in float32" in text and text.count("--no-amp") >= 4
    # --rescore recomputes the same figures from the outputs left in --work, training nothing
    rescored = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "detect.py"), str(folder), "--rescore",
         "--folds", "2", "--work", str(tmp_path / "work")],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    table = [line for line in rescored.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 8
    for line, row in zip(table, report["rows"], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:5] == [str(row["flags"]), f"{row['f1']:.3f}", f"{row['auroc']:.3f}",
                              f"{row['best_cut_f1']:.3f}"]


def test_training_levers_trains_each_variant_and_cuts_the_saved_predictions(tmp_path):
    folder, info = _make(tmp_path, "--n", "300", "--noise", "sym", "--rate", "0.3")
    save = tmp_path / "save"
    script = str(ROOT / "benchmarks" / "training_levers.py")
    variants = ["ce@epochs=1", "gce@epochs=1@width=8", "elr@epochs=1@lam=1", "ce@epochs=2@prune=1"]
    table = subprocess.run(
        [sys.executable, script, str(folder), "--variants", ",".join(variants),
         "--save", str(save)],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == variants
    f1, best, auroc, acc = (float(v) for v in rows[0].split("|")[2].split("/"))
    assert 0.0 <= f1 <= best <= 1.0 and 0.0 <= auroc <= 1.0 and 0.0 <= acc <= 1.0
    saved = np.load(save / "noisy-ce@epochs=1.npz")
    assert saved["probs"].shape == (300, 10)
    assert len(saved["pruned"]) == 0
    pruned = np.load(save / "noisy-ce@epochs=2@prune=1.npz")["pruned"]
    assert len(pruned) == 1 and 0 < pruned[0] < 300
    assert int((saved["labels"] != saved["true"]).sum()) == info["wrong"] == 90
    # --cut-rules reads the ce predictions and cuts them the scan's way among others:
    # its first row must reproduce the lever table's F1 for the same predictions
    (save / "noisy-ce.npz").write_bytes((save / "noisy-ce@epochs=1.npz").read_bytes())
    cuts = subprocess.run(
        [sys.executable, script, str(folder), "--cut-rules", "--save", str(save)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    cut_rows = [line for line in cuts.splitlines() if line.startswith("| ")][1:]
    assert len(cut_rows) == 9 and "(90 wrong)" in cuts
    assert cut_rows[0].split("|")[2].strip().startswith(f"{f1:.3f} (")
    # the top-n rule flags as many as the library's estimate; the per-class ceiling, the
    # true count
    estimate = estimate_wrong_labels(saved["probs"], saved["labels"], list("0123456789"))
    assert cut_rows[5].split("|")[2].strip().endswith(f"({estimate['count']})")
    assert cut_rows[7].split("|")[2].strip().endswith("(90)")
    assert cut_rows[-1].split("|")[2].strip() == f"{best:.3f}"
    bad = subprocess.run([sys.executable, script, str(folder), "--variants", "sgd"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown objective" in bad.stderr
    bad = subprocess.run([sys.executable, script, str(folder), "--variants", "ce@lam=1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown variant option 'lam'" in bad.stderr


def test_ranking_signals_records_training_without_changing_it(tmp_path):
    """ranking_signals.py trains through a hook that records the training-step softmax; its
    default row must reproduce training_levers.py's plain cross-entropy cell for the same
    folder, seed and epochs (the recording changes nothing), and every other row is a
    valid F1 / best-cut F1 / AUROC."""
    folder, _ = _make(tmp_path, "--n", "300", "--noise", "sym", "--rate", "0.3")
    benchmarks = ROOT / "benchmarks"
    ranked = subprocess.run(
        [sys.executable, str(benchmarks / "ranking_signals.py"), str(folder), "--epochs", "1"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    rows = [line for line in ranked.splitlines() if line.startswith("| ")][1:]
    # the default, 3 neighbour counts x 2 blends, the averages from epoch 1 (alone and
    # with the final probabilities); epochs 8 and 13 do not exist in a 1-epoch run
    assert len(rows) == 1 + 6 + 2
    assert rows[1].split("|")[1].strip() == "kNN k=10, blend 0.3"
    for row in rows:
        f1, best, auroc = (float(v) for v in row.split("|")[2].split("/"))
        assert 0.0 <= f1 <= best <= 1.0 and 0.0 <= auroc <= 1.0
    lever = subprocess.run(
        [sys.executable, str(benchmarks / "training_levers.py"), str(folder),
         "--variants", "ce@epochs=1"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    cell = [line for line in lever.splitlines() if line.startswith("| ce@")][0]
    assert rows[0].split("|")[2].strip() == cell.split("|")[2].strip().rsplit(" / ", 1)[0]
