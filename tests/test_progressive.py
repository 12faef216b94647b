"""Progressive resizing in the scan's warm-up: the schedule's arithmetic, the half-resolution
batches, the forward correction's start after them, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from noisyclean import scanning as scan_module
from noisyclean.cli import app
from noisyclean.config import ScanConfig
from noisyclean.data.batches import DeviceImages
from noisyclean.errors import NoisyCleanError
from noisyclean.progress import Progress
from noisyclean.scanning import (
    LOW_RES_COST,
    MID_RES_COST,
    Schedule,
    auto_epochs,
    correction_start,
    low_res_epochs_for,
    mid_res_epochs_for,
    progressive_schedule,
    resolve_schedule,
    schedule_text,
)
from noisyclean.train.loop import Precision, make_learner, one_cycle_lr, run_epochs
from noisyclean.train.methods.warmup import Warmup, mid_res_side

from .conftest import write_digits_folder

runner = CliRunner()


def test_progressive_schedule_spends_the_same_budget() -> None:
    """15 full-resolution epochs -> 6 at 16 px, 5 at 24 px and 10 at 32 px: 6 / 3 + 5 x 0.6
    = 5 epochs' time, exactly the budget; 25 -> 10, 8 and 17; each split costs the budget
    to within the rounding of its counts."""
    assert progressive_schedule(15) == Schedule(10, 6, 5)
    assert 10 + 6 * LOW_RES_COST + 5 * MID_RES_COST == pytest.approx(15)
    assert progressive_schedule(15).total == 21
    assert progressive_schedule(25) == (17, 10, 8)
    assert progressive_schedule(1) == (1, 1, 0)
    _assert_split_costs_the_budget()


def _assert_split_costs_the_budget() -> None:
    cost = (1 + scan_module.LOW_RES_SHARE * LOW_RES_COST
            + scan_module.MID_RES_SHARE * MID_RES_COST)
    for budget in range(1, 40):
        epochs, low, mid = progressive_schedule(budget)
        assert (low, mid) == (low_res_epochs_for(epochs), mid_res_epochs_for(epochs))
        spent = epochs + low * LOW_RES_COST + mid * MID_RES_COST
        assert abs(spent - budget) <= 0.5 * (cost + LOW_RES_COST + MID_RES_COST)


def test_progressive_schedule_without_three_quarter_resolution_epochs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule before 2026-12-05 (45% at half resolution, none at three quarters):
    15 -> 6 at 16 px, then 13 at 32 px (6 / 3 = 2 epochs' time); 25 -> 10 and 22."""
    monkeypatch.setattr(scan_module, "LOW_RES_SHARE", 0.45)
    monkeypatch.setattr(scan_module, "MID_RES_SHARE", 0.0)
    assert progressive_schedule(15) == (13, 6, 0)
    assert progressive_schedule(25) == (22, 10, 0)
    assert resolve_schedule(_config(), 10_000, 32, "small-cnn") == (13, 6, 0)
    _assert_split_costs_the_budget()


def _config(**kwargs) -> ScanConfig:
    return ScanConfig(data=Path("unused"), **kwargs)


def test_resolve_schedule_defaults_and_explicit_values() -> None:
    n = 10_000
    assert auto_epochs(n) == 15
    # the small CNN at 32 px and more: the budget split
    assert resolve_schedule(_config(), n, 32, "small-cnn") == (10, 6, 5)
    assert resolve_schedule(_config(), n, 64, "small-cnn") == (10, 6, 5)
    # smaller images, other backbones, AUM: the whole budget at full resolution
    assert resolve_schedule(_config(), n, 16, "small-cnn") == (15, 0, 0)
    assert resolve_schedule(_config(), n, 224, "resnet18") == (15, 0, 0)
    assert resolve_schedule(_config(signal="aum"), n, 32, "small-cnn") == (15, 0, 0)
    # explicit epochs keep their count; the resized epochs follow them (60% and 50%)
    assert resolve_schedule(_config(epochs=10), n, 32, "small-cnn") == (10, 6, 5)
    assert resolve_schedule(_config(epochs=20), n, 32, "small-cnn") == (20, 12, 10)
    assert resolve_schedule(_config(epochs=10), n, 16, "small-cnn") == (10, 0, 0)
    # --low-res-epochs 0: the budget at full resolution, exactly the scan without it
    assert resolve_schedule(_config(low_res_epochs=0), n, 32, "small-cnn") == (15, 0, 0)
    # explicit low-resolution epochs alone: none at three quarters, with or without --epochs
    assert resolve_schedule(_config(low_res_epochs=3), n, 32, "small-cnn") == (15, 3, 0)
    assert resolve_schedule(_config(epochs=13, low_res_epochs=6), n, 32, "small-cnn") == (
        13, 6, 0)  # the default before 2026-12-05
    # explicit low-resolution epochs, on any backbone, before the full-resolution ones
    assert resolve_schedule(_config(low_res_epochs=3), n, 224, "resnet18") == (15, 3, 0)
    assert resolve_schedule(_config(epochs=4, low_res_epochs=2), n, 16, "small-cnn") == (
        4, 2, 0)
    # explicit three-quarter-resolution epochs replace the automatic ones, on any backbone
    assert resolve_schedule(_config(mid_res_epochs=2), n, 32, "small-cnn") == (10, 6, 2)
    assert resolve_schedule(_config(mid_res_epochs=3), n, 224, "resnet18") == (15, 0, 3)
    assert resolve_schedule(_config(mid_res_epochs=0), n, 32, "small-cnn") == (10, 6, 0)
    assert resolve_schedule(_config(low_res_epochs=0, mid_res_epochs=3), n, 32,
                            "small-cnn") == (15, 0, 3)
    assert resolve_schedule(_config(epochs=10, low_res_epochs=6, mid_res_epochs=5), n, 32,
                            "small-cnn") == (10, 6, 5)
    assert resolve_schedule(_config(epochs=4, low_res_epochs=2, mid_res_epochs=1), n, 16,
                            "small-cnn") == (4, 2, 1)
    # another budget than auto_epochs (benchmarks/detect.py --epochs): split the same way
    assert resolve_schedule(_config(), n, 32, "small-cnn", budget=25) == progressive_schedule(25)
    assert resolve_schedule(_config(), n, 16, "small-cnn", budget=25) == (25, 0, 0)
    assert resolve_schedule(_config(epochs=10), n, 32, "small-cnn", budget=25) == (10, 6, 5)
    for option in ("low_res_epochs", "mid_res_epochs"):
        flag = "--" + option.replace("_", "-")
        with pytest.raises(NoisyCleanError, match=f"{flag} is not supported with"):
            resolve_schedule(_config(signal="aum", **{option: 2}), n, 32, "small-cnn")
        with pytest.raises(NoisyCleanError, match=f"{flag} needs images of at least 16 px"):
            resolve_schedule(_config(**{option: 2}), n, 8, "small-cnn")


def test_schedule_text() -> None:
    """The log line's and the summary table's wording of a schedule."""
    assert (schedule_text(Schedule(10, 6, 5), 32)
            == "6 epochs at 16 px, 5 at 24 px, then 10 at 32 px")
    assert schedule_text(Schedule(13, 6), 32) == "6 epochs at 16 px, then 13 at 32 px"
    assert schedule_text(Schedule(4, 0, 2), 64) == "2 epochs at 48 px, then 4 at 64 px"
    assert schedule_text(Schedule(15), 32) == "15 epochs"
    assert schedule_text(Schedule(1), 32) == "1 epoch"
    assert schedule_text(Schedule(2, 1, 1), 32) == "1 epoch at 16 px, 1 at 24 px, then 2 at 32 px"
    assert [mid_res_side(side) for side in (32, 64, 16, 30)] == [24, 48, 12, 22]


def test_correction_starts_after_a_full_resolution_epoch() -> None:
    """6 + 13 epochs (the default before 2026-12-05): from epoch 10 (0-based), as for 19
    epochs without resizing; with
    most epochs at half resolution, only after the first epoch above it; None when no
    epoch is left after it."""
    assert correction_start(19, 6) == correction_start(19) == 10
    # 6 + 5 + 10 (the default): the first full-resolution epoch, estimated from the last
    # three-quarter-resolution one
    assert correction_start(21, 6) == 11
    assert correction_start(8, 6) == 7
    assert correction_start(3, 2) is None
    assert correction_start(15, 0) == 8


class _ShapeRecorder(nn.Module):
    """A linear classifier on the mean colour that records the side of every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.sides: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sides.append(x.shape[-1])
        return self.fc(x.mean(dim=(2, 3)))


def test_warmup_trains_the_first_epochs_on_half_resolution_batches() -> None:
    """The first ``low_res_epochs`` epochs see the augmented batches average-pooled to half
    the side, the values being the means of 2x2 blocks; the later ones the full images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    data = DeviceImages(images, np.arange(16) % 2, torch.device("cpu"))
    method = Warmup(data, batch_size=8, seed=0, augment=False, low_res_epochs=2)
    model = _ShapeRecorder()
    for epoch in range(4):
        for k, batch in method.batches(epoch):
            method.loss(k, model, batch, epoch)
    # one batch of 16 per half-resolution epoch (twice the batch), two of 8 per full one
    assert model.sides == [16] * 2 + [32] * 4

    seen: list[torch.Tensor] = []
    model.forward = lambda x: (seen.append(x), model.fc(x.mean(dim=(2, 3))))[1]
    batch = torch.arange(8)
    method.loss(0, model, batch, 0)
    full = data.batch(batch, augment=False)
    torch.testing.assert_close(seen[0], full.reshape(8, 3, 16, 2, 16, 2).mean(dim=(3, 5)))


def test_warmup_trains_the_middle_epochs_on_three_quarter_resolution_batches() -> None:
    """After the half-resolution epochs, ``mid_res_epochs`` epochs see the augmented batches
    resized to 24 px (in batches of ``batch_size``), what PIL's bilinear resize of the
    images gives; then the full images."""
    from PIL import Image

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    data = DeviceImages(images, np.arange(16) % 2, torch.device("cpu"))
    method = Warmup(data, batch_size=8, seed=0, augment=False, low_res_epochs=1,
                    mid_res_epochs=2)
    assert [method.batch_size_at(e) for e in range(4)] == [16, 8, 8, 8]
    model = _ShapeRecorder()
    for epoch in range(4):
        for k, batch in method.batches(epoch):
            method.loss(k, model, batch, epoch)
    assert model.sides == [16] + [24] * 4 + [32] * 2

    seen: list[torch.Tensor] = []
    model.forward = lambda x: (seen.append(x), model.fc(x.mean(dim=(2, 3))))[1]
    batch = torch.arange(8)
    method.loss(0, model, batch, 1)
    assert seen[0].shape == (8, 3, 24, 24)
    mean = torch.tensor(data.mean).view(3, 1, 1)
    std = torch.tensor(data.std).view(3, 1, 1)
    for i in range(8):
        resized = np.stack([
            np.asarray(Image.fromarray(images[i, :, :, c].astype(np.float32), mode="F")
                       .resize((24, 24), Image.BILINEAR))
            for c in range(3)])
        expected = (torch.from_numpy(resized) / 255.0 - mean) / std
        torch.testing.assert_close(seen[0][i], expected, atol=1e-4, rtol=1e-4)


def _random_data(n: int = 200) -> DeviceImages:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return DeviceImages(images, np.arange(n) % 3, torch.device("cpu"))


def _two_and_two(data: DeviceImages, resized_batches: str = "double") -> Warmup:
    """Batches of 16, two epochs at half resolution and two at three quarters first."""
    return Warmup(data, batch_size=16, low_res_epochs=2, mid_res_epochs=2,
                  resized_batches=resized_batches)


def test_half_resolution_epochs_take_twice_the_batch_and_the_schedule_spans_them() -> None:
    """Half-resolution epochs step on batches of twice ``batch_size`` (at most all the
    samples), full ones on ``batch_size``; ``total_steps`` counts both, so a one-cycle
    schedule over it ends at 0 on the warm-up's last step, as ``warm_up`` sets it."""
    data = _random_data(100)
    method = Warmup(data, batch_size=16, seed=0, low_res_epochs=2)
    assert [method.batch_size_at(e) for e in range(4)] == [32, 32, 16, 16]
    assert [method.steps_per_epoch(e) for e in range(4)] == [3, 3, 6, 6]
    assert [[len(b) for _, b in method.batches(e)] for e in (0, 3)] == [[32] * 3, [16] * 6]
    assert method.total_steps(4) == 18
    two = Warmup(data, n_learners=2, batch_size=16, low_res_epochs=1)
    assert two.steps_per_epoch(0) == 6 and two.total_steps(3) == 3 + 6 + 6
    assert Warmup(data, batch_size=64, low_res_epochs=1).batch_size_at(0) == 100

    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(3 * 16, 3))
    learner = make_learner(model, 0.1, 0.9, 0.0, method.total_steps(4))
    lrs: list[float] = []
    run_epochs([learner], method, range(4), Precision.choose(torch.device("cpu"), False),
               Progress(quiet=True), lambda epoch, stats: lrs.append(learner.set_lr()))
    assert learner.step == 18
    assert lrs[-1] == 0.0 and lrs[-2] > 0.0  # the schedule ends exactly with the warm-up


def test_resized_batches_pixels_keep_a_full_resolution_batch_of_pixels(tmp_path) -> None:
    """``resized_batches="pixels"``: four times ``batch_size`` at half resolution, twice at
    three quarters, ``batch_size`` at full (capped at the samples); the default doubles
    the half-resolution batch only. The scan takes it from ``--resized-batches`` and
    refuses other values."""
    data = _random_data()
    pixels = _two_and_two(data, "pixels")
    assert [pixels.batch_size_at(e) for e in range(6)] == [64, 64, 32, 32, 16, 16]
    assert pixels.total_steps(6) == 2 * 3 + 2 * 6 + 2 * 12
    assert [[len(b) for _, b in pixels.batches(e)] for e in (0, 2, 4)] == [
        [64] * 3, [32] * 6, [16] * 12]
    double = _two_and_two(data)
    assert [double.batch_size_at(e) for e in range(6)] == [32, 32, 16, 16, 16, 16]
    capped = Warmup(data, batch_size=64, low_res_epochs=1, mid_res_epochs=1,
                    resized_batches="pixels")
    assert [capped.batch_size_at(e) for e in range(3)] == [200, 128, 64]
    with pytest.raises(ValueError, match="resized_batches"):
        Warmup(data, resized_batches="triple")

    root = tmp_path / "images"
    write_digits_folder(root, size=32)
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "bad"),
                                 "--resized-batches", "triple", "--quiet"])
    assert result.exit_code != 0
    assert "--resized-batches must be one of double, pixels, pixels-lr" in result.output


def test_resized_batches_pixels_lr_scales_the_learning_rate_with_the_batch(tmp_path) -> None:
    """``pixels-lr``: the batches of ``pixels`` and twice the scheduled learning rate in
    the resized epochs (where ``pixels`` doubles ``double``'s batch), the schedule's own at
    full resolution. A learner applies the factor of the epoch it is in; the scan's
    logged learning rates are ``pixels``'s, doubled in the resized epochs only."""
    data = _random_data()
    scaled = _two_and_two(data, "pixels-lr")
    assert [scaled.batch_size_at(e) for e in range(6)] == [64, 64, 32, 32, 16, 16]
    assert [scaled.lr_factor_at(e) for e in range(6)] == [2, 2, 2, 2, 1, 1]
    assert scaled.scales_lr()
    for other in ("pixels", "double"):
        plain = _two_and_two(data, other)
        assert [plain.lr_factor_at(e) for e in range(6)] == [1] * 6
        assert not plain.scales_lr()
    assert not Warmup(data, batch_size=16, resized_batches="pixels-lr").scales_lr()

    learner = make_learner(nn.Linear(2, 2), 0.1, 0.9, 0.0, total_steps=10)
    learner.lr_scale = scaled.lr_factor_at
    learner.step, learner.epoch = 5, 1
    assert learner.set_lr() == pytest.approx(2 * one_cycle_lr(5, 10, 0.1))
    learner.epoch = 4
    assert learner.set_lr() == pytest.approx(one_cycle_lr(5, 10, 0.1))
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(one_cycle_lr(5, 10, 0.1))

    root = tmp_path / "images"
    write_digits_folder(root, size=32)
    lrs = {}
    for option in ("pixels", "pixels-lr"):
        summary, _ = _scan_epochs(root, tmp_path / option, "--low-res-epochs", "1",
                                  "--mid-res-epochs", "1", "--resized-batches", option,
                                  "--quiet")
        assert summary["settings"]["resized_batches"] == option
        lrs[option] = [epoch["lr"] for epoch in summary["training"]["epochs"]]
    assert len(lrs["pixels"]) == 4
    assert lrs["pixels-lr"][:2] == pytest.approx([2 * lr for lr in lrs["pixels"][:2]])
    assert lrs["pixels-lr"][2:] == pytest.approx(lrs["pixels"][2:])


def _scan_epochs(root: Path, out: Path, *options: str) -> tuple[dict, str]:
    """Scan ``root`` with --epochs 2 and ``options``: its summary.json and its output on one
    line (rich wraps long lines)."""
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), "--epochs", "2",
                                 "--workers", "1", *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text()), " ".join(result.output.split())


def test_scan_cli_with_low_res_epochs(tmp_path: Path) -> None:
    """A 32 px digits folder: with explicit --epochs 2 the scan adds one half-resolution
    epoch (60% of 2, rounded) and one at 24 px (50% of 2), reports them in summary.json,
    the log and the table, starts the forward correction after them, and flags the same
    kind of labels; --low-res-epochs 1 alone leaves out the 24 px epoch; --low-res-epochs 0
    trains two epochs at full resolution."""
    root = tmp_path / "digits32"
    write_digits_folder(root, size=32)
    summary, shown = _scan_epochs(root, tmp_path / "out")
    assert summary["image_size"] == 32
    settings = summary["settings"]
    assert (settings["epochs"], settings["low_res_epochs"], settings["mid_res_epochs"]) == (
        2, 1, 1)
    assert (summary["training"]["low_res_epochs"], summary["training"]["mid_res_epochs"]) == (
        1, 1)
    assert len(summary["training"]["epochs"]) == 4
    assert summary["correction"]["from_epoch"] == 3  # 1-based: after the 24 px epoch 2
    # the log line, then the summary's warm-up row
    assert shown.count("1 epoch at 16 px, 1 at 24 px, then 2 at 32 px") == 2, shown

    summary, shown = _scan_epochs(root, tmp_path / "low", "--low-res-epochs", "1")
    assert (summary["training"]["low_res_epochs"], summary["training"]["mid_res_epochs"]) == (
        1, 0)
    assert len(summary["training"]["epochs"]) == 3
    assert summary["correction"]["from_epoch"] == 3  # after the full-resolution epoch 2
    assert shown.count("1 epoch at 16 px, then 2 at 32 px") == 2, shown

    summary, shown = _scan_epochs(root, tmp_path / "plain", "--low-res-epochs", "0")
    assert summary["training"]["low_res_epochs"] == 0
    assert len(summary["training"]["epochs"]) == 2
    assert "2 epochs at 32 px" in shown

    bad = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "bad"),
                              "--low-res-epochs", "-1"])
    assert bad.exit_code == 2 and "--low-res-epochs must be 0 or more" in bad.output
    bad = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "bad"),
                              "--mid-res-epochs", "-1"])
    assert bad.exit_code == 2 and "--mid-res-epochs must be 0 or more" in bad.output
    bad = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "bad"),
                              "--signal", "aum", "--low-res-epochs", "2"])
    assert bad.exit_code == 2 and "not supported with --signal aum" in bad.output


def test_small_datasets_get_a_smaller_budget() -> None:
    """15 * sqrt(n / 5000), rounded half up, at least 6, and 15 from 5,000 images on: a
    small dataset's network is scored before it learns its wrong labels by heart."""
    budgets = {10: 6, 500: 6, 1000: 7, 1797: 9, 2000: 9, 3000: 12, 4000: 13, 4999: 15,
               5000: 15, 10_000: 15, 50_000: 15}
    assert {n: auto_epochs(n) for n in budgets} == budgets
    # the full-resolution epochs after progressive resizing: 4, 5, 6, 8, 9 and 10
    full = {n: resolve_schedule(_config(), n, 32, "small-cnn").epochs
            for n in (500, 1000, 2000, 3000, 4000, 10_000)}
    assert full == {500: 4, 1000: 5, 2000: 6, 3000: 8, 4000: 9, 10_000: 10}
    # 2,250 images: 15 * sqrt(0.45) = 10.06, and 1,250: 7.5 rounds half up to 8
    assert auto_epochs(2250) == 10 and auto_epochs(1250) == 8
