"""Names from the file system and from users' tables: whether they are text, how to print
them, and their Unicode NFC form, in which two spellings of one name (a file written on
macOS spells ``é`` as ``e`` and a combining accent, NFD) compare equal."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable


def printable(path: str) -> str:
    """``path`` as text that can be written and printed: a name that is not valid UTF-8
    (which Python holds as lone surrogates) with each such byte as ``\\xNN``, e.g.
    ``cat/caf\\xe9.png``; valid text unchanged."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    """Whether ``text`` (a name from the file system) is valid UTF-8 text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def nfc(text: str) -> str:
    """``text`` in Unicode NFC."""
    return unicodedata.normalize("NFC", text)


def case_form(name: str) -> str:
    """The form in which two names that differ only in case, Unicode form or surrounding
    spaces are one: ``Cat``, ``cat `` and ``CAT`` (see :func:`case_twins`)."""
    return nfc(name.strip()).casefold()


def _by_form(names: Iterable[str], casefold: bool = False) -> dict[str, list[str]]:
    """``names`` grouped by their NFC form without surrounding spaces (and case-folded with
    ``casefold``: :func:`case_form`), in the order of each group's first name."""
    forms: dict[str, list[str]] = {}
    for name in names:
        forms.setdefault(case_form(name) if casefold else nfc(name.strip()), []).append(name)
    return forms


def unique_nfc_forms(names: Iterable[str]) -> dict[str, str]:
    """Each name's NFC form without surrounding spaces -> the name, for the forms that only
    one of ``names`` has (a form two names share says neither)."""
    return {form: found[0] for form, found in _by_form(names).items() if len(found) == 1}


def case_twins(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more ``names`` that differ only in case (or Unicode form or
    surrounding spaces): ``cat`` and ``CAT``, which would be separate classes. In the
    order of their first member."""
    return [group for group in _by_form(names, casefold=True).values() if len(group) > 1]
