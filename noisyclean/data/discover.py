"""Find the samples of a dataset: which files, with which given label.

Two layouts are understood:

* ImageFolder: ``ROOT/<class>/<files, in any nested subfolders>``; the class is the name of the
  top-level folder a file lies under.
* Manifest: a CSV file with columns ``path`` and ``label``; paths are relative to ``ROOT``
  (absolute paths are accepted when they lie inside ``ROOT``). Symbolic links are followed
  in both.

Nothing here opens an image: every regular file is a sample, and the decoder later skips the
files that are not images (recording why). The user's files are only listed and ``stat``-ed,
never opened, so a named pipe cannot block discovery. Entries that cannot be samples (a name
that is not valid UTF-8, which no output file could hold; a named pipe, socket or device) are
listed with the reason, for ``skipped.csv``, under a printable spelling (:func:`printable`):
no name that is not text reaches the outputs. A dataset that cannot be used raises
:class:`~noisyclean.errors.NoisyCleanError` with one clear message.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..csvread import read_user_csv_lines
from ..errors import FEW, NoisyCleanError, listing
from ..names import is_utf8, nfc, printable, unique_nfc_forms

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
        unusable: ``(path relative to root, reason)`` of each other file or folder that
            cannot be used: a name that is not valid UTF-8 (:data:`NAME_NOT_UTF8`,
            :data:`FOLDER_NOT_UTF8`; the path spelled by :func:`printable`) or an entry that
            is not a regular file (:data:`NOT_REGULAR`); ImageFolder layout, for
            ``skipped.csv``.
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    not_followed: list[tuple[str, str]] = field(default_factory=list)
    unusable: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.paths)

    @property
    def found(self) -> int:
        """Entries found: the samples, the symbolic links not followed and the unusable
        entries (a summary's ``found`` count, of which the last two are ``skipped``)."""
        return len(self.paths) + len(self.not_followed) + len(self.unusable)


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
            columns are ignored); how its paths and labels are matched: see below.
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
    (loops, broken links) are listed in the result's ``not_followed``. Files and folders whose
    name is not valid UTF-8, class folders too, and entries that are not regular files (named
    pipes, sockets, devices) are not used, and are listed in the result's ``unusable``.

    Manifest rules: a path is the file so named as written; if there is none, the file named
    without the cell's surrounding spaces; if there is none either, the one file whose path
    is the same in Unicode NFC (a manifest written on macOS spells ``é`` as ``e`` and a
    combining accent, NFD: each folder and file name is compared in NFC). A label is
    taken as written when that names a class: one of ``classes``, or, without ``classes``,
    a folder directly under ``root`` (``relabeled.csv`` of an ImageFolder scan, fed back
    against that folder, keeps a class folder ``" sp"`` as ``" sp"``); otherwise it is read
    without its surrounding spaces (``path, label`` typed with a space after the comma), and
    with ``classes`` as the one class it equals in NFC. So ``cat`` and ``" cat"`` are one
    class unless a class is so named. Error messages cite the line of the file a row is on.
    The dataset folder's and the manifest's own paths must be valid UTF-8 (the outputs
    name them).
    """
    for what, given in (("dataset folder", root), ("labels CSV", labels_csv)):
        if given is not None and not is_utf8(str(given)):
            raise NoisyCleanError(
                f"{what} {printable(str(given))} has a name that is not valid UTF-8, which "
                "the outputs cannot hold: rename it"
            )
    root_arg = Path(root).expanduser()
    if not root_arg.exists():
        raise NoisyCleanError(f"dataset folder {root_arg} does not exist")
    if not root_arg.is_dir():
        raise NoisyCleanError(f"dataset path {root_arg} is not a folder")
    root_dir = root_arg.resolve()
    if not is_utf8(str(root_dir)):
        raise NoisyCleanError(
            f"dataset folder {root_arg} is {printable(str(root_dir))}, a path that is not "
            "valid UTF-8, which the outputs cannot hold: rename it"
        )
    if classes is not None:
        classes = _check_class_list(classes)

    if labels_csv is None:
        samples = _discover_folders(root_dir, classes)
    else:
        samples = _discover_manifest(root_dir, root_arg.absolute(), Path(labels_csv), classes)

    if len(samples) == 0:
        links = (f" ({len(samples.not_followed)} symbolic link(s) not followed, e.g. "
                 f"'{samples.not_followed[0][0]}': {samples.not_followed[0][1]})"
                 if samples.not_followed else "")
        if samples.unusable:
            links += (f" ({len(samples.unusable)} file(s) or folder(s) not usable, e.g. "
                      f"'{samples.unusable[0][0]}': {samples.unusable[0][1]})")
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


#: ``skipped.csv`` reasons for entries :func:`discover` cannot use (``Samples.unusable``).
NAME_NOT_UTF8 = "file name is not valid UTF-8: rename it"
FOLDER_NOT_UTF8 = "folder name is not valid UTF-8: rename it (the files in it are not used)"
NOT_REGULAR = "not a regular file"  # + " (a named pipe)", " (a socket)", " (a device)"


def _not_regular(entry: os.DirEntry[str]) -> str:
    """The ``skipped.csv`` reason for an entry that is neither a folder nor a regular file
    (``stat`` only, never opened)."""
    try:
        mode = entry.stat().st_mode
    except OSError:
        return NOT_REGULAR
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(mode)), None)
    return f"{NOT_REGULAR} ({kind})" if kind else NOT_REGULAR


def _check_class_list(classes: list[str]) -> list[str]:
    """Validate a user-given class list (non-empty, no duplicates, no blank names, valid
    UTF-8)."""
    classes = [str(c) for c in classes]
    if not classes:
        raise NoisyCleanError("the list of classes is empty; give at least two class names")
    if any(not c.strip() for c in classes):
        raise NoisyCleanError(f"the list of classes contains an empty name: {classes!r}")
    for name in classes:
        if not is_utf8(name):
            raise NoisyCleanError(
                f"class '{printable(name)}' is not valid UTF-8, which the outputs cannot "
                "hold: rename its folder"
            )
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
    folder: str,
    not_followed: list[tuple[str, str]],
    ancestors: tuple[str, ...],
    unusable: list[tuple[str, str]],
) -> Iterator[str]:
    """Paths (under ``folder``, as spelled there) of the sample files under ``folder``,
    recursively, hidden names left out.

    Symbolic links are followed, to files and to folders, wherever they lead (as
    torchvision's ``ImageFolder`` does), except a link to a folder that holds one of
    ``ancestors`` (the real paths of the dataset folder and of the folders walked down to
    here), which would loop. Links not followed (loops, broken links) are appended to
    ``not_followed`` as ``(path, reason)``; files and folders whose name is not valid UTF-8
    (a folder is not walked) and entries that are not regular files (named pipes, ...; only
    ``stat``-ed, never opened) to ``unusable``. Unreadable subfolders are skipped.
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
                if not is_utf8(entry.name):
                    unusable.append((entry.path, FOLDER_NOT_UTF8))
                    continue
                real = os.path.realpath(entry.path)
                if entry.is_symlink() and any(_holds(real, a) for a in ancestors):
                    not_followed.append((entry.path, LINK_LOOP))
                    continue
                yield from _walk_files(entry.path, not_followed, (*ancestors, real), unusable)
            elif entry.is_symlink() and not os.path.exists(entry.path):
                not_followed.append((entry.path, LINK_BROKEN))
            elif not is_utf8(entry.name):
                unusable.append((entry.path, NAME_NOT_UTF8))
            elif entry.is_file():
                yield entry.path
            else:
                unusable.append((entry.path, _not_regular(entry)))
        except OSError:  # e.g. a link that points to itself
            if entry.is_symlink():
                not_followed.append((entry.path, LINK_BROKEN))


def class_folders(root: Path) -> tuple[list[str], list[str]]:
    """Names of the (non-hidden) subfolders of ``root``, symbolic links to folders
    included: those that are valid UTF-8, and those that are not (not usable as classes),
    each sorted.

    Raises:
        NoisyCleanError: ``root`` cannot be read.
    """
    names, not_utf8 = [], []
    try:
        with os.scandir(root) as it:
            for entry in it:
                try:
                    if not entry.name.startswith(".") and entry.is_dir():
                        (names if is_utf8(entry.name) else not_utf8).append(entry.name)
                except OSError:  # a link that points to itself: not a folder
                    continue
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise NoisyCleanError(f"cannot read dataset folder {root}: {reason}") from None
    return sorted(names), sorted(not_utf8)


def _missing_class_hint(name: str, folders: list[str]) -> str:
    """The end of the error for a class ``name`` that is no folder: the folders found, and
    those whose name is ``name`` with spaces around it, which ``--classes`` cannot name
    (it strips the spaces around each name)."""
    if not folders:
        return ""
    spaced = [folder for folder in folders if folder != name and folder.strip() == name]
    hint = f" (folders found: {listing(folders, 10)})"
    if spaced:
        verb = "is" if len(spaced) == 1 else "are"
        hint += (f"; {listing(spaced, 10)} {verb} that name with spaces around it, which "
                 "--classes strips: rename the folder to choose it")
    return hint


def _discover_folders(root: Path, classes: list[str] | None) -> Samples:
    """ImageFolder layout: one subfolder per class. A class folder whose name is not valid
    UTF-8 is not read, and is listed in ``unusable`` (unless ``classes`` names the folders
    to read)."""
    folders, not_utf8 = class_folders(root)
    not_followed: list[tuple[str, str]] = []
    unusable: list[tuple[str, str]] = []
    if classes is None:
        unusable += [(printable(name), FOLDER_NOT_UTF8) for name in not_utf8]
        names = folders
    else:
        available = set(folders)
        for name in classes:
            if name not in available:
                raise NoisyCleanError(f"class {name!r} is not a folder under {root}"
                                      f"{_missing_class_hint(name, folders)}")
        names = classes

    found: list[tuple[str, int]] = []
    kept: list[str] = []
    for name in names:
        folder, real = str(root / name), os.path.realpath(root / name)
        links: list[tuple[str, str]] = []
        bad: list[tuple[str, str]] = []
        if _holds(real, str(root)):  # a class folder linked to the dataset folder or above
            links.append((folder, LINK_LOOP))
            files = []
        else:
            files = list(_walk_files(folder, links, (str(root), real), bad))
        rels = [Path(p).relative_to(root).as_posix() for p in files]
        not_followed += [(printable(Path(p).relative_to(root).as_posix()), why)
                         for p, why in links]
        unusable += [(printable(Path(p).relative_to(root).as_posix()), why) for p, why in bad]
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
        unusable=sorted(unusable),
    )


# --------------------------------------------------------------------------- manifest


def _read_csv(csv_path: Path) -> tuple[pd.DataFrame, list[int]]:
    """Read the manifest as text, with each row's line in the file
    (:func:`~noisyclean.csvread.read_user_csv_lines`); refuse one without rows."""
    frame, lines = read_user_csv_lines(csv_path, "labels CSV", ("path", "label"))
    if len(frame) == 0:
        raise NoisyCleanError(f"labels CSV {csv_path} has a header but no rows")
    return frame, lines


def _on_lines(lines: list[int]) -> str:
    """``line 6`` or ``lines 3, 6`` (the first few, then how many more)."""
    return f"line{'s' if len(lines) > 1 else ''} {listing(lines, quote=False)}"


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


class _Folders:
    """Each folder's entry names by their NFC form, listed once per folder (for the
    manifest paths that are not found as written)."""

    def __init__(self) -> None:
        self._names: dict[Path, dict[str, list[str]]] = {}

    def named(self, folder: Path, form: str) -> list[str]:
        """The names of ``folder``'s entries whose NFC form is ``form`` (none when the
        folder cannot be listed)."""
        if folder not in self._names:
            forms: dict[str, list[str]] = {}
            try:
                for name in sorted(os.listdir(folder)):
                    forms.setdefault(nfc(name), []).append(name)
            except (OSError, ValueError):
                pass
            self._names[folder] = forms
        return self._names[folder].get(form, [])


def _unicode_spellings(root: Path, rel: str, folders: _Folders) -> list[str]:
    """The relative paths of the entries under ``root`` whose every folder and file name is
    ``rel``'s in NFC (a path written in NFD for files named in NFC, or the other way)."""
    found: list[tuple[str, ...]] = [()]
    for part in rel.split("/"):
        form = nfc(part)
        found = [(*parts, name) for parts in found
                 for name in folders.named(root.joinpath(*parts), form)]
        if not found:
            return []
    return ["/".join(parts) for parts in found if root.joinpath(*parts).exists()]


def _match_path(
    given: str, root: Path, root_abs: Path, folders: _Folders
) -> tuple[str | None, Path, list[str]]:
    """The file a manifest path names (see :func:`discover`'s manifest rules).

    Returns:
        ``(relative path, file, [])`` for the entry found as written or without the
        cell's surrounding spaces, or the one entry that matches in NFC; else the path as
        written (``None`` for a path outside the root) with the spellings that match in NFC
        (several: which one is meant is unclear; none: nothing is there).
    """
    tried: list[tuple[str | None, Path]] = []
    for text in dict.fromkeys((given, given.strip())):
        rel, file = _relative(text, root, root_abs)
        if rel is not None and file.exists():
            return rel, file, []
        tried.append((rel, file))
    spellings = sorted({spelling for rel, _ in tried if rel is not None
                        for spelling in _unicode_spellings(root, rel, folders)})
    if len(spellings) == 1:
        return spellings[0], root / spellings[0], []
    rel, file = next(((rel, file) for rel, file in tried if rel is not None), tried[0])
    return rel, file, spellings


def _class_names(
    given: list[str], root: Path, classes: list[str] | None
) -> dict[str, str | None]:
    """Each distinct label as written -> the class it names (see :func:`discover`'s
    manifest rules); None for a label that is not one of ``classes``."""
    by_nfc = unique_nfc_forms(classes or [])
    known = set(classes or [])
    names: dict[str, str | None] = {}
    for label in dict.fromkeys(given):
        stripped = label.strip()
        if classes is not None:
            if label in known or stripped in known:
                names[label] = label if label in known else stripped
            else:
                names[label] = by_nfc.get(nfc(stripped))
        else:
            names[label] = label if label == stripped or _is_folder(root, label) else stripped
    return names


def _is_folder(root: Path, name: str) -> bool:
    """Whether ``name`` is a folder directly under ``root``."""
    if "/" in name or os.sep in name:
        return False
    try:
        return (root / name).is_dir()
    except (OSError, ValueError):  # e.g. a NUL in the name
        return False


def _discover_manifest(
    root: Path, root_abs: Path, csv_path: Path, classes: list[str] | None
) -> Samples:
    """Manifest layout: a CSV with ``path`` and ``label`` columns (rules in
    :func:`discover`)."""
    csv_path = csv_path.expanduser()
    frame, lines = _read_csv(csv_path)
    given_paths = frame["path"].tolist()
    given_labels = frame["label"].tolist()

    for column, values in (("path", given_paths), ("label", given_labels)):
        empty = [line for line, v in zip(lines, values, strict=True) if not v.strip()]
        if empty:
            raise NoisyCleanError(
                f"labels CSV {csv_path} has an empty {column!r} on {_on_lines(empty)}"
            )

    folders = _Folders()
    rels: list[str] = []
    outside: list[str] = []
    missing: list[str] = []
    not_files: list[str] = []
    unclear: list[str] = []
    for given, line in zip(given_paths, lines, strict=True):
        rel, file, spellings = _match_path(given, root, root_abs, folders)
        cited = f"{given!r} (line {line})"
        if rel is None:
            outside.append(cited)
            continue
        rels.append(rel)
        if spellings:
            unclear.append(f"{given!r} (line {line}; {listing(spellings, FEW)})")
        elif not file.exists():
            missing.append(cited)
        elif not file.is_file():
            not_files.append(cited)
    if outside:
        raise NoisyCleanError(
            f"{len(outside)} path(s) in labels CSV {csv_path} point outside the dataset root "
            f"{root}: {listing(outside, quote=False)}; paths must lie inside the root "
            "(relative to it)"
        )
    if missing:
        slashed = [p for p in given_paths if "\\" in p]
        hint = ("; folders are separated by '/' (on this system a '\\' is part of a file "
                "name): write the paths with '/'"
                if os.name != "nt" and slashed else "")
        raise NoisyCleanError(
            f"{len(missing)} path(s) in labels CSV {csv_path} do not exist under {root}: "
            f"{listing(missing, quote=False)}{hint}"
        )
    if unclear:
        raise NoisyCleanError(
            f"{len(unclear)} path(s) in labels CSV {csv_path} do not exist under {root} as "
            "written, and match more than one file in another Unicode form (NFC/NFD): "
            f"{listing(unclear, quote=False, sep='; ')}; write each path as its file is named"
        )
    if not_files:
        raise NoisyCleanError(
            f"{len(not_files)} path(s) in labels CSV {csv_path} are not files: "
            f"{listing(not_files, quote=False)}"
        )

    first_line: dict[str, int] = {}
    duplicates: dict[str, list[int]] = {}
    for line, rel in zip(lines, rels, strict=True):  # already normalised by _match_path
        if rel in first_line:
            duplicates.setdefault(rel, [first_line[rel]]).append(line)
        else:
            first_line[rel] = line
    if duplicates:
        shown = listing(
            (f"{rel!r} (lines {', '.join(map(str, found))})"
             for rel, found in duplicates.items()),
            quote=False, sep="; ",
        )
        raise NoisyCleanError(
            f"labels CSV {csv_path} lists {len(duplicates)} file(s) more than once: {shown}"
        )

    spelled = _class_names(given_labels, root, classes)
    if classes is not None:
        unknown = [(line, lab) for line, lab in zip(lines, given_labels, strict=True)
                   if spelled[lab] is None]
        if unknown:
            labels_shown = listing(sorted({lab for _, lab in unknown}))
            raise NoisyCleanError(
                f"labels CSV {csv_path} has label(s) {labels_shown} that are not in the given "
                f"classes {listing(classes, 10)} (first on line {unknown[0][0]})"
            )
        names = list(classes)
    else:
        names = sorted({name for name in spelled.values() if name is not None})

    index = {name: i for i, name in enumerate(names)}
    order = sorted(range(len(rels)), key=lambda i: rels[i])
    return Samples(
        root=root,
        paths=[rels[i] for i in order],
        labels=np.array([index[spelled[given_labels[i]]] for i in order], dtype=np.int64),
        classes=names,
    )
