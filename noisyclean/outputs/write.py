"""Atomic writers: every output goes to a temporary file in the same folder, then is renamed
over the target, so a crash never leaves a half-written file."""

from __future__ import annotations

import io
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import NoisyCleanError


def prepare_out_dir(out: Path) -> Path:
    """Create the output folder (and parents); refuse a path that is an existing file, or
    a folder this process cannot write in (a read-only file system, no permission), which
    a run would otherwise find only when it writes its results, after the training."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise NoisyCleanError(f"output folder {out} is a symbolic link to nothing "
                              f"({os.readlink(out)})")
    if out.exists() and not out.is_dir():
        raise NoisyCleanError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NoisyCleanError(f"cannot create output folder {out}: {error.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise NoisyCleanError(f"cannot write in output folder {out} (no permission, or a "
                              "read-only file system)")
    return out


#: The file that marks an output folder a run is writing into (:func:`run_lock`).
LOCK_NAME = ".noisyclean.lock"


def _lock_holder(lock: Path) -> tuple[int, str] | None:
    """The process id and host a lock file names, or None where it names none (empty: a
    run stopped between creating and writing it; garbled)."""
    try:
        pid, host = lock.read_text(encoding="utf-8").split()
        return int(pid), host
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _gone(holder: tuple[int, str] | None) -> bool:
    """Whether the run a lock names has ended: a lock that names no run, or a process of
    this host that no longer exists (a run killed before it could remove its lock). Not
    decided on another host, nor on Windows, where signal 0 is not a probe."""
    if holder is None:
        return True
    pid, host = holder
    if host != socket.gethostname() or os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's process
        return False
    return False


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold the output folder ``out`` for this run: :data:`LOCK_NAME` names this process
    and host while the run lasts, and a second run into the same folder is refused (two
    trainings overwrote each other's checkpoint after every epoch; of two scans the last
    to finish won, having removed the other's files). A lock whose run has ended without
    removing it (killed) is taken over.

    Raises:
        NoisyCleanError: another run holds ``out``.
    """
    lock = Path(out) / LOCK_NAME
    mine = f"{os.getpid()} {socket.gethostname()}"
    for attempt in (1, 2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if attempt == 1 and _gone(holder):
                lock.unlink(missing_ok=True)
                continue
            who = f"process {holder[0]} on {holder[1]}" if holder else "another process"
            raise NoisyCleanError(
                f"another noisyclean run ({who}) is writing into {out}: wait for it to end, "
                f"or choose another output folder (if no run is, remove {lock})"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(mine + "\n")
        break
    try:
        yield
    finally:
        if _lock_holder(lock) == (os.getpid(), socket.gethostname()):
            lock.unlink(missing_ok=True)


@contextmanager
def removed_if_left_empty(out: Path | None) -> Iterator[None]:
    """Run the block; when it fails, remove the output folder ``out`` (and the parents
    created with it) if it did not exist before and is still empty: a run refused for its
    data or options leaves no empty folder behind. None: nothing to watch."""
    if out is None:
        yield
        return
    out = Path(out).absolute()
    first_missing = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        first_missing = folder
    try:
        yield
    except BaseException:
        if first_missing is not None:
            for folder in (out, *out.parents):
                try:
                    folder.rmdir()  # only an empty folder
                except OSError:
                    break
                if folder == first_missing:
                    break
        raise


def check_out_outside_data(
    out: Path, data: Path, labels: Path | None = None, option: str = "--out"
) -> None:
    """Refuse an output folder that is an ImageFolder dataset folder or lies inside one, or
    inside one of its class folders where that is a symbolic link to a folder elsewhere
    (discovery follows it): the outputs would be written among the images and read as a
    class, or as images of one, by the next run. With a ``labels`` manifest, which lists
    its images, any output folder is fine."""
    if labels is not None:
        return
    out_abs, data_abs = Path(out).expanduser().resolve(), Path(data).expanduser().resolve()
    if out_abs == data_abs or out_abs.is_relative_to(data_abs):
        raise NoisyCleanError(
            f"{option} {out} lies inside the dataset folder {data}: its files would be written "
            "among the images and read as a class by the next run; choose a folder outside it"
        )
    for folder, target in linked_class_folders(Path(data).expanduser()):
        if out_abs == target or out_abs.is_relative_to(target):
            raise NoisyCleanError(
                f"{option} {out} lies inside the class folder {folder}, a link to {target}: "
                "its files would be read as images of that class by the next run; choose a "
                "folder outside it"
            )


def linked_class_folders(data: Path) -> list[tuple[Path, Path]]:
    """The class folders of an ImageFolder tree (its folders not named ``.*``) that are
    symbolic links, each with the folder it leads to; not those that lead to a folder
    holding the dataset folder (a loop, which discovery does not follow)."""
    data_abs = data.resolve()
    try:
        entries = sorted(data.iterdir())
    except OSError:  # no such folder, or not one: discovery says so
        return []
    linked = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_symlink() or not entry.is_dir():
            continue
        target = entry.resolve()
        if not data_abs.is_relative_to(target):
            linked.append((entry, target))
    return linked


#: ``--save-probs``' file of a scan or ``train`` run: the predicted probabilities.
PROBS_NAME = "pred_probs.npy"

#: Files that commands other than ``scan`` derive from a scan's outputs, in its folder
#: (``--save-probs``, ``report``, ``evaluate``, ``export``): a new scan or ``train``
#: run into the same folder removes them (:func:`remove_stale_outputs`), so that none is
#: left describing other results.
DERIVED_OUTPUTS = (
    PROBS_NAME, "report.html", "evaluation.json", "labelstudio.json",
    "labelstudio.xml", "review.csv",
)
#: Files only ``train`` writes: its per-epoch history and checkpoint (and its networks
#: ``net<k>.pt``, matched by ``NETWORK_FILE``).
TRAIN_OUTPUTS = ("history.csv", "checkpoint.pt")


#: Files a scan (or ``train``) writes into its output folder: the results every review
#: command reads back, or that only a new run can make again (``pred_probs.npy``,
#: ``checkpoint.pt``, the networks ``net<k>.pt``, matched by ``NETWORK_FILE``).
SCAN_OUTPUTS = (
    "scores.csv", "summary.json", "relabeled.csv", "skipped.csv", PROBS_NAME,
    *TRAIN_OUTPUTS,
)
NETWORK_FILE = re.compile(r"net\d+\.pt")


#: How each review command's file begins (its first 4 KB), so that an existing file at
#: ``-o`` is written over only where the command wrote it: a report, a review sheet (a
#: spreadsheet keeps its header), Label Studio tasks and their config, an evaluation.
OWN_FILE_MARKS: dict[str, Callable[[bytes], bool]] = {
    "report": lambda head: b"<title>noisyclean report" in head,
    # in any encoding a spreadsheet saves it (UTF-16: the header's NUL bytes dropped)
    "review sheet": lambda head: all(
        column in head.replace(b"\x00", b"").split(b"\n", 1)[0].lower()
        for column in (b"path", b"decision")),
    "Label Studio tasks": lambda head: head.lstrip().startswith(b"[") and (
        b'"data"' in head or head.strip() == b"[]"),
    "Label Studio config": lambda head: head.lstrip().startswith(b"<View>"),
    "evaluation": lambda head: head.lstrip().startswith(b"{") and b'"n_wrong"' in head,
}


def check_review_output(
    target: Path,
    out: Path,
    option: str = "--output",
    data_root: Path | None = None,
    inputs: Mapping[str, Path | str | None] | None = None,
    kind: str | None = None,
) -> None:
    """Refuse to write a review command's file (``report``, ``export``, ``evaluate``) over
    one of the scan's own files in its output folder (:data:`SCAN_OUTPUTS`): that would
    destroy the results every later command reads; over such a file of another run's
    output folder (one that holds a ``summary.json``); into the dataset folder ``data_root``
    or a class folder of it that links elsewhere (outside the output folder), whose images
    the review commands never modify; or over
    one of the ``inputs`` (option -> file: ``--truth``, the scan's ``--labels``). Paths
    are compared resolved, so ``OUT/./scores.csv``, a relative spelling or a symbolic link
    to it are refused too. With ``kind`` (a key of :data:`OWN_FILE_MARKS`), an existing
    non-empty file that does not begin as that kind of file is refused too: ``-o`` with
    the name of the user's own file (a truth CSV, a page) would destroy it.

    Raises:
        NoisyCleanError: ``target`` is one of those files, or lies in the dataset folder.
    """
    out_dir = Path(out).expanduser().resolve()
    resolved = Path(target).expanduser().resolve()
    name = resolved.name
    own = name in SCAN_OUTPUTS or NETWORK_FILE.fullmatch(name) is not None
    if resolved.parent == out_dir and own:
        raise NoisyCleanError(
            f"{option} {target} is the scan's own {name} in {out}: writing there would "
            "destroy the scan's results; choose another file name"
        )
    if own and resolved.is_file() and (resolved.parent / "summary.json").is_file():
        raise NoisyCleanError(
            f"{option} {target} is the {name} of another run's output folder "
            f"{resolved.parent}: writing there would destroy that run's results; choose "
            "another file name"
        )
    for input_option, path in (inputs or {}).items():
        if path is not None and Path(path).expanduser().resolve() == resolved:
            raise NoisyCleanError(
                f"{option} {target} is the {input_option} file this reads: writing there "
                "would destroy it; choose another file name"
            )
    if data_root is not None:
        data = Path(data_root).expanduser().resolve()
        if resolved.is_relative_to(data) and not resolved.is_relative_to(out_dir):
            raise NoisyCleanError(
                f"{option} {target} lies in the dataset folder {data_root}, which the review "
                "commands never write into; choose a file outside it"
            )
        for folder, linked in linked_class_folders(Path(data_root).expanduser()):
            if resolved.is_relative_to(linked) and not resolved.is_relative_to(out_dir):
                raise NoisyCleanError(
                    f"{option} {target} lies in the class folder {folder}, a link to "
                    f"{linked}, which the review commands never write into; choose a file "
                    "outside it"
                )
    if kind is not None and resolved.is_file():
        try:
            with resolved.open("rb") as handle:
                head = handle.read(4096)
        except OSError:
            head = b""  # unreadable: written over as before, the write says why if it fails
        if head and not OWN_FILE_MARKS[kind](head.removeprefix(b"\xef\xbb\xbf")):
            raise NoisyCleanError(
                f"{option} {target} is a file that this command did not write (not a "
                f"noisyclean {kind}): writing there would destroy it; choose another file "
                "name, or remove it first"
            )


def _run_file(name: str) -> bool:
    """Whether a scan or ``train`` run writes or removes a file of this name in its output
    folder (:data:`SCAN_OUTPUTS`, :data:`DERIVED_OUTPUTS`, ``net<k>.pt``)."""
    return (name in SCAN_OUTPUTS or name in DERIVED_OUTPUTS
            or NETWORK_FILE.fullmatch(name) is not None)


def check_inputs_outside_out(out: Path, inputs: Mapping[str, Path | str | None]) -> None:
    """Refuse an input file (``--labels``, ``--truth``, a ``--weights`` file, ...) that is
    one of the files the run writes or removes in its output folder ``out`` (``OUT/
    relabeled.csv`` fed back with ``--out OUT``): the run would replace the user's file, and
    a resumed ``train`` would no longer find the data it was trained on. Paths are compared
    resolved, and as spelled with their folder resolved (a link in ``out`` named like an
    output is replaced, not followed, when the run writes).

    Args:
        out: the run's output folder.
        inputs: option name -> the file it names (None: not given).

    Raises:
        NoisyCleanError: one of them is such a file.
    """
    out_dir = Path(out).expanduser().resolve()
    for option, value in inputs.items():
        if value is None:
            continue
        path = Path(value).expanduser()
        for spelled in (path.resolve(), path.absolute().parent.resolve() / path.name):
            if spelled.parent == out_dir and _run_file(spelled.name):
                raise NoisyCleanError(
                    f"{option} {value} is the {spelled.name} in {out}, which this run "
                    f"replaces or removes: the file would be lost; choose another --out (or "
                    f"move the file out of {out})"
                )


def remove_stale_outputs(out: Path, keep: Collection[str] = (),
                         warn: Callable[[str], None] | None = None) -> list[str]:
    """Remove from ``out`` the files of earlier runs that a new run's results would leave
    describing other results: the :data:`DERIVED_OUTPUTS`, ``train``'s ``history.csv`` and
    networks ``net<k>.pt``, but those in ``keep`` (the files this run writes). Never a
    ``checkpoint.pt``: ``train`` writes its own, and a scan refuses a folder holding one.
    Nor a ``review.csv`` that holds a reviewer's work, or cannot be read, now (filled in
    while the run trained): ``warn`` is told it was kept. Returns the names removed."""
    out = Path(out)
    try:
        networks = sorted(p.name for p in out.iterdir() if NETWORK_FILE.fullmatch(p.name))
    except OSError:
        networks = []
    removed = []
    for name in (*DERIVED_OUTPUTS, "history.csv", *networks):
        path = out / name
        if name in keep or not path.is_file():
            continue
        if name == "review.csv" and (filled := filled_review_rows(path)) != 0:
            # filled in while this run trained (the run refused one that was so already)
            if warn is not None:
                warn(f"{review_work_text(path, filled)}, filled in while this run ran: kept, "
                     "though it lists the earlier run's rows")
            continue
        try:
            path.unlink()
        except OSError as error:
            raise NoisyCleanError(
                f"cannot remove {path}, left from an earlier run: {error.strerror or error}"
            ) from None
        removed.append(name)
    return removed


def labels_file(labels: Path | str | None) -> str | None:
    """A ``--labels`` manifest's absolute path, as ``summary.json`` records it (None
    without one)."""
    return str(Path(labels).expanduser().absolute()) if labels else None


def unlink_if_present(path: Path) -> None:
    """Remove the file at ``path`` where there is one.

    Raises:
        NoisyCleanError: it is there and cannot be removed.
    """
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as error:
        raise NoisyCleanError(f"cannot remove {path}: {error.strerror or error}") from None


def read_csv_if_readable(path: Path) -> pd.DataFrame | None:
    """A CSV file the tool wrote, or a person edited, as text cells (a byte-order mark
    skipped), or None where it is missing, empty or unreadable: for files whose absence
    only means there is nothing to do (a manifest of an earlier ``apply``, ``skipped.csv``,
    a review sheet)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def filled_review_rows(path: Path) -> int | None:
    """How many rows of the review sheet at ``path`` have a non-blank ``decision`` or
    ``comment`` (a reviewer's work): 0 when there is no such file, an empty one, or one
    without either column; None when it is there but cannot be read as a UTF-8 CSV file (a
    sheet a spreadsheet saved in another encoding, one without read permission), which may
    hold a reviewer's work as well."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return 0
        sheet = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        return 0
    except (OSError, ValueError, pd.errors.ParserError):  # UnicodeDecodeError included
        return None
    sheet.columns = [str(c).strip().lower() for c in sheet.columns]
    filled = pd.Series(False, index=sheet.index)
    for column in ("decision", "comment"):
        if column in sheet.columns:
            filled |= sheet[column].str.strip() != ""
    return int(filled.sum())


def review_work_text(sheet: Path, filled: int | None) -> str:
    """How a message names the reviewer's work in ``sheet``: its filled rows, or that it
    cannot be read (:func:`filled_review_rows`)."""
    if filled is None:
        return (f"{sheet} cannot be read as a UTF-8 CSV file, and may hold a reviewer's work "
                "(a spreadsheet may have saved it in another encoding: save it as CSV UTF-8)")
    return f"{sheet} holds a reviewer's work ({filled} row(s) with a decision or a comment)"


def refuse_filled_review_sheet(out: Path) -> None:
    """Refuse a run into ``out`` while its ``review.csv`` (``export --format csv``) holds a
    reviewer's work, or cannot be read (:func:`filled_review_rows`): the run would remove
    it with the other files derived from an earlier run's results
    (:func:`remove_stale_outputs`), and a person's decisions cannot be made again by
    rerunning a command.

    Raises:
        NoisyCleanError: such a sheet is there.
    """
    sheet = Path(out) / "review.csv"
    filled = filled_review_rows(sheet)
    if filled != 0:
        raise NoisyCleanError(
            f"{review_work_text(sheet, filled)}, which this run would remove with the earlier "
            f"run's other outputs: move it out of {out} first (apply --decisions reads it "
            "from anywhere)"
        )


def stale_outputs_text(names: list[str], out: Path) -> str:
    """The log line naming the files of earlier runs that :func:`remove_stale_outputs`
    removed from ``out``."""
    return (f"removed {', '.join(names)} from {out}: an earlier run's, which would not "
            "match this one")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, flushed to the disk
    (``os.fsync``) before ``os.replace`` puts it in place: after a power cut the path holds
    the old file or the whole new one, not a renamed file whose data never reached the
    disk (which file systems such as ext4 with delayed allocation can leave).

    Raises:
        NoisyCleanError: the file cannot be written (a full disk, no permission, a folder
            of that name, ...); nothing is left behind.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        if isinstance(error, FileNotFoundError) and not path.parent.is_dir():
            raise NoisyCleanError(
                f"cannot write {path}: there is no folder {path.parent}; create it first"
            ) from None
        raise NoisyCleanError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise NoisyCleanError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def probs_in_table_order(probs: np.ndarray, paths: list[str], table: pd.DataFrame) -> np.ndarray:
    """``probs`` (rows in sample order, i.e. ``paths``) reordered to the table's rows, as
    float32."""
    row = {path: i for i, path in enumerate(paths)}
    order = np.array([row[path] for path in table["path"]], dtype=np.int64)
    return np.asarray(probs, dtype=np.float32)[order]


def write_pred_probs(path: Path, probs: np.ndarray) -> None:
    """Write ``pred_probs.npy`` atomically: ``probs`` as
    :func:`probs_in_table_order` gives them (float32 ``(n, C)``, row ``i`` the predicted
    probabilities of the table's row ``i``, columns in class-index order)."""
    buffer = io.BytesIO()
    np.save(buffer, probs, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame as CSV (no index) atomically."""
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can hold it: numpy numbers as Python ones, NaN and
    infinities as None, tuples as lists, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` (through :func:`json_safe`) as strict JSON, indented, UTF-8,
    atomically."""
    text = json.dumps(json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")
