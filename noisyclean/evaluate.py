"""Score a scan's table against a truth file (``path,label`` with the true labels)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .csvread import read_user_csv
from .errors import NoisyCleanError, listing


def read_truth(path: str | Path) -> pd.DataFrame:
    """Read a truth CSV with columns ``path`` and ``label`` (labels as strings), as
    :func:`~noisyclean.csvread.read_user_csv` reads a user's CSV: column names without
    surrounding spaces but, as for a scan's ``--labels`` manifest, in lower case, so that
    one file serves as truth and manifest. Rows with neither a path nor a label (a
    spreadsheet's blank rows) are left out."""
    frame = read_user_csv(path, "truth file", ("path", "label"))[["path", "label"]]
    blank = (frame["path"].str.strip() == "") & (frame["label"].str.strip() == "")
    return frame[~blank].reset_index(drop=True)


def match_truth(table: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The table's rows that have a truth row, with the truth's label as ``true_label``
    (in the table's order).

    Raises:
        NoisyCleanError: no row of the table has a truth row (the truth's paths are not
            written as the table's, or it belongs to another dataset).
    """
    merged = table.merge(truth.rename(columns={"label": "true_label"}), on="path", how="inner")
    if merged.empty:
        raise NoisyCleanError(
            f"truth file has no row for any of the {len(table)} scored images: its paths "
            f"({listing(truth['path'], 3)}) must be written as scores.csv writes them, "
            f"relative to the dataset folder ({listing(table['path'], 3)})")
    return merged


def detection_metrics(
    table: pd.DataFrame, truth: pd.DataFrame, classes: Iterable[str] = ()
) -> dict[str, float]:
    """Precision, recall and F1 of ``is_noisy``, AUROC of ``1 - clean_prob`` as a noise
    score (from the order of ``clean_prob`` itself, so that no tiny probabilities tie), and
    the accuracy of ``suggested_label`` on the samples whose label was wrong.

    Args:
        table: a scan's table (``path``, ``label``, ``clean_prob``, ``is_noisy``,
            ``suggested_label``).
        truth: ``path`` and true ``label`` for every row of the table, or for a sample of
            them: the metrics are those of the rows it covers (:func:`match_truth`).
        classes: the scan's classes, as they are written in the table; a true label
            must be one of them or a given or suggested label of the table.

    Returns:
        Dict with ``n`` (rows evaluated), ``n_wrong``, ``n_flagged``, ``precision`` (NaN
        when nothing is flagged), ``recall`` (NaN when no label is wrong), ``f1`` (NaN
        when neither), ``auroc`` (NaN when all labels are right or all wrong),
        ``suggested_accuracy_on_wrong`` (NaN when no label is wrong) and
        ``suggested_accuracy`` (over all rows evaluated).
    """
    merged = match_truth(table, truth)
    known = (set(table["label"].astype(str)) | set(table["suggested_label"].astype(str))
             | set(classes))
    unknown = sorted(set(merged["true_label"].astype(str)) - known)
    if unknown:
        raise NoisyCleanError(
            f"truth file labels {listing(unknown, 3)} are not class names of the scored images "
            "(true labels must be written as the class names are)")
    wrong = (merged["label"].astype(str) != merged["true_label"].astype(str)).to_numpy()
    flagged = merged["is_noisy"].astype(bool).to_numpy()
    tp = int((wrong & flagged).sum())
    nan = float("nan")
    precision = tp / flagged.sum() if flagged.sum() else nan
    recall = tp / wrong.sum() if wrong.sum() else nan
    # 2TP / (2TP + FP + FN): defined (0 without a true positive) unless nothing is flagged
    # and nothing is wrong
    f1 = 2 * tp / (flagged.sum() + wrong.sum()) if flagged.sum() + wrong.sum() else nan
    # the noise score is -clean_prob, not 1 - clean_prob: AUROC needs only the order, and
    # 1 - p rounds every p below about 1e-17 to the same 1.0
    score = -merged["clean_prob"].to_numpy(dtype=np.float64)
    auroc = roc_auc_score(wrong, score) if 0 < wrong.sum() < len(wrong) else float("nan")
    correct = (merged["suggested_label"].astype(str) == merged["true_label"].astype(str))
    correct = correct.to_numpy()
    return {
        "n": int(len(merged)),
        "n_wrong": int(wrong.sum()),
        "n_flagged": int(flagged.sum()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auroc": float(auroc),
        "suggested_accuracy_on_wrong": float(correct[wrong].mean()) if wrong.any() else nan,
        "suggested_accuracy": float(correct.mean()),
    }
