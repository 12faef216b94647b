"""Per-sample signals: eval-mode losses, flip TTA, loss history."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noisyclean.data.batches import DeviceImages
from noisyclean.mixture import normalise_losses
from noisyclean.signals import (
    LossHistory,
    ScoreHistory,
    Signals,
    calibrated_margin,
    class_thresholds,
    compute_signals,
    eval_batch_size,
    fit_and_order_scores,
    fuse_parts,
    label_loss,
    network_scores,
    noise_score,
    order_score,
    rank_scale,
)
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


def test_default_eval_batch_is_smaller_on_the_cpu_and_changes_no_result() -> None:
    assert eval_batch_size(torch.device("cpu")) == 128
    assert eval_batch_size(torch.device("cuda")) == 512
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(300, 4, 4, 3), dtype=np.uint8)
    data = DeviceImages(images, rng.integers(0, 2, 300), torch.device("cpu"))
    cpu = Precision(torch.device("cpu"))
    default = compute_signals(LeftRight(), data, cpu, tta=True)  # three batches of <= 128
    whole = compute_signals(LeftRight(), data, cpu, batch_size=300, tta=True)
    assert np.allclose(default.probs, whole.probs, atol=1e-6)
    assert np.allclose(default.per_sample_loss, whole.per_sample_loss)


def test_signals_of_chosen_indices_are_those_rows_of_the_whole() -> None:
    """``indices`` (a fold's held-out samples) evaluates only those samples, in the given
    order, with the values a full pass gives them."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(40, 4, 4, 3), dtype=np.uint8)
    data = DeviceImages(images, rng.integers(0, 2, 40), torch.device("cpu"))
    cpu = Precision(torch.device("cpu"))
    whole = compute_signals(LeftRight(), data, cpu, batch_size=7, tta=True)
    chosen = np.array([31, 2, 17, 5, 39, 0, 22])
    for given in (chosen, torch.as_tensor(chosen)):
        part = compute_signals(LeftRight(), data, cpu, batch_size=3, tta=True, indices=given)
        assert part.per_sample_loss.shape == (7,) and part.probs.shape == (7, 2)
        assert np.allclose(part.per_sample_loss, whole.per_sample_loss[chosen])
        assert np.allclose(part.probs, whole.probs[chosen], atol=1e-6)
    with pytest.raises(ValueError, match="no samples"):
        compute_signals(LeftRight(), data, cpu, indices=np.array([], dtype=np.int64))


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


PROBS = np.array(
    [
        [0.8, 0.1, 0.1],  # labelled 0
        [0.4, 0.5, 0.1],  # labelled 0
        [0.1, 0.6, 0.3],  # labelled 1
        [0.2, 0.2, 0.6],  # labelled 1 (class-2 image with a wrong label)
        [0.1, 0.1, 0.8],  # labelled 2
    ]
)
LABELS = np.array([0, 0, 1, 1, 2])


def test_class_thresholds_are_mean_self_confidence_per_class() -> None:
    # class 0: (0.8 + 0.4) / 2; class 1: (0.6 + 0.2) / 2; class 2: 0.8
    assert class_thresholds(PROBS, LABELS) == pytest.approx([0.6, 0.4, 0.8])
    # a class with no samples gets threshold 1
    assert class_thresholds(PROBS[:2], LABELS[:2]) == pytest.approx([0.6, 1.0, 1.0])


def test_calibrated_margin_by_hand() -> None:
    # scaled rows p / (0.6, 0.4, 0.8):
    # [1.333, 0.25, 0.125] y=0 -> 0.25 - 1.333 = -1.0833
    # [0.667, 1.25, 0.125] y=0 -> 1.25 - 0.667 = 0.5833
    # [0.167, 1.5, 0.375] y=1 -> 0.375 - 1.5 = -1.125
    # [0.333, 0.5, 0.75] y=1 -> 0.75 - 0.5 = 0.25
    # [0.167, 0.25, 1.0] y=2 -> 0.25 - 1.0 = -0.75
    expected = [0.25 - 0.8 / 0.6, 1.25 - 0.4 / 0.6, 0.375 - 1.5, 0.25, -0.75]
    assert calibrated_margin(PROBS, LABELS) == pytest.approx(expected)


def test_calibration_sees_class_dependent_noise_that_the_loss_misses() -> None:
    # class 1 is predicted with low confidence in general (threshold 0.3): a class-1 sample
    # at p=0.3 is typical for it, while a class-0 sample at p=0.45 is far below class 0's
    # usual confidence and another class beats it: the loss ranks them the other way round
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.45, 0.05, 0.5],
         [0.35, 0.3, 0.35], [0.35, 0.3, 0.35], [0.1, 0.1, 0.8]]
    )
    labels = np.array([0, 0, 0, 1, 1, 2])
    loss = label_loss(probs, labels)
    margin = calibrated_margin(probs, labels)
    assert loss[3] > loss[2]
    assert margin[2] > margin[3]


def test_noise_scores_are_normalised_and_combine_both_signals() -> None:
    loss = -np.log(PROBS[np.arange(5), LABELS])
    assert label_loss(PROBS, LABELS) == pytest.approx(loss)
    assert noise_score(PROBS, LABELS, "loss") == pytest.approx(normalise_losses(loss))
    margin = calibrated_margin(PROBS, LABELS)
    assert noise_score(PROBS, LABELS, "margin") == pytest.approx(normalise_losses(margin))
    both = normalise_losses(normalise_losses(loss) + normalise_losses(margin))
    assert noise_score(PROBS, LABELS) == pytest.approx(both)
    assert noise_score(PROBS, LABELS, fusion="minmax") == pytest.approx(both)
    # hybrid (the default) fits the mixture on the min-max sum
    assert noise_score(PROBS, LABELS, fusion="hybrid") == pytest.approx(both)
    for fusion in ("rank", "minmax", "hybrid"):
        score = noise_score(PROBS, LABELS, fusion=fusion)
        assert score.min() == 0.0 and score.max() == 1.0
        # a single part is min-max normalised whatever the fusion
        assert noise_score(PROBS, LABELS, "loss", fusion) == pytest.approx(normalise_losses(loss))
    with pytest.raises(ValueError, match="unknown signal"):
        noise_score(PROBS, LABELS, "aum")
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        noise_score(PROBS, LABELS, fusion="sum")


def test_rank_scale_by_hand() -> None:
    # ranks 2, 4, 1, 3 -> (r - 1) / 3
    assert rank_scale(np.array([0.5, 9.0, -1.0, 2.0])) == pytest.approx([1 / 3, 1, 0, 2 / 3])
    # ties share their mean rank: 1.5, 1.5, 3, 4 -> (r - 1.5) / 2.5
    assert rank_scale(np.array([1.0, 1.0, 2.0, 7.0])) == pytest.approx([0, 0, 0.6, 1])
    assert rank_scale(np.array([3.0, 3.0])) == pytest.approx([0, 0])
    assert rank_scale(np.array([3.0])) == pytest.approx([0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        rank_scale(np.array([1.0, np.nan]))


def test_rank_fusion_by_hand() -> None:
    """The rank fusion adds each part's rank. Losses -log(0.8, 0.4, 0.6, 0.2, 0.8):
    ranks 1.5, 4, 3, 5, 1.5 (a tie) -> [0, 5/7, 3/7, 1, 0]; margins (hand case above)
    -1.083, 0.583, -1.125, 0.25, -0.75: ranks 2, 5, 1, 4, 3 -> [1/4, 1, 0, 3/4, 1/2].
    Sums 1/4, 12/7, 3/7, 7/4, 1/2, min-max normalised."""
    expected = [0, 41 / 42, 5 / 42, 1, 1 / 6]
    assert noise_score(PROBS, LABELS, "loss+margin", "rank") == pytest.approx(expected)


def test_rank_fusion_ignores_how_extreme_a_part_is() -> None:
    """Under min-max fusion, one sample whose loss lies far above the rest squeezes every
    other sample's loss part towards 0, so the other part alone orders them; under rank
    fusion nothing changes while the order does not."""
    loss = np.array([3.0, 2.0, 0.5, 0.2, 0.1])
    margin = np.array([0.9, -0.5, 0.4, 0.1, -0.2])
    far = loss.copy()
    far[0] = 50.0
    assert fuse_parts([loss, margin], "rank") == pytest.approx(fuse_parts([far, margin], "rank"))
    # minmax, samples 1 and 3: margin parts (m + 0.5) / 1.4 = 0 and 0.43; loss parts
    # (x - 0.1) / 2.9 = 0.66 and 0.03, then (x - 0.1) / 49.9 = 0.04 and 0.002
    near_mm, far_mm = fuse_parts([loss, margin], "minmax"), fuse_parts([far, margin], "minmax")
    assert near_mm[1] > near_mm[3]
    assert far_mm[1] < far_mm[3]  # with the loss squeezed, the margin decides
    assert fuse_parts([loss], "rank") == pytest.approx(normalise_losses(loss))
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse_parts([loss, margin], "mean")


def test_order_score_is_the_rank_fusion_for_hybrid_only() -> None:
    """hybrid orders by the rank fusion (the hand case above: [0, 41/42, 5/42, 1, 1/6]);
    minmax and rank order by their own score, and one part orders the same under any
    fusion, so there is no separate order score for them."""
    assert order_score(PROBS, LABELS) == pytest.approx([0, 41 / 42, 5 / 42, 1, 1 / 6])
    assert order_score(PROBS, LABELS, "loss+margin", "hybrid") == pytest.approx(
        noise_score(PROBS, LABELS, "loss+margin", "rank"))
    for signal, fusion in (("loss+margin", "minmax"), ("loss+margin", "rank"),
                           ("loss", "hybrid"), ("margin", "hybrid")):
        assert order_score(PROBS, LABELS, signal, fusion) is None
    # the pair, with the parts computed once, is the two scores
    for fusion in ("hybrid", "minmax", "rank"):
        fit, order = fit_and_order_scores(PROBS, LABELS, "loss+margin", fusion)
        assert np.array_equal(fit, noise_score(PROBS, LABELS, "loss+margin", fusion))
        expected = order_score(PROBS, LABELS, "loss+margin", fusion)
        assert (order is None) == (expected is None)
        assert order is None or np.array_equal(order, expected)
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        order_score(PROBS, LABELS, fusion="sum")
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        fit_and_order_scores(PROBS, LABELS, fusion="sum")
    with pytest.raises(ValueError, match="unknown signal"):
        order_score(PROBS, LABELS, "aum")


def test_score_history_records_the_fit_and_the_order_scores() -> None:
    hybrid, minmax = ScoreHistory(2), ScoreHistory(2)
    shifted = np.roll(PROBS, 1, axis=1)
    for probs in (PROBS, shifted, PROBS):
        hybrid.add(probs, LABELS, "loss+margin", "hybrid")
        minmax.add(probs, LABELS, "loss+margin", "minmax")
    both = [noise_score(p, LABELS, fusion="minmax") for p in (shifted, PROBS)]
    ranks = [noise_score(p, LABELS, fusion="rank") for p in (shifted, PROBS)]
    assert hybrid.fit.mean() == pytest.approx(normalise_losses(np.mean(both, axis=0)))
    assert hybrid.order.mean() == pytest.approx(normalise_losses(np.mean(ranks, axis=0)))
    assert minmax.fit.mean() == pytest.approx(hybrid.fit.mean())
    assert minmax.order.records == []


def test_network_scores_pairs_each_network_with_its_order_score() -> None:
    signals = [Signals(label_loss(p, LABELS), p) for p in (PROBS, np.roll(PROBS, 1, axis=1))]
    fit, order = network_scores(signals, LABELS, "loss+margin", "hybrid")
    assert order is not None and len(fit) == len(order) == 2
    for s, f, o in zip(signals, fit, order, strict=True):
        assert f == pytest.approx(noise_score(s.probs, LABELS, fusion="minmax"))
        assert o == pytest.approx(noise_score(s.probs, LABELS, fusion="rank"))
    fit, order = network_scores(signals, LABELS, "loss+margin", "rank")
    assert order is None
    assert fit[0] == pytest.approx(noise_score(PROBS, LABELS, fusion="rank"))
