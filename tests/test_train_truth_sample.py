"""``train --truth`` with a truth file for a sample of the training images, as ``evaluate``
takes one: which labels are known, right or wrong (:func:`label_is_correct`), the per-epoch
metrics over the known ones only (DivideMix's division metrics, co-teaching's label
precision), real runs on a digits folder, and a truth file that matches no image."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from noisyclean.config import TrainConfig
from noisyclean.errors import NoisyCleanError
from noisyclean.outputs.evaluation import normalise_truth
from noisyclean.train.divide import Division
from noisyclean.train.loop import Precision
from noisyclean.train.methods.coteaching import CoTeaching, coteaching_losses
from noisyclean.train.run import division_metrics, label_is_correct, method_column

from .test_methods import TINY, _linear, _tiny_images
from .test_train import _one_thread, _train, write_truth  # noqa: F401 (autouse fixture)

# --------------------------------------------------------------------------- label_is_correct

CLASSES = ["cat", "dog"]
PATHS = ["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png"]
LABELS = np.array([0, 0, 1, 1])


def _correct(rows: list[tuple[str, str]], log: list[str] | None = None,
             no_class: list[str] | None = None) -> np.ndarray:
    train = SimpleNamespace(classes=CLASSES, paths=PATHS, labels=LABELS)
    truth = normalise_truth(pd.DataFrame(rows, columns=["path", "label"]))
    config = TrainConfig(truth=Path("truth.csv"), no_class=no_class)
    return label_is_correct(config, train, truth,  # type: ignore[arg-type]
                            None if log is None else log.append)


def test_images_without_a_truth_row_are_unknown_and_other_rows_ignored() -> None:
    log: list[str] = []
    correct = _correct([(" ./cat/a.png ", "cat"),  # right, matched as evaluate matches
                        ("dog/c.png", "cat"),       # wrong
                        ("cat/skipped.png", "dog")],  # names no training image: ignored
                       log)
    assert correct.dtype == np.float64
    np.testing.assert_array_equal(correct, [1.0, np.nan, 0.0, np.nan])
    assert log == ["truth: 2 of 4 training images have a truth row; 1 truth row(s) name no "
                   "training image (ignored)"]


def test_a_full_truth_file_is_every_label_known_and_logs_nothing() -> None:
    log: list[str] = []
    correct = _correct([("cat/a.png", "cat"), ("cat/b.png", "dog"), ("dog/c.png", "dog"),
                        ("dog/d.png", "dog")], log)
    np.testing.assert_array_equal(correct, [1.0, 0.0, 1.0, 1.0])
    assert log == []


def test_a_truth_file_that_matches_no_image_or_names_unknown_classes_is_refused() -> None:
    with pytest.raises(NoisyCleanError, match="has no row for any of the 4 training images"):
        _correct([("elsewhere/a.png", "cat"), ("elsewhere/c.png", "dog")])
    with pytest.raises(NoisyCleanError, match="'bird'.* not training classes"):
        _correct([("cat/a.png", "bird")])


def test_a_no_class_truth_label_makes_the_given_label_wrong() -> None:
    """``--no-class unknown``: an image of none of the classes has a wrong given label;
    without it the label is refused, and a --no-class label that is a class too."""
    rows = [("cat/a.png", "unknown"), ("cat/b.png", "cat"), ("dog/c.png", "other"),
            ("dog/d.png", "dog")]
    correct = _correct(rows, no_class=[" unknown", "other"])  # written as the truth's are
    np.testing.assert_array_equal(correct, [0.0, 1.0, 0.0, 1.0])
    with pytest.raises(NoisyCleanError, match="'other', 'unknown'.* not training classes.*"
                       "--no-class LABEL"):
        _correct(rows)
    with pytest.raises(NoisyCleanError, match="--no-class 'dog' is a class name"):
        _correct(rows, no_class=["unknown", "other", "dog"])


# --------------------------------------------------------------------------- division metrics


def test_division_metrics_leave_the_unknown_labels_out() -> None:
    nan = math.nan
    correct = np.array([1.0, 0.0, nan, 1.0, 0.0, nan, 1.0, 1.0])
    clean_prob = np.array([0.9, 0.45, 0.99, 0.6, 0.3, 0.01, 0.4, 0.8])
    labelled = np.flatnonzero(clean_prob >= 0.5)  # 0, 2, 3, 7
    division = Division(clean_prob, labelled, np.flatnonzero(clean_prob < 0.5))
    metrics = division_metrics(division, correct)
    # known: 0 1 3 4 6 7; right 0 3 6 7, wrong 1 4; labelled and known: 0 3 7, all right
    assert metrics["precision"] == pytest.approx(3 / 3)
    assert metrics["recall"] == pytest.approx(3 / 4)  # 6 is right but unlabelled
    # right (.9 .6 .4 .8) above wrong (.45 .3) in 7 of the 8 pairs (.4 < .45)
    assert metrics["auroc"] == pytest.approx(7 / 8)

    # with every label known (bool or float), the metrics of the whole set as before
    full = np.array([True, False, True, True, False, False, True, True])
    for given in (full, full.astype(np.float64)):
        metrics = division_metrics(division, given)
        assert metrics["auroc"] == roc_auc_score(full, clean_prob)
        assert metrics["precision"] == full[labelled].mean()
        assert metrics["recall"] == full[labelled].sum() / full.sum()

    # known labels all right: no AUROC; none known among the labelled: no precision
    only = np.array([1.0, nan, nan, nan, nan, nan, 1.0, nan])
    metrics = division_metrics(division, only)
    assert math.isnan(metrics["auroc"]) and metrics["precision"] == 1.0
    assert metrics["recall"] == 0.5
    none_labelled = np.array([nan, 0.0, nan, nan, 1.0, nan, nan, nan])
    assert math.isnan(division_metrics(division, none_labelled)["precision"])


# --------------------------------------------------------------------------- label precision


def test_coteaching_label_precision_counts_the_known_kept_samples_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nan = math.nan
    data = _tiny_images()
    fixed = data.batch(torch.arange(8))
    monkeypatch.setattr(data, "batch", lambda idx, augment=False, generator=None: fixed[idx])
    correct = np.array([1.0, nan, 0.0, nan, 1.0, 1.0, nan, 0.0])
    models = [_linear(0), _linear(1)]
    method = CoTeaching(data, models, Precision(torch.device("cpu")), forget_rate=0.5,
                        num_gradual=1, batch_size=8, correct=correct)
    method.start_epoch(1)
    (_, batch), _ = list(method.batches(1))[:2]
    _, metrics_1 = method.loss(0, models[0], batch, 1)
    _, metrics_2 = method.loss(1, models[1], batch, 1)
    y = data.labels[batch]
    _, _, kept_1, kept_2 = coteaching_losses(models[0](fixed[batch]), models[1](fixed[batch]),
                                             y, 0.5)
    for metrics, kept in ((metrics_1, kept_1), (metrics_2, kept_2)):
        chosen = correct[batch[kept].numpy()]
        known = chosen[~np.isnan(chosen)]
        assert len(known)  # this batch keeps some known labels (seeded)
        assert metrics["label_precision"] == pytest.approx(known.mean() * 8)
        assert metrics["label_precision_count"] == 8

    # a step that keeps no known label reports no precision (not NaN, not 0)
    method = CoTeaching(data, models, Precision(torch.device("cpu")), forget_rate=0.5,
                        num_gradual=1, batch_size=8, correct=np.full(8, nan))
    method.start_epoch(1)
    _, metrics = method.loss(0, models[0], batch, 1)
    assert "label_precision" not in metrics and "label_precision_count" not in metrics


def test_method_column_averages_over_the_steps_that_reported() -> None:
    # 3 steps of 8: precision 0.5 and 1.0 in two, none in the third -> 0.75, not 0.5
    count = 24
    stats = {"loss": 1.0, "label_precision": (0.5 * 8 + 1.0 * 8) / count,
             "label_precision_count": 16 / count}
    assert method_column(stats, {}, "label_precision") == pytest.approx(0.75)
    assert math.isnan(method_column({"loss": 1.0}, {}, "label_precision"))
    # every step reported: exactly the loop's mean (a full truth file's value as before)
    full = {"label_precision": 0.1 + 0.2, "label_precision_count": 1.0}
    assert method_column(full, {}, "label_precision") == 0.1 + 0.2
    assert method_column({}, {"estimated_noise_rate": 0.3}, "estimated_noise_rate") == 0.3


# --------------------------------------------------------------------------- real runs


def _sample(truth: dict[str, str]) -> dict[str, str]:
    """A third of the images, plus a row for an image that is not in the folder."""
    return {**{p: truth[p] for p in sorted(truth)[::3]}, "0/not_there.png": "7"}


@pytest.mark.parametrize("method", ["coteaching", "dividemix"])
def test_train_with_a_truth_file_for_a_sample(
    method: str, digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    sample = _sample(truth)
    n = len(sample) - 1
    wrong = sum(path.split("/")[0] != label for path, label in sample.items()
                if path in truth)
    csv = write_truth(tmp_path / "truth.csv", sample)
    out = tmp_path / "out"
    loud = [arg for arg in TINY if arg != "--quiet"]
    result = _train(root, "--out", out, "--method", method, "--truth", csv, *loud)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (f"truth: {n} of {len(truth)} training images have a truth row; 1 truth row(s) "
            "name no training image (ignored)") in text

    history = pd.read_csv(out / "history.csv")
    if method == "coteaching":
        assert history["label_precision"].between(0, 1).all()
    else:
        mixing = history[history["phase"] == "dividemix"]
        assert len(mixing) == 1
        for k in (1, 2):
            for key in ("auroc", "precision", "recall"):
                assert mixing[f"div_{key}_{k}"].between(0, 1).all()
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["truth_metrics"]
    assert metrics["n"] == n == 40 and metrics["n_wrong"] == wrong
    assert summary["counts"]["used"] == len(truth)


def test_a_truth_file_for_no_training_image_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    elsewhere = {f"other/{path}": label for path, label in truth.items()}
    csv = write_truth(tmp_path / "truth.csv", elsewhere)
    result = _train(root, "--out", tmp_path / "out", "--method", "coteaching", "--truth", csv,
                    *TINY)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"has no row for any of the {len(truth)} training images" in text
    assert "Traceback" not in result.output


def test_train_with_no_class_truth_labels(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A real run whose truth file says two images are of none of the classes: they count
    as wrong labels in the summary's metrics; without --truth, --no-class is refused."""
    root, truth = digits_folder
    outliers = sorted(truth)[:2]
    csv = write_truth(tmp_path / "truth.csv",
                      {p: ("none" if p in outliers else label) for p, label in truth.items()})
    wrong = sum(p in outliers or p.split("/")[0] != label for p, label in truth.items())
    out = tmp_path / "out"
    result = _train(root, "--out", out, "--method", "coteaching", "--truth", csv,
                    "--no-class", "none", *TINY)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "summary.json").read_text())["truth_metrics"]
    assert (metrics["n_wrong"], metrics["n_no_class"]) == (wrong, 2)
    assert json.loads((out / "summary.json").read_text())["settings"]["no_class"] == ["none"]
    refused = _train(root, "--out", tmp_path / "o2", "--method", "coteaching", "--no-class",
                     "none", *TINY)
    assert refused.exit_code == 2
    assert "--no-class names labels of a --truth file" in " ".join(refused.output.split())
