"""Errors that reach the user as one clear message (the CLI prints it and exits non-zero),
and the small helpers that check a value and write the message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeGuard

#: How many offending items (paths, labels, decisions) a message lists when it names only a
#: few: ``listing(items, FEW)``.
FEW = 3


class NoisyCleanError(Exception):
    """A problem with the user's input or options, not a bug.

    The CLI catches it, prints ``str(error)`` without a traceback and exits with code 2.
    """


def listing(
    items: Iterable[object], limit: int = 5, quote: bool = True, sep: str = ", "
) -> str:
    """The first ``limit`` items for a message, then how many were left out:
    ``'a', 'b', 'c' and 7 more``.

    Args:
        items: the things to list, in the order to show them.
        limit: how many to show.
        quote: show each as its ``repr`` (quoted, with odd characters escaped), else as
            ``str`` (row numbers, text already formatted).
        sep: what goes between two shown items.

    Returns:
        The listing; empty for no items.
    """
    items = list(items)
    shown = sep.join(repr(x) if quote else str(x) for x in items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def count_text(n: int, noun: str) -> str:
    """``1 image``, ``2 images``: a count and its noun (plural by an ``s``) for a message."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a Python ``int`` and not a ``bool`` (``True`` is an ``int`` to
    ``isinstance``, but never a count). NumPy integers are not ``int``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is a Python ``int`` or ``float`` and not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def system_error_text(error: OSError | MemoryError) -> str:
    """One line for an error of the file system (``Permission denied: out/x``, ``File name
    too long: ...``) or for running out of memory, which the commands print instead of a
    traceback."""
    if isinstance(error, MemoryError):
        return ("out of memory: the images at this --image-size, or the network, do not fit; "
                "try a smaller --image-size or fewer images")
    where = f": {error.filename}" if error.filename is not None else ""
    also = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"{error.strerror or error}{where}{also}"
