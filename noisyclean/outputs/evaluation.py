"""``evaluate``: score a scan's table against a truth file and write ``evaluation.json``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import NoisyCleanError
from ..evaluate import detection_metrics, match_truth, read_truth
from .load import load_outputs
from .table import review_order
from .write import json_safe, write_json


def normalise_paths(paths: pd.Series) -> pd.Series:
    """Paths as the truth and the table are matched on: ``/`` separators (a ``\\`` too),
    no leading ``./``, no surrounding spaces, Unicode in NFC (a file written on macOS may
    spell ``é`` as ``e`` and a combining accent: NFD)."""
    paths = normalise_labels(paths).str.replace("\\", "/", regex=False)
    return paths.str.replace(r"^(\./)+", "", regex=True)


def normalise_labels(labels: pd.Series) -> pd.Series:
    """Class names as the truth and the table are matched on: no surrounding spaces,
    Unicode in NFC."""
    return labels.astype(str).str.strip().str.normalize("NFC")


def normalise_label_list(labels: Iterable[str]) -> list[str]:
    """Class names or truth labels (the scan's classes, ``--no-class``) as
    :func:`normalise_labels` writes them, as a list."""
    return normalise_labels(pd.Series(list(labels), dtype=object)).tolist()


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A scan's table with its paths (:func:`normalise_paths`) and its given and suggested
    labels (:func:`normalise_labels`) written as :func:`normalise_truth` writes the truth's,
    so that a class or file name that starts or ends with a space, or holds a backslash,
    matches its truth row."""
    return table.assign(
        path=normalise_paths(table["path"]),
        label=normalise_labels(table["label"]),
        suggested_label=normalise_labels(table["suggested_label"]),
    )


def normalise_truth(truth: pd.DataFrame, source: str | Path = "truth file") -> pd.DataFrame:
    """Truth paths written the way ``scores.csv`` writes them (:func:`normalise_paths`) and
    labels as :func:`normalise_labels` writes them; refuse duplicate paths."""
    paths = normalise_paths(truth["path"])
    labels = normalise_labels(truth["label"])
    out = pd.DataFrame({"path": paths, "label": labels})
    dupes = out["path"][out["path"].duplicated()]
    if len(dupes):
        raise NoisyCleanError(f"{source} lists path {dupes.iloc[0]!r} more than once")
    return out


def evaluation_metrics(
    table: pd.DataFrame, truth: pd.DataFrame, classes: Iterable[str] = (),
    no_class: Iterable[str] = (),
) -> dict[str, Any]:
    """:func:`~noisyclean.evaluate.detection_metrics` (with the scan's ``classes`` and the
    truth's ``no_class`` labels) plus the accuracy of the ``relabel`` rows' suggested
    labels (``relabel_accuracy``, None without relabel rows; a relabelled image of none of
    the classes counts as a wrong relabel) and ``n_relabel``, both over the rows the truth
    covers;
    ``n_scored`` (the table's rows, of which ``n`` were evaluated) and
    ``truth_rows_unused`` (truth rows that name no row of the table: a skipped image,
    say); NaN values become None (valid JSON)."""
    metrics: dict[str, Any] = dict(detection_metrics(table, truth, classes, no_class))
    merged = match_truth(table, truth)
    metrics["n_scored"] = int(len(table))
    metrics["truth_rows_unused"] = int((~truth["path"].isin(table["path"])).sum())
    relabel = merged["action"] == "relabel"
    metrics["n_relabel"] = int(relabel.sum())
    metrics["relabel_accuracy"] = (
        float((merged.loc[relabel, "suggested_label"] == merged.loc[relabel, "true_label"])
              .mean()) if relabel.any() else None
    )
    return json_safe(metrics)


def top_rows_metrics(
    table: pd.DataFrame, truth: pd.DataFrame, count: int | None, classes: Iterable[str] = (),
    no_class: Iterable[str] = (),
) -> dict[str, Any]:
    """How well the ``count`` most suspicious rows of the table (the scan's ranking,
    :func:`~noisyclean.outputs.table.review_order`: the rows ``export --top`` takes,
    whatever order ``scores.csv`` was re-sorted into) find the wrong labels: what
    reviewing down to the scan's estimated number of wrong labels
    (``summary.json["estimated_wrong_labels"]``) would catch. With a truth file for a
    sample of the rows, the rows are still taken from the whole table, and scored on
    those the truth covers.

    Args:
        table: a scan's table.
        truth: ``path`` and true ``label`` for every row of the table, or for a sample.
        count: rows to take (None: a scan without the estimate).
        classes: the scan's classes (:func:`~noisyclean.evaluate.detection_metrics`).
        no_class: true labels that mean none of the classes (the same).

    Returns:
        ``{"n_estimated_wrong": count, "top_estimated": {"precision", "recall", "f1"}}``,
        the latter None when ``count`` is None.
    """
    if count is None:
        return {"n_estimated_wrong": None, "top_estimated": None}
    metrics = first_rows_metrics(table, truth, count, classes, no_class)
    return {
        "n_estimated_wrong": int(count),
        "top_estimated": {k: metrics[k] for k in ("precision", "recall", "f1")},
    }


def first_rows_metrics(
    table: pd.DataFrame, truth: pd.DataFrame, rows: int, classes: Iterable[str] = (),
    no_class: Iterable[str] = (),
) -> dict[str, Any]:
    """The wrong labels among the first ``rows`` rows of the scan's ranking
    (:func:`~noisyclean.outputs.table.review_order`, as :func:`top_rows_metrics` takes
    them): what a review that stops there finds.

    Returns:
        ``rows``; ``evaluated`` (of those rows, the ones the truth covers);
        ``wrong_found`` (wrong labels among them); ``precision``, ``recall`` (of all wrong
        labels the truth covers) and ``f1`` (None where undefined).
    """
    top = table.assign(is_noisy=False)
    ranked = review_order(top).index
    top.loc[ranked[: max(int(rows), 0)], "is_noisy"] = True
    metrics = detection_metrics(top, truth, classes, no_class)
    return json_safe({
        "rows": int(rows),
        "evaluated": metrics["n_flagged"],
        "wrong_found": metrics["n_flagged_wrong"],
        **{k: metrics[k] for k in ("precision", "recall", "f1")},
    })


def evaluate_scan(
    out: str | Path, truth: str | Path, output: str | Path | None = None,
    no_class: Iterable[str] = (), top: Iterable[int] = (),
) -> tuple[dict[str, Any], Path]:
    """Score the scan in ``out`` against ``truth`` and write ``evaluation.json``.

    Args:
        out: a scan's output folder.
        truth: CSV with ``path`` (relative to the dataset folder, as in ``scores.csv``) and
            the true ``label`` of every scored image, or of a sample of them: the metrics
            are then those of the rows it covers.
        output: where to write; default ``out/evaluation.json``.
        no_class: labels (or one label) of the truth file that mean the image belongs to
            none of the scan's classes (``--no-class``): those rows count as wrong labels that no
            suggestion can set right (:func:`~noisyclean.evaluate.detection_metrics`).
        top: depths of the review (``--top``): for each, the wrong labels among that many
            first rows of the scan's ranking (:func:`first_rows_metrics`), in
            ``top_rows``.

    Returns:
        ``(metrics, path written)``. Metrics: ``n`` (rows evaluated), ``n_scored``
        (rows of ``scores.csv``), ``truth_rows_unused``, ``n_wrong``, ``n_flagged``,
        ``precision``, ``recall``, ``f1`` of ``is_noisy`` as a detector of wrong labels,
        ``auroc`` of ``1 - clean_prob`` (None when all labels are right or all wrong),
        ``suggested_accuracy_on_wrong``, ``suggested_accuracy``, ``n_relabel``,
        ``relabel_accuracy``, ``n_no_class``, ``n_flagged_wrong``, ``n_estimated_wrong``
        and ``top_estimated`` (see :func:`top_rows_metrics`), ``top_rows`` (one entry per
        ``top`` depth, in increasing order), plus ``scores`` and ``truth`` (the files
        read) and ``no_class`` (the labels given).

    Raises:
        NoisyCleanError: missing or garbled files, a truth file that covers none of the
            scored images or has labels that are neither classes nor ``no_class``, a
            ``no_class`` label that is a class, or an ``output`` that is one of the scan's
            own files, or a ``top`` depth below 1.
    """
    depths = sorted({int(k) for k in top})
    if depths and depths[0] < 1:
        raise NoisyCleanError(f"--top must be at least 1, not {depths[0]}")
    outputs = load_outputs(out, images=False)  # the table alone: the images may be gone
    target = Path(output) if output is not None else outputs.out / "evaluation.json"
    outputs.check_output(target, inputs={"--truth": truth}, kind="evaluation")
    truth_table = normalise_truth(read_truth(truth), truth)
    wrong = outputs.estimated_wrong
    estimate = None if wrong is None else wrong["count"]
    table = normalise_table(outputs.table)
    classes = normalise_label_list(outputs.scan_classes or [])
    no_class = normalise_label_list([no_class] if isinstance(no_class, str) else no_class)
    metrics = {
        **evaluation_metrics(table, truth_table, classes, no_class),
        **top_rows_metrics(table, truth_table, estimate, classes, no_class),
        "top_rows": [first_rows_metrics(table, truth_table, k, classes, no_class)
                     for k in depths],
        "scores": str(outputs.out / "scores.csv"),
        "truth": str(truth),
        "no_class": no_class,
    }
    write_json(metrics, target)
    return metrics, target
