"""Per-sample signals of a trained network: the cross-entropy loss on unaugmented input
(eval mode), its history over epochs, and predicted probabilities with flip test-time
augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.batches import DeviceImages
from .mixture import normalise_losses
from .train.loop import Precision


@dataclass
class Signals:
    """Per-sample outputs of one network, rows in sample order.

    Attributes:
        per_sample_loss: cross-entropy of the given label on the unaugmented image.
        probs: softmax probabilities (averaged with the mirrored image when ``tta``).
    """

    per_sample_loss: np.ndarray
    probs: np.ndarray


@torch.no_grad()
def compute_signals(
    model: nn.Module,
    data: DeviceImages,
    precision: Precision,
    batch_size: int = 512,
    tta: bool = False,
) -> Signals:
    """Evaluate ``model`` on every sample of ``data`` in eval mode.

    Args:
        model: a classifier.
        data: images and given labels.
        precision: autocast settings.
        batch_size: samples per forward pass.
        tta: also run the mirrored images and average the two softmax outputs (the loss is
            always computed on the unaugmented image).

    Returns:
        :class:`Signals` with ``per_sample_loss`` (N,) and ``probs`` (N, C), float64/float32.
    """
    was_training = model.training
    model.eval()
    losses, probs = [], []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        y = data.labels[idx.to(data.labels.device)]
        with precision.autocast():
            logits = model(data.batch(idx)).float()
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
        p = logits.softmax(1)
        if tta:
            with precision.autocast():
                p_flip = model(data.flipped(idx)).float().softmax(1)
            p = 0.5 * (p + p_flip)
        probs.append(p.cpu())
    model.train(was_training)
    return Signals(
        per_sample_loss=torch.cat(losses).double().numpy(),
        probs=torch.cat(probs).numpy(),
    )


class LossHistory:
    """Min-max normalised per-sample losses of the last ``size`` epochs, and their mean."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.records: list[np.ndarray] = []

    def add(self, per_sample_loss: np.ndarray) -> None:
        """Record one epoch's losses (normalised to [0, 1] before storing)."""
        self.records.append(normalise_losses(per_sample_loss))
        self.records = self.records[-self.size :]

    def mean(self) -> np.ndarray:
        """Mean of the stored normalised losses, renormalised to [0, 1]."""
        if not self.records:
            raise ValueError("no losses recorded")
        return normalise_losses(np.mean(self.records, axis=0))
