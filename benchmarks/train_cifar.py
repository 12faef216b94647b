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
``--noise human`` takes CIFAR-10N's human labels, the set ``--human`` names (``aggre``,
``random1``, ``random2``, ``random3`` or ``worst``, as in ``make_noisy.py``; default
``worst``); ``--rate`` does not apply to it.

Reuse is checked: ``WORK/data`` is reused only when its ``noise.json`` records the data this
run asks for (``--n``, ``--noise``, ``--rate``, ``--human``, ``--sym-convention``,
``--seed``, ``--test-n``), and a method's run in ``WORK/<method>`` (finished or interrupted)
only when it was started with the same ``noisyclean train`` options on the same data (kept
in ``WORK/<method>/benchmark-run.json``); otherwise the script stops with an error before
training anything (``--force`` reruns the method runs; other data needs another
``--work``).
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
sys.path.insert(0, str(HERE))

from detect import fail  # noqa: E402  (the sibling scripts')
from make_noisy import HUMAN_KEYS  # noqa: E402

#: the record, in each method's output folder, of the train options it was started with
RUN_RECORD = "benchmark-run.json"


def data_request(args: argparse.Namespace) -> dict:
    """What ``args`` ask of ``WORK/data``, in ``noise.json``'s terms (``n`` may be ``"all"``;
    the settings a noise kind does not use are None, as ``make_noisy.py`` records them)."""
    return {
        "dataset": "cifar10",
        "n": args.n,
        "start": 0,
        "noise": args.noise,
        "rate": args.rate if args.noise in ("sym", "asym") else None,
        "human": args.human if args.noise == "human" else None,
        "sym_convention": args.sym_convention if args.noise == "sym" else None,
        "seed": args.seed,
        "test_n": args.test_n,
    }


def data_differences(noise: dict, request: dict) -> list[str]:
    """The settings where a ``noise.json`` differs from :func:`data_request`'s, as
    ``KEY stored (asked ASKED)``; empty when the data is what was asked for."""
    stored = dict(noise)
    if request["n"] == "all":  # every training image of the data file, from the start
        stored["n"] = "all" if noise["n"] == noise["train_size"] - noise.get("start", 0) \
            else noise["n"]
    if "test_size" in noise:  # make_noisy.py writes as many test images as the file holds
        request = {**request, "test_n": min(request["test_n"], noise["test_size"])}
    return [f"{key} {stored.get(key)} (asked {value})" for key, value in request.items()
            if stored.get(key, 0 if key == "start" else None) != value]


def make_data(args: argparse.Namespace, data: Path) -> dict:
    """Write the noisy folder with make_noisy.py unless it is there (a folder without
    ``noise.json``, left half-written, is written again); return its noise.json. A folder
    made with other settings than ``args`` ask for is refused (:func:`~detect.fail`)."""
    if not (data / "noise.json").is_file():
        if data.exists():
            shutil.rmtree(data)
        cmd = [sys.executable, str(HERE / "make_noisy.py"), "--dataset", "cifar10",
               "--n", str(args.n), "--noise", args.noise, "--rate", str(args.rate),
               "--sym-convention", args.sym_convention, "--test-n", str(args.test_n),
               "--seed", str(args.seed), "--out", str(data)]
        if args.noise == "human":
            cmd += ["--human", args.human]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if done.returncode != 0:  # make_noisy.py said why, on its standard error
            sys.exit(done.returncode)
    noise = json.loads((data / "noise.json").read_text())
    differences = data_differences(noise, data_request(args))
    if differences:
        fail(f"{data} holds other data than this run asks for ({'; '.join(differences)}): "
             "give another --work, or remove that folder and the method runs made on it")
    return noise


def check_run(out: Path, record: dict, force: bool) -> bool:
    """Whether the method's run in ``out`` can be reused (finished) or resumed (a
    checkpoint): only when it was started with ``record`` (its train options and data);
    one started otherwise, or by an older script that kept no record, is refused
    (:func:`~detect.fail`) unless ``force`` (rerun it). False: nothing there to go on from."""
    if force or not ((out / "summary.json").is_file() or (out / "checkpoint.pt").is_file()):
        return False
    path = out / RUN_RECORD
    if not path.is_file():
        fail(f"{out} holds a run with no record of its settings (made by an older script): "
             "--force reruns it, or give another --work")
    stored = json.loads(path.read_text())
    if stored != record:
        changed = [key for key in record if stored.get(key) != record[key]]
        old, new = (shlex.join(r["train_args"]) if changed == ["train_args"] else
                    json.dumps({k: r.get(k) for k in changed}) for r in (stored, record))
        fail(f"{out} holds a run made with {old!r}, not {new!r}: --force reruns it, or give "
             "another --work")
    return True


def train_command(args: argparse.Namespace, method: str, data: Path) -> list[str]:
    """The ``noisyclean train`` options of one method's run (all but ``--out``/``--resume``),
    from ``data / "images"`` on."""
    cmd = [str(data / "images"),
           "--method", method, "--epochs", str(args.epochs),
           "--warmup-epochs", str(args.warmup_epochs), "--val", str(data / "test"),
           "--truth", str(data / "truth.csv"), "--seed", str(args.seed), "--quiet"]
    if args.model:
        cmd += ["--model", args.model]
    if args.width:
        cmd += ["--width", str(args.width)]
    return cmd + shlex.split(args.extra)


def method_record(args: argparse.Namespace, method: str, data: Path, noise: dict | None) -> dict:
    """What a method's run is started with: its train options and its data's noise.json."""
    return {"train_args": train_command(args, method, data), "data": noise}


def run_method(
    args: argparse.Namespace, method: str, data: Path, out: Path, noise: dict | None = None,
) -> float:
    """Run (or resume) ``noisyclean train`` for one method; return its wall time (0 when a
    finished run is reused). A run in ``out`` is reused or resumed only if started with the
    same options on the same data (``noise``, the data's noise.json), :func:`check_run`;
    ``--force`` reruns it from the start. A failed run stops the script (exit 2)."""
    record = method_record(args, method, data, noise)
    train_args = record["train_args"]
    if check_run(out, record, args.force) and (out / "summary.json").is_file():
        return 0.0
    if args.force and out.exists():
        shutil.rmtree(out)
    if not (out / "checkpoint.pt").is_file():  # a new run: record what it is started with
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    cmd = [sys.executable, "-m", "noisyclean", "train", *train_args]
    cmd += ["--resume", str(out)] if (out / "checkpoint.pt").is_file() else ["--out", str(out)]
    print("$", " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd)
    if done.returncode != 0:
        fail(f"noisyclean train --method {method} failed (exit {done.returncode}); its "
             f"messages are above; outputs in {out}")
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
    parser.add_argument("--noise", choices=["sym", "asym", "human"], default="sym",
                        help="sym: --rate of the labels to another class; asym: DivideMix's "
                             "CIFAR-10 flips at --rate; human: CIFAR-10N's labels (--human)")
    parser.add_argument("--rate", type=float, default=0.5,
                        help="the noise rate of --noise sym and asym (not used by human)")
    parser.add_argument("--human", choices=sorted(HUMAN_KEYS), default="worst",
                        help="CIFAR-10N's label set for --noise human (default: worst)")
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
    if args.test_n < 1:
        fail("--test-n must be 1 or more: the clean test images are every method's --val")
    if args.noise in ("sym", "asym") and not 0.0 <= args.rate <= 1.0:
        fail("--rate must be between 0 and 1")
    if args.work.exists() and not args.work.is_dir():
        fail(f"--work {args.work} exists and is not a folder")
    return args


def describe_noise(noise: dict) -> str:
    """The noise of a ``noise.json`` in words: its kind and rate (CIFAR-10N's label set for
    human noise), the symmetric convention and the real rate."""
    which = noise.get("human") if noise["noise"] == "human" else noise.get("rate")
    return (f"{noise['noise']} {which}"
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
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:  # every run to reuse or resume is checked before any training
        check_run(args.work / method, method_record(args, method, data, noise), args.force)
    rows = []
    for method in methods:
        wall = run_method(args, method, data, args.work / method, noise)
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
