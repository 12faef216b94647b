"""The scan's late loss (``scan --late-loss``): the forward-corrected generalized
cross-entropy against a hand computation and its analytic gradient, the rule that picks
it, the noise-rate estimate that feeds the rule, and the option end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.confident_joint import estimate_wrong_labels, noise_rate
from noisyclean.config import LATE_GCE_MIN_RATE, LATE_GCE_Q
from noisyclean.data.batches import DeviceImages
from noisyclean.scanning import late_loss_for
from noisyclean.train.losses import generalized_cross_entropy
from noisyclean.train.methods.warmup import Warmup, forward_corrected_gce

runner = CliRunner()
TINY = ["--epochs", "3", "--width", "8", "--batch-size", "16", "--quiet", "--no-amp"]


def test_forward_corrected_gce_by_hand() -> None:
    """logits (0, ln 3): p = (0.25, 0.75). Without T, label 0 costs (1 - 0.25^q) / q and
    label 1 (1 - 0.75^q) / q. With T = [[0.8, 0.2], [0.3, 0.7]], p @ T = (0.425, 0.575)
    (as in the forward-corrected cross-entropy's hand case), so the costs are
    (1 - 0.425^q) / q and (1 - 0.575^q) / q. At q = 1 it is 1 - p_y."""
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    labels = torch.tensor([0, 1])
    q = 0.7
    plain = forward_corrected_gce(logits, labels, q)
    assert plain.item() == pytest.approx(((1 - 0.25**q) + (1 - 0.75**q)) / (2 * q), rel=1e-6)
    assert plain.item() == pytest.approx(
        generalized_cross_entropy(logits, labels, q).mean().item(), rel=1e-6)
    transition = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    corrected = forward_corrected_gce(logits, labels, q, transition)
    assert corrected.item() == pytest.approx(
        ((1 - 0.425**q) + (1 - 0.575**q)) / (2 * q), rel=1e-6)
    assert forward_corrected_gce(logits, labels, 1.0).item() == pytest.approx(
        ((1 - 0.25) + (1 - 0.75)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="q must be"):
        forward_corrected_gce(logits, labels, 0.0)


def test_gce_gradient_is_the_cross_entropy_gradient_weighted_by_p_y_to_the_q() -> None:
    """d/dz (1 - p_y^q) / q = p_y^q * d/dz (-log p_y): a sample whose given label the
    network finds unlikely pulls less than under the cross-entropy, which is why the late
    loss fits wrong labels more slowly."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 5, generator=generator)
    label = torch.tensor([3])
    z1 = logits.clone().requires_grad_(True)
    forward_corrected_gce(z1, label, LATE_GCE_Q).backward()
    z2 = logits.clone().requires_grad_(True)
    F.cross_entropy(z2, label).backward()
    p_y = logits.softmax(1)[0, 3].item()
    torch.testing.assert_close(z1.grad, z2.grad * p_y**LATE_GCE_Q, rtol=1e-5, atol=1e-7)


def test_late_loss_rule() -> None:
    assert late_loss_for("auto", LATE_GCE_MIN_RATE - 0.01) == "ce"
    assert late_loss_for("auto", LATE_GCE_MIN_RATE) == "gce"
    assert late_loss_for("auto", 0.9) == "gce"
    assert late_loss_for("gce", 0.0) == "gce"
    assert late_loss_for("ce", 0.9) == "ce"
    with pytest.raises(ValueError, match="late loss must be one of ce, gce, auto"):
        late_loss_for("mae", 0.9)


def test_noise_rate_is_the_estimate_of_wrong_labels() -> None:
    """The hand case of test_confident_joint (calibrated joint x5 [[2 0 0], [1 1 0],
    [0 0 1]]: one of five labels wrong), and random predictions against
    estimate_wrong_labels."""
    probs = np.array([[0.5, 0.45, 0.05], [0.4, 0.1, 0.5], [0.1, 0.4, 0.5],
                      [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 0, 1, 1, 2])
    assert noise_rate(probs, labels) == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=200)
    labels = rng.integers(0, 4, size=200)
    expected = estimate_wrong_labels(probs, labels, ["a", "b", "c", "d"])["rate"]
    assert noise_rate(probs, labels) == pytest.approx(expected)


def test_warmup_switches_a_network_to_gce() -> None:
    """Only the network named switches, and a bad exponent is refused."""
    rng = np.random.default_rng(0)
    data = DeviceImages(rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8),
                        np.array([0, 1] * 4), torch.device("cpu"))
    method = Warmup(data, n_learners=2)
    assert method.gce_q == [None, None]
    method.gce_with(1, 0.7)
    assert method.gce_q == [None, 0.7]
    with pytest.raises(ValueError, match="q must be"):
        method.gce_with(0, 1.5)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_scan_late_loss_end_to_end(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gce`` and ``ce`` (the default) train the same first half and differ after it; the
    default records nothing and is ``ce``; ``auto`` follows
    the estimate: with the estimate forced above the threshold its table is byte for byte
    the ``gce`` scan's, below it the ``ce`` scan's; summary.json records the choice."""
    root, _ = digits_folder
    runs = {}
    for setting in ("gce", "ce", "default"):
        out = tmp_path / setting
        chosen = [] if setting == "default" else ["--late-loss", setting]
        result = runner.invoke(app, ["scan", str(root), "--out", str(out), *chosen, *TINY])
        assert result.exit_code == 0, result.output
        runs[setting] = out
    default = _summary(runs["default"])
    assert default["settings"]["late_loss"] == "ce" and "late_loss" not in default
    assert (runs["default"] / "scores.csv").read_bytes() == (runs["ce"] / "scores.csv").read_bytes()
    gce, ce = _summary(runs["gce"]), _summary(runs["ce"])
    assert gce["late_loss"]["loss"] == ["gce"] and gce["late_loss"]["from_epoch"] == 3
    assert gce["late_loss"]["gce_q"] == LATE_GCE_Q and gce["late_loss"]["min_rate"] is None
    assert "late_loss" not in ce and ce["settings"]["late_loss"] == "ce"
    losses = [[row["loss"] for row in s["training"]["epochs"]] for s in (gce, ce)]
    assert losses[0][:2] == losses[1][:2]
    assert losses[0][2] != losses[1][2]
    assert ((runs["gce"] / "scores.csv").read_bytes()
            != (runs["ce"] / "scores.csv").read_bytes())

    for forced, same_as in ((LATE_GCE_MIN_RATE + 0.1, "gce"), (LATE_GCE_MIN_RATE - 0.1, "ce")):
        monkeypatch.setattr("noisyclean.scanning.noise_rate", lambda probs, labels, r=forced: r)
        out = tmp_path / f"auto-{same_as}"
        result = runner.invoke(app, ["scan", str(root), "--out", str(out), "--late-loss",
                                     "auto", *TINY])
        assert result.exit_code == 0, result.output
        late = _summary(out)["late_loss"]
        assert late["setting"] == "auto" and late["min_rate"] == LATE_GCE_MIN_RATE
        assert late["loss"] == [same_as] and late["estimated_rate"] == [round(forced, 4)]
        assert (out / "scores.csv").read_bytes() == (runs[same_as] / "scores.csv").read_bytes()


def test_scan_late_loss_records_every_network_and_refuses_bad_values(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """With two networks each gets its own estimate and choice, recorded in order; the
    real estimate decides ``auto`` by the threshold; an unknown value is a usage error."""
    root, _ = digits_folder
    out = tmp_path / "two"
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), "--networks", "2",
                                 "--late-loss", "auto", *TINY])
    assert result.exit_code == 0, result.output
    late = _summary(out)["late_loss"]
    assert len(late["loss"]) == len(late["estimated_rate"]) == 2
    for loss, rate in zip(late["loss"], late["estimated_rate"], strict=True):
        assert 0.0 <= rate <= 1.0
        assert loss == ("gce" if rate >= LATE_GCE_MIN_RATE else "ce")
    bad = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "bad"),
                              "--late-loss", "mae", *TINY])
    assert bad.exit_code == 2 and "--late-loss must be one of ce, gce, auto" in bad.output
