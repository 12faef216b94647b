"""Errors that reach the user as one clear message (the CLI prints it and exits non-zero)."""

from __future__ import annotations


class NoisyCleanError(Exception):
    """A problem with the user's input or options, not a bug.

    The CLI catches it, prints ``str(error)`` without a traceback and exits with code 2.
    """
