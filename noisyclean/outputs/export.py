"""Exports of the per-sample table for annotation review: a Label Studio import (tasks with
the suggested label as a pre-annotation, plus the matching labeling config) and a plain CSV
review sheet.

Label Studio's import format (its "Basic Label Studio JSON format" with ``predictions``): a
list of tasks, each ``{"data": {"image": URL, ...}, "predictions": [{"model_version": str,
"score": float, "result": [{"id", "from_name", "to_name", "type": "choices", "value":
{"choices": [label]}}]}]}``, where ``from_name`` and ``to_name`` are the names of the
``<Choices>`` and ``<Image>`` tags of the project's labeling config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import pandas as pd

from .. import __version__
from ..errors import NoisyCleanError, is_int
from .decisions import sheet_text
from .load import ScanOutputs, load_outputs, safe_relative_path
from .table import clean_prob_text, review_order
from .write import atomic_write_text, filled_review_rows, review_work_text

FORMATS = ("labelstudio", "csv")
#: Label Studio's URL for files it serves from its local-files document root.
LOCAL_FILES_PREFIX = "/data/local-files/?d="
#: Names of the tags in :func:`labelstudio_config` that the predictions refer to.
FROM_NAME, TO_NAME = "label", "image"

REVIEW_COLUMNS = [
    "path", "file", "label", "suggested_label", "action", "clean_prob", "predicted",
    "predicted_prob", "decision", "comment",
]


@dataclass
class ExportResult:
    """What :func:`export` wrote.

    Attributes:
        files: the files written.
        rows: how many images they cover.
        document_root: for Label Studio local files, the folder to set as
            ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (None with ``url_prefix``).
    """

    files: list[Path]
    rows: int
    document_root: Path | None


def select_rows(
    table: pd.DataFrame, all_rows: bool = False, top: int | None = None
) -> pd.DataFrame:
    """The rows to review, most suspicious first: the flagged ones (``is_noisy``), every row
    with ``all_rows``, or with ``top`` the ``top`` most suspicious, flagged or not (the
    scan's ranking, :func:`~noisyclean.outputs.table.review_order`)."""
    rows = table if all_rows or top is not None else table[table["is_noisy"]]
    rows = review_order(rows)
    return (rows if top is None else rows.head(top)).reset_index(drop=True)


def suggested_score(row: pd.Series) -> float:
    """The network's probability of the suggested label: ``predicted_prob`` when the
    suggestion is the prediction, else ``given_prob`` (the suggestion is then the given
    label), else 1 - ``predicted_prob`` as an upper bound."""
    if row["suggested_label"] == row["predicted"]:
        return float(row["predicted_prob"])
    if "given_prob" in row.index and row["suggested_label"] == row["label"]:
        return float(row["given_prob"])
    return float(1.0 - row["predicted_prob"])


def _rel_path(path: str) -> str:
    rel = safe_relative_path(path)
    if rel is None:
        raise NoisyCleanError(
            f"scores.csv path {path!r} is absolute or leaves the dataset folder; refusing "
            "to export it"
        )
    return rel.as_posix()


def image_url(
    path: str, data_root: Path, url_prefix: str | None = None,
    document_root: Path | None = None,
) -> str:
    """The URL Label Studio loads an image from.

    With ``url_prefix``: ``url_prefix`` + the path relative to the dataset folder
    (percent-encoded). Otherwise a local-files URL, ``/data/local-files/?d=`` + the path
    relative to ``document_root`` (percent-encoded; Label Studio serves it when started
    with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to ``document_root``).

    Raises:
        NoisyCleanError: an unsafe path, or a dataset folder outside ``document_root``.
    """
    rel = _rel_path(path)
    if url_prefix is not None:
        return url_prefix + quote(rel, safe="/")
    root = Path(document_root) if document_root is not None else default_document_root(
        data_root)
    full = Path(os.path.abspath(data_root)) / rel
    try:
        inner = full.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        raise NoisyCleanError(
            f"the dataset folder {data_root} is not inside --document-root {root}"
        ) from None
    return LOCAL_FILES_PREFIX + quote(inner, safe="/")


def default_document_root(data_root: Path) -> Path:
    """The default Label Studio document root: the dataset folder's parent, so URLs read
    ``/data/local-files/?d=<dataset folder name>/<class>/<file>``."""
    return Path(os.path.abspath(data_root)).parent


def labelstudio_tasks(
    outputs: ScanOutputs,
    all_rows: bool = False,
    url_prefix: str | None = None,
    document_root: Path | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Label Studio tasks, one per image to review, with the suggested label as a
    pre-annotation.

    Args:
        outputs: a scan's outputs.
        all_rows: one task per image, not only the flagged ones.
        url_prefix: images are ``url_prefix`` + their path relative to the dataset folder.
        document_root: otherwise, local-files URLs relative to this folder (default: the
            dataset folder's parent).
        top: one task for each of the ``top`` most suspicious images, flagged or not.

    Returns:
        The task list. ``data`` holds ``image`` (the URL), ``path``, ``given_label``,
        ``suggested_label``, ``predicted``, ``clean_prob``, ``action`` and ``note`` (one
        line for the reviewer); ``predictions[0]`` has ``model_version``, ``score`` (the
        network's probability of the suggested label) and one ``choices`` result.

    Raises:
        NoisyCleanError: an unsafe path in the table, or a dataset outside
            ``document_root``.
    """
    version = f"noisyclean-{__version__}"
    tasks = []
    for i, row in select_rows(outputs.table, all_rows, top).iterrows():
        score = round(suggested_score(row), 4)
        note = (
            f"given: {row['label']} · suggested: {row['suggested_label']} ({row['action']}) · "
            f"network: {row['predicted']} ({row['predicted_prob']:.2f}) · "
            f"clean_prob {clean_prob_text(row['clean_prob'])}"
        )
        tasks.append({
            "data": {
                "image": image_url(row["path"], outputs.data_root, url_prefix, document_root),
                "path": row["path"],
                "given_label": row["label"],
                "suggested_label": row["suggested_label"],
                "predicted": row["predicted"],
                # full precision: flagged rows' values go down to 1e-50 and below; rounded
                # they would tie at 0 and no longer sort
                "clean_prob": float(row["clean_prob"]),
                "action": row["action"],
                "note": note,
            },
            "predictions": [{
                "model_version": version,
                "score": score,
                "result": [{
                    "id": f"nc{i}",
                    "from_name": FROM_NAME,
                    "to_name": TO_NAME,
                    "type": "choices",
                    "value": {"choices": [row["suggested_label"]]},
                }],
            }],
        })
    return tasks


def labelstudio_config(classes: list[str]) -> str:
    """The labeling config (XML) that matches :func:`labelstudio_tasks`: an ``Image`` named
    ``image`` showing ``$image``, a ``Header`` showing ``$note``, and single-choice
    ``Choices`` named ``label`` over the class names."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        '  <Header value="$note" size="6"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def config_path(target: Path) -> Path:
    """Where the labeling config goes beside the tasks file ``target``: the same stem,
    ``.xml``.

    Raises:
        NoisyCleanError: ``target`` itself ends in ``.xml`` (any case): the config would be
            written over the tasks.
    """
    target = Path(target)
    config = target.with_suffix(".xml")
    if target.suffix.lower() == ".xml" or config.resolve() == target.resolve():
        raise NoisyCleanError(
            f"--output {target}: the labeling config goes beside the tasks, same name "
            "ending in .xml, so it would overwrite the tasks file; name the tasks .json "
            "(-o tasks.json writes tasks.json and the config tasks.xml)"
        )
    return config


def review_sheet(
    outputs: ScanOutputs, all_rows: bool = False, top: int | None = None
) -> pd.DataFrame:
    """A plain review sheet: the rows to review (:func:`select_rows`) with the image's full
    path and empty ``decision`` and ``comment`` columns for the reviewer
    (:data:`REVIEW_COLUMNS`). Text cells that a spreadsheet would take for a formula are
    written as text (:func:`sheet_text`)."""
    rows = select_rows(outputs.table, all_rows, top)
    root = Path(os.path.abspath(outputs.data_root))
    sheet = rows.assign(
        file=[str(root / _rel_path(p)) for p in rows["path"]],
        decision="",
        comment="",
    )[REVIEW_COLUMNS]
    for column in ("path", "file", "label", "suggested_label", "predicted"):
        sheet[column] = sheet[column].astype(str).map(sheet_text)
    return sheet


def export(
    out: str | Path,
    fmt: str = "labelstudio",
    output: str | Path | None = None,
    all_rows: bool = False,
    url_prefix: str | None = None,
    document_root: str | Path | None = None,
    data: str | Path | None = None,
    top: int | None = None,
    force: bool = False,
) -> ExportResult:
    """Export the scan in ``out`` for review (files written atomically).

    Args:
        out: a scan's output folder.
        fmt: ``"labelstudio"``: ``labelstudio.json`` (tasks) and ``labelstudio.xml`` (the
            labeling config) next to it; ``"csv"``: ``review.csv``.
        output: the file to write (for Label Studio the config goes beside it, same stem,
            ``.xml``: :func:`config_path`); default in ``out``. Never one of the scan's own
            files (:func:`~noisyclean.outputs.write.check_review_output`).
        all_rows: every image, not only the flagged ones.
        url_prefix: Label Studio only: images are ``url_prefix`` + their path relative to
            the dataset folder.
        document_root: Label Studio only: local-files URLs relative to this folder
            (default: the dataset folder's parent).
        data: the dataset folder if it moved since the scan.
        top: the ``top`` most suspicious images, flagged or not (e.g. a close call's other
            count, ``summary.json["cut"]["close_call"]``); not with ``all_rows``.
        force: CSV only: overwrite a target that holds a reviewer's decisions or comments
            (:func:`~noisyclean.outputs.write.filled_review_rows`), which is refused otherwise.

    Returns:
        An :class:`ExportResult`.

    Raises:
        NoisyCleanError: unknown format, missing or garbled outputs, a dataset folder
            that is missing or holds none of the images, unsafe paths, a target that is one
            of the scan's own files or would collide with its labeling config, an
            unwritable target. All but the last are found before anything is written.
    """
    if fmt not in FORMATS:
        raise NoisyCleanError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if top is not None and (not is_int(top) or all_rows or top < 1):
        raise NoisyCleanError("--top takes a count of 1 or more, and not with --all")
    if fmt == "csv" and (url_prefix is not None or document_root is not None):
        raise NoisyCleanError("--url-prefix and --document-root are for --format labelstudio "
                              "(a review sheet names each image by its file path)")
    outputs = load_outputs(out, data)
    if fmt == "csv":
        target = Path(output) if output is not None else outputs.out / "review.csv"
        outputs.check_output(target, kind="review sheet")
        filled = filled_review_rows(target)
        if filled != 0 and not force:
            work = (review_work_text(target, filled) if filled is None else
                    f"{target} holds a reviewer's work: {filled} row(s) with a decision or a "
                    "comment")
            raise NoisyCleanError(f"{work}; pass --force to overwrite it, or -o to write "
                                  "another file")
        sheet = review_sheet(outputs, all_rows, top)
        atomic_write_text(target, sheet.to_csv(index=False, lineterminator="\n"))
        return ExportResult([target], len(sheet), None)
    doc_root = None
    if url_prefix is None:
        doc_root = Path(os.path.abspath(document_root)) if document_root is not None \
            else default_document_root(outputs.data_root)
    target = Path(output) if output is not None else outputs.out / "labelstudio.json"
    config = config_path(target)
    outputs.check_output(target, kind="Label Studio tasks")
    outputs.check_output(config, "the labeling config for --output", kind="Label Studio config")
    tasks = labelstudio_tasks(outputs, all_rows, url_prefix, doc_root, top)
    atomic_write_text(target, json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(config, labelstudio_config(outputs.classes))
    return ExportResult([target, config], len(tasks), doc_root)
