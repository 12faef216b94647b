"""Defects a bug hunt of the Python library API found: what a researcher calling
``scan``/``train`` and the pieces from a notebook or a sweep runs into."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import noisyclean
from noisyclean import NoisyCleanError, ScanConfig, scan
from noisyclean.confident_joint import estimate_wrong_labels
from noisyclean.config import TrainConfig, check_setting_types
from noisyclean.models import build_model
from noisyclean.outputs.evaluation import evaluate_scan
from noisyclean.outputs.export import export
from noisyclean.outputs.report import write_report
from noisyclean.train import train

from .conftest import write_digits_folder

FAST = dict(epochs=2, width=4, batch_size=16, threads=1, use_cache=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "images"
    write_digits_folder(root, per_class=20, flip=3)
    return root


@pytest.fixture(scope="module")
def scanned(images: Path) -> Path:
    out = images.parent / "out"
    scan(ScanConfig(data=images, out=out, **FAST))
    return out


def test_numpy_settings_are_taken_as_python_ones(images: Path, tmp_path: Path) -> None:
    """A sweep's ``np.int64`` and ``np.float32`` values crashed after the whole scan
    ("Object of type int64 is not JSON serializable"), next to the earlier run's
    summary.json; an integral numpy seed failed inside torch."""
    out = tmp_path / "out"
    scan(ScanConfig(data=images, out=out, **FAST))
    config = ScanConfig(data=images, out=out, **{**FAST, "epochs": np.int64(3)},
                        threshold=np.float32(0.5), seed=np.int64(1), tta=np.bool_(True))
    result = scan(config)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["epochs"] == 3 and summary["settings"]["seed"] == 1
    assert int(pd.read_csv(out / "scores.csv")["is_noisy"].sum()) == summary["counts"]["noisy"]
    assert result.summary["settings"]["epochs"] == 3


@pytest.mark.parametrize(("setting", "message"), [
    ({"lr": "0.1"}, "--lr must be a number, not '0.1'"),
    ({"epochs": 1.5}, "--epochs must be a whole number, not 1.5"),
    ({"seed": 1.5}, "--seed must be a whole number"),
    ({"classes": "0,1"}, "--classes must be a list of class names"),
    ({"amp": "yes"}, "--amp must be True or False"),
    # True is an int and a number to isinstance, but never a count or a rate
    ({"epochs": True}, "--epochs must be a whole number, not True"),
    ({"lr": True}, "--lr must be a number, not True"),
    ({"mixture": 2}, "--mixture must be a string, not 2"),
    ({"threads": "2"}, "--threads must be a whole number"),  # read before the others
    ({"labels": 7}, "--labels must be a path"),
    ({"cache_dir": 3}, "--cache-dir must be a path"),
    # absurd sizes: an allocation of terabytes, OpenMP's abort of the caller's process
    ({"width": 10**6}, "--width must be between 4 and 1024"),
    ({"threads": 10**9}, "--threads must be between 1 and 1024"),
    ({"model": ""}, "--model must name a model"),
])
def test_settings_of_the_wrong_type_are_refused_up_front(
    images: Path, tmp_path: Path, setting: dict, message: str
) -> None:
    with pytest.raises(NoisyCleanError, match=message):
        scan(ScanConfig(data=images, out=tmp_path / "out", **{**FAST, **setting}))
    assert not (tmp_path / "out").exists()
    with pytest.raises(NoisyCleanError, match=message):
        train(TrainConfig(data=images, out=tmp_path / "t", method="standard",
                          **{**FAST, **setting}))


@pytest.mark.parametrize("paths", [{"data": None}, {"data": 5}, {"data": b"images"},
                                   {"out": None}, {"out": 3}])
def test_paths_of_the_wrong_type_are_refused_up_front(
    images: Path, tmp_path: Path, paths: dict
) -> None:
    """A path setting that is no path (None, a number, bytes) is one message naming it, as
    the other settings' types are (it was a TypeError from pathlib)."""
    settings = {"data": images, "out": tmp_path / "out", **FAST, **paths}
    name = next(iter(paths))
    with pytest.raises(NoisyCleanError, match=f"--{name} must be a path"):
        scan(ScanConfig(**settings))
    with pytest.raises(NoisyCleanError, match=f"--{name} must be a path"):
        train(TrainConfig(**settings, method="standard"))


def test_a_run_leaves_the_caller_s_torch_and_numpy_state(images: Path) -> None:
    """The scan reseeded the notebook's global random streams; a float64 default dtype or
    a ``torch.no_grad()`` block made it fail with raw torch errors."""
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (np.random.random(), torch.rand(1).item())
    np.random.seed(1)
    torch.manual_seed(1)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            first = scan(ScanConfig(data=images, **FAST), write=False)
            assert not torch.is_grad_enabled()
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(before)
    assert (np.random.random(), torch.rand(1).item()) == expected
    again = scan(ScanConfig(data=images, **FAST), write=False)
    pd.testing.assert_frame_equal(first.table, again.table)


def test_train_warmup_epochs_message_names_the_method(images: Path, tmp_path: Path) -> None:
    with pytest.raises(NoisyCleanError, match="^--warmup-epochs must not be negative$"):
        train(TrainConfig(data=images, out=tmp_path / "t", method="gce", warmup_epochs=-1))
    with pytest.raises(NoisyCleanError, match="at least 1 for dividemix"):
        train(TrainConfig(data=images, out=tmp_path / "t", warmup_epochs=0))


def test_review_functions_refuse_their_inputs_and_the_dataset(
    scanned: Path, images: Path, tmp_path: Path
) -> None:
    """``evaluate --output truth.csv`` replaced the truth file with its JSON; ``report``
    and ``export`` wrote over images of the dataset."""
    out = tmp_path / "out"
    shutil.copytree(scanned, out)
    truth = tmp_path / "truth.csv"
    table = pd.read_csv(out / "scores.csv", dtype=str)
    table[["path", "label"]].to_csv(truth, index=False)
    before = truth.read_bytes()
    with pytest.raises(NoisyCleanError, match="is the --truth file this reads"):
        evaluate_scan(out, truth, output=truth)
    assert truth.read_bytes() == before
    image = images / table["path"].iloc[0]
    pixels = image.read_bytes()
    with pytest.raises(NoisyCleanError, match="lies in the dataset folder"):
        write_report(out, output=image)
    with pytest.raises(NoisyCleanError, match="lies in the dataset folder"):
        export(out, "csv", output=image)
    with pytest.raises(NoisyCleanError, match="lies in the dataset folder"):
        export(out, output=images / "tasks.json")
    assert image.read_bytes() == pixels
    assert not (images / "tasks.json").exists()


@pytest.mark.parametrize(("call", "message"), [
    (lambda out: write_report(out, thumb=0), "--thumb must be between 16 and 512"),
    (lambda out: write_report(out, top=-1), "--top must be a count of 0 or more"),
    (lambda out: export(out, top=2.5), "--top takes a count of 1 or more"),
])
def test_review_functions_check_their_numbers(scanned: Path, tmp_path: Path, call,
                                              message: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(scanned, out)
    with pytest.raises(NoisyCleanError, match=message):
        call(out)


def test_the_confident_joint_refuses_what_is_not_probabilities() -> None:
    """Log-probabilities gave an estimate of 0 wrong labels, a NaN moved the per-class
    rates, labels out of range raised an IndexError deep inside."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = 0.9 * np.eye(3)[[1, 0, 2, 1, 0, 2]] + 0.1 / 3
    assert estimate_wrong_labels(probs, labels, ["a", "b", "c"])["count"] == 3
    nan = probs.copy()
    nan[0, 0] = np.nan
    for bad in (np.log(probs), nan, -probs):
        with pytest.raises(ValueError, match="probabilities in"):
            estimate_wrong_labels(bad, labels, ["a", "b", "c"])
    for bad_labels in (np.array([0, 0, 1, 1, 2, 3]), np.array([0, 0, 1, 1, 2, -1])):
        with pytest.raises(ValueError, match="class indices in 0..2"):
            estimate_wrong_labels(probs, bad_labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match="name the 3 columns"):
        estimate_wrong_labels(probs, labels, ["a", "b"])


def test_small_api_details() -> None:
    assert "scan" in dir(noisyclean)
    config = ScanConfig(data="images", weights=Path("net1.pt"))  # a local weights file as a Path
    check_setting_types(config)
    assert config.weights == "net1.pt" and config.data == Path("images")
    with pytest.raises(NoisyCleanError) as info:
        build_model("resnet18", 3, weights="BOGUS")
    assert str(info.value).count("DEFAULT") == 1


def test_a_scan_may_keep_its_probabilities_without_writing(images: Path, tmp_path: Path) -> None:
    """save_probs with write=False: the result holds what pred_probs.npy would (it was
    lost: nothing written, nothing returned)."""
    config = ScanConfig(data=images, out=tmp_path / "out", save_probs=True, **FAST)
    kept = scan(config, write=False)
    assert not (tmp_path / "out").exists()
    written = scan(config)
    on_disk = np.load(tmp_path / "out" / "pred_probs.npy")
    assert kept.pred_probs is not None and kept.pred_probs.dtype == np.float32
    np.testing.assert_array_equal(kept.pred_probs, on_disk)
    np.testing.assert_array_equal(written.pred_probs, on_disk)
    assert kept.pred_probs.shape == (len(kept.table), len(kept.summary["classes"]))
    assert kept.summary["device"]["peak_memory_mib"] is None  # recorded on CUDA only
    assert scan(ScanConfig(data=images, **FAST), write=False).pred_probs is None


@pytest.mark.parametrize(("call", "message"), [
    (lambda: scan("images"), "expected a ScanConfig"),
    (lambda: scan({"data": "images"}), "expected a ScanConfig"),
    (lambda: scan(TrainConfig(data="images")), "expected a ScanConfig"),
    (lambda: train(ScanConfig(data="images")), "expected a TrainConfig"),
    (lambda: scan(ScanConfig(data="images"), progress=True), "progress must be a noisyclean"),
    (lambda: scan(ScanConfig(epochs=1)), "--data must be a path .* none was given"),
    (lambda: train(TrainConfig(epochs=1)), "--data must be a path .* none was given"),
    (lambda: scan(ScanConfig(data="images", extra={"note": {1, 2}})), "extra must be a dict"),
    (lambda: scan(ScanConfig(data="images", extra=[1])), "extra must be a dict"),
])
def test_what_is_not_a_run_s_settings_is_one_message(call, message: str) -> None:
    """Another object than the settings, no data, or an extra that summary.json cannot
    hold: one NoisyCleanError before anything runs (a TypeError from dataclasses, an
    AttributeError, a scan of the working folder, a crash after the whole run)."""
    with pytest.raises(NoisyCleanError, match=message):
        call()


def test_extra_takes_what_summary_json_holds_and_empty_paths_are_not_the_folder(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy numbers and NaN in ``extra`` go into summary.json as Python numbers and null,
    as they did before it was checked; an empty cache_dir is the default cache (Path('')
    is '.', the working folder), an empty data or out is refused."""
    extra = {"acc": np.float32(0.5), "n": np.int64(3), "x": float("nan")}
    monkeypatch.chdir(tmp_path)
    scan(ScanConfig(data=images, out=tmp_path / "out", extra=extra, cache_dir="",
                    **{**FAST, "use_cache": True}))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["settings"]["extra"] == {"acc": 0.5, "n": 3, "x": None}
    assert summary["decode_cache"]["dir"] not in (".", "")
    assert not list(tmp_path.glob("*.npz"))  # no decode cache in the working folder
    for empty in ({"data": ""}, {"out": ""}):
        with pytest.raises(NoisyCleanError, match=f"--{next(iter(empty))} must be a path, not"):
            scan(ScanConfig(**{"data": images, **empty}, **FAST))


def test_a_run_leaves_the_caller_s_settings_object_as_it_was(images: Path, tmp_path: Path) -> None:
    config = ScanConfig(data=str(images), out=str(tmp_path / "out"),
                        **{**FAST, "epochs": np.int64(1)})
    result = scan(config)
    assert type(config.epochs) is np.int64 and config.data == str(images)
    assert result.summary["settings"]["epochs"] == 1


def test_a_refused_run_leaves_no_empty_output_folder(images: Path, tmp_path: Path) -> None:
    """A scan or training refused for its data left the new --out folder behind, empty;
    an existing folder is kept."""
    out = tmp_path / "new" / "out"
    with pytest.raises(NoisyCleanError, match="does not exist|not found|no such"):
        scan(ScanConfig(data=tmp_path / "missing", out=out, **FAST))
    assert not (tmp_path / "new").exists()
    with pytest.raises(NoisyCleanError):
        train(TrainConfig(data=tmp_path / "missing", out=out, method="standard", **FAST))
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(NoisyCleanError):
        scan(ScanConfig(data=tmp_path / "missing", out=kept, **FAST))
    assert kept.is_dir()
