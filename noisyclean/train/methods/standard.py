"""The cross-entropy baseline of ``noisyclean train --method standard``: one network
trained on every sample with its given label (plus the confidence penalty with
``--penalty``), on the same loop, schedule and data path as DivideMix. Every method is
measured against it."""

from __future__ import annotations

from ...data.batches import DeviceImages
from .warmup import Warmup


class Standard(Warmup):
    """Cross-entropy training of one network on all samples for every epoch.

    Args:
        data: the decoded images and given labels.
        batch_size: samples per step.
        seed: seeds the shuffles and the augmentation.
        penalty: add the confidence penalty (negative entropy).
    """

    def __init__(
        self, data: DeviceImages, batch_size: int = 128, seed: int = 0, penalty: bool = False
    ) -> None:
        super().__init__(data, n_learners=1, batch_size=batch_size, seed=seed, penalty=penalty)
