"""The shared shape of the single-network methods whose only difference from the
cross-entropy baseline is the per-sample loss (GCE, SCE, MAE, bootstrapping, label
smoothing): one network, every sample every epoch, the baseline's shuffles, augmentation and
batches (:class:`~noisyclean.train.methods.warmup.Warmup`), and the same checkpointed
generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...data.batches import DeviceImages
from .warmup import Warmup


class LossMethod(Warmup):
    """One network trained on all samples with :meth:`per_sample_loss` averaged per batch.

    Subclasses set :attr:`name` and implement :meth:`per_sample_loss`.

    Args:
        data: the decoded images and given labels.
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
    """

    name = "loss"

    def __init__(self, data: DeviceImages, batch_size: int = 128, seed: int = 0) -> None:
        super().__init__(data, n_learners=1, batch_size=batch_size, seed=seed)

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` losses of a batch (float32 logits, given labels)."""
        raise NotImplementedError

    def loss(
        self, learner_index: int, model: nn.Module, batch: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The method's loss on one augmented batch, with the batch's cross-entropy and
        accuracy as metrics."""
        x = self.data.batch(batch, augment=self.augment, generator=self.generator)
        y = self.data.labels[batch.to(self.data.labels.device)]
        logits = model(x).float()
        loss = self.per_sample_loss(logits, y).mean()
        n = len(batch)
        with torch.no_grad():
            ce = F.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).sum().item()
        return loss, {"loss": loss.item() * n, "ce": ce * n, "acc": acc, "count": n}
