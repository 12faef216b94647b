"""The CSV files users write by hand or in a spreadsheet: a ``--labels`` manifest, a truth
file, a reviewer's decisions. One reader for all three, so that each takes the same files
(UTF-8 with or without a byte-order mark, CRLF or LF, spaces around column names, extra
columns) and fails the same ways, with one clear message each.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from .errors import NoisyCleanError, listing


def read_user_csv(path: str | Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a user's CSV file, every cell as text, with at least ``columns``.

    The header is read as a row of its own, so that a repeated column name is seen
    (pandas would rename the second ``label.1``) and a row with more cells than the header
    is an error (pandas would take the first column for an index). Column names are read
    without surrounding spaces; a row with fewer cells gets empty ones.

    Args:
        path: the file.
        what: how messages name it, e.g. ``"truth file"``.
        columns: the columns it must have (exactly so written: lower case).

    Returns:
        Every column, in file order; the header's row is not a row, and blank lines (empty,
        or only spaces and tabs) are no rows either. Cells are ``str``.
        :func:`read_user_csv_lines` also says on which line of the file each row is.

    Raises:
        NoisyCleanError: the file is missing, a folder, unreadable, empty, not UTF-8 text or
            not CSV (ragged rows), or lacks one of ``columns`` (the columns found are
            listed, and which to rename when only their case differs, or that the file is
            separated by semicolons, tabs or bars) or has one twice.
    """
    path = Path(path).expanduser()
    needs = f"it needs a header with columns {listing(columns, quote=True)}"
    if not path.exists():
        raise NoisyCleanError(f"cannot read {what} {path}: it does not exist")
    if path.is_dir():
        raise NoisyCleanError(f"cannot read {what} {path}: it is a folder, not a CSV file")
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                          encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise NoisyCleanError(f"{what} {path} is empty: {needs}") from None
    except UnicodeDecodeError:
        raise NoisyCleanError(
            f"{what} {path} is not a readable CSV file: it is not UTF-8 text (save it as "
            "CSV UTF-8)"
        ) from None
    except (pd.errors.ParserError, ValueError) as error:
        # pandas says "Error tokenizing data. C error: Expected 2 fields in line 3, saw 3"
        message = " ".join(str(error).split()).replace("Error tokenizing data. C error: ", "")
        # a sheet saved with ';' and decimal commas ("0,95"): one column in the header,
        # several in the rows
        try:
            with open(path, encoding="utf-8-sig") as handle:
                first = handle.readline().strip()
        except (OSError, UnicodeDecodeError):
            first = ""
        hint = _separator_hint([first], set(columns))
        raise NoisyCleanError(
            f"{what} {path} is not a readable CSV file: {message}{hint}") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise NoisyCleanError(f"cannot read {what} {path}: {reason}") from None
    frame = raw.iloc[1:].fillna("").reset_index(drop=True)
    frame.columns = [str(name).strip() for name in raw.iloc[0].fillna("")]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        cased = [name for name in frame.columns if name.lower() in missing]
        hint = (f"; column names are case-sensitive: rename {listing(cased)} to "
                f"{listing(name.lower() for name in cased)}" if cased else "")
        hint = hint or _separator_hint(list(frame.columns), set(missing))
        raise NoisyCleanError(
            f"{what} {path} lacks column(s) {listing(missing)}: {needs} (columns found: "
            f"{listing(frame.columns, 10) or 'none'}){hint}"
        )
    twice = sorted(set(frame.columns[frame.columns.duplicated()]) & set(columns))
    if twice:
        raise NoisyCleanError(f"{what} {path} has more than one column {listing(twice)}")
    return frame


def _separator_hint(headers: list[str], wanted: set[str]) -> str:
    """``; its columns seem separated by ';': save it with commas ...`` where one of
    ``headers``, split at ``;``, a tab or ``|``, holds every name in ``wanted``; else ``""``."""
    for sep in (";", "\t", "|"):
        if any(wanted <= {part.strip().lower() for part in header.split(sep)}
               for header in headers):
            shown = "a tab" if sep == "\t" else f"'{sep}'"
            return (f"; its columns seem separated by {shown}: save it with commas (in a "
                    "spreadsheet, as CSV with comma separators)")
    return ""


def read_user_csv_lines(
    path: str | Path, what: str, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, list[int]]:
    """:func:`read_user_csv`, and the line of the file on which each row starts, for
    messages that cite a row.

    Line numbers count every line of the file from 1, as a text editor does: the blank
    lines the reader skips and the lines inside a quoted cell that holds line breaks
    included (so a row's line is its spreadsheet row when no cell holds a line break).

    Returns:
        The frame and, for its row ``i``, the line it starts on. In a file the line count
        cannot be matched to the rows (a quoted cell of only spaces on a line of its own, a
        cell too large for Python's ``csv`` module), rows are numbered as records instead:
        the header's row 1, the first row 2, blank lines not counted.

    Raises:
        NoisyCleanError: as :func:`read_user_csv`.
    """
    frame = read_user_csv(path, what, columns)
    starts = _record_lines(Path(path).expanduser())
    if starts is None or len(starts) != len(frame) + 1:
        return frame, list(range(2, len(frame) + 2))
    return frame, starts[1:]


def _record_lines(path: Path) -> list[int] | None:
    """The line each record of a CSV file (header included) starts on, the blank lines
    left out as pandas leaves them out; None when Python's ``csv`` module cannot read it."""
    starts: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            previous = 0
            for record in reader:
                if len(record) > 1 or any(cell.strip(" \t") for cell in record):
                    starts.append(previous + 1)
                previous = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return starts
