"""Every ``noisyclean train`` method on one noisy CIFAR-10 folder made by ``make_noisy.py``,
at the same epoch budget, with the clean CIFAR-10 test images as ``--val``: one run per
method, one table.

    python benchmarks/train_methods.py --n 10000 --noise sym --rate 0.5 --epochs 30 \
        --warmup-epochs 10 --test-n 10000 --work /tmp/methods-sym50 \
        [--methods standard,coteaching,...] [--model small-cnn] [--width 32] \
        [--extra "--device cuda"] [--method-args "coteaching=--num-gradual 5"] \
        [--results benchmarks/RESULTS.md --title "CIFAR-10 sym 50%"]

Steps and measurements are those of ``train_cifar.py`` (whose functions this script
uses): the data is written once into ``WORK/data``; each method runs the installed CLI in a
subprocess into ``WORK/<name>`` (an interrupted run is resumed, a finished one reused,
only when started with the same options on the same data; ``--force`` reruns); reported
per method: the final and best clean test accuracy (``history.csv``'s ``val_acc``, the
ensemble of both networks for the two-network methods), the final ``relabeled.csv``
against the truth (labels right before and after, precision and recall of its changes),
precision / recall / AUROC of ``is_noisy``, wall time and seconds per epoch.

Names beside the methods themselves: ``m-dyr-h`` (``dynamic-bootstrap --mixup``) and
``bootstrap-soft`` (``bootstrap --bootstrap soft``). Every method gets the same
``--epochs`` and ``--warmup-epochs`` (used by dividemix, dynamic-bootstrap and co-teaching's
forget-rate estimate) and its own defaults otherwise. ``--noise human`` takes the
CIFAR-10N label set ``--human`` names (default ``worst``). The folder of the ``--results``
file is made, if missing, before any training.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_cifar  # noqa: E402  (the sibling script, for its data, run and report steps)
from detect import output_file  # noqa: E402

#: name -> (--method, extra options)
VARIANTS = {
    "standard": ("standard", []),
    "dividemix": ("dividemix", []),
    "coteaching": ("coteaching", []),
    "gce": ("gce", []),
    "sce": ("sce", []),
    "mae": ("mae", []),
    "bootstrap": ("bootstrap", []),
    "bootstrap-soft": ("bootstrap", ["--bootstrap", "soft"]),
    "dynamic-bootstrap": ("dynamic-bootstrap", []),
    "m-dyr-h": ("dynamic-bootstrap", ["--mixup"]),
    "mixup": ("mixup", []),
    "label-smoothing": ("label-smoothing", []),
}
DEFAULT = ("standard,dividemix,coteaching,gce,sce,mae,bootstrap,dynamic-bootstrap,m-dyr-h,"
           "mixup,label-smoothing")


def method_settings(out: Path, method: str) -> dict:
    """The method's own record in ``summary.json`` (automatic choices), if any."""
    summary = json.loads((out / "summary.json").read_text())
    keep = {}
    for key in ("coteaching", "dynamic_bootstrap"):
        if key in summary:
            keep[key] = {k: v for k, v in summary[key].items() if k != "events"}
    if method == "dividemix":
        keep["dividemix"] = summary["dividemix"]["chosen"]
    return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    train_cifar.add_arguments(parser)
    parser.add_argument("--methods", default=DEFAULT,
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--extra", default="", help="more train options for every method")
    parser.add_argument("--method-args", action="append", default=[],
                        help="NAME=OPTIONS: more train options for one method (repeatable)")
    parser.add_argument("--results", type=Path, default=None,
                        help="append the markdown table to this file")
    parser.add_argument("--title", default=None)
    args = train_cifar.parse_arguments(parser, argv)

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown method(s): {', '.join(unknown)}")
    per_method: dict[str, str] = {}
    for item in args.method_args:
        name, _, options = item.partition("=")
        if name not in VARIANTS:
            parser.error(f"--method-args: unknown method {name!r}")
        per_method[name] = options

    output_file(args.results, "--results")  # its folder now, before any training
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "data"
    noise = train_cifar.make_data(args, data)
    truth = pd.read_csv(data / "truth.csv", dtype=str, keep_default_na=False)
    runs = {}
    for name in names:
        method, options = VARIANTS[name]
        run_args = argparse.Namespace(**vars(args))
        run_args.extra = " ".join(
            [args.extra, shlex.join(options), per_method.get(name, "")]).strip()
        runs[name] = (method, run_args)
        # every run to reuse or resume is checked before any training
        train_cifar.check_run(args.work / name,
                              train_cifar.method_record(run_args, method, data, noise),
                              args.force)
    rows = []
    for name, (method, run_args) in runs.items():
        out = args.work / name
        wall = train_cifar.run_method(run_args, method, data, out, noise)
        row = train_cifar.report(method, out, truth, wall)
        row.update(name=name, options=run_args.extra, settings=method_settings(out, method))
        rows.append(row)

    header = (f"CIFAR-10, {noise['n']} training images ({train_cifar.describe_noise(noise)}), "
              f"{noise['test_n']} clean test images, {train_cifar.epochs_run(rows)} epochs per "
              f"method ({args.warmup_epochs} warm-up where a method has one)")
    table = train_cifar.markdown(rows, header)
    print("\n" + table + "\n")
    (args.work / "results.json").write_text(json.dumps(
        {"noise": noise, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
        indent=2) + "\n")
    if args.results is not None:
        import torch

        command = "python benchmarks/train_methods.py " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        with args.results.open("a") as handle:
            handle.write(
                f"\n### {args.title or 'train methods'} ({dt.date.today().isoformat()})\n\n"
                f"{platform.platform()}, torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads.\n\n`{command}`\n\n{table}\n")
    print(json.dumps([{k: r[k] for k in ("name", "test_acc_last", "relabel_precision",
                                         "relabel_recall")} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
