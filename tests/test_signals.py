"""Per-sample signals: eval-mode losses, flip TTA, loss history."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noisyclean.data.batches import DeviceImages
from noisyclean.signals import LossHistory, compute_signals
from noisyclean.train.loop import Precision


class LeftRight(nn.Module):
    """Logits = (mean of the left half, mean of the right half) of channel 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        return torch.stack([x[:, 0, :, :w].mean((1, 2)), x[:, 0, :, w:].mean((1, 2))], 1)


def test_losses_and_tta_probabilities_against_hand_computation() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1])
    data = DeviceImages(images, labels, torch.device("cpu"))
    model = LeftRight()
    cpu = Precision(torch.device("cpu"))
    plain = compute_signals(model, data, cpu, batch_size=2)
    x = data.batch(torch.arange(5))
    logits = model(x)
    expected_loss = F.cross_entropy(logits, torch.tensor(labels), reduction="none")
    assert np.allclose(plain.per_sample_loss, expected_loss.numpy(), atol=1e-6)
    assert np.allclose(plain.probs, logits.softmax(1).numpy(), atol=1e-6)
    tta = compute_signals(model, data, cpu, batch_size=3, tta=True)
    mirrored = model(x.flip(-1)).softmax(1)
    assert np.allclose(tta.probs, (0.5 * (logits.softmax(1) + mirrored)).numpy(), atol=1e-6)
    assert np.allclose(tta.per_sample_loss, plain.per_sample_loss)  # loss stays unaugmented


def test_loss_history_keeps_the_last_epochs_normalised() -> None:
    history = LossHistory(2)
    history.add(np.array([0.0, 10.0, 5.0]))
    history.add(np.array([1.0, 3.0, 2.0]))   # -> 0, 1, 0.5
    history.add(np.array([4.0, 2.0, 0.0]))   # -> 1, 0.5, 0
    assert len(history.records) == 2
    # mean of the last two: (0.5, 0.75, 0.25) -> renormalised (0.5, 1, 0)
    assert history.mean() == pytest.approx([0.5, 1.0, 0.0])
    with pytest.raises(ValueError):
        LossHistory(3).mean()
