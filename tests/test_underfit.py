"""The check that a trained network learnt something before its table is trusted
(``noisyclean.underfit``), in scan, train and DivideMix's automatic penalty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.train.methods.dividemix import choose_penalty
from noisyclean.underfit import (
    agreement,
    majority_share,
    underfit_warning,
    unlearnt_classes,
)

runner = CliRunner()


def _probs(predicted: list[int], num_classes: int) -> np.ndarray:
    """One-hot-ish probabilities whose argmax is ``predicted``."""
    probs = np.full((len(predicted), num_classes), 0.1 / num_classes)
    probs[np.arange(len(predicted)), predicted] += 0.9
    return probs


def test_agreement_and_the_majority_share_by_hand() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert agreement(np.array([0, 1, 0, 1, 2, 2]), labels) == pytest.approx(4 / 6)
    assert majority_share(labels, 4) == pytest.approx(3 / 6)


def test_unlearnt_classes_by_hand() -> None:
    # 20 images labelled 0, 20 labelled 1, 20 labelled 2, 5 labelled 3
    labels = np.repeat([0, 1, 2, 3], [20, 20, 20, 5])
    # class 1 predicted for 1 image (< 0.1 * 20 = 2), class 2 for 2 (not < 2), class 3 for
    # none (but only 5 images are labelled 3: under the 10 it takes to judge)
    predicted = np.repeat([0, 1, 2], [62, 1, 2])
    assert unlearnt_classes(predicted, labels, 4) == [1]


def test_no_warning_for_a_network_that_learnt() -> None:
    labels = np.repeat([0, 1, 2], 20)
    predicted = labels.copy()
    predicted[:12] = 1  # 12 of class 0's images wrong: 48 of 60 agree
    assert underfit_warning(_probs(list(predicted), 3), labels, ["a", "b", "c"]) is None


def test_a_network_no_better_than_the_majority_class_is_named() -> None:
    labels = np.repeat([0, 1, 2], [21, 20, 19])
    # it answers class 0 for all: agreement 21/60, exactly the majority share
    warning = underfit_warning(_probs([0] * 60, 3), labels, ["cat", "dog", "fox"])
    assert warning is not None
    assert warning.startswith("the scan's predictions agree with only 35.0% of the given "
                              "labels, no more than always answering the most common class "
                              "(35.0%)")
    assert "--batch-size" in warning and "--epochs" in warning


def test_a_class_never_predicted_is_named() -> None:
    labels = np.repeat([0, 1, 2], 20)
    predicted = np.repeat([0, 1], [30, 30])  # 'fox' never: 40 of 60 agree
    warning = underfit_warning(_probs(list(predicted), 3), labels, ["cat", "dog", "fox"],
                               "the training's")
    assert warning is not None
    assert warning.startswith("the training's predictions almost never name fox (predicted "
                              "for 0 images, given to 20): the network has not learnt that "
                              "class")


def test_one_image_is_one_image() -> None:
    labels = np.repeat([0, 1, 2], 20)
    predicted = np.repeat([0, 1, 2], [30, 29, 1])
    warning = underfit_warning(_probs(list(predicted), 3), labels, ["cat", "dog", "fox"])
    assert warning is not None and "fox (predicted for 1 image, given to 20)" in warning


def test_the_automatic_penalty_stays_off_while_classes_are_unlearnt() -> None:
    # a share of 1.0 over plenty of samples would turn it on...
    on, _ = choose_penalty(0.4, 1.0, 200, 5)
    assert on
    # ...but not when the networks answer only some classes
    off, reason = choose_penalty(0.4, 1.0, 200, 5, ["cat", "ship"])
    assert not off
    assert reason.startswith("the networks almost never predict cat, ship yet")


def test_scan_warns_of_a_network_that_learnt_nothing(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """120 images in batches of 64: one step an epoch, and 3 epochs learn nothing; in
    batches of 16 the same scan learns the digits and says nothing."""
    root, _ = digits_folder
    fast = ["--width", "8", "--quiet", "--no-cache"]
    run = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "a"), "--epochs", "3",
                              *fast])
    assert run.exit_code == 0, run.output
    assert "the network has learnt next to nothing" in " ".join(run.output.split())
    run = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "b"), "--epochs", "8",
                              "--batch-size", "16", *fast])
    assert run.exit_code == 0, run.output
    assert "predictions" not in run.output


def test_train_warns_of_a_network_that_learnt_nothing(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    run = runner.invoke(app, ["train", str(root), "--method", "standard", "--epochs", "2",
                              "--width", "8", "--out", str(tmp_path / "t"), "--quiet",
                              "--no-cache"])
    assert run.exit_code == 0, run.output
    assert "the trained network's predictions" in " ".join(run.output.split())
