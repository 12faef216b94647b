"""Rich progress bars and log lines, or silence with ``quiet``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


def print_line(console: Console, message: str) -> None:
    """Print one line as it is: no Rich markup (a path may hold ``[``), no highlighting,
    and no hard wrapping (a long path stays one line, to be copied whole)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


class Progress:
    """Progress bars for decode, each epoch (with loss and accuracy) and scoring.

    Use as a context manager. With ``quiet`` every call is a no-op and nothing is printed.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._rich: RichProgress | None = None
        self._warned: set[str] = set()

    def __enter__(self) -> Progress:
        if not self.quiet:
            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None

    def task(self, description: str, total: int) -> int | None:
        """Start a bar with ``total`` steps; returns its id (None when quiet)."""
        if self._rich is None:
            return None
        return self._rich.add_task(description, total=total, info="")

    def advance(self, task: int | None, steps: int = 1, **fields: float) -> None:
        """Advance a bar; ``fields`` (e.g. loss, acc) are shown beside it."""
        if self._rich is None or task is None:
            return
        info = "  ".join(f"{k} {v:.3f}" for k, v in fields.items())
        self._rich.update(task, advance=steps, info=info)

    def finish(self, task: int | None) -> None:
        """Mark a bar complete."""
        if self._rich is None or task is None:
            return
        total = self._rich.tasks[self._rich.task_ids.index(task)].total
        self._rich.update(task, completed=total)

    def log(self, message: str) -> None:
        """Print one line (above the bars, as :func:`print_line` prints), unless quiet."""
        if not self.quiet:
            print_line(self.console, message)

    def warn(self, message: str) -> None:
        """Print one line starting ``warning:``, quiet or not: something asked for is not
        done as asked. A warning already printed is not printed again (each network of a
        run may meet the same thing)."""
        if message not in self._warned:
            self._warned.add(message)
            print_line(self.console, f"warning: {message}")


def checked_progress(progress: object) -> Progress | None:
    """``progress`` as a run takes it: a :class:`Progress` or None (silent).

    Raises:
        NoisyCleanError: anything else (``progress=True`` from a caller who meant
            "show progress").
    """
    from .errors import NoisyCleanError

    if progress is not None and not isinstance(progress, Progress):
        raise NoisyCleanError(
            f"progress must be a noisyclean.progress.Progress (entered with 'with'), or None "
            f"for a silent run, not {progress!r:.80}")
    return progress
