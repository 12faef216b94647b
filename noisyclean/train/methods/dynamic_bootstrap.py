"""Dynamic hard bootstrapping (Arazo et al., ICML 2019), with mixup: M-DYR-H.

Epochs ``0 .. warmup_epochs - 1`` train with cross-entropy (with mixup when ``use_mixup``,
as the reference code's warm-up does). At the start of every later epoch the network's
per-sample cross-entropy on the training set (eval mode, unaugmented) is fit with a
two-component Beta mixture (:func:`fit_noise_model`): the losses are normalised between
their 5th and 95th percentiles (the samples outside are left out of the fit, as in the
reference code), and the posterior of the high-loss component, made non-decreasing in the
loss (:func:`~noisyclean.mixture.monotone_clean_prob`), is tabulated, and every sample's
noise posterior ``w`` is read from its own epoch-start loss. Each training step takes the
predicted class ``z`` of the (augmented) batch from one no-gradient eval-mode pass (the
reference code takes ``z`` from a train-mode pass) and minimises

    ``(1 - w) CE(y) + w CE(z)``  (+ mixup of two such terms for M-DYR-H)
    ``+ lambda_r * KL(uniform || mean prediction)``

the regulariser keeping the network from predicting one class for everything (the
reference code's ``reg_term``, 1.0 for M-DYR-H).

Where this departs from the reference code: the reference fits its mixture to eval-mode
losses of augmented images (a random crop and flip) and looks ``w`` up from each training
batch's loss, of augmented images too; here the mixture is fit to unaugmented eval-mode
losses and each sample's ``w`` is read from its own epoch-start loss. A first version here
mixed the two, looking ``w`` up from the augmented batch's loss at each step: augmented
losses are higher, so the lookup called far more samples noisy than the mixture does
(measured on 10,000 CIFAR-10 images at 50% symmetric noise after a 10-epoch warm-up: mean
``w`` 0.76 against the mixture's 0.48), and a network that is still weak then trained
mostly on its own predictions and collapsed to one class. Reading ``w`` by sample from the
fit keeps the weights on the scale the mixture was fit on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.batches import DeviceImages
from ...errors import NoisyCleanError
from ...mixture import MixtureFit, estimate_noise_rate, fit_mixture, monotone_clean_prob
from ...signals import compute_signals
from ..loop import Precision
from ..losses import (
    dynamic_bootstrap_loss,
    mixup,
    mixup_cross_entropy,
    mixup_dynamic_bootstrap_loss,
)
from ..mixmatch import uniform_prior_loss
from .mixup import DEFAULT_MIXUP_ALPHA, sample_lambda
from .warmup import Warmup

#: The reference code's percentiles for the loss normalisation (outliers left out).
PERCENTILES = (5.0, 95.0)
#: Weights are clipped to ``[WEIGHT_EPS, 1 - WEIGHT_EPS]`` (the reference code's 1e-4).
WEIGHT_EPS = 1e-4


@dataclass
class NoiseModel:
    """An epoch's mixture on the per-sample losses, as a lookup from a loss to its noise
    posterior.

    Attributes:
        low: the loss mapped to 0 (the 5th percentile).
        high: the loss mapped to 1 (the 95th percentile).
        grid: ``(G,)`` normalised losses in ``[0, 1]``.
        noisy: ``(G,)`` non-decreasing noise posterior at ``grid``.
        fit: the mixture fit (None when the losses could not be split).
    """

    low: float
    high: float
    grid: np.ndarray
    noisy: np.ndarray
    fit: MixtureFit | None = None

    @classmethod
    def from_mixture(
        cls, model: Any, clean_component: int, low: float, high: float,
        resolution: int = 1001, fit: MixtureFit | None = None,
    ) -> NoiseModel:
        """Tabulate a fitted two-component mixture (``predict_proba`` on normalised losses,
        ``means_``) on ``resolution`` evenly spaced points of ``[0, 1]``.

        The clean posterior is made non-increasing with
        :func:`~noisyclean.mixture.monotone_clean_prob` (the noisy component's mean as
        ``noisy_mean``) and the noise posterior is one minus it.
        """
        grid = np.linspace(0.0, 1.0, resolution)
        proba = np.asarray(model.predict_proba(grid.reshape(-1, 1)), dtype=np.float64)
        means = np.asarray(model.means_, dtype=np.float64).ravel()
        clean = monotone_clean_prob(grid, proba[:, clean_component], noisy_mean=means.max())
        return cls(float(low), float(high), grid, 1.0 - np.clip(clean, 0.0, 1.0), fit)

    def normalise(self, losses: np.ndarray) -> np.ndarray:
        """``(loss - low) / (high - low)`` clipped to ``[0, 1]``."""
        span = max(self.high - self.low, 1e-12)
        return np.clip((np.asarray(losses, dtype=np.float64) - self.low) / span, 0.0, 1.0)

    def weights(self, losses: np.ndarray) -> np.ndarray:
        """Noise posterior of each loss (linear interpolation in the table), clipped to
        ``[1e-4, 1 - 1e-4]``."""
        w = np.interp(self.normalise(losses), self.grid, self.noisy)
        return np.clip(w, WEIGHT_EPS, 1.0 - WEIGHT_EPS)


def fit_noise_model(
    losses: np.ndarray, mixture: str = "bmm", seed: int = 0, resolution: int = 1001
) -> NoiseModel:
    """Fit the mixture of Arazo et al. to per-sample losses.

    Args:
        losses: ``(n,)`` per-sample cross-entropy of the given labels.
        mixture: ``bmm`` (the paper's) or ``gmm``.
        seed: the mixture's random state.
        resolution: points of the lookup table.

    Returns:
        A :class:`NoiseModel`; when the losses cannot be split (their 5th and 95th
        percentiles coincide, or the fit is degenerate) every weight is the minimum.
    """
    losses = np.asarray(losses, dtype=np.float64)
    low, high = (float(v) for v in np.percentile(losses, PERCENTILES))
    grid = np.linspace(0.0, 1.0, resolution)
    flat = NoiseModel(low, high, grid, np.zeros(resolution))
    if not high > low:
        return flat
    inside = losses[(losses >= low) & (losses <= high)]
    fit = fit_mixture((inside - low) / (high - low), mixture, random_state=seed)
    if fit.model is None:
        flat.fit = fit
        return flat
    return NoiseModel.from_mixture(fit.model, fit.clean_component, low, high, resolution, fit)


class DynamicBootstrap(Warmup):
    """Dynamic hard bootstrapping of one network (M-DYR-H with ``use_mixup``).

    Args:
        data: the decoded images and given labels.
        model: the network.
        precision: autocast settings (for the loss pass at each epoch start).
        warmup_epochs: cross-entropy (or mixup) epochs before the first mixture.
        use_mixup: mix the inputs (M-DYR-H).
        alpha: ``Beta(alpha, alpha)`` of the mixing weight.
        lambda_r: weight of the uniform-prior regulariser.
        batch_size: samples per step.
        seed: seeds the shuffles, the augmentation and the mixing.
        mixture: ``bmm`` (the paper's) or ``gmm``.
        log: where the per-epoch estimates are reported.
    """

    name = "dynamic-bootstrap"

    def __init__(
        self,
        data: DeviceImages,
        model: nn.Module,
        precision: Precision,
        warmup_epochs: int = 10,
        use_mixup: bool = False,
        alpha: float = DEFAULT_MIXUP_ALPHA,
        lambda_r: float = 1.0,
        batch_size: int = 128,
        seed: int = 0,
        mixture: str = "bmm",
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(data, n_learners=1, batch_size=batch_size, seed=seed)
        self.model = model
        self.precision = precision
        self.warmup_epochs = warmup_epochs
        self.use_mixup = use_mixup
        self.alpha = alpha
        self.lambda_r = lambda_r
        self.seed = seed
        self.mixture = mixture
        self.log = log or (lambda message: None)
        self.noise_model: NoiseModel | None = None
        self.sample_weights: torch.Tensor | None = None
        self.noise_rates: list[dict[str, float]] = []
        self.epoch_stats: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        """The generator and the per-epoch estimates (the mixture itself is refit from the
        restored network at the next epoch's start)."""
        return {**super().state_dict(), "noise_rates": list(self.noise_rates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.noise_rates = list(state["noise_rates"])

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` records about the run."""
        return {
            "warmup_epochs": self.warmup_epochs,
            "mixup": self.use_mixup,
            "mixup_alpha": self.alpha if self.use_mixup else None,
            "lambda_r": self.lambda_r,
            "mixture": self.mixture,
            "estimated_noise_rate": self.noise_rates,
        }

    def phase(self, epoch: int) -> str:
        """``warm-up`` before the first mixture, then ``dynamic-bootstrap``."""
        return "warm-up" if epoch < self.warmup_epochs else "dynamic-bootstrap"

    def start_epoch(self, epoch: int) -> None:
        """After the warm-up: fit the mixture to the current per-sample losses."""
        self.epoch_stats = {}
        if epoch < self.warmup_epochs:
            self.noise_model = None
            self.sample_weights = None
            return
        loss = compute_signals(self.model, self.data, self.precision).per_sample_loss
        if not np.all(np.isfinite(loss)):
            raise NoisyCleanError("the network diverged (its losses are not finite); try a "
                                  "lower --lr")
        self.noise_model = fit_noise_model(loss, self.mixture, self.seed)
        weights = self.noise_model.weights(loss)
        self.sample_weights = torch.as_tensor(weights, dtype=torch.float32,
                                              device=self.data.labels.device)
        rate = estimate_noise_rate(1.0 - weights)
        self.epoch_stats = {"estimated_noise_rate": rate}
        if not self.noise_rates or self.noise_rates[-1]["epoch"] != epoch + 1:
            self.noise_rates.append({"epoch": epoch + 1, "rate": rate})
        if epoch == self.warmup_epochs:
            self.log(f"epoch {epoch + 1}: the {self.mixture} mixture on the losses estimates "
                     f"{rate:.1%} noisy labels; dynamic bootstrapping starts")

    def loss(
        self, learner_index: int, model: nn.Module, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Warm-up: cross-entropy (mixup's with ``use_mixup``). Then the dynamic
        bootstrapping loss plus ``lambda_r`` times the uniform-prior regulariser."""
        x = self.data.batch(batch, augment=self.augment, generator=self.generator)
        y = self.data.labels[batch.to(self.data.labels.device)]
        n = len(batch)
        lam, perm = 1.0, None
        if self.use_mixup:
            lam = sample_lambda(self.alpha, self.generator)
            perm = torch.randperm(n, generator=self.generator)
        metrics: dict[str, float] = {}
        if self.sample_weights is None:  # warm-up
            logits = model(x if perm is None else mixup(x, lam, perm)).float()
            if perm is None:
                loss = F.cross_entropy(logits, y)
            else:
                loss = mixup_cross_entropy(logits, y, lam, perm).mean()
        else:
            with torch.no_grad():
                model.eval()
                z = model(x).argmax(1)
                model.train()
            w = self.sample_weights[batch.to(self.sample_weights.device)]
            if perm is None:
                logits = model(x).float()
                boot = dynamic_bootstrap_loss(logits, y, z, w)
            else:
                logits = model(mixup(x, lam, perm)).float()
                boot = mixup_dynamic_bootstrap_loss(logits, y, z, w, lam, perm)
            loss = boot.mean() + self.lambda_r * uniform_prior_loss(logits)
            metrics["noise_weight"] = w.sum().item()
        with torch.no_grad():
            ce = F.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).sum().item()
        metrics.update(loss=loss.item() * n, ce=ce * n, acc=acc, count=n)
        return loss, metrics
