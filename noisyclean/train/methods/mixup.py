"""``--method mixup``: mixup training (Zhang et al., ICLR 2018): each step trains on
``lam x_i + (1 - lam) x_j`` with the loss ``lam CE(y_i) + (1 - lam) CE(y_j)``,
``lam ~ Beta(alpha, alpha)`` and ``j`` a random partner from the same batch.

The Beta draw (by inverse CDF from a uniform number) and the partners come from the
method's generator, so a resumed run draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import nn

from ...data.batches import DeviceImages
from ..losses import mixup, mixup_cross_entropy
from .robust import LossMethod

#: ``Beta(alpha, alpha)`` of the mixup paper at 50% and 80% label noise on CIFAR-10 and of
#: M-DYR-H (Arazo et al. 2019); the mixup paper used 8 at 20% noise and 1 on clean CIFAR.
DEFAULT_MIXUP_ALPHA = 32.0


def beta_quantile(alpha: float, uniform: float) -> float:
    """The ``uniform``-quantile of ``Beta(alpha, alpha)`` (a uniform draw in, a Beta draw
    out): ``uniform`` itself for ``alpha = 1``, 0.5 for ``uniform = 0.5``."""
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    return float(betaincinv(alpha, alpha, float(np.clip(uniform, 0.0, 1.0))))


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """Draw ``lam ~ Beta(alpha, alpha)`` from one uniform number of ``generator``."""
    return beta_quantile(alpha, torch.rand(1, generator=generator, dtype=torch.float64).item())


class Mixup(LossMethod):
    """One network trained with mixup.

    Args:
        data: the decoded images and given labels.
        alpha: ``Beta(alpha, alpha)`` of the mixing weight.
        batch_size: samples per step.
        seed: seeds the shuffles, the augmentation and the mixing.
    """

    name = "mixup"

    def __init__(
        self,
        data: DeviceImages,
        alpha: float = DEFAULT_MIXUP_ALPHA,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__(data, batch_size, seed)
        self.alpha = alpha

    def loss(
        self, learner_index: int, model: nn.Module, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """mixup's loss on one augmented, mixed batch; the accuracy counts a prediction of
        the sample's own given label (the one of weight ``lam``)."""
        x = self.data.batch(batch, augment=self.augment, generator=self.generator)
        y = self.data.labels[batch.to(self.data.labels.device)]
        lam = sample_lambda(self.alpha, self.generator)
        perm = torch.randperm(len(batch), generator=self.generator)
        logits = model(mixup(x, lam, perm)).float()
        loss = mixup_cross_entropy(logits, y, lam, perm).mean()
        n = len(batch)
        with torch.no_grad():
            ce = F.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).sum().item()
        return loss, {"loss": loss.item() * n, "ce": ce * n, "acc": acc, "count": n}
