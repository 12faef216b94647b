"""Warm-up: cross-entropy on the given labels, optionally with DivideMix's confidence
penalty (the negative entropy of the prediction) against asymmetric noise, optionally
with forward loss correction by an estimated noise transition matrix, optionally with the
generalized cross-entropy in place of the cross-entropy from a chosen epoch on, and
optionally with progressive resizing (the first epochs on images at half resolution)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...confident_joint import flipped_classes
from ...config import RESIZED_BATCH_FACTORS, RESIZED_BATCHES, RESIZED_LR_FACTORS
from ...data.batches import DeviceImages
from ...models import GroupedSmallCNN

#: Progressive resizing's middle stage: the side of its images, as a share of the full side.
MID_RES_SCALE = 0.75


def mid_res_side(side: int) -> int:
    """The image side of a three-quarter-resolution epoch (24 for 32)."""
    return max(1, int(round(side * MID_RES_SCALE)))


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of sum_c p_c log p_c (the confidence penalty of DivideMix).

    Adding it to the loss penalises confident predictions; it is ``-log C`` for a uniform
    prediction over C classes and 0 for a one-hot one.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * log_p).sum(dim=1).mean()


def penalty_confidence_cap(num_classes: int) -> float:
    """The highest probability of its given label that a network trained on cross-entropy
    plus the confidence penalty (:func:`negative_entropy`) settles at, for a sample it fits
    perfectly: the ``p`` minimising ``-log p + p log p + (1 - p) log((1 - p) / (C - 1))``
    (the rest spread evenly over the other ``C - 1`` classes), the root of
    ``log(p (C - 1) / (1 - p)) = 1 / p``. About 0.78 for 2 classes, 0.68 for 3, 0.48 for 10.
    """
    if num_classes < 2:
        raise ValueError("the cap needs at least 2 classes")
    low, high = 1.0 / num_classes, 1.0 - 1e-12
    for _ in range(100):  # the left side rises with p and the right side falls: bisection
        p = (low + high) / 2
        if math.log(p * (num_classes - 1) / (1 - p)) < 1 / p:
            low = p
        else:
            high = p
    return (low + high) / 2


def forward_corrected_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, transition: torch.Tensor
) -> torch.Tensor:
    """Forward loss correction (Patrini et al. 2017): the mean of ``-log (p @ T)[y]``, with
    ``p`` the softmax of ``logits`` and ``T[j, i] = P(given i | true j)``. The network's
    softmax is then fit to the true labels, and ``p @ T`` to the given ones.

    Args:
        logits: ``(B, C)``.
        targets: ``(B,)`` given labels.
        transition: ``(C, C)`` row-stochastic matrix.

    Returns:
        The scalar loss, computed in float32 even inside an autocast region (autocast
        would otherwise run ``p @ T`` in bfloat16 or float16, three significant digits).
    """
    with torch.autocast(logits.device.type, enabled=False):
        p = logits.float().softmax(dim=1)
        noisy = p @ transition.to(logits.device, torch.float32)
        return F.nll_loss(noisy.clamp_min(1e-7).log(), targets)


def forward_corrected_gce(
    logits: torch.Tensor, targets: torch.Tensor, q: float,
    transition: torch.Tensor | None = None,
) -> torch.Tensor:
    """The generalized cross-entropy (Zhang & Sabuncu 2018) of the forward-corrected
    probability: the mean of ``(1 - (p @ T)[y]^q) / q``, with ``p`` the softmax of
    ``logits`` and ``T[j, i] = P(given i | true j)`` (no ``T``: of ``p_y`` itself, plain
    GCE). Its gradient is the corrected cross-entropy's times ``(p @ T)[y]^q``, so samples
    whose given label the network finds unlikely (wrong labels, mostly) pull less.

    Args:
        logits: ``(B, C)``.
        targets: ``(B,)`` given labels.
        q: the exponent, in ``(0, 1]``.
        transition: ``(C, C)`` row-stochastic matrix, or None.

    Returns:
        The scalar loss, in float32 even inside an autocast region.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError("q must be in (0, 1]")
    with torch.autocast(logits.device.type, enabled=False):
        p = logits.float().softmax(dim=1)
        if transition is not None:
            p = p @ transition.to(logits.device, torch.float32)
        given = p.gather(1, targets[:, None]).squeeze(1).clamp_min(1e-7)
        return ((1 - given**q) / q).mean()


class Warmup:
    """Cross-entropy training of one or more networks on all samples.

    Each network gets its own shuffled order per epoch; steps alternate between networks.

    Args:
        data: the decoded images and given labels.
        n_learners: number of networks trained side by side.
        batch_size: samples per step; twice as many in the half-resolution epochs (a
            quarter of the pixels each, so that their steps are not dominated by per-step
            overhead: on 2 CPU cores, 16 px epochs took 12-35% longer in batches of 64
            than of 128).
        seed: seeds the shuffles and the augmentation.
        penalty: add the confidence penalty.
        augment: random crop and flip on the device.
        indices: train on these sample indices only (default: all).
        low_res_epochs: the first this many epochs train on the (augmented) images
            average-pooled to half their side, a quarter of the pixels (progressive
            resizing); the later epochs at full resolution.
        mid_res_epochs: the next this many epochs train on the (augmented) images
            resized to three quarters of their side (bilinear, antialiased; 24 px for
            32 px), in batches of ``batch_size``.
        grouped: the networks are the groups of one
            :class:`~noisyclean.models.GroupedSmallCNN`, trained by one learner: each step
            takes every network's batch (drawn and augmented as for separate networks, in
            the same order) and trains them all in one pass (:meth:`loss` with
            ``learner_index`` 0). The networks' own state (transition matrix, late loss,
            recorded softmax) is still per network.
        resized_batches: ``"double"`` (the batches above) or ``"pixels"``: four times
            ``batch_size`` at half resolution and twice it at three quarters, about the
            pixels of a full-resolution batch (see :meth:`batch_size_at`); or
            ``"pixels-lr"``: those batches, with the learning rate in those epochs scaled
            by :meth:`lr_factor_at` (the learner applies it).
    """

    def __init__(
        self,
        data: DeviceImages,
        n_learners: int = 1,
        batch_size: int = 128,
        seed: int = 0,
        penalty: bool = False,
        augment: bool = True,
        indices: torch.Tensor | None = None,
        low_res_epochs: int = 0,
        mid_res_epochs: int = 0,
        grouped: bool = False,
        resized_batches: str = "double",
    ) -> None:
        if resized_batches not in RESIZED_BATCHES:
            raise ValueError(f"resized_batches must be one of {', '.join(RESIZED_BATCHES)}")
        self.data = data
        self.resized_batches = resized_batches
        self.grouped = grouped
        self.low_res_epochs = low_res_epochs
        self.mid_res_epochs = mid_res_epochs
        self.n_learners = n_learners
        self.indices = torch.arange(len(data)) if indices is None else indices.cpu()
        self.batch_size = min(batch_size, len(self.indices))
        self.penalty = penalty
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        #: Per network, the transition matrix of forward correction (None: plain CE).
        self.transitions: list[torch.Tensor | None] = [None] * n_learners
        #: The epoch whose training-time softmax :meth:`loss` records (None: none).
        self.record_epoch: int | None = None
        #: per network, the GCE exponent it trains with from :meth:`gce_with` on (None:
        #: cross-entropy)
        self.gce_q: list[float | None] = [None] * n_learners
        self._recorded: list[torch.Tensor] = []
        self._seen: list[torch.Tensor] = []

    def record_predictions(self, epoch: int, num_classes: int) -> None:
        """Record every network's softmax on its training batches during ``epoch`` (the
        augmented images, in training mode, as each step sees them before its update), so
        that an estimate made after that epoch needs no scoring pass of its own."""
        self.record_epoch = epoch
        shape, device = (len(self.data), num_classes), self.data.labels.device
        self._recorded = [torch.zeros(shape, device=device) for _ in range(self.n_learners)]
        self._seen = [torch.zeros(len(self.data), dtype=torch.bool, device=device)
                      for _ in range(self.n_learners)]

    def recorded_predictions(self, learner_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Network ``learner_index``'s softmax recorded during :attr:`record_epoch`:
        ``(n, C)`` probabilities (zeros where not seen) and the ``(n,)`` mask of the samples
        it trained on in that epoch (the last partial batch is dropped, so a few are not)."""
        if not self._recorded:
            raise ValueError("no predictions recorded: call record_predictions first")
        return (self._recorded[learner_index].cpu().numpy(),
                self._seen[learner_index].cpu().numpy())

    def correct_with(self, learner_index: int, transition: np.ndarray) -> int:
        """From now on, train network ``learner_index`` with forward correction by
        ``transition`` (``T[true][given]``) unless it is the identity, which leaves it on
        plain cross-entropy.

        Returns:
            The number of rows off the identity
            (:func:`~noisyclean.confident_joint.flipped_classes`).
        """
        flips = flipped_classes(transition)
        if flips:
            self.transitions[learner_index] = torch.as_tensor(
                transition, dtype=torch.float32, device=self.data.labels.device
            )
        return flips

    def gce_with(self, learner_index: int, q: float) -> None:
        """From now on, train network ``learner_index`` on the generalized cross-entropy
        with exponent ``q`` (:func:`forward_corrected_gce`, of the corrected softmax once
        :meth:`correct_with` gave it a transition matrix) instead of the cross-entropy."""
        if not 0.0 < q <= 1.0:
            raise ValueError("q must be in (0, 1]")
        self.gce_q[learner_index] = q

    def state_dict(self) -> dict[str, torch.Tensor | bool]:
        """The generator's state and the penalty flag (for checkpoints)."""
        return {"generator": self.generator.get_state(), "penalty": self.penalty}

    def load_state_dict(self, state: dict[str, torch.Tensor | bool]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.penalty = bool(state["penalty"])

    def _resized_stage(self, epoch: int) -> int | None:
        """0 in the half-resolution epochs, 1 in the three-quarter-resolution ones, None at
        full resolution: the index into a ``(half, three quarters)`` pair of factors."""
        if epoch < self.low_res_epochs:
            return 0
        if epoch < self.low_res_epochs + self.mid_res_epochs:
            return 1
        return None

    def batch_size_at(self, epoch: int) -> int:
        """Samples per step in ``epoch``: ``batch_size``, times the resized epochs' factors
        of :data:`~noisyclean.config.RESIZED_BATCH_FACTORS` (doubled at half resolution;
        with ``resized_batches="pixels"`` four times at half resolution and twice at three
        quarters), never more than the samples trained on."""
        stage = self._resized_stage(epoch)
        factor = 1 if stage is None else RESIZED_BATCH_FACTORS[self.resized_batches][stage]
        return min(factor * self.batch_size, len(self.indices))

    def lr_factor_at(self, epoch: int) -> float:
        """The learning rate's factor in ``epoch`` (:data:`~noisyclean.config.RESIZED_LR_FACTORS`
        of ``resized_batches`` in the resized epochs, 1 at full resolution); a
        :class:`~noisyclean.train.loop.Learner`'s ``lr_scale``."""
        stage = self._resized_stage(epoch)
        return 1.0 if stage is None else RESIZED_LR_FACTORS[self.resized_batches][stage]

    def scales_lr(self) -> bool:
        """Whether :meth:`lr_factor_at` is other than 1 in any epoch it trains (only
        resized epochs can be)."""
        resized = range(self.low_res_epochs + self.mid_res_epochs)
        return any(self.lr_factor_at(epoch) != 1.0 for epoch in resized)

    def _batches_per_network(self, epoch: int) -> int:
        return len(self.indices) // self.batch_size_at(epoch)

    def steps_per_epoch(self, epoch: int) -> int:
        """Full batches per network, times the number of networks (not when grouped: one
        step trains them all)."""
        per_network = self._batches_per_network(epoch)
        return per_network if self.grouped else per_network * self.n_learners

    def total_steps(self, epochs: int) -> int:
        """Steps per network over epochs ``0 .. epochs - 1`` (what a schedule spans)."""
        return sum(self._batches_per_network(e) for e in range(epochs))

    def batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Interleave the networks' batches of sample indices (last partial batch dropped);
        grouped, each step's batches of every network together, ``(networks, B)``."""
        orders = [
            self.indices[torch.randperm(len(self.indices), generator=self.generator)]
            for _ in range(self.n_learners)
        ]
        size = self.batch_size_at(epoch)
        for step in range(self._batches_per_network(epoch)):
            cut = [order[step * size : (step + 1) * size] for order in orders]
            if self.grouped:
                yield 0, torch.stack(cut)
            else:
                yield from enumerate(cut)

    def _images(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        """One network's augmented batch, at half resolution in the first epochs and at
        three quarters in the next ones."""
        x = self.data.batch(batch, augment=self.augment, generator=self.generator)
        stage = self._resized_stage(epoch)
        if stage == 0:
            return F.avg_pool2d(x, 2)
        if stage == 1:
            side = (mid_res_side(x.shape[-2]), mid_res_side(x.shape[-1]))
            return F.interpolate(x, size=side, mode="bilinear", antialias=True,
                                 align_corners=False)
        return x

    def loss(
        self, learner_index: int, model: nn.Module, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy (forward-corrected once the network has a transition matrix; the
        generalized cross-entropy once :meth:`gce_with` switched it; plus the confidence
        penalty) on one batch, at half resolution in the first ``low_res_epochs`` epochs
        and at three quarters in the next ``mid_res_epochs``.
        The logged ``loss`` is the (corrected) cross-entropy either way. Grouped, the sum
        of every network's on its own batch (``batch`` is ``(networks, B)``), logged as the
        networks' mean."""
        if not self.grouped:
            logits = model(self._images(batch, epoch))
            return self._network_loss(learner_index, logits, batch, epoch)
        logits = model(GroupedSmallCNN.stack([self._images(b, epoch) for b in batch]))
        parts = [self._network_loss(k, logits[:, k], rows, epoch)
                 for k, rows in enumerate(batch)]
        stats = {key: sum(part[key] for _, part in parts) for key in ("loss", "acc", "count")}
        return torch.stack([loss for loss, _ in parts]).sum(), stats

    def _network_loss(
        self, k: int, logits: torch.Tensor, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Network ``k``'s objective on its batch's ``logits`` (see :meth:`loss`)."""
        y = self.data.labels[batch.to(self.data.labels.device)]
        transition = self.transitions[k]
        if transition is None:
            ce = F.cross_entropy(logits.float(), y)
        else:
            ce = forward_corrected_cross_entropy(logits, y, transition)
        q = self.gce_q[k]
        objective = ce if q is None else forward_corrected_gce(logits, y, q, transition)
        loss = objective + negative_entropy(logits) if self.penalty else objective
        n = len(batch)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).sum().item()
            if epoch == self.record_epoch:
                rows = batch.to(self.data.labels.device)
                self._recorded[k][rows] = logits.float().softmax(1)
                self._seen[k][rows] = True
        return loss, {"loss": ce.item() * n, "acc": acc, "count": n}
