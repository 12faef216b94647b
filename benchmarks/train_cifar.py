"""Training benchmark: ``noisyclean train --method dividemix`` against the cross-entropy
baseline ``--method standard`` at the same epoch budget, on a noisy CIFAR-10 folder made by
``make_noisy.py``, with the clean CIFAR-10 test images as ``--val``.

    python benchmarks/train_cifar.py --n 10000 --noise sym --rate 0.5 --epochs 30 \
        --warmup-epochs 10 --test-n 10000 --work /tmp/train-sym50 [--model small-cnn] \
        [--width 32] [--methods dividemix,standard] [--extra "--device cuda"]

The GPU size of issue 4 (every CIFAR-10 training image of the data file: 50,000 in CIFAR-10,
30,000 in ``../shared/data``; 50% symmetric, PreAct ResNet-18)::

    python benchmarks/train_cifar.py --full --noise sym --rate 0.5 --epochs 300 \
        --extra "--lr-drop-epoch 150" --work /data/train-full-sym50

Steps: write ``WORK/data`` with ``make_noisy.py`` (unless it is there), then for each method
run the installed CLI in a subprocess into ``WORK/<method>`` (an interrupted run is resumed
with ``--resume``; a finished one is reused, ``--force`` reruns it), then report per method:

* clean test accuracy of the final networks (the ensemble of both for DivideMix), and the
  best over the epochs, from ``history.csv``'s ``val_acc``;
* the final ``relabeled.csv`` against the truth: labels right before and after, the
  precision of its changes (changed labels that are now right) and their recall (wrong
  labels that are now right); and the precision / recall / AUROC of ``is_noisy``;
* wall time and seconds per epoch.

Noise convention: ``--noise sym --rate r`` replaces exactly ``r`` of the labels by ANOTHER
class (real rate r). DivideMix's paper and reference code draw the new label from all
classes, the true one included (real rate ``r (C - 1) / C``: 45% for its "50%");
``--sym-convention all`` reproduces that. The printed table names the convention.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def make_data(args: argparse.Namespace, data: Path) -> dict:
    """Write the noisy folder with make_noisy.py unless it exists; return its noise.json."""
    if not (data / "noise.json").is_file():
        if data.exists():
            shutil.rmtree(data)
        cmd = [sys.executable, str(HERE / "make_noisy.py"), "--dataset", "cifar10",
               "--n", str(args.n), "--noise", args.noise, "--rate", str(args.rate),
               "--sym-convention", args.sym_convention, "--test-n", str(args.test_n),
               "--seed", str(args.seed), "--out", str(data)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((data / "noise.json").read_text())


def run_method(args: argparse.Namespace, method: str, data: Path, out: Path) -> float:
    """Run (or resume) ``noisyclean train`` for one method; return its wall time (0 when a
    finished run is reused)."""
    if (out / "summary.json").is_file() and not args.force:
        return 0.0
    if args.force and out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "noisyclean", "train", str(data / "images"),
           "--method", method, "--epochs", str(args.epochs),
           "--warmup-epochs", str(args.warmup_epochs), "--val", str(data / "test"),
           "--truth", str(data / "truth.csv"), "--seed", str(args.seed), "--quiet"]
    if args.model:
        cmd += ["--model", args.model]
    if args.width:
        cmd += ["--width", str(args.width)]
    cmd += shlex.split(args.extra)
    cmd += ["--resume", str(out)] if (out / "checkpoint.pt").is_file() else ["--out", str(out)]
    print("$", " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def relabel_metrics(out: Path, truth: pd.DataFrame) -> dict[str, float]:
    """The final relabeled.csv against the true labels."""
    relabeled = pd.read_csv(out / "relabeled.csv", dtype=str, keep_default_na=False)
    merged = relabeled.merge(truth.rename(columns={"label": "true"}), on="path")
    wrong = merged["original_label"] != merged["true"]
    changed = merged["label"] != merged["original_label"]
    right_now = merged["label"] == merged["true"]
    return {
        "right_before": float((~wrong).mean()),
        "right_after": float(right_now.mean()),
        "changed": int(changed.sum()),
        "relabel_precision": float((changed & right_now).sum() / max(1, changed.sum())),
        "relabel_recall": float((wrong & right_now).sum() / max(1, wrong.sum())),
    }


def report(method: str, out: Path, truth: pd.DataFrame, wall: float) -> dict:
    """One result row for a finished run."""
    summary = json.loads((out / "summary.json").read_text())
    history = pd.read_csv(out / "history.csv")
    detection = summary.get("truth_metrics", {})
    row = {
        "method": method,
        "epochs": len(history),
        "test_acc_last": float(history["val_acc"].iloc[-1]),
        "test_acc_best": float(history["val_acc"].max()),
        **relabel_metrics(out, truth),
        "flag_precision": detection.get("precision"),
        "flag_recall": detection.get("recall"),
        "flag_auroc": detection.get("auroc"),
        "wall_s": wall or sum(summary["timings_s"].values()),
        "s_per_epoch": float(history["seconds"].mean()),
        "test_acc_per_epoch": [round(float(v), 4) for v in history["val_acc"]],
    }
    if method == "dividemix":
        row["chosen"] = summary["dividemix"]["chosen"]
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options this script and ``train_methods.py`` share (data, budget, work folder)."""
    parser.add_argument("--n", type=int, default=10000, help="training images")
    parser.add_argument("--noise", choices=["sym", "asym", "human"], default="sym")
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--sym-convention", choices=["other", "all"], default="other")
    parser.add_argument("--test-n", type=int, default=10000, help="clean test images (--val)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of every method")
    parser.add_argument("--warmup-epochs", type=int, default=10)
    parser.add_argument("--model", default=None, help="--model of train (default: its own)")
    parser.add_argument("--width", type=int, default=None, help="--width of small-cnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, required=True, help="working folder")
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--full", action="store_true",
                        help="the GPU size: every training image of the data file (--n "
                             "all) and --model preact-resnet18 (DivideMix's network)")


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, then apply ``--full`` (every training image, PreAct ResNet-18 unless a
    ``--model`` is given)."""
    args = parser.parse_args(argv)
    if args.full:
        args.n = "all"
        args.model = args.model or "preact-resnet18"
    return args


def describe_noise(noise: dict) -> str:
    """The noise of a ``noise.json`` in words, with its convention and real rate."""
    return (f"{noise['noise']} {noise.get('rate')}"
            + (f", convention '{noise['sym_convention']}'" if noise["noise"] == "sym" else "")
            + f": real noise rate {noise['real_noise_rate']:.3f}")


def epochs_run(rows: list[dict]) -> str:
    """The epochs the reported runs really ran (a reused run keeps its own budget)."""
    return " / ".join(str(e) for e in sorted({r["epochs"] for r in rows}))


def markdown(rows: list[dict], header: str) -> str:
    """The result rows as a markdown table under ``header`` (a row's ``name``, else its
    ``method``, names it)."""
    lines = [header, "",
             "| method | test acc last | best | labels right before -> after | changed | "
             "relabel precision | relabel recall | flag P / R / AUROC | wall s | s/epoch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flags = " / ".join("-" if r[k] is None else f"{r[k]:.3f}"
                           for k in ("flag_precision", "flag_recall", "flag_auroc"))
        lines.append(
            f"| {r.get('name', r['method'])} | {r['test_acc_last']:.4f} | "
            f"{r['test_acc_best']:.4f} | {r['right_before']:.4f} -> {r['right_after']:.4f} | "
            f"{r['changed']} | {r['relabel_precision']:.3f} | {r['relabel_recall']:.3f} | "
            f"{flags} | {r['wall_s']:.0f} | {r['s_per_epoch']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--methods", default="dividemix,standard")
    parser.add_argument("--extra", default="", help="more train options, one string")
    args = parse_arguments(parser, argv)

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "data"
    noise = make_data(args, data)
    truth = pd.read_csv(data / "truth.csv", dtype=str, keep_default_na=False)
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        wall = run_method(args, method, data, args.work / method)
        rows.append(report(method, args.work / method, truth, wall))

    header = (f"CIFAR-10, {noise['n']} training images ({describe_noise(noise)}), "
              f"{noise['test_n']} clean test images, {epochs_run(rows)} epochs per method")
    print("\n" + markdown(rows, header) + "\n")
    results = {"noise": noise, "args": {k: str(v) for k, v in vars(args).items()},
               "rows": rows}
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
