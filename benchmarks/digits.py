"""Benchmark: `noisyclean scan examples/noisy-digits` with default settings, for both
mixtures, run as the real CLI in a subprocess (wall clock includes start-up and decoding).
Prints precision/recall/F1/AUROC of the is_noisy flags against the truth file.

    python benchmarks/digits.py [--extra "--networks 2"] [--cold]

`--cold` gives every run a fresh decode cache (counts decoding in the wall time).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from noisyclean.evaluate import detection_metrics, read_truth

ROOT = Path(__file__).resolve().parents[1]


def run(mixture: str, extra: str, cold: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = ["noisyclean", "scan", str(ROOT / "examples/noisy-digits"), "--out", str(out),
               "--mixture", mixture, "--quiet", *shlex.split(extra)]
        if cold:
            cmd += ["--cache-dir", str(Path(tmp) / "cache")]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
        table = pd.read_csv(out / "scores.csv", dtype={"label": str, "suggested_label": str})
        metrics = detection_metrics(table, read_truth(ROOT / "examples/noisy-digits-truth.csv"))
        return {"mixture": mixture, "wall_s": wall, **metrics, "cmd": " ".join(cmd)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extra", default="", help="extra scan options")
    parser.add_argument("--cold", action="store_true", help="fresh decode cache per run")
    args = parser.parse_args()
    print("| mixture | wall s | precision | recall | F1 | AUROC | flagged | wrong | "
          "suggested acc on wrong |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mixture in ("gmm", "bmm"):
        r = run(mixture, args.extra, args.cold)
        print(f"| {r['mixture']} | {r['wall_s']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} "
              f"| {r['f1']:.3f} | {r['auroc']:.3f} | {r['n_flagged']} | {r['n_wrong']} | "
              f"{r['suggested_accuracy_on_wrong']:.3f} |", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
