"""``--method sce``: Symmetric Cross Entropy (Wang et al., ICCV 2019),
``alpha CE + beta RCE`` with ``log 0`` taken as ``A``."""

from __future__ import annotations

import torch

from ...data.batches import DeviceImages
from ..losses import symmetric_cross_entropy
from .robust import LossMethod


class SCE(LossMethod):
    """One network trained with the symmetric cross-entropy.

    Args:
        data: the decoded images and given labels.
        alpha: weight of the cross-entropy (the paper's CIFAR-10 value 0.1).
        beta: weight of the reverse cross-entropy (1.0).
        log_zero: ``A``, the value taken for ``log 0`` (-4).
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
    """

    name = "sce"

    def __init__(
        self,
        data: DeviceImages,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = -4.0,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__(data, batch_size, seed)
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`~noisyclean.train.losses.symmetric_cross_entropy`."""
        return symmetric_cross_entropy(logits, labels, self.alpha, self.beta, self.log_zero)
