"""Two variants of `noisyclean scan`, run side by side on the same folders and seeds.

    python benchmarks/paired_scans.py /tmp/nb/worst10k /tmp/nb/sym50-10k --seeds 0,1 \
        --a "" --b "--late-loss ce" [--name-a default] [--name-b ce] \
        [--results benchmarks/RESULTS.md] [--json pairs.json]

Each FOLDER is one written by ``make_noisy.py`` (``FOLDER/images``, ``FOLDER/truth.csv``).
For every folder and seed, variant A (``noisyclean scan FOLDER/images --seed S --quiet``
plus ``--a``) and variant B (the same plus ``--b``) run at the same time, one torch thread
each (``cut_rules.run_scan``), into ``FOLDER/paired/NAME-sS``; outputs already there are
reused. Running the two at once pairs them against the machine's drift in speed (both see
the same load), and one thread each keeps the arithmetic of every pair the same (a scan's
flags can move with the thread count). An option string without a space that starts
with ``-`` needs the ``=`` form: ``--b=--no-tta``.

For each run: flags, F1 of the flags, the best F1 of its ranking over every cut
(``detect.best_cut_f1``), AUROC of the ranking, and the warm-up's seconds
(``summary.json``); then B minus A per pair and summed. The table is printed and, with
``--results``, appended to that file with the date, machine and versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cut_rules import run_scan
from detect import machine, metrics, read_truth, scan_arrays, versions


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


def main() -> None:
    """Parse arguments, run the missing pairs, print (and append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--a", default="", help="options of variant A")
    parser.add_argument("--b", default="", help="options of variant B")
    parser.add_argument("--name-a", default="a", help="variant A's name (its folders)")
    parser.add_argument("--name-b", default="b", help="variant B's name (its folders)")
    parser.add_argument("--results", type=Path, help="append the table to this file")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.name_a == args.name_b:
        sys.exit("error: --name-a and --name-b must differ")
    seeds = [int(s) for s in args.seeds.split(",")]
    for folder in args.folders:
        if not (folder / "truth.csv").is_file():
            sys.exit(f"error: {folder / 'truth.csv'} not found (write it with make_noisy.py)")
    variants = {"a": (args.name_a, shlex.split(args.a)), "b": (args.name_b, shlex.split(args.b))}
    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for folder in args.folders:
            for seed in seeds:
                outs = {k: folder / "paired" / f"{name}-s{seed}"
                        for k, (name, _) in variants.items()}
                todo = [k for k, out in outs.items() if not (out / "summary.json").is_file()]
                jobs = [pool.submit(run_scan, folder, ["--seed", str(seed), *variants[k][1]],
                                    outs[k]) for k in todo]
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
            shlex.quote(a) for a in sys.argv[1:])
        header = (f"\n#### paired scans: {args.name_a} against {args.name_b}\n\n"
                  f"- date: {dt.date.today().isoformat()}\n- machine: {machine()}\n"
                  f"- versions: {versions()}\n- command: `{command}`\n\n")
        with open(args.results, "a") as f:
            f.write(header + text + "\n")


if __name__ == "__main__":
    main()
