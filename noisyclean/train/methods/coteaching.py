"""Co-teaching (Han et al., NeurIPS 2018) as a method of the one loop.

Two networks see the same (augmented) mini-batch. Each ranks the batch by its own
cross-entropy and keeps its ``R(T)`` small-loss fraction; each network is then updated on
the samples the OTHER network kept (:func:`coteaching_losses`), so the errors of one are
not fed back into itself. The forget rate ``1 - R(T)`` grows linearly from 0 to ``tau``
over the first ``T_k`` epochs and stays there (:func:`forget_rate_schedule`, the paper's
Algorithm 1 with ``c = 1``); the paper sets ``tau`` to the noise rate.

``tau`` is ``--forget-rate`` when given. Otherwise it is the noise rate estimated, after
``--warmup-epochs`` epochs in which both networks keep every sample (forget rate 0), by a
two-component mixture on each network's per-sample losses (the mean of the two networks'
estimates); the choice and its reason are logged and go into ``summary.json``. From then on
the paper's schedule applies, counted from the first epoch.

Both networks' forward passes are computed in network 1's step, before either network is
updated (as in the reference code); network 2's step then back-propagates the loss computed
there. All randomness comes from one checkpointed ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.batches import DeviceImages
from ...errors import NoisyCleanError
from ...mixture import estimate_noise_rate, fit_mixture, normalise_losses
from ...signals import compute_signals
from ..loop import Precision

#: An estimated forget rate above this is capped (each network keeps at least 10%).
MAX_FORGET_RATE = 0.9


def forget_rate_schedule(epoch: int, forget_rate: float, num_gradual: int = 10) -> float:
    """Co-teaching's forget rate after ``epoch`` completed epochs:
    ``min(epoch / T_k, 1) * tau`` (``1 - R(T)`` of the paper, ``c = 1``).

    The first epoch (``epoch = 0``) keeps every sample; ``tau`` is reached at epoch
    ``T_k``. (The reference code's ``linspace(0, tau, T_k)`` reaches it at ``T_k - 1``.)

    Args:
        epoch: completed epochs (0-based index of the epoch about to run).
        forget_rate: ``tau``, the final forget rate.
        num_gradual: ``T_k``, epochs of the linear ramp (at least 1).

    Returns:
        The fraction of each batch to drop.
    """
    if num_gradual < 1:
        raise ValueError("num_gradual must be at least 1")
    return float(forget_rate) * min(max(epoch, 0) / num_gradual, 1.0)


def remembered(batch_size: int, forget_rate: float) -> int:
    """Samples kept of a batch: ``floor((1 - forget_rate) * batch_size)`` as the reference
    code's ``int(...)`` (guarded against rounding just below an integer), at least 1."""
    return max(1, math.floor((1.0 - forget_rate) * batch_size + 1e-9))


def small_loss_indices(losses: torch.Tensor, forget_rate: float) -> torch.Tensor:
    """Indices of the :func:`remembered` smallest losses, smallest first (ties in batch
    order).

    Args:
        losses: ``(B,)`` per-sample losses.
        forget_rate: fraction of the batch to drop.

    Returns:
        ``(K,)`` int64 indices into the batch.
    """
    keep = remembered(len(losses), forget_rate)
    return torch.argsort(losses.detach(), stable=True)[:keep]


def coteaching_losses(
    logits_1: torch.Tensor,
    logits_2: torch.Tensor,
    labels: torch.Tensor,
    forget_rate: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cross-update of co-teaching on one batch.

    Args:
        logits_1: ``(B, C)`` network 1's logits.
        logits_2: ``(B, C)`` network 2's logits on the same images.
        labels: ``(B,)`` given labels.
        forget_rate: fraction of the batch each network drops.

    Returns:
        ``(loss_1, loss_2, kept_for_1, kept_for_2)``: network 1's mean cross-entropy over
        the samples network 2 kept (``kept_for_1``, network 2's small-loss indices), and
        network 2's over the samples network 1 kept.
    """
    ce_1 = F.cross_entropy(logits_1.float(), labels, reduction="none")
    ce_2 = F.cross_entropy(logits_2.float(), labels, reduction="none")
    kept_for_2 = small_loss_indices(ce_1, forget_rate)
    kept_for_1 = small_loss_indices(ce_2, forget_rate)
    return ce_1[kept_for_1].mean(), ce_2[kept_for_2].mean(), kept_for_1, kept_for_2


class CoTeaching:
    """Co-teaching of two networks.

    Args:
        data: the decoded images and given labels.
        models: the two networks.
        precision: autocast settings (for the estimation pass).
        forget_rate: ``tau``; None estimates it after ``warmup_epochs``.
        num_gradual: ``T_k``, epochs of the linear ramp of the forget rate.
        warmup_epochs: epochs that keep every sample before the estimate (only when
            ``forget_rate`` is None).
        batch_size: samples per step (both networks see the same batch).
        seed: seeds the shuffles and the augmentation.
        mixture: ``gmm`` or ``bmm``, for the estimate.
        correct: optional ``(n,)`` per sample, whether its given label is right
            (``--truth``): 1.0 right, 0.0 wrong, NaN unknown (no truth row), as
            :func:`~noisyclean.train.run.label_is_correct` returns it, or bool (every label
            known). The label precision of the kept samples becomes a metric (see
            :meth:`_metrics`).
        log: where choices are reported.
    """

    name = "coteaching"

    def __init__(
        self,
        data: DeviceImages,
        models: list[nn.Module],
        precision: Precision,
        forget_rate: float | None = None,
        num_gradual: int = 10,
        warmup_epochs: int = 10,
        batch_size: int = 128,
        seed: int = 0,
        mixture: str = "gmm",
        correct: np.ndarray | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if len(models) != 2:
            raise ValueError("co-teaching trains two networks")
        self.data = data
        self.models = models
        self.precision = precision
        self.num_gradual = num_gradual
        self.warmup_epochs = warmup_epochs if forget_rate is None else 0
        self.batch_size = min(batch_size, len(data))
        self.seed = seed
        self.mixture = mixture
        # float32 with NaN for the unknown labels (what the kept share is averaged in)
        self.correct = (None if correct is None
                        else torch.as_tensor(np.asarray(correct, dtype=np.float32)))
        self.log = log or (lambda message: None)
        self.generator = torch.Generator().manual_seed(seed)
        self.settings: dict[str, Any] = {"forget_rate": forget_rate}
        self.reasons: dict[str, str] = {}
        if forget_rate is not None:
            self.reasons["forget_rate"] = "given explicitly"
        self.events: list[dict[str, Any]] = []
        self.rate = 0.0
        self._pending: tuple[torch.Tensor, dict[str, float]] | None = None

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The generator, the forget rate and its reason, the events."""
        return {
            "generator": self.generator.get_state(),
            "settings": dict(self.settings),
            "reasons": dict(self.reasons),
            "events": list(self.events),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.settings = dict(state["settings"])
        self.reasons = dict(state["reasons"])
        self.events = list(state["events"])

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` records about the run."""
        return {
            "forget_rate": self.settings["forget_rate"],
            "reason": self.reasons.get("forget_rate"),
            "num_gradual": self.num_gradual,
            "warmup_epochs": self.warmup_epochs,
            "events": self.events,
        }

    # ------------------------------------------------------------------ the schedule

    def phase(self, epoch: int) -> str:
        """``warm-up`` while every sample is kept before the estimate, else ``coteaching``."""
        return "warm-up" if epoch < self.warmup_epochs else "coteaching"

    def forget_rate_at(self, epoch: int) -> float:
        """The forget rate of ``epoch`` (0 during the warm-up)."""
        tau = self.settings["forget_rate"]
        if tau is None or epoch < self.warmup_epochs:
            return 0.0
        return forget_rate_schedule(epoch, float(tau), self.num_gradual)

    def _note(self, epoch: int, message: str) -> None:
        self.events.append({"epoch": epoch + 1, "message": message})
        self.log(f"epoch {epoch + 1}: {message}")

    def estimate_forget_rate(self, epoch: int) -> float:
        """Fit the mixture to each network's per-sample losses (eval mode, unaugmented) and
        return the mean of their noisy fractions, capped at :data:`MAX_FORGET_RATE`."""
        rates = []
        for k, model in enumerate(self.models, start=1):
            loss = compute_signals(model, self.data, self.precision).per_sample_loss
            if not np.all(np.isfinite(loss)):
                raise NoisyCleanError(
                    f"network {k} diverged (its losses are not finite); try a lower --lr"
                )
            fit = fit_mixture(normalise_losses(loss), self.mixture, random_state=self.seed)
            rates.append(estimate_noise_rate(fit.clean_prob))
        rate = float(np.mean(rates))
        capped = min(rate, MAX_FORGET_RATE)
        reason = (f"the {self.mixture} mixtures on the two networks' losses after "
                  f"{self.warmup_epochs} warm-up epoch(s) estimate {rate:.1%} noisy labels; "
                  "co-teaching forgets the noise rate (Han et al. 2018)")
        if capped < rate:
            reason += f", capped at {MAX_FORGET_RATE:.0%}"
        self.settings["forget_rate"] = capped
        self.reasons["forget_rate"] = reason
        self._note(epoch, f"automatic forget rate {capped:.3f}: {reason}")
        return capped

    # ------------------------------------------------------------------ the method

    def start_epoch(self, epoch: int) -> None:
        """Estimate the forget rate at the end of the warm-up (when automatic), then set
        the epoch's forget rate."""
        if self.settings["forget_rate"] is None and epoch >= self.warmup_epochs:
            self.estimate_forget_rate(epoch)
        self.rate = self.forget_rate_at(epoch)
        self._pending = None

    def steps_per_epoch(self, epoch: int) -> int:
        """Two steps (one per network) per full batch."""
        return 2 * (len(self.data) // self.batch_size)

    def batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Each shuffled batch twice: network 1's step, then network 2's."""
        order = torch.randperm(len(self.data), generator=self.generator)
        for step in range(len(self.data) // self.batch_size):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield 0, batch
            yield 1, batch

    def _metrics(
        self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
        batch: torch.Tensor, kept: torch.Tensor,
    ) -> dict[str, float]:
        """One step's metrics, summed over the batch (``count`` samples).

        With ``correct``: ``label_precision``, the share of right labels among the kept
        samples whose label is known, times the batch size, and ``label_precision_count``,
        the batch size; a step that kept no sample with a known label reports neither, so
        the epoch's value (their ratio) is the mean over the steps that had some, and NaN
        for an epoch without any (with a truth row for every image, every step reports it
        and the ratio is the plain mean over the epoch's steps).
        """
        n = len(batch)
        metrics = {
            "loss": loss.item() * n,
            "acc": (logits.argmax(1) == labels).sum().item(),
            "forget_rate": self.rate * n,
            "count": n,
        }
        if self.correct is not None:
            chosen = self.correct[batch[kept.cpu()]]
            known = chosen[~torch.isnan(chosen)]
            if len(known):
                metrics["label_precision"] = known.mean().item() * n
                metrics["label_precision_count"] = n
        return metrics

    def loss(
        self, learner_index: int, model: nn.Module, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Network 1's step: forward both networks on one augmentation of the batch and
        keep network 2's loss for its step; network 2's step returns that loss."""
        if learner_index == 1:
            if self._pending is None:
                raise RuntimeError("co-teaching: network 2's step came before network 1's")
            pending, self._pending = self._pending, None
            return pending
        x = self.data.batch(batch, augment=True, generator=self.generator)
        y = self.data.labels[batch.to(self.data.labels.device)]
        logits_1 = model(x).float()
        logits_2 = self.models[1](x).float()
        loss_1, loss_2, kept_1, kept_2 = coteaching_losses(logits_1, logits_2, y, self.rate)
        with torch.no_grad():
            self._pending = (loss_2, self._metrics(loss_2, logits_2, y, batch, kept_2))
            metrics_1 = self._metrics(loss_1, logits_1, y, batch, kept_1)
        return loss_1, metrics_1
