"""Wall time of several recipes on the same images, measured so that a machine whose speed
drifts in phases slows each of them alike: the recipes run in one process, taking turns
epoch by epoch.

Each recipe is a real run in a thread of its own: a ``noisyclean scan`` (the CLI, with the
given options) or ``detect.py``'s plain one-run recipe (DivideMix's warm-up SGD,
last-epoch losses, GMM). Only one runs at a time. Every run hands over at each epoch's
end (whenever ``Progress.finish`` is called: decoding, each training epoch, scoring), and
the run with the least time so far goes next, so the recipes advance side by side in
time. A recipe's time is the sum of its own turns, from its start (loading the images
included) to its end (outputs written). Each scan decodes the images into a fresh decode
cache, as ``detect.py``'s scans do (the plain recipe decodes without one, as there), and
writes what a scan run alone writes: ``--check`` first runs each scan alone and then
compares each round's ``scores.csv`` with it, byte for byte.

    python benchmarks/schedule_race.py FOLDER [--rounds 3] [--seed 0] \
        [--recipe NAME=SCAN-OPTIONS ...] [--no-plain] [--check] [--work DIR]

``FOLDER`` is one written by ``make_noisy.py`` (``FOLDER/images``). ``--recipe default=``
is the scan with its defaults; ``--recipe 'b128=--batch-size 128 --lr 0.1'`` a variant
(every ``--recipe`` needs its ``=``, and its name must not be ``plain``).
Without ``--recipe``: the default scan only (with the plain recipe). The rounds rotate
which recipe starts. Prints seconds per recipe and round, the median, and each recipe's
ratio to the plain recipe's time per round; the same table of the CPU seconds (user and
system) each recipe's turns took, which the same work raises in a slow phase of the
machine; then, for each scan recipe, where its time
went (medians over the rounds): its warm-up epochs at each image side (the epochs' own
timing, from its ``summary.json``) and the rest of its time (decoding, setting up,
scoring, the mixtures, writing).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from noisyclean.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_noisy import fail  # noqa: E402  (the sibling script's)


class Race:
    """Runs callables in threads, one at a time, switching at each ``Progress.finish``.

    Besides each runner's wall time (``run``'s result) it keeps, in :attr:`cpu_seconds`,
    the process's CPU time (user and system, all threads, torch's pool included) spent in
    each runner's turns: only one runs at a time, so that is the runner's own. The same
    work in a slow phase of the machine shows more of it.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._started_cpu = 0.0
        self._turn: dict[str, threading.Event] = {}
        self._back = threading.Event()
        self._started = 0.0
        self._done: set[str] = set()
        self._errors: dict[str, BaseException] = {}

    def handover(self) -> None:
        """Called in a runner's thread: add its turn's time and wait for its next turn
        (a no-op in any other thread)."""
        name = threading.current_thread().name
        if name not in self._turn:
            return
        self._add_turn(name)
        self._back.set()
        self._wait_turn(name)

    def _add_turn(self, name: str) -> None:
        self.seconds[name] += time.perf_counter() - self._started
        self.cpu_seconds[name] += time.process_time() - self._started_cpu

    def _wait_turn(self, name: str) -> None:
        """Block until ``name``'s turn; its turn's clock starts when it wakes."""
        self._turn[name].wait()
        self._turn[name].clear()
        self._started = time.perf_counter()
        self._started_cpu = time.process_time()

    def run(self, runners: dict[str, Callable[[], None]]) -> dict[str, float]:
        """Run every callable to its end; returns each one's seconds (its CPU seconds are
        then in :attr:`cpu_seconds`)."""
        self.seconds = dict.fromkeys(runners, 0.0)
        self.cpu_seconds = dict.fromkeys(runners, 0.0)
        self._turn = {name: threading.Event() for name in runners}
        self._done.clear()
        threads = []
        for name, target in runners.items():
            threads.append(threading.Thread(target=self._body, args=(name, target), name=name))
            threads[-1].start()
        while len(self._done) < len(runners):
            name = min((n for n in runners if n not in self._done),
                       key=self.seconds.__getitem__)
            self._back.clear()
            self._turn[name].set()
            self._back.wait()
        for thread in threads:
            thread.join()
        if self._errors:
            name, error = next(iter(self._errors.items()))
            raise RuntimeError(f"{name} failed") from error
        return dict(self.seconds)

    def _body(self, name: str, target: Callable[[], None]) -> None:
        self._wait_turn(name)
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported by run()
            self._errors[name] = error
        self._add_turn(name)
        self._done.add(name)
        self._back.set()


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


def stage_seconds(summary: dict) -> list[tuple[int, int, float]]:
    """A scan's warm-up from its ``summary.json``: ``(side, epochs, seconds)`` for its
    epochs at half resolution, at three quarters and at full resolution, in that order
    (the stages it has)."""
    from noisyclean.train.methods.warmup import mid_res_side

    training, size = summary.get("training") or {}, int(summary["image_size"])
    if not training.get("epochs"):  # a scan that trained nothing of its own
        return []
    low, mid = int(training["low_res_epochs"]), int(training["mid_res_epochs"])
    stages: list[tuple[int, int, float]] = []
    for side, first, stop in ((size // 2, 0, low), (mid_res_side(size), low, low + mid),
                              (size, low + mid, None)):
        epochs = [e for e in training["epochs"]
                  if e["epoch"] >= first and (stop is None or e["epoch"] < stop)]
        if epochs:
            stages.append((side, len(epochs), sum(e["seconds"] for e in epochs)))
    return stages


def stage_table(work: Path, recipes: list[str], rows: list[dict[str, float]]) -> list[str]:
    """Markdown lines: per scan recipe, the median over the rounds of the seconds of its
    epochs at each side and of the rest of its race time."""
    lines = ["| recipe | warm-up epochs (median seconds) | the rest | total |", "|---|---|---|---|"]
    for name in recipes:
        per_round = [stage_seconds(json.loads(
            (work / f"round{r + 1}-{name}" / "summary.json").read_text()))
            for r in range(len(rows))]
        epochs = [sum(s for _, _, s in stages) for stages in per_round]
        cells = [f"{n} at {side} px: {statistics.median(stages[k][2] for stages in per_round):.1f}"
                 for k, (side, n, _) in enumerate(per_round[0])]
        rest = statistics.median(row[name] - e for row, e in zip(rows, epochs, strict=True))
        total = statistics.median(row[name] for row in rows)
        lines.append(f"| {name} | {'; '.join(cells) or 'none'} | {rest:.1f} | {total:.1f} |")
    return lines


def ratio_table(rows: list[dict[str, float]], names: list[str], recipes: list[str]) -> list[str]:
    """Markdown lines: seconds per recipe and round, their medians, and (with the plain
    recipe among ``names``) each scan recipe's ratio to it per round and the median ratio."""
    plain = "plain" in names
    columns = names + ([f"{n} / plain" for n in recipes] if plain else [])
    lines = ["| round | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for r, row in enumerate(rows):
        cells = [f"{row[n]:.1f}" for n in names]
        cells += [f"{row[n] / row['plain']:.3f}" for n in recipes] if plain else []
        lines.append(f"| {r + 1} | " + " | ".join(cells) + " |")
    cells = [f"{statistics.median(row[n] for row in rows):.1f}" for n in names]
    if plain:
        cells += [f"{statistics.median(row[n] / row['plain'] for row in rows):.3f}"
                  for n in recipes]
    lines.append("| median | " + " | ".join(cells) + " |")
    return lines


def parse_recipes(texts: list[str]) -> dict[str, str]:
    """``NAME=SCAN-OPTIONS`` texts -> ``{name: options}`` (:func:`fail` on a text without
    ``=``, an empty or repeated name, the name ``plain`` or options shlex cannot split)."""
    recipes: dict[str, str] = {}
    for text in texts:
        name, equals, options = text.partition("=")
        if not equals:
            fail(f"--recipe {text!r}: give NAME=SCAN-OPTIONS, e.g. 'b128=--batch-size 128' "
                 "(or 'default=' for the scan's defaults)")
        if not name or name == "plain" or "/" in name:
            fail(f"--recipe {text!r}: the name must be non-empty, without '/', and not "
                 "'plain' (the plain recipe's)")
        if name in recipes:
            fail(f"--recipe {name!r} given twice")
        try:
            shlex.split(options)
        except ValueError as error:
            fail(f"--recipe {text!r}: {error}")
        recipes[name] = options
    return recipes


def main(argv: list[str] | None = None) -> int:
    """Race the recipes for ``--rounds`` rounds and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder made by make_noisy.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", action="append", default=[],
                        help="NAME=SCAN-OPTIONS (repeatable; default: default=)")
    parser.add_argument("--no-plain", action="store_true", help="leave the plain recipe out")
    parser.add_argument("--check", action="store_true",
                        help="first run each scan alone and compare scores.csv")
    parser.add_argument("--work", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args(argv)

    recipes = parse_recipes(args.recipe or ["default="])
    if args.rounds < 1:
        fail("--rounds must be 1 or more")
    work = args.work or Path(tempfile.mkdtemp(prefix="race-"))
    images = args.folder / "images"
    race = Race()
    original = Progress.finish

    def finish(self: Progress, task: int | None) -> None:
        original(self, task)
        race.handover()

    Progress.finish = finish  # type: ignore[method-assign]
    if args.check:
        for name, options in recipes.items():
            scan_runner(images, work / f"alone-{name}", shlex.split(options), args.seed)()

    names = list(recipes) + ([] if args.no_plain else ["plain"])
    rows: list[dict[str, float]] = []
    cpu_rows: list[dict[str, float]] = []
    for r in range(args.rounds):
        shift = r % len(names)
        runners: dict[str, Callable[[], None]] = {}
        for name in names[shift:] + names[:shift]:
            out = work / f"round{r + 1}-{name}"
            runners[name] = (plain_runner(args.folder, out.with_suffix(".npz"), args.seed)
                             if name == "plain" else
                             scan_runner(images, out, shlex.split(recipes[name]), args.seed))
        rows.append(race.run(runners))
        cpu_rows.append(dict(race.cpu_seconds))
        print(f"round {r + 1} ({', '.join(runners)}): "
              + ", ".join(f"{n} {rows[-1][n]:.1f} s (CPU {cpu_rows[-1][n]:.1f} s)"
                          for n in names), flush=True)
        if args.check:
            for name in recipes:
                same = ((work / f"alone-{name}" / "scores.csv").read_bytes()
                        == (work / f"round{r + 1}-{name}" / "scores.csv").read_bytes())
                print(f"  {name}: scores.csv {'identical to' if same else 'DIFFERS from'} "
                      "the scan run alone", flush=True)

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; outputs in {work}\n")
    print("\n".join(ratio_table(rows, names, list(recipes))))
    print("\nCPU seconds of each recipe's turns (user and system, all threads; the same work "
          "takes more of them in a slow phase of the machine):\n")
    print("\n".join(ratio_table(cpu_rows, names, list(recipes))))
    print("\nWhere each scan's time went (medians over the rounds, seconds):\n")
    print("\n".join(stage_table(work, list(recipes), rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
