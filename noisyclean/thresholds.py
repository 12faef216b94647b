"""Per-class confidence thresholds of confident learning (Northcutt et al. 2021), and the
class-calibrated margin built on them."""

from __future__ import annotations

import numpy as np


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class confidence thresholds of confident learning (Northcutt et al. 2021):
    ``t[k]`` is the mean predicted probability of class ``k`` over the samples labelled
    ``k`` (1.0 for a class with no samples).

    Args:
        probs: ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.

    Returns:
        ``(C,)`` thresholds, each at least ``1e-6``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probs.shape[1]
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)
    return np.maximum(thresholds, 1e-6)


def calibrated_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class-calibrated margin against the given label:
    ``max_{k != y} p_k / t_k - p_y / t_y`` with ``t`` from :func:`class_thresholds`.

    Positive where some other class is predicted more confidently, relative to how
    confidently that class is usually predicted, than the given one. Dividing by the class
    thresholds is what lets it see class-dependent noise (truck images labelled
    automobile), which a loss ranking over all classes misses.

    Args:
        probs: ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.

    Returns:
        ``(n,)`` margins (higher = more likely mislabelled).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    scaled = probs / class_thresholds(probs, labels)
    given = scaled[rows, labels].copy()
    scaled[rows, labels] = -np.inf
    return scaled.max(axis=1) - given
