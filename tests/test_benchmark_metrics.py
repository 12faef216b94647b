"""The detection benchmark's figures on hand-made cases (no benchmark data needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch

from noisyclean.cut import close_call, estimate_position
from noisyclean.data.batches import DeviceImages
from noisyclean.outputs.evaluation import evaluate_scan

from .conftest import ROOT, load_script, write_digits_folder


def _detect() -> ModuleType:
    return load_script(ROOT / "benchmarks" / "detect.py")


def test_best_cut_f1_is_the_highest_f1_of_any_top_n_cut() -> None:
    detect = _detect()
    wrong = np.array([True, False, True, False, False])
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.0])
    # top-1: 2*1/(1+2) = 0.667, top-2: 2/4, top-3: 2*2/(3+2) = 0.8, top-4: 4/6, top-5: 4/7
    assert detect.best_cut_f1(wrong, score) == (pytest.approx(0.8), 3)
    # the order of the score is what counts, not the order of the rows
    shuffled = np.array([4, 0, 3, 1, 2])
    assert detect.best_cut_f1(wrong[shuffled], score[shuffled]) == (pytest.approx(0.8), 3)
    # a perfect ranking reaches 1 at n = the number of wrong labels
    assert detect.best_cut_f1(wrong, wrong.astype(float)) == (pytest.approx(1.0), 2)
    assert detect.best_cut_f1(np.zeros(3, bool), np.arange(3.0)) == (0.0, 0)


def test_metrics_report_the_best_cut_beside_the_flags() -> None:
    detect = _detect()
    paths = ["a", "b", "c", "d"]
    truth = {"a": "cat", "b": "dog", "c": "dog", "d": "cat"}
    classes = ["cat", "dog"]
    labels = np.array([1, 1, 0, 0])  # a and c are wrong
    row = detect.metrics(paths, flag=[True, True, False, False], score=[4.0, 3.0, 2.0, 1.0],
                         predicted=[0, 1, 1, 0], fixed=[0, 1, 0, 0], truth=truth,
                         classes=classes, labels=labels)
    assert row["f1"] == pytest.approx(0.5)  # P 1/2, R 1/2
    # top-3 (a, b, c) holds both wrong labels: 2*2/(3+2) = 0.8
    assert (row["best_cut_f1"], row["best_cut_n"]) == (pytest.approx(0.8), 3)
    assert row["fixed_acc_on_wrong"] == pytest.approx(0.5)  # a fixed to cat, c kept as cat


def _training_levers() -> ModuleType:
    return load_script(ROOT / "benchmarks" / "training_levers.py")


def test_early_learning_penalty_is_the_mean_log_of_one_minus_the_agreement() -> None:
    levers = _training_levers()
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # <t, p> = 0.5 and 0.1: mean(log 0.5, log 0.9) = (-0.693147 - 0.105361) / 2
    value = levers.early_learning_penalty(probs, targets)
    assert float(value) == pytest.approx(-0.399254, abs=1e-6)
    # a prediction closer to its target lowers the penalty
    closer = torch.tensor([[0.8, 0.2], [0.9, 0.1]])
    assert float(levers.early_learning_penalty(closer, targets)) < float(value)


class _FavoursClassZero(torch.nn.Module):
    """Logits (4, 0) for every image, whatever it shows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([4.0, 0.0]).expand(len(x), 2) + 0.0 * x.flatten(1).sum(1, True)


def test_pruning_trains_the_rest_of_the_run_on_the_unflagged_images_only() -> None:
    levers = _training_levers()
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(40) % 2  # the network predicts class 0: every odd image looks wrong
    data = DeviceImages(images, labels, torch.device("cpu"))
    method = levers.LeverWarmup(data, 1, 8, 0, prune_epochs=(1,), num_classes=2)
    before = [batch for _, batch in method.batches(0)]
    assert len(before) == method.steps_per_epoch(0) == 5
    method.model = _FavoursClassZero()
    method.start_epoch(0)  # not a pruning epoch
    assert len(method.indices) == 40
    method.start_epoch(1)
    assert method.pruned == [20]
    after = torch.cat([batch for _, batch in method.batches(1)])
    # as many steps as before, every one drawn from the even images, each seen twice
    assert method.steps_per_epoch(1) == 5 and len(after) == 40
    assert sorted(after.tolist()) == sorted(list(range(0, 40, 2)) * 2)


def test_detect_gives_the_scan_its_own_split_of_the_epoch_budget(tmp_path) -> None:
    """``detect.py --epochs N``: the scan gets the split it would make itself of a budget of
    N full-resolution epochs (resized epochs first for the small CNN at 32 px,
    not for 8-px digits, which it enlarges to 16 px, nor with AUM or another backbone), with
    the image size, backbone, signal and half- and three-quarter-resolution epochs that the
    scan's own options (its method's, ``--model``, ``--scan-args``) give it."""
    from PIL import Image

    from noisyclean.scanning import progressive_schedule

    from .conftest import write_digits_folder

    detect = _detect()
    digits = tmp_path / "digits"
    write_digits_folder(digits, size=8, per_class=5, flip=0)
    gmm = detect.SCAN_ARGS["scan-gmm"]
    assert detect.scan_epoch_args(gmm, 15, digits) == ["--epochs", "15"]

    cifar_like = tmp_path / "cifar-like"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (cifar_like / c).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(cifar_like / c / f"{i}.png")
    epochs, low, mid = progressive_schedule(15)
    assert low > 0 and mid > 0
    low_split = ["--epochs", str(epochs), "--low-res-epochs", str(low)]
    split = [*low_split, "--mid-res-epochs", str(mid)]
    assert detect.scan_epoch_args(gmm, 15, cifar_like) == split
    assert detect.scan_epoch_args(detect.SCAN_ARGS["scan-aum"], 15, cifar_like) == [
        "--epochs", "15"]
    assert detect.scan_epoch_args([*gmm, "--model", "preact-resnet18"], 15, cifar_like) == [
        "--epochs", "15"]
    # --scan-args: the options the scan will see decide, the last one winning
    assert detect.scan_epoch_args([*gmm, "--signal", "aum"], 15, cifar_like) == [
        "--epochs", "15"]
    assert detect.scan_epoch_args([*gmm, "--image-size=16"], 15, cifar_like) == [
        "--epochs", "15"]
    assert detect.scan_epoch_args([*gmm, "--image-size", "16", "--image-size", "32"], 15,
                                  cifar_like) == split
    assert detect.scan_epoch_args([*gmm, "--low-res-epochs", "0"], 15, cifar_like) == [
        "--epochs", "15"]
    assert detect.scan_epoch_args([*gmm, "--low-res-epochs", "3"], 15, cifar_like) == [
        "--epochs", "15", "--low-res-epochs", "3"]
    assert detect.scan_epoch_args([*gmm, "--mid-res-epochs", "2"], 15, cifar_like) == [
        *low_split, "--mid-res-epochs", "2"]
    assert detect.scan_epoch_args([*gmm, "--low-res-epochs", "0", "--mid-res-epochs", "3"], 15,
                                  cifar_like) == ["--epochs", "15", "--mid-res-epochs", "3"]
    assert detect.scan_epoch_args([*gmm, "--mid-res-epochs", "2"], 15, digits) == [
        "--epochs", "15", "--mid-res-epochs", "2"]


def test_scan_arrays_keeps_numeric_class_names_as_text(tmp_path) -> None:
    """Class folders named 0..9 (MNIST, the digits example) must map to their indices, not
    be read as integers that match no class name."""
    import json

    detect = _detect()
    (tmp_path / "summary.json").write_text(json.dumps({"classes": ["0", "1", "10"]}))
    (tmp_path / "scores.csv").write_text(
        "path,label,is_noisy,predicted,suggested_label\n"
        "10/a.png,10,True,1,1\n"
        "0/b.png,0,False,0,0\n"
    )
    paths, classes, arrays = detect.scan_arrays(tmp_path)
    assert paths == ["10/a.png", "0/b.png"] and classes == ["0", "1", "10"]
    np.testing.assert_array_equal(arrays["labels"], [2, 0])
    np.testing.assert_array_equal(arrays["predicted"], [1, 0])
    np.testing.assert_array_equal(arrays["fixed"], [1, 0])
    np.testing.assert_array_equal(arrays["flag"], [True, False])


def test_cut_rules_scores_each_count_as_the_scans_first_rows(tmp_path) -> None:
    """benchmarks/cut_rules.py runs a real scan, and scores every count rule as the first
    n rows of its scores.csv: the arbitrated row is the scan's own flags (the F1
    ``noisyclean evaluate`` gives), and the others are recomputed here by hand."""
    folder = tmp_path / "noisy"
    truth = write_digits_folder(folder / "images", flip=12)
    pd.DataFrame({"path": list(truth), "label": list(truth.values())}).to_csv(
        folder / "truth.csv", index=False)
    script = str(ROOT / "benchmarks" / "cut_rules.py")
    refused = subprocess.run([sys.executable, script, str(folder)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "pass --scan" in refused.stderr
    results, rows_json = tmp_path / "RESULTS.md", tmp_path / "rows.json"
    results.write_text("# results\n")
    # a --json in a folder that does not exist yet: made before the scan runs
    nested = tmp_path / "new" / "deep" / "rows.json"
    done = subprocess.run(
        [sys.executable, script, str(folder), "--scan", "--scan-args",
         "--epochs 3 --width 8 --batch-size 16", "--results", str(results),
         "--json", str(nested)],
        capture_output=True, text=True, timeout=600, check=True)
    assert "note:" not in done.stderr
    (row,) = json.loads(nested.read_text())
    assert row["wrong"] == 12
    scores = pd.read_csv(folder / "scan" / "scores.csv", dtype={"label": str})
    assert row["n"]["arbitrated"] == row["scan_flagged"] == int(scores["is_noisy"].sum())
    metrics, _ = evaluate_scan(folder / "scan", folder / "truth.csv", tmp_path / "ev.json")
    assert row["f1"]["arbitrated"] == pytest.approx(metrics["f1"])
    wrong = (scores["label"] != scores["path"].map(truth)).to_numpy()
    for rule, n in row["n"].items():
        hits = int(wrong[:n].sum())
        assert row["f1"][rule] == pytest.approx(2 * hits / (n + 12)), rule
    three = (row["n"]["mixture"], row["n"]["loss mixture"], row["n"]["estimate"])
    assert row["position"] == estimate_position(*three)
    other = close_call(*three)
    if other is None:
        assert row["close_call"] is None
    else:
        hits = int(wrong[:other].sum())
        assert row["close_call"] == {"n": other, "f1": pytest.approx(2 * hits / (other + 12))}
    text = results.read_text()
    assert text.startswith("# results\n") and "cut_rules.py" in text
    assert "| chosen | change | position | close call |" in text
    assert f"| noisy | 12 | {row['f1']['mixture']:.3f} ({row['n']['mixture']}) |" in text
    # FOLDER:SCAN scores a scan kept elsewhere: a copy gives the same row under its name
    shutil.copytree(folder / "scan", tmp_path / "kept")
    again = subprocess.run(
        [sys.executable, script, f"{folder}:{tmp_path / 'kept'}", "--json", str(rows_json)],
        capture_output=True, text=True, timeout=120, check=True)
    (copy,) = json.loads(rows_json.read_text())
    assert copy == {**row, "folder": "noisy:kept"}
    assert "| noisy:kept | 12 |" in again.stdout


def test_paired_scans_runs_both_variants_and_scores_each(tmp_path) -> None:
    """benchmarks/paired_scans.py runs two real scans per seed (here the late loss on and
    off), reuses them on a second call, and reports each run's F1 as
    ``noisyclean evaluate`` computes it, with B minus A per pair."""
    folder = tmp_path / "noisy"
    truth = write_digits_folder(folder / "images", flip=12)
    pd.DataFrame({"path": list(truth), "label": list(truth.values())}).to_csv(
        folder / "truth.csv", index=False)
    script = str(ROOT / "benchmarks" / "paired_scans.py")
    tiny = "--epochs 3 --width 8 --batch-size 16 --no-amp"
    results, rows_json = tmp_path / "RESULTS.md", tmp_path / "rows.json"
    results.write_text("# results\n")
    args = [sys.executable, script, str(folder), "--seeds", "0,1",
            "--a", f"{tiny} --late-loss gce", "--b", f"{tiny} --late-loss ce",
            "--name-a", "gce", "--name-b", "ce", "--json", str(rows_json)]
    subprocess.run([*args, "--results", str(results)], capture_output=True, text=True,
                   timeout=600, check=True)
    rows = json.loads(rows_json.read_text())
    assert [(r["folder"], r["seed"]) for r in rows] == [("noisy", 0), ("noisy", 1)]
    for row in rows:
        for key, name in (("a", "gce"), ("b", "ce")):
            out = folder / "paired" / f"{name}-s{row['seed']}"
            summary = json.loads((out / "summary.json").read_text())
            assert summary["settings"]["late_loss"] == name
            assert summary["settings"]["seed"] == row["seed"]
            metrics, _ = evaluate_scan(out, folder / "truth.csv", tmp_path / "ev.json")
            assert row[key]["f1"] == pytest.approx(metrics["f1"])
            assert row[key]["flags"] == metrics["n_flagged"]
            assert row[key]["warmup_s"] == summary["timings_s"]["warmup"]
    text = results.read_text()
    assert text.startswith("# results\n") and "paired_scans.py" in text
    change = rows[0]["b"]["f1"] - rows[0]["a"]["f1"]
    assert f"| noisy | 0 | {rows[0]['a']['f1']:.4f} / " in text and f"| {change:+.4f} |" in text
    # a second call reuses the four scans
    stamps = sorted(p.stat().st_mtime_ns for p in (folder / "paired").glob("*/summary.json"))
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    assert "noisy seed 1: F1" in again.stdout
    assert sorted(p.stat().st_mtime_ns for p in (folder / "paired").glob("*/summary.json")) \
        == stamps
    # each run keeps the options it was made with; changed options under the same name
    # are refused before any scan runs (the old outputs would be reported as the new ones)
    recorded = json.loads((folder / "paired" / "ce-s1" / "paired-options.json").read_text())
    assert recorded["scan_args"] == ["--seed", "1", *tiny.split(), "--late-loss", "ce"]
    changed = [*args[:8], f"{tiny} --late-loss ce --mixture bmm", *args[9:]]
    refused = subprocess.run(changed, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--mixture bmm" in refused.stderr
    assert "ce-s0 holds a scan made with" in refused.stderr
    assert sorted(p.stat().st_mtime_ns for p in (folder / "paired").glob("*/summary.json")) \
        == stamps


def test_warm_file_cache_reads_every_file_under_the_folder(tmp_path) -> None:
    detect = _detect()
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog" / "deep").mkdir(parents=True)
    (tmp_path / "cat" / "0.png").write_bytes(b"x" * 10)
    (tmp_path / "dog" / "1.png").write_bytes(b"y" * 7)
    (tmp_path / "dog" / "deep" / "2.png").write_bytes(b"z" * 3)
    assert detect.warm_file_cache(tmp_path) == 20
    assert detect.warm_file_cache(tmp_path / "cat") == 10


def test_machine_line_names_the_precision_every_method_trains_in() -> None:
    """``detect.py --amp``/``--no-amp`` set every method's precision, and the table's
    machine line says which; without either, the CPU's own default."""
    from noisyclean.device import cpu_has_native_bf16

    detect = _detect()
    assert detect.machine(False).endswith(", CPU training in float32")
    assert detect.machine(True).endswith(", CPU training in bfloat16 autocast")
    default = "bfloat16 autocast" if cpu_has_native_bf16() else "float32"
    assert detect.machine().endswith(f", CPU training in {default}")
    assert detect.precision_name(None) == "float32"
