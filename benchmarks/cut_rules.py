"""Where the arbitrated cut lands: the F1 of every count rule on the same scans.

    python benchmarks/cut_rules.py /tmp/nb/fm-sym20-10k /tmp/nb/sym10-5k:/tmp/runs/s1 ... \
        [--scan] [--jobs 2] [--scan-args "--mixture bmm"] [--results benchmarks/RESULTS.md] \
        [--json rows.json]

Each argument is ``FOLDER[:SCAN]``: a folder written by ``make_noisy.py``
(``FOLDER/images``, ``FOLDER/truth.csv``) and a scan's output folder of its images
(default ``FOLDER/scan``). With ``--scan`` the missing scans are run first
(``noisyclean scan FOLDER/images --out SCAN --quiet`` plus ``--scan-args``, one torch
thread each, ``--jobs`` at a time).

The count rules differ only in how many of the scan's most suspicious rows they flag, so
each is scored as the first n rows of the same ``scores.csv`` (its order is the scan's
ranking), with n from ``summary.json["cut"]["counts"]``:

* ``mixture``: the mixture on the scan's score (the old default cut);
* ``loss mixture``: a mixture of the same kind on the loss alone;
* ``estimate``: the calibrated confident joint's count of wrong labels;
* ``nearer``: of the two mixtures' counts, the one nearer the estimate (the arbitrated
  cut before the midpoint rule);
* ``arbitrated``: :func:`noisyclean.cut.arbitrated_choice`, the cut a scan now makes
  (``nearer``; halfway from it to the estimate when both counts are above it; the lower
  count when the two agree within 20% and the estimate is not below both).

Two more columns say how close the arbitrated call was: ``position``, where the estimate
lies between the two mixtures' counts (:func:`noisyclean.cut.estimate_position`: 0 at the
lower, 1 at the higher), and ``close call``, the F1 (n) of the count the other side of
halfway would have flagged when the estimate lay within
:data:`noisyclean.cut.CLOSE_CALL_BAND` of halfway (:func:`noisyclean.cut.close_call`).

The table is printed and, with ``--results``, appended to that file with the date,
machine and versions. The folders of the ``--results`` and ``--json`` files are made, if
missing, before any scan runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from noisyclean import __version__
from noisyclean.cut import arbitrated_choice, close_call, estimate_position, nearer_choice
from noisyclean.evaluate import detection_metrics, read_truth
from noisyclean.outputs.evaluation import normalise_truth, top_rows_metrics
from noisyclean.outputs.load import load_outputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import check_noisy_folder, fail, output_file  # noqa: E402  (the sibling script's)

RULES = ("mixture", "loss mixture", "estimate", "nearer", "arbitrated")


def run_scan(folder: Path, scan_args: list[str], out: Path | None = None) -> float:
    """Run ``noisyclean scan`` on ``folder/images`` into ``out`` (default
    ``folder/scan``) with one torch thread; return the wall time in seconds. The log goes
    to ``out`` plus ``.log`` (``folder/scan.log``); a failed scan exits with a message."""
    out = folder / "scan" if out is None else out
    log_path = out.with_name(out.name + ".log")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "noisyclean", "scan", str(folder / "images"),
           "--out", str(out), "--quiet", "--workers", "1", *scan_args]
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        fail(f"the scan of {folder} failed (exit {done.returncode}); see {log_path}")
    return time.perf_counter() - t0


def rule_counts(counts: dict[str, int]) -> tuple[dict[str, int], str]:
    """Samples each rule flags, from ``summary.json["cut"]["counts"]``, and the rule
    :func:`~noisyclean.cut.arbitrated_choice` chose."""
    n_mix, n_loss, n_est = counts["mixture"], counts["loss_mixture"], counts["confident_joint"]
    chosen, n_arbitrated = arbitrated_choice(n_mix, n_loss, n_est)
    return {
        "mixture": n_mix,
        "loss mixture": n_loss,
        "estimate": n_est,
        "nearer": nearer_choice(n_mix, n_loss, n_est)[1],
        "arbitrated": n_arbitrated,
    }, chosen


def parse_run(text: str) -> tuple[Path, Path]:
    """``FOLDER[:SCAN]`` -> ``(FOLDER, SCAN)``, SCAN defaulting to ``FOLDER/scan``."""
    folder, _, scan = text.partition(":")
    return Path(folder), Path(scan) if scan else Path(folder) / "scan"


def score_folder(folder: Path, scan: Path | None = None) -> dict:
    """F1 (and n) of every rule on the scan in ``scan`` (default ``folder/scan``), plus the
    number of wrong labels, the rule the arbitrated cut chose, whether the scan flagged that
    count, where the estimate lay between the two counts and, for a close call, the count
    the other side of halfway would have flagged and its F1."""
    scan = folder / "scan" if scan is None else scan
    outputs = load_outputs(scan, images=False)
    truth = normalise_truth(read_truth(folder / "truth.csv"), folder / "truth.csv")
    cut = outputs.summary.get("cut") or {}
    if cut.get("rule") != "arbitrated":
        fail(f"{scan} was not made with the arbitrated cut")
    counts, chosen = rule_counts(cut["counts"])
    n_wrong = detection_metrics(outputs.table, truth)["n_wrong"]
    f1 = {rule: top_rows_metrics(outputs.table, truth, n)["top_estimated"]["f1"]
          for rule, n in counts.items()}
    three = (counts["mixture"], counts["loss mixture"], counts["estimate"])
    other = close_call(*three)
    name = folder.name if scan == folder / "scan" else f"{folder.name}:{scan.name}"
    return {"folder": name, "wrong": n_wrong, "n": counts, "f1": f1,
            "chosen": chosen, "scan_flagged": int(outputs.table["is_noisy"].sum()),
            "scan_chosen": cut.get("chosen"), "position": estimate_position(*three),
            "close_call": None if other is None else {
                "n": other, "f1": top_rows_metrics(outputs.table, truth, other)[
                    "top_estimated"]["f1"]}}


def table(rows: list[dict]) -> str:
    """Markdown table: F1 (n) per rule, the change from ``nearer`` to ``arbitrated``, the
    estimate's position between the two counts and the close call's other count."""
    lines = ["| folder | wrong | " + " | ".join(RULES)
             + " | chosen | change | position | close call |",
             "|---|---|" + "---|" * len(RULES) + "---|---|---|---|"]
    for row in rows:
        cells = [f"{row['f1'][r]:.3f} ({row['n'][r]})" for r in RULES]
        change = row["f1"]["arbitrated"] - row["f1"]["nearer"]
        position = "-" if row["position"] is None else f"{row['position']:.3f}"
        other = row["close_call"]
        close = "-" if other is None else f"{other['f1']:.3f} ({other['n']})"
        lines.append(f"| {row['folder']} | {row['wrong']} | " + " | ".join(cells)
                     + f" | {row['chosen']} | {change:+.3f} | {position} | {close} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the missing scans on request, print (and append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="FOLDER[:SCAN] (SCAN default FOLDER/scan)")
    parser.add_argument("--scan", action="store_true", help="run the missing scans first")
    parser.add_argument("--jobs", type=int, default=1, help="scans run at once")
    parser.add_argument("--scan-args", default="", help="extra options for every scan")
    parser.add_argument("--results", type=Path, help="append the table to this file")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    runs = [parse_run(text) for text in args.runs]
    for folder, _ in runs:
        check_noisy_folder(folder)
    missing = [(f, s) for f, s in runs if not (s / "summary.json").is_file()]
    if missing and not args.scan:
        fail(f"no scan in {missing[0][1]}; pass --scan to run it")
    # the files written at the end: their folders now, before any scan runs
    output_file(args.results, "--results")
    output_file(args.json, "--json")
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for (folder, _), wall in zip(missing, pool.map(
                lambda run: run_scan(run[0], shlex.split(args.scan_args), run[1]), missing),
                strict=True):
            print(f"scanned {folder} in {wall:.0f} s", flush=True)
    rows = [score_folder(folder, scan) for folder, scan in runs]
    for row in rows:
        if row["scan_flagged"] != row["n"]["arbitrated"] or row["scan_chosen"] not in (
                None, row["chosen"]):
            print(f"note: the scan in {row['folder']} flagged {row['scan_flagged']} "
                  f"({row['scan_chosen']}), not the arbitrated {row['n']['arbitrated']} "
                  f"({row['chosen']}): a scan made by another version?", file=sys.stderr)
    text = table(rows)
    print(text)
    if args.results:
        gains = [r["f1"]["arbitrated"] - r["f1"]["nearer"] for r in rows]
        cpu = platform.processor() or platform.machine()
        head = (f"\n`benchmarks/cut_rules.py` on {dt.date.today()}, {cpu}, {os.cpu_count()} cores; "
                f"noisyclean {__version__}, torch {torch.__version__}. "
                f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`. "
                f"Cells: F1 of the scan's first n rows (n). Change: arbitrated minus nearer; "
                f"{sum(g > 0 for g in gains)} up, {sum(g < 0 for g in gains)} down. "
                f"Close calls: {sum(r['close_call'] is not None for r in rows)}.\n\n")
        with open(args.results, "a") as f:
            f.write(head + text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
