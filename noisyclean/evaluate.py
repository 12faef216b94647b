"""Score a scan's table against a truth file (``path,label`` with the true labels)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .csvread import read_user_csv
from .errors import FEW, NoisyCleanError, listing


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
            f"({listing(truth['path'], FEW)}) must be written as scores.csv writes them, "
            f"relative to the dataset folder ({listing(table['path'], FEW)})")
    return merged


def check_no_class(no_class: Iterable[str], classes: Iterable[str]) -> list[str]:
    """The truth labels that mean "none of the classes" (``--no-class``), as a list.

    Raises:
        NoisyCleanError: one of them is also a class name (its rows could not be told from
            that class's), or is blank.
    """
    no_class = list(no_class)
    if any(not label.strip() for label in no_class):
        raise NoisyCleanError("--no-class must name a label, not a blank")
    clash = sorted(set(no_class) & set(classes))
    if clash:
        raise NoisyCleanError(
            f"--no-class {listing(clash, FEW)} is a class name of the scored images: name the "
            "label the truth file uses for images of none of the classes")
    return no_class


def detection_metrics(
    table: pd.DataFrame, truth: pd.DataFrame, classes: Iterable[str] = (),
    no_class: Iterable[str] = (),
) -> dict[str, float]:
    """Precision, recall and F1 of ``is_noisy``, AUROC of ``1 - clean_prob`` as a noise
    score (from the order of ``clean_prob`` itself, so that no tiny probabilities tie), and
    the accuracy of ``suggested_label`` on the samples whose label was wrong.

    A true label in ``no_class`` says that the image belongs to none of the classes (an
    outlier, a blank or broken image): its given label is wrong, and no suggested label can
    set it right, so such rows count in the detection metrics and are left out of the
    suggestions' accuracies.

    Args:
        table: a scan's table (``path``, ``label``, ``clean_prob``, ``is_noisy``,
            ``suggested_label``).
        truth: ``path`` and true ``label`` for every row of the table, or for a sample of
            them: the metrics are those of the rows it covers (:func:`match_truth`).
        classes: the scan's classes, as they are written in the table; a true label
            must be one of them, a given or suggested label of the table, or one of
            ``no_class``.
        no_class: true labels that mean "none of the classes" (:func:`check_no_class`).

    Returns:
        Dict with ``n`` (rows evaluated), ``n_wrong``, ``n_flagged``, ``n_flagged_wrong``
        (the wrong labels among the flags), ``precision`` (NaN when nothing is flagged),
        ``recall`` (NaN when no label is wrong), ``f1`` (NaN when neither), ``auroc``
        (NaN when all labels are right or all wrong),
        ``suggested_accuracy_on_wrong`` (over the wrong rows that have a true class; NaN
        without one), ``suggested_accuracy`` (over the rows evaluated that have a true
        class; NaN without one) and ``n_no_class`` (rows whose true label is in
        ``no_class``).
    """
    merged = match_truth(table, truth)
    known = (set(table["label"].astype(str)) | set(table["suggested_label"].astype(str))
             | set(classes))
    no_class = check_no_class(no_class, known)
    true_label = merged["true_label"].astype(str)
    unknown = sorted(set(true_label) - known - set(no_class))
    if unknown:
        raise NoisyCleanError(
            f"truth file labels {listing(unknown, FEW)} are not class names of the scored images "
            "(true labels must be written as the class names are; --no-class LABEL names a "
            "label that means none of the classes)")
    has_class = ~true_label.isin(no_class).to_numpy()
    wrong = (merged["label"].astype(str) != true_label).to_numpy()
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
    correct = (merged["suggested_label"].astype(str) == true_label).to_numpy()
    fixable = wrong & has_class
    return {
        "n": int(len(merged)),
        "n_wrong": int(wrong.sum()),
        "n_flagged": int(flagged.sum()),
        "n_flagged_wrong": tp,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auroc": float(auroc),
        "suggested_accuracy_on_wrong": float(correct[fixable].mean()) if fixable.any() else nan,
        "suggested_accuracy": float(correct[has_class].mean()) if has_class.any() else nan,
        "n_no_class": int((~has_class).sum()),
    }
