"""``train``: image folder -> decode once -> DivideMix, the cross-entropy baseline or another
method (co-teaching, robust losses, bootstrapping, mixup, label smoothing; see
:mod:`noisyclean.train.methods.registry`) on the one training loop, a checkpoint and a
``history.csv`` row after every epoch -> the same ``scores.csv``, ``relabeled.csv``,
``skipped.csv`` and ``summary.json`` as ``scan``, now from the trained networks (the
ensemble of both for DivideMix and co-teaching).

``--resume OUT`` reloads ``OUT/checkpoint.pt`` (networks, optimisers, step counters, the
method's generator and choices, global random states, history, settings) and continues
with the next epoch; on the CPU it ends with the same scores as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from .. import __version__
from ..config import (
    METHODS,
    RESUME_OVERRIDABLE,
    TrainConfig,
    checked_config,
    ignored_text,
    option_name,
    shared_checks,
)
from ..cut import CUTS, effective_cut
from ..data.batches import DeviceImages
from ..data.discover import class_folders
from ..data.load import Dataset, load_configured
from ..device import device_text, library_run, threads_warning
from ..environment import run_environment
from ..errors import FEW, NoisyCleanError, listing
from ..evaluate import check_no_class, detection_metrics, read_truth
from ..models import IMAGENET_MEAN, IMAGENET_STD, build_model
from ..names import nfc, unique_nfc_forms
from ..outputs.evaluation import (
    normalise_label_list,
    normalise_paths,
    normalise_table,
    normalise_truth,
)
from ..outputs.table import relabeled_table
from ..outputs.write import (
    PROBS_NAME,
    atomic_write_bytes,
    check_inputs_outside_out,
    check_out_outside_data,
    labels_file,
    prepare_out_dir,
    probs_in_table_order,
    refuse_filled_review_sheet,
    remove_stale_outputs,
    removed_if_left_empty,
    run_lock,
    stale_outputs_text,
    unlink_if_present,
    write_csv,
    write_json,
    write_pred_probs,
)
from ..progress import Progress, checked_progress
from ..scanning import _set_seed, epochs_text, relabel_reach_warning
from ..scoring import score_samples, table_summary
from ..signals import FUSIONS, SIGNALS, compute_signals, finite, network_scores
from ..torchfile import on_cpu
from ..underfit import underfit_warning
from .checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    restore_learners,
    restore_scaler,
    save_checkpoint,
    set_rng_state,
)
from .divide import Division
from .loop import Learner, Precision, make_learner, run_epochs
from .methods.dividemix import DivideMix
from .methods.registry import (
    METHOD_COLUMNS,
    build_method,
    conditionally_unused,
    method_checks,
    n_networks,
    unused_options,
)

HISTORY_NAME = "history.csv"
BASE_COLUMNS = ["epoch", "phase", "lr", "seconds", "loss", "train_acc"]
DIVIDEMIX_COLUMNS = [
    "loss_x", "loss_u", "loss_reg", "lambda_u",
    "labelled_1", "unlabelled_1", "labelled_2", "unlabelled_2",
    "div_auroc_1", "div_precision_1", "div_recall_1",
    "div_auroc_2", "div_precision_2", "div_recall_2",
]


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        table: the per-sample table (``scores.csv``), most suspicious first.
        relabeled: ``relabeled.csv``.
        skipped: ``skipped.csv`` (``path``, ``reason``).
        history: ``history.csv``, one row per epoch.
        summary: ``summary.json`` as a dict.
        out: the output folder.
        pred_probs: with ``save_probs``, what ``pred_probs.npy`` holds (float32, rows in
            ``table`` order, columns in class order); else None.
    """

    table: pd.DataFrame
    relabeled: pd.DataFrame
    skipped: pd.DataFrame
    history: pd.DataFrame
    summary: dict[str, Any]
    out: Path
    pred_probs: np.ndarray | None = None


def validate(config: TrainConfig) -> None:
    """Reject impossible option values with one clear message."""
    dividemix = config.method == "dividemix"
    checks = [
        *shared_checks(config),
        (config.method in METHODS, f"--method must be one of {', '.join(METHODS)}"),
        (config.signal in SIGNALS, f"--signal must be one of {', '.join(SIGNALS)}"),
        (config.fusion in FUSIONS, f"--fusion must be one of {', '.join(FUSIONS)}"),
        (config.cut in CUTS, f"--cut must be one of {', '.join(CUTS)}"),
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.warmup_epochs >= (1 if dividemix else 0),
         "--warmup-epochs must be at least 1 for dividemix" if dividemix
         else "--warmup-epochs must not be negative"),
        (not dividemix or config.epochs > config.warmup_epochs,
         f"--epochs ({config.epochs}) must be larger than --warmup-epochs "
         f"({config.warmup_epochs}): dividemix needs at least one epoch after the warm-up"),
        (config.lr_drop_epoch is None or config.lr_drop_epoch >= 1,
         "--lr-drop-epoch must be at least 1"),
        (config.tau is None or 0.0 < config.tau < 1.0, "--tau must be between 0 and 1"),
        (config.lambda_u is None or config.lambda_u >= 0, "--lambda-u must not be negative"),
        (config.lambda_r >= 0, "--lambda-r must not be negative"),
        (config.temperature > 0, "--temperature must be positive"),
        (config.alpha > 0, "--alpha must be positive"),
        (config.augmentations >= 1, "--augmentations must be at least 1"),
        (config.rampup_epochs >= 0, "--rampup-epochs must not be negative"),
        (config.loss_history is None or config.loss_history >= 1,
         "--loss-history must be at least 1"),
        (not config.no_class or config.truth is not None,
         "--no-class names labels of a --truth file: give --truth"),
        *method_checks(config),
    ]
    for ok, message in checks:
        if not ok:
            raise NoisyCleanError(message)


def data_fingerprint(paths: list[str], labels: np.ndarray, classes: list[str]) -> str:
    """sha256 of the usable samples (paths, given labels, class names): a resumed run must
    see exactly the data the checkpoint was trained on."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(classes).encode())
    for path, label in zip(paths, np.asarray(labels).tolist(), strict=True):
        digest.update(f"\x1e{path}\x1f{label}".encode())
    return digest.hexdigest()


#: TrainConfig fields that name files: stored absolute in a checkpoint, so that a run
#: resumed from another folder finds them (``weights`` only where it is a file, not the
#: name of torchvision's weights).
PATH_FIELDS = ("labels", "val", "truth", "weights")


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its :data:`PATH_FIELDS` made absolute (what a checkpoint stores)."""
    changes: dict[str, Any] = {}
    for name in PATH_FIELDS:
        value = getattr(config, name)
        if value is None or (name == "weights" and not Path(value).expanduser().is_file()):
            continue
        path = Path(value).expanduser().absolute()
        changes[name] = str(path) if name == "weights" else path
    return replace(config, **changes)


def _same_setting(name: str, given: Any, saved: Any) -> bool:
    """Whether a resumed run's option agrees with the checkpoint's (paths compared
    absolute)."""
    if name in PATH_FIELDS and given is not None and saved is not None:
        given = Path(given).expanduser().absolute()
        saved = Path(saved).expanduser().absolute()
    return given == saved


def _same_folder(a: Path, b: Path) -> bool:
    """Whether two folder paths name the same folder (compared resolved)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def named_options(config: TrainConfig, explicit: Collection[str] | None) -> Collection[str]:
    """The settings a run was asked for: ``explicit`` (the options given on the command
    line) when known, else the fields whose value differs from the default."""
    if explicit is not None:
        return explicit
    defaults = TrainConfig()
    return {f.name for f in fields(TrainConfig)
            if getattr(config, f.name) != getattr(defaults, f.name)}


#: TrainConfig fields that name what a run is measured on, not trained on: given with
#: ``--resume`` they are used where the checkpoint has them too (:func:`resume_config`).
MEASURED_ON = ("val", "truth")


def resume_config(
    given: TrainConfig, saved: TrainConfig, explicit: Collection[str] | None = None
) -> tuple[TrainConfig, list[str]]:
    """The settings of a resumed run: the checkpoint's, except where and how it runs
    (:data:`~noisyclean.config.RESUME_OVERRIDABLE`), with ``out`` the resumed folder.
    ``labels`` and ``classes``, which say where the data is, come from the command line
    when given there, else from the checkpoint. So do ``val`` and ``truth`` where the
    checkpoint has them too (a folder or file moved since; they are measured on, never
    trained on); a run that had none does not gain one midway (its ``history.csv`` columns
    are fixed).

    Args:
        given: the settings of the resuming command.
        saved: the checkpoint's.
        explicit: the fields given on the command line (the CLI knows them); None: those
            whose value differs from the default.

    Returns:
        The merged settings and the options that were given with other values than the
        checkpoint's (and are ignored).

    Raises:
        NoisyCleanError: ``--out`` given as another folder than ``--resume``: a resumed run
            writes into the folder it resumes, and the outputs would not be where asked.
    """
    named = named_options(given, explicit)
    if "out" in named and given.resume is not None and not _same_folder(given.out, given.resume):
        raise NoisyCleanError(
            f"--out {given.out} and --resume {given.resume} name different folders: a resumed "
            f"run writes into the folder it resumes; leave out --out (or give --out "
            f"{given.resume})"
        )
    relocated = {name: getattr(given, name) for name in MEASURED_ON
                 if name in named and getattr(given, name) is not None
                 and getattr(saved, name) is not None}
    ignored = []
    for f in fields(TrainConfig):
        if f.name in RESUME_OVERRIDABLE or f.name in relocated or f.name == "out":
            continue
        if f.name in named and not _same_setting(f.name, getattr(given, f.name),
                                                 getattr(saved, f.name)):
            ignored.append(f"--{f.name.replace('_', '-')}")
    overrides = {k: getattr(given, k) for k in RESUME_OVERRIDABLE}
    for name in ("labels", "classes"):
        if overrides[name] is None:
            overrides[name] = getattr(saved, name)
    merged = replace(saved, out=Path(given.resume), **overrides, **relocated)
    return merged, ignored


def load_validation(
    config: TrainConfig, train: Dataset, progress: Progress
) -> tuple[DeviceImages, pd.DataFrame]:
    """Decode the ``--val`` folder at the training size, normalised with the training set's
    statistics, with labels mapped onto the training classes (by name: as written, else in
    NFC without surrounding spaces, when one training class has that form). With
    ``--classes``, only the class folders among them are read.

    Returns:
        The images, and the ``--val`` files that could not be used, as ``skipped.csv``
        lists them after the training set's: ``path`` under the ``--val`` folder as given
        (``val/cat/x.png``), ``reason`` starting ``--val:``.
    """
    assert config.val is not None
    index = {name: i for i, name in enumerate(train.classes)}
    # a name as written, else its NFC form (a folder copied from macOS is named in NFD)
    by_form = {form: index[name] for form, name in unique_nfc_forms(train.classes).items()}
    chosen = None
    try:
        # --classes: the validation images of those classes (a folder that is not there
        # is the load's to name)
        if config.classes is not None and Path(config.val).is_dir():
            folders, _ = class_folders(Path(config.val))
            chosen = [name for name in folders
                      if name in index or nfc(name.strip()) in by_form] or None
            if chosen is not None and len(chosen) < len(folders):
                progress.log(f"--val {config.val}: {len(folders) - len(chosen)} class "
                             "folder(s) not among --classes left out")
        val = load_configured(
            config,
            progress,
            root=config.val,
            labels_csv=None,
            classes=chosen,
            image_size=train.image_size,
            model=train.model,
            normalisation=(train.data.mean, train.data.std),
            validation=True,
        )
    except NoisyCleanError as error:
        raise NoisyCleanError(f"--val {config.val}: {error}") from None
    found = {name: index.get(name, by_form.get(nfc(name.strip()))) for name in val.classes}
    unknown = [name for name, i in found.items() if i is None]
    if unknown:
        raise NoisyCleanError(
            f"--val {config.val}: class(es) {', '.join(map(repr, unknown))} are not training "
            f"classes ({', '.join(map(repr, train.classes))})"
        )
    mapping = np.array([found[name] for name in val.classes], dtype=np.int64)
    val.data.labels = torch.as_tensor(mapping[val.labels], device=val.data.labels.device)
    progress.log(f"validation: {len(val.paths)} images from {config.val}")
    skipped = pd.DataFrame({
        "path": [(Path(config.val) / p).as_posix() for p in val.skipped["path"]],
        "reason": [f"--val: {reason}" for reason in val.skipped["reason"]],
    }, columns=["path", "reason"])
    return val.data, skipped


def label_is_correct(
    config: TrainConfig, train: Dataset, truth: pd.DataFrame,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Per usable sample, whether its given label agrees with the ``--truth`` CSV
    (``truth``, read once per run and written as ``scores.csv`` writes paths and labels:
    :func:`~noisyclean.outputs.evaluation.normalise_truth`).

    The truth may cover every training image or only a sample of them, as for ``evaluate``:
    the images without a truth row are unknown, and left out of the metrics that use it
    (:func:`division_metrics`, co-teaching's ``label_precision``). Truth rows that name no
    training image (a skipped one, say) are ignored.

    Args:
        config: the run's settings (``config.truth`` names the file in messages).
        train: the training data.
        truth: the normalised truth table.
        log: where one line is reported when the truth does not cover every training
            image or names other images (nothing when the two match exactly).

    Returns:
        ``(n,)`` float64 per usable sample: 1.0 where the given label is right, 0.0 where it
        is wrong, NaN where the truth has no row for the image.

    A truth label among ``config.no_class`` (``--no-class``: the image belongs to none of
    the classes) makes the given label wrong.

    Raises:
        NoisyCleanError: a training image's truth label that is neither a training class
            nor a ``--no-class`` label, a ``--no-class`` label that is a training class, or
            a truth file with no row for any training image.
    """
    # matched as evaluate matches them: paths and names without surrounding spaces, in NFC
    classes = normalise_label_list(train.classes)
    paths = normalise_paths(pd.Series(train.paths, dtype=object)).tolist()
    no_class = check_no_class(normalise_label_list(config.no_class or ()), classes)
    # only the rows of training images: a whole dataset's truth serves a --classes subset
    covered = truth[truth["path"].isin(set(paths))]
    unknown = sorted(set(covered["label"]) - set(classes) - set(no_class))
    if unknown:
        raise NoisyCleanError(
            f"--truth {config.truth}: labels {listing(unknown, FEW)} of training images are not "
            f"training classes ({listing(train.classes, 10)}); --no-class LABEL names a label "
            "that means none of the classes"
        )
    true_label = dict(zip(truth["path"], truth["label"], strict=True))
    correct = np.array(
        [float(classes[label] == true_label[path]) if path in true_label else math.nan
         for path, label in zip(paths, np.asarray(train.labels).tolist(), strict=True)],
        dtype=np.float64,
    )
    matched = int(np.isfinite(correct).sum())
    if matched == 0:
        raise NoisyCleanError(
            f"--truth {config.truth} has no row for any of the {len(paths)} training images: "
            f"its paths ({listing(truth['path'], FEW)}) must be written as scores.csv writes "
            f"them, relative to the dataset folder ({listing(train.paths, FEW)})"
        )
    unused = len(truth) - matched
    if log is not None and (matched < len(paths) or unused):
        log(f"truth: {matched} of {len(paths)} training images have a truth row"
            + (f"; {unused} truth row(s) name no training image (ignored)" if unused else ""))
    return correct


def division_metrics(division: Division, correct: np.ndarray) -> dict[str, float]:
    """AUROC of the clean probability for telling right labels from wrong ones, and the
    precision (right labels among the labelled set) and recall (labelled among the right
    labels) of the division, over the samples whose label is known.

    Args:
        division: one network's division of the training set.
        correct: ``(n,)`` per sample, as :func:`label_is_correct` returns it (1.0 right,
            0.0 wrong, NaN unknown: left out), or bool (every sample known).

    Returns:
        ``{"auroc", "precision", "recall"}``; each NaN where it is undefined on the known
        samples (AUROC: all right or all wrong; precision: none labelled; recall: none
        right).
    """
    correct = np.asarray(correct, dtype=np.float64)
    known = ~np.isnan(correct)
    right = correct[known] == 1.0
    labelled = np.zeros(len(correct), dtype=bool)
    labelled[division.labelled] = True
    labelled = labelled[known]
    clean_prob = np.asarray(division.clean_prob)[known]
    both = 0 < right.sum() < len(right)
    auroc = roc_auc_score(right, clean_prob) if both else math.nan
    precision = float(right[labelled].mean()) if labelled.any() else math.nan
    recall = float(right[labelled].sum() / right.sum()) if right.any() else math.nan
    return {"auroc": float(auroc), "precision": precision, "recall": recall}


def method_column(
    stats: dict[str, float], epoch_stats: dict[str, float], key: str
) -> float:
    """One epoch's value of a method's ``history.csv`` column ``key``: the loop's mean over
    the epoch's samples (``stats``), else the method's own ``epoch_stats``, else NaN. A
    metric that only some steps report comes with ``<key>_count`` (the samples of those
    steps, co-teaching's ``label_precision`` with a truth file for a sample of the images):
    its value is the mean over those steps, NaN when no step reported it."""
    counted = stats.get(f"{key}_count")
    if key in stats and counted is not None:
        return float(stats[key] / counted)
    return float(stats.get(key, epoch_stats.get(key, math.nan)))


def ensemble_accuracy(
    models: list[torch.nn.Module], data: DeviceImages, precision: Precision
) -> float:
    """Accuracy of the networks' averaged softmax predictions on ``data`` (eval mode)."""
    probs = np.mean([compute_signals(m, data, precision).probs for m in models], axis=0)
    return float((probs.argmax(1) == data.labels.cpu().numpy()).mean())


def _build_learners(
    config: TrainConfig, dataset: Dataset, n_networks: int, progress: Progress
) -> list[Learner]:
    learners = []
    for k in range(n_networks):
        _set_seed(config.seed + 1000 * k)
        model = build_model(dataset.model, len(dataset.classes), config.weights, config.width,
                            progress.warn, download_progress=not progress.quiet)
        model = model.to(dataset.device)
        if dataset.channels_last:
            model = model.to(memory_format=torch.channels_last)
        learners.append(
            make_learner(
                model,
                config.lr,
                config.momentum,
                config.weight_decay,
                total_steps=0,
                schedule="step",
                drop_epochs=(int(config.lr_drop_epoch or 0),),
                nesterov=False,
            )
        )
        if k and config.weights is not None and _same_weights(learners[0].model, model):
            # a weights file that fills the whole network (a noisyclean net1.pt, head and
            # all) makes the networks identical, and two identical networks choose the
            # same samples for each other all along (co-teaching) or start alike (DivideMix)
            head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
            _set_seed(config.seed + 1000 * k)
            head.reset_parameters()
            progress.log(f"network {k + 1} starts from --weights with a classifier head of "
                         "its own (the file fills the whole network, and two identical "
                         "networks would learn the same)")
    return learners


def execution_settings(device: torch.device, precision: Precision,
                       channels_last: bool) -> dict[str, Any]:
    """How this run's epochs execute, as a checkpoint records it: the device type, the
    precision, channels-last batches and torch's CPU threads (each changes the numbers a
    little, so a resumed run that changes one ends otherwise than an uninterrupted one)."""
    return {"device": device.type,
            "precision": "float32" if precision.dtype is None else str(precision.dtype)[6:],
            "channels_last": bool(channels_last), "threads": torch.get_num_threads()}


def other_execution_text(saved: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """A warning where a resumed run executes otherwise than its checkpoint's epochs did
    (:func:`execution_settings`; None: as they did, or a checkpoint that did not record
    it), with the options that would run it as before."""
    if not saved:
        return None
    changed, options = [], []
    if saved.get("device") != now["device"]:
        changed.append(f"device {now['device']}, not {saved.get('device')}")
        options.append(f"--device {saved.get('device')}")
    if saved.get("precision") != now["precision"]:
        changed.append(f"precision {now['precision']}, not {saved.get('precision')}")
        options.append("--no-amp" if saved.get("precision") == "float32" else "--amp")
    if saved.get("channels_last") != now["channels_last"]:
        changed.append("channels-last batches, not the default layout" if now["channels_last"]
                       else "the default layout, not channels-last batches")
        options.append("--channels-last" if saved.get("channels_last")
                       else "--no-channels-last")
    if saved.get("device") == now["device"] == "cpu" and saved.get("threads") != now["threads"]:
        changed.append(f"{now['threads']} CPU thread(s), not {saved.get('threads')}")
        options.append(f"--threads {saved.get('threads')}")
    if not changed:
        return None
    return (f"resuming otherwise than the checkpoint's epochs ran ({'; '.join(changed)}): the "
            f"run will end slightly otherwise than an uninterrupted one (to run as before, "
            f"give {' '.join(options)})")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two networks of one architecture hold the same tensors."""
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def resumed_normalisation(
    payload: dict[str, Any] | None, weights: str | None
) -> tuple[list[float], list[float]] | None:
    """The normalisation a resumed run's images take: the one its checkpoint recorded, so
    that a run started from a noisyclean run's ``--weights`` file keeps that run's even where
    the run is gone or rerun since. A checkpoint written before the normalisation was
    recorded gets the rule of its time: ImageNet's statistics with any ``--weights``, else
    the images' own (None, as for a fresh run without ``--weights``).

    Args:
        payload: the checkpoint (None: not resuming, the load's own rule applies).
        weights: the run's ``--weights``.
    """
    if payload is None:
        return None
    saved = payload["extra"].get("normalisation")
    if saved is not None:
        return list(saved["mean"]), list(saved["std"])
    return (list(IMAGENET_MEAN), list(IMAGENET_STD)) if weights is not None else None


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(on_cpu(model.state_dict()), buffer)  # readable without a GPU
    atomic_write_bytes(path, buffer.getvalue())


def train(
    config: TrainConfig, progress: Progress | None = None,
    explicit: Collection[str] | None = None,
) -> TrainResult:
    """Train with ``config.method`` (DivideMix, the CE baseline, co-teaching, ...),
    checkpointing every epoch, and write the outputs into ``config.out`` (``config.resume``
    when resuming).

    Args:
        config: every setting (see :class:`~noisyclean.config.TrainConfig`; numpy numbers
            are taken as Python ones; the object itself is not changed). torch's thread
            count, default dtype, grad mode and the global random states of torch and numpy
            are as before afterwards (:func:`~noisyclean.device.library_run`).
        progress: progress bars and log lines; default: quiet.
        explicit: the settings given on the command line (None: those that differ from
            the defaults). Those the method does not use are reported as ignored, and
            when resuming, those given with other values than the checkpoint's.

    Returns:
        A :class:`TrainResult`.

    Raises:
        NoisyCleanError: for unusable data or options, or a checkpoint that does not fit
            (one clear message).
    """
    # the thread count is how the run executes, never the checkpoint's: a resumed run takes
    # it from ``config`` too (RESUME_OVERRIDABLE)
    # before anything reads a setting, the thread count too; the caller's object unchanged
    config = checked_config(config, TrainConfig)
    progress = checked_progress(progress)
    with library_run(config.threads), removed_if_left_empty(config.out), ExitStack() as held:
        return _train(config, progress, held, explicit)


def _train(
    config: TrainConfig, progress: Progress | None, held: ExitStack,
    explicit: Collection[str] | None = None,
) -> TrainResult:
    """:func:`train` at the thread count already set; ``held`` takes the output folder's
    :func:`~noisyclean.outputs.write.run_lock` until the run ends."""
    progress = progress or Progress(quiet=True)
    timings: dict[str, float] = {}
    payload = None
    if config.resume is None:
        validate(config)
        config = absolute_paths(config)
        named = named_options(config, explicit)
        unused = unused_options(config.method, named)
        if unused:
            progress.warn(ignored_text(unused, f"--method {config.method}"))
        for warning in conditionally_unused(config, named):
            progress.warn(warning)
    else:  # the checkpoint's settings are validated once merged
        resume_dir = Path(config.resume)
        if not resume_dir.is_dir():
            raise NoisyCleanError(f"--resume {resume_dir}: no such folder")
        payload = load_checkpoint(resume_dir / CHECKPOINT_NAME)
        saved = TrainConfig.from_json(payload["extra"]["config"])
        config, ignored = resume_config(config, saved, explicit)
        for name in MEASURED_ON:
            if not _same_setting(name, getattr(config, name), getattr(saved, name)):
                progress.log(f"resuming: {option_name(name)} {getattr(config, name)} in place of "
                             f"the checkpoint's {getattr(saved, name)}")
            elif getattr(saved, name) is not None and not Path(getattr(saved, name)).exists():
                raise NoisyCleanError(
                    f"the checkpoint's {option_name(name)} {getattr(saved, name)} no longer "
                    f"exists: give {option_name(name)} with its new place (the run measures "
                    "on it every epoch)")
        if ignored:
            progress.warn(
                f"resuming: {', '.join(ignored)} ignored; the checkpoint's settings are used"
            )
        validate(config)
    option = "--out" if config.resume is None else "--resume"
    check_out_outside_data(config.out, config.data, config.labels, option)
    if config.val is not None:  # an ImageFolder too: the next run would read a class there
        check_out_outside_data(config.out, config.val, None, option)
    check_inputs_outside_out(config.out, {"--labels": config.labels, "--truth": config.truth,
                                          "--weights": config.weights})
    out = prepare_out_dir(config.out)
    held.enter_context(run_lock(out))  # before another run's checkpoint can be looked for
    if config.resume is None:
        if (out / CHECKPOINT_NAME).exists():
            raise NoisyCleanError(
                f"{out} already holds a training checkpoint: continue it with --resume {out}, "
                "or choose another --out"
            )
    # a complete run resumed writes its outputs again, the same: the files derived from
    # them (a filled-in review sheet among them) still describe them and are kept
    complete = payload is not None and int(payload["epochs_done"]) >= config.epochs
    if not complete:
        refuse_filled_review_sheet(out)

    dataset = load_configured(config, progress, normalisation=resumed_normalisation(
        payload, config.weights), weights_read=payload is None)
    timings.update(dataset.timings)
    samples, paths, labels, data = dataset.samples, dataset.paths, dataset.labels, dataset.data
    classes, device, precision = dataset.classes, dataset.device, dataset.precision
    fingerprint = data_fingerprint(paths, labels, classes)
    if payload is not None and payload["extra"]["fingerprint"] != fingerprint:
        raise NoisyCleanError(
            f"{config.data} does not hold the images and labels the checkpoint in {out} was "
            "trained on"
        )
    if (config.resume is None and config.lr_drop_epoch is not None
            and config.lr_drop_epoch >= config.epochs):
        progress.warn(f"--lr-drop-epoch {config.lr_drop_epoch} is not before the last of "
                      f"{epochs_text(config.epochs)}: the learning rate never drops")
    config = replace(
        config,
        image_size=dataset.image_size,
        model=dataset.model,
        lr_drop_epoch=config.lr_drop_epoch or max(1, config.epochs // 2),
    )
    dividemix = config.method == "dividemix"
    networks = n_networks(config.method)
    warmed = dividemix or config.method == "dynamic-bootstrap" or (
        config.method == "coteaching" and config.forget_rate is None)
    progress.log(
        f"{len(paths)} images, {len(classes)} classes, {dataset.image_size}x"
        f"{dataset.image_size} px"
        + ("" if config.resize == "crop" else f" ({config.resize})")
        + f", {dataset.model} x{networks}, {config.method} for "
        f"{epochs_text(config.epochs)}"
        + (f" ({config.warmup_epochs} warm-up)" if warmed else "")
        + f" on {device_text(device, precision.dtype)}"
    )
    if (slow := threads_warning(device)) is not None:
        progress.warn(slow)
    val, val_skipped = (load_validation(config, dataset, progress) if config.val
                        else (None, dataset.skipped.iloc[:0]))
    skipped = pd.concat([dataset.skipped, val_skipped], ignore_index=True)
    truth = normalise_truth(read_truth(config.truth), config.truth) if config.truth else None
    correct = (label_is_correct(config, dataset, truth, progress.log)
               if truth is not None else None)

    # resuming, the checkpoint holds every weight: the initial --weights file (or a
    # torchvision download) is not needed again, and may be gone
    learners = _build_learners(
        config if payload is None else replace(config, weights=None), dataset, networks,
        progress)
    _set_seed(config.seed)
    models = [learner.model for learner in learners]
    method: Any
    if dividemix:
        method = DivideMix(
            data,
            models,
            classes,
            precision,
            warmup_epochs=config.warmup_epochs,
            batch_size=config.batch_size,
            tau=config.tau,
            lambda_u=config.lambda_u,
            penalty=config.penalty,
            lambda_r=config.lambda_r,
            temperature=config.temperature,
            alpha=config.alpha,
            augmentations=config.augmentations,
            rampup_epochs=config.rampup_epochs,
            mixture=config.mixture,
            loss_history=config.loss_history,
            seed=config.seed,
            log=progress.log,
        )
    else:
        method = build_method(config, data, models, precision, correct, progress.log)

    history: list[dict[str, Any]] = []
    resumes: list[int] = []
    start = 0
    scaler = precision.grad_scaler()
    if payload is not None:
        restore_learners(learners, payload)
        restore_scaler(scaler, payload)
        method.load_state_dict(payload["method"])
        set_rng_state(payload["rng"])
        history = list(payload["history"])
        resumes = list(payload["extra"].get("resumes", []))
        start = int(payload["epochs_done"])
        resumes.append(start)
        progress.log(
            f"resuming {out} after epoch {start} of {config.epochs}"
            if not complete else f"{out} is complete: writing its outputs again"
        )
    # the run that wrote the --weights file, whose normalisation the images took
    weights_run = (str(dataset.weights_run.summary) if dataset.weights_run is not None
                   else None if payload is None else payload["extra"].get("weights_run"))
    execution = execution_settings(device, precision, dataset.channels_last)
    if payload is not None and not complete:
        said = other_execution_text(payload["extra"].get("execution"), execution)
        if said:
            progress.warn(said)
    extra = {"config": config.to_json(), "fingerprint": fingerprint, "resumes": resumes,
             "normalisation": {"mean": data.mean, "std": data.std}, "weights_run": weights_run,
             "execution": execution}

    def on_epoch_end(epoch: int, stats: dict[str, float]) -> None:
        if dividemix:
            phase = "warm-up" if epoch < config.warmup_epochs else "dividemix"
        else:
            phase = method.phase(epoch) if hasattr(method, "phase") else config.method
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "phase": phase,
            "lr": float(stats["lr"]),
            "seconds": float(stats["seconds"]),
            "loss": float(stats.get("loss", math.nan)),
            "train_acc": float(stats["acc"]) if "acc" in stats else math.nan,
        }
        if dividemix:
            assert isinstance(method, DivideMix)
            for key in ("loss_x", "loss_u", "loss_reg", "lambda_u"):
                row[key] = float(stats.get(key, math.nan))
            divisions = method.divisions if method.division_epoch == epoch else None
            for k in (1, 2):
                division = divisions[k - 1] if divisions else None
                row[f"labelled_{k}"] = len(division.labelled) if division else None
                row[f"unlabelled_{k}"] = len(division.unlabelled) if division else None
                scores = (division_metrics(division, correct)
                          if division is not None and correct is not None else {})
                for key in ("auroc", "precision", "recall"):
                    row[f"div_{key}_{k}"] = scores.get(key, math.nan)
        epoch_stats = getattr(method, "epoch_stats", {})
        for key in METHOD_COLUMNS.get(config.method, []):
            row[key] = method_column(stats, epoch_stats, key)
        if val is not None:
            row["val_acc"] = ensemble_accuracy(models, val, precision)
        # stop at the first epoch whose weights are not finite, before its checkpoint: the
        # epochs after it would only train NaN (and a resume of it diverge again)
        if not all(torch.isfinite(p).all() for model in models for p in model.parameters()):
            raise NoisyCleanError(f"training diverged in epoch {epoch + 1} (its weights are not "
                                  "finite); try a lower --lr")
        history.append(row)
        save_checkpoint(out / CHECKPOINT_NAME, epoch + 1, learners, method.state_dict(),
                        history, extra, scaler)
        write_csv(history_frame(history, config.method, val is not None), out / HISTORY_NAME)
        message = f"epoch {epoch + 1}/{config.epochs} {phase}: loss {row['loss']:.4f}"
        if dividemix and row.get("labelled_1") is not None:
            message += f", labelled {row['labelled_1']}/{row['labelled_2']}"
        if not math.isnan(row.get("div_auroc_1", math.nan)):
            message += f", division AUROC {row['div_auroc_1']:.3f}/{row['div_auroc_2']:.3f}"
        if "val_acc" in row:
            message += f", val acc {row['val_acc']:.2%}"
        progress.log(message)

    t0 = time.perf_counter()
    run_epochs(learners, method, range(start, config.epochs), precision, progress,
               on_epoch_end, config.method, scaler)
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    signals = [finite(compute_signals(model, data, precision, tta=config.tta), "training")
               for model in models]
    fit_inputs, order_inputs = network_scores(signals, labels, config.signal, config.fusion)
    scores = score_samples(
        paths,
        labels,
        classes,
        fit_inputs,
        signals,
        mixture=config.mixture,
        threshold=config.threshold,
        relabel_threshold=config.relabel_threshold,
        seed=config.seed,
        cut=effective_cut(config.cut, config.signal),
        flips=config.flip_ranking,
        order_inputs=order_inputs,
    )
    table, fits = scores.table, scores.fits
    relabeled = relabeled_table(table)
    timings["score"] = time.perf_counter() - t0

    frame = history_frame(history, config.method, val is not None)
    last = history[-1] if history else {}
    val_accs = [row["val_acc"] for row in history if "val_acc" in row]
    # the networks' files, named in the summary so that a --weights file beside it is
    # known for one of this run's (as_loaded.trained_run)
    networks_written = [f"net{k}.pt" for k in range(1, len(models) + 1)]
    summary: dict[str, Any] = {
        "noisyclean_version": __version__,
        "data": str(samples.root),
        # the --labels manifest wherever the review tools run (settings keep it as given)
        "labels_file": labels_file(config.labels),
        "method": config.method,
        "weights_files": networks_written,
        **table_summary(table, classes, samples.found,
                       len(dataset.skipped)),
        "estimated_wrong_labels": scores.estimate,
        "mixture": [fit.params for fit in fits],
        "cut": scores.cut,
        "training": {
            "final_train_loss": last.get("loss"),
            "final_train_acc": last.get("train_acc"),
            "final_val_acc": val_accs[-1] if val_accs else None,
            "best_val_acc": max(val_accs) if val_accs else None,
            "epochs": history,
            "resumed_after_epochs": resumes,
            "weights_run": weights_run,
        },
        "settings": config.to_json(),
        **run_environment(dataset),
        "timings_s": timings,
    }
    if not isinstance(method, DivideMix) and hasattr(method, "summary"):
        summary[config.method.replace("-", "_")] = method.summary()
    if isinstance(method, DivideMix):
        summary["dividemix"] = {
            "chosen": method.settings,
            "reasons": method.reasons,
            "estimated_noise_rate_after_warmup": method.estimated_noise_rate,
            "events": method.events,
        }
    if truth is not None:
        summary["truth_metrics"] = detection_metrics(
            normalise_table(table), truth, normalise_label_list(classes),
            normalise_label_list(config.no_class or ()))

    # a network trained on these labels is capped by their noise, as a scan's; DivideMix's
    # epochs record no training accuracy, so its warm-up's last says whether it fitted them
    reach = relabel_reach_warning(
        summary["estimated_wrong_labels"]["rate"], config.relabel_threshold,
        summary["counts"]["relabel"], summary["counts"]["noisy"], last_train_acc(history))
    if reach:
        progress.warn(reach)
    underfit = underfit_warning(scores.probs, labels, classes,
                                "the trained network's" if len(models) == 1
                                else "the trained networks'")
    if underfit:
        progress.warn(underfit)

    t0 = time.perf_counter()
    kept = (PROBS_NAME,) if config.save_probs else ()
    stale = [] if complete else remove_stale_outputs(
        out, keep=(HISTORY_NAME, *networks_written, *kept), warn=progress.warn)
    if stale:
        progress.log(stale_outputs_text(stale, out))
    unlink_if_present(out / "summary.json")  # written last, as a scan's
    write_csv(table, out / "scores.csv")
    write_csv(relabeled, out / "relabeled.csv")
    write_csv(skipped, out / "skipped.csv")
    write_csv(frame, out / HISTORY_NAME)
    pred_probs = probs_in_table_order(scores.probs, paths, table) if config.save_probs else None
    if pred_probs is not None:
        write_pred_probs(out / PROBS_NAME, pred_probs)
    for model, name in zip(models, networks_written, strict=True):
        _save_weights(model, out / name)
    timings["write"] = time.perf_counter() - t0
    write_json(summary, out / "summary.json")
    return TrainResult(table, relabeled, skipped, frame, summary, out, pred_probs)


def last_train_acc(history: list[dict[str, Any]]) -> float | None:
    """The training accuracy of the last epoch in ``history`` that records one (DivideMix's
    epochs after its warm-up do not), or None where none does."""
    for row in reversed(history):
        acc = row.get("train_acc")
        if acc is not None and not math.isnan(acc):
            return float(acc)
    return None


def history_frame(
    history: list[dict[str, Any]], method: str, with_val: bool
) -> pd.DataFrame:
    """``history.csv`` as a DataFrame with a fixed column order: the base columns, the
    method's own (:data:`DIVIDEMIX_COLUMNS`,
    :data:`~noisyclean.train.methods.registry.METHOD_COLUMNS`), then ``val_acc``."""
    own = DIVIDEMIX_COLUMNS if method == "dividemix" else METHOD_COLUMNS.get(method, [])
    columns = BASE_COLUMNS + own + (
        ["val_acc"] if with_val else []
    )
    frame = pd.DataFrame(history).reindex(columns=columns)
    for column in ("labelled_1", "unlabelled_1", "labelled_2", "unlabelled_2"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return frame
