"""Two variants of `noisyclean scan`, run side by side on the same folders and seeds.

    python benchmarks/paired_scans.py /tmp/nb/worst10k /tmp/nb/sym50-10k --seeds 0,1 \
        --a "" --b "--late-loss ce" [--name-a default] [--name-b ce] \
        [--results benchmarks/RESULTS.md] [--json pairs.json]

Each FOLDER is one written by ``make_noisy.py`` (``FOLDER/images``, ``FOLDER/truth.csv``).
For every folder and seed, variant A (``noisyclean scan FOLDER/images --seed S --quiet``
plus ``--a``) and variant B (the same plus ``--b``) run at the same time, one torch thread
each (``cut_rules.run_scan``), into ``FOLDER/paired/NAME-sS``. Each run's scan options
are kept beside its outputs (``NAME-sS/paired-options.json``), and outputs already there are
reused only when they were made with the same options: a variant whose options changed
under the same name is refused, before any scan runs (remove its folders or give it
another ``--name-a``/``--name-b``). Running the two at once pairs them against the
machine's drift in speed (both see the same load), and one thread each keeps the
arithmetic of every pair the same (a scan's flags can move with the thread count). An
option string without a space that starts with ``-`` needs the ``=`` form:
``--b=--no-tta``.

For each run: flags, F1 of the flags, the best F1 of its ranking over every cut
(``detect.best_cut_f1``), AUROC of the ranking, and the warm-up's seconds
(``summary.json``); then B minus A per pair and summed. The table is printed and, with
``--results``, appended to that file with the date, machine and versions (the folders of
the ``--results`` and ``--json`` files are made, if missing, before any scan runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cut_rules import run_scan  # noqa: E402  (the sibling scripts')
from detect import (  # noqa: E402
    check_noisy_folder,
    fail,
    machine,
    metrics,
    output_file,
    read_truth,
    scan_arrays,
    versions,
)

#: the file, in each run's output folder, that records the scan options it was made with
OPTIONS_FILE = "paired-options.json"


def stored_options(out: Path) -> list[str] | None:
    """The scan options the run in ``out`` was made with, or None when it holds no record
    of them."""
    path = out / OPTIONS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())["scan_args"]


def reusable(out: Path, scan_args: list[str], option: str) -> bool:
    """Whether ``out`` holds a finished run made with ``scan_args`` (reuse it) or no
    finished run (run it); a finished run made with other options, or with no record of
    them, is refused (:func:`~detect.fail`), naming ``option`` (``--name-a`` or
    ``--name-b``), the way to keep both."""
    if not (out / "summary.json").is_file():
        return False
    stored = stored_options(out)
    if stored is None:
        fail(f"{out} holds a scan with no record of its options (made by an older "
             f"paired_scans.py): remove it to rerun it, or choose another {option}")
    if stored != scan_args:
        fail(f"{out} holds a scan made with {shlex.join(stored)!r}, not "
             f"{shlex.join(scan_args)!r}: remove it to rerun it, or choose another {option}")
    return True


def run_and_record(folder: Path, scan_args: list[str], out: Path) -> None:
    """Run the scan into ``out`` (``cut_rules.run_scan``) and record its options there."""
    (out / OPTIONS_FILE).unlink(missing_ok=True)  # a run that fails leaves no record
    run_scan(folder, scan_args, out)
    (out / OPTIONS_FILE).write_text(json.dumps({"scan_args": scan_args}) + "\n")


def score_run(folder: Path, out: Path) -> dict:
    """Detection figures of the scan in ``out`` against ``folder/truth.csv``."""
    paths, classes, arrays = scan_arrays(out)
    figures = metrics(paths, arrays["flag"], arrays["score"], arrays["predicted"],
                      arrays["fixed"], read_truth(folder), classes, arrays["labels"])
    summary = json.loads((out / "summary.json").read_text())
    return {"flags": figures["flags"], "f1": figures["f1"],
            "best_cut_f1": figures["best_cut_f1"], "auroc": figures["auroc"],
            "warmup_s": summary["timings_s"]["warmup"]}


def table(rows: list[dict], name_a: str, name_b: str) -> str:
    """Markdown: per pair, A's and B's F1 / best-cut F1 / AUROC (flags) and warm-up
    seconds, and the change in F1; a last row with the sums."""
    lines = [f"| folder | seed | {name_a}: F1 / best cut / AUROC (flags) | {name_b}: same | "
             f"F1 change | warm-up s, {name_a} / {name_b} |", "|---|---|---|---|---|---|"]

    def cell(run: dict) -> str:
        return (f"{run['f1']:.4f} / {run['best_cut_f1']:.4f} / {run['auroc']:.4f} "
                f"({run['flags']})")

    for row in rows:
        a, b = row["a"], row["b"]
        lines.append(f"| {row['folder']} | {row['seed']} | {cell(a)} | {cell(b)} | "
                     f"{b['f1'] - a['f1']:+.4f} | {a['warmup_s']:.0f} / {b['warmup_s']:.0f} |")
    change = sum(r["b"]["f1"] - r["a"]["f1"] for r in rows)
    warm = [sum(r[k]["warmup_s"] for r in rows) for k in ("a", "b")]
    lines.append(f"| all {len(rows)} pairs | | | | {change:+.4f} (sum) | "
                 f"{warm[0]:.0f} / {warm[1]:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments (``argv``, default the command line's), run the missing pairs, print
    (and append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--a", default="", help="options of variant A")
    parser.add_argument("--b", default="", help="options of variant B")
    parser.add_argument("--name-a", default="a", help="variant A's name (its folders)")
    parser.add_argument("--name-b", default="b", help="variant B's name (its folders)")
    parser.add_argument("--results", type=Path, help="append the table to this file")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.name_a == args.name_b:
        fail("--name-a and --name-b must differ")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        fail(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1")
    for folder in args.folders:
        check_noisy_folder(folder)
    try:
        variants = {"a": (args.name_a, shlex.split(args.a)),
                    "b": (args.name_b, shlex.split(args.b))}
    except ValueError as error:
        fail(f"--a/--b: {error}")

    def scan_args(k: str, seed: int) -> list[str]:
        return ["--seed", str(seed), *variants[k][1]]

    def out_of(folder: Path, k: str, seed: int) -> Path:
        return folder / "paired" / f"{variants[k][0]}-s{seed}"

    # every check before the first scan: outputs made with other options, output files
    todo = {(folder, seed): [k for k in variants
                             if not reusable(out_of(folder, k, seed), scan_args(k, seed),
                                             f"--name-{k}")]
            for folder in args.folders for seed in seeds}
    output_file(args.results, "--results")
    output_file(args.json, "--json")
    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for folder in args.folders:
            for seed in seeds:
                outs = {k: out_of(folder, k, seed) for k in variants}
                jobs = [pool.submit(run_and_record, folder, scan_args(k, seed), outs[k])
                        for k in todo[folder, seed]]
                for job in jobs:
                    job.result()
                rows.append({"folder": folder.name, "seed": seed,
                             **{k: score_run(folder, out) for k, out in outs.items()}})
                print(f"{folder.name} seed {seed}: F1 {rows[-1]['a']['f1']:.4f} -> "
                      f"{rows[-1]['b']['f1']:.4f}", flush=True)
    text = table(rows, args.name_a, args.name_b)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.results:
        command = "python benchmarks/paired_scans.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        header = (f"\n#### paired scans: {args.name_a} against {args.name_b}\n\n"
                  f"- date: {dt.date.today().isoformat()}\n- machine: {machine()}\n"
                  f"- versions: {versions()}\n- command: `{command}`\n\n")
        with open(args.results, "a") as f:
            f.write(header + text + "\n")


if __name__ == "__main__":
    main()
