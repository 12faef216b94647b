"""Detection benchmark: how well does ``noisyclean scan`` find the wrong labels of a folder
made by ``make_noisy.py``, next to cleanlab and the plain one-run DivideMix recipe, measured
in one run on the same images.

    python benchmarks/detect.py /tmp/cifar-sym50 [--epochs N] [--methods ...] \
        [--results benchmarks/RESULTS.md] [--title "CIFAR-10 sym 50%"] [--model NAME] \
        [--amp | --no-amp]

The GPU size (``--full``): every CIFAR-10 training image of the data file (50,000 in
CIFAR-10; 30,000 in ``../shared/data``'s ``cifar10.npz``) and PreAct ResNet-18 for every
method::

    python benchmarks/make_noisy.py --n all --noise sym --rate 0.5 --out /data/full-sym50
    python benchmarks/detect.py /data/full-sym50 --full --results benchmarks/RESULTS.md

Every method trains in the device's default precision (bfloat16 autocast on CUDA and on a
CPU with native bfloat16, float32 elsewhere); ``--amp`` or ``--no-amp`` sets it for all of
them, as the scan's option of that name does (``--no-amp``: float32 on a CPU with native
bfloat16, the precision a CPU without it trains in; figures still differ from such a CPU's
by the rounding of its kernels).

Methods (each in its own subprocess, timed wall-clock, peak memory from ``wait4``; the
folder's files are read once, untimed, before the first, so that every method starts with
them in the page cache; every method's process has the allocator settings the CLI gives a
scan, ``noisyclean.hold_freed_memory``, the workers setting them themselves):

* ``scan-gmm``, ``scan-bmm``, ``scan-n2``: the installed CLI, ``noisyclean scan`` with its
  defaults and ``--mixture gmm``, ``--mixture bmm``, ``--networks 2``; each decodes the
  images itself (a fresh decode cache, ``WORK/cache-<method>``, emptied before the scan
  starts and removed when it ends, so a rerun in the same ``--work`` decodes again too).
  On request (``--methods``) also the scan signals ``scan-loss-gmm``, ``scan-loss-bmm``
  (``--signal loss``), ``scan-aum`` (``--signal aum``) and ``scan-folds``
  (``--folds 5``). The other methods train ``--epochs`` (default: the
  scan's budget, ``auto_epochs``) at full resolution; the scan spends the same budget its
  own way (``resolve_schedule``): for the small CNN at 32 px, 6 epochs at half resolution,
  5 at three quarters, then 10 at full, for 15. ``--scan-args`` adds options to every
  scan; its ``--model``, ``--image-size``, ``--signal``, ``--low-res-epochs`` and
  ``--mid-res-epochs`` count in that split.
* ``cleanlab``: K-fold (K=5) cross-validation of the same backbone, epochs and augmentation,
  trained as the scan trains at full resolution (its optimiser, schedule and batch size),
  out-of-sample predicted probabilities (flip TTA) into ``cleanlab.filter.find_label_issues``
  (default ``prune_by_noise_rate``) and ``cleanlab.rank.get_label_quality_scores``.
* ``plain``: the one-run DivideMix recipe with the same backbone, epochs and augmentation:
  trained as DivideMix warms up (SGD, constant learning rate 0.02, momentum 0.9, batches
  of 128), with weight decay 5e-4 on the weights of the convolutions and linear layers but,
  as every optimiser of the library (``make_learner``), none on biases and normalisation
  weights (DivideMix's reference code decays every parameter); the last epoch's
  per-sample losses, min-max normalised, a GaussianMixture(2, max_iter=10, tol=1e-2,
  reg_covar=5e-4), flagged where the low-mean component's posterior is below 0.5; no
  other tricks. Its losses also give the ``oracle`` row: flag the top-n losses, n = the
  true number of wrong labels (tables before 2026-12-07 have only the one-cycle oracle
  row, from ``plain-onecycle``'s losses, which that method still gives too).
* ``plain-onecycle``: the same recipe on the scan's own training (its optimiser and
  one-cycle schedule, plain cross-entropy: the scan's training without its forward
  correction), which separates what the schedule gives from what the scan's scoring
  gives.

Reported per method: flags, precision / recall / F1 of the flags, AUROC of the ranking,
the best-cut F1 (the highest F1 any cut of the method's ranking reaches: what a perfect
threshold rule could give that ranking), accuracy on the wrong samples of the label the
method writes (``fixed``: a flagged sample gets the predicted class, except where
noisyclean marks it ``review``) and of its predicted class (``pred``), wall time and peak
memory. The table is printed and appended to ``--results`` with the date, machine,
versions and exact command. ``--rescore --work DIR`` prints the figures again from the
outputs a finished run left in ``DIR``, training nothing (each scan's row named by the
options it ran with, which the run records in ``DIR/detect-run.json``).

The true classes come from ``truth.csv``: a class that no image is given (every bird
labelled airplane, ``make_noisy.py --noise asym --rate 1``) still counts. ``--json`` and
``--results`` may name files in folders that do not exist yet: those are made before the
first method runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from make_noisy import fail  # the sibling script's (this folder is on sys.path)
from sklearn.metrics import roc_auc_score

if TYPE_CHECKING:
    import torch

HERE = Path(__file__).resolve().parent
#: what a run records in its work folder (each scan's options, as its row names them)
RUN_RECORD = "detect-run.json"
METHODS = ("scan-gmm", "scan-bmm", "scan-n2", "cleanlab", "plain", "plain-onecycle")
SCAN_ARGS = {
    "scan-gmm": ["--mixture", "gmm"],
    "scan-bmm": ["--mixture", "bmm"],
    "scan-n2": ["--networks", "2"],
    # the scan signals compared by issue 6 (run only when named in --methods)
    "scan-loss-gmm": ["--signal", "loss", "--mixture", "gmm"],
    "scan-loss-bmm": ["--signal", "loss", "--mixture", "bmm"],
    "scan-aum": ["--signal", "aum"],
    "scan-folds": ["--folds", "5"],
}


# --------------------------------------------------------------------------- errors


def check_noisy_folder(folder: Path, files: tuple[str, ...] = ("truth.csv",)) -> None:
    """:func:`fail` unless ``folder`` holds each of ``files`` as ``make_noisy.py`` writes
    them (its truth, its ``noise.json``)."""
    for name in files:
        if not (folder / name).is_file():
            fail(f"{folder / name} not found (make the folder with make_noisy.py)")


def output_file(path: Path | None, option: str) -> None:
    """Get ready to write ``path``, the file an option such as ``--json`` or ``--results``
    names (None: not given): create its missing parent folders now, before any work whose
    results would be lost, and refuse (:func:`fail`) a path that is a folder or whose
    folder cannot be made."""
    if path is None:
        return
    if path.is_dir():
        fail(f"{option} {path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"{option} {path}: cannot create the folder {path.parent} ({error.strerror})")


# --------------------------------------------------------------------------- workers


#: The plain recipe's batch: DivideMix's warm-up loader takes twice its batch size of 64.
DIVIDEMIX_WARMUP_BATCH = 128


def _train_network(
    data, classes, indices, epochs: int, seed: int, dividemix_sgd: bool = False,
    method=None, width: int | None = None,
):
    """Cross-entropy training of the scan's default backbone through the library's loop:
    the scan's optimiser and one-cycle schedule, or (``dividemix_sgd``) DivideMix's warm-up
    optimiser, SGD with a constant learning rate of 0.02 and momentum 0.9, batches of 128,
    weight decay 5e-4 on convolution and linear weights and none on biases and
    normalisation weights (``make_learner``'s rule; DivideMix's code decays every one).
    ``method`` replaces the scan's warm-up (another objective; ``indices`` is then the
    method's own business) and ``width`` the scan's default width."""
    import torch

    from noisyclean.config import ScanConfig
    from noisyclean.models import build_model
    from noisyclean.progress import Progress
    from noisyclean.scanning import _set_seed
    from noisyclean.train.loop import make_learner, run_epochs
    from noisyclean.train.methods.warmup import Warmup

    cfg = ScanConfig()
    batch = DIVIDEMIX_WARMUP_BATCH if dividemix_sgd else cfg.batch_size
    method = method or Warmup(
        data.data, 1, batch, seed, penalty=False, augment=True,
        indices=None if indices is None else torch.as_tensor(indices),
    )
    _set_seed(seed)
    model = build_model(data.model, len(classes), None, width or cfg.width).to(data.device)
    if dividemix_sgd:
        learner = make_learner(model, 0.02, 0.9, 5e-4, 0, schedule="step", nesterov=False)
    else:
        learner = make_learner(
            model, cfg.lr, cfg.momentum, cfg.weight_decay, method.total_steps(epochs)
        )
    run_epochs([learner], method, range(epochs), data.precision, Progress(quiet=True))
    return learner.model


def worker(
    name: str, images: Path, out: Path, epochs: int | None, seed: int, folds: int,
    model: str | None = None, amp: bool | None = None,
) -> None:
    """Run the ``cleanlab`` or ``plain`` method and save per-sample arrays to ``out``
    (``model``: the backbone, None for the scan's automatic choice; ``amp``: the scan's
    ``--amp``, None for the device's default precision)."""
    import torch

    from noisyclean import hold_freed_memory
    from noisyclean.data.load import load_dataset
    from noisyclean.mixture import normalise_losses
    from noisyclean.scanning import auto_epochs
    from noisyclean.signals import compute_signals

    # the allocator settings the CLI gives every scan, so that each method runs with them
    hold_freed_memory()

    data = load_dataset(images, model=model, use_cache=False, amp=amp)
    n = len(data.paths)
    epochs = epochs or auto_epochs(n)
    labels = data.labels
    if name in ("plain", "plain-onecycle"):
        from sklearn.mixture import GaussianMixture

        model = _train_network(data, data.classes, None, epochs, seed, name == "plain")
        signals = compute_signals(model, data.data, data.precision, tta=False)
        x = normalise_losses(signals.per_sample_loss).reshape(-1, 1)
        gmm = GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
        gmm.fit(x)
        clean = gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]
        flag = clean < 0.5
        score = signals.per_sample_loss
        predicted = signals.probs.argmax(1)
        extra = {"loss": signals.per_sample_loss}
    elif name == "cleanlab":
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.model_selection import StratifiedKFold

        pred_probs = np.zeros((n, len(data.classes)), dtype=np.float64)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for k, (train_idx, held_idx) in enumerate(splitter.split(np.zeros(n), labels)):
            model = _train_network(data, data.classes, train_idx, epochs, seed + k)
            pred_probs[held_idx] = compute_signals(
                model, data.data, data.precision, tta=True, indices=held_idx).probs
        flag = find_label_issues(labels, pred_probs)
        score = -get_label_quality_scores(labels, pred_probs)
        predicted = pred_probs.argmax(1)
        extra = {"pred_probs": pred_probs}
    else:
        raise SystemExit(f"unknown worker {name}")
    np.savez(
        out,
        paths=np.array(data.paths),
        classes=np.array(data.classes),
        labels=labels,
        flag=np.asarray(flag, dtype=bool),
        score=np.asarray(score, dtype=np.float64),
        predicted=predicted,
        fixed=np.where(flag, predicted, labels),
        epochs=epochs,
        model=data.model,
        precision=precision_name(data.precision.dtype),
        # the GPU memory torch held (NaN off CUDA): ru_maxrss counts the host's only
        gpu_peak_mib=(torch.cuda.max_memory_allocated(data.device) / 2**20
                      if data.device.type == "cuda" else np.nan),
        **extra,
    )


# --------------------------------------------------------------------------- runner


def read_truth(folder: Path) -> dict[str, str]:
    """``{path: true label}`` from the ``truth.csv`` of a folder made by ``make_noisy.py``."""
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    return dict(zip(truth["path"], truth["label"], strict=True))


def class_index(classes: list[str], truth: dict[str, str]) -> dict[str, int]:
    """``{class name: index}``: ``classes`` (the classes a method found, given to at least
    one image) at their own indices, then the true classes of ``truth`` that no image is
    given, after them: a true class can be missing from the folders (every bird labelled
    airplane), and its images still count as wrong, never as predicted right."""
    index = {c: i for i, c in enumerate(classes)}
    for c in sorted(set(truth.values()) - set(index)):
        index[c] = len(index)
    return index


def true_labels(folder: Path, paths: list[str], classes: list[str]) -> np.ndarray:
    """Class index of every image's true label, in ``paths`` order (a true class that is not
    among ``classes`` gets an index past them, :func:`class_index`)."""
    truth = read_truth(folder)
    index = class_index(classes, truth)
    return np.array([index[truth[p]] for p in paths])


@functools.cache
def _count_and_probed_size(images: Path) -> tuple[int, int | None]:
    """The folder's image count and the side its images probe at (read once per folder,
    not once per scan method)."""
    from noisyclean.data.decode import probe_image_size
    from noisyclean.data.discover import discover

    samples = discover(images)
    return len(samples.paths), probe_image_size(samples.root, samples.paths)


def scan_epoch_args(options: list[str], budget: int, images: Path) -> list[str]:
    """The scan's options for a budget of ``budget`` full-resolution epochs (``--epochs``,
    which every other method trains at full resolution): the split the scan itself makes
    of that budget (``resolve_schedule``) into full-, half- and three-quarter-resolution
    epochs where its default resizes progressively (small-cnn at 32 px and more, not
    ``--signal aum``), else the budget itself. ``options`` are the scan's other options
    (its method's, ``--model``, ``--scan-args``), read by the scan command's own parser:
    their ``--model``, ``--image-size``, ``--signal``, ``--low-res-epochs`` and
    ``--mid-res-epochs`` count, as they would in the scan."""
    import typer.main

    from noisyclean.cli import app
    from noisyclean.config import ScanConfig
    from noisyclean.data.load import choose_size_and_model
    from noisyclean.scanning import resolve_schedule

    scan_command = typer.main.get_command(app).commands["scan"]
    params = scan_command.make_context("scan", [str(images), *options]).params
    n, probed = _count_and_probed_size(images)
    size, model = choose_size_and_model(params["image_size"], params["model"], lambda: probed)
    config = ScanConfig(data=images, signal=params["signal"],
                        low_res_epochs=params["low_res_epochs"],
                        mid_res_epochs=params["mid_res_epochs"])
    schedule = resolve_schedule(config, n, size, model, budget=budget)
    resized = [("--low-res-epochs", schedule.low_res), ("--mid-res-epochs", schedule.mid_res)]
    return ["--epochs", str(schedule.epochs)] + [
        part for option, count in resized if count for part in (option, str(count))]


def warm_file_cache(folder: Path) -> int:
    """Read every file under ``folder`` once, untimed, so that every method starts with the
    images in the operating system's page cache (otherwise the first method of a run pays
    the cold reads: decode 10.5-11.4 s against 3.7-4.0 s on warm files, 2026-12-05).
    Returns the bytes read."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, dict]:
    """Run ``cmd``; return its wall seconds and what the kernel counted for the child:
    ``peak_mib`` (peak resident memory, a column of the table), ``cpu_user_s``,
    ``cpu_system_s`` and ``minor_faults`` (in the JSON rows only). A run in a slow phase of
    the machine shows in its CPU seconds: on a 2-core AMD EPYC the plain recipe's same work
    took 253-257 s of user CPU in its runs of 133-134 s and 286-356 s in its runs of
    150-186 s (``benchmarks/RESULTS.md``)."""
    # stderr into a file, not a pipe: a child that writes more than a pipe holds would
    # block while this waits for it to end
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return wall, {"peak_mib": usage.ru_maxrss / 1024.0, "cpu_user_s": usage.ru_utime,
                  "cpu_system_s": usage.ru_stime, "minor_faults": usage.ru_minflt}


def best_cut_f1(wrong: np.ndarray, score: np.ndarray) -> tuple[float, int]:
    """The highest F1 that flagging the top-n of ``score`` reaches over every n, and that n:
    the ceiling of a score's ranking, whatever rule sets its cut (ties broken by order)."""
    wrong = np.asarray(wrong, dtype=bool)
    if not wrong.any():
        return 0.0, 0
    ranked = wrong[np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")]
    flagged = np.arange(1, len(ranked) + 1)
    f1 = 2.0 * np.cumsum(ranked) / (flagged + wrong.sum())
    best = int(f1.argmax())
    return float(f1[best]), best + 1


def metrics(
    paths: list[str], flag, score, predicted, fixed, truth: dict[str, str], classes, labels
) -> dict[str, float]:
    """Detection and correction figures against the truth labels (``classes``: the names of
    the indices in ``labels``, ``predicted`` and ``fixed``; a true class not among them
    counts too, :func:`class_index`)."""
    index = class_index(list(classes), truth)
    true = np.array([index[truth[p]] for p in paths])
    wrong = np.asarray(labels) != true
    flag = np.asarray(flag, dtype=bool)
    tp = int((flag & wrong).sum())
    precision = tp / max(int(flag.sum()), 1)
    recall = tp / max(int(wrong.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    auroc = roc_auc_score(wrong, score) if 0 < wrong.sum() < len(wrong) else float("nan")
    best_f1, best_n = best_cut_f1(wrong, score)
    return {
        "flags": int(flag.sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": float(auroc),
        "best_cut_f1": best_f1,
        "best_cut_n": best_n,
        "fixed_acc_on_wrong": float((np.asarray(fixed)[wrong] == true[wrong]).mean()),
        "pred_acc_on_wrong": float((np.asarray(predicted)[wrong] == true[wrong]).mean()),
    }


def scan_arrays(out: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """Per-sample arrays from a scan's output folder, rows in the table's ranking."""
    text = {c: str for c in ("path", "label", "predicted", "suggested_label")}
    table = pd.read_csv(out / "scores.csv", dtype=text, keep_default_na=False)
    classes = json.loads((out / "summary.json").read_text())["classes"]
    index = {c: i for i, c in enumerate(classes)}
    arrays = {
        "labels": table["label"].map(index).to_numpy(),
        "flag": table["is_noisy"].astype(str).str.lower().eq("true").to_numpy(),
        # the table is sorted most suspicious first: its ranking is the score
        "score": -np.arange(len(table), dtype=np.float64),
        "predicted": table["predicted"].map(index).to_numpy(),
        "fixed": table["suggested_label"].map(index).to_numpy(),
    }
    return table["path"].tolist(), classes, arrays


def precision_name(dtype: torch.dtype | None) -> str:
    """``float32`` for full precision (``dtype`` None), else ``bfloat16 autocast`` and the
    like."""
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"


def machine(amp: bool | None = None) -> str:
    """One line describing this machine and the CPU precision every method trains in
    (``amp``: ``--amp``/``--no-amp``, None for the CPU's default)."""
    import torch

    from noisyclean import hold_freed_memory
    from noisyclean.device import cpu_name
    from noisyclean.train.loop import Precision

    cpu = cpu_name()
    where = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name(0) if where == "cuda" else "no GPU"
    dtype = Precision.choose(torch.device(where), amp).dtype
    # what every method's process gets, in the same environment (the CLI's setting)
    malloc = hold_freed_memory().split(" (")[0]
    return (f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {gpu}, "
            f"malloc {malloc}, "
            f"{'GPU' if where == 'cuda' else 'CPU'} training in {precision_name(dtype)}")


def versions() -> str:
    """Versions of the libraries in play."""
    from importlib.metadata import PackageNotFoundError, version

    import noisyclean

    out = []
    for name in ("noisyclean", "torch", "torchvision", "scikit-learn", "cleanlab", "numpy"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:  # noisyclean from a checkout on the path, not installed
            out.append(f"{name} {noisyclean.__version__}" if name == "noisyclean"
                       else f"{name} -")
    return ", ".join(out) + f", python {platform.python_version()}"


def markdown(title: str, rows: list[dict], header: dict[str, str]) -> str:
    """The results as a markdown section."""
    lines = [f"### {title}", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        "",
        "| method | flags | precision | recall | F1 | AUROC | best-cut F1 | fixed acc on wrong "
        "| pred acc on wrong | time (s) | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    gpu = any(r.get("gpu_peak_mib") is not None for r in rows)  # a GPU run: its memory too
    if gpu:
        lines[-2] += " GPU peak MiB |"
        lines[-1] += "---|"
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['flags']} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['f1']:.3f} | {r['auroc']:.3f} | {r['best_cut_f1']:.3f} "
            f"| {r['fixed_acc_on_wrong']:.3f} "
            f"| {r['pred_acc_on_wrong']:.3f} | {r['seconds']:.0f} | {r['peak_mib']:.0f} |"
            + (f" {r['gpu_peak_mib']:.0f} |" if r.get("gpu_peak_mib") is not None
               else " - |" if gpu else "")
        )
    return "\n".join(lines) + "\n"


#: the per-sample arrays of every method's outputs (:func:`method_outputs`), as
#: :func:`metrics` takes them
ARRAY_KEYS = ("labels", "flag", "score", "predicted", "fixed")


def outputs_path(work: Path, name: str) -> Path | None:
    """Where method ``name`` left its outputs in ``work``: a scan's folder (with its
    ``scores.csv``) or a worker's ``.npz``; None where it left none."""
    if (work / name / "scores.csv").is_file():
        return work / name
    if (work / f"{name}.npz").is_file():
        return work / f"{name}.npz"
    return None


def method_outputs(work: Path, name: str) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """``(paths, classes, arrays)`` of method ``name``'s outputs in ``work``: the
    :data:`ARRAY_KEYS` (``score``: higher is more suspicious), and a worker's ``loss``
    where it saved one; :func:`fail` where it left none."""
    path = outputs_path(work, name)
    if path is None:
        fail(f"{work} holds no outputs of {name}")
    if path.is_dir():
        return scan_arrays(path)
    with np.load(path) as d:
        arrays = {key: d[key] for key in (*ARRAY_KEYS, "loss") if key in d}
        return d["paths"].tolist(), d["classes"].tolist(), arrays


def gpu_peak_mib(work: Path, name: str) -> float | None:
    """The GPU memory method ``name``'s run held at its peak (a scan's ``summary.json``, a
    worker's ``.npz``); None for a run off CUDA, or one that did not record it."""
    path = outputs_path(work, name)
    value = None
    if path is not None and path.is_dir():
        summary = json.loads((path / "summary.json").read_text())
        value = summary.get("device", {}).get("peak_memory_mib")
    elif path is not None:
        with np.load(path) as d:
            value = float(d["gpu_peak_mib"]) if "gpu_peak_mib" in d else None
    return None if value is None or np.isnan(value) else float(value)


def collect(
    name: str, work: Path, truth: dict[str, str], noise: dict, folds: int,
    scan_options: str = "",
) -> list[dict]:
    """The rows of one method from its outputs in ``work`` (a scan's folder or a worker's
    ``.npz``), without timings; ``plain`` and ``plain-onecycle`` also give an ``oracle``
    row each (:data:`ORACLE_OF`)."""
    paths, classes, arrays = method_outputs(work, name)
    figures = metrics(paths, truth=truth, classes=classes, **{k: arrays[k] for k in ARRAY_KEYS})
    figures["gpu_peak_mib"] = gpu_peak_mib(work, name)
    if name in SCAN_ARGS:
        options = scan_options or " ".join(SCAN_ARGS[name])
        return [{"method": f"noisyclean {options}".strip(), **figures}]
    label = {
        "cleanlab": f"cleanlab, {folds}-fold CV",
        "plain": "plain one-run recipe (DivideMix warm-up SGD, last-epoch loss, GMM)",
        "plain-onecycle": "plain recipe on the scan's training (one-cycle)",
    }[name]
    rows = [{"method": label, **figures}]
    if name in ORACLE_OF:
        top = np.argsort(-arrays["loss"], kind="stable")[: int(noise["wrong"])]
        flag = np.zeros(len(paths), dtype=bool)
        flag[top] = True
        rows.append({"method": f"oracle: top-n {ORACLE_OF[name]} losses, n = true count",
                     **metrics(paths, flag=flag, score=arrays["loss"],
                               predicted=arrays["predicted"],
                               fixed=np.where(flag, arrays["predicted"], arrays["labels"]),
                               truth=truth, classes=classes, labels=arrays["labels"])})
    return rows


#: The methods whose last-epoch losses also give an oracle row (flag the top-n, n = the
#: true count), and how the row names them: the plain recipe's (the issue's oracle) and
#: the one-cycle recipe's (the same ranking on the scan's training, a higher ceiling).
ORACLE_OF = {"plain": "plain-recipe", "plain-onecycle": "one-cycle"}


def read_run_record(work: Path) -> dict:
    """What a run recorded in ``work`` (:data:`RUN_RECORD`): ``{"scan_options": {method:
    options as its row names them}}``; empty for a folder without one."""
    path = work / RUN_RECORD
    if not path.is_file():
        return {"scan_options": {}}
    return json.loads(path.read_text())


def rescore_table(
    work: Path, methods: list[str], truth: dict[str, str], noise: dict, folds: int
) -> str:
    """A markdown table of the detection figures recomputed from the outputs a finished run
    left in ``work`` (no training; methods without outputs there are left out). A scan's
    row is named by the options it ran with, as the run recorded them (else its method's
    own options)."""
    lines = ["| method | flags | F1 | AUROC | best-cut F1 | flags at the best cut |",
             "|---|---|---|---|---|---|"]
    recorded = read_run_record(work).get("scan_options", {})
    for name in methods:
        if outputs_path(work, name) is None:
            continue
        for row in collect(name, work, truth, noise, folds,
                           scan_options=recorded.get(name, "")):
            lines.append(f"| {row['method']} | {row['flags']} | {row['f1']:.3f} "
                         f"| {row['auroc']:.3f} | {row['best_cut_f1']:.3f} "
                         f"| {row['best_cut_n']} |")
    return "\n".join(lines) + "\n"


def fresh_cache(path: Path) -> Path:
    """``path``, with whatever an earlier run left there removed: a decode cache that the
    method starts from nothing, as on a first run."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run (or ``--rescore``) the benchmark, as the module docstring says."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder made by make_noisy.py")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="the training budget of every method, in full-resolution epochs "
                             "(default: the scan's, auto_epochs; the scan spends it as "
                             "its resolve_schedule splits it)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scan-args", default="", help="extra options for every scan")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="the precision of every method, as the scan's --amp: bfloat16 "
                             "autocast (--amp) or float32 (--no-amp), e.g. float32 on a "
                             "CPU with native bfloat16 (default: the device's own)")
    parser.add_argument("--model", default=None,
                        help="backbone of every method (default: the scan's automatic choice)")
    parser.add_argument("--full", action="store_true",
                        help="the GPU size: a folder of every CIFAR-10 training image "
                             "(make_noisy.py --n all) and --model preact-resnet18 for every "
                             "method")
    parser.add_argument("--results", type=Path, default=None,
                        help="append the markdown table to this file")
    parser.add_argument("--title", default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--work", type=Path, default=None, help="keep outputs here")
    parser.add_argument("--rescore", action="store_true",
                        help="print the figures recomputed from the outputs already in "
                             "--work (no training), with each ranking's best-cut F1")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    images = args.folder / "images"
    if args.worker:
        worker(args.worker, images, args.worker_out, args.epochs, args.seed, args.folds,
               args.model, args.amp)
        return 0

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        known = ", ".join(dict.fromkeys([*METHODS, *SCAN_ARGS]))
        fail(f"--methods names no method; choose from {known}")
    unknown = set(methods) - set(METHODS) - set(SCAN_ARGS)
    if unknown:
        fail(f"unknown method(s): {', '.join(sorted(unknown))}")
    check_noisy_folder(args.folder, ("truth.csv", "noise.json"))
    truth = read_truth(args.folder)
    noise = json.loads((args.folder / "noise.json").read_text())
    if args.rescore:  # reads the outputs only: no cleanlab, no work folder to make
        if args.work is None or not args.work.is_dir():
            fail("--rescore reads a finished run's outputs: give its --work folder")
        print(rescore_table(args.work, methods, truth, noise, args.folds))
        return 0
    if "cleanlab" in methods:
        try:
            import cleanlab  # noqa: F401
        except ImportError:
            fail("cleanlab is not installed: pip install -e \".[bench]\"")
    if args.full:
        every = int(noise.get("train_size", 50000))
        if noise.get("dataset", "cifar10") != "cifar10" or int(noise["n"]) != every:
            fail(f"--full wants every CIFAR-10 training image of the data file ({every}); "
                 f"{args.folder} has {noise['n']} (make it with make_noisy.py --n all)")
        args.model = args.model or "preact-resnet18"
    if args.work is not None and args.work.exists() and not args.work.is_dir():
        fail(f"--work {args.work} exists and is not a folder")
    # the files written at the end: their folders now, before any training
    output_file(args.results, "--results")
    output_file(args.json, "--json")
    backbone = {"--model", "--image-size", "--width", "--resize"} & {
        word.split("=")[0] for word in shlex.split(args.scan_args)}
    others = [m for m in methods if m not in SCAN_ARGS]
    if backbone and others:
        fail(f"--scan-args {', '.join(sorted(backbone))}: with {', '.join(others)} the "
             "backbone and its input must be every method's, and --scan-args reaches the "
             "scans only; give --model to detect.py (the others are the scan's automatic "
             "choices for every method)")
    method_args = ["--model", args.model] if args.model else []
    if args.amp is not None:
        method_args.append("--amp" if args.amp else "--no-amp")
    work = args.work or Path(tempfile.mkdtemp(prefix="noisyclean-detect-"))
    work.mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).with_name("noisyclean")
    # the installed console script, or the package on the path (a checkout, not installed)
    noisyclean_cli = [str(script)] if script.is_file() else [sys.executable, "-m", "noisyclean"]
    warm_file_cache(images)
    title = args.title or (
        f"{noise['dataset']} {noise['n']} images, {noise['noise']} "
        + (f"{noise['rate']:.0%}" if noise.get("rate") is not None else noise.get("human") or "")
    )
    header = {
        "date": dt.date.today().isoformat(),
        "machine": machine(args.amp),
        "versions": versions(),
        "data": (f"{noise['n']} images from index {noise.get('start', 0)}, real noise rate "
                 f"{noise['real_noise_rate']:.3f} "
                 f"({noise['wrong']} wrong), seed {noise['seed']}"
                 + (f", symmetric convention '{noise['sym_convention']}'"
                    if noise.get("sym_convention") else "")),
        "command": "`python " + shlex.join(["benchmarks/detect.py", *(argv or sys.argv[1:])])
                   + "`",
    }

    def write_json(complete: bool) -> None:
        """The rows so far (``complete`` false until every method ran): a run stopped by a
        time limit keeps the methods it finished."""
        if args.json:
            args.json.write_text(json.dumps(
                {"title": title, **header, "complete": complete, "rows": rows}, indent=2))

    rows = []
    record = read_run_record(work)  # the methods not run now keep their entries
    for name in methods:
        # a fresh decode cache: a scan decodes the images itself on every run
        cache = fresh_cache(work / f"cache-{name}")
        env = dict(os.environ, NOISYCLEAN_CACHE_DIR=str(cache))
        given: list[str] = []  # the scan's options, as its row shows them
        if name in SCAN_ARGS:
            options = [*SCAN_ARGS[name], *method_args, *shlex.split(args.scan_args)]
            given = ["--seed", str(args.seed), *options]
            if args.epochs:
                given += scan_epoch_args(options, args.epochs, images)
            cmd = [*noisyclean_cli, "scan", str(images), "--out", str(work / name), "--quiet",
                   *given]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), str(args.folder),
                   "--worker", name, "--worker-out", str(work / f"{name}.npz"),
                   "--seed", str(args.seed), "--folds", str(args.folds), *method_args]
            if args.epochs:
                cmd += ["--epochs", str(args.epochs)]
        if name in SCAN_ARGS:  # what --rescore will name its row by
            record.setdefault("scan_options", {})[name] = " ".join(given)
            (work / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        seconds, counted = run_timed(cmd, env)
        shutil.rmtree(cache, ignore_errors=True)
        found = collect(name, work, truth, noise, args.folds, scan_options=" ".join(given))
        rows += [{**row, "seconds": seconds, **counted} for row in found]
        r = rows[-len(found)]  # the method's own row, not plain-onecycle's oracle row
        print(f"{r['method']}: F1 {r['f1']:.3f} P {r['precision']:.3f} R {r['recall']:.3f} "
              f"AUROC {r['auroc']:.3f} {r['seconds']:.0f}s", flush=True)
        write_json(complete=False)

    text = markdown(title, rows, header)
    print(text)
    if args.results:
        with args.results.open("a") as handle:
            handle.write("\n" + text)
    write_json(complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
