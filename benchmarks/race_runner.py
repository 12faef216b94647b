"""One runner of ``schedule_race.py``'s race, in a process of its own: it stops itself
(``SIGSTOP``) before importing anything heavy, and between its turns, until the race
continues it, so that its time counts its imports, as a user's run does, and no other
run's. At each ``Progress.finish`` (decoding, each training epoch, scoring) it hands over:
it reports its wall and CPU seconds so far on the pipe the race gave it, and stops.

    python benchmarks/race_runner.py SPEC

``SPEC`` is the JSON that ``schedule_race.runner_command`` writes: a ``scan`` (the CLI,
with the given options, a fresh decode cache) or the ``plain`` recipe of ``detect.py``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: The environment variable that gives a runner process the pipe it reports its turns on.
TURN_FD = "RACE_TURN_FD"
#: The environment variable that gives a runner process its shortest turn, in seconds.
MIN_TURN = "RACE_MIN_TURN"


class Turns:
    """A runner's side of the race, in its own process: it stops itself between turns
    (``SIGSTOP``, until the race continues it) and reports, at each handover, its wall and
    CPU seconds so far (user and system, all its threads) on the pipe the race gave it.
    A handover before the turn has lasted ``min_turn`` seconds does nothing: the turn goes
    on to the next one.
    """

    def __init__(self, fd: int, min_turn: float = 0.0) -> None:
        self._out = os.fdopen(fd, "w", buffering=1)
        self.min_turn = min_turn
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._started = self._started_cpu = 0.0

    @classmethod
    def from_env(cls) -> Turns:
        """The turns of a runner started by :meth:`Race.run` (the pipe in ``$RACE_TURN_FD``,
        the shortest turn in ``$RACE_MIN_TURN``)."""
        return cls(int(os.environ[TURN_FD]), float(os.environ.get(MIN_TURN, "0")))

    def wait(self) -> None:
        """Stop until the race continues this process; the turn's clocks start then."""
        os.kill(os.getpid(), signal.SIGSTOP)
        self._started, self._started_cpu = time.perf_counter(), time.process_time()

    def _report(self, word: str) -> None:
        self.seconds += time.perf_counter() - self._started
        self.cpu_seconds += time.process_time() - self._started_cpu
        self._out.write(f"{word} {self.seconds!r} {self.cpu_seconds!r}\n")

    def handover(self) -> None:
        """End this turn, once it has lasted ``min_turn``: report, and stop until the next
        one."""
        if time.perf_counter() - self._started < self.min_turn:
            return
        self._report("turn")
        self.wait()

    def done(self) -> None:
        """Report the last turn's end (the runner has finished)."""
        self._report("done")
        self._out.close()


def scan_runner(images: Path, out: Path, options: list[str], seed: int) -> Callable[[], None]:
    """A ``noisyclean scan`` of ``images`` into ``out`` through the CLI, with a fresh
    decode cache (``out`` plus ``-cache``), as ``detect.py`` runs it."""
    from noisyclean.cli import app

    def run() -> None:
        cache = out.with_name(out.name + "-cache")
        app(["scan", str(images), "--out", str(out), "--quiet", "--seed", str(seed),
             "--cache-dir", str(cache), *options], standalone_mode=False)
    return run


def plain_runner(folder: Path, out: Path, seed: int) -> Callable[[], None]:
    """``detect.py``'s plain one-run recipe on ``folder``'s images."""
    from detect import worker

    def run() -> None:
        worker("plain", folder / "images", out, None, seed, 5)
    return run


def main(spec_text: str) -> int:
    """Stop until the race starts this runner; then import, run, and hand over at each
    ``Progress.finish``."""
    turns = Turns.from_env()
    turns.wait()
    spec = json.loads(spec_text)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from noisyclean.progress import Progress

    path, out, seed = Path(spec["path"]), Path(spec["out"]), int(spec["seed"])
    run = (plain_runner(path, out, seed) if spec["kind"] == "plain"
           else scan_runner(path, out, list(spec["options"]), seed))
    original = Progress.finish

    def finish(self: Progress, task: int | None) -> None:
        original(self, task)
        turns.handover()

    Progress.finish = finish  # type: ignore[method-assign]
    run()
    turns.done()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
