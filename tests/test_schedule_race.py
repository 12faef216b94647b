"""``benchmarks/schedule_race.py``: recipes take turns as processes, one at a time, the one
with the least time so far going next, and each scan writes what it writes alone."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "schedule_race.py"

#: A runner process for the tests: ``PIECES SECONDS spin|sleep LOG [EXIT]``: its pieces of
#: work, each followed by a handover, each logged as ``start end`` (monotonic clock).
RUNNER = """
import sys, time
sys.path.insert(0, {bench!r})
from race_runner import Turns
pieces, seconds, how, log = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
turns = Turns.from_env()
turns.wait()
if len(sys.argv) > 5:
    sys.exit(int(sys.argv[5]))
for _ in range(pieces):
    start = time.monotonic()
    if how == "spin":
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
    else:
        time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"{{start}} {{time.monotonic()}}\\n")
    turns.handover()
turns.done()
"""


def load_race_module() -> ModuleType:
    return load_script(SCRIPT)


def runner(tmp_path: Path, name: str, *args: object) -> list[str]:
    """The command of a test runner process (:data:`RUNNER`) logging to ``tmp_path/name``."""
    code = RUNNER.format(bench=str(SCRIPT.parent))
    return [sys.executable, "-c", code, *map(str, args[:2]), str(args[2]),
            str(tmp_path / name), *map(str, args[3:])]


def pieces(tmp_path: Path, *names: str) -> list[tuple[str, float, float]]:
    """Every logged piece of the named runners, ``(name, start, end)``, in time order."""
    logged = [(name, float(a), float(b)) for name in names
              for a, b in (line.split() for line in (tmp_path / name).read_text().splitlines())]
    return sorted(logged, key=lambda piece: piece[1])


def test_race_runs_one_process_at_a_time_and_times_each_alone(tmp_path) -> None:
    race = load_race_module().Race()
    times = race.run({"slow": runner(tmp_path, "slow", 4, 0.04, "sleep"),
                      "fast": runner(tmp_path, "fast", 4, 0.01, "sleep")})
    # each runner's time is its own work (plus small switching costs), not the other's
    # nor its start-up (imports) before its first turn
    assert 0.16 <= times["slow"] < 0.26
    assert 0.04 <= times["fast"] < 0.12
    # one at a time: no two pieces overlap
    ordered = pieces(tmp_path, "slow", "fast")
    assert all(a[2] <= b[1] for a, b in zip(ordered, ordered[1:], strict=False))
    # the one behind goes next: the fast runner's four pieces (0.04 s in all) all run
    # before the slow runner's second piece starts (it is ahead after its first, 0.04 s)
    assert [name for name, _, _ in ordered][:6] == ["slow", "fast", "fast", "fast", "fast",
                                                    "slow"]


def test_race_gives_each_runner_the_cpu_time_of_its_own_turns(tmp_path) -> None:
    """A runner that spins is charged its CPU seconds, one that sleeps next to it almost
    none, though their wall times are alike."""
    race = load_race_module().Race()
    times = race.run({"spin": runner(tmp_path, "spin", 3, 0.05, "spin"),
                      "sleep": runner(tmp_path, "sleep", 3, 0.05, "sleep")})
    assert set(race.cpu_seconds) == {"spin", "sleep"}
    assert race.cpu_seconds["spin"] >= 0.15
    assert race.cpu_seconds["sleep"] < 0.05
    assert times["sleep"] >= 0.15
    # a new race starts its counts afresh
    race.run({"sleep": runner(tmp_path, "sleep2", 3, 0.05, "sleep")})
    assert set(race.cpu_seconds) == {"sleep"} and race.cpu_seconds["sleep"] < 0.05


def test_a_turn_lasts_at_least_min_turn(tmp_path) -> None:
    """With a shortest turn of 0.075 s, a runner of 0.03 s pieces hands over after every
    third piece (0.09 s), not after one or two: the pieces come in runs of three."""
    race = load_race_module().Race()
    race.run({"a": runner(tmp_path, "a", 6, 0.03, "sleep"),
              "b": runner(tmp_path, "b", 6, 0.03, "sleep")}, min_turn=0.075)
    order = [name for name, _, _ in pieces(tmp_path, "a", "b")]
    # a's first turn ends after three pieces, and b, behind, goes next
    assert order[:6] == ["a"] * 3 + ["b"] * 3
    # every stretch of one runner's pieces is whole turns of three (the runner behind
    # after the first two turns, either, may take two turns in a row)
    stretches = [len(list(group)) for _, group in itertools.groupby(order)]
    assert sum(stretches) == 12 and all(n % 3 == 0 for n in stretches), order


def test_a_failing_runner_fails_the_race_and_the_others_are_ended(tmp_path) -> None:
    race = load_race_module().Race()
    logs = {"ok": tmp_path / "ok.log", "bad": tmp_path / "bad.log"}
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"bad failed \(exit status 3\)"):
        race.run({"ok": runner(tmp_path, "ok", 50, 0.1, "sleep"),
                  "bad": runner(tmp_path, "bad", 1, 0.01, "sleep", 3)}, logs)
    # the race did not wait for the other runner's 5 s of pieces
    assert time.monotonic() - started < 4.5
    assert len((tmp_path / "ok").read_text().splitlines()) <= 2


#: A race of two test runners (:data:`RUNNER`) whose seconds go to ``OUT`` as JSON:
#: ``python -c DRIVER RUNNERS_JSON OUT``.
DRIVER = """
import json, os, sys
sys.path.insert(0, {bench!r})
from schedule_race import Race
runners, out = json.loads(sys.argv[1]), sys.argv[2]
times = Race().run(runners)
with open(out + ".partial", "w") as f:
    json.dump(times, f)
os.replace(out + ".partial", out)
"""


def test_a_race_outlives_the_shell_that_started_it_in_the_background(tmp_path) -> None:
    """A race started in the background by a shell that then ends runs to its end. With
    its runners in the race's own process group, the shell's end orphaned that group; a
    runner stopped between turns then got ``SIGHUP`` from the kernel and died, and the
    race failed ("b failed (exit status -1)")."""
    runners = {"a": runner(tmp_path, "a", 8, 0.1, "sleep"),
               "b": runner(tmp_path, "b", 8, 0.1, "sleep")}
    out = tmp_path / "times.json"
    driver = [sys.executable, "-c", DRIVER.format(bench=str(SCRIPT.parent)),
              json.dumps(runners), str(out)]
    # `(race &); ...` run as a job of its own (set -m, as in a terminal): the job ends
    # once the race is under way (a's first piece logged, b stopped); the race lives on
    shell = 'set -m; ( ( "$@" & ); until [ -s "$FIRST" ]; do sleep 0.02; done ) & wait'
    subprocess.run(["bash", "-c", shell, "shell", *driver], start_new_session=True,
                   env={**os.environ, "FIRST": str(tmp_path / "a")}, timeout=60, check=True)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.exists(), "the race died before its end"
    times = json.loads(out.read_text())
    assert set(times) == {"a", "b"} and all(t >= 0.8 for t in times.values())
    assert [len((tmp_path / name).read_text().splitlines()) for name in "ab"] == [8, 8]


def test_schedule_race_times_real_scans_and_the_plain_recipe(tmp_path, digits_folder) -> None:
    """Two rounds on a real image folder: each scan's ``scores.csv`` is byte for byte
    that of the same scan run alone, the plain recipe writes its arrays, and each scan's
    time is split into its epochs at each image side and the rest."""
    work = tmp_path / "race"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--rounds", "2", "--check",
         "--recipe", "tiny=--epochs 2 --width 8 --batch-size 16 --no-amp",
         "--recipe", "tiny4=--epochs 2 --low-res-epochs 1 --mid-res-epochs 1 --width 8 "
                     "--batch-size 16 --no-amp",
         "--work", str(work)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("scores.csv identical to the scan run alone") == 4
    assert "DIFFERS" not in out
    assert "| round | tiny | tiny4 | plain | tiny / plain | tiny4 / plain |" in out
    assert "| median |" in out
    # the CPU seconds of each round, and their own table
    assert out.count("s (CPU ") == 6
    assert "CPU seconds of each recipe's turns" in out
    cpu_table = out.split("CPU seconds of each recipe's turns")[1].split("Where each scan")[0]
    assert "| round | tiny | tiny4 | plain | tiny / plain | tiny4 / plain |" in cpu_table
    cpu_median = next(line for line in cpu_table.splitlines() if line.startswith("| median |"))
    assert all(float(cell) > 0 for cell in cpu_median.strip(" |").split(" | ")[1:])
    assert "round 2 (tiny4, plain, tiny)" in out
    # the 16 px digits: half resolution 8 px, three quarters 12 px
    stages = {line.split(" | ")[0]: line for line in out.splitlines() if line.startswith("| tiny")}
    assert "| 2 at 16 px: " in stages["| tiny"]
    assert "| 1 at 8 px: " in stages["| tiny4"]
    assert "; 1 at 12 px: " in stages["| tiny4"] and "; 2 at 16 px: " in stages["| tiny4"]
    median = next(line for line in out.splitlines() if line.startswith("| median |"))
    for column, name in enumerate(("| tiny", "| tiny4"), start=2):
        epochs, rest, total = stages[name].strip(" |").split(" | ")[1:]
        cells = epochs.split("; ")
        spent = sum(float(cell.split(": ")[1]) for cell in cells)
        # the total is the race table's median; the epochs' medians fit in it (each cell
        # rounded to 0.01 s)
        assert total == median.split(" | ")[column - 1]
        assert 0 < spent <= float(total) + 0.005 * len(cells) and float(rest) >= 0
    for r in (1, 2):
        arrays = np.load(work / f"round{r}-plain.npz")
        assert len(arrays["flag"]) == 120
        assert (work / f"round{r}-tiny" / "summary.json").is_file()


def test_schedule_race_refuses_a_recipe_without_its_name_in_one_line(tmp_path, capsys) -> None:
    """``--recipe b128`` (no ``=``) and a recipe named like the plain recipe: one
    ``error:`` line and exit status 2, before any run."""
    main = load_race_module().main
    for recipe, said in (("b128", "give NAME=SCAN-OPTIONS"), ("plain=--epochs 1", "'plain'")):
        with pytest.raises(SystemExit) as stop:
            main([str(tmp_path), "--recipe", recipe, "--work", str(tmp_path / "work")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("error: --recipe") and said in lines[0]
    assert not any(tmp_path.iterdir())
