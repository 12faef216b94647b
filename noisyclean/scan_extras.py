"""The scan's alternatives to its in-sample losses, ``--signal aum`` (:mod:`noisyclean.aum`)
and ``--folds K`` (:mod:`noisyclean.folds`), each ending in the same per-sample table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .aum import aum_scores
from .config import ScanConfig
from .cut import effective_cut
from .data.load import Dataset
from .folds import cross_validated_signals
from .mixture import MixtureFit, normalise_losses
from .outputs.table import build_table
from .progress import Progress
from .scoring import score_samples
from .signals import network_scores


@dataclass
class ExtraScores:
    """A per-sample table made another way than from in-sample losses.

    Attributes:
        table: the per-sample table (``scores.csv``).
        fits: the mixture fits (none for AUM, whose cut comes from threshold samples).
        probs: ``(n, C)`` predicted probabilities in sample order.
        log: the per-epoch training log.
        summary: what goes into ``summary.json`` under its own key.
    """

    table: pd.DataFrame
    fits: list[MixtureFit]
    probs: np.ndarray
    log: list[dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)
    #: how the flag count was chosen (``summary.json["cut"]``)
    cut: dict[str, Any] = field(default_factory=dict)
    #: the confident joint's estimate of wrong labels where the table's scoring made it
    #: (``--folds``: :attr:`~noisyclean.scoring.Scores.estimate`); None: from ``probs``
    estimate: dict[str, Any] | None = None


def uses_extra_scores(config: ScanConfig) -> bool:
    """Whether the scan takes :func:`extra_scores` instead of its in-sample losses."""
    return config.signal == "aum" or config.folds > 1


def extra_scores(dataset: Dataset, config: ScanConfig, progress: Progress) -> ExtraScores:
    """Score every sample with AUM (``config.signal == "aum"``) or with K-fold
    out-of-sample signals (``config.folds > 1``).

    Args:
        dataset: the decoded dataset.
        config: the scan's settings (``epochs`` resolved).
        progress: progress display.

    Returns:
        :class:`ExtraScores`.
    """
    data, classes, labels = dataset.data, dataset.classes, dataset.labels
    if config.signal == "aum":
        result = aum_scores(data, len(classes), config, dataset.precision, progress)
        table = build_table(
            dataset.paths, labels, classes, result.signals.per_sample_loss,
            result.clean_prob, result.signals.probs, config.threshold,
            config.relabel_threshold, fit_loss=normalise_losses(-result.distance),
        )
        return ExtraScores(table, [], result.signals.probs, result.log,
                           {"aum": result.summary()},
                           {"rule": "aum", "flagged": int(table["is_noisy"].sum())})
    signals, log, assignment = cross_validated_signals(
        data, len(classes), config, dataset.precision, progress
    )
    fit_inputs, order_inputs = network_scores(signals, labels, config.signal, config.fusion)
    scores = score_samples(
        dataset.paths, labels, classes, fit_inputs, signals,
        mixture=config.mixture, threshold=config.threshold,
        relabel_threshold=config.relabel_threshold, seed=config.seed,
        cut=effective_cut(config.cut, config.signal), flips=config.flip_ranking,
        order_inputs=order_inputs,
    )
    summary = {"folds": {"k": config.folds,
                         "sizes": np.bincount(assignment, minlength=config.folds).tolist()}}
    return ExtraScores(scores.table, scores.fits, scores.probs, log, summary, scores.cut,
                       scores.estimate)
