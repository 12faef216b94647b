"""Score a scan's table against a truth file (``path,label`` with the true labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .errors import NoisyCleanError, listing


def read_truth(path: str | Path) -> pd.DataFrame:
    """Read a truth CSV with columns ``path`` and ``label`` (labels as strings)."""
    try:
        truth = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise NoisyCleanError(f"cannot read truth file {path}: {error}") from None
    except UnicodeDecodeError:
        raise NoisyCleanError(
            f"cannot read truth file {path}: it is not UTF-8 text (save it as UTF-8)"
        ) from None
    missing = {"path", "label"} - set(truth.columns)
    if missing:
        raise NoisyCleanError(f"truth file {path} lacks column(s): {', '.join(sorted(missing))}")
    return truth[["path", "label"]]


def detection_metrics(table: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Precision, recall and F1 of ``is_noisy``, AUROC of ``1 - clean_prob`` as a noise
    score (from the order of ``clean_prob`` itself, so that no tiny probabilities tie), and
    the accuracy of ``suggested_label`` on the samples whose label was wrong.

    Args:
        table: a scan's table (``path``, ``label``, ``clean_prob``, ``is_noisy``,
            ``suggested_label``).
        truth: ``path`` and true ``label`` for (at least) every row of the table.

    Returns:
        Dict with ``n``, ``n_wrong``, ``n_flagged``, ``precision``, ``recall``, ``f1``,
        ``auroc`` (NaN when all labels are right or all wrong), ``suggested_accuracy_on_wrong``
        and ``suggested_accuracy`` (over all rows).
    """
    merged = table.merge(truth.rename(columns={"label": "true_label"}), on="path", how="left")
    if merged["true_label"].isna().any():
        missing = merged.loc[merged["true_label"].isna(), "path"]
        raise NoisyCleanError(f"truth file has no row for {listing(missing, 3)}")
    known = set(merged["label"].astype(str)) | set(merged["suggested_label"].astype(str))
    unknown = sorted(set(merged["true_label"].astype(str)) - known)
    if unknown:
        raise NoisyCleanError(
            f"truth file labels {listing(unknown, 3)} are not class names of the scored images "
            "(true labels must be written as the class names are)")
    wrong = (merged["label"].astype(str) != merged["true_label"].astype(str)).to_numpy()
    flagged = merged["is_noisy"].astype(bool).to_numpy()
    tp = int((wrong & flagged).sum())
    precision = tp / flagged.sum() if flagged.sum() else 0.0
    recall = tp / wrong.sum() if wrong.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
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
        "suggested_accuracy_on_wrong": float(correct[wrong].mean()) if wrong.any() else 1.0,
        "suggested_accuracy": float(correct.mean()),
    }
