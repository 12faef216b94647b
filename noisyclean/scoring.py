"""From per-sample signals to the per-sample table: the division step shared by ``scan`` and
``train``.

Each network contributes a noise score per sample in ``[0, 1]`` (its normalised loss,
averaged over its last epochs) and its predictions. A two-component mixture is fit to each
network's scores; the clean probability of a sample is the average of what the networks'
mixtures say, and the predictions are averaged too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .confident_joint import networks_estimate
from .cut import CUTS, arbitrated_cut
from .flips import flip_ranking, rerank
from .mixture import MixtureFit, fit_mixture
from .outputs.table import build_table, label_matrix, noise_rates
from .signals import Signals


@dataclass
class Scores:
    """The result of :func:`score_samples`.

    Attributes:
        table: the per-sample table (``scores.csv``), most suspicious first.
        fits: one mixture fit per network (``summary.json["mixture"]``).
        probs: ``(n, C)`` the networks' averaged predicted probabilities, in sample order
            (what the table's predictions come from).
        cut: how the flag count was chosen (``summary.json["cut"]``).
        estimate: the confident joint's estimate of wrong labels
            (:func:`~noisyclean.confident_joint.networks_estimate`;
            ``summary.json["estimated_wrong_labels"]``).
    """

    table: pd.DataFrame
    fits: list[MixtureFit]
    probs: np.ndarray
    cut: dict[str, Any]
    estimate: dict[str, Any]


def score_samples(
    paths: list[str],
    labels: np.ndarray,
    classes: list[str],
    fit_inputs: list[np.ndarray],
    signals: list[Signals],
    mixture: str = "gmm",
    threshold: float = 0.5,
    relabel_threshold: float = 0.7,
    seed: int = 0,
    cut: str = "mixture",
    flips: bool = False,
    order_inputs: list[np.ndarray] | None = None,
) -> Scores:
    """Fit the mixtures and build the per-sample table.

    Args:
        paths: sample paths, row order.
        labels: given label index per sample.
        classes: class names.
        fit_inputs: per network, ``(n,)`` noise scores in ``[0, 1]`` (higher = more likely
            mislabelled) to fit the mixture on.
        signals: per network, the final losses and predicted probabilities.
        mixture: ``"gmm"`` or ``"bmm"``.
        threshold: clean probability below which a sample is flagged.
        relabel_threshold: prediction confidence needed to suggest a new label.
        seed: mixture random state.
        cut: ``"mixture"`` (flag where the clean probability is below ``threshold``) or
            ``"arbitrated"`` (:func:`~noisyclean.cut.arbitrated_cut`: the count of the
            mixture on these scores or of one on the loss alone, whichever the confident
            joint's estimate is closer to).
        flips: where the confident joint finds systematic flips, re-rank the samples by
            the score plus the flip posterior (:func:`~noisyclean.flips.flip_ranking`),
            keeping the cut's count; recorded as ``cut["flip_ranking"]``.
        order_inputs: per network, ``(n,)`` scores to order the samples by, where that is
            not ``fit_inputs`` (:func:`~noisyclean.signals.order_score`): after the cut,
            the clean probabilities are given, sorted, to the samples in the order of the
            networks' mean (:func:`~noisyclean.flips.rerank`), so the count flagged stays
            the cut's; the flip ranking then adds its posterior to this score. Recorded as
            ``cut["order"]``: ``"order_score"``, or ``"fit_score"`` without it.

    Returns:
        :class:`Scores`; the table has a ``fit_loss`` column with the networks' mean
        ``fit_inputs`` (what the mixture saw, for histograms).
    """
    fits = [fit_mixture(x, mixture, random_state=seed) for x in fit_inputs]
    clean_prob = np.mean([fit.clean_prob for fit in fits], axis=0)
    per_sample_loss = np.mean([s.per_sample_loss for s in signals], axis=0)
    probs = np.mean([s.probs for s in signals], axis=0)
    fit_loss = np.mean(fit_inputs, axis=0)
    if cut not in CUTS:
        raise ValueError(f"unknown cut {cut!r}; valid cuts are {list(CUTS)}")
    estimate = networks_estimate([s.probs for s in signals], labels, classes)
    if cut == "arbitrated":
        clean_prob, cut_summary = arbitrated_cut(
            clean_prob, fit_loss, probs, labels, mixture, threshold, seed,
            n_estimate=estimate["count"],
        )
    else:
        cut_summary = {"rule": "mixture", "flagged": int((clean_prob < threshold).sum())}
    order = fit_loss
    cut_summary["order"] = "fit_score"
    if order_inputs is not None:
        order = np.mean(order_inputs, axis=0)
        clean_prob = rerank(clean_prob, order)
        cut_summary["order"] = "order_score"
    if flips:
        clean_prob, cut_summary["flip_ranking"] = flip_ranking(
            clean_prob, order, probs, labels, classes
        )
    table = build_table(
        paths,
        labels,
        classes,
        per_sample_loss,
        clean_prob,
        probs,
        threshold,
        relabel_threshold,
        fit_loss=fit_loss,
    )
    return Scores(table, fits, probs, cut_summary, estimate)


def table_summary(table: pd.DataFrame, classes: list[str], found: int, skipped: int) -> dict:
    """Counts, estimated noise rates and the label matrix of a per-sample table."""
    counts: dict[str, Any] = {
        "found": found,
        "used": len(table),
        "skipped": skipped,
        "noisy": int(table["is_noisy"].sum()),
        "keep": int((table["action"] == "keep").sum()),
        "relabel": int((table["action"] == "relabel").sum()),
        "review": int((table["action"] == "review").sum()),
        "per_class": {c: int((table["label"] == c).sum()) for c in classes},
    }
    return {
        "counts": counts,
        "classes": classes,
        "estimated_noise_rate": noise_rates(table, classes),
        "label_matrix": label_matrix(table, classes),
    }
