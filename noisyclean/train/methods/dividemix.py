"""DivideMix (Li, Socher, Hoi, ICLR 2020), all of Algorithm 1, as a method of the one loop.

Epochs ``0 .. warmup_epochs - 1`` warm up both networks with cross-entropy (plus the
confidence penalty when chosen). From then on every epoch starts with :func:`co_divide`
(each network's losses divide the other's data) and then trains network 1 for one pass
over its labelled set, then network 2 (Algorithm 1: the two networks one after the other),
each step doing co-refinement, co-guessing, MixMatch and ``L_x + lambda_u L_u + lambda_r
L_reg``.

Unless given explicitly, ``lambda_u``, ``tau`` and the confidence penalty are chosen from
what the warm-up's own mixture says about the noise (:func:`choose_lambda_u`,
:func:`choose_tau`, :func:`choose_penalty`); every choice is logged with its reason.

All randomness (shuffles, augmentations, the Beta draws, the mixing permutations) comes
from one ``torch.Generator`` whose state is part of :meth:`DivideMix.state_dict`, so a run
resumed from a checkpoint draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.batches import DeviceImages
from ...errors import NoisyCleanError
from ...mixture import estimate_noise_rate, fit_mixture, normalise_losses
from ...signals import compute_signals
from ...underfit import unlearnt_classes
from ..divide import Division, co_divide, default_min_size
from ..loop import Precision
from ..mixmatch import (
    co_guess,
    co_refine,
    linear_rampup,
    mixmatch,
    sample_mix_weight,
    soft_cross_entropy,
    squared_error,
    uniform_prior_loss,
)
from .warmup import Warmup

#: Estimated noise rates at which the automatic choices change (see :func:`choose_lambda_u`).
LOW_NOISE = 0.3
VERY_HIGH_NOISE = 0.75


def asymmetry_threshold(num_classes: int) -> float:
    """:func:`pair_share` from which noise counts as asymmetric: half-way between what
    symmetric noise gives (``1 / (C - 1)``) and what flips into one class give (1); 0.75
    for 3 classes, 0.56 for 10."""
    return 0.5 * (1.0 + 1.0 / max(1, num_classes - 1))


def choose_lambda_u(noise_rate: float) -> tuple[float, str]:
    """Automatic ``lambda_u`` from an estimated noise rate (real rate, not the reference
    code's convention).

    The paper's CIFAR-10 table uses 0 at 20% symmetric (a real rate of 18%) and 40%
    asymmetric noise (20% real), 25 at 50% and 80% symmetric (45% and 72% real) and 50 at
    90% (81% real). So: 0 below 30%, 25 below 75%, 50 above.
    """
    if noise_rate < LOW_NOISE:
        return 0.0, (f"estimated noise {noise_rate:.0%} < {LOW_NOISE:.0%}: lambda_u 0 (the "
                     "paper's value at 20% symmetric and 40% asymmetric noise)")
    if noise_rate < VERY_HIGH_NOISE:
        return 25.0, (f"estimated noise {noise_rate:.0%} in [{LOW_NOISE:.0%}, "
                      f"{VERY_HIGH_NOISE:.0%}): lambda_u 25 (the paper's value at 50-80% noise)")
    return 50.0, (f"estimated noise {noise_rate:.0%} >= {VERY_HIGH_NOISE:.0%}: lambda_u 50 "
                  "(the paper's value at 90% noise)")


def choose_tau(noise_rate: float) -> tuple[float, str]:
    """Automatic ``tau``: 0.6 at very high noise (the paper's 90% setting), else 0.5."""
    if noise_rate >= VERY_HIGH_NOISE:
        return 0.6, (f"estimated noise {noise_rate:.0%} >= {VERY_HIGH_NOISE:.0%}: tau 0.6 "
                     "(the paper's value at 90% noise)")
    return 0.5, f"estimated noise {noise_rate:.0%} < {VERY_HIGH_NOISE:.0%}: tau 0.5"


def choose_loss_history(noise_rate: float) -> tuple[int, str]:
    """Epochs of normalised losses averaged for co-divide: 5 at very high noise (the
    reference code does so at 90% noise), else 1."""
    if noise_rate >= VERY_HIGH_NOISE:
        return 5, "very high noise: co-divide averages the losses of the last 5 epochs"
    return 1, "co-divide uses the current epoch's losses"


def pair_share(
    labels: np.ndarray, predicted: np.ndarray, clean_prob: np.ndarray, num_classes: int
) -> tuple[float, int]:
    """How class-dependent the suspected noise is.

    Among the samples the mixture calls noisy (``clean_prob < 0.5``) and the network
    predicts as another class, count for each given class how many go to its most common
    predicted class; the share is the sum of those counts over the total. Symmetric noise
    over C classes gives about ``1 / (C - 1)``; flips into one class per class (asymmetric
    noise) give about 1.

    Returns:
        ``(share, count)``: the share (0.0 when there are none) and the number of samples
        it was computed on.
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    suspect = (np.asarray(clean_prob) < 0.5) & (predicted != labels)
    total = int(suspect.sum())
    if total == 0:
        return 0.0, 0
    pairs = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(pairs, (labels[suspect], predicted[suspect]), 1)
    return float(pairs.max(axis=1).sum() / total), total


def choose_penalty(
    noise_rate: float, share: float, count: int, num_classes: int,
    unlearnt: Sequence[str] = (),
) -> tuple[bool, str]:
    """Automatic confidence penalty: on when the suspected noise is class-dependent
    (asymmetric: :func:`pair_share` at least :func:`asymmetry_threshold` over at least 20
    samples, at least 3 classes, an estimated noise rate of at least 5%), as DivideMix uses
    it for asymmetric noise only.

    Off where the networks almost never predict some class (``unlearnt``, from
    :func:`~noisyclean.underfit.unlearnt_classes`): a network that answers few classes sends
    every suspicious sample to one of them, so symmetric noise looks asymmetric (a short
    warm-up on 800 photos in 5 classes gave a share of 100% under uniform noise)."""
    if num_classes < 3:
        return False, "two classes: symmetric and asymmetric noise are the same; penalty off"
    if unlearnt:
        return False, (f"the networks almost never predict {', '.join(unlearnt[:5])}"
                       f"{', ...' if len(unlearnt) > 5 else ''} yet: the classes their "
                       "suspicious samples go to say nothing of the noise; penalty off")
    if noise_rate < 0.05 or count < 20:
        return False, (f"estimated noise {noise_rate:.0%} on {count} suspicious sample(s): "
                       "too little to call it asymmetric; penalty off")
    limit = asymmetry_threshold(num_classes)
    if share >= limit:
        return True, (f"{share:.0%} of the suspicious samples fall on one other class per "
                      f"class (>= {limit:.0%}: asymmetric noise); confidence penalty on")
    return False, (f"{share:.0%} of the suspicious samples fall on one other class per class "
                   f"(< {limit:.0%}: symmetric-looking noise); penalty off")


@dataclass
class MixBatch:
    """One DivideMix step: labelled indices with their clean probabilities, unlabelled
    indices, and the step's position in its network's epoch (for the lambda_u ramp)."""

    labelled: torch.Tensor
    clean_prob: torch.Tensor
    unlabelled: torch.Tensor
    step: int
    steps: int


class DivideMix:
    """The DivideMix method for :func:`~noisyclean.train.loop.run_epochs` (two learners).

    Args:
        data: decoded images and given labels.
        models: the two networks (the same objects the learners train).
        classes: class names.
        precision: autocast settings (for the co-divide's evaluation passes).
        warmup_epochs: epochs of cross-entropy warm-up.
        batch_size: labelled and unlabelled samples per step (the warm-up uses twice this).
        tau: clean-probability threshold; None chooses it after the warm-up.
        lambda_u: weight of ``L_u``; None chooses it after the warm-up.
        penalty: confidence penalty during warm-up; None chooses it half-way through.
        lambda_r: weight of ``L_reg``.
        temperature: sharpening temperature ``T``.
        alpha: Beta(alpha, alpha) of the mixing weight.
        augmentations: augmentations ``M`` per sample.
        rampup_epochs: epochs over which ``lambda_u`` ramps up linearly after the warm-up.
        mixture: ``gmm`` or ``bmm``.
        loss_history: epochs of losses averaged for co-divide; None chooses it (5 at very
            high noise, as the reference code, else 1).
        seed: seeds the generator and the mixtures.
        log: called with one line for every choice and guard.
    """

    def __init__(
        self,
        data: DeviceImages,
        models: list[nn.Module],
        classes: list[str],
        precision: Precision,
        warmup_epochs: int = 10,
        batch_size: int = 64,
        tau: float | None = None,
        lambda_u: float | None = None,
        penalty: bool | None = None,
        lambda_r: float = 1.0,
        temperature: float = 0.5,
        alpha: float = 4.0,
        augmentations: int = 2,
        rampup_epochs: int = 16,
        mixture: str = "gmm",
        loss_history: int | None = None,
        seed: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if len(models) != 2:
            raise ValueError("DivideMix trains exactly two networks")
        self.data = data
        self.models = models
        self.classes = classes
        self.num_classes = len(classes)
        self.precision = precision
        self.warmup_epochs = warmup_epochs
        self.batch_size = batch_size
        self.lambda_r = lambda_r
        self.temperature = temperature
        self.alpha = alpha
        self.augmentations = augmentations
        self.rampup_epochs = rampup_epochs
        self.mixture = mixture
        self.seed = seed
        self.log = log or (lambda message: None)
        self.generator = torch.Generator().manual_seed(seed)
        self.warmup = Warmup(data, n_learners=2, batch_size=2 * batch_size, seed=seed,
                             penalty=bool(penalty))
        self.warmup.generator = self.generator
        self.labels_np = data.labels.cpu().numpy()
        # settings: the value, whether it was chosen automatically, and why
        self.settings: dict[str, Any] = {
            "tau": tau, "lambda_u": lambda_u, "penalty": penalty, "loss_history": loss_history,
        }
        self.reasons: dict[str, str] = {
            key: "given explicitly" for key, value in self.settings.items() if value is not None
        }
        self.estimated_noise_rate: float | None = None
        self.loss_records: list[list[np.ndarray]] = [[], []]
        self.divisions: list[Division] | None = None
        self.division_epoch: int | None = None
        self.events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: the generator, the choices made so far, the
        loss records of co-divide and the events (plain values and tensors only)."""
        return {
            "generator": self.generator.get_state(),
            "settings": dict(self.settings),
            "reasons": dict(self.reasons),
            "estimated_noise_rate": self.estimated_noise_rate,
            "loss_records": [
                [torch.from_numpy(r.copy()) for r in records] for records in self.loss_records
            ],
            "events": list(self.events),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.settings = dict(state["settings"])
        self.reasons = dict(state["reasons"])
        self.estimated_noise_rate = state["estimated_noise_rate"]
        self.loss_records = [
            [r.numpy().astype(np.float64) for r in records] for records in state["loss_records"]
        ]
        self.events = list(state["events"])
        self.warmup.penalty = bool(self.settings["penalty"])

    # ------------------------------------------------------------------ helpers

    def _note(self, epoch: int, message: str) -> None:
        self.events.append({"epoch": epoch + 1, "message": message})
        self.log(f"epoch {epoch + 1}: {message}")

    def _signals(self) -> list[Any]:
        signals = [compute_signals(model, self.data, self.precision) for model in self.models]
        for k, s in enumerate(signals, start=1):
            if not np.all(np.isfinite(s.per_sample_loss)):
                raise NoisyCleanError(
                    f"network {k} diverged (its losses are not finite); try a lower --lr"
                )
        return signals

    def penalty_epoch(self) -> int | None:
        """The epoch at whose start the automatic penalty is chosen: half-way through the
        warm-up (after at least one epoch), or None when the warm-up is too short."""
        epoch = max(1, self.warmup_epochs // 2)
        return epoch if epoch < self.warmup_epochs else None

    def _choose_penalty(self, epoch: int) -> None:
        signals = self._signals()
        rates, shares, counts, unlearnt = [], [], [], set()
        for s in signals:
            fit = fit_mixture(normalise_losses(s.per_sample_loss), self.mixture, self.seed)
            rates.append(estimate_noise_rate(fit.clean_prob))
            predicted = s.probs.argmax(1)
            share, count = pair_share(self.labels_np, predicted, fit.clean_prob,
                                      self.num_classes)
            shares.append(share)
            counts.append(count)
            unlearnt.update(unlearnt_classes(predicted, self.labels_np, self.num_classes))
        penalty, reason = choose_penalty(
            float(np.mean(rates)), float(np.mean(shares)), int(np.mean(counts)),
            self.num_classes, [self.classes[k] for k in sorted(unlearnt)],
        )
        self.settings["penalty"] = penalty
        self.reasons["penalty"] = reason
        self.warmup.penalty = penalty
        self._note(epoch, f"automatic penalty: {reason}")

    def _choose_after_warmup(self, epoch: int, fit_inputs: list[np.ndarray]) -> None:
        fits = [fit_mixture(x, self.mixture, random_state=self.seed) for x in fit_inputs]
        rate = float(np.mean([estimate_noise_rate(f.clean_prob) for f in fits]))
        self.estimated_noise_rate = rate
        self._note(epoch, f"the warm-up's mixtures estimate {rate:.1%} noisy labels")
        for key, choose in (
            ("lambda_u", choose_lambda_u),
            ("tau", choose_tau),
            ("loss_history", choose_loss_history),
        ):
            if self.settings[key] is None:
                value, reason = choose(rate)
                self.settings[key] = value
                self.reasons[key] = reason
                self._note(epoch, f"automatic {key} = {value}: {reason}")

    # ------------------------------------------------------------------ the method

    def start_epoch(self, epoch: int) -> None:
        """Warm-up: choose the penalty half-way (when automatic). DivideMix epochs:
        co-divide (choosing lambda_u and tau first, after the last warm-up epoch)."""
        if epoch < self.warmup_epochs:
            if self.settings["penalty"] is None and epoch == self.penalty_epoch():
                self._choose_penalty(epoch)
            return
        if self.settings["penalty"] is None:
            self.settings["penalty"] = False
            self.reasons["penalty"] = "warm-up too short to choose it; penalty off"
        losses = [normalise_losses(s.per_sample_loss) for s in self._signals()]
        if self.estimated_noise_rate is None:
            self._choose_after_warmup(epoch, losses)
        history = int(self.settings["loss_history"])
        fit_inputs = []
        for k, loss in enumerate(losses):
            self.loss_records[k] = (self.loss_records[k] + [loss])[-history:]
            fit_inputs.append(normalise_losses(np.mean(self.loss_records[k], axis=0)))
        n = len(self.data)
        min_size = default_min_size(n, self.batch_size)
        self.divisions = co_divide(
            fit_inputs,
            self.labels_np,
            self.classes,
            float(self.settings["tau"]),
            self.mixture,
            self.seed,
            min_size=min_size,
            min_per_class=max(1, min_size // self.num_classes),
        )
        self.division_epoch = epoch
        for k, division in enumerate(self.divisions):
            for message in division.events:
                self._note(epoch, f"co-divide for network {k + 1}: {message}")

    def _sizes(self, division: Division) -> tuple[int, int]:
        b_x = min(self.batch_size, len(division.labelled))
        return b_x, len(division.labelled) // b_x

    def steps_per_epoch(self, epoch: int) -> int:
        """Warm-up: both networks' CE steps. DivideMix: full labelled batches of both."""
        if epoch < self.warmup_epochs:
            return self.warmup.steps_per_epoch(epoch)
        assert self.divisions is not None
        return sum(self._sizes(d)[1] for d in self.divisions)

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        """Warm-up: the networks' CE batches, interleaved. DivideMix: all of network 1's
        steps, then network 2's; each pairs a shuffled labelled batch with the next
        unlabelled batch (the unlabelled order is reshuffled whenever it runs out)."""
        if epoch < self.warmup_epochs:
            yield from self.warmup.batches(epoch)
            return
        assert self.divisions is not None
        for k, division in enumerate(self.divisions):
            labelled = torch.as_tensor(division.labelled, dtype=torch.long)
            unlabelled = torch.as_tensor(division.unlabelled, dtype=torch.long)
            weights = torch.as_tensor(division.clean_prob, dtype=torch.float32)
            b_x, steps = self._sizes(division)
            b_u = min(self.batch_size, len(unlabelled))
            order_x = labelled[torch.randperm(len(labelled), generator=self.generator)]
            order_u = unlabelled[torch.randperm(len(unlabelled), generator=self.generator)]
            pos_u = 0
            for step in range(steps):
                x = order_x[step * b_x : (step + 1) * b_x]
                if pos_u + b_u > len(order_u):
                    order_u = unlabelled[
                        torch.randperm(len(unlabelled), generator=self.generator)
                    ]
                    pos_u = 0
                u = order_u[pos_u : pos_u + b_u]
                pos_u += b_u
                yield k, MixBatch(x, weights[x], u, step, steps)

    def loss(
        self, learner_index: int, model: nn.Module, batch: Any, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Warm-up: cross-entropy (+ penalty). DivideMix: ``L_x + lambda_u L_u + lambda_r
        L_reg`` on the MixMatch-mixed batch."""
        if epoch < self.warmup_epochs:
            return self.warmup.loss(learner_index, model, batch, epoch)
        return self.mixmatch_loss(learner_index, model, batch, epoch)

    def mixmatch_loss(
        self, k: int, model: nn.Module, batch: MixBatch, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One DivideMix step for network ``k`` (Algorithm 1 lines 7-21)."""
        other = self.models[1 - k]
        model.train()
        other.eval()
        data, g, m = self.data, self.generator, self.augmentations
        device = data.labels.device
        n_x = len(batch.labelled)
        xs = [data.batch(batch.labelled, augment=True, generator=g) for _ in range(m)]
        us = [data.batch(batch.unlabelled, augment=True, generator=g) for _ in range(m)]
        y = F.one_hot(data.labels[batch.labelled.to(device)], self.num_classes).float()
        w = batch.clean_prob.to(device)
        with torch.no_grad():
            p_x = torch.stack([model(x).float().softmax(1) for x in xs])
            p_u_self = torch.stack([model(u).float().softmax(1) for u in us])
            p_u_other = torch.stack([other(u).float().softmax(1) for u in us])
            targets_x = co_refine(y, w, p_x, self.temperature)
            targets_u = co_guess(p_u_self, p_u_other, self.temperature)
        lam = sample_mix_weight(self.alpha, g)
        inputs = torch.cat(xs + us)
        targets = torch.cat([targets_x] * m + [targets_u] * m)
        perm = torch.randperm(len(inputs), generator=g)
        mixed_inputs, mixed_targets = mixmatch(inputs, targets, lam, perm)
        logits = model(mixed_inputs).float()
        loss_x = soft_cross_entropy(logits[: m * n_x], mixed_targets[: m * n_x])
        loss_u = squared_error(logits[m * n_x :], mixed_targets[m * n_x :])
        loss_reg = uniform_prior_loss(logits)
        lambda_u = linear_rampup(
            epoch + batch.step / batch.steps,
            self.warmup_epochs,
            self.rampup_epochs,
            float(self.settings["lambda_u"]),
        )
        loss = loss_x + lambda_u * loss_u + self.lambda_r * loss_reg
        return loss, {
            "loss": loss.item() * n_x,
            "loss_x": loss_x.item() * n_x,
            "loss_u": loss_u.item() * n_x,
            "loss_reg": loss_reg.item() * n_x,
            "lambda_u": lambda_u * n_x,
            "count": n_x,
        }
