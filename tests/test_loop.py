"""The training loop, its schedule, and the warm-up method (CE + confidence penalty)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisyclean.data.batches import DeviceImages
from noisyclean.models import build_model
from noisyclean.progress import Progress
from noisyclean.train.loop import Precision, make_learner, one_cycle_lr, run_epochs
from noisyclean.train.methods.warmup import Warmup, negative_entropy, penalty_confidence_cap


def test_one_cycle_lr_hand_values() -> None:
    # 10 steps, 20% warm-up: up over steps 0..1, then linear down to 0 at step 10
    assert one_cycle_lr(0, 10, 1.0) == pytest.approx(0.1)
    assert one_cycle_lr(1, 10, 1.0) == pytest.approx(0.55)
    assert one_cycle_lr(2, 10, 1.0) == pytest.approx(1.0)
    assert one_cycle_lr(6, 10, 1.0) == pytest.approx(0.5)
    assert one_cycle_lr(10, 10, 1.0) == pytest.approx(0.0)


def test_negative_entropy_hand_values() -> None:
    uniform = torch.zeros(2, 4)
    assert negative_entropy(uniform).item() == pytest.approx(-math.log(4))
    confident = torch.tensor([[100.0, 0.0, 0.0]])
    assert negative_entropy(confident).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25)
    expected = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert negative_entropy(logits).item() == pytest.approx(expected)


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_the_penalty_confidence_cap_is_where_free_logits_settle(classes: int) -> None:
    """Free logits of one sample, trained on cross-entropy plus the confidence penalty until
    they stop moving, give its label the cap's probability; the cap solves its equation."""
    cap = penalty_confidence_cap(classes)
    assert math.log(cap * (classes - 1) / (1 - cap)) == pytest.approx(1 / cap, rel=1e-9)
    logits = torch.zeros(1, classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")
    label = torch.tensor([0])

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        log_p = torch.log_softmax(logits, dim=1)
        loss = torch.nn.functional.nll_loss(log_p, label) + (log_p.exp() * log_p).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    assert torch.softmax(logits, 1)[0, 0].item() == pytest.approx(cap, abs=1e-6)
    assert {2: 0.78, 3: 0.68, 10: 0.48}[classes] == pytest.approx(cap, abs=0.005)
    with pytest.raises(ValueError):
        penalty_confidence_cap(1)


def _separable(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 2
    images = np.zeros((n, 8, 8, 3), dtype=np.uint8)
    images[labels == 1] = 255
    images += np.random.default_rng(0).integers(0, 30, size=images.shape, dtype=np.uint8)
    return images, labels


def test_warmup_batches_cover_every_sample_once_per_network() -> None:
    images, labels = _separable(64)
    data = DeviceImages(images, labels, torch.device("cpu"))
    method = Warmup(data, n_learners=2, batch_size=16)
    pairs = list(method.batches(0))
    assert len(pairs) == method.steps_per_epoch(0) == 8
    for k in (0, 1):
        seen = torch.cat([b for j, b in pairs if j == k])
        assert sorted(seen.tolist()) == list(range(64))


def test_confidence_penalty_is_added_to_the_loss() -> None:
    images, labels = _separable(32)
    data = DeviceImages(images, labels, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("small-cnn", 2, width=4).eval()
    batch = torch.arange(8)
    plain = Warmup(data, augment=False).loss(0, model, batch, 0)[0]
    with_penalty = Warmup(data, augment=False, penalty=True).loss(0, model, batch, 0)[0]
    logits = model(data.batch(batch))
    ce = F.cross_entropy(logits, data.labels[batch])
    assert plain.item() == pytest.approx(ce.item(), rel=1e-5)
    assert with_penalty.item() == pytest.approx((ce + negative_entropy(logits)).item(), rel=1e-5)


def test_run_epochs_learns_a_separable_problem() -> None:
    images, labels = _separable(64)
    data = DeviceImages(images, labels, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("small-cnn", 2, width=8)
    method = Warmup(data, batch_size=16, seed=0)
    epochs = 4
    learner = make_learner(model, 0.05, 0.9, 5e-4, method.steps_per_epoch(0) * epochs)
    seen = []
    log = run_epochs([learner], method, range(epochs), Precision(torch.device("cpu")),
                     Progress(quiet=True), lambda e, s: seen.append(e))
    assert seen == [0, 1, 2, 3]
    assert learner.step == 16
    assert log[-1]["acc"] > 0.95
    assert log[-1]["loss"] < log[0]["loss"]
    assert {"loss", "acc", "lr", "seconds", "images_per_s"} <= set(log[0])


def test_step_cost_benchmark_runs() -> None:
    """``benchmarks/step_cost.py`` (a script, not a timed test) runs the warm-up's real
    epochs at every side and batch and prints both tables."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "step_cost.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--steps", "2"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    for side in (16, 24, 32):
        assert f"| {side} px |" in result.stdout
    assert "| default scan (6 + 5 + 10) | 2808 |" in result.stdout
    assert "| plain recipe (15 at 32 px) | 1170 |" in result.stdout


def test_weight_decay_falls_on_weights_not_on_biases_and_norms() -> None:
    """One SGD step with zero gradients and no momentum moves only the convolution's and
    the linear layer's weights, each by ``-lr * weight_decay * w``; biases and the batch
    norm's scale and shift stay (DivideMix's reference decays every parameter; see the
    README)."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 2))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    learner = make_learner(model, lr=0.1, momentum=0.0, weight_decay=0.5, total_steps=1,
                           schedule="step")
    for group in learner.optimizer.param_groups:
        group["lr"] = 0.1
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    learner.optimizer.step()
    for name, p in model.named_parameters():
        decayed = name in ("0.weight", "3.weight")
        expected = before[name] * (1 - 0.1 * 0.5) if decayed else before[name]
        assert torch.allclose(p.detach(), expected, atol=1e-7), name
