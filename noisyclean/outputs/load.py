"""Read a scan's output folder back: ``scores.csv`` (the per-sample table) and ``summary.json``.

Every review command (report, export, apply, evaluate) starts here, so a missing or garbled
output folder gives the same clear message whichever command met it first. Helpers for
paths that come from ``scores.csv`` (which may have been edited by hand, or be hostile) live
here too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FEW, NoisyCleanError, is_int, is_number, listing
from .table import SCORE_COLUMNS
from .write import check_review_output

#: Columns of ``scores.csv`` that hold text (class names may look like numbers: "007").
TEXT_COLUMNS = ("path", "label", "predicted", "suggested_label", "action")
#: Columns that must parse as numbers.
NUMBER_COLUMNS = ("clean_prob", "loss", "predicted_prob")
ACTIONS = ("keep", "relabel", "review")
#: Whether names and paths follow Windows' rules (``\\`` a separator, ``C:`` a drive).
WINDOWS = os.name == "nt"
#: Why a class folder may not start with ``.``: the end of a message that names one.
HIDDEN_FOLDERS_SKIPPED = (
    "ImageFolder readers (noisyclean scan among them) skip: their images would be lost")


@dataclass
class ScanOutputs:
    """A scan's output folder, read back.

    Attributes:
        out: the output folder.
        table: ``scores.csv`` as a DataFrame (text columns as ``str``, ``is_noisy`` as
            ``bool``), in file order (most suspicious first).
        summary: ``summary.json`` as a dict.
        data_root: the dataset folder the table's paths are relative to
            (``summary["data"]`` unless given).
        classes: class names: ``summary["classes"]``, then any other label the table
            holds (a hand-edited table), sorted.
        scan_classes: ``summary["classes"]`` alone, the classes the scan saw; None when
            the summary lacks a usable list (hand-edited). A ``label`` outside it means the
            table was altered (a spreadsheet may turn "007" into "7").
    """

    out: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    data_root: Path
    classes: list[str]
    scan_classes: list[str] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """``summary.json``'s settings of the run (empty where the summary lacks them)."""
        settings = self.summary.get("settings")
        return settings if isinstance(settings, dict) else {}

    @property
    def manifest(self) -> Path | None:
        """The scan's ``--labels`` manifest: ``summary.json``'s ``labels_file`` (its
        absolute path), else, for a scan that predates it, the settings' ``labels`` (as it
        was given, relative to where the scan ran); None without one."""
        for labels in (self.summary.get("labels_file"), self.settings.get("labels")):
            if isinstance(labels, str) and labels:
                return Path(labels)
        return None

    def check_output(
        self, target: Path, option: str = "--output",
        inputs: dict[str, Path | str | None] | None = None, kind: str | None = None,
    ) -> None:
        """:func:`~noisyclean.outputs.write.check_review_output` for a review command's file
        ``target`` of this run: not one of its own files, not in its dataset folder, not its
        ``--labels`` manifest nor one of the other ``inputs`` (option -> file), and, with
        ``kind``, not an existing file of another kind."""
        check_review_output(target, self.out, option, self.data_root,
                            {"--labels": self.manifest, **(inputs or {})}, kind)

    @property
    def estimated_wrong(self) -> dict[str, Any] | None:
        """``summary.json["estimated_wrong_labels"]`` when it is usable (an integer
        ``count`` and a numeric ``rate``); None for a scan from before the estimate or a
        hand-edited summary."""
        wrong = self.summary.get("estimated_wrong_labels")
        if not isinstance(wrong, dict):
            return None
        count, rate = wrong.get("count"), wrong.get("rate")
        return wrong if is_int(count) and is_number(rate) else None


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NoisyCleanError(
            f"{path} not found: give the --out folder of a finished `noisyclean scan`"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NoisyCleanError(f"cannot read {path}: {error}") from None
    if not isinstance(summary, dict):
        raise NoisyCleanError(f"{path} is not a noisyclean summary (expected a JSON object)")
    if not isinstance(summary.get("data"), str) or not summary["data"]:
        raise NoisyCleanError(f"{path} lacks the dataset folder (key 'data')")
    return summary


def _bool_column(values: pd.Series, path: Path) -> pd.Series:
    if values.dtype == bool:
        return values
    text = values.astype(str).str.strip().str.lower()
    mapping = {"true": True, "false": False, "1": True, "0": False}
    bad = ~text.isin(list(mapping))
    if bad.any():
        raise NoisyCleanError(
            f"{path}: column is_noisy must be True/False, found {values[bad].iloc[0]!r}"
        )
    return text.map(mapping).astype(bool)


def read_scores(path: Path) -> pd.DataFrame:
    """Read ``scores.csv`` and check its columns and values.

    Args:
        path: the CSV file.

    Returns:
        The table with :data:`TEXT_COLUMNS` as ``str``, :data:`NUMBER_COLUMNS` (and
        ``given_prob``/``fit_loss`` when present) as float64 and ``is_noisy`` as bool.

    Raises:
        NoisyCleanError: missing file, unreadable CSV, missing columns, no rows (rows
            entirely empty, as a spreadsheet's blank rows, are left out), non-numeric
            probabilities, unknown actions or duplicate paths.
    """
    if not path.is_file():
        raise NoisyCleanError(
            f"{path} not found: give the --out folder of a finished `noisyclean scan`"
        )
    try:
        table = pd.read_csv(
            path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as error:
        raise NoisyCleanError(f"cannot read {path}: {error}") from None
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing:
        raise NoisyCleanError(f"{path} lacks column(s): {', '.join(missing)}")
    # a spreadsheet's blank rows (",,,,") are no images: dropped, keeping the index, so
    # that the row numbers below are still the file's
    blank = table.astype(str).apply(lambda c: c.str.strip() == "").all(axis=1)
    if blank.any():
        table = table[~blank].copy()
    if table.empty:
        raise NoisyCleanError(
            f"{path} has no rows, only a header: give the --out folder of a finished "
            "`noisyclean scan`"
        )
    for column in (*NUMBER_COLUMNS, "given_prob", "fit_loss"):
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            at = int(np.flatnonzero(~np.isfinite(values.to_numpy(dtype=np.float64)))[0])
            raise NoisyCleanError(
                f"{path}: column {column} has a non-numeric value on row {table.index[at] + 2}"
            )
        table[column] = values.astype(np.float64)
    table["is_noisy"] = _bool_column(table["is_noisy"], path)
    unknown = sorted(set(table["action"]) - set(ACTIONS))
    if unknown:
        raise NoisyCleanError(f"{path}: unknown action(s) {unknown}; expected {list(ACTIONS)}")
    dupes = table["path"][table["path"].duplicated()]
    if len(dupes):
        raise NoisyCleanError(f"{path}: duplicate path {dupes.iloc[0]!r}")
    return table.reset_index(drop=True)


def load_outputs(
    out: str | Path, data: str | Path | None = None, images: bool = True,
    alternative: str = "",
) -> ScanOutputs:
    """Read a scan's output folder (``scores.csv`` and ``summary.json``).

    Args:
        out: the folder given as ``scan --out``.
        data: the dataset folder, when it has moved since the scan; default: the folder
            recorded in ``summary.json`` (``"data"``).
        images: the caller reads the images (report, export, apply): the dataset folder
            must exist and hold at least one image of the table (:func:`find_data_root`).
            False for a caller of the table alone (evaluate, ``report --no-images``).
        alternative: a way on without the images, added to the missing-dataset messages
            (e.g. ``report``'s ``--no-images``).

    Returns:
        A :class:`ScanOutputs`.

    Raises:
        NoisyCleanError: the folder or either file is missing or garbled; with ``images``,
            a dataset folder that is missing or holds none of the table's images.
    """
    out = Path(out)
    if not out.is_dir():
        raise NoisyCleanError(f"output folder {out} does not exist or is not a folder")
    summary = _read_summary(out / "summary.json")
    table = read_scores(out / "scores.csv")
    scan_classes = summary.get("classes")  # absent: a summary from elsewhere, no checks
    if scan_classes is not None and not (isinstance(scan_classes, list) and scan_classes
                                         and all(isinstance(c, str) for c in scan_classes)):
        raise NoisyCleanError(f"{out / 'summary.json'} is garbled: its \"classes\" is not a "
                              "list of class names (rerun the scan, or restore the file)")
    known = list(scan_classes or [])
    seen = set(table["label"]) | set(table["suggested_label"]) | set(table["predicted"])
    classes = known + sorted(seen - set(known))
    data_root = find_data_root(summary, table, data, images, alternative)
    return ScanOutputs(out, table, summary, data_root, classes, scan_classes)


def find_data_root(
    summary: dict[str, Any], table: pd.DataFrame, data: str | Path | None = None,
    images: bool = True, alternative: str = "",
) -> Path:
    """The dataset folder the table's paths are relative to: ``data`` (``--data``), else
    ``summary["data"]``, the folder the scan read.

    With ``images`` the folder must exist and hold at least one of the table's images, so
    that a dataset moved since the scan is one clear error naming ``--data``, not a report
    of placeholders or an export of dead links. The lookup stops at the first image found.
    ``alternative``, when given, is added to those messages (a way on without the images).

    Raises:
        NoisyCleanError: ``data`` is not a folder; with ``images``, the folder is missing
            or none of the table's images is in it.
    """
    more = f", {alternative}" if alternative else ""
    if data is not None:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise NoisyCleanError(f"dataset folder {root} does not exist or is not a folder")
        where = f"--data {root}"
    else:
        root = Path(summary["data"])
        where = f"the dataset folder {root} (recorded in summary.json)"
        if images and not root.is_dir():
            raise NoisyCleanError(
                f"{where} does not exist or is not a folder: if the dataset has moved "
                "since the scan, give its new location with --data NEW_FOLDER" + more
            )
    if images and len(table):
        rels = (safe_relative_path(p) for p in table["path"])
        if not any(rel is not None and (root / rel).is_file() for rel in rels):
            raise NoisyCleanError(
                f"none of the images listed in scores.csv ({len(table)}) is in {where}: "
                "give the folder that holds them with --data NEW_FOLDER" + more
            )
    return root


def safe_relative_path(path: str) -> PurePosixPath | None:
    """A path from ``scores.csv`` as a relative POSIX path, or None when it could point
    outside the folder it is relative to.

    Rejected: empty paths, absolute paths (``/x``, ``C:\\x``, ``\\\\server\\x``), any ``..``
    component, NUL bytes; on Windows any ``:`` too (``C:x.png`` is relative to drive C's
    current folder, ``x.png:s`` names a hidden stream; neither is a file of the folder).
    For these checks a backslash counts as a separator too (a table may come from
    Windows), so ``a\\..\\x`` is refused everywhere.

    The path returned is split on ``/`` only, as noisyclean writes its tables: on POSIX a
    backslash is part of a file name (``cat/a\\b.png`` is the file ``a\\b.png``), on Windows,
    where no name holds one, it is a separator.
    """
    if not path or "\x00" in path:
        return None
    checked = path.replace("\\", "/")
    if checked.startswith("/") or re.match(r"[A-Za-z]:(/|$)", checked):
        return None
    if WINDOWS and ":" in path:
        return None
    if ".." in checked.split("/"):
        return None
    text = checked if WINDOWS else path
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        return None
    return PurePosixPath(*parts)


#: The longest folder name, in bytes of UTF-8, that every usual file system holds (ext4's
#: limit; APFS and NTFS count 255 characters, which is more); a longer label would fail
#: ``apply`` partway.
NAME_MAX = 255


def safe_name(name: str) -> bool:
    """Whether ``name`` can be used as one folder name (a class label) without leaving the
    folder it is created in: not empty, not ``.``/``..``, no separators or NUL bytes, at
    most :data:`NAME_MAX` bytes. A backslash is a separator on Windows only (with ``:``, a
    drive); on POSIX it is part of a name, as in a class folder ``a\\b`` that the scan
    read."""
    forbidden = "/\\:\x00" if WINDOWS else "/\x00"
    return (bool(name) and name not in (".", "..") and not any(c in name for c in forbidden)
            and len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX)


def refuse_hidden_names(names: Iterable[str], before: str, after: str = "would be") -> None:
    """Refuse would-be class folder names that start with ``.``: hidden folders, which
    ImageFolder readers skip (:data:`HIDDEN_FOLDERS_SKIPPED`).

    The message reads ``{before} '.a', '.b' {after} hidden class folders, which ...;
    refusing to apply``, the names sorted, each once, the first :data:`~noisyclean.errors.FEW`
    shown.

    Args:
        names: the names (an empty one is not hidden).
        before: the message up to the names, e.g. ``"label(s)"``.
        after: the words between the names and ``hidden class folders``.

    Raises:
        NoisyCleanError: a name that starts with ``.``.
    """
    hidden = sorted({name for name in names if name.startswith(".")})
    if hidden:
        raise NoisyCleanError(
            f"{before} {listing(hidden, FEW)} {after} hidden class folders, which "
            f"{HIDDEN_FOLDERS_SKIPPED}; refusing to apply"
        )


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves to ``root`` or somewhere under it (symlinks followed)."""
    resolved, base = path.resolve(), root.resolve()
    return resolved == base or resolved.is_relative_to(base)
