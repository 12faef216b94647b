"""A reviewer's decisions, read back for ``apply``: ``review.csv`` (``export --format
csv``) with its ``decision`` column filled in, one of ``keep``, ``relabel``, ``drop`` or a
class name per image, overriding the scan's ``action`` row by row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import NoisyCleanError, listing
from .load import safe_name

#: Keywords of a decisions file's ``decision`` column (case-insensitive); any other value
#: is a class name. A class that is itself named ``keep``, ``relabel`` or ``drop`` is meant
#: only when written exactly as the class is.
DECISION_KEYWORDS = ("keep", "relabel", "drop")
#: How many offending paths or decisions an error message lists.
_SHOW = 3


def read_decisions(path: str | Path) -> pd.DataFrame:
    """Read a reviewer's decisions: a CSV with (at least) ``path`` and ``decision`` columns,
    as ``export --format csv`` writes ``review.csv``, perhaps edited in a spreadsheet.

    Read as UTF-8 text (a byte-order mark is skipped), CRLF or LF, every cell as text;
    column names without surrounding spaces; other columns are ignored. Rows without a
    path or a decision (a spreadsheet's blank rows, a comment alone) are left out.
    Decisions are read without surrounding spaces; paths as written (:func:`decide`
    matches them to ``scores.csv``).

    Returns:
        ``path`` and ``decision``, in file order.

    Raises:
        NoisyCleanError: a missing or unreadable file, text that is not UTF-8, a missing
            or repeated ``path`` or ``decision`` column (the columns found are listed), or
            decisions that are not plain folder names (each one would be a class folder).
    """
    path = Path(path)
    name = f"decisions file {path}"
    if not path.is_file():
        raise NoisyCleanError(f"{name} does not exist or is not a file")
    try:
        # header=None: the header is read as a row, so that a repeated column name is
        # seen (pandas would rename it "decision.1") and a ragged row is an error (pandas
        # would take a header one cell short for an index column)
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                          encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise NoisyCleanError(
            f"{name} is empty: it needs a header with columns 'path' and 'decision'"
        ) from None
    except UnicodeDecodeError:
        raise NoisyCleanError(
            f"cannot read {name}: it is not UTF-8 text (save it as CSV UTF-8)"
        ) from None
    except (pd.errors.ParserError, ValueError) as error:
        raise NoisyCleanError(
            f"{name} is not a readable CSV file: {' '.join(str(error).split())}"
        ) from None
    except OSError as error:
        raise NoisyCleanError(f"cannot read {name}: {error.strerror or error}") from None
    frame = raw.iloc[1:]
    frame.columns = [str(c).strip() for c in raw.iloc[0]]
    missing = [c for c in ("path", "decision") if c not in frame.columns]
    if missing:
        raise NoisyCleanError(
            f"{name} lacks column(s) {listing(missing)}: it needs a header with columns "
            f"'path' and 'decision', as `export --format csv` writes review.csv "
            f"(columns found: {listing(frame.columns, 10) or 'none'})"
        )
    dupes = sorted(set(frame.columns[frame.columns.duplicated()]) & {"path", "decision"})
    if dupes:
        raise NoisyCleanError(f"{name} has more than one column {listing(dupes)}")
    decisions = pd.DataFrame({
        "path": frame["path"], "decision": frame["decision"].str.strip(),
    })
    decisions = decisions[(decisions["path"].str.strip() != "") | (decisions["decision"] != "")]
    bad = sorted({d for d in decisions["decision"] if d and not safe_name(d)})
    if bad:
        raise NoisyCleanError(
            f"{name} has decision(s) that are neither {', '.join(DECISION_KEYWORDS)} nor a "
            f"plain folder name for a class: {listing(bad, _SHOW)}; refusing to apply"
        )
    return decisions.reset_index(drop=True)


def decide(
    table: pd.DataFrame,
    decisions: pd.DataFrame,
    classes: list[str],
    name: str = "the decisions file",
) -> tuple[pd.DataFrame, int, int]:
    """Apply a reviewer's decisions (:func:`read_decisions`) to the per-sample table.

    A decision row's ``path`` is matched to ``scores.csv``'s ``path`` as written; when that
    fails, without surrounding spaces. Its ``decision`` (already stripped):

    * empty: the scan's row stands;
    * ``keep``, ``relabel``, ``drop`` (any case): the image goes under its given
      ``label`` (action ``keep``), under its ``suggested_label`` (action ``relabel``), or
      is left out;
    * anything else is a class name: the image goes under that class (action ``relabel``,
      or ``keep`` when it is the given label). A name outside ``classes`` is a new class.
      A value written exactly as one of ``classes`` is that class, so a class named
      ``keep`` is chosen by ``keep`` and the keyword by, e.g., ``Keep``.

    Rows of the table that the decisions do not list keep the scan's action.

    Args:
        table: the per-sample table (``path``, ``label``, ``suggested_label``, ``action``).
        decisions: ``path`` and ``decision`` columns.
        classes: the class names (a decision written exactly as one of them is a class).
        name: how messages call the decisions file.

    Returns:
        The table with the final ``action`` and ``suggested_label`` of every row, the rows
        decided ``drop`` left out, and a ``decision`` column (the decision, empty where
        none); the count of rows with a decision; the count of rows dropped.

    Raises:
        NoisyCleanError: paths that are not in the table, a path listed twice, or
            ``relabel`` for a row whose suggested label is its given label (a ``review``
            row: there is no suggestion to take).
    """
    known = set(table["path"])
    paths = [p if p in known or p.strip() not in known else p.strip()
             for p in decisions["path"]]
    unknown = [p for p in paths if p not in known]
    if unknown:
        raise NoisyCleanError(
            f"{name} has {len(unknown)} path(s) that are not in scores.csv: "
            f"{listing(unknown, _SHOW)}; paths must be written as scores.csv writes them "
            f"(e.g. {listing(table['path'], 2)}): is it the review sheet of this scan?"
        )
    listed = pd.Series(paths, dtype=object)
    twice = sorted(set(listed[listed.duplicated()]))
    if twice:
        raise NoisyCleanError(
            f"{name} lists the same path more than once: {listing(twice, _SHOW)}; keep one "
            "row per image"
        )
    chosen = {p: d for p, d in zip(paths, decisions["decision"], strict=True) if d}
    table = table.copy()
    table["decision"] = table["path"].map(chosen).fillna("").astype(str)
    class_names = set(classes)

    def meaning(value: str) -> str:
        """``keep``, ``relabel``, ``drop``, or ``=CLASS`` for a class name."""
        if value in class_names or value.lower() not in DECISION_KEYWORDS:
            return "=" + value
        return value.lower()

    what = table["decision"].map(lambda d: meaning(d) if d else "")
    no_suggestion = table["path"][(what == "relabel")
                                  & (table["suggested_label"] == table["label"])]
    if len(no_suggestion):
        raise NoisyCleanError(
            f"{name} decides 'relabel' for image(s) whose suggested label is their given "
            f"label (no other suggestion to take): {listing(no_suggestion, _SHOW)}; "
            "write the class name as the decision instead"
        )
    to_class = what.str.startswith("=")
    target = what[to_class].str[1:]
    table.loc[to_class, "suggested_label"] = target
    table.loc[to_class, "action"] = ["relabel" if new != given else "keep" for new, given in
                                     zip(target, table.loc[to_class, "label"], strict=True)]
    table.loc[what == "keep", "action"] = "keep"
    table.loc[what == "relabel", "action"] = "relabel"
    drop = what == "drop"
    return table[~drop].reset_index(drop=True), len(chosen), int(drop.sum())
