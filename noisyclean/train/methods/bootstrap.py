"""``--method bootstrap``: hard or soft bootstrapping (Reed et al., ICLR 2015 workshop),
cross-entropy against a mix of the given label and the network's own prediction."""

from __future__ import annotations

from typing import Any

import torch

from ...data.batches import DeviceImages
from ..losses import BOOTSTRAP_BETA, bootstrap_loss
from .robust import LossMethod


class Bootstrap(LossMethod):
    """One network trained with a fixed-weight bootstrapping loss.

    Args:
        data: the decoded images and given labels.
        mode: ``hard`` (the one-hot prediction) or ``soft`` (the predicted distribution).
        beta: weight of the given label; None takes Reed et al.'s value (0.8 hard,
            0.95 soft).
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
    """

    name = "bootstrap"

    def __init__(
        self,
        data: DeviceImages,
        mode: str = "hard",
        beta: float | None = None,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__(data, batch_size, seed)
        self.mode = mode
        self.beta = BOOTSTRAP_BETA[mode] if beta is None else beta

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` records about the run: the mode and the weight used (Reed
        et al.'s value when none was given)."""
        return {"mode": self.mode, "beta": self.beta}

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`~noisyclean.train.losses.bootstrap_loss`."""
        return bootstrap_loss(logits, labels, self.beta, self.mode)
