"""``--method gce``: Generalized Cross Entropy (Zhang & Sabuncu, NeurIPS 2018),
``(1 - p_y^q) / q``, between cross-entropy (``q -> 0``) and MAE (``q = 1``)."""

from __future__ import annotations

import torch

from ...data.batches import DeviceImages
from ..losses import generalized_cross_entropy
from .robust import LossMethod


class GCE(LossMethod):
    """One network trained with the generalized cross-entropy.

    Args:
        data: the decoded images and given labels.
        q: the exponent, in ``(0, 1]`` (the paper's 0.7 by default).
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
    """

    name = "gce"

    def __init__(
        self, data: DeviceImages, q: float = 0.7, batch_size: int = 128, seed: int = 0
    ) -> None:
        super().__init__(data, batch_size, seed)
        self.q = q

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`~noisyclean.train.losses.generalized_cross_entropy` with ``q``."""
        return generalized_cross_entropy(logits, labels, self.q)
