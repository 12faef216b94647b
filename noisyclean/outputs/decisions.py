"""A reviewer's decisions, read back for ``apply``: ``review.csv`` (``export --format
csv``) with its ``decision`` column filled in, one of ``keep``, ``relabel``, ``drop`` or a
class name per image, overriding the scan's ``action`` row by row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..csvread import read_user_csv
from ..errors import FEW, NoisyCleanError, listing
from ..names import case_form, nfc, unique_nfc_forms
from .load import NAME_MAX, refuse_hidden_names, safe_name

#: Keywords of a decisions file's ``decision`` column (case-insensitive); any other value
#: is a class name. A class that is itself named ``keep``, ``relabel`` or ``drop`` is meant
#: only when written exactly as the class is.
DECISION_KEYWORDS = ("keep", "relabel", "drop")


#: What a spreadsheet takes for the start of a formula in a cell (OWASP's list): a
#: file or class name ``=HYPERLINK(...)`` would run when the review sheet is opened.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def sheet_text(value: str) -> str:
    """``value`` as a spreadsheet shows it as text, for the review sheet: a leading ``'``
    where it starts with one of :data:`FORMULA_STARTS`, or with ``'`` (so that
    :func:`unsheet_text` reverses it exactly); unchanged otherwise. A spreadsheet shows
    the cell without the ``'`` and saves it so."""
    return "'" + value if value.startswith((*FORMULA_STARTS, "'")) else value


def unsheet_text(value: str) -> str:
    """Undo :func:`sheet_text`, for a sheet read back as written rather than saved by a
    spreadsheet: a leading ``'`` before what :func:`sheet_text` escapes is dropped."""
    escaped = value.startswith("'") and value[1:].startswith((*FORMULA_STARTS, "'"))
    return value[1:] if escaped else value


def read_decisions(path: str | Path) -> pd.DataFrame:
    """Read a reviewer's decisions: a CSV with (at least) ``path`` and ``decision`` columns,
    as ``export --format csv`` writes ``review.csv``, perhaps edited in a spreadsheet.

    Read as :func:`~noisyclean.csvread.read_user_csv` reads a user's CSV; other columns
    are ignored. Rows without a path or a decision (a spreadsheet's blank rows, a comment
    alone) are left out. Decisions are read without surrounding spaces; paths as written
    (:func:`decide` matches them to ``scores.csv``).

    Returns:
        ``path`` and ``decision``, in file order.

    Raises:
        NoisyCleanError: a file :func:`~noisyclean.csvread.read_user_csv` refuses, or
            decisions that are not plain folder names (each one would be a class folder).
    """
    name = f"decisions file {path}"
    frame = read_user_csv(path, "decisions file", ("path", "decision"))
    decisions = pd.DataFrame({
        "path": frame["path"], "decision": frame["decision"].str.strip(),
    })
    decisions = decisions[(decisions["path"].str.strip() != "") | (decisions["decision"] != "")]
    bad = sorted({d for d in decisions["decision"] if d and not safe_name(d)})
    if bad:
        raise NoisyCleanError(
            f"{name} has decision(s) that are neither {', '.join(DECISION_KEYWORDS)} nor a "
            f"plain folder name for a class (at most {NAME_MAX} bytes): {listing(bad, FEW)}; "
            "refusing to apply"
        )
    refuse_hidden_names(decisions["decision"], f"{name} has decision(s)", "that would be")
    return decisions.reset_index(drop=True)


def decide(
    table: pd.DataFrame,
    decisions: pd.DataFrame,
    classes: list[str],
    name: str = "the decisions file",
) -> tuple[pd.DataFrame, int, int]:
    """Apply a reviewer's decisions (:func:`read_decisions`) to the per-sample table.

    A decision row's ``path`` is matched to ``scores.csv``'s ``path`` as written; when that
    fails, without surrounding spaces, then in Unicode NFC on both sides (a sheet saved on
    macOS may spell ``é`` as ``e`` and a combining accent), as ``evaluate`` matches a truth
    file, and last as :func:`sheet_text` escaped it (a leading ``'`` before ``=``, ``+``,
    ``-``, ``@``: the sheet read back as export wrote it). Its ``decision`` (already
    stripped; a class name escaped so is that class):

    * empty: the scan's row stands;
    * ``keep``, ``relabel``, ``drop`` (any case): the image goes under its given
      ``label`` (action ``keep``), under its ``suggested_label`` (action ``relabel``), or
      is left out;
    * anything else is a class name: the image goes under that class (action ``relabel``,
      or ``keep`` when it is the given label). A name outside ``classes`` is a new class,
      unless it is one of them in NFC.
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
    by_nfc = unique_nfc_forms(known)
    paths = [_match(p, known, by_nfc) for p in decisions["path"]]
    # the sheet as export wrote it, not saved by a spreadsheet: its escaped cells
    paths = [p if p in known else _match(unsheet_text(p.strip()), known, by_nfc)
             for p in paths]
    unknown = [p for p in paths if p not in known]
    if unknown:
        raise NoisyCleanError(
            f"{name} has {len(unknown)} path(s) that are not in scores.csv: "
            f"{listing(unknown, FEW)}; paths must be written as scores.csv writes them "
            f"(e.g. {listing(table['path'], 2)}): is it the review sheet of this scan?"
        )
    listed = pd.Series(paths, dtype=object)
    twice = sorted(set(listed[listed.duplicated()]))
    if twice:
        raise NoisyCleanError(
            f"{name} lists the same path more than once: {listing(twice, FEW)}; keep one "
            "row per image"
        )
    spelled = unique_nfc_forms(classes)

    def named(decision: str) -> str:
        """A class as the sheet spells it, else as :func:`sheet_text` escaped it."""
        if nfc(decision) not in spelled and nfc(unsheet_text(decision)) in spelled:
            decision = unsheet_text(decision)
        return spelled.get(nfc(decision), decision)

    chosen = {p: named(d) for p, d in zip(paths, decisions["decision"], strict=True) if d}
    table = table.copy()
    table["decision"] = table["path"].map(chosen).fillna("").astype(str)
    class_names = set(classes)

    def meaning(value: str) -> str:
        """``keep``, ``relabel``, ``drop``, or ``=CLASS`` for a class name."""
        if value in class_names or value.lower() not in DECISION_KEYWORDS:
            return "=" + value
        return value.lower()

    what = table["decision"].map(lambda d: meaning(d) if d else "")
    folded = {case_form(c): c for c in classes}
    twins = sorted({(d, folded[case_form(d)]) for d in chosen.values()
                    if meaning(d).startswith("=") and d not in class_names
                    and case_form(d) in folded})
    if twins:
        shown = ", ".join(f"{d!r} (class {c!r})" for d, c in twins[:FEW])
        raise NoisyCleanError(
            f"{name} has decision(s) that differ from a class only in letter case: {shown}; "
            "write the class as scores.csv spells it (another spelling would be a new class "
            "folder, and the same folder on a case-insensitive file system)"
        )
    no_suggestion = table["path"][(what == "relabel")
                                  & (table["suggested_label"] == table["label"])]
    if len(no_suggestion):
        raise NoisyCleanError(
            f"{name} decides 'relabel' for image(s) whose suggested label is their given "
            f"label (no other suggestion to take): {listing(no_suggestion, FEW)}; "
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


def _match(path: str, known: set[str], by_nfc: dict[str, str]) -> str:
    """A decision's path as ``scores.csv`` writes it: as written, without surrounding
    spaces, or in NFC; unchanged when none is in the table."""
    if path in known:
        return path
    if path.strip() in known:
        return path.strip()
    return by_nfc.get(nfc(path.strip()), path)
