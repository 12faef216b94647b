"""``--method mae``: mean absolute error on the predicted probabilities (Ghosh et al.,
AAAI 2017), ``2 (1 - p_y)``: provably robust to symmetric noise, slow to fit."""

from __future__ import annotations

import torch

from ..losses import mean_absolute_error
from .robust import LossMethod


class MAE(LossMethod):
    """One network trained with the mean absolute error.

    Args:
        data: the decoded images and given labels.
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
    """

    name = "mae"

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`~noisyclean.train.losses.mean_absolute_error`."""
        return mean_absolute_error(logits, labels)
