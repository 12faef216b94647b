"""Out-of-sample losses and predictions by K-fold cross-validation, ``scan --folds K``.

The samples are split into K folds, stratified by given label (scikit-learn's
``StratifiedKFold``, shuffled with the scan's seed). For each fold, the scan's warm-up
(same network, epochs, schedule and augmentation) trains on the other K - 1 folds, and the
fold's own samples are then scored by that network, which never saw them: their loss,
their flip-averaged predicted probabilities and from those the noise score. Every sample's
row comes from the network that did not train on it. These out-of-sample predicted
probabilities are what confident learning (cleanlab) expects as ``pred_probs``.

Costs K warm-ups on ``(K - 1) / K`` of the data each: about ``K - 1`` times an in-sample
scan. In-sample losses can flag less on a small dataset, where the network soon memorises
every label; out-of-sample ones do not have that problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from .config import ScanConfig
from .data.batches import DeviceImages
from .errors import FEW, NoisyCleanError, listing
from .progress import Progress
from .signals import Signals, compute_signals, finite
from .train.loop import Precision


def check_fold_sizes(
    labels: np.ndarray, folds: int, classes: Sequence[str] | None = None
) -> None:
    """Refuse ``--folds K`` when some class has fewer than ``K`` images (a stratified split
    needs one in every fold).

    Args:
        labels: ``(n,)`` given labels.
        folds: ``K``.
        classes: the class names, to name the classes short of images (else their index).

    Raises:
        NoisyCleanError: naming those classes, fewest images first.
    """
    found, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    short = sorted((int(count), int(label))
                   for label, count in zip(found, counts, strict=True) if count < folds)
    if not short:
        return

    def name(label: int) -> str:
        return repr(classes[label]) if classes is not None else f"index {label}"

    shown = listing((f"class {name(label)} has {count}" for count, label in short), FEW,
                    quote=False)
    raise NoisyCleanError(f"--folds {folds} needs at least {folds} images in every class; {shown}")


def fold_assignment(
    labels: np.ndarray, folds: int, seed: int = 0, classes: Sequence[str] | None = None
) -> np.ndarray:
    """The fold of every sample, stratified by label.

    Args:
        labels: ``(n,)`` given labels.
        folds: ``K``, at least 2.
        seed: shuffles the samples before splitting (0 .. 2**32 - 1).
        classes: the class names, for the message of :func:`check_fold_sizes`.

    Returns:
        ``(n,)`` int64 fold indices in ``0 .. K - 1``; each fold holds about ``n / K``
        samples and about ``1 / K`` of every class.

    Raises:
        NoisyCleanError: if some class has fewer than ``K`` samples.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if folds < 2:
        raise ValueError("folds must be at least 2")
    check_fold_sizes(labels, folds, classes)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            assignment[held_out] = fold
    return assignment


def cross_validated_signals(
    data: DeviceImages,
    num_classes: int,
    config: ScanConfig,
    precision: Precision,
    progress: Progress,
) -> tuple[list[Signals], list[dict[str, float]], np.ndarray]:
    """Train one warm-up per fold on the other folds and score the fold.

    Args:
        data: the decoded images and given labels.
        num_classes: number of classes.
        config: the scan's settings (``epochs`` resolved; ``folds`` at least 2).
        precision: autocast settings.
        progress: progress display.

    Returns:
        ``(signals, log, assignment)``: per network (``config.networks``) the
        out-of-sample :class:`~noisyclean.signals.Signals` of every sample, the per-epoch
        log of every fold's warm-up (each row with its ``fold``), and the fold of every
        sample.
    """
    from .scanning import warm_up  # scanning imports this module

    labels = data.labels.cpu().numpy()
    assignment = fold_assignment(labels, config.folds, config.seed)
    n = len(data)
    losses = np.zeros((config.networks, n))
    probs = np.zeros((config.networks, n, num_classes), dtype=np.float32)
    log: list[dict[str, float]] = []
    for fold in range(config.folds):
        held_out = np.flatnonzero(assignment == fold)
        train_idx = torch.as_tensor(np.flatnonzero(assignment != fold), dtype=torch.long)
        progress.log(f"fold {fold + 1}/{config.folds}: training on {len(train_idx)} images, "
                     f"scoring the other {len(held_out)}")
        trained = warm_up(data, num_classes, config, precision, progress, indices=train_idx)
        log += [{**row, "fold": fold + 1} for row in trained.log]
        for k, learner in enumerate(trained.learners):
            s = finite(compute_signals(learner.model, data, precision, tta=config.tta,
                                       indices=held_out))
            losses[k, held_out] = s.per_sample_loss
            probs[k, held_out] = s.probs
    signals = [Signals(per_sample_loss=losses[k], probs=probs[k]) for k in range(len(losses))]
    return signals, log, assignment
