"""The pieces of DivideMix against hand-computed values: sharpening, co-refinement,
co-guessing, MixMatch mixing, the three losses, the lambda_u ramp, the confidence penalty,
the division by threshold and its guards, the automatic choices, the step schedule and the
checkpointed random states."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.models import build_model
from noisyclean.train.checkpoint import rng_state, set_rng_state
from noisyclean.train.divide import co_divide, divide_by_threshold, guard_division
from noisyclean.train.loop import make_learner, step_lr
from noisyclean.train.methods.dividemix import (
    asymmetry_threshold,
    choose_lambda_u,
    choose_loss_history,
    choose_penalty,
    choose_tau,
    pair_share,
)
from noisyclean.train.methods.warmup import negative_entropy
from noisyclean.train.mixmatch import (
    co_guess,
    co_refine,
    linear_rampup,
    mix_weight,
    mixmatch,
    sample_mix_weight,
    sharpen,
    soft_cross_entropy,
    squared_error,
    uniform_prior_loss,
)


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------- sharpen


def test_sharpen_hand_values() -> None:
    # T = 0.5 squares and renormalises: (0.36, 0.16) / 0.52
    out = sharpen(t([[0.6, 0.4]]), 0.5)
    assert out[0].tolist() == pytest.approx([9 / 13, 4 / 13])
    out3 = sharpen(t([[0.5, 0.3, 0.2]]), 0.5)  # (0.25, 0.09, 0.04) / 0.38
    assert out3[0].tolist() == pytest.approx([0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38])
    assert sharpen(t([[0.6, 0.4]]), 1.0)[0].tolist() == pytest.approx([0.6, 0.4])
    with pytest.raises(ValueError):
        sharpen(t([[0.5, 0.5]]), 0.0)


# --------------------------------------------------------------------------- co-refine / guess


def test_co_refine_hand_values() -> None:
    labels = t([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    w = t([0.8, 0.0, 1.0])
    # M = 2 augmentations; row means (0.2, 0.5, 0.3), (0.3, 0.2, 0.5), (0.5, 0.25, 0.25)
    probs = t([
        [[0.3, 0.5, 0.2], [0.2, 0.2, 0.6], [0.6, 0.2, 0.2]],
        [[0.1, 0.5, 0.4], [0.4, 0.2, 0.4], [0.4, 0.3, 0.3]],
    ])
    plain = co_refine(labels, w, probs, temperature=1.0)
    assert plain[0].tolist() == pytest.approx([0.84, 0.10, 0.06])  # 0.8 y + 0.2 p
    assert plain[1].tolist() == pytest.approx([0.3, 0.2, 0.5])  # w = 0: the prediction
    assert plain[2].tolist() == pytest.approx([0.0, 0.0, 1.0])  # w = 1: the label
    sharp = co_refine(labels, w, probs, temperature=0.5)
    total = 0.84**2 + 0.10**2 + 0.06**2  # 0.7192
    assert sharp[0].tolist() == pytest.approx([0.7056 / total, 0.01 / total, 0.0036 / total])


def test_co_guess_averages_both_networks_and_augmentations() -> None:
    mine = t([[[0.5, 0.5]], [[0.7, 0.3]]])  # (M=2, B=1, C=2)
    other = t([[[0.9, 0.1]], [[0.3, 0.7]]])
    # mean of the four predictions is (0.6, 0.4); sharpened with T = 0.5: (9/13, 4/13)
    assert co_guess(mine, other, 1.0)[0].tolist() == pytest.approx([0.6, 0.4])
    assert co_guess(mine, other, 0.5)[0].tolist() == pytest.approx([9 / 13, 4 / 13])


# --------------------------------------------------------------------------- MixMatch


def test_mix_weight_is_the_larger_side_of_a_beta_quantile() -> None:
    # Beta(1, 1) is uniform: lambda = u, lambda' = max(u, 1 - u)
    assert mix_weight(1.0, 0.2) == pytest.approx(0.8)
    assert mix_weight(1.0, 0.9) == pytest.approx(0.9)
    # Beta(2, 2) has CDF 3x^2 - 2x^3; F(0.25) = 0.15625, so lambda = 0.25, lambda' = 0.75
    assert mix_weight(2.0, 0.15625) == pytest.approx(0.75)
    # symmetric Beta: the median is 0.5 and u, 1 - u give the same lambda'
    assert mix_weight(4.0, 0.5) == pytest.approx(0.5)
    assert mix_weight(4.0, 0.3) == pytest.approx(mix_weight(4.0, 0.7))


def test_sampled_mix_weights_follow_beta_4_4_and_stay_above_half() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = np.array([sample_mix_weight(4.0, generator) for _ in range(4000)])
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    # I_0.75(4, 4) = sum_{j=4..7} C(7, j) 0.75^j 0.25^(7-j) = 0.929443...; so
    # P(lambda' > 0.75) = 2 (1 - 0.929443) = 0.141113
    assert np.mean(draws > 0.75) == pytest.approx(0.141113, abs=0.025)
    # the same seed gives the same draws (the generator is what a checkpoint stores)
    again = torch.Generator().manual_seed(0)
    assert sample_mix_weight(4.0, again) == draws[0]


def test_mixmatch_mixes_inputs_and_targets_with_lambda_prime() -> None:
    inputs = t([[0.0], [10.0], [20.0]])
    targets = t([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    perm = torch.tensor([2, 0, 1])
    # lambda = 0.3 becomes lambda' = 0.7: each sample keeps 70% of itself
    mixed, mixed_targets = mixmatch(inputs, targets, 0.3, perm)
    assert mixed[:, 0].tolist() == pytest.approx([6.0, 7.0, 17.0])
    assert mixed_targets.tolist() == [
        pytest.approx([0.7, 0.0, 0.3]),
        pytest.approx([0.3, 0.7, 0.0]),
        pytest.approx([0.0, 0.3, 0.7]),
    ]
    same, _ = mixmatch(inputs, targets, 0.7, perm)
    assert same.tolist() == mixed.tolist()


# --------------------------------------------------------------------------- losses


def test_soft_cross_entropy_and_squared_error_hand_values() -> None:
    logits = t([[0.0, 0.0], [math.log(3.0), 0.0]])  # softmax (0.5, 0.5) and (0.75, 0.25)
    # L_x: row 1: -log 0.5; row 2 with target (0.5, 0.5): -(0.5 log 0.75 + 0.5 log 0.25)
    expected_x = (math.log(2) + 0.5 * (-math.log(0.75) - math.log(0.25))) / 2
    assert soft_cross_entropy(logits, t([[1, 0], [0.5, 0.5]])).item() == pytest.approx(
        expected_x
    )
    # L_u: squared errors (0.25, 0.25, 0, 0), mean over batch and classes = 0.125
    assert squared_error(logits, t([[1, 0], [0.75, 0.25]])).item() == pytest.approx(0.125)


def test_uniform_prior_loss_hand_values() -> None:
    # predictions (0.9, 0.1) and (0.7, 0.3): mean (0.8, 0.2);
    # L_reg = 0.5 log(0.5 / 0.8) + 0.5 log(0.5 / 0.2) = 0.5 log 1.5625
    logits = t([[math.log(9.0), 0.0], [math.log(7.0 / 3.0), 0.0]])
    assert uniform_prior_loss(logits).item() == pytest.approx(0.5 * math.log(1.5625))
    balanced = t([[math.log(9.0), 0.0], [0.0, math.log(9.0)]])  # mean (0.5, 0.5)
    assert uniform_prior_loss(balanced).item() == pytest.approx(0.0, abs=1e-12)


def test_lambda_u_ramps_linearly_over_16_epochs_after_warmup() -> None:
    assert linear_rampup(5.0, 10, 16, 25.0) == 0.0  # still warming up
    assert linear_rampup(10.0, 10, 16, 25.0) == 0.0  # first DivideMix step
    assert linear_rampup(14.0, 10, 16, 25.0) == pytest.approx(6.25)
    assert linear_rampup(18.0, 10, 16, 25.0) == pytest.approx(12.5)
    assert linear_rampup(10.5, 10, 16, 16.0) == pytest.approx(0.5)  # fractional epochs
    assert linear_rampup(26.0, 10, 16, 25.0) == pytest.approx(25.0)
    assert linear_rampup(300.0, 10, 16, 25.0) == pytest.approx(25.0)
    assert linear_rampup(10.0, 10, 0, 25.0) == 25.0  # no ramp


def test_confidence_penalty_hand_value() -> None:
    # p = (0.5, 0.25, 0.25): sum p log p = 0.5 log 0.5 + 0.5 log 0.25 = -1.0397...
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    assert negative_entropy(logits).item() == pytest.approx(
        0.5 * math.log(0.5) + 0.5 * math.log(0.25)
    )


# --------------------------------------------------------------------------- division


def test_division_by_threshold() -> None:
    clean_prob = np.array([0.9, 0.5, 0.49, 0.1, 0.7, 0.2])
    assert divide_by_threshold(clean_prob, 0.5).tolist() == [True, True, False, False, True,
                                                             False]
    assert divide_by_threshold(clean_prob, 0.6).tolist() == [True, False, False, False, True,
                                                             False]


def test_guard_fills_an_empty_unlabelled_set_with_the_least_clean() -> None:
    w = np.array([0.9, 0.8, 0.95, 0.7, 0.99, 0.85])
    labels = np.array([0, 1, 0, 1, 0, 1])
    mask, events = guard_division(w, divide_by_threshold(w, 0.5), labels, ["a", "b"], 2, 1)
    assert np.flatnonzero(~mask).tolist() == [1, 3]  # w 0.8 and 0.7
    assert len(events) == 1 and "unlabelled set had 0" in events[0]


def test_guard_fills_the_unlabelled_set_when_every_class_has_one_image() -> None:
    """Ten classes of one image each: every class is down to its one labelled sample, so
    the class-keeping top-up moves none; the four least clean move all the same (an empty
    unlabelled set made the MixMatch loss NaN)."""
    w = np.array([0.9, 0.3, 0.8, 0.1, 0.7, 0.6, 0.2, 0.95, 0.4, 0.5])
    labels = np.arange(10)
    mask, events = guard_division(w, np.ones(10, bool), labels, list("abcdefghij"), 4, 1)
    assert sorted(np.flatnonzero(~mask).tolist()) == [1, 3, 6, 8]  # w 0.3, 0.1, 0.2, 0.4
    assert "moved the 0 labelled one(s)" in events[0]
    assert events[1].startswith("moved 4 more, though their classes then keep fewer than 1")


def test_dividemix_trains_on_classes_of_one_image(tmp_path: Path) -> None:
    """The smallest dataset a run takes, ten images of ten classes, through DivideMix
    epochs: finite losses, no 'diverged' stop."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c in range(10):
        (root / f"c{c}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
            root / f"c{c}" / "0.png")
    result = CliRunner().invoke(app, ["train", str(root), "--out", str(tmp_path / "run"),
                                      "--epochs", "3", "--warmup-epochs", "1", "--width", "4",
                                      "--batch-size", "4", "--quiet", "--no-cache"])
    assert result.exit_code == 0, result.output
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["loss_u"][1:]).all()


def test_guard_fills_an_empty_labelled_set_and_restores_a_vanished_class() -> None:
    w = np.array([0.1, 0.2, 0.3, 0.05, 0.15, 0.25])
    labels = np.array([0, 0, 1, 1, 0, 1])
    mask, events = guard_division(w, divide_by_threshold(w, 0.5), labels, ["a", "b"], 2, 1)
    # top two by w are 2 (0.3) and 5 (0.25), both class b; class a gets back sample 1 (0.2)
    assert np.flatnonzero(mask).tolist() == [1, 2, 5]
    assert "labelled set had 0" in events[0]
    assert "class 'a' kept 0" in events[1]
    assert len(events) == 2


def test_guard_restores_a_vanished_class_only() -> None:
    w = np.array([0.9, 0.8, 0.2, 0.3, 0.7, 0.6])
    labels = np.array([0, 0, 1, 1, 0, 0])
    mask, events = guard_division(w, divide_by_threshold(w, 0.5), labels, ["a", "b"], 1, 1)
    assert np.flatnonzero(mask).tolist() == [0, 1, 3, 4, 5]
    assert events == ["class 'b' kept 0 labelled sample(s): added back its 1 with the highest "
                      "clean probability"]
    untouched, none = guard_division(w, w >= 0.25, labels, ["a", "b"], 1, 1)
    assert untouched.tolist() == (w >= 0.25).tolist() and none == []


def test_co_divide_gives_each_network_the_other_networks_division() -> None:
    rng = np.random.default_rng(0)
    n = 60
    loss_1 = rng.uniform(0.0, 0.1, n)
    loss_1[:10] = rng.uniform(0.9, 1.0, 10)  # network 1 thinks 0..9 are noisy
    loss_2 = rng.uniform(0.0, 0.1, n)
    loss_2[50:] = rng.uniform(0.9, 1.0, 10)  # network 2 thinks 50..59 are noisy
    labels = np.arange(n) % 3
    first, second = co_divide([loss_1, loss_2], labels, ["a", "b", "c"], tau=0.5)
    assert first.unlabelled.tolist() == list(range(50, 60))  # from network 2's mixture
    assert second.unlabelled.tolist() == list(range(10))  # from network 1's mixture
    assert len(first.labelled) == len(second.labelled) == 50
    assert first.events == [] and second.events == []


# --------------------------------------------------------------------------- automatic choices


def test_automatic_lambda_u_tau_and_loss_history() -> None:
    assert choose_lambda_u(0.18)[0] == 0.0  # 20% symmetric in the paper's convention
    assert choose_lambda_u(0.20)[0] == 0.0  # 40% asymmetric
    assert choose_lambda_u(0.45)[0] == 25.0  # 50% symmetric
    assert choose_lambda_u(0.72)[0] == 25.0  # 80% symmetric
    assert choose_lambda_u(0.81)[0] == 50.0  # 90% symmetric
    assert choose_tau(0.45)[0] == 0.5 and choose_tau(0.81)[0] == 0.6
    assert choose_loss_history(0.45)[0] == 1 and choose_loss_history(0.81)[0] == 5
    assert "25" in choose_lambda_u(0.45)[1]  # the reason names the value


def test_pair_share_and_the_automatic_penalty() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([1, 1, 2, 0, 0, 2])
    # suspects 0..4; class 0 -> {1: 2, 2: 1}, class 1 -> {0: 2}: share (2 + 2) / 5
    assert pair_share(labels, predicted, np.full(6, 0.1), 3) == (pytest.approx(0.8), 5)
    clean_first = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1])  # sample 0 is not suspect
    assert pair_share(labels, predicted, clean_first, 3) == (pytest.approx(0.75), 4)
    assert pair_share(labels, labels, np.full(6, 0.1), 3) == (0.0, 0)
    assert asymmetry_threshold(3) == pytest.approx(0.75)
    assert asymmetry_threshold(10) == pytest.approx(5 / 9)
    assert choose_penalty(0.2, 0.8, 100, 10)[0] is True
    assert choose_penalty(0.2, 0.3, 100, 10)[0] is False
    assert choose_penalty(0.2, 0.9, 100, 2)[0] is False  # two classes
    assert choose_penalty(0.01, 0.9, 100, 10)[0] is False  # hardly any noise
    assert choose_penalty(0.2, 0.9, 10, 10)[0] is False  # too few suspects


# --------------------------------------------------------------------------- schedule, RNG


def test_step_schedule_divides_by_ten_mid_run() -> None:
    assert step_lr(0, 0.02, (150,)) == pytest.approx(0.02)
    assert step_lr(149, 0.02, (150,)) == pytest.approx(0.02)
    assert step_lr(150, 0.02, (150,)) == pytest.approx(0.002)
    assert step_lr(25, 1.0, (10, 20)) == pytest.approx(0.01)
    learner = make_learner(build_model("small-cnn", 2, width=4), 0.02, 0.9, 5e-4, 0,
                           schedule="step", drop_epochs=(3,), nesterov=False)
    learner.epoch = 2
    assert learner.set_lr() == pytest.approx(0.02)
    learner.epoch = 3
    assert learner.set_lr() == pytest.approx(0.002)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.002)
    assert learner.optimizer.param_groups[0]["nesterov"] is False


def test_rng_state_round_trip() -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    state = rng_state()
    first = (torch.rand(3).tolist(), np.random.rand(3).tolist())
    torch.manual_seed(99)
    np.random.seed(99)
    set_rng_state(state)
    assert (torch.rand(3).tolist(), np.random.rand(3).tolist()) == first


def test_one_dividemix_step_is_algorithm_1_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DivideMix.mixmatch_loss``, one whole step, against Algorithm 1 written out by hand
    with plain tensor operations: co-refinement of the labelled targets by the network's
    own two views, co-guessing of the unlabelled ones by both networks' four predictions,
    both sharpened at T = 0.5; the concatenated batch mixed with a permutation of itself
    at lambda' from the step's generator; cross-entropy on the mixed labelled rows, squared
    error on the mixed unlabelled ones with lambda_u ramped by fractional epoch, plus the
    uniform prior."""
    from torch import nn
    from torch.nn import functional as F

    from noisyclean.data.batches import DeviceImages
    from noisyclean.train.loop import Precision
    from noisyclean.train.methods.dividemix import DivideMix, MixBatch

    torch.manual_seed(0)
    c = 3
    rng = np.random.default_rng(0)
    data = DeviceImages(rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8),
                        np.arange(10) % c, torch.device("cpu"))
    nets = [nn.Sequential(nn.Flatten(), nn.Linear(48, c)) for _ in range(2)]
    method = DivideMix(data, nets, ["a", "b", "c"], Precision(torch.device("cpu")),
                       warmup_epochs=10, batch_size=3, lambda_u=25.0, tau=0.5,
                       penalty=False, loss_history=1)
    labelled, unlabelled = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7])
    w = torch.tensor([0.9, 0.2, 0.6])
    views = [torch.randn(3, 3, 4, 4) for _ in range(4)]  # x view 1, x view 2, u view 1, 2
    queue = list(views)
    monkeypatch.setattr(data, "batch", lambda *args, **kwargs: queue.pop(0))
    state = method.generator.get_state()
    loss, _ = method.mixmatch_loss(0, nets[0], MixBatch(labelled, w, unlabelled, 3, 8), 12)

    g = torch.Generator()
    g.set_state(state)
    lam = mix_weight(4.0, torch.rand(1, generator=g, dtype=torch.float64).item())
    own, other = nets
    with torch.no_grad():
        p = (own(views[0]).softmax(1) + own(views[1]).softmax(1)) / 2
        y = torch.eye(c)[data.labels[labelled]]
        refined = (w[:, None] * y + (1 - w[:, None]) * p) ** 2  # sharpened: power 1 / T
        refined = refined / refined.sum(1, keepdim=True)
        guessed = sum(net(v).softmax(1) for net in nets for v in views[2:]) / 4
        guessed = guessed**2 / (guessed**2).sum(1, keepdim=True)
    inputs = torch.cat(views)
    targets = torch.cat([refined, refined, guessed, guessed])
    perm = torch.randperm(12, generator=g)
    mixed = lam * inputs + (1 - lam) * inputs[perm]
    mixed_targets = lam * targets + (1 - lam) * targets[perm]
    logits = own(mixed)
    loss_x = -(F.log_softmax(logits[:6], 1) * mixed_targets[:6]).sum(1).mean()
    loss_u = ((logits[6:].softmax(1) - mixed_targets[6:]) ** 2).mean()
    lambda_u = 25.0 * min(max((12 + 3 / 8 - 10) / 16, 0.0), 1.0)
    mean_p = logits.softmax(1).mean(0)
    loss_reg = (torch.log((1 / c) / mean_p) / c).sum()
    expected = loss_x + lambda_u * loss_u + loss_reg
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0.5 <= lam <= 1.0 and not queue  # the four views were each taken once


def test_loss_history_averages_the_last_epochs_normalised_losses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--loss-history 2``: each epoch's co-divide fits the mixture to the min-max
    normalised mean of the last two epochs' min-max normalised losses, per network; the
    epoch before those two drops out."""
    from types import SimpleNamespace

    from torch import nn

    import noisyclean.train.methods.dividemix as dm
    from noisyclean.data.batches import DeviceImages
    from noisyclean.train.loop import Precision

    data = DeviceImages(np.zeros((4, 4, 4, 3), dtype=np.uint8), np.array([0, 1, 0, 1]),
                        torch.device("cpu"))
    nets = [nn.Sequential(nn.Flatten(), nn.Linear(48, 2)) for _ in range(2)]
    method = dm.DivideMix(data, nets, ["a", "b"], Precision(torch.device("cpu")),
                          warmup_epochs=1, batch_size=2, lambda_u=0.0, tau=0.5,
                          penalty=False, loss_history=2)
    # per epoch, per network: raw losses of the four samples
    epochs = [
        ([0.0, 1.0, 2.0, 4.0], [1.0, 1.0, 3.0, 5.0]),
        ([2.0, 2.0, 4.0, 6.0], [0.0, 2.0, 0.0, 4.0]),
        ([1.0, 3.0, 5.0, 1.0], [6.0, 3.0, 0.0, 0.0]),
    ]
    feed = iter(epochs)
    monkeypatch.setattr(method, "_signals", lambda: [
        SimpleNamespace(per_sample_loss=np.array(raw)) for raw in next(feed)])
    seen: list[list[np.ndarray]] = []

    def capture(fit_inputs: list[np.ndarray], *args: object, **kwargs: object) -> list:
        seen.append([np.array(x) for x in fit_inputs])
        return []

    monkeypatch.setattr(dm, "co_divide", capture)
    for epoch in (1, 2, 3):
        method.start_epoch(epoch)
    # epoch 1 alone, network 1: (0, 1, 2, 4) / 4
    assert seen[0][0] == pytest.approx([0.0, 0.25, 0.5, 1.0])
    # epoch 2, network 1: mean of (0, .25, .5, 1) and (0, 0, .5, 1) = (0, .125, .5, 1)
    assert seen[1][0] == pytest.approx([0.0, 0.125, 0.5, 1.0])
    # network 2: (0, 0, .5, 1) and (0, .5, 0, 1): mean (0, .25, .25, 1)
    assert seen[1][1] == pytest.approx([0.0, 0.25, 0.25, 1.0])
    # epoch 3, network 1: epochs 2 and 3 only: (0, 0, .5, 1) and (0, .5, 1, 0): mean
    # (0, .25, .75, .5), min-max normalised again: (0, 1/3, 1, 2/3)
    assert seen[2][0] == pytest.approx([0.0, 1 / 3, 1.0, 2 / 3])
    # network 2: (0, .5, 0, 1) and (1, .5, 0, 0): mean (.5, .5, 0, .5) -> (1, 1, 0, 1)
    assert seen[2][1] == pytest.approx([1.0, 1.0, 0.0, 1.0])
