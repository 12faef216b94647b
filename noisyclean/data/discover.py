"""Find the samples of a dataset: which files, with which given label.

Two layouts are understood:

* ImageFolder: ``ROOT/<class>/<files, in any nested subfolders>``; the class is the name of the
  top-level folder a file lies under.
* Manifest: a CSV file with columns ``path`` and ``label``; paths are relative to ``ROOT``
  (absolute paths are accepted when they lie inside ``ROOT``). Symbolic links are followed
  in both.

Nothing here opens an image: every regular file is a sample, and the decoder later skips the
files that are not images (recording why). The user's files are only listed and ``stat``-ed.
A dataset that cannot be used raises :class:`~noisyclean.errors.NoisyCleanError` with one
clear message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..csvread import read_user_csv
from ..errors import NoisyCleanError, listing

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    }
)
"""Lowercase file extensions of common image formats.

Informational only: :func:`discover` keeps every regular file as a sample whatever its
extension, so that a mislabelled or misnamed file is reported by the decoder instead of
being dropped silently.
"""


@dataclass
class Samples:
    """The samples of a dataset, in a deterministic order (sorted by relative path).

    Attributes:
        root: the resolved (absolute, symlink-free) dataset root.
        paths: each sample's path relative to ``root``, with ``/`` separators.
        labels: int64 array, ``labels[i]`` is the index into ``classes`` of ``paths[i]``'s
            given label.
        classes: the class names; sorted, or in the order given by ``discover(classes=...)``.
        not_followed: ``(path relative to root, reason)`` of each symbolic link that was
            not followed (a loop, or broken; ImageFolder layout), for ``skipped.csv``.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    not_followed: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.paths)

    @property
    def found(self) -> int:
        """Entries found: the samples and the symbolic links not followed (a summary's
        ``found`` count, of which the links are ``skipped``)."""
        return len(self.paths) + len(self.not_followed)


def discover(
    root: str | Path,
    labels_csv: str | Path | None = None,
    classes: list[str] | None = None,
    min_classes: int = 2,
) -> Samples:
    """List the samples of a dataset and their given labels.

    Args:
        root: the dataset folder. Without ``labels_csv`` it must hold one subfolder per class
            (ImageFolder layout); with ``labels_csv`` it is the folder the CSV paths are
            relative to.
        labels_csv: optional CSV manifest with header columns ``path`` and ``label`` (other
            columns are ignored). Leading/trailing spaces around cells are stripped.
        classes: optional class names to use, in this order. ImageFolder layout: only these
            class folders are read. Manifest layout: every label must be one of them. Classes
            listed here are kept (with their position as label index) even when they have no
            samples.
        min_classes: how many classes must have samples (2 to find wrong labels; 1 for a
            validation set, which may be a subset).

    Returns:
        The :class:`Samples`, sorted by relative path.

    Raises:
        NoisyCleanError: the root, the CSV, a path, a label or a class is unusable, no samples
            are found, or fewer than ``min_classes`` classes have samples.

    ImageFolder rules: hidden files and folders (name starting with ``.``) are ignored at every
    level, files directly in ``root`` are ignored, symbolic links are followed wherever they
    lead (to files and folders, class folders too) except into a loop, and empty class
    folders are dropped (unless named in ``classes``). The symbolic links not followed
    (loops, broken links) are listed in the result's ``not_followed``.
    """
    root_arg = Path(root).expanduser()
    if not root_arg.exists():
        raise NoisyCleanError(f"dataset folder {root_arg} does not exist")
    if not root_arg.is_dir():
        raise NoisyCleanError(f"dataset path {root_arg} is not a folder")
    root_dir = root_arg.resolve()
    if classes is not None:
        classes = _check_class_list(classes)

    if labels_csv is None:
        samples = _discover_folders(root_dir, classes)
    else:
        samples = _discover_manifest(root_dir, root_arg.absolute(), Path(labels_csv), classes)

    if len(samples) == 0:
        links = (f" ({len(samples.not_followed)} symbolic link(s) not followed, e.g. "
                 f"{samples.not_followed[0][0]!r}: {samples.not_followed[0][1]})"
                 if samples.not_followed else "")
        raise NoisyCleanError(
            f"no images found under {root_dir}: expected {root_dir}/<class>/<image> "
            f"or a --labels CSV{links}"
        )
    present = np.unique(samples.labels)
    if len(present) < min_classes:
        where = f"labels CSV {labels_csv}" if labels_csv is not None else str(root_dir)
        raise NoisyCleanError(
            f"only one class ({samples.classes[int(present[0])]!r}) found in {where}; "
            "need at least two classes to find wrong labels"
        )
    return samples


# --------------------------------------------------------------------------- helpers


def _check_class_list(classes: list[str]) -> list[str]:
    """Validate a user-given class list (non-empty, no duplicates, no blank names)."""
    classes = [str(c) for c in classes]
    if not classes:
        raise NoisyCleanError("the list of classes is empty; give at least two class names")
    if any(not c.strip() for c in classes):
        raise NoisyCleanError(f"the list of classes contains an empty name: {classes!r}")
    seen: set[str] = set()
    for name in classes:
        if name in seen:
            raise NoisyCleanError(f"class {name!r} is listed more than once in the classes")
        seen.add(name)
    return classes


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (already resolved) is ``root`` or lies under it."""
    return path == root or path.is_relative_to(root)


# --------------------------------------------------------------------------- ImageFolder


#: Why :func:`_walk_files` does not follow a symbolic link (``skipped.csv``'s reason).
LINK_BROKEN = "broken symbolic link"
LINK_LOOP = "symbolic link to a folder that holds it (a loop; not followed)"


def _holds(folder: str, path: str) -> bool:
    """Whether real path ``folder`` is real path ``path`` or one of its parents."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_files(
    folder: str, not_followed: list[tuple[str, str]], ancestors: tuple[str, ...]
) -> Iterator[str]:
    """Paths (under ``folder``, as spelled there) of the sample files under ``folder``,
    recursively, hidden names left out.

    Symbolic links are followed, to files and to folders, wherever they lead (as
    torchvision's ``ImageFolder`` does), except a link to a folder that holds one of
    ``ancestors`` (the real paths of the dataset folder and of the folders walked down to
    here), which would loop. Links not followed (loops, broken links) are appended to
    ``not_followed`` as ``(path, reason)``. Unreadable subfolders are skipped.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if entry.is_symlink() and any(_holds(real, a) for a in ancestors):
                    not_followed.append((entry.path, LINK_LOOP))
                    continue
                yield from _walk_files(entry.path, not_followed, (*ancestors, real))
            elif entry.is_file():
                yield entry.path
            elif entry.is_symlink() and not os.path.exists(entry.path):
                not_followed.append((entry.path, LINK_BROKEN))
        except OSError:  # e.g. a link that points to itself
            if entry.is_symlink():
                not_followed.append((entry.path, LINK_BROKEN))


def _class_folders(root: Path) -> list[str]:
    """Names of the (non-hidden) subfolders of ``root``, symbolic links to folders
    included."""
    names = []
    try:
        with os.scandir(root) as it:
            for entry in it:
                try:
                    if not entry.name.startswith(".") and entry.is_dir():
                        names.append(entry.name)
                except OSError:  # a link that points to itself: not a folder
                    continue
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise NoisyCleanError(f"cannot read dataset folder {root}: {reason}") from None
    return sorted(names)


def _discover_folders(root: Path, classes: list[str] | None) -> Samples:
    """ImageFolder layout: one subfolder per class."""
    folders = _class_folders(root)
    not_followed: list[tuple[str, str]] = []
    if classes is not None:
        available = set(folders)
        for name in classes:
            if name not in available:
                hint = f" (folders found: {listing(folders, 10)})" if folders else ""
                raise NoisyCleanError(f"class {name!r} is not a folder under {root}{hint}")
        names = classes
    else:
        names = folders

    found: list[tuple[str, int]] = []
    kept: list[str] = []
    for name in names:
        folder, real = str(root / name), os.path.realpath(root / name)
        links: list[tuple[str, str]] = []
        if _holds(real, str(root)):  # a class folder linked to the dataset folder or above
            links.append((folder, LINK_LOOP))
            files = []
        else:
            files = list(_walk_files(folder, links, (str(root), real)))
        rels = [Path(p).relative_to(root).as_posix() for p in files]
        not_followed += [(Path(p).relative_to(root).as_posix(), why) for p, why in links]
        if not rels and classes is None:
            continue  # empty class folder: dropped
        index = len(kept)
        kept.append(name)
        found.extend((rel, index) for rel in rels)
    found.sort(key=lambda item: item[0])
    return Samples(
        root=root,
        paths=[rel for rel, _ in found],
        labels=np.array([label for _, label in found], dtype=np.int64),
        classes=kept,
        not_followed=sorted(not_followed),
    )


# --------------------------------------------------------------------------- manifest


def _read_csv(csv_path: Path) -> pd.DataFrame:
    """Read the manifest as text (:func:`~noisyclean.csvread.read_user_csv`); refuse one
    without rows."""
    frame = read_user_csv(csv_path, "labels CSV", ("path", "label"))
    if len(frame) == 0:
        raise NoisyCleanError(f"labels CSV {csv_path} has a header but no rows")
    return frame


def _relative(given: str, root: Path, root_abs: Path) -> tuple[str | None, Path]:
    """Map a manifest path to ``(relative POSIX path, or None if outside root; the file)``.

    A path is taken as spelled (``..`` and ``.`` resolved lexically), relative to the
    resolved root or to the root as the user spelled it, so that symbolic links in it are
    followed wherever they lead, as in an ImageFolder tree. An absolute path that does not
    lie under either spelling is kept when it resolves to a file under the root.
    """
    path = Path(given)
    for base in (root, root_abs):
        lexical = Path(os.path.normpath(path if path.is_absolute() else base / path))
        if lexical != base and lexical.is_relative_to(base):
            return lexical.relative_to(base).as_posix(), root / lexical.relative_to(base)
    resolved = (path if path.is_absolute() else root / path).resolve()
    if resolved != root and _inside(resolved, root):
        return resolved.relative_to(root).as_posix(), resolved
    return None, resolved


def _discover_manifest(
    root: Path, root_abs: Path, csv_path: Path, classes: list[str] | None
) -> Samples:
    """Manifest layout: a CSV with ``path`` and ``label`` columns."""
    csv_path = csv_path.expanduser()
    frame = _read_csv(csv_path)
    given_paths = [p.strip() for p in frame["path"].tolist()]
    given_labels = [lab.strip() for lab in frame["label"].tolist()]

    def row(i: int) -> int:
        return i + 2  # spreadsheet numbering: row 1 is the header

    for column, values in (("path", given_paths), ("label", given_labels)):
        empty = [row(i) for i, v in enumerate(values) if not v]
        if empty:
            raise NoisyCleanError(
                f"labels CSV {csv_path} has an empty {column!r} in row "
                f"{listing(empty, quote=False)} (row 1 is the header)"
            )

    rels: list[str] = []
    outside: list[str] = []
    missing: list[str] = []
    not_files: list[str] = []
    for given in given_paths:
        rel, file = _relative(given, root, root_abs)
        if rel is None:
            outside.append(given)
            continue
        rels.append(rel)
        if not file.exists():
            missing.append(given)
        elif not file.is_file():
            not_files.append(given)
    if outside:
        raise NoisyCleanError(
            f"{len(outside)} path(s) in labels CSV {csv_path} point outside the dataset root "
            f"{root}: {listing(outside)}; paths must lie inside the root (relative to it)"
        )
    if missing:
        raise NoisyCleanError(
            f"{len(missing)} path(s) in labels CSV {csv_path} do not exist under {root}: "
            f"{listing(missing)}"
        )
    if not_files:
        raise NoisyCleanError(
            f"{len(not_files)} path(s) in labels CSV {csv_path} are not files: {listing(not_files)}"
        )

    first_row: dict[str, int] = {}
    duplicates: dict[str, list[int]] = {}
    for i, rel in enumerate(rels):  # already normalised by _relative
        if rel in first_row:
            duplicates.setdefault(rel, [first_row[rel]]).append(row(i))
        else:
            first_row[rel] = row(i)
    if duplicates:
        shown = listing(
            (f"{rel!r} (rows {', '.join(map(str, rows))})"
             for rel, rows in duplicates.items()),
            quote=False, sep="; ",
        )
        raise NoisyCleanError(
            f"labels CSV {csv_path} lists {len(duplicates)} file(s) more than once: {shown}"
        )

    if classes is not None:
        known = set(classes)
        unknown = [(row(i), lab) for i, lab in enumerate(given_labels) if lab not in known]
        if unknown:
            labels_shown = listing(sorted({lab for _, lab in unknown}))
            raise NoisyCleanError(
                f"labels CSV {csv_path} has label(s) {labels_shown} that are not in the given "
                f"classes {listing(classes, 10)} (first in row {unknown[0][0]})"
            )
        names = list(classes)
    else:
        names = sorted(set(given_labels))

    index = {name: i for i, name in enumerate(names)}
    order = sorted(range(len(rels)), key=lambda i: rels[i])
    return Samples(
        root=root,
        paths=[rels[i] for i in order],
        labels=np.array([index[given_labels[i]] for i in order], dtype=np.int64),
        classes=names,
    )
