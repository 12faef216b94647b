"""How many wrong labels a reviewer meets in the first rows of each method's ranking: the
question of a folder with few wrong labels, where a method's flags are mostly right labels
and the order of its table is what a review can use.

Reads the outputs a finished ``detect.py --work WORK`` run left (each scan's folder, the
``cleanlab`` and ``plain`` arrays), against the folder's ``truth.csv``, and prints one row
per method: its flags and the wrong labels among them, then the wrong labels among the
first ``k`` rows of its ranking for each depth ``k`` (default: 1, 2, 5, 10 and 20 times the
number of wrong labels), and, where the truth names a class, how many of those wrong labels
the method's written label (``fixed``, as in ``detect.py``) sets right::

    python benchmarks/review_depth.py /tmp/verified-cifar --work /tmp/vc-work \
        [--depths 54,100,500] [--results benchmarks/RESULTS.md]

``make_noisy.py --noise verified`` writes such a folder: the CIFAR-10 or MNIST test set
with its published labels, the known wrong ones being those people confirmed. A confirmed
error without an agreed class (``unknown`` in ``truth.csv``) counts as wrong but cannot be
set right.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from detect import (  # the sibling script's (this folder is on sys.path)
    METHODS,
    SCAN_ARGS,
    check_noisy_folder,
    class_index,
    method_outputs,
    output_file,
    outputs_path,
    read_run_record,
    read_truth,
)
from make_noisy import UNKNOWN_CLASS, fail


def depth_row(paths: list[str], classes: list[str], arrays: dict, truth: dict[str, str],
              depths: list[int]) -> dict[str, int]:
    """Flags, wrong labels flagged, wrong labels in the first ``k`` rows for each of
    ``depths``, and the flagged wrong labels with a known class that the written label
    sets right (of how many such)."""
    index = class_index(list(classes), truth)
    true = np.array([index[truth[p]] for p in paths])
    wrong = np.asarray(arrays["labels"]) != true
    flag = np.asarray(arrays["flag"], dtype=bool)
    ranked = wrong[np.argsort(-np.asarray(arrays["score"], dtype=np.float64), kind="stable")]
    known = wrong & np.array([truth[p] != UNKNOWN_CLASS for p in paths])
    row = {"flags": int(flag.sum()), "flagged wrong": int((flag & wrong).sum())}
    for k in depths:
        row[f"top {k}"] = int(ranked[:k].sum())
    row["set right"] = int((np.asarray(arrays["fixed"])[known] == true[known]).sum())
    row["with a class"] = int(known.sum())
    return row


def table(folder: Path, work: Path, depths: list[int] | None) -> str:
    """The markdown table of every method with outputs in ``work``."""
    truth = read_truth(folder)
    wrong = int(json.loads((folder / "noise.json").read_text())["wrong"])
    if wrong == 0:
        fail(f"{folder} has no wrong labels: there is nothing to find")
    depths = depths or [m * wrong for m in (1, 2, 5, 10, 20)]
    names = read_run_record(work).get("scan_options", {})
    lines = []
    for name in dict.fromkeys([*METHODS, *SCAN_ARGS]):  # every method detect.py runs
        if outputs_path(work, name) is None:
            continue
        row = depth_row(*method_outputs(work, name), truth, depths)
        label = (f"noisyclean {names.get(name) or ' '.join(SCAN_ARGS[name])}"
                 if name in SCAN_ARGS else name)
        if not lines:
            lines = ["| method | " + " | ".join(row) + " |", "|---|" + "---|" * len(row)]
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row.values()) + " |")
    if not lines:
        fail(f"{work} holds no method's outputs (run detect.py with --work {work} first)")
    return (f"{wrong} wrong labels in {len(truth)} images; cells: wrong labels among the "
            "method's flags, and among the first k rows of its ranking\n\n"
            + "\n".join(lines) + "\n")


def _depths(text: str) -> list[int]:
    try:
        depths = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "--depths takes whole numbers, e.g. 54,100,500") from None
    if not depths or min(depths) < 1:
        raise argparse.ArgumentTypeError("--depths must be 1 or more")
    return depths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder made by make_noisy.py")
    parser.add_argument("--work", type=Path, required=True,
                        help="the --work folder of a finished detect.py run on it")
    parser.add_argument("--depths", type=_depths, default=None)
    parser.add_argument("--results", type=Path, default=None, help="append the table here")
    args = parser.parse_args(argv)
    check_noisy_folder(args.folder, ("truth.csv", "noise.json"))
    if not args.work.is_dir():
        fail(f"--work {args.work} is not a folder")
    output_file(args.results, "--results")
    text = table(args.folder, args.work, args.depths)
    print(text)
    if args.results:
        with args.results.open("a") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
