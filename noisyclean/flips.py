"""Ranking by the flip posterior, where labels were flipped systematically.

The scan's score (the loss plus the class-calibrated margin) asks whether *some* other class
fits an image better than its label. Where a true class was given another label for a large
share of its images (truck -> automobile for 40% of the trucks, cat <-> dog), that question
ranks poorly: the images of a class that receives no flips but looks like one that does
(birds, like airplanes) are flagged as readily as the flipped ones, and within a receiving
class every look-alike counts, not only the class it receives flips from.

The noise transition matrix answers the sharper question. With ``p`` the network's
class-calibrated probabilities (each class's probability divided by its confident-learning
threshold, renormalised) and ``T[j, i] = P(given i | true j)``, Bayes' rule gives the
probability that a sample given label ``i`` was flipped there from another class::

    P(flipped | x, given i) = 1 - p_i T[i, i] / sum_j p_j T[j, i]

``T`` here is the :func:`~noisyclean.confident_joint.structured_part` of the confident
joint's transition matrix, keeping only flips of at least :data:`FLIP_RANK_MIN` of a class:
a class that receives no such flip gets 0 for every sample, and with no flip anywhere the
ranking is the score's alone. Where there are flips, samples are ranked by the normalised
sum of the score and this posterior; the cut (how many are flagged) is left as it was, and
the clean probabilities are re-assigned in the new order (:func:`rerank`). Measured in
``benchmarks/RESULTS.md`` ("Ranking by the flip posterior").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .confident_joint import structured_part, transition_matrix
from .mixture import normalise_losses
from .thresholds import class_thresholds

#: Smallest share of a true class given one other label (above the row's background) that
#: the ranking treats as a systematic flip. Higher than the forward correction's
#: :data:`~noisyclean.confident_joint.MIN_FLIP`: on 20% symmetric noise the confident joint
#: found a spurious flip of 0.15 (dog -> cat), and re-ranking by it cost 0.022 best-cut
#: F1, while the real flips it should act on (class flips of 40%, CIFAR-10N's truck <->
#: automobile) were estimated at 0.20 to 0.43.
FLIP_RANK_MIN = 0.2


def calibrated_probs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each class's probability divided by its threshold
    (:func:`~noisyclean.thresholds.class_thresholds`), rows renormalised to sum to 1."""
    scaled = np.asarray(probs, dtype=np.float64) / class_thresholds(probs, labels)
    return scaled / np.maximum(scaled.sum(axis=1, keepdims=True), 1e-300)


def flip_posterior(probs: np.ndarray, labels: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """``P(flipped | x, given label)`` by Bayes' rule (module docstring).

    Args:
        probs: ``(n, C)`` probabilities of the true class (used as given; the ranking
            passes :func:`calibrated_probs`).
        labels: ``(n,)`` given labels.
        transition: ``(C, C)`` row-stochastic ``T[j, i] = P(given i | true j)``.

    Returns:
        ``(n,)`` probabilities in ``[0, 1]``; 0 where no class flips into the given label,
        and where the denominator is 0 (no class that could give this label is predicted).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    transition = np.asarray(transition, dtype=np.float64)
    rows = np.arange(len(labels))
    kept = probs[rows, labels] * transition[labels, labels]
    total = (probs * transition[:, labels].T).sum(axis=1)
    ratio = np.divide(kept, total, out=np.ones_like(total), where=total > 0)
    return np.clip(1.0 - ratio, 0.0, 1.0)


def rerank(clean_prob: np.ndarray, rank_score: np.ndarray) -> np.ndarray:
    """Give the clean probabilities, sorted, to the samples in the order of ``rank_score``:
    the highest score gets the lowest clean probability, and so on (ties keep the old
    order). The values and so the number below any threshold are unchanged.

    Args:
        clean_prob: ``(n,)`` clean probabilities.
        rank_score: ``(n,)`` the new ranking (higher = more suspicious).

    Returns:
        ``(n,)`` clean probabilities.

    Raises:
        ValueError: for shapes that differ.
    """
    clean_prob = np.asarray(clean_prob, dtype=np.float64)
    rank_score = np.asarray(rank_score, dtype=np.float64)
    if clean_prob.shape != rank_score.shape:
        raise ValueError(
            f"clean_prob and rank_score differ in shape: {clean_prob.shape} != "
            f"{rank_score.shape}"
        )
    order = np.lexsort((clean_prob, -rank_score))  # most suspicious first
    out = np.empty_like(clean_prob)
    out[order] = np.sort(clean_prob)
    return out


def systematic_flips(transition: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """The off-diagonal entries of ``transition`` as ``{"true", "given", "share"}`` rows,
    largest first (``summary.json["cut"]["flip_ranking"]["flips"]``)."""
    transition = np.asarray(transition)
    pairs = [
        {"true": classes[j], "given": classes[i], "share": round(float(transition[j, i]), 3)}
        for j in range(len(classes))
        for i in range(len(classes))
        if i != j and transition[j, i] > 0
    ]
    return sorted(pairs, key=lambda row: -row["share"])


def flip_ranking(
    clean_prob: np.ndarray,
    score: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    min_flip: float = FLIP_RANK_MIN,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Re-rank by the score plus the flip posterior where the confident joint finds
    systematic flips (module docstring); otherwise return the clean probabilities as they
    are.

    Args:
        clean_prob: ``(n,)`` clean probabilities after the cut.
        score: ``(n,)`` the scan's noise score in ``[0, 1]`` (higher = more suspicious).
        probs: ``(n, C)`` predicted probabilities (the networks' average).
        labels: ``(n,)`` given labels.
        classes: class names, for the summary.
        min_flip: smallest flip acted on.

    Returns:
        The clean probabilities (re-ranked, or unchanged) and a summary: whether the
        ranking changed and the flips it used.
    """
    probs = np.asarray(probs, dtype=np.float64)
    transition = structured_part(transition_matrix(probs, labels), min_flip)
    flips = systematic_flips(transition, classes)
    if not flips:
        return np.asarray(clean_prob, dtype=np.float64).copy(), {"used": False, "flips": []}
    posterior = flip_posterior(calibrated_probs(probs, labels), labels, transition)
    ranked = rerank(clean_prob, normalise_losses(np.asarray(score) + posterior))
    return ranked, {"used": True, "flips": flips}
