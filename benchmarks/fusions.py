"""The scan's ``--fusion`` values on the same trained networks: each scan rescored offline.

    python benchmarks/fusions.py /tmp/nb/worst10k:/tmp/nb/work-worst10k-s3/scan-gmm ... \
        [--json rows.json]

Each argument is ``FOLDER[:SCAN]``: a folder written by ``make_noisy.py`` (``FOLDER/images``,
``FOLDER/truth.csv``) and the output folder of a default-signal scan of it made with
``--save-probs`` (default ``FOLDER/scan``; ``detect.py --scan-args=--save-probs --work W``
leaves it in ``W/scan-gmm``). The fusions differ only in how the scan's final predicted
probabilities are scored, so no network is trained here: the saved probabilities (float32,
as the scan held them) are put back in sample order and run through the scan's own
:func:`~noisyclean.scoring.score_samples` with its settings (mixture, threshold, cut, flip
ranking, seed) once per fusion. For the fusion the scan itself ran with, this reproduces
its ``scores.csv`` row for row (checked, and printed as ``same``); the scan must have used
one network and ``--loss-history 1`` (the defaults), or it cannot be rescored from its last
predictions.

Figures per fusion: flags, F1, best-cut F1 and AUROC of the table's ranking, computed as in
``detect.py``. Printed as a markdown table; ``--json`` also writes the rows (its folder is
made if missing, before any scan is read).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from noisyclean.data.discover import discover
from noisyclean.scoring import score_samples
from noisyclean.signals import FUSIONS, Signals, network_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import check_noisy_folder, fail, metrics, output_file, read_truth  # noqa: E402


def _scan_signals(folder: Path, scan: Path) -> tuple[list[str], Signals, np.ndarray, dict,
                                                     pd.DataFrame]:
    """Sample paths, the scan's signals (its per-sample losses, which order ties in the
    table, and its float32 probabilities) and given labels in sample order, its summary and
    its table."""
    table = pd.read_csv(scan / "scores.csv", dtype={"path": str, "label": str},
                        keep_default_na=False)
    summary = json.loads((scan / "summary.json").read_text())
    settings = summary["settings"]
    if settings.get("networks", 1) != 1 or settings.get("loss_history", 1) != 1:
        fail(f"{scan} used several networks or epochs of scores; rescoring needs one network "
             "and --loss-history 1")
    if settings.get("signal") != "loss+margin":
        fail(f"{scan} was not made with --signal loss+margin")
    probs_file = scan / "pred_probs.npy"
    if not probs_file.is_file():
        fail(f"{probs_file} not found (scan with --save-probs)")
    paths = [str(p) for p in discover(folder / "images").paths]
    row = {path: i for i, path in enumerate(table["path"])}
    order = np.array([row[path] for path in paths])
    index = {c: i for i, c in enumerate(summary["classes"])}
    labels = table["label"].map(index).to_numpy()[order]
    signals = Signals(table["loss"].to_numpy(dtype=np.float64)[order],
                      np.load(probs_file)[order])
    return paths, signals, labels, summary, table


def _figures(table: pd.DataFrame, truth: dict[str, str], classes: list[str]) -> dict:
    index = {c: i for i, c in enumerate(classes)}
    m = metrics(list(table["path"]), table["is_noisy"].to_numpy(),
                -np.arange(len(table), dtype=np.float64),
                table["predicted"].map(index).to_numpy(),
                table["suggested_label"].map(index).to_numpy(), truth, classes,
                table["label"].map(index).to_numpy())
    return {key: m[key] for key in ("flags", "f1", "best_cut_f1", "auroc")}


def rescore(folder: Path, scan: Path) -> dict:
    """The figures of every fusion on one scan, and whether the scan's own fusion
    reproduced its table."""
    paths, scan_signals, labels, summary, scan_table = _scan_signals(folder, scan)
    settings, classes = summary["settings"], summary["classes"]
    truth = read_truth(folder)
    signals = [scan_signals]
    row: dict = {"folder": folder.name, "scan": str(scan), "fusion": settings.get("fusion")}
    for fusion in FUSIONS:
        fit, order = network_scores(signals, labels, "loss+margin", fusion)
        scores = score_samples(
            paths, labels, classes, fit, signals, mixture=settings["mixture"],
            threshold=settings["threshold"], relabel_threshold=settings["relabel_threshold"],
            seed=settings["seed"], cut=settings["cut"], flips=settings["flip_ranking"],
            order_inputs=order,
        )
        row[fusion] = _figures(scores.table, truth, classes)
        if fusion == settings.get("fusion", "minmax"):
            own = scan_table["is_noisy"].astype(str).str.lower().eq("true").to_numpy()
            row["same"] = (list(scores.table["path"]) == list(scan_table["path"])
                           and np.array_equal(scores.table["is_noisy"].to_numpy(), own))
    return row


def markdown(rows: list[dict]) -> str:
    """One line per scan: each fusion's F1 / best-cut F1 / AUROC (flags)."""
    lines = ["| folder | scan | " + " | ".join(FUSIONS) + " | reproduced |",
             "|---|---|" + "---|" * len(FUSIONS) + "---|"]
    for row in rows:
        cells = [f"{row[f]['f1']:.4f} / {row[f]['best_cut_f1']:.4f} / {row[f]['auroc']:.4f} "
                 f"({row[f]['flags']})" for f in FUSIONS]
        lines.append(f"| {row['folder']} | {row['scan']} | " + " | ".join(cells)
                     + f" | {row.get('same')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, rescore every scan, print the table (and write the JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="FOLDER[:SCAN] (SCAN default FOLDER/scan)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    runs = []
    for run in args.runs:
        folder, _, scan = run.partition(":")
        folder_path = Path(folder)
        runs.append((folder_path, Path(scan) if scan else folder_path / "scan"))
    for folder_path, scan_path in runs:
        check_noisy_folder(folder_path)
        if not (scan_path / "summary.json").is_file():
            fail(f"no finished scan in {scan_path} (scan {folder_path / 'images'} with "
                 "--save-probs, or name the scan: FOLDER:SCAN)")
    output_file(args.json, "--json")
    rows = [rescore(folder_path, scan_path) for folder_path, scan_path in runs]
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
