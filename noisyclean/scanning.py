"""``scan``: image folder -> decode once -> warm-up -> per-sample losses -> two-component
mixture -> per-sample table (clean probability, suggested label, action) and its views.

The method follows DivideMix (Li et al. 2020, the co-divide step) and Arazo et al. 2019
(the Beta mixture on per-sample losses).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from . import __version__
from .as_loaded import (
    agreement_text,
    as_loaded_checks,
    as_loaded_ignored,
    check_run_classes,
    refuse_partial_weights,
    scores_as_loaded,
)
from .aum import AUM_RUNS
from .confident_joint import (
    BACKGROUND_SHARE,
    estimate_wrong_labels,
    flipped_classes,
    noise_rate,
    structured_part,
    transition_matrix,
    with_background,
)
from .config import (
    CORRECTIONS,
    LATE_GCE_MIN_RATE,
    LATE_GCE_Q,
    LATE_LOSSES,
    RESIZED_BATCHES,
    ScanConfig,
    changed_options,
    checked_config,
    ignored_text,
    shared_checks,
)
from .cut import CUTS, effective_cut
from .data.batches import DeviceImages
from .data.load import load_configured
from .device import device_text, library_run, threads_warning
from .environment import run_environment
from .errors import NoisyCleanError, count_text
from .folds import check_fold_sizes
from .models import GroupedSmallCNN, build_model, check_input_size
from .outputs.table import relabeled_table
from .outputs.write import (
    PROBS_NAME,
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
from .progress import Progress, checked_progress
from .scan_extras import extra_scores, uses_extra_scores
from .scoring import score_samples, table_summary
from .signals import (
    FUSIONS,
    SCAN_SIGNALS,
    ScoreHistory,
    Signals,
    check_finite,
    compute_signals,
    finite,
)
from .train.checkpoint import CHECKPOINT_NAME
from .train.loop import Learner, Precision, make_learner, run_epochs
from .train.methods.warmup import Warmup, mid_res_side, penalty_confidence_cap
from .underfit import underfit_warning


@dataclass
class ScanResult:
    """What a scan produced.

    Attributes:
        table: the per-sample table (``scores.csv``), most suspicious first.
        relabeled: ``relabeled.csv``.
        skipped: ``skipped.csv`` (``path``, ``reason``).
        summary: ``summary.json`` as a dict.
        out: the output folder, or None when nothing was written.
        pred_probs: with ``save_probs``, the predicted probabilities that
            ``pred_probs.npy`` holds (float32, rows in ``table`` order, columns in class
            order), written or not; else None.
    """

    table: pd.DataFrame
    relabeled: pd.DataFrame
    skipped: pd.DataFrame
    summary: dict[str, Any]
    out: Path | None
    pred_probs: np.ndarray | None = None


def validate(config: ScanConfig) -> None:
    """Reject impossible option values with one clear message."""
    checks = [
        *shared_checks(config),
        (config.cut in CUTS, f"--cut must be one of {', '.join(CUTS)}"),
        (config.signal in SCAN_SIGNALS, f"--signal must be one of {', '.join(SCAN_SIGNALS)}"),
        (config.fusion in FUSIONS, f"--fusion must be one of {', '.join(FUSIONS)}"),
        (config.networks in (1, 2), "--networks must be 1 or 2"),
        (config.epochs is None or config.epochs >= 0,
         "--epochs must be 0 (score with --weights as loaded) or more"),
        (config.low_res_epochs is None or config.low_res_epochs >= 0,
         "--low-res-epochs must be 0 or more"),
        (config.mid_res_epochs is None or config.mid_res_epochs >= 0,
         "--mid-res-epochs must be 0 or more"),
        (config.loss_history >= 1, "--loss-history must be at least 1"),
        (config.folds >= 1, "--folds must be at least 1 (1: in-sample losses)"),
        (config.folds == 1 or config.signal != "aum",
         "--folds and --signal aum exclude each other (AUM is measured while training)"),
        (config.correction in CORRECTIONS,
         f"--correction must be one of {', '.join(CORRECTIONS)}"),
        (config.late_loss in LATE_LOSSES,
         f"--late-loss must be one of {', '.join(LATE_LOSSES)}"),
        (config.resized_batches in RESIZED_BATCHES,
         f"--resized-batches must be one of {', '.join(RESIZED_BATCHES)}"),
        (config.folds == 1 or config.loss_history == 1,
         "--folds uses each fold's final out-of-sample predictions: --loss-history must be 1"),
        *as_loaded_checks(config),
    ]
    for ok, message in checks:
        if not ok:
            raise NoisyCleanError(message)


#: From this many images on, the warm-up's automatic budget is :data:`FULL_BUDGET` epochs;
#: below, it shrinks with the square root of the count (:func:`auto_epochs`).
SMALL_DATA_IMAGES = 5000
#: The automatic budget at CIFAR scale, in full-resolution epochs.
FULL_BUDGET = 15
#: The smallest automatic budget (4 full-resolution epochs after progressive resizing).
MIN_BUDGET = 6


def auto_epochs(n_samples: int) -> int:
    """The warm-up's training budget, in full-resolution epochs: 15 from 5,000 images on;
    below, ``15 * sqrt(n / 5000)`` rounded, at least 6 (500 images: 6, 1,000: 7, 2,000: 9,
    3,000: 12). Without progressive resizing it is the default ``--epochs``; with it,
    :func:`progressive_schedule` spends the same budget (4, 5, 6, 8 epochs at full
    resolution for those sizes).

    A small dataset's network learns its wrong labels by heart in fewer epochs, and then
    scores them as right: the earlier rule, more passes for small datasets (about 45,000
    samples seen, up to 25 epochs), flagged 9 to 608 images where 92 to 1,000 labels were
    wrong on 500 to 2,000 CIFAR-10 images (F1 0.07-0.60). This one, written down before it
    was run on 20 fresh folders (500 to 4,000 images; symmetric 20% and 50%, asymmetric
    40%, CIFAR-10N worst), raised the mean F1 from 0.449 to 0.621 (from 0.115 to 0.500 at
    500 images; 0.722 and 0.718 at 4,000), no folder losing more than 0.016
    (``benchmarks/RESULTS.md``, "Fewer epochs for small datasets")."""
    n = max(int(n_samples), 1)
    if n >= SMALL_DATA_IMAGES:
        return FULL_BUDGET
    return max(MIN_BUDGET, math.floor(FULL_BUDGET * math.sqrt(n / SMALL_DATA_IMAGES) + 0.5))


#: Progressive resizing: half-resolution epochs per full-resolution epoch of the warm-up
#: (6 before 10 at the default budget).
LOW_RES_SHARE = 0.6
#: What a half-resolution epoch costs, in full-resolution epochs (small-cnn, 10,000 images
#: at 32 px, 2 AMD EPYC cores, float32: 2.8-3.1 s against 9.8-10.3 s; counted high).
LOW_RES_COST = 1 / 3
#: Three-quarter-resolution epochs (24 px for 32 px images) per full-resolution epoch, in
#: the automatic schedule: 6 + 5 + 10 at the default budget, which replaced 6 + 13 after
#: a rule written beforehand held on five fresh folders (``benchmarks/RESULTS.md``,
#: "Three-quarter-resolution epochs").
MID_RES_SHARE = 0.5
#: What a three-quarter-resolution epoch costs, in full-resolution epochs (same machine:
#: 5.9-6.1 s against 9.8-10.3 s).
MID_RES_COST = 0.6
#: The smallest image side the automatic schedule shrinks (16 px after pooling).
LOW_RES_MIN_SIZE = 32


#: A warm-up expected to take this long (seconds, at its first epoch's pace) is announced
#: after that epoch; on the CPU one of :data:`SLOW_WARM_UP_S` or more gets a warning with
#: the ways to shorten it.
LONG_WARM_UP_S = 600.0
SLOW_WARM_UP_S = 1800.0


def warm_up_estimate(first_seconds: float, low: int, mid: int, epochs: int) -> float:
    """Seconds the ``epochs`` epochs of a warm-up (``low`` at half resolution first, then
    ``mid`` at three quarters, then full resolution) take in all, at the pace of the first
    one, which took ``first_seconds``: epochs counted at :data:`LOW_RES_COST` and
    :data:`MID_RES_COST` of a full-resolution one, as the schedule counts them."""
    costs = [LOW_RES_COST] * low + [MID_RES_COST] * mid + [1.0] * max(0, epochs - low - mid)
    return first_seconds / costs[0] * sum(costs) if costs else 0.0


def _minutes_text(seconds: float) -> str:
    """``25 min`` or ``3.2 h``."""
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def tell_of_long_warm_up(first_seconds: float, low: int, mid: int, epochs: int,
                         device: torch.device, progress: Progress) -> None:
    """After a warm-up's first epoch: a log line where the whole warm-up will take
    :data:`LONG_WARM_UP_S` or more (:func:`warm_up_estimate`), a warning with what
    shortens it where on the CPU it will take :data:`SLOW_WARM_UP_S` or more."""
    expected = warm_up_estimate(first_seconds, low, mid, epochs)
    if epochs < 2 or expected < LONG_WARM_UP_S:
        return
    text = (f"at its first epoch's pace the warm-up's {epochs} epochs take about "
            f"{_minutes_text(expected)}")
    if device.type == "cpu" and expected >= SLOW_WARM_UP_S:
        progress.warn(f"{text} on the CPU; a GPU, a smaller --image-size or fewer --epochs "
                      "would shorten it")
    else:
        progress.log(text)


class Schedule(NamedTuple):
    """The warm-up's epochs by resolution: ``low_res`` at half the side first, then
    ``mid_res`` at three quarters of it, then ``epochs`` at full resolution."""

    epochs: int
    low_res: int = 0
    mid_res: int = 0

    @property
    def total(self) -> int:
        """Every epoch of the warm-up."""
        return self.epochs + self.low_res + self.mid_res


def low_res_epochs_for(epochs: int) -> int:
    """Default ``--low-res-epochs`` for ``epochs`` full-resolution epochs:
    :data:`LOW_RES_SHARE` of them, rounded (6 before 10)."""
    return int(round(LOW_RES_SHARE * epochs))


def mid_res_epochs_for(epochs: int) -> int:
    """Default ``--mid-res-epochs`` for ``epochs`` full-resolution epochs:
    :data:`MID_RES_SHARE` of them, rounded (5 before 10)."""
    return int(round(MID_RES_SHARE * epochs))


def progressive_schedule(budget: int) -> Schedule:
    """Split a budget of ``budget`` full-resolution epochs into full-resolution epochs and
    the resized epochs before them, costing about the same time (15 -> 6 at half
    resolution, 5 at three quarters, then 10 at full: 21 epochs in the time of 15)."""
    cost = 1 + LOW_RES_SHARE * LOW_RES_COST + MID_RES_SHARE * MID_RES_COST
    epochs = max(1, int(round(budget / cost)))
    return Schedule(epochs, low_res_epochs_for(epochs), mid_res_epochs_for(epochs))


def resolve_schedule(config: ScanConfig, n_samples: int, image_size: int, model: str,
                     budget: int | None = None) -> Schedule:
    """The warm-up's :class:`Schedule`. Progressive resizing is automatic for the small CNN
    at 32 px and more, trained by the scan itself (not ``--signal aum``): there the
    automatic epochs are :func:`progressive_schedule` of the budget (unless
    ``--low-res-epochs`` is given: then the whole budget at full resolution), and explicit
    ``--epochs`` get :func:`low_res_epochs_for` and :func:`mid_res_epochs_for` them.
    Explicit ``--low-res-epochs`` and ``--mid-res-epochs`` replace the automatic ones
    (``--low-res-epochs`` alone means no three-quarter-resolution epochs; the default
    budget of 15 gives ``--epochs 10 --low-res-epochs 6 --mid-res-epochs 5``). Elsewhere
    the epochs are the budget, and the resized epochs the ones given (0 if not).
    ``budget``: full-resolution epochs to spend when ``config.epochs`` is not set (default
    :func:`auto_epochs`; ``benchmarks/detect.py --epochs`` gives every method one).

    Raises:
        NoisyCleanError: explicit resized epochs with ``--signal aum`` or with images under
            16 px.
    """
    low, mid = config.low_res_epochs, config.mid_res_epochs
    for value, option in ((low, "--low-res-epochs"), (mid, "--mid-res-epochs")):
        if not value:
            continue
        if config.signal == "aum":
            raise NoisyCleanError(f"{option} is not supported with --signal aum "
                                  "(it trains its own networks at full resolution)")
        if image_size < LOW_RES_MIN_SIZE // 2:
            raise NoisyCleanError(f"{option} needs images of at least "
                                  f"{LOW_RES_MIN_SIZE // 2} px (they are {image_size} px)")
    budget = budget or auto_epochs(n_samples)
    # the automatic split: only where nothing sets the half-resolution epochs
    if (low is None and config.signal != "aum" and model == "small-cnn"
            and image_size >= LOW_RES_MIN_SIZE):
        epochs = config.epochs
        auto = (Schedule(epochs, low_res_epochs_for(epochs), mid_res_epochs_for(epochs))
                if epochs is not None else progressive_schedule(budget))
    else:
        auto = Schedule(budget if config.epochs is None else config.epochs)  # 0: --epochs 0
    return Schedule(auto.epochs, auto.low_res if low is None else low,
                    auto.mid_res if mid is None else mid)


def epochs_text(n: int) -> str:
    """``1 epoch``, ``2 epochs``."""
    return count_text(n, "epoch")


def schedule_text(schedule: Schedule, size: int) -> str:
    """``6 epochs at 16 px, 5 at 24 px, then 10 at 32 px`` (progressive resizing) or
    ``15 epochs`` (the scan's log line and summary table; ``1 epoch`` for one)."""
    resized: list[str] = []
    for n, side in ((schedule.low_res, size // 2), (schedule.mid_res, mid_res_side(size))):
        if n:
            resized.append(f"{epochs_text(n)} at {side} px" if not resized
                           else f"{n} at {side} px")
    if not resized:
        return epochs_text(schedule.epochs)
    return ", ".join(resized) + f", then {schedule.epochs} at {size} px"


#: settings ``--signal aum`` does not use: it trains on cross-entropy at full resolution and
#: flags by its own margin threshold, with no mixture, cut, fusion or loss history.
AUM_IGNORED = ("correction", "late_loss", "resized_batches", "fusion", "loss_history",
               "mixture", "cut", "flip_ranking")


def aum_ignored(config: ScanConfig, explicit: Collection[str] | None = None) -> list[str]:
    """The options of :data:`AUM_IGNORED` that were asked for (given on the command line,
    ``explicit``; else set to other than their defaults), as the command line writes them
    (``--mixture``, ``--no-flip-ranking``)."""
    return changed_options(config, AUM_IGNORED, explicit)


def check_resized_sides(schedule: Schedule, size: int, model: str, num_classes: int) -> None:
    """:func:`~noisyclean.models.check_input_size` at the side of each kind of resized epoch
    the schedule has (a torchvision model can run at the full side and not at half of it).

    Raises:
        NoisyCleanError: the model cannot run at one of those sides.
    """
    for epochs, side, option in ((schedule.low_res, size // 2, "--low-res-epochs"),
                                 (schedule.mid_res, mid_res_side(size), "--mid-res-epochs")):
        if epochs:
            check_input_size(model, num_classes, side, option)


def warn_of_settings(config: ScanConfig, num_classes: int, progress: Progress,
                     explicit: Collection[str] | None = None) -> None:
    """Warn of settings that will not work as a user may expect: options ``--signal aum``
    ignores (:func:`aum_ignored`; ``explicit``: the options given on the command line),
    and ``--penalty`` with a ``--relabel-threshold`` above the confidence the penalty lets
    the network reach (:func:`penalty_confidence_cap`)."""
    ignored = aum_ignored(config, explicit) if config.signal == "aum" else []
    if ignored:
        progress.warn(ignored_text(ignored, "--signal aum"))
    cap = penalty_confidence_cap(num_classes) if config.penalty else 1.0
    if cap < config.relabel_threshold:
        progress.warn(
            f"--penalty keeps the network's confidence low (on an image it fits perfectly "
            f"it settles at about {cap:.2f} with {num_classes} classes), under "
            f"--relabel-threshold {config.relabel_threshold:g}: most flagged images will be "
            "marked review rather than relabel; a lower --relabel-threshold gives more "
            "suggestions")


def relabel_reach_warning(estimated_rate: float, relabel_threshold: float, relabels: int,
                          flagged: int, train_acc: float | None = None) -> str | None:
    """The warning for a scan (or a ``train`` run) whose labels are so often wrong that its
    network, trained on them, is rarely as sure of a class as ``--relabel-threshold`` asks:
    a network fitting labels wrong at rate ``r`` settles at about ``1 - r`` on the class of
    an image it fits (the share of its labels that name that class), so where ``1 - r`` (to
    two decimals) is under the threshold nearly every flag is ``review``. None where it is
    not, where nothing was flagged, where a quarter of the flags or more are ``relabel``
    anyway, or where the network's last training epoch agreed with more than ``1 - r + 0.1``
    of the given labels (``train_acc``): then the estimate does not describe labels it
    fitted (a warm-up too short spreads its probabilities, and the confident joint counts
    that as wrong labels).

    On saved default scans of 10,000 CIFAR-10 images with 50% symmetric noise (estimate
    0.58-0.60), 40 and 59 of about 5,800 flags were ``relabel``, though the prediction was
    the true class for 0.81-0.87 of the flags at a probability of 0.4-0.5
    (``benchmarks/RESULTS.md``, "Relabel decisions at high noise"). ``train`` at 50%
    symmetric noise, 20 epochs: 34 of 5,866 flags with ``--method standard``, 475 of 5,321
    with ``dividemix``; 2,601 of 5,706 with ``gce``, whose loss does not fit the wrong labels
    (no warning).

    Args:
        estimated_rate: the confident joint's estimated share of wrong labels.
        relabel_threshold: ``--relabel-threshold``.
        relabels: rows marked ``relabel``.
        flagged: rows flagged noisy.
        train_acc: the last training epoch's agreement with the given labels, if known
            (for DivideMix, whose epochs after the warm-up record none, its warm-up's last).
    """
    settles = 1.0 - estimated_rate
    if (flagged == 0 or 4 * relabels >= flagged or round(settles, 2) >= relabel_threshold
            or (train_acc is not None and train_acc > settles + 0.1)):
        return None
    return (f"the labels are estimated {estimated_rate:.0%} wrong: a network trained on them "
            f"settles at about {settles:.2f} on the class of an image it fits, under "
            f"--relabel-threshold {relabel_threshold:g}, so only {relabels:,} of the "
            f"{flagged:,} flagged images are relabel and the others review (their predicted "
            "column holds the network's guess); a lower --relabel-threshold gives more "
            "suggestions, less sure ones")


def refuse_training_checkpoint(out: Path) -> None:
    """Refuse to scan into a folder that holds a ``train`` run's checkpoint: the scan would
    replace that run's outputs and remove its networks, and the checkpoint would no longer
    match the folder's results (as ``train`` refuses a fresh run into such a folder).

    Raises:
        NoisyCleanError: ``out`` holds a ``checkpoint.pt``.
    """
    checkpoint = Path(out) / CHECKPOINT_NAME
    if checkpoint.exists():
        raise NoisyCleanError(
            f"{out} already holds a training checkpoint: a scan there would replace that "
            f"training run's outputs; choose another --out, or delete {checkpoint} first"
        )


def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def correction_start(epochs: int, low_res_epochs: int = 0) -> int | None:
    """The epoch (0-based) from which ``--correction forward`` trains with the transition
    matrix: after half the epochs (8 of 15, 10 of 6 + 13, 11 of 6 + 5 + 10), rounded up,
    and after at least one epoch above half resolution (whose predictions estimate the
    matrix; with three-quarter-resolution epochs it may be one of them); None for fewer
    than 2 epochs or no room left. ``epochs`` counts every epoch, ``low_res_epochs`` of
    them first (at half resolution). Half the epochs was measured on CIFAR-10 noise against
    11 of 15: about as good on class flips and human labels, less over-flagging on
    Fashion-MNIST with 20% symmetric noise (``benchmarks/RESULTS.md``)."""
    if epochs < 2:
        return None
    start = max(min((epochs + 1) // 2, epochs - 1), low_res_epochs + 1)
    return start if start < epochs else None


@dataclass
class WarmupResult:
    """What :func:`warm_up` trained.

    Attributes:
        learners: one per network (trained grouped: copies of the networks, with the
            grouped network's optimiser).
        histories: per network, its recorded noise scores.
        log: the per-epoch log.
        transitions: per network, the transition matrix its forward correction trained
            with (``--correction forward`` or ``forward+background``; the identity means it
            went on with plain cross-entropy), or None.
        flip_counts: per network, how many classes that matrix's systematic flips
            (:func:`~noisyclean.confident_joint.structured_part`) flip, or None.
        late_losses: per network, the loss of its second half (``"gce"`` or ``"ce"``), or
            None when the warm-up had no second half to switch.
        late_rates: per network, the noise rate that chose it (:func:`late_loss_for`).
    """

    learners: list[Learner]
    histories: list[ScoreHistory]
    log: list[dict[str, float]]
    transitions: list[np.ndarray] | None = None
    flip_counts: list[int] | None = None
    late_losses: list[str] | None = None
    late_rates: list[float] | None = None


def late_loss_for(setting: str, rate: float) -> str:
    """The loss of a network's second half for ``--late-loss setting``, given the
    confident joint's estimate ``rate`` of wrong labels at that point: ``"gce"`` for
    ``gce``, and for ``auto`` when ``rate`` reaches
    :data:`~noisyclean.config.LATE_GCE_MIN_RATE`; ``"ce"`` otherwise.

    Measured on 10,000 CIFAR-10 images (``benchmarks/RESULTS.md``), GCE in the second half
    raised the scan's F1 on CIFAR-10N worst (41% real annotator errors) by 0.004 on the mean
    of five seeds, left 50% symmetric noise about level, lowered 20% symmetric noise and,
    by 0.08, 20% class flips (both estimated below 0.5), and lowered a fresh folder with
    40% symmetric noise (estimated 0.66) by 0.014; so ``auto`` is not the default."""
    if setting not in LATE_LOSSES:
        raise ValueError(f"late loss must be one of {', '.join(LATE_LOSSES)}")
    if setting == "auto":
        return "gce" if rate >= LATE_GCE_MIN_RATE else "ce"
    return setting


def trains_grouped(config: ScanConfig) -> bool:
    """Whether the warm-up trains its networks as one
    :class:`~noisyclean.models.GroupedSmallCNN`: two or more small CNNs (the same
    networks, batches and arithmetic as separate ones, in one pass per step)."""
    return config.networks > 1 and (config.model or "small-cnn") == "small-cnn"


def warm_up(
    data: DeviceImages,
    num_classes: int,
    config: ScanConfig,
    precision: Precision,
    progress: Progress,
    indices: torch.Tensor | None = None,
) -> WarmupResult:
    """Train ``config.networks`` networks with cross-entropy (plus the confidence penalty
    with ``config.penalty``) and record each one's noise scores (``config.signal``) at the
    end of each of the last ``config.loss_history`` epochs but the final one; the caller
    adds the final epoch's scores from its own scoring pass. With ``indices``, train on
    those samples only (a fold of ``--folds``). With ``config.low_res_epochs``, that many
    epochs at half resolution come first (progressive resizing), then
    ``config.mid_res_epochs`` at three quarters of it, then ``config.epochs`` at full
    resolution, one one-cycle schedule over all of them. Two or more small CNNs
    train as one :class:`~noisyclean.models.GroupedSmallCNN` (:func:`trains_grouped`):
    the same networks, initialisations and batches, one pass per step; the result's
    learners hold copies of them (scored one by one: on 2 CPU cores one grouped evaluation
    pass took longer than two separate ones, 10.9 s against 10.0 s at width 24).

    With ``config.correction == "forward"``, each network's softmax on its own training
    batches during the epoch before :func:`correction_start` (recorded as it trains, so the
    estimate costs no scoring pass) gives a transition matrix (the
    :func:`~noisyclean.confident_joint.structured_part` of the
    :func:`~noisyclean.confident_joint.transition_matrix` of the samples it trains on:
    its systematic flips), and its remaining epochs minimise the forward-corrected
    cross-entropy, so that its softmax, which the scan then scores, estimates the true label
    where labels were flipped systematically rather than following the given one. With
    ``"forward+background"`` the matrix also gets half of each row's spread-out part
    (:func:`~noisyclean.confident_joint.with_background`), so the network is pulled less
    towards labels wrong at random too.

    From the same epoch, ``config.late_loss`` chooses each network's loss
    (:func:`late_loss_for`): the generalized cross-entropy (of the corrected softmax, when
    corrected) for ``gce``, or for ``auto`` when the calibrated confident joint on that same
    recorded softmax estimates at least :data:`~noisyclean.config.LATE_GCE_MIN_RATE` wrong
    labels; the cross-entropy otherwise.
    """
    low, mid = int(config.low_res_epochs or 0), int(config.mid_res_epochs or 0)
    full = config.epochs if config.epochs is not None else auto_epochs(len(data))
    epochs = low + mid + int(full)  # 0 (--epochs 0): the networks as built from --weights
    correct = config.correction != "none"
    background = config.correction == "forward+background"
    # the second half, where the correction and the late loss start
    start = correction_start(epochs, low) if correct or config.late_loss != "ce" else None
    grouped = trains_grouped(config)
    method = Warmup(
        data,
        n_learners=config.networks,
        batch_size=config.batch_size,
        seed=config.seed,
        penalty=config.penalty,
        augment=config.augment,
        indices=indices,
        low_res_epochs=low,
        mid_res_epochs=mid,
        grouped=grouped,
        resized_batches=config.resized_batches,
    )
    steps = method.total_steps(epochs)
    models: list[torch.nn.Module] = []
    for k in range(config.networks):
        _set_seed(config.seed + 1000 * k)
        model = build_model(config.model or "small-cnn", num_classes, config.weights, config.width,
                            refuse_partial_weights if epochs == 0 else progress.warn,
                            download_progress=not progress.quiet)
        models.append(model.to(data.device))
    if grouped:  # the same networks, initialised as above, in one grouped network
        models = [GroupedSmallCNN.from_networks(models)]
    if data.channels_last:
        models = [model.to(memory_format=torch.channels_last) for model in models]
    learners = [make_learner(model, config.lr, config.momentum, config.weight_decay, steps)
                for model in models]
    if method.scales_lr():  # --resized-batches pixels-lr
        for learner in learners:
            learner.lr_scale = method.lr_factor_at

    def networks() -> list[Learner]:
        """One learner per network (grouped: copies of the groups, sharing the optimiser)."""
        if not grouped:
            return learners
        return [replace(learners[0], model=net) for net in learners[0].model.networks()]

    histories = [ScoreHistory(config.loss_history) for _ in range(config.networks)]

    labels = data.labels.cpu().numpy()
    estimated: list[np.ndarray] = []
    flip_counts: list[int] = []
    rates: list[float] = []
    late_losses: list[str] = []

    if start is not None:
        # the estimates read the softmax of the training passes of the epoch before the
        # second half starts: no scoring pass of their own
        method.record_predictions(start - 1, num_classes)

    def end_of_epoch(epoch: int, stats: dict[str, float]) -> None:
        if epoch == 0 and indices is None:  # (not once per fold of --folds)
            tell_of_long_warm_up(stats["seconds"], low, mid, epochs, data.device, progress)
        if epochs - config.loss_history <= epoch < epochs - 1:
            for learner, history in zip(networks(), histories, strict=True):
                probs = finite(compute_signals(learner.model, data, precision,
                                               tta=config.tta)).probs
                history.add(probs, labels, config.signal, config.fusion)
        if start is None or epoch != start - 1:
            return
        for k in range(config.networks):
            # seen: the samples it trained on that epoch (only those of ``indices``)
            probs, seen = method.recorded_predictions(k)
            check_finite(probs[seen])  # a diverged warm-up, before an estimate refuses it
            if correct:
                full = transition_matrix(probs[seen], labels[seen])
                flips = structured_part(full)
                transition = with_background(flips, full) if background else flips
                estimated.append(transition)
                flip_counts.append(flipped_classes(flips))
                method.correct_with(k, transition)
            if config.late_loss != "ce":
                rates.append(noise_rate(probs[seen], labels[seen]))
                late_losses.append(late_loss_for(config.late_loss, rates[-1]))
                if late_losses[-1] == "gce":
                    method.gce_with(k, LATE_GCE_Q)
        if correct:
            identity = all(flipped_classes(t) == 0 for t in estimated)
            # per network: two networks' counts summed could exceed the classes
            counts = " and ".join(map(str, flip_counts))
            found = (f"{counts} class(es) with systematic flips"
                     + (", one count per network" if len(flip_counts) > 1 else ""))
            progress.log(f"forward correction from epoch {start + 1}: "
                         + (found if any(flip_counts) else "no systematic flips found")
                         + (", cross-entropy goes on" if identity
                            else ", plus a background" if background else ""))
        if late_losses:
            progress.log(f"loss from epoch {start + 1}: " + ", ".join(
                f"{loss} (estimated noise {rate:.2f})"
                for loss, rate in zip(late_losses, rates, strict=True)))

    log = run_epochs(
        learners, method, range(epochs), precision, progress, end_of_epoch, "warm-up"
    )
    # each list is filled at the start of the second half, when there is one
    return WarmupResult(networks(), histories, log, estimated or None, flip_counts or None,
                        late_losses or None, rates or None)


def scan(config: ScanConfig, progress: Progress | None = None, write: bool = True,
         explicit: Collection[str] | None = None) -> ScanResult:
    """Run a scan and (with ``write``) write its outputs into ``config.out``.

    Args:
        config: every setting (see :class:`~noisyclean.config.ScanConfig`; numpy numbers
            are taken as Python ones; the object itself is not changed). Its ``threads``
            holds for the scan only: torch's thread count, default dtype, grad mode and the
            global random states of torch and numpy are as before afterwards
            (:func:`~noisyclean.device.library_run`).
        progress: progress bars and log lines (a :class:`~noisyclean.progress.Progress`,
            entered as a context manager, as the CLI does); default: silent, whatever
            ``config.quiet`` says (that field is the CLI's ``--quiet``).
        write: write scores.csv, relabeled.csv, skipped.csv and summary.json.
        explicit: the settings given on the command line (the CLI knows them), for the
            warnings naming options a run ignores; None: those set to other than their
            defaults.

    Returns:
        A :class:`ScanResult`.

    Raises:
        NoisyCleanError: for unusable data or options (one clear message).
    """
    # before anything reads a setting, the thread count too; the caller's object unchanged
    config = checked_config(config, ScanConfig)
    progress = checked_progress(progress)
    with library_run(config.threads), removed_if_left_empty(config.out if write else None), \
            ExitStack() as held:
        return _scan(config, progress, write, held, explicit)


def _scan(config: ScanConfig, progress: Progress | None, write: bool,
          held: ExitStack, explicit: Collection[str] | None = None) -> ScanResult:
    """:func:`scan` at the thread count already set; ``held`` takes the output folder's
    :func:`~noisyclean.outputs.write.run_lock` until the scan ends."""
    validate(config)
    progress = progress or Progress(quiet=True)
    timings: dict[str, float] = {}
    if write:
        check_out_outside_data(config.out, config.data, config.labels)
        check_inputs_outside_out(config.out, {"--labels": config.labels,
                                              "--weights": config.weights})
        refuse_training_checkpoint(config.out)
        refuse_filled_review_sheet(config.out)
        prepare_out_dir(config.out)
        held.enter_context(run_lock(config.out))

    as_loaded = scores_as_loaded(config)
    dataset = load_configured(config, progress)
    # --epochs 0 with a run's weights file (whose normalisation the load took): its classes
    # must be the scan's
    run = dataset.weights_run if as_loaded else None
    if run is not None:
        check_run_classes(run, dataset.samples.classes)
    timings.update(dataset.timings)
    samples, paths, labels, data = dataset.samples, dataset.paths, dataset.labels, dataset.data
    size, model_name, device = dataset.image_size, dataset.model, dataset.device
    precision, skipped = dataset.precision, dataset.skipped
    if config.folds > 1:  # before any training, naming the classes short of images
        check_fold_sizes(labels, config.folds, samples.classes)
    schedule = resolve_schedule(config, len(paths), size, model_name)
    check_resized_sides(schedule, size, model_name, len(samples.classes))
    config = replace(config, image_size=size, model=model_name, epochs=schedule.epochs,
                     low_res_epochs=schedule.low_res, mid_res_epochs=schedule.mid_res)
    warn_of_settings(config, len(samples.classes), progress, explicit)
    if as_loaded and (ignored := as_loaded_ignored(config, explicit)):
        progress.warn(ignored_text(ignored, "--epochs 0"))
    # no correction and no late loss where nothing trains (--epochs 0), or where AUM trains
    # its own networks, on cross-entropy
    if as_loaded or config.signal == "aum":
        config = replace(config, correction="none", late_loss="ce")
    if config.signal == "aum" and config.networks != AUM_RUNS:
        progress.log(f"--signal aum trains {AUM_RUNS} networks, one per set of threshold samples")
        config = replace(config, networks=AUM_RUNS)
    progress.log(
        f"{len(paths)} images, {len(samples.classes)} classes, {size}x{size} px"
        + ("" if config.resize == "crop" else f" ({config.resize})")
        + f", {model_name} x{config.networks}, "
        + ("no training (--epochs 0: the --weights network as loaded)" if as_loaded
           else schedule_text(schedule, size))
        + f" on {device_text(device, precision.dtype)}"
    )

    if (slow := threads_warning(device)) is not None:
        progress.warn(slow)
    t0 = time.perf_counter()
    agreement = None  # --epochs 0: how often the loaded network predicts the given label
    extra = extra_scores(dataset, config, progress) if uses_extra_scores(config) else None
    if extra is not None:  # --signal aum or --folds K
        table, fits, log, probs = extra.table, extra.fits, extra.log, extra.probs
        cut = extra.cut
        estimate = extra.estimate or estimate_wrong_labels(probs, labels, samples.classes)
        timings["warmup"] = time.perf_counter() - t0
    else:
        trained = warm_up(data, len(samples.classes), config, precision, progress)
        histories, log = trained.histories, trained.log
        timings["warmup"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        signals: list[Signals] = []
        task = progress.task("score", total=len(trained.learners))
        for learner, history in zip(trained.learners, histories, strict=True):
            signals.append(finite(compute_signals(learner.model, data, precision,
                                                  tta=config.tta)))
            history.add(signals[-1].probs, labels, config.signal, config.fusion)
            progress.advance(task)
        timings["score"] = time.perf_counter() - t0
        if as_loaded:
            agreement, line, warning = agreement_text(signals[0].probs, labels, samples.classes)
            progress.log(line)
            if warning:
                progress.warn(warning)

        t0 = time.perf_counter()
        scores = score_samples(
            paths,
            labels,
            samples.classes,
            [history.fit.mean() for history in histories],
            signals,
            mixture=config.mixture,
            threshold=config.threshold,
            relabel_threshold=config.relabel_threshold,
            seed=config.seed,
            cut=effective_cut(config.cut, config.signal),
            flips=config.flip_ranking,
            order_inputs=[history.order.mean() for history in histories]
            if histories[0].order.records else None,
        )
        table, fits, probs = scores.table, scores.fits, scores.probs
        timings["mixture"] = time.perf_counter() - t0
        cut, estimate = scores.cut, scores.estimate

    relabeled = relabeled_table(table)
    summary = {
        "noisyclean_version": __version__,
        "data": str(samples.root),
        # the --labels manifest wherever the review tools run (settings keep it as given)
        "labels_file": labels_file(config.labels),
        **table_summary(table, samples.classes, samples.found,
                       len(skipped)),
        "estimated_wrong_labels": estimate,
        "mixture": [fit.params for fit in fits],
        "cut": cut,
        "training": {
            # --epochs 0: no epoch, and no training figure
            "final_train_loss": log[-1].get("loss") if log else None,
            "final_train_acc": log[-1].get("acc") if log else None,
            "low_res_epochs": schedule.low_res,
            "mid_res_epochs": schedule.mid_res,
            "epochs": log,
            # the run whose normalisation the images took, as it wrote the --weights file
            "weights_run": None if dataset.weights_run is None
            else str(dataset.weights_run.summary),
            **({"agreement_with_given_labels": agreement} if as_loaded else {}),
        },
        "settings": config.to_json(),
        **run_environment(dataset),
        "timings_s": timings,
    }
    # the second half of the warm-up, where the correction and the late loss start
    start = correction_start(schedule.total, schedule.low_res)
    from_epoch = None if start is None else start + 1
    if config.correction != "none":
        # --folds: one per fold, not kept; None too when the warm-up had no second half
        kept = None if extra is not None or trained.transitions is None else trained
        summary["correction"] = {
            "kind": config.correction,
            "from_epoch": from_epoch,
            "background_share": BACKGROUND_SHARE if config.correction == "forward+background"
            else 0.0,
            # per network: T[true][given] it trained with, and how many classes its
            # systematic flips flip
            "transition": None if kept is None
            else [np.round(t, 4).tolist() for t in kept.transitions],
            "classes_with_flips": None if kept is None else kept.flip_counts,
        }
    if config.late_loss != "ce":
        kept = None if extra is not None else trained  # --folds: one per fold
        summary["late_loss"] = {
            "setting": config.late_loss,
            "from_epoch": from_epoch,
            "gce_q": LATE_GCE_Q,
            "min_rate": LATE_GCE_MIN_RATE if config.late_loss == "auto" else None,
            # per network: the loss it took and the estimated noise rate that chose it
            "loss": None if kept is None else kept.late_losses,
            "estimated_rate": None if kept is None or kept.late_rates is None
            else [round(r, 4) for r in kept.late_rates],
        }
    if extra is not None:
        summary.update(extra.summary)
    # a network trained on these labels (not one loaded as it is) is capped by their noise
    reach = None if as_loaded else relabel_reach_warning(
        summary["estimated_wrong_labels"]["rate"], config.relabel_threshold,
        summary["counts"]["relabel"], summary["counts"]["noisy"],
        summary["training"]["final_train_acc"])
    if reach:
        progress.warn(reach)
    # a network loaded as it is was checked on its agreement above
    underfit = None if as_loaded else underfit_warning(probs, labels, samples.classes)
    if underfit:
        progress.warn(underfit)
    pred_probs = probs_in_table_order(probs, paths, table) if config.save_probs else None
    out = None
    if write:
        t0 = time.perf_counter()
        out = prepare_out_dir(config.out)
        stale = remove_stale_outputs(out, keep=(PROBS_NAME,) if config.save_probs else (),
                                     warn=progress.warn)
        if stale:
            progress.log(stale_outputs_text(stale, out))
        # an earlier run's summary goes first and this run's comes last: a write that fails
        # between leaves no summary describing tables it did not write
        unlink_if_present(out / "summary.json")
        write_csv(table, out / "scores.csv")
        write_csv(relabeled, out / "relabeled.csv")
        write_csv(skipped, out / "skipped.csv")
        if pred_probs is not None:
            write_pred_probs(out / PROBS_NAME, pred_probs)
        timings["write"] = time.perf_counter() - t0
        write_json(summary, out / "summary.json")
    return ScanResult(table, relabeled, skipped, summary, out, pred_probs)
