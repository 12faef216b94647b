"""Atomic writers: every output goes to a temporary file in the same folder, then is renamed
over the target, so a crash never leaves a half-written file."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import NoisyCleanError


def prepare_out_dir(out: Path) -> Path:
    """Create the output folder (and parents); refuse a path that is an existing file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NoisyCleanError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NoisyCleanError(f"cannot create output folder {out}: {error.strerror}") from None
    return out


def check_out_outside_data(
    out: Path, data: Path, labels: Path | None = None, option: str = "--out"
) -> None:
    """Refuse an output folder that is an ImageFolder dataset folder or lies inside one: the
    outputs would be written among the images and read as a class by the next run. With a
    ``labels`` manifest, which lists its images, any output folder is fine."""
    if labels is not None:
        return
    out_abs, data_abs = Path(out).expanduser().resolve(), Path(data).expanduser().resolve()
    if out_abs == data_abs or out_abs.is_relative_to(data_abs):
        raise NoisyCleanError(
            f"{option} {out} lies inside the dataset folder {data}: its files would be written "
            "among the images and read as a class by the next run; choose a folder outside it"
        )


#: Files that commands other than ``scan`` derive from a scan's outputs, in its folder
#: (``scan --save-probs``, ``report``, ``evaluate``, ``export``): a new scan into the same
#: folder removes them, so that none is left describing other results.
DERIVED_OUTPUTS = (
    "pred_probs.npy", "report.html", "evaluation.json", "labelstudio.json",
    "labelstudio.xml", "review.csv",
)


#: Files a scan (or ``train``) writes into its output folder: the results every review
#: command reads back, or that only a new run can make again (``pred_probs.npy``,
#: ``checkpoint.pt``, the networks ``net<k>.pt``, matched by ``_NETWORK_FILE``).
SCAN_OUTPUTS = (
    "scores.csv", "summary.json", "relabeled.csv", "skipped.csv", "pred_probs.npy",
    "history.csv", "checkpoint.pt",
)
_NETWORK_FILE = re.compile(r"net\d+\.pt")


def check_review_output(target: Path, out: Path, option: str = "--output") -> None:
    """Refuse to write a review command's file (``report``, ``export``, ``evaluate``) over
    one of the scan's own files in its output folder (:data:`SCAN_OUTPUTS`): that would
    destroy the results every later command reads. Paths are compared resolved, so
    ``OUT/./scores.csv``, a relative spelling or a symbolic link to it are refused too.

    Raises:
        NoisyCleanError: ``target`` is one of those files.
    """
    out_dir = Path(out).expanduser().resolve()
    resolved = Path(target).expanduser().resolve()
    name = resolved.name
    own = name in SCAN_OUTPUTS or _NETWORK_FILE.fullmatch(name) is not None
    if resolved.parent == out_dir and own:
        raise NoisyCleanError(
            f"{option} {target} is the scan's own {name} in {out}: writing there would "
            "destroy the scan's results; choose another file name"
        )


def remove_stale_outputs(out: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove the :data:`DERIVED_OUTPUTS` (but ``keep``) that ``out`` holds; returns the
    names removed."""
    removed = []
    for name in DERIVED_OUTPUTS:
        path = Path(out) / name
        if name in keep or not path.is_file():
            continue
        try:
            path.unlink()
        except OSError as error:
            raise NoisyCleanError(
                f"cannot remove {path}, left from an earlier scan: {error.strerror or error}"
            ) from None
        removed.append(name)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Raises:
        NoisyCleanError: the file cannot be written (a full disk, no permission, a folder
            of that name, ...); nothing is left behind.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise NoisyCleanError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp creates the file 0600; give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise NoisyCleanError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame as CSV (no index) atomically."""
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def write_json(obj: Any, path: Path) -> None:
    """Write JSON (indented, UTF-8) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
