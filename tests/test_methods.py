"""The training methods beside DivideMix: co-teaching's selection and forget-rate schedule,
dynamic bootstrapping's weights from a Beta mixture, mixup's draws (hand-computed values);
then every method end to end through the CLI on a tiny folder, resumes, and bad options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.config import METHOD_HELP, METHODS, TrainConfig
from noisyclean.data.batches import DeviceImages
from noisyclean.mixture import BetaMixture
from noisyclean.outputs.table import SCORE_COLUMNS
from noisyclean.progress import Progress
from noisyclean.signals import compute_signals
from noisyclean.train.loop import Precision
from noisyclean.train.losses import dynamic_bootstrap_loss
from noisyclean.train.methods.coteaching import (
    CoTeaching,
    coteaching_losses,
    forget_rate_schedule,
    remembered,
    small_loss_indices,
)
from noisyclean.train.methods.dynamic_bootstrap import (
    DynamicBootstrap,
    NoiseModel,
    fit_noise_model,
)
from noisyclean.train.methods.mixup import beta_quantile, sample_lambda
from noisyclean.train.run import train

runner = CliRunner()
STRINGS = {"label": str, "predicted": str, "suggested_label": str}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- co-teaching


def test_forget_rate_schedule_ramps_linearly_to_tau_over_t_k_epochs() -> None:
    rates = [forget_rate_schedule(e, 0.5, 10) for e in (0, 1, 5, 9, 10, 25)]
    assert rates == pytest.approx([0.0, 0.05, 0.25, 0.45, 0.5, 0.5])
    assert forget_rate_schedule(3, 0.2, 1) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        forget_rate_schedule(1, 0.5, 0)


def test_remembered_counts_like_the_reference_code() -> None:
    assert remembered(10, 0.3) == 7
    assert remembered(10, 0.7) == 3  # (1 - 0.7) * 10 = 3.0000000000000004
    assert remembered(10, 0.9) == 1  # (1 - 0.9) * 10 = 0.9999999999999998: guarded
    assert remembered(128, 0.2) == 102  # floor(102.4)
    assert remembered(5, 0.99) == 1  # never an empty batch
    assert remembered(8, 0.0) == 8


def test_small_loss_indices_keep_the_smallest_in_order() -> None:
    losses = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    assert small_loss_indices(losses, 0.5).tolist() == [1, 5, 3]
    assert small_loss_indices(losses, 0.0).tolist() == [1, 5, 3, 2, 4, 0]
    ties = torch.tensor([0.2, 0.1, 0.2, 0.1])
    assert small_loss_indices(ties, 0.5).tolist() == [1, 3]  # ties in batch order


def test_each_network_learns_from_the_other_networks_small_loss_samples() -> None:
    y = torch.zeros(4, dtype=torch.long)
    # two classes, label 0: CE = ln(1 + e^-z) for logits (z, 0)
    logits_1 = torch.tensor([[3.0, 0], [2.0, 0], [1.0, 0], [0.0, 0]], requires_grad=True)
    logits_2 = torch.tensor([[0.0, 0], [1.0, 0], [2.0, 0], [3.0, 0]], requires_grad=True)
    # network 1's CE: 0.048587, 0.126928, 0.313262, 0.693147 (network 2's reversed)
    loss_1, loss_2, kept_1, kept_2 = coteaching_losses(logits_1, logits_2, y, 0.5)
    assert kept_1.tolist() == [3, 2]  # network 2's two smallest losses
    assert kept_2.tolist() == [0, 1]  # network 1's two smallest losses
    # network 1 is trained on samples 3 and 2: (0.693147 + 0.313262) / 2
    assert loss_1.item() == pytest.approx(0.503204, abs=1e-6)
    assert loss_2.item() == pytest.approx(0.503204, abs=1e-6)
    loss_1.backward()
    assert logits_1.grad[:2].abs().sum() == 0 and logits_1.grad[2:].abs().sum() > 0
    assert logits_2.grad is None  # no gradient crosses between the networks


def _tiny_images(n: int = 8) -> DeviceImages:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
    return DeviceImages(images, np.arange(n) % 2, torch.device("cpu"))


def _linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 2))


def test_coteaching_step_pairs_both_forward_passes_before_either_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _tiny_images()
    models = [_linear(0), _linear(1)]
    method = CoTeaching(data, models, Precision(torch.device("cpu")), forget_rate=0.5,
                        num_gradual=4, batch_size=8, correct=np.array([True] * 6 + [False] * 2))
    fixed = data.batch(torch.arange(8))
    monkeypatch.setattr(data, "batch", lambda idx, augment=False, generator=None: fixed[idx])
    method.start_epoch(2)
    assert method.rate == pytest.approx(0.25)  # 0.5 * 2 / 4
    (k1, batch), (k2, same) = list(method.batches(2))[:2]
    assert (k1, k2) == (0, 1) and torch.equal(batch, same)
    with pytest.raises(RuntimeError):
        method.loss(1, models[1], batch, 2)
    loss_1, metrics_1 = method.loss(0, models[0], batch, 2)
    y = data.labels[batch]
    expected = coteaching_losses(models[0](fixed[batch]), models[1](fixed[batch]), y, 0.25)
    assert loss_1.item() == pytest.approx(expected[0].item())
    assert metrics_1["count"] == 8 and metrics_1["forget_rate"] == pytest.approx(0.25 * 8)
    # label precision of what network 1 trained on: correct[batch[kept_1]]
    precision_1 = np.array([True] * 6 + [False] * 2)[batch[expected[2]].numpy()].mean()
    assert metrics_1["label_precision"] == pytest.approx(precision_1 * 8)
    loss_2, _ = method.loss(1, models[1], batch, 2)
    assert loss_2.item() == pytest.approx(expected[1].item())
    loss_2.backward()
    assert all(p.grad is None for p in models[0].parameters())


def test_coteaching_keeps_every_sample_until_the_rate_is_estimated() -> None:
    data = _tiny_images()
    method = CoTeaching(data, [_linear(0), _linear(1)], Precision(torch.device("cpu")),
                        forget_rate=None, num_gradual=10, warmup_epochs=3, batch_size=8)
    assert [method.forget_rate_at(e) for e in range(3)] == [0.0, 0.0, 0.0]
    assert [method.phase(e) for e in (2, 3)] == ["warm-up", "coteaching"]
    method.settings["forget_rate"] = 0.4  # as the estimate at epoch 3 would set it
    assert method.forget_rate_at(3) == pytest.approx(0.12)  # the paper's schedule: 0.4 * 3/10
    assert method.forget_rate_at(12) == pytest.approx(0.4)
    given = CoTeaching(data, [_linear(0), _linear(1)], Precision(torch.device("cpu")),
                       forget_rate=0.5, num_gradual=10, warmup_epochs=3)
    assert given.warmup_epochs == 0 and given.forget_rate_at(0) == 0.0
    assert given.forget_rate_at(2) == pytest.approx(0.1)


# --------------------------------------------------------------------------- dynamic bootstrap


def _hand_bmm(weights: tuple[float, float]) -> BetaMixture:
    """Clean Beta(2, 5) and noisy Beta(5, 2), set by hand."""
    model = BetaMixture()
    model.weights_ = np.array(weights)
    model.alphas_ = np.array([2.0, 5.0])
    model.betas_ = np.array([5.0, 2.0])
    model.means_ = model.alphas_ / (model.alphas_ + model.betas_)
    return model


def test_dynamic_bootstrap_weights_from_a_hand_made_beta_mixture() -> None:
    # equal weights: posterior of Beta(5, 2) = x^3 / (x^3 + (1 - x)^3) (the 30 x (1-x)
    # factors cancel): at x = 0.2: 0.008 / 0.52, at 0.5: 1/2, at 0.8: 0.512 / 0.52
    noise = NoiseModel.from_mixture(_hand_bmm((0.5, 0.5)), 0, low=0.5, high=9.5)
    losses = np.array([2.3, 5.0, 7.7])  # (loss - 0.5) / 9 = 0.2, 0.5, 0.8
    assert noise.weights(losses) == pytest.approx([0.0153846, 0.5, 0.9846154], abs=1e-6)
    # outside the percentiles: clipped to 0 and 1, weights clipped to [1e-4, 1 - 1e-4]
    assert noise.weights(np.array([-3.0, 20.0])) == pytest.approx([1e-4, 1 - 1e-4])
    # weights 0.8 / 0.2 at x = 0.2: 0.2 * 0.0384 / (0.8 * 2.4576 + 0.2 * 0.0384) = 0.0038911
    skewed = NoiseModel.from_mixture(_hand_bmm((0.8, 0.2)), 0, low=0.5, high=9.5)
    assert skewed.weights(np.array([2.3, 5.0])) == pytest.approx([0.0038911, 0.2], abs=1e-6)


def test_dynamic_bootstrap_reads_each_samples_weight_from_the_epoch_start_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the weights a step uses are the mixture's posteriors of the samples' own unaugmented
    # eval-mode losses, not a lookup from the (higher) losses of the augmented batch
    rng = np.random.default_rng(1)
    n = 64
    images = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    data = DeviceImages(images, rng.integers(0, 2, n), torch.device("cpu"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    method = DynamicBootstrap(data, model, Precision(torch.device("cpu")), warmup_epochs=1,
                              batch_size=16, lambda_r=0.0)
    method.start_epoch(1)
    losses = compute_signals(model, data, Precision(torch.device("cpu"))).per_sample_loss
    expected = method.noise_model.weights(losses)
    assert expected.std() > 0.05  # the weights differ between samples
    seen = []
    for _, batch in method.batches(1):
        _, metrics = method.loss(0, model, batch, 1)
        assert metrics["noise_weight"] == pytest.approx(expected[batch.numpy()].sum(), rel=1e-5)
        seen.append(batch)
    assert torch.cat(seen).sort().values.tolist() == list(range(n))
    # the step's loss is the bootstrapping loss with those weights and the batch's argmax
    fixed = data.batch(torch.arange(n), augment=True, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(data, "batch", lambda idx, augment=False, generator=None: fixed[idx])
    batch = torch.arange(16)
    loss, _ = method.loss(0, model, batch, 1)
    logits = model(fixed[batch])
    w = torch.as_tensor(expected[:16], dtype=torch.float32)
    manual = dynamic_bootstrap_loss(logits, data.labels[batch], logits.argmax(1), w).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)


def test_noise_posterior_table_is_non_decreasing() -> None:
    # a U-shaped noisy component Beta(0.5, 0.5) wins again at the left edge; the table must
    # not call the lowest losses noisy
    model = BetaMixture()
    model.weights_ = np.array([0.7, 0.3])
    model.alphas_ = np.array([2.0, 0.5])
    model.betas_ = np.array([8.0, 0.5])
    model.means_ = model.alphas_ / (model.alphas_ + model.betas_)
    raw = model.predict_proba(np.array([0.001, 0.1]))[:, 1]
    assert raw[0] > raw[1]  # the raw posterior does rise at the edge
    noise = NoiseModel.from_mixture(model, 0, low=0.0, high=1.0)
    assert np.all(np.diff(noise.noisy) >= -1e-12)
    assert noise.weights(np.array([0.001]))[0] <= noise.weights(np.array([0.1]))[0]


def test_fit_noise_model_normalises_by_percentiles_and_finds_the_high_losses() -> None:
    flat = fit_noise_model(np.linspace(0.0, 10.0, 101))
    assert (flat.low, flat.high) == pytest.approx((0.5, 9.5))  # 5th and 95th percentiles
    rng = np.random.default_rng(0)
    clean = rng.gamma(2.0, 0.1, 400)  # small losses
    noisy = rng.normal(3.0, 0.3, 100)  # large losses of wrong labels
    noise = fit_noise_model(np.concatenate([clean, noisy]))
    assert np.median(noise.weights(noisy)) > 0.9
    assert np.median(noise.weights(clean)) < 0.1
    constant = fit_noise_model(np.full(50, 0.7))
    assert np.all(constant.weights(np.array([0.1, 0.7, 5.0])) == 1e-4)


def test_mixup_lambda_draws() -> None:
    assert beta_quantile(1.0, 0.3) == pytest.approx(0.3)  # Beta(1, 1) is uniform
    # Beta(2, 2) has CDF 3x^2 - 2x^3; F(0.25) = 0.15625
    assert beta_quantile(2.0, 0.15625) == pytest.approx(0.25)
    assert beta_quantile(32.0, 0.5) == pytest.approx(0.5)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [sample_lambda(32.0, a) for _ in range(3)] == [sample_lambda(32.0, b)
                                                          for _ in range(3)]
    with pytest.raises(ValueError):
        beta_quantile(0.0, 0.5)


# --------------------------------------------------------------------------- end to end

TINY = ["--epochs", "2", "--warmup-epochs", "1", "--width", "8", "--batch-size", "16",
        "--quiet"]

CASES = {
    "coteaching": (["--method", "coteaching"], ["warm-up", "coteaching"]),
    "coteaching-given": (["--method", "coteaching", "--forget-rate", "0.2", "--num-gradual",
                          "1"], ["coteaching", "coteaching"]),
    "gce": (["--method", "gce"], ["gce", "gce"]),
    "sce": (["--method", "sce", "--sce-a", "-6"], ["sce", "sce"]),
    "mae": (["--method", "mae"], ["mae", "mae"]),
    "bootstrap": (["--method", "bootstrap"], ["bootstrap", "bootstrap"]),
    "bootstrap-soft": (["--method", "bootstrap", "--bootstrap", "soft"],
                       ["bootstrap", "bootstrap"]),
    "dynamic-bootstrap": (["--method", "dynamic-bootstrap"],
                          ["warm-up", "dynamic-bootstrap"]),
    "m-dyr-h": (["--method", "dynamic-bootstrap", "--mixup", "--mixup-alpha", "8"],
                ["warm-up", "dynamic-bootstrap"]),
    "mixup": (["--method", "mixup", "--mixup-alpha", "1"], ["mixup", "mixup"]),
    "label-smoothing": (["--method", "label-smoothing", "--smoothing", "0.2"],
                        ["label-smoothing", "label-smoothing"]),
}


def _truth_csv(path: Path, truth: dict[str, str]) -> Path:
    path.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in truth.items()))
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_every_method_writes_the_outputs_of_standard(
    case: str, digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    args, phases = CASES[case]
    method = args[1]
    out = tmp_path / "out"
    truth_csv = _truth_csv(tmp_path / "truth.csv", truth)
    result = runner.invoke(app, ["train", str(root), *args, "--out", str(out), "--truth",
                                 str(truth_csv), *TINY])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert sorted(scores["path"]) == sorted(truth)
    assert scores["clean_prob"].between(0, 1).all()
    relabeled = pd.read_csv(out / "relabeled.csv", dtype=str)
    assert list(relabeled.columns) == ["path", "label", "original_label", "changed"]
    history = pd.read_csv(out / "history.csv")
    assert history["phase"].tolist() == phases
    assert np.isfinite(history["loss"]).all() and history["train_acc"].between(0, 1).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["settings"]["method"] == method
    two = method == "coteaching"
    assert (out / "net1.pt").is_file() and (out / "net2.pt").is_file() == two
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epochs_done"] == 2

    if method == "coteaching":
        chosen = summary["coteaching"]
        if case == "coteaching":
            assert 0 <= chosen["forget_rate"] <= 0.9 and "estimate" in chosen["reason"]
            # warm-up keeps everything; epoch 2 is the paper's schedule at epoch 1: tau / 10
            assert history["forget_rate"].tolist() == pytest.approx(
                [0.0, chosen["forget_rate"] / 10])
        else:
            assert chosen == {**chosen, "forget_rate": 0.2, "reason": "given explicitly"}
            assert history["forget_rate"].tolist() == pytest.approx([0.0, 0.2])
        assert history["label_precision"].between(0, 1).all()
    elif method == "dynamic-bootstrap":
        assert np.isnan(history["estimated_noise_rate"][0])
        assert 0 <= history["estimated_noise_rate"][1] <= 1
        assert 0 < history["noise_weight"][1] < 1
        assert summary["dynamic_bootstrap"]["mixup"] == (case == "m-dyr-h")
    else:
        assert np.isfinite(history["ce"]).all()
    if method == "mae":
        assert (history["loss"] <= 2.0).all()  # 2 (1 - p_y) is bounded by 2
    if method == "gce":
        assert (history["loss"] <= 1 / 0.7).all()  # (1 - p^q) / q is bounded by 1 / q


def test_train_help_lists_every_method_with_its_use() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert set(METHODS) == set(METHOD_HELP) and len(METHODS) == 10
    for name, line in METHOD_HELP.items():
        assert f"{name} {' '.join(line.split())}" in text
    for option in ("--forget-rate", "--num-gradual", "--gce-q", "--sce-alpha", "--sce-beta",
                   "--sce-a", "--bootstrap", "--bootstrap-beta", "--mixup", "--mixup-alpha",
                   "--smoothing"):
        assert option in text


class _StopAfter(Progress):
    """Quiet progress that stops the run right after epoch ``epochs`` was checkpointed."""

    def __init__(self, epochs: int) -> None:
        super().__init__(quiet=True)
        self.epochs = epochs

    def log(self, message: str) -> None:
        if message.startswith(f"epoch {self.epochs}/"):
            raise _Stopped


class _Stopped(Exception):
    pass


@pytest.mark.parametrize(
    ("extra", "stop_after"),
    [
        ({"method": "coteaching"}, 1),  # stopped before the forget rate is estimated
        ({"method": "coteaching"}, 2),  # after: the estimate comes from the checkpoint
        ({"method": "dynamic-bootstrap", "mixup": True}, 2),
    ],
)
def test_a_stopped_run_resumes_to_the_uninterrupted_result(
    extra: dict, stop_after: int, digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    settings = dict(data=root, epochs=4, warmup_epochs=1, width=8, batch_size=16, **extra)
    whole = train(TrainConfig(out=tmp_path / "whole", **settings))
    with pytest.raises(_Stopped):
        train(TrainConfig(out=tmp_path / "cut", **settings), _StopAfter(stop_after))
    assert not (tmp_path / "cut" / "scores.csv").exists()
    resumed = train(TrainConfig(data=root, resume=tmp_path / "cut"))
    assert resumed.summary["training"]["resumed_after_epochs"] == [stop_after]
    for name in ("scores.csv", "relabeled.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    pd.testing.assert_frame_equal(whole.history.drop(columns="seconds"),
                                  resumed.history.drop(columns="seconds"))
    key = extra["method"].replace("-", "_")
    assert resumed.summary[key] == whole.summary[key]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "coteach"], "--method must be one of dividemix, standard, coteaching"),
        (["--method", "gce", "--gce-q", "0"], "--gce-q must be in (0, 1]"),
        (["--method", "sce", "--sce-a", "1"], "--sce-a must be negative"),
        (["--method", "sce", "--sce-alpha", "0", "--sce-beta", "0"], "not both 0"),
        (["--method", "bootstrap", "--bootstrap", "medium"], "--bootstrap must be one of"),
        (["--method", "bootstrap", "--bootstrap-beta", "1.5"], "--bootstrap-beta must be"),
        (["--method", "gce", "--mixup"], "--mixup applies to --method dynamic-bootstrap"),
        (["--method", "mixup", "--mixup-alpha", "0"], "--mixup-alpha must be positive"),
        (["--method", "label-smoothing", "--smoothing", "1"], "--smoothing must be in [0, 1)"),
        (["--method", "coteaching", "--forget-rate", "1.5"], "--forget-rate must be in [0, 1)"),
        (["--method", "coteaching", "--num-gradual", "0"], "--num-gradual must be at least 1"),
        (["--method", "coteaching", "--epochs", "2", "--warmup-epochs", "2"],
         "(or give --forget-rate)"),
        (["--method", "coteaching", "--warmup-epochs", "0"], "when --forget-rate is not given"),
        (["--method", "dynamic-bootstrap", "--warmup-epochs", "0"],
         "--warmup-epochs must be at least 1 for dynamic-bootstrap"),
        (["--method", "gce", "--penalty"], "--penalty applies to --method dividemix and standard"),
    ],
)
def test_bad_method_options_fail_with_one_message(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, args: list[str], message: str
) -> None:
    root, _ = digits_folder
    result = runner.invoke(app, ["train", str(root), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_mixup_method_loss_is_the_papers_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Mixup.loss`` on one batch: inputs ``lam x + (1 - lam) x[perm]`` with ``lam`` and
    ``perm`` from the method's generator, loss ``lam CE(y) + (1 - lam) CE(y[perm])``."""
    from torch import nn
    from torch.nn import functional as F

    from noisyclean.data.batches import DeviceImages
    from noisyclean.train.methods.mixup import Mixup, beta_quantile

    torch.manual_seed(0)
    data = DeviceImages(np.zeros((6, 4, 4, 3), dtype=np.uint8), np.array([0, 1, 2, 0, 1, 2]),
                        torch.device("cpu"))
    x = torch.randn(6, 3, 4, 4)
    monkeypatch.setattr(data, "batch", lambda *args, **kwargs: x)
    method = Mixup(data, alpha=2.0, batch_size=6, seed=3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    state = method.generator.get_state()
    batch = torch.arange(6)
    loss, stats = method.loss(0, net, batch, 0)
    g = torch.Generator()
    g.set_state(state)
    lam = beta_quantile(2.0, torch.rand(1, generator=g, dtype=torch.float64).item())
    perm = torch.randperm(6, generator=g)
    y = data.labels[batch]
    logits = net(lam * x + (1 - lam) * x[perm])
    expected = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert stats["count"] == 6 and 0.0 < lam < 1.0


def test_dynamic_bootstrap_step_with_mixup_and_the_prior_by_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """M-DYR-H's step after the warm-up, written out: ``lam`` and the partner permutation
    from the method's generator; ``z`` the eval-mode argmax of the unmixed batch; each
    mixed sample's loss ``lam [(1 - w_i) CE(y_i) + w_i CE(z_i)] + (1 - lam) [(1 - w_j)
    CE(y_j) + w_j CE(z_j)]`` with ``j`` its partner; plus ``lambda_r`` times
    ``sum_c (1/C) log((1/C) / pbar_c)``."""
    from torch.nn import functional as F

    from noisyclean.train.methods.mixup import beta_quantile

    torch.manual_seed(0)
    c, n = 3, 5
    data = DeviceImages(np.zeros((n, 4, 4, 3), dtype=np.uint8), np.array([0, 1, 2, 0, 1]),
                        torch.device("cpu"))
    x = torch.randn(n, 3, 4, 4)
    monkeypatch.setattr(data, "batch", lambda *args, **kwargs: x)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, c))
    method = DynamicBootstrap(data, net, Precision(torch.device("cpu")), warmup_epochs=1,
                              use_mixup=True, alpha=2.0, lambda_r=0.7, batch_size=n, seed=4)
    w_all = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7])
    method.sample_weights = w_all
    batch = torch.tensor([4, 0, 2, 1, 3])
    state = method.generator.get_state()
    loss, stats = method.loss(0, net, batch, 1)

    g = torch.Generator()
    g.set_state(state)
    lam = beta_quantile(2.0, torch.rand(1, generator=g, dtype=torch.float64).item())
    perm = torch.randperm(n, generator=g)
    y, w = data.labels[batch], w_all[batch]
    with torch.no_grad():
        z = net(x).argmax(1)
    logits = net(lam * x + (1 - lam) * x[perm])
    ce = -logits.log_softmax(1)  # ce[i, k]: cross-entropy of mixed sample i against class k
    rows = torch.arange(n)
    own = (1 - w) * ce[rows, y] + w * ce[rows, z]
    partner = (1 - w[perm]) * ce[rows, y[perm]] + w[perm] * ce[rows, z[perm]]
    pbar = logits.softmax(1).mean(0)
    prior = (torch.full((c,), 1 / c) * (torch.log(torch.tensor(1 / c)) - pbar.log())).sum()
    expected = (lam * own + (1 - lam) * partner).mean() + 0.7 * prior
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert prior.item() > 1e-4 and 0.0 < lam < 1.0 and not torch.equal(perm, rows)
    assert stats["noise_weight"] == pytest.approx(w.sum().item())
    assert stats["ce"] == pytest.approx(F.cross_entropy(logits, y).item() * n, rel=1e-6)


def test_a_float16_run_resumes_with_its_gradient_scale(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """float16 training (a GPU before Ampere; here forced on the CPU) scales its losses,
    and the scale it has learnt is part of the checkpoint: a stopped and resumed run ends
    as the uninterrupted one, scale included. The scaler starts far too high, so its first
    steps overflow and are skipped, as they would again after a resume that started it
    anew."""
    monkeypatch.setattr(Precision, "choose", classmethod(
        lambda cls, device, amp: cls(device, torch.float16)))
    monkeypatch.setattr(Precision, "grad_scaler", lambda self: torch.amp.GradScaler(
        self.device.type, init_scale=2.0**60, growth_interval=3))
    root, _ = digits_folder
    settings = dict(data=root, epochs=3, width=8, batch_size=16, method="standard")
    train(TrainConfig(out=tmp_path / "whole", **settings))
    with pytest.raises(_Stopped):
        train(TrainConfig(out=tmp_path / "cut", **settings), _StopAfter(1))
    first = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["scaler"]
    assert first["scale"] < 2.0**60  # the first steps overflowed and lowered it
    train(TrainConfig(data=root, resume=tmp_path / "cut"))
    scales = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["scaler"]
              for run in ("whole", "cut")]
    assert scales[0] == scales[1]
    for name in ("scores.csv", "relabeled.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_resume_that_executes_otherwise_says_so(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The checkpoint records how its epochs ran; a resume in another precision or with
    other CPU threads (a printed resume command that had dropped --amp, a shell with
    another OMP_NUM_THREADS) ends otherwise than an uninterrupted run, and is told so with
    the options that run it as before. The same settings say nothing."""
    root, _ = digits_folder
    settings = dict(data=root, epochs=3, width=8, batch_size=16, method="standard",
                    amp=True, threads=1)
    with pytest.raises(_Stopped):
        train(TrainConfig(out=tmp_path / "cut", **settings), _StopAfter(1))
    execution = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["extra"][
        "execution"]
    assert execution == {"device": "cpu", "precision": "bfloat16", "channels_last": True,
                         "threads": 1}
    other = runner.invoke(app, ["train", str(root), "--resume", str(tmp_path / "cut"),
                                "--no-amp", "--threads", "2"])
    assert other.exit_code == 0, other.output
    text = " ".join(other.output.split())
    assert ("resuming otherwise than the checkpoint's epochs ran (precision float32, not "
            "bfloat16; 2 CPU thread(s), not 1)") in text
    assert "(to run as before, give --amp --threads 1)" in text
    with pytest.raises(_Stopped):
        train(TrainConfig(out=tmp_path / "cut2", **settings), _StopAfter(1))
    same = runner.invoke(app, ["train", str(root), "--resume", str(tmp_path / "cut2"),
                               "--amp", "--threads", "1"])
    assert same.exit_code == 0 and "resuming otherwise" not in same.output


def test_the_printed_resume_command_keeps_how_the_run_executes() -> None:
    from noisyclean.cli import _execution_words, resume_command

    config = TrainConfig(data=Path("d"), amp=False, channels_last=True, threads=1,
                         device="cpu", use_cache=False, workers=3)
    given = {"amp", "channels_last", "threads", "device", "use_cache", "workers"}
    words = _execution_words(config, given)
    assert words == ["--device", "cpu", "--no-amp", "--channels-last", "--threads", "1",
                     "--workers", "3", "--no-cache"]
    assert resume_command(Path("d"), Path("run dir"), execution=words) == (
        "noisyclean train d --resume 'run dir' --device cpu --no-amp --channels-last "
        "--threads 1 --workers 3 --no-cache")
    assert _execution_words(config, set()) == []  # defaults: nothing given, nothing said


def test_the_execution_warning_names_both_sides_of_each_change() -> None:
    from noisyclean.train.run import other_execution_text

    saved = {"device": "cpu", "precision": "float32", "channels_last": True, "threads": 2}
    text = other_execution_text(saved, {**saved, "channels_last": False})
    assert text is not None and text.startswith(
        "resuming otherwise than the checkpoint's epochs ran (the default layout, not "
        "channels-last batches): ")
    assert text.endswith("give --channels-last)")
    assert other_execution_text(saved, dict(saved)) is None
    assert other_execution_text(None, saved) is None  # a checkpoint from before the record
