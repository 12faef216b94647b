"""The calibrated confident joint against hand-computed cases, and the estimate a real scan
writes into ``summary.json``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from noisyclean.confident_joint import (
    calibrated_joint,
    confident_joint,
    estimate_wrong_labels,
    networks_estimate,
)


def test_two_confident_classes_go_to_the_more_probable_one() -> None:
    """Thresholds (mean probability of a class over the samples labelled with it):
    t0 = (0.5 + 0.4) / 2 = 0.45, t1 = (0.4 + 0.3) / 2 = 0.35, t2 = 0.8.

    sample  given  probs              at or above its class threshold   counted as
    0       0      0.50 0.45 0.05     0 and 1                           0 (more probable)
    1       0      0.40 0.10 0.50     none                              not counted
    2       1      0.10 0.40 0.50     1                                 1
    3       1      0.60 0.30 0.10     0                                 0
    4       2      0.10 0.10 0.80     2                                 2
    """
    probs = np.array([[0.5, 0.45, 0.05], [0.4, 0.1, 0.5], [0.1, 0.4, 0.5],
                      [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 0, 1, 1, 2])
    counts = confident_joint(probs, labels)
    np.testing.assert_array_equal(counts, [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    # rows rescaled to the class sizes (2, 2, 1): [2 0 0], [1 1 0], [0 0 1]; total 5
    np.testing.assert_allclose(calibrated_joint(counts, labels),
                               np.array([[2, 0, 0], [1, 1, 0], [0, 0, 1]]) / 5)
    estimate = estimate_wrong_labels(probs, labels, ["a", "b", "c"])
    assert estimate["count"] == 1
    assert estimate["rate"] == pytest.approx(0.2)
    assert estimate["per_class"] == pytest.approx({"a": 0.0, "b": 0.5, "c": 0.0})


def test_a_class_counts_only_where_it_reaches_its_own_threshold() -> None:
    """The most probable class is not enough: sample 1 is counted as class 1 (0.4 reaches
    t1 = 0.3) although class 0 is more probable (0.5 is below t0 = 0.6).

    t0 = (0.7 + 0.5) / 2 = 0.6, t1 = (0.3 + 0.3) / 2 = 0.3, t2 = 0.8; counts
    [[1 1 0], [0 2 0], [0 0 1]]; rescaled to sizes (2, 2, 1) they stay the same, so one
    of five labels is wrong, half of class 0's.
    """
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6],
                      [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    labels = np.array([0, 0, 1, 1, 2])
    np.testing.assert_array_equal(confident_joint(probs, labels),
                                  [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    estimate = estimate_wrong_labels(probs, labels, ["a", "b", "c"])
    assert (estimate["count"], estimate["rate"]) == (1, pytest.approx(0.2))
    assert estimate["per_class"] == pytest.approx({"a": 0.5, "b": 0.0, "c": 0.0})


def test_calibration_rescales_each_row_to_its_class_size() -> None:
    """Class 0 has 6 samples of which 2 are counted, one as class 1: the estimate is that
    half of class 0 (3 samples) is wrong, not one sample. An empty class gets no rate."""
    counts = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    labels = np.array([0] * 6 + [1] * 2)
    joint = calibrated_joint(counts, labels)
    np.testing.assert_allclose(joint, np.array([[3, 3, 0], [0, 2, 0], [0, 0, 0]]) / 8)
    probs = np.zeros((8, 3))
    probs[:, 0] = 1.0
    estimate = estimate_wrong_labels(probs, labels, ["a", "b", "c"])
    assert estimate["per_class"]["c"] is None


def test_clean_confident_predictions_estimate_no_wrong_label() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=200)
    probs = np.full((200, 4), 0.02)
    probs[np.arange(200), labels] = 0.94
    estimate = estimate_wrong_labels(probs, labels, list("abcd"))
    assert estimate["count"] == 0 and estimate["rate"] == 0.0


def test_symmetric_noise_is_counted_from_the_predictions() -> None:
    """Predictions that are right about the true class for every sample, with 25 of 100
    labels changed to another class: the estimate is exactly 25."""
    rng = np.random.default_rng(1)
    true = np.repeat(np.arange(4), 25)
    labels = true.copy()
    flipped = rng.choice(100, size=25, replace=False)
    labels[flipped] = (true[flipped] + rng.integers(1, 4, size=25)) % 4
    probs = np.full((100, 4), 0.1)
    probs[np.arange(100), true] = 0.7
    estimate = estimate_wrong_labels(probs, labels, list("abcd"))
    assert estimate["count"] == 25
    assert estimate["rate"] == pytest.approx(0.25)


def test_no_label_counted_wrong_gives_exactly_zero() -> None:
    """A network that fits every given label (a small clean dataset, memorised): every
    sample counts as its own class, and the estimate is 0 wrong labels at a rate of exactly
    0, overall and per class, never a rounding residue such as -2e-16 (shown as -0.0%)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 10, 1000)
        probs = np.full((1000, 10), 0.001)
        probs[np.arange(1000), labels] = 0.991
        probs += rng.uniform(0, 1e-4, probs.shape)
        probs /= probs.sum(axis=1, keepdims=True)
        estimate = estimate_wrong_labels(probs, labels, list("abcdefghij"))
        assert (estimate["count"], estimate["rate"]) == (0, 0.0)
        assert f"{estimate['rate']:.1%}" == "0.0%"
        assert set(estimate["per_class"].values()) == {0.0}


def test_two_networks_estimate_the_mean_of_their_own_estimates() -> None:
    """100 images of 2 classes, 20 wrong labels in each; every right label predicted at
    0.9. Network A is sure (1.0) of the true class of 12 wrong labels per class and unsure
    (0.5) of 8: its thresholds are (12 * 0 + 8 * 0.5 + 30 * 0.9) / 50 = 0.62, so it counts
    12 of each class's 42 confident samples wrong, 12 * 50 / 42 = 14.29 after calibration,
    28.57 in all: 29. Network B is sure of all 20: it counts 40. Together: the mean of their
    own rates (0.3429: 34), per class too; the estimate on their averaged predictions (40)
    is another number. One network's is its own estimate, unchanged."""
    labels = np.repeat([0, 1], 50)
    wrong = np.r_[np.arange(20), np.arange(50, 70)]
    probs = []
    for sure in (np.r_[np.arange(12), np.arange(50, 62)], wrong):
        p = np.zeros((100, 2))
        p[np.arange(100), labels], p[np.arange(100), 1 - labels] = 0.9, 0.1
        p[wrong] = 0.5
        p[sure, labels[sure]], p[sure, 1 - labels[sure]] = 0.0, 1.0
        probs.append(p)
    own = [estimate_wrong_labels(p, labels, ["a", "b"]) for p in probs]
    assert [e["count"] for e in own] == [29, 40]
    assert own[0]["rate"] == pytest.approx(2 * 12 * 50 / 42 / 100)
    both = networks_estimate(probs, labels, ["a", "b"])
    assert both["rate"] == pytest.approx((own[0]["rate"] + 0.4) / 2)
    assert both["count"] == 34
    assert both["per_class"] == {
        name: pytest.approx(np.mean([e["per_class"][name] for e in own])) for name in "ab"}
    assert "mean of 2 networks" in both["method"]
    assert estimate_wrong_labels(np.mean(probs, axis=0), labels, ["a", "b"])["count"] == 40
    assert networks_estimate(probs[:1], labels, ["a", "b"]) == own[0]


def test_importing_the_confident_joint_does_not_import_torch() -> None:
    """The confident joint and the flip posterior are numpy-only: importing them (in a
    fresh interpreter) must not pull in torch, which takes about a second."""
    code = "import sys, noisyclean.confident_joint, noisyclean.flips; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
