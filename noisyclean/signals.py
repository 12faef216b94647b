"""Per-sample signals of a trained network: the cross-entropy loss on unaugmented input
(eval mode), predicted probabilities with flip test-time augmentation, the noise scores a
mixture is fit on (the loss, the class-calibrated margin, or both) and their history over
epochs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.batches import DeviceImages
from .errors import NoisyCleanError
from .mixture import normalise_losses
from .thresholds import calibrated_margin, class_thresholds  # noqa: F401 (re-exported)
from .train.loop import Precision


@dataclass
class Signals:
    """Per-sample outputs of one network, rows in sample order.

    Attributes:
        per_sample_loss: cross-entropy of the given label on the unaugmented image.
        probs: softmax probabilities (averaged with the mirrored image when ``tta``).
    """

    per_sample_loss: np.ndarray
    probs: np.ndarray


def check_finite(*arrays: np.ndarray, what: str = "the warm-up") -> None:
    """Refuse a network's losses or probabilities that are not all finite: it has
    diverged, which is one clear :class:`~noisyclean.errors.NoisyCleanError` naming
    ``what`` diverged, not a mixture's or an estimate's failure later on."""
    if not all(np.isfinite(array).all() for array in arrays):
        raise NoisyCleanError(f"{what} diverged (its losses are not finite); try a "
                              "lower --lr")


def finite(signals: Signals, what: str = "the warm-up") -> Signals:
    """``signals``, checked by :func:`check_finite`."""
    check_finite(signals.per_sample_loss, signals.probs, what=what)
    return signals


def eval_batch_size(device: torch.device) -> int:
    """Samples per forward pass when evaluating every sample: 512 on an accelerator, 128 on
    the CPU, where large batches run slower (measured on 2 cores: 5,000 32-px images with
    flip TTA took 5.0-5.9 s at 512 and 3.1-3.8 s at 128)."""
    return 128 if torch.device(device).type == "cpu" else 512


@torch.no_grad()
def compute_signals(
    model: nn.Module,
    data: DeviceImages,
    precision: Precision,
    batch_size: int | None = None,
    tta: bool = False,
    indices: torch.Tensor | np.ndarray | None = None,
) -> Signals:
    """Evaluate ``model`` on every sample of ``data`` (or on ``indices``) in eval mode.

    Args:
        model: a classifier.
        data: images and given labels.
        precision: autocast settings.
        batch_size: samples per forward pass (default: :func:`eval_batch_size`).
        tta: also run the mirrored images and average the two softmax outputs (the loss is
            always computed on the unaugmented image).
        indices: evaluate only these samples, in this order (e.g. a fold's held-out
            samples); default every sample, in order.

    Returns:
        :class:`Signals` with ``per_sample_loss`` (N,) and ``probs`` (N, C), float64/float32,
        N the number of samples evaluated (row i is ``indices[i]``'s).
    """
    batch_size = batch_size or eval_batch_size(data.device)
    order = (torch.arange(len(data)) if indices is None
             else torch.as_tensor(indices, dtype=torch.long).cpu().reshape(-1))
    if len(order) == 0:
        raise ValueError("compute_signals: no samples to evaluate")
    was_training = model.training
    model.eval()
    losses, probs = [], []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        y = data.labels[idx.to(data.labels.device)]
        with precision.autocast():
            logits = model(data.batch(idx)).float()
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
        p = logits.softmax(1)
        if tta:
            with precision.autocast():
                p_flip = model(data.flipped(idx)).float().softmax(1)
            p = 0.5 * (p + p_flip)
        probs.append(p.cpu())
    model.train(was_training)
    return Signals(
        per_sample_loss=torch.cat(losses).double().numpy(),
        probs=torch.cat(probs).numpy(),
    )


SIGNALS = ("loss+margin", "loss", "margin")
#: ``scan --signal`` values: the scores above, and the Area Under the Margin (``aum``,
#: measured while training; see :mod:`noisyclean.aum`).
SCAN_SIGNALS = (*SIGNALS, "aum")
#: ``--fusion`` values: how ``loss+margin`` adds its two parts. ``minmax`` and ``rank`` are
#: one score each (:func:`fuse_parts`), which the mixture is fit on and the samples are
#: ordered by; ``hybrid`` fits the mixture (and so sets the count flagged) on ``minmax`` and
#: orders the samples by ``rank`` (:func:`noise_score`, :func:`order_score`).
FUSIONS = ("hybrid", "minmax", "rank")
#: The fusions that make one score (:func:`fuse_parts`).
SCORE_FUSIONS = ("minmax", "rank")


def label_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of the given labels computed from probabilities: ``-log p_y``."""
    probs = np.asarray(probs, dtype=np.float64)
    given = probs[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return -np.log(np.clip(given, 1e-12, 1.0))


def rank_scale(values: np.ndarray) -> np.ndarray:
    """Each value's rank (1 for the smallest to ``n``; tied values share the mean of their
    ranks), min-max normalised to ``[0, 1]``: without ties, ``(rank - 1) / (n - 1)``.

    Args:
        values: ``(n,)`` finite values.

    Returns:
        ``(n,)`` float64 in ``[0, 1]``: 0 for the smallest, 1 for the largest; all zeros for
        fewer than two values or a constant input.

    Raises:
        ValueError: if any value is NaN or infinite.
    """
    from scipy.stats import rankdata

    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):  # rankdata would rank an infinity as a number
        raise ValueError("values contain NaN or infinite values")
    return normalise_losses(rankdata(x))  # ranks 1..n, ties averaged


def fuse_parts(parts: list[np.ndarray], fusion: str = "minmax") -> np.ndarray:
    """Add per-sample scores into one score in ``[0, 1]``.

    Args:
        parts: ``(n,)`` scores, higher = more likely mislabelled.
        fusion: ``"minmax"`` adds each part min-max normalised, so how far a part's most
            extreme values lie from the rest sets how much it weighs; ``"rank"`` adds each
            part's :func:`rank_scale`, so a part counts by how it orders the samples alone. A
            single part is min-max normalised either way.

    Returns:
        ``(n,)`` the sum, min-max normalised.

    Raises:
        ValueError: for an unknown ``fusion``.
    """
    if fusion not in SCORE_FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; valid fusions are {list(SCORE_FUSIONS)}")
    scale = rank_scale if fusion == "rank" and len(parts) > 1 else normalise_losses
    return normalise_losses(np.sum([scale(part) for part in parts], axis=0))


def _score_parts(probs: np.ndarray, labels: np.ndarray, signal: str) -> list[np.ndarray]:
    """The parts of ``signal``: the loss, the calibrated margin, or both."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}; valid signals are {list(SIGNALS)}")
    parts = []
    if "loss" in signal:
        parts.append(label_loss(probs, labels))
    if "margin" in signal:
        parts.append(calibrated_margin(probs, labels))
    return parts


def _check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; valid fusions are {list(FUSIONS)}")


def noise_score(
    probs: np.ndarray, labels: np.ndarray, signal: str = "loss+margin", fusion: str = "hybrid"
) -> np.ndarray:
    """The per-sample score a two-component mixture is fit on, in ``[0, 1]``.

    Args:
        probs: ``(n, C)`` predicted probabilities (flip-averaged when TTA is on).
        labels: ``(n,)`` given labels.
        signal: ``"loss"`` (DivideMix's: the min-max normalised cross-entropy),
            ``"margin"`` (the normalised :func:`calibrated_margin`) or ``"loss+margin"``
            (the two parts added, then min-max normalised).
        fusion: how ``loss+margin`` adds its two parts (:func:`fuse_parts`): ``"minmax"``
            or ``"rank"``; ``"hybrid"`` fits the mixture on ``"minmax"`` (and orders by
            :func:`order_score`).

    Returns:
        ``(n,)`` scores in ``[0, 1]``, higher = more likely mislabelled.

    Raises:
        ValueError: for an unknown ``signal`` or ``fusion``.
    """
    _check_fusion(fusion)
    return _fit_score(_score_parts(probs, labels, signal), fusion)


def order_score(
    probs: np.ndarray, labels: np.ndarray, signal: str = "loss+margin", fusion: str = "hybrid"
) -> np.ndarray | None:
    """The score the samples are ordered by, where it is not the one the mixture is fit on
    (:func:`noise_score`): the rank fusion of ``loss+margin`` under ``fusion="hybrid"``.

    The mixture on :func:`noise_score` then says how many samples are flagged, and this
    score which ones (:func:`~noisyclean.scoring.score_samples`).

    Args:
        probs: ``(n, C)`` predicted probabilities.
        labels: ``(n,)`` given labels.
        signal: as :func:`noise_score`.
        fusion: as :func:`noise_score`.

    Returns:
        ``(n,)`` scores in ``[0, 1]`` (higher = more likely mislabelled), or ``None`` when
        the samples are ordered by :func:`noise_score` itself: for ``"minmax"``, ``"rank"``
        and single-part signals (one part orders the samples the same way under any
        fusion).

    Raises:
        ValueError: for an unknown ``signal`` or ``fusion``.
    """
    _check_fusion(fusion)
    return _order_score(_score_parts(probs, labels, signal), fusion)


def fit_and_order_scores(
    probs: np.ndarray, labels: np.ndarray, signal: str = "loss+margin", fusion: str = "hybrid"
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`noise_score` and :func:`order_score` of one pass, computing the loss and
    the calibrated margin once for both.

    Raises:
        ValueError: for an unknown ``signal`` or ``fusion``.
    """
    _check_fusion(fusion)
    parts = _score_parts(probs, labels, signal)
    return _fit_score(parts, fusion), _order_score(parts, fusion)


def _fit_score(parts: list[np.ndarray], fusion: str) -> np.ndarray:
    """The score the mixture is fit on: ``hybrid`` fits on ``minmax``."""
    return fuse_parts(parts, "minmax" if fusion == "hybrid" else fusion)


def _order_score(parts: list[np.ndarray], fusion: str) -> np.ndarray | None:
    """The rank fusion under ``hybrid`` with two parts; ``None`` otherwise."""
    if fusion != "hybrid" or len(parts) < 2:
        return None
    return fuse_parts(parts, "rank")


class LossHistory:
    """Min-max normalised per-sample losses of the last ``size`` epochs, and their mean."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.records: list[np.ndarray] = []

    def add(self, per_sample_loss: np.ndarray) -> None:
        """Record one epoch's losses (normalised to [0, 1] before storing)."""
        self.records.append(normalise_losses(per_sample_loss))
        self.records = self.records[-self.size :]

    def mean(self) -> np.ndarray:
        """Mean of the stored normalised losses, renormalised to [0, 1]."""
        if not self.records:
            raise ValueError("no losses recorded")
        return normalise_losses(np.mean(self.records, axis=0))


class ScoreHistory:
    """Per network, the scores of its last ``size`` scoring passes: the one its mixture is
    fit on (:func:`noise_score`) in ``fit``, and, where the fusion orders by another
    (:func:`order_score`), that one in ``order`` (empty otherwise)."""

    def __init__(self, size: int) -> None:
        self.fit = LossHistory(size)
        self.order = LossHistory(size)

    def add(self, probs: np.ndarray, labels: np.ndarray, signal: str, fusion: str) -> None:
        """Score one pass's predicted probabilities and record both scores."""
        fit, order = fit_and_order_scores(probs, labels, signal, fusion)
        self.fit.add(fit)
        if order is not None:
            self.order.add(order)


def network_scores(
    signals: list[Signals], labels: np.ndarray, signal: str, fusion: str
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Per network, the score its mixture is fit on and the one the samples are ordered by
    (``None`` where that is the same score): ``score_samples``' ``fit_inputs`` and
    ``order_inputs``, from one scoring pass each."""
    pairs = [fit_and_order_scores(s.probs, labels, signal, fusion) for s in signals]
    fit = [f for f, _ in pairs]
    order = [o for _, o in pairs if o is not None]
    return fit, order if len(order) == len(pairs) else None
