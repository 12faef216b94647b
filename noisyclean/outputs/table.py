"""The per-sample table (the product of a scan) and the summary built from it."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd

SCORE_COLUMNS = [
    "path",
    "label",
    "clean_prob",
    "is_noisy",
    "loss",
    "predicted",
    "predicted_prob",
    "suggested_label",
    "action",
]


def build_table(
    paths: list[str],
    labels: np.ndarray,
    classes: list[str],
    per_sample_loss: np.ndarray,
    clean_prob: np.ndarray,
    probs: np.ndarray,
    threshold: float = 0.5,
    relabel_threshold: float = 0.7,
    fit_loss: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per sample, most suspicious first.

    Args:
        paths: sample paths relative to the dataset root.
        labels: given label index per sample.
        classes: class names, indexed by label.
        per_sample_loss: cross-entropy of the given label (the raw loss, not normalised).
        clean_prob: probability that the given label is right.
        probs: predicted class probabilities (N, C).
        threshold: ``is_noisy`` is ``clean_prob < threshold``.
        relabel_threshold: a noisy sample whose prediction differs from its label with at
            least this probability is marked ``relabel`` (suggested label = prediction);
            other noisy samples are marked ``review`` and keep their label as suggestion.
        fit_loss: optional per-sample value the mixture was fit on (normalised, in [0, 1]);
            added as the ``fit_loss`` column.

    Returns:
        DataFrame with :data:`SCORE_COLUMNS` then ``given_prob`` (predicted probability of
        the given label), ``label_index`` and ``fit_loss`` (when given); sorted by
        ``clean_prob`` ascending, then ``loss`` descending.
    """
    labels = np.asarray(labels, dtype=np.int64)
    names = np.asarray(classes, dtype=object)
    predicted = probs.argmax(axis=1)
    predicted_prob = probs[np.arange(len(predicted)), predicted]
    is_noisy = clean_prob < threshold
    relabel = is_noisy & (predicted != labels) & (predicted_prob >= relabel_threshold)
    action = np.where(relabel, "relabel", np.where(is_noisy, "review", "keep"))
    suggested = np.where(relabel, predicted, labels)
    table = pd.DataFrame(
        {
            "path": paths,
            "label": names[labels],
            "clean_prob": np.clip(clean_prob, 0.0, 1.0),
            "is_noisy": is_noisy,
            "loss": per_sample_loss,
            "predicted": names[predicted],
            "predicted_prob": predicted_prob.astype(np.float64),
            "suggested_label": names[suggested],
            "action": action,
            "given_prob": probs[np.arange(len(labels)), labels].astype(np.float64),
            "label_index": labels,
        }
    )
    if fit_loss is not None:
        table["fit_loss"] = np.asarray(fit_loss, dtype=np.float64)
    return review_order(table).reset_index(drop=True)


def clean_prob_text(value: float) -> str:
    """A clean probability for people to read: three decimals, cut rather than rounded (a
    flagged 0.4999 reads 0.499, below a 0.5 threshold, not 0.500), or two significant
    digits below 0.001 (flagged rows' values go down to 1e-50 and below, which three
    decimals would all show as 0.000), ``0`` when it is exactly 0."""
    if value == 0:
        return "0"
    if value < 0.001:
        return f"{value:.1e}"
    # the shortest decimal that is the float (repr), so that 0.3 stays 0.300
    return str(Decimal(repr(float(value))).quantize(Decimal("0.001"), rounding=ROUND_DOWN))


def review_order(table: pd.DataFrame) -> pd.DataFrame:
    """The table's rows most suspicious first, as ``scores.csv`` lists them: by
    ``clean_prob`` ascending, ties (many flagged rows are exactly 0) by ``loss``
    descending, then by ``path``. Every review command ranks this way, so that a table
    re-sorted in a spreadsheet gives the same top rows as the scan wrote."""
    order = np.lexsort((table["path"].astype(str).to_numpy(), -table["loss"].to_numpy(),
                        table["clean_prob"].to_numpy()))
    return table.iloc[order]


def relabeled_table(table: pd.DataFrame) -> pd.DataFrame:
    """``path,label`` with the suggested labels (a valid ``--labels`` manifest), plus
    ``original_label`` and ``changed``; rows sorted by path."""
    out = pd.DataFrame(
        {
            "path": table["path"],
            "label": table["suggested_label"],
            "original_label": table["label"],
            "changed": table["suggested_label"] != table["label"],
        }
    )
    return out.sort_values("path", kind="stable").reset_index(drop=True)


def label_matrix(table: pd.DataFrame, classes: list[str]) -> dict[str, dict[str, int]]:
    """Given-vs-suggested label counts: ``matrix[given][suggested]``."""
    counts = pd.crosstab(table["label"], table["suggested_label"])
    counts = counts.reindex(index=classes, columns=classes, fill_value=0)
    return {g: {s: int(counts.loc[g, s]) for s in classes} for g in classes}


def noise_rates(table: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Estimated noise rate (fraction flagged noisy), overall and per given class."""
    per_class = table.groupby("label")["is_noisy"].mean().reindex(classes)
    return {
        "overall": float(table["is_noisy"].mean()) if len(table) else 0.0,
        "per_class": {c: (None if np.isnan(v) else float(v)) for c, v in per_class.items()},
    }
