"""How many labels are wrong: the calibrated confident joint of confident learning
(Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021, section 3.1).

The scan's mixture decides which samples to flag, and the share it flags is a poor count
of the wrong labels at low noise rates: hard but correctly labelled images fall on the
noisy side, so it flags 1.5 to 3 times too many (``benchmarks/RESULTS.md``). The confident
joint counts differently. A sample labelled ``i`` is counted as truly ``j`` when the
network's probability of ``j`` reaches class ``j``'s own threshold ``t_j`` (the mean
probability of ``j`` over the samples labelled ``j``); when several classes reach their
thresholds, the most probable of them wins, and a sample that reaches none is not counted.
The counts are then calibrated so that each row sums to the number of samples with that
given label. The off-diagonal mass is the estimated number of wrong labels: a figure for
planning review (how far down ``scores.csv`` to go), not a per-sample decision.

The same joint, normalised per true class, is a noise transition matrix
(:func:`transition_matrix`); its systematic flips (:func:`structured_part`) are what the
scan's forward loss correction trains with (``scan --correction forward``), with part of
its spread-out noise (:func:`with_background`) under ``--correction forward+background``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .thresholds import class_thresholds


def checked_inputs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` as float64 and ``labels`` as int64 arrays, checked (:func:`confident_joint`'s
    Raises): a wrong input would otherwise give a plausible but wrong count."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(f"probs must be (n, C) and labels (n,); got {probs.shape} and "
                         f"{labels.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1 + 1e-6).any():
        raise ValueError("probs must be probabilities in [0, 1] (not NaN, infinite or "
                         "log-probabilities)")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)
                        or labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class indices in 0..{probs.shape[1] - 1}")
    return probs, labels.astype(np.int64)


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts ``C[i, j]`` of samples labelled ``i`` whose confident class is ``j``.

    Args:
        probs: ``(n, C)`` predicted probabilities (out of sample, or from a network that
            has not memorised its labels, as the scan's warm-up).
        labels: ``(n,)`` given labels.

    Returns:
        ``(C, C)`` integer counts; samples with no class at or above its threshold are left
        out, so rows can sum to less than the class sizes.

    Raises:
        ValueError: ``probs`` that are not an ``(n, C)`` array of probabilities (NaN,
            infinite, negative or above 1: log-probabilities, say), or ``labels`` that are
            not ``n`` class indices in ``0..C-1``.
    """
    probs, labels = checked_inputs(probs, labels)
    num_classes = probs.shape[1]
    confident = probs >= class_thresholds(probs, labels) - 1e-9
    masked = np.where(confident, probs, -np.inf)
    counted = confident.any(axis=1)
    true_guess = masked.argmax(axis=1)
    joint = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], true_guess[counted]), 1)
    return joint


def calibrated_joint(counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The joint distribution ``Q[i, j]`` of given label ``i`` and true label ``j``: each row of
    ``counts`` rescaled to the number of samples labelled ``i``, then divided by ``n``.

    Every class with samples has a counted sample (the one most confident in it reaches
    the mean), so only the rows of empty classes are zero.

    Args:
        counts: ``(C, C)`` :func:`confident_joint` counts.
        labels: ``(n,)`` given labels.

    Returns:
        ``(C, C)`` probabilities summing to 1 (0 for an empty input).
    """
    counts = np.asarray(counts, dtype=np.float64)
    num_classes = counts.shape[0]
    sizes = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(float)
    rows = counts.sum(axis=1)
    joint = counts / np.maximum(rows, 1.0)[:, None] * sizes[:, None]
    total = joint.sum()
    return joint / total if total > 0 else joint


def noise_rate(probs: np.ndarray, labels: np.ndarray) -> float:
    """The estimated share of wrong labels: the off-diagonal mass of the calibrated
    confident joint (the ``rate`` of :func:`estimate_wrong_labels`).

    Args:
        probs: ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.
    """
    labels = np.asarray(labels, dtype=np.int64)
    joint = calibrated_joint(confident_joint(probs, labels), labels)
    return float(joint.sum() - np.trace(joint))


def estimate_wrong_labels(
    probs: np.ndarray, labels: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """The estimated number and share of wrong labels, overall and per given class
    (``summary.json["estimated_wrong_labels"]``).

    Args:
        probs: ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.
        classes: the ``C`` class names.

    Returns:
        ``{"method", "count", "rate", "per_class": {name: rate or None}}``; a class with no
        samples has rate ``None``.

    Raises:
        ValueError: inputs :func:`confident_joint` refuses, or not ``C`` class names.
    """
    if len(classes) != np.shape(probs)[-1]:
        raise ValueError(f"classes must name the {np.shape(probs)[-1]} columns of probs, "
                         f"got {len(classes)} names")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    joint = calibrated_joint(confident_joint(probs, labels), labels)
    # the off-diagonal entries summed (not the total less the trace, whose rounding left
    # -2e-16 where no label was counted wrong, shown as "-0.0%")
    off = joint * (1 - np.eye(len(joint)))
    wrong = float(off.sum())
    row, row_off = joint.sum(axis=1), off.sum(axis=1)
    per_class = {
        name: (float(row_off[k] / row[k]) if row[k] > 0 else None)
        for k, name in enumerate(classes)
    }
    return {
        "method": "calibrated confident joint (Northcutt et al. 2021)",
        "count": int(round(wrong * n)),
        "rate": wrong,
        "per_class": per_class,
    }


def networks_estimate(
    network_probs: Sequence[np.ndarray], labels: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """:func:`estimate_wrong_labels` of a table made by one network or several: with
    several, the mean of each network's own estimate (its ``rate`` and per-class rates;
    ``count`` is the mean rate times the samples, rounded), not the estimate on their
    averaged predictions. Averaging moves the per-class thresholds and which predictions
    reach them, so that estimate is another number; for two small CNNs on CIFAR-10 it ran
    95-166 lower than the mean of their own (CIFAR-10N worst: 3,663 and 3,726 each, 3,528
    on their average), enough to move the arbitrated cut across halfway
    (``benchmarks/RESULTS.md``, "Two networks' estimate of wrong labels: rule N").

    Args:
        network_probs: per network, ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.
        classes: the ``C`` class names.
    """
    estimates = [estimate_wrong_labels(probs, labels, classes) for probs in network_probs]
    if len(estimates) == 1:
        return estimates[0]
    rate = float(np.mean([e["rate"] for e in estimates]))
    per_class = {}
    for name in classes:
        rates = [e["per_class"][name] for e in estimates]
        per_class[name] = None if None in rates else float(np.mean(rates))
    return {
        "method": f"calibrated confident joint (Northcutt et al. 2021), the mean of "
                  f"{len(estimates)} networks' own",
        "count": int(round(rate * len(labels))),
        "rate": rate,
        "per_class": per_class,
    }


def transition_matrix(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The noise transition matrix ``T[j, i] = P(given label i | true label j)`` implied by
    the calibrated confident joint: each column ``j`` of :func:`calibrated_joint` divided by
    its sum. A true class that no sample is counted as keeps an identity row.

    Forward loss correction (Patrini et al. 2017) trains on ``softmax(logits) @ T`` against
    the given labels, so that the softmax itself estimates the true label.

    Args:
        probs: ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.

    Returns:
        ``(C, C)`` row-stochastic matrix.
    """
    labels = np.asarray(labels, dtype=np.int64)
    joint = calibrated_joint(confident_joint(probs, labels), labels)
    mass = joint.sum(axis=0)
    num_classes = joint.shape[0]
    transition = np.eye(num_classes)
    seen = mass > 0
    transition[seen] = (joint[:, seen] / mass[seen]).T
    return transition


#: Smallest share of a class flipped to one other class (above the row's background) that
#: :func:`structured_part` keeps as a systematic flip.
MIN_FLIP = 0.1


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """Each row of a square ``(C, C)`` matrix without its diagonal entry: ``(C, C - 1)``."""
    num_classes = matrix.shape[0]
    return matrix[~np.eye(num_classes, dtype=bool)].reshape(num_classes, num_classes - 1)


def structured_part(transition: np.ndarray, min_flip: float = MIN_FLIP) -> np.ndarray:
    """Keep only the systematic flips of a transition matrix. From each row's off-diagonal
    entries their median is subtracted (the spread-out part, which the confident joint also
    counts for hard but correctly labelled images); what is left is kept where it reaches
    ``min_flip`` (smaller values are within the estimate's noise on classes of a few hundred
    images) and dropped elsewhere; the rest of the row goes on the diagonal. Symmetric noise
    maps to the identity; a row with a strong flip keeps that flip, less the background.
    A row whose diagonal would end below one of its flips (most of a class labelled as
    another) keeps none: the confident joint counts a class by the network's own
    prediction, so such a row says more about a network that has not learned the class
    than about the labels, and forward correction cannot tell the class from the one it
    is flipped to.

    Args:
        transition: ``(C, C)`` row-stochastic matrix.
        min_flip: smallest flip kept.

    Returns:
        ``(C, C)`` row-stochastic matrix.
    """
    transition = np.asarray(transition, dtype=np.float64)
    num_classes = transition.shape[0]
    off = ~np.eye(num_classes, dtype=bool)
    rows = _off_diagonal(transition)
    excess = rows - np.median(rows, axis=1, keepdims=True)
    flips = np.zeros_like(transition)
    flips[off] = np.where(excess >= min_flip, excess, 0.0).ravel()
    dominated = 1.0 - flips.sum(axis=1) < flips.max(axis=1)
    flips[dominated] = 0.0
    return flips + np.diag(1.0 - flips.sum(axis=1))


#: The share of each row's spread-out part (its median off-diagonal entry) that
#: :func:`with_background` puts back under the systematic flips. The whole median
#: over-corrected (the confident joint mid-run counts hard clean images as noise too): on
#: CIFAR-10N worst it lowered the AUROC of the scan's ranking by 0.013-0.020, where half of
#: it raised it by 0.001-0.005 (``benchmarks/RESULTS.md``, "Forward correction with a
#: background").
BACKGROUND_SHARE = 0.5


def with_background(
    structured: np.ndarray, transition: np.ndarray, share: float = BACKGROUND_SHARE
) -> np.ndarray:
    """The systematic flips plus part of the spread-out noise: each row of ``structured``
    (:func:`structured_part` of ``transition``) gets ``share`` times the median
    off-diagonal entry of the same row of ``transition`` on every other class, taken from
    its diagonal. :func:`structured_part` drops that spread-out part because the confident
    joint overstates it; but labels wrong in every direction (annotators' errors, symmetric
    noise) are real, and a network corrected only for the flips learns them. Trained with
    this matrix, the network can explain a share of any label as noise, so it is pulled less
    towards the wrong ones. Symmetric noise maps to a uniform background.

    Each row's background is capped so that its diagonal stays at least as large as every
    other entry (forward correction cannot tell a class from one it is mostly flipped to).

    Args:
        structured: ``(C, C)`` the systematic flips (row-stochastic).
        transition: ``(C, C)`` the estimated matrix they were taken from.
        share: the share of each row's median off-diagonal entry added, in ``[0, 1]``.

    Returns:
        ``(C, C)`` row-stochastic matrix.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be in [0, 1]")
    structured = np.asarray(structured, dtype=np.float64)
    transition = np.asarray(transition, dtype=np.float64)
    num_classes = structured.shape[0]
    if num_classes < 2:
        return structured.copy()
    off = ~np.eye(num_classes, dtype=bool)
    median = np.median(_off_diagonal(transition), axis=1)
    diagonal = np.diag(structured)
    largest = _off_diagonal(structured).max(axis=1)
    # after adding b everywhere off the diagonal: diagonal - (C-1) b >= largest + b
    room = np.maximum(diagonal - largest, 0.0) / num_classes
    background = np.minimum(share * median, room)
    out = structured + background[:, None] * off
    out[np.diag_indices(num_classes)] = diagonal - (num_classes - 1) * background
    return out


def flipped_classes(transition: np.ndarray) -> int:
    """How many true classes a transition matrix flips at all (rows off the identity): 0
    means forward correction would change nothing."""
    return int((np.diag(np.asarray(transition)) < 1.0).sum())
