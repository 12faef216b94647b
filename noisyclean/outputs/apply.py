"""``apply``: write a new ImageFolder tree with the suggested labels.

``CLEAN_DIR/<new label>/<file name>`` for every row of ``scores.csv`` (``review`` rows too,
unless dropped), as copies, hard links or symbolic links, the new label following the
row's ``action``: ``suggested_label`` for ``relabel``, ``label`` for ``keep`` and ``review``
(a reviewer rejects a suggestion by changing the action alone). The source dataset is only
read. Paths and labels come from a CSV file that may have been edited or be hostile, so
every destination folder is checked to lie inside ``CLEAN_DIR``, every source path to be
relative without ``..`` (symbolic links in the dataset are followed, as the scan follows
them), and every given ``label`` to be one of the scan's classes, *before* anything is
written; one bad row refuses the whole run. A suggested label outside the scan's classes
(a reviewer's new class) is allowed, and reported in :attr:`ApplyResult.new_classes`.

A reviewer's decisions (``review.csv`` from ``export --format csv``, its ``decision``
column filled in) override the scan's action row by row
(:mod:`noisyclean.outputs.decisions`).

A manifest, ``CLEAN_DIR/noisyclean-manifest.csv``, lists what was written (``source``,
``dest``, ``label``, ``new_label``, ``action``, ``method``, ``decision``). It is written
first with every planned file (``method`` ``pending``), then again when all are written,
so that a run stopped partway leaves one that the next ``--force`` run cleans up from.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from ..errors import FEW, NoisyCleanError, listing
from .decisions import decide, read_decisions
from .load import (
    NAME_MAX,
    inside,
    load_outputs,
    refuse_hidden_names,
    safe_name,
    safe_relative_path,
)
from .write import atomic_write_text, linked_class_folders, read_csv_if_readable

MANIFEST = "noisyclean-manifest.csv"
MANIFEST_COLUMNS = [
    "source", "dest", "label", "new_label", "action", "method", "decision",
]
#: ``link`` values of :func:`apply_labels`.
LINK_MODES = ("copy", "hard", "symlink")
#: ``method`` of every row of the manifest written before the first file: what a run that
#: stopped partway leaves.
PENDING = "pending"


@dataclass
class ApplyResult:
    """What :func:`apply_labels` wrote.

    Attributes:
        clean_dir: the new dataset folder.
        manifest: the manifest DataFrame (:data:`MANIFEST_COLUMNS`), also in
            ``clean_dir / MANIFEST``.
        counts: images written per method (``copy``, ``hard``, ``symlink``), and
            ``dropped`` (review rows left out), ``relabeled``, ``removed`` (files of a
            previous apply removed with ``force``), ``decided`` (rows with a non-empty
            decision), ``dropped_by_decision`` (rows decided ``drop``) and
            ``skipped_by_scan`` (files the scan skipped, :func:`scan_skipped`: not copied).
        new_classes: class folders written that are not among the scan's classes
            (``summary.json``): suggested labels or decisions a reviewer typed in, sorted.
    """

    clean_dir: Path
    manifest: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    new_classes: list[str] = field(default_factory=list)


class ApplyInterrupted(KeyboardInterrupt):
    """Ctrl-C while :func:`apply_labels` wrote; its text names the file being written and
    what to do about the incomplete copy."""


def _unique_name(folder: PurePosixPath, name: str, taken: set[str]) -> PurePosixPath:
    """``folder/name``, or ``folder/stem-2.ext``, ``-3``, ... when that is already taken
    (case-insensitively, for case-insensitive file systems); the stem is shortened where
    the suffix would take the name past :data:`NAME_MAX` bytes."""
    candidate = folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while candidate.as_posix().lower() in taken:
        n += 1
        tail = f"-{n}{suffix}"
        if len(tail.encode("utf-8", "surrogateescape")) >= NAME_MAX:  # a suffix of a name
            stem, suffix, tail = name, "", f"-{n}"  # near the limit alone: not kept apart
        short = stem
        while len((short + tail).encode("utf-8", "surrogateescape")) > NAME_MAX:
            short = short[:-1]
        candidate = folder / f"{short}{tail}"
    taken.add(candidate.as_posix().lower())
    return candidate


def new_labels(table: pd.DataFrame) -> pd.Series:
    """The label each row is written under: ``suggested_label`` for ``relabel`` rows,
    ``label`` for ``keep`` and ``review`` rows."""
    return table["suggested_label"].where(table["action"] == "relabel", table["label"])


def _check_given_labels(table: pd.DataFrame, classes: list[str] | None) -> None:
    """Refuse a table whose given labels are not all among the scan's ``classes``."""
    if classes is None:
        return
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise NoisyCleanError(
            f"scores.csv has given label(s) that are not among the scan's "
            f"{len(classes)} classes ({listing(classes, FEW)}): "
            f"{listing(unknown, FEW)}; the table was altered (a spreadsheet may have "
            "reformatted them, e.g. '007' into '7'): refusing to apply"
        )


def plan(
    table: pd.DataFrame,
    data_root: Path,
    clean_dir: Path,
    drop_review: bool = False,
) -> pd.DataFrame:
    """Decide where every image goes, and check that all of it is safe.

    Args:
        table: the per-sample table (``path``, ``label``, ``suggested_label``, ``action``).
        data_root: the dataset folder the paths are relative to.
        clean_dir: the new dataset folder.
        drop_review: leave out the rows whose action is ``review``.

    Returns:
        The manifest without ``method``: ``source``, ``dest`` (relative to ``clean_dir``,
        ``<new label>/<file name>``, de-duplicated), ``label``, ``new_label``
        (:func:`new_labels`), ``action``, ``decision`` (the table's, after :func:`decide`;
        empty without one); sorted by source.

    Raises:
        NoisyCleanError: a path that is absolute or has ``..`` components, a missing
            source (symbolic links are followed wherever they lead), a new label that is not
            a plain folder name, or a destination folder that resolves outside
            ``clean_dir``.
    """
    rows = table[table["action"] != "review"] if drop_review else table
    rows = rows.sort_values("path", kind="stable")
    unsafe = [p for p in rows["path"] if safe_relative_path(p) is None]
    if unsafe:
        raise NoisyCleanError(
            "scores.csv has path(s) that are absolute or contain '..': "
            f"{listing(unsafe, FEW)}; refusing to apply"
        )
    labels = new_labels(rows)
    bad_labels = sorted({s for s in labels if not safe_name(s)})
    if bad_labels:
        raise NoisyCleanError(
            "scores.csv has label(s) that are not plain folder names (or are longer than "
            f"{NAME_MAX} bytes): "
            f"{listing(bad_labels, FEW)}; refusing to apply"
        )
    refuse_hidden_names(labels, "label(s)")
    # Lexically inside the dataset folder (above); a symbolic link in the dataset is the
    # user's own and is followed wherever it leads, as the scan followed it.
    missing = [p for p in rows["path"] if not (data_root / safe_relative_path(p)).is_file()]
    if missing:
        hint = ""
        if os.name != "nt" and any("\\" in p for p in missing):
            hint = ("; scores.csv separates folders with '/': here a '\\' is part of a "
                    "file name")
        raise NoisyCleanError(
            f"{len(missing)} image(s) listed in scores.csv are missing under {data_root}: "
            f"{listing(missing, FEW)}{hint}"
        )
    taken: set[str] = set()
    dests = []
    for p, label in zip(rows["path"], labels, strict=True):
        dest = _unique_name(PurePosixPath(label), safe_relative_path(p).name, taken)
        # The folder, not the file: a class folder that is a link out of clean_dir is
        # refused, but a file left by an earlier apply (a symbolic link into the dataset,
        # after --symlink) is not followed; it is replaced, never written through.
        if not inside((clean_dir / dest).parent, clean_dir):
            raise NoisyCleanError(f"destination {dest} leaves {clean_dir}; refusing to apply")
        dests.append(dest.as_posix())
    return pd.DataFrame({
        "source": rows["path"].to_list(),
        "dest": dests,
        "label": rows["label"].to_list(),
        "new_label": labels.to_list(),
        "action": rows["action"].to_list(),
        "decision": rows["decision"].to_list() if "decision" in rows.columns else "",
    })


def _check_clean_dir(clean_dir: Path, data_root: Path, out: Path, force: bool) -> None:
    if clean_dir.exists() and not clean_dir.is_dir():
        raise NoisyCleanError(f"{clean_dir} exists and is not a folder")
    clean, data = clean_dir.resolve(), data_root.resolve()
    if clean == data or clean.is_relative_to(data) or data.is_relative_to(clean):
        raise NoisyCleanError(
            f"--to {clean_dir} overlaps the dataset folder {data_root}; choose a new folder "
            "outside it (the source is never modified)"
        )
    if clean == out.resolve() or out.resolve().is_relative_to(clean):
        raise NoisyCleanError(f"--to {clean_dir} would hold the scan's output folder {out}")
    if clean_dir.is_dir() and any(clean_dir.iterdir()) and not force:
        raise NoisyCleanError(
            f"{clean_dir} is not empty; choose a new folder or pass --force to write into it"
        )


def _refuse_source_folders(clean_dir: Path, data_root: Path, paths: pd.Series) -> None:
    """Refuse a ``clean_dir`` inside, or holding, a folder that the dataset reaches through
    a symbolic link (a linked class folder, or a linked folder on the way to an image of
    ``paths``, the scan's every image, those a decision drops too): the dataset folder's
    own check does not see it, and the copy would be written among the images that the
    scan reads there (read as images of that class by the next scan) or, with ``force``,
    over them. Refuse too a ``clean_dir`` holding any image of the dataset (one reached
    through a link to the file): it could be written over, or removed by ``force``.
    """
    clean = clean_dir.resolve()
    linked = dict(linked_class_folders(data_root))  # a folder of the dataset -> its target
    seen: set[Path] = set()
    for path in paths:
        rel = safe_relative_path(path)
        if rel is None:  # refused by plan() where it is written
            continue
        folder = data_root
        for part in rel.parts[:-1]:
            folder = folder / part
            if folder not in seen:
                seen.add(folder)
                if folder.is_symlink():
                    linked[folder] = folder.resolve()
        source = (data_root / rel).resolve()
        if source.is_relative_to(clean):
            raise NoisyCleanError(
                f"--to {clean_dir} holds {source}, an image of the dataset {data_root} "
                f"(its {path}, reached through a symbolic link): the copy could be written "
                "over it, or --force remove it; choose a new folder"
            )
    for folder, target in sorted(linked.items()):
        if clean == target or clean.is_relative_to(target) or target.is_relative_to(clean):
            raise NoisyCleanError(
                f"--to {clean_dir} overlaps {target}, where the dataset's folder {folder} "
                "leads (a symbolic link): the copy would be written among its images; choose "
                "a new folder outside it (the source is never modified)"
            )


def _previous_manifest(clean_dir: Path) -> pd.DataFrame | None:
    """The manifest a previous ``apply`` left in ``clean_dir`` (None: there is none).

    Raises:
        NoisyCleanError: there is one that cannot be read as a manifest (a spreadsheet
            saved it in another encoding, or it lost its ``dest`` column): what it lists
            cannot be removed, and the new copy would hold the old one's files beside it.
    """
    manifest = clean_dir / MANIFEST
    if not manifest.is_file():
        return None
    previous = read_csv_if_readable(manifest)
    if previous is None or "dest" not in previous.columns:
        raise NoisyCleanError(
            f"{manifest} cannot be read as a manifest (not UTF-8 CSV with a dest column), so "
            f"the files of the apply that wrote it cannot be told apart: choose a new folder "
            f"(or remove {clean_dir} first)"
        )
    return previous


def _remove_previous(clean_dir: Path, previous: pd.DataFrame) -> int:
    """Remove the files a previous ``apply`` listed in its manifest ``previous`` (only
    files and links inside ``clean_dir``), then the folders that this leaves empty; return
    how many files."""
    removed = 0
    folders: set[Path] = set()
    for dest in previous["dest"]:
        rel = safe_relative_path(dest)
        if rel is None:
            continue
        target = clean_dir / rel
        if not inside(target.parent, clean_dir):
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
            removed += 1
            folders.add(target.parent)
    # an empty class folder left behind (a reviewer's typo, fixed) fails ImageFolder readers
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        while folder != clean_dir and inside(folder, clean_dir):
            try:
                folder.rmdir()  # only an empty one
            except OSError:
                break
            folder = folder.parent
    return removed


def scan_skipped(out: Path) -> int:
    """How many of the dataset's files the run in ``out`` skipped (rows of its
    ``skipped.csv``, but for ``train --val``'s, whose reason starts ``--val:``): files that
    are in no cleaned copy; 0 when the file is missing or unreadable."""
    skipped = read_csv_if_readable(out / "skipped.csv")
    if skipped is None:
        return 0
    if "reason" not in skipped.columns:
        return len(skipped)
    return int((~skipped["reason"].str.startswith("--val:")).sum())


def _write_manifest(clean_dir: Path, manifest: pd.DataFrame) -> None:
    """Write ``clean_dir``'s manifest (:data:`MANIFEST_COLUMNS` of ``manifest``)."""
    atomic_write_text(
        clean_dir / MANIFEST,
        manifest[MANIFEST_COLUMNS].to_csv(index=False, lineterminator="\n"),
    )


def _place(source: Path, dest: Path, link: str) -> str:
    """Write ``dest`` from ``source`` through a temporary name; return the method used."""
    # a short name: the file's own may be near the 255-byte limit already
    fd, tmp_name = tempfile.mkstemp(prefix=".noisyclean-", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    method = link
    try:
        if link == "hard":
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed: fall back
                method = "symlink"
        if method == "symlink":
            os.symlink(source.resolve(), tmp)
        elif method == "copy":
            shutil.copy2(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return method


def apply_labels(
    out: str | Path,
    clean_dir: str | Path,
    drop_review: bool = False,
    link: str = "copy",
    force: bool = False,
    data: str | Path | None = None,
    decisions: str | Path | None = None,
) -> ApplyResult:
    """Write a new ImageFolder tree with the suggested labels: ``relabel`` rows under
    ``suggested_label``, ``keep`` and ``review`` rows under their given ``label``, unless a
    reviewer's decision says otherwise.

    Args:
        out: a scan's output folder.
        clean_dir: the new dataset folder (created; must be empty unless ``force``).
        drop_review: leave out rows whose action is ``review`` (noisy, no confident
            suggestion).
        link: ``"copy"``; ``"hard"`` for hard links (falls back to a symbolic link where
            the file system refuses one, e.g. across devices); ``"symlink"`` for symbolic
            links to the resolved source files.
        force: write into a non-empty ``clean_dir``: files of the same name are replaced,
            the files listed by a previous apply's manifest are removed first, anything
            else is left alone.
        data: the dataset folder if it moved since the scan.
        decisions: a reviewer's decisions, a CSV with ``path`` and ``decision`` columns
            (``review.csv`` from ``export --format csv``, filled in): ``keep``, ``relabel``,
            ``drop`` or a class name per image, empty to leave the scan's action
            (:func:`decide`). ``drop_review`` then applies to the rows still ``review``.

    Returns:
        An :class:`ApplyResult`.

    Raises:
        NoisyCleanError: before anything is written, for given labels that are not the
            scan's classes, a garbled decisions file or one that names images the scan
            did not score (or one twice), unsafe or missing paths, labels that are not
            folder names, a ``clean_dir`` that overlaps the dataset, holds the scan's
            outputs, or is not empty (without ``force``); afterwards only for an
            operating-system error while writing.
    """
    if link not in LINK_MODES:
        raise NoisyCleanError(f"link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    outputs = load_outputs(out, data)
    clean_dir = Path(clean_dir).expanduser()
    _check_clean_dir(clean_dir, outputs.data_root, outputs.out, force)
    _check_given_labels(outputs.table, outputs.scan_classes)  # before decisions drop rows
    table, decided, decision_dropped = outputs.table, 0, 0
    if decisions is not None:
        table, decided, decision_dropped = decide(
            outputs.table, read_decisions(decisions), outputs.classes,
            f"decisions file {decisions}")
    manifest = plan(table, outputs.data_root, clean_dir, drop_review)
    _refuse_source_folders(clean_dir, outputs.data_root, outputs.table["path"])
    previous = _previous_manifest(clean_dir) if force else None
    counts = {"copy": 0, "hard": 0, "symlink": 0}
    doing = f"write {clean_dir / MANIFEST}"  # for the message of an error
    try:
        clean_dir.mkdir(parents=True, exist_ok=True)
        removed = _remove_previous(clean_dir, previous) if previous is not None else 0
        # Every planned file is listed before the first is written (method "pending"), so
        # that a run stopped partway (a full disk, Ctrl-C) leaves a manifest from which
        # the next --force run removes what it wrote.
        _write_manifest(clean_dir, manifest.assign(method=PENDING))
        methods = []
        for source, dest in zip(manifest["source"], manifest["dest"], strict=True):
            target, origin = clean_dir / dest, outputs.data_root / safe_relative_path(source)
            doing = f"write {target} (from {origin})"
            target.parent.mkdir(parents=True, exist_ok=True)
            method = _place(origin, target, link)
            counts[method] += 1
            methods.append(method)
        manifest["method"] = methods
        doing = f"write {clean_dir / MANIFEST}"
        _write_manifest(clean_dir, manifest)
    except OSError as error:
        raise NoisyCleanError(
            f"cannot {doing}: {error.strerror or error}; {clean_dir} is incomplete (rerun "
            "with --force to replace what was written)"
        ) from None
    except KeyboardInterrupt:
        raise ApplyInterrupted(
            f"interrupted during: {doing}; {clean_dir} is incomplete (rerun with --force to "
            "replace what was written)"
        ) from None
    counts["relabeled"] = int((manifest["label"] != manifest["new_label"]).sum())
    counts["dropped"] = int((table["action"] == "review").sum()) if drop_review else 0
    counts["removed"] = removed
    counts["decided"] = decided
    counts["dropped_by_decision"] = decision_dropped
    counts["skipped_by_scan"] = scan_skipped(outputs.out)
    new_classes = [] if outputs.scan_classes is None else \
        sorted(set(manifest["new_label"]) - set(outputs.scan_classes))
    return ApplyResult(clean_dir, manifest[MANIFEST_COLUMNS], counts, new_classes)
