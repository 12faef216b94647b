"""``--method label-smoothing``: cross-entropy against ``(1 - eps) y + eps / C``
(Szegedy et al., CVPR 2016); a mild regulariser that keeps the network from becoming
certain of any label, right or wrong."""

from __future__ import annotations

import torch

from ...data.batches import DeviceImages
from ..losses import smoothed_targets, soft_target_cross_entropy
from .robust import LossMethod


class LabelSmoothing(LossMethod):
    """One network trained on smoothed labels.

    Args:
        data: the decoded images and given labels.
        smoothing: ``eps`` in ``[0, 1)`` (0.1, Szegedy et al.'s value).
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
    """

    name = "label-smoothing"

    def __init__(
        self, data: DeviceImages, smoothing: float = 0.1, batch_size: int = 128, seed: int = 0
    ) -> None:
        super().__init__(data, batch_size, seed)
        self.smoothing = smoothing

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`~noisyclean.train.losses.soft_target_cross_entropy` on
        :func:`~noisyclean.train.losses.smoothed_targets`."""
        targets = smoothed_targets(labels, logits.shape[1], self.smoothing)
        return soft_target_cross_entropy(logits, targets.to(logits.device))
