"""Wall time of several recipes on the same images, measured so that a machine whose speed
drifts in phases slows each of them alike: the recipes take turns, epoch by epoch.

Each recipe is a real run in a process of its own, as a user's run is: a ``noisyclean
scan`` (the CLI, with the given options) or ``detect.py``'s plain one-run recipe
(DivideMix's warm-up SGD, last-epoch losses, GMM). Only one runs at a time; the others are
stopped (``SIGSTOP``), their threads too. Every run hands over at each epoch's end
(whenever ``Progress.finish`` is called: decoding, each training epoch, scoring), and the
run with the least time so far goes next, so the recipes advance side by side in time. A
recipe's time is the sum of its own turns, from its process's start (its imports and
loading the images included, as in a run of its own) to its end (outputs written). Each
scan decodes the images into a fresh decode cache, as ``detect.py``'s scans do (the plain
recipe decodes without one, as there), and writes what a scan run alone writes:
``--check`` first runs each scan alone and then compares each round's ``scores.csv`` with
it, byte for byte.

Until 2026-12-07 the recipes ran as threads of one process. Each thread that calls torch
gets its own OpenMP team, and with two teams in one process on 2 cores every training step
paid a fixed extra cost (on an AMD EPYC with AVX512-BF16, 16 px steps of 128 images took
15.7 ms against 11.6 ms with one team), which weighs on the scan's 2.4 times as many steps
more than on the plain recipe's: that race put the scan at 1.22 of the plain recipe's time
where whole runs taken in turns gave 1.10 and this race gives 1.12
(``benchmarks/RESULTS.md``, "A fifth CPU").

    python benchmarks/schedule_race.py FOLDER [--rounds 3] [--seed 0] \
        [--recipe NAME=SCAN-OPTIONS ...] [--no-plain] [--check] [--work DIR] \
        [--min-turn SECONDS]

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
scoring, the mixtures, writing). Each run's error output is in ``WORK/roundR-NAME.log``.
``--min-turn``: a run hands over only once its turn has lasted that many seconds, so that
a recipe of many short epochs switches less often (on the Zen 5 EPYC, turns of at least
5 s did not lower the scan's ratio: 1.150 against 1.124).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_noisy import fail  # noqa: E402  (the sibling script's)
from race_runner import MIN_TURN, TURN_FD, scan_runner  # noqa: E402

#: ``Popen`` options that start a process in a process group of its own (``process_group``
#: is new in Python 3.11; on 3.10 the child calls ``setpgrp`` itself, as 3.11 does).
OWN_PROCESS_GROUP: dict = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp})


class Race:
    """Runs commands as processes, one at a time, each stopped between its turns.

    Each command is a runner (:func:`runner_command`, or any program that uses
    ``race_runner.Turns``): it stops itself at its start, and at each handover. The race starts
    every runner, waits until each has stopped, then continues the one with the least time
    so far until it hands over or finishes, and so on. Each runner has a process group of
    its own (:data:`OWN_PROCESS_GROUP`): in the race's group, a runner stopped between
    turns got ``SIGHUP`` from the kernel once that group was orphaned (a race started in
    the background by a shell that then ended), and died. In a group of its own it is
    orphaned only when the race ends, and then the ``SIGHUP`` ends it as it should.
    Besides each runner's wall seconds (``run``'s result) it keeps, in :attr:`cpu_seconds`,
    the CPU seconds of its turns.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    def run(self, runners: dict[str, list[str]], logs: dict[str, Path] | None = None,
            min_turn: float = 0.0) -> dict[str, float]:
        """Run every command to its end; returns each one's seconds (its CPU seconds are
        then in :attr:`cpu_seconds`). ``logs``: where each runner's error output goes
        (default: discarded). ``min_turn``: each runner's shortest turn (``race_runner.Turns``).
        A runner that fails, or ends without reporting its end, fails the race
        (``RuntimeError``, with its exit status); the others are killed."""
        self.seconds = dict.fromkeys(runners, 0.0)
        self.cpu_seconds = dict.fromkeys(runners, 0.0)
        procs: dict[str, subprocess.Popen] = {}
        pipes = {}
        try:
            for name, command in runners.items():
                read, write = os.pipe()
                log = open(logs[name], "wb") if logs else subprocess.DEVNULL
                try:
                    procs[name] = subprocess.Popen(
                        command, env={**os.environ, TURN_FD: str(write),
                                      MIN_TURN: repr(float(min_turn))}, pass_fds=(write,),
                        stdout=subprocess.DEVNULL, stderr=log, **OWN_PROCESS_GROUP)
                finally:
                    os.close(write)
                    if logs:
                        log.close()
                pipes[name] = os.fdopen(read)
                self._wait_stopped(name, procs[name])
            pending = list(runners)
            while pending:
                name = min(pending, key=self.seconds.__getitem__)
                os.kill(procs[name].pid, signal.SIGCONT)
                word, seconds, cpu = (pipes[name].readline().split() + ["", "", ""])[:3]
                if word not in ("turn", "done"):
                    self._failed(name, procs[name])
                self.seconds[name], self.cpu_seconds[name] = float(seconds), float(cpu)
                if word == "turn":
                    self._wait_stopped(name, procs[name])
                    continue
                _, status = os.waitpid(procs[name].pid, 0)
                procs[name].returncode = os.waitstatus_to_exitcode(status)
                if procs[name].returncode != 0:
                    self._failed(name, procs[name])
                pending.remove(name)
        finally:
            for proc in procs.values():
                if proc.returncode is None:
                    proc.kill()
                    with contextlib.suppress(ProcessLookupError):  # reaped by kill's poll
                        os.kill(proc.pid, signal.SIGCONT)
                    proc.wait()
            for pipe in pipes.values():
                pipe.close()
        return dict(self.seconds)

    def _wait_stopped(self, name: str, proc: subprocess.Popen) -> None:
        """Block until the runner has stopped itself (or fail the race if it ended)."""
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            proc.returncode = os.waitstatus_to_exitcode(status)
            self._failed(name, proc)

    @staticmethod
    def _failed(name: str, proc: subprocess.Popen) -> None:
        """Fail the race for runner ``name`` with its exit status (waiting for its end)."""
        if proc.returncode is None:
            _, status = os.waitpid(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"{name} failed (exit status {proc.returncode})")


def runner_command(kind: str, path: Path, out: Path, seed: int,
                   options: list[str] | None = None) -> list[str]:
    """The command of one race runner: ``race_runner.py``, run as a ``scan`` (``path``:
    the images; ``options``: the scan's) or as the ``plain`` recipe (``path``: the folder made
    by ``make_noisy.py``; ``out``: its ``.npz``)."""
    spec = {"kind": kind, "path": str(path), "out": str(out), "seed": seed,
            "options": options or []}
    return [sys.executable, str(Path(__file__).resolve().parent / "race_runner.py"),
            json.dumps(spec)]


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
        cells = [f"{n} at {side} px: {statistics.median(stages[k][2] for stages in per_round):.2f}"
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
    parser.add_argument("--min-turn", type=float, default=0.0, metavar="SECONDS",
                        help="hand over only once a turn has lasted this long (default 0: "
                             "at every epoch's end)")
    args = parser.parse_args(argv)

    recipes = parse_recipes(args.recipe or ["default="])
    if args.rounds < 1:
        fail("--rounds must be 1 or more")
    if not args.min_turn >= 0:
        fail("--min-turn must be 0 or more seconds")
    work = args.work or Path(tempfile.mkdtemp(prefix="race-"))
    images = args.folder / "images"
    work.mkdir(parents=True, exist_ok=True)
    race = Race()
    if args.check:
        for name, options in recipes.items():
            scan_runner(images, work / f"alone-{name}", shlex.split(options), args.seed)()

    names = list(recipes) + ([] if args.no_plain else ["plain"])
    rows: list[dict[str, float]] = []
    cpu_rows: list[dict[str, float]] = []
    for r in range(args.rounds):
        shift = r % len(names)
        runners: dict[str, list[str]] = {}
        for name in names[shift:] + names[:shift]:
            out = work / f"round{r + 1}-{name}"
            runners[name] = (
                runner_command("plain", args.folder, out.with_suffix(".npz"), args.seed)
                if name == "plain" else
                runner_command("scan", images, out, args.seed, shlex.split(recipes[name])))
        logs = {name: work / f"round{r + 1}-{name}.log" for name in runners}
        rows.append(race.run(runners, logs, args.min_turn))
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
