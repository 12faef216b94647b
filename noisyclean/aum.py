"""Area Under the Margin (Pleiss et al., NeurIPS 2020) as a scan signal, ``--signal aum``.

The *margin* of a sample at one training step is the logit of its assigned label minus the
largest other logit; its *AUM* is the mean margin over the training epochs, taken from the
very forward passes that train the network (augmented batches, train mode). A wrongly
labelled sample keeps a low, often negative AUM: the gradients of the similar samples with
the right label pull its logit towards the right class.

Where to cut is set with *threshold samples*: ``n // (C + 1)`` randomly chosen samples are
given a fake extra class ``C`` (the network has ``C + 1`` outputs), so they are wrong by
construction; a real sample is flagged when its AUM is below the 99th percentile of the
threshold samples' AUMs. A threshold sample's own label takes no part in that run, so, as in
the paper and its reference code, the scan trains two networks side by side, each with its
own disjoint set of threshold samples: every sample is real in at least one of them.

How the two runs become one table (:func:`combine_runs`):

* ``aum``: the mean AUM over the runs where the sample is real;
* ``distance``: the smallest ``AUM - threshold`` over those runs; the sample is flagged when
  it is negative in any of them (the reference code removes a sample flagged in either run);
* ``clean_prob``: ``sigmoid(distance / s)``, ``s`` the standard deviation of the threshold
  samples' distances (:func:`aum_clean_prob`): exactly 0.5 at the cut, so ``--threshold
  0.5`` flags what the paper flags. It orders samples like the AUM but is not a calibrated
  probability;
* the loss and the predicted probabilities (for ``suggested_label``) come from the real
  classes' logits of the runs where the sample is real, averaged.

As in the reference code, the margins of the first epoch are left out (they mostly reflect
the random initialisation) when there is more than one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ScanConfig
from .data.batches import DeviceImages
from .models import build_model
from .progress import Progress
from .signals import Signals, compute_signals, eval_batch_size, finite
from .train.loop import Learner, Precision, make_learner, run_epochs
from .train.methods.warmup import Warmup, negative_entropy

#: Percentile of the threshold samples' AUMs below which a sample is flagged (the paper's).
AUM_PERCENTILE = 99.0
#: Runs, each with its own threshold samples (the paper's two).
AUM_RUNS = 2


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample margin: the assigned label's logit minus the largest other logit.

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` assigned labels.

    Returns:
        ``(B,)`` margins (negative where another class has a larger logit).
    """
    logits = logits.float()
    assigned = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return assigned - others.max(dim=1).values


def threshold_sample_sets(
    n: int, num_classes: int, seed: int = 0, runs: int = AUM_RUNS
) -> list[np.ndarray]:
    """Disjoint random sets of ``n // (num_classes + 1)`` threshold samples, one per run
    (consecutive slices of one seeded permutation, as in the reference code).

    Args:
        n: number of samples.
        num_classes: number of real classes ``C``.
        seed: seeds the permutation.
        runs: number of sets.

    Returns:
        One sorted int64 index array per run.
    """
    size = n // (num_classes + 1)
    if size * runs > n:
        raise ValueError("too few samples for disjoint threshold-sample sets")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[k * size : (k + 1) * size]) for k in range(runs)]


def aum_threshold(threshold_aums: np.ndarray, percentile: float = AUM_PERCENTILE) -> float:
    """The cut: the ``percentile``-th percentile (linear interpolation) of the threshold
    samples' AUMs."""
    values = np.asarray(threshold_aums, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no threshold samples")
    return float(np.percentile(values, percentile))


def combine_runs(
    aums: np.ndarray, is_threshold: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One AUM and one distance to the cut per sample from several runs.

    Args:
        aums: ``(R, n)`` each run's AUM of every sample (against its assigned label).
        is_threshold: ``(R, n)`` bool, whether the sample is a threshold sample in the run.
        thresholds: ``(R,)`` each run's cut (:func:`aum_threshold`).

    Returns:
        ``(aum, distance)``: the mean AUM over the runs where the sample is real, and the
        smallest ``AUM - threshold`` over those runs (negative: flagged).

    Raises:
        ValueError: if a sample is a threshold sample in every run.
    """
    aums = np.asarray(aums, dtype=np.float64)
    real = ~np.asarray(is_threshold, dtype=bool)
    if not real.any(axis=0).all():
        raise ValueError("every sample must be real in at least one run")
    counts = real.sum(axis=0)
    aum = np.where(real, aums, 0.0).sum(axis=0) / counts
    gaps = aums - np.asarray(thresholds, dtype=np.float64)[:, None]
    distance = np.where(real, gaps, np.inf).min(axis=0)
    return aum, distance


def aum_clean_prob(distance: np.ndarray, scale: float) -> np.ndarray:
    """``sigmoid(distance / scale)``: 0.5 at the cut, towards 1 far above it."""
    z = np.asarray(distance, dtype=np.float64) / max(float(scale), 1e-12)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class AUMRecorder:
    """Running sums of the margins of ``n`` samples, kept on ``device`` (float32: MPS has
    no float64) so that recording costs no copy to the host per step."""

    def __init__(self, n: int, device: torch.device | None = None) -> None:
        self.sums = torch.zeros(n, dtype=torch.float32, device=device)
        self.counts = torch.zeros(n, dtype=torch.float32, device=device)

    def update(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        """Add one margin per sample of ``indices``."""
        idx = indices.to(self.sums.device)
        self.sums.index_add_(0, idx, values.detach().float().to(self.sums.device))
        self.counts.index_add_(0, idx, torch.ones(len(idx), device=self.sums.device))

    def aum(self) -> np.ndarray:
        """Mean margin per sample (NaN where none was recorded), float64."""
        counts = self.counts.cpu().double().numpy()
        sums = self.sums.cpu().double().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan)


class AUMWarmup(Warmup):
    """Cross-entropy training of networks on their own assigned labels (threshold samples
    carry the fake class), recording every training forward pass's margins from epoch
    ``record_from`` on.

    Args:
        data: the decoded images (their given labels are not used here).
        assigned: per network, ``(n,)`` assigned labels on ``data.labels``' device.
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
        penalty: add the confidence penalty.
        augment: random crop and flip.
        record_from: first epoch whose margins count.
    """

    def __init__(
        self,
        data: DeviceImages,
        assigned: list[torch.Tensor],
        batch_size: int = 128,
        seed: int = 0,
        penalty: bool = False,
        augment: bool = True,
        record_from: int = 1,
    ) -> None:
        super().__init__(data, len(assigned), batch_size, seed, penalty, augment)
        self.assigned = assigned
        self.record_from = record_from
        self.recorders = [AUMRecorder(len(data), data.labels.device) for _ in assigned]

    def loss(
        self, learner_index: int, model: nn.Module, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on the assigned labels; records the batch's margins."""
        x = self.data.batch(batch, augment=self.augment, generator=self.generator)
        y = self.assigned[learner_index][batch.to(self.data.labels.device)]
        logits = model(x)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce + negative_entropy(logits) if self.penalty else ce
        n = len(batch)
        with torch.no_grad():
            if epoch >= self.record_from:
                self.recorders[learner_index].update(batch, margins(logits, y))
            acc = (logits.argmax(1) == y).sum().item()
        return loss, {"loss": ce.item() * n, "acc": acc, "count": n}


class RealClasses(nn.Module):
    """A network with ``C + 1`` outputs seen through its first ``C`` logits."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The real classes' logits."""
        return self.model(x)[:, : self.num_classes]


@torch.no_grad()
def eval_margins(
    model: nn.Module, data: DeviceImages, assigned: torch.Tensor, precision: Precision,
    batch_size: int | None = None,
) -> np.ndarray:
    """Margins of every sample in eval mode on the unaugmented images (the fallback for a
    sample no training step recorded); ``batch_size`` defaults to :func:`eval_batch_size`."""
    batch_size = batch_size or eval_batch_size(data.device)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        with precision.autocast():
            logits = model(data.batch(idx)).float()
        out.append(margins(logits, assigned[idx.to(assigned.device)]).cpu())
    model.train(was_training)
    return torch.cat(out).double().numpy()


@dataclass
class AUMScores:
    """What the AUM scan produced, one entry per sample in sample order.

    Attributes:
        aum: mean AUM over the runs where the sample is real.
        distance: smallest ``AUM - threshold`` over those runs.
        clean_prob: :func:`aum_clean_prob` of ``distance``.
        signals: the loss and the real-class probabilities, averaged over those runs.
        thresholds: each run's cut.
        scale: the ``s`` of :func:`aum_clean_prob`.
        threshold_sets: each run's threshold samples.
        log: the per-epoch training log (both networks).
        learners: the trained networks.
        unrecorded: samples whose AUM fell back to the final eval-mode margin.
    """

    aum: np.ndarray
    distance: np.ndarray
    clean_prob: np.ndarray
    signals: Signals
    thresholds: list[float]
    scale: float
    threshold_sets: list[np.ndarray]
    log: list[dict[str, float]]
    learners: list[Learner] = field(default_factory=list)
    unrecorded: int = 0

    def summary(self) -> dict[str, Any]:
        """``summary.json["aum"]``."""
        return {
            "percentile": AUM_PERCENTILE,
            "runs": len(self.thresholds),
            "threshold_samples": [int(len(s)) for s in self.threshold_sets],
            "thresholds": [float(t) for t in self.thresholds],
            "scale": float(self.scale),
            "flagged": int((self.distance < 0).sum()),
            "unrecorded": int(self.unrecorded),
        }


def aum_scores(
    data: DeviceImages,
    num_classes: int,
    config: ScanConfig,
    precision: Precision,
    progress: Progress,
) -> AUMScores:
    """Train :data:`AUM_RUNS` networks with threshold samples and score every sample.

    Args:
        data: the decoded images and given labels.
        num_classes: number of real classes ``C``.
        config: the scan's settings (``epochs`` resolved).
        precision: autocast settings.
        progress: progress display.

    Returns:
        :class:`AUMScores`.
    """
    from .scanning import _set_seed  # scanning imports this module

    n = len(data)
    epochs = int(config.epochs or 1)
    labels = data.labels
    sets = threshold_sample_sets(n, num_classes, config.seed)
    assigned = []
    for chosen in sets:
        y = labels.clone()
        y[torch.as_tensor(chosen, device=labels.device)] = num_classes
        assigned.append(y)
    method = AUMWarmup(
        data, assigned, batch_size=config.batch_size, seed=config.seed,
        penalty=config.penalty, augment=config.augment, record_from=1 if epochs > 1 else 0,
    )
    steps = method.total_steps(epochs)
    learners = []

    def warn_extra_class(message: str) -> None:
        progress.warn(f"{message} (--signal aum gives the network one more output than the "
                      "classes, for its threshold samples)")

    for k in range(len(assigned)):
        _set_seed(config.seed + 1000 * k)
        model = build_model(config.model or "small-cnn", num_classes + 1, config.weights,
                            config.width, warn_extra_class, download_progress=not progress.quiet)
        model = model.to(data.device)
        if data.channels_last:
            model = model.to(memory_format=torch.channels_last)
        learners.append(
            make_learner(model, config.lr, config.momentum, config.weight_decay, steps)
        )
    progress.log(f"aum: {len(assigned)} networks, each with its own {len(sets[0])} threshold "
                 f"samples labelled with a fake extra class (index {num_classes})")
    log = run_epochs(learners, method, range(epochs), precision, progress, None, "warm-up")

    aums = np.stack([recorder.aum() for recorder in method.recorders])
    unrecorded = 0
    for k, learner in enumerate(learners):
        missing = np.isnan(aums[k])
        if missing.any():
            unrecorded += int(missing.sum())
            aums[k, missing] = eval_margins(learner.model, data, assigned[k], precision)[missing]
    is_threshold = np.zeros((len(sets), n), dtype=bool)
    for k, chosen in enumerate(sets):
        is_threshold[k, chosen] = True
    thresholds = np.array([aum_threshold(aums[k, chosen]) for k, chosen in enumerate(sets)])
    aum, distance = combine_runs(aums, is_threshold, thresholds)
    gaps = np.concatenate([aums[k, chosen] - thresholds[k] for k, chosen in enumerate(sets)])
    scale = float(np.std(gaps)) if gaps.size > 1 and np.std(gaps) > 0 else 1.0

    real = (~is_threshold).astype(np.float64)
    weights = real / real.sum(axis=0, keepdims=True)
    losses, probs = [], []
    task = progress.task("score", total=len(learners))
    for learner in learners:
        s = finite(compute_signals(RealClasses(learner.model, num_classes), data, precision,
                                   tta=config.tta))
        losses.append(s.per_sample_loss)
        probs.append(s.probs)
        progress.advance(task)
    loss = (weights * np.stack(losses)).sum(axis=0)
    prob = (weights[:, :, None] * np.stack(probs)).sum(axis=0).astype(np.float32)
    return AUMScores(
        aum=aum,
        distance=distance,
        clean_prob=aum_clean_prob(distance, scale),
        signals=Signals(per_sample_loss=loss, probs=prob),
        thresholds=[float(t) for t in thresholds],
        scale=scale,
        threshold_sets=sets,
        log=log,
        learners=learners,
        unrecorded=unrecorded,
    )
