"""``evaluate``: score a scan's table against a truth file and write ``evaluation.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import NoisyCleanError
from ..evaluate import detection_metrics, read_truth
from .load import load_outputs
from .write import atomic_write_text


def normalise_paths(paths: pd.Series) -> pd.Series:
    """Paths as the truth and the table are matched on: ``/`` separators (a ``\\`` too),
    no leading ``./``, no surrounding spaces."""
    paths = paths.astype(str).str.strip().str.replace("\\", "/", regex=False)
    return paths.str.replace(r"^(\./)+", "", regex=True)


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A scan's table with its paths (:func:`normalise_paths`) and its given and suggested
    labels (no surrounding spaces) written as :func:`normalise_truth` writes the truth's,
    so that a class or file name that starts or ends with a space, or holds a backslash,
    matches its truth row."""
    return table.assign(
        path=normalise_paths(table["path"]),
        label=table["label"].astype(str).str.strip(),
        suggested_label=table["suggested_label"].astype(str).str.strip(),
    )


def normalise_truth(truth: pd.DataFrame, source: str | Path = "truth file") -> pd.DataFrame:
    """Truth paths written the way ``scores.csv`` writes them (:func:`normalise_paths`) and
    labels without surrounding spaces; refuse duplicate paths."""
    paths = normalise_paths(truth["path"])
    labels = truth["label"].astype(str).str.strip()
    out = pd.DataFrame({"path": paths, "label": labels})
    dupes = out["path"][out["path"].duplicated()]
    if len(dupes):
        raise NoisyCleanError(f"{source} lists path {dupes.iloc[0]!r} more than once")
    return out


def evaluation_metrics(table: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """:func:`~noisyclean.evaluate.detection_metrics` plus the accuracy of the ``relabel``
    rows' suggested labels (``relabel_accuracy``, None without relabel rows) and
    ``n_relabel``; NaN values become None (valid JSON)."""
    metrics: dict[str, Any] = dict(detection_metrics(table, truth))
    merged = table.merge(truth.rename(columns={"label": "true_label"}), on="path", how="left")
    relabel = merged["action"] == "relabel"
    metrics["n_relabel"] = int(relabel.sum())
    metrics["relabel_accuracy"] = (
        float((merged.loc[relabel, "suggested_label"] == merged.loc[relabel, "true_label"])
              .mean()) if relabel.any() else None
    )
    return {k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in metrics.items()}


def top_rows_metrics(
    table: pd.DataFrame, truth: pd.DataFrame, count: int | None
) -> dict[str, Any]:
    """How well the first ``count`` rows of the table (most suspicious first) find the
    wrong labels: what reviewing down to the scan's estimated number of wrong labels
    (``summary.json["estimated_wrong_labels"]``) would catch.

    Args:
        table: a scan's table, in ``scores.csv`` order.
        truth: ``path`` and true ``label`` for every row of the table.
        count: rows to take (None: a scan without the estimate).

    Returns:
        ``{"n_estimated_wrong": count, "top_estimated": {"precision", "recall", "f1"}}``,
        the latter None when ``count`` is None.
    """
    if count is None:
        return {"n_estimated_wrong": None, "top_estimated": None}
    top = table.assign(is_noisy=False)
    top.loc[top.index[: max(int(count), 0)], "is_noisy"] = True
    metrics = detection_metrics(top, truth)
    return {
        "n_estimated_wrong": int(count),
        "top_estimated": {k: metrics[k] for k in ("precision", "recall", "f1")},
    }


def evaluate_scan(
    out: str | Path, truth: str | Path, output: str | Path | None = None
) -> tuple[dict[str, Any], Path]:
    """Score the scan in ``out`` against ``truth`` and write ``evaluation.json``.

    Args:
        out: a scan's output folder.
        truth: CSV with ``path`` (relative to the dataset folder, as in ``scores.csv``) and
            the true ``label`` of at least every scored image.
        output: where to write; default ``out/evaluation.json``.

    Returns:
        ``(metrics, path written)``. Metrics: ``n``, ``n_wrong``, ``n_flagged``,
        ``precision``, ``recall``, ``f1`` of ``is_noisy`` as a detector of wrong labels,
        ``auroc`` of ``1 - clean_prob`` (None when all labels are right or all wrong),
        ``suggested_accuracy_on_wrong``, ``suggested_accuracy``, ``n_relabel``,
        ``relabel_accuracy``, ``n_estimated_wrong`` and ``top_estimated`` (see
        :func:`top_rows_metrics`), plus ``scores`` and ``truth`` (the files read).

    Raises:
        NoisyCleanError: missing or garbled files, or a scored image the truth file lacks.
    """
    outputs = load_outputs(out)
    truth_table = normalise_truth(read_truth(truth), truth)
    wrong = outputs.estimated_wrong
    estimate = None if wrong is None else wrong["count"]
    table = normalise_table(outputs.table)
    metrics = {
        **evaluation_metrics(table, truth_table),
        **top_rows_metrics(table, truth_table, estimate),
        "scores": str(outputs.out / "scores.csv"),
        "truth": str(truth),
    }
    target = Path(output) if output is not None else outputs.out / "evaluation.json"
    atomic_write_text(target, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics, target
