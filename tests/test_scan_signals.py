"""The scan's alternatives to in-sample losses: AUM (margins, recording, threshold samples,
the cut, combining the two runs) and K-fold out-of-sample signals against hand-computed
values; ``pred_probs.npy``; then ``scan --signal aum``, ``--folds 2`` and ``--save-probs``
through the CLI on a tiny folder, and their bad options."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from noisyclean.aum import (
    AUMRecorder,
    AUMWarmup,
    aum_clean_prob,
    aum_threshold,
    combine_runs,
    margins,
    threshold_sample_sets,
)
from noisyclean.cli import app
from noisyclean.confident_joint import estimate_wrong_labels
from noisyclean.config import ScanConfig
from noisyclean.data.batches import DeviceImages
from noisyclean.errors import NoisyCleanError
from noisyclean.folds import cross_validated_signals, fold_assignment
from noisyclean.outputs.table import SCORE_COLUMNS
from noisyclean.outputs.write import probs_in_table_order
from noisyclean.progress import Progress
from noisyclean.scanning import WarmupResult, aum_ignored
from noisyclean.train.loop import Precision

runner = CliRunner()
STRINGS = {"label": str, "predicted": str, "suggested_label": str}
TINY = ["--epochs", "2", "--width", "8", "--batch-size", "16", "--quiet"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- AUM pieces


def test_margins_on_hand_logits() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
    # 2 - 1; 0 - 3 (another class is larger); 1 - max(1, 0) (a tie)
    assert margins(logits, torch.tensor([0, 0, 1])).tolist() == pytest.approx([1.0, -3.0, 0.0])
    # against the fake class 3 of a C + 1 = 4 output network
    fake = torch.tensor([[0.5, 2.0, 0.0, 1.5]])
    assert margins(fake, torch.tensor([3])).tolist() == pytest.approx([-0.5])


def test_aum_recorder_averages_the_margins_it_was_given() -> None:
    recorder = AUMRecorder(3)
    recorder.update(torch.tensor([0, 2]), torch.tensor([1.0, 3.0]))
    recorder.update(torch.tensor([0]), torch.tensor([2.0]))
    aum = recorder.aum()
    assert aum[0] == pytest.approx(1.5) and aum[2] == pytest.approx(3.0)
    assert np.isnan(aum[1])  # never seen


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(48, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_aum_warmup_records_the_training_margins_on_the_assigned_labels() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
    data = DeviceImages(images, np.array([0, 1, 0, 1, 0, 1]), torch.device("cpu"))
    assigned = torch.tensor([0, 1, 2, 1, 0, 2])  # 2 is the fake class of samples 2 and 5
    method = AUMWarmup(data, [assigned], batch_size=6, augment=False, record_from=1)
    model = _Linear()
    batch = torch.tensor([3, 0, 5, 1, 2, 4])
    method.loss(0, model, batch, epoch=0)  # the first epoch does not count
    assert method.recorders[0].counts.sum() == 0
    loss, metrics = method.loss(0, model, batch, epoch=1)
    with torch.no_grad():
        expected = margins(model(data.batch(batch)), assigned[batch])
    recorded = method.recorders[0].aum()[batch.numpy()]
    assert recorded == pytest.approx(expected.double().numpy(), abs=1e-6)
    assert metrics["count"] == 6
    # the loss is the cross-entropy on the assigned labels, the fake class included
    ce = nn.functional.cross_entropy(model(data.batch(batch)), assigned[batch])
    assert loss.item() == pytest.approx(ce.item(), abs=1e-6)


def test_threshold_sample_sets_are_disjoint_and_n_over_c_plus_one() -> None:
    sets = threshold_sample_sets(110, 10, seed=0)
    assert [len(s) for s in sets] == [10, 10]  # 110 // 11
    assert not set(sets[0]) & set(sets[1])
    assert [s.tolist() for s in threshold_sample_sets(110, 10, seed=0)] == [
        s.tolist() for s in sets]
    assert threshold_sample_sets(110, 10, seed=1)[0].tolist() != sets[0].tolist()
    assert [len(s) for s in threshold_sample_sets(120, 3)] == [30, 30]  # 120 // 4


def test_the_cut_is_the_99th_percentile_of_the_threshold_samples() -> None:
    assert aum_threshold(np.arange(101.0)) == pytest.approx(99.0)
    # four values: position 0.99 * 3 = 2.97 between 0 and 2: 0 + 0.97 * 2
    assert aum_threshold(np.array([-3.0, -1.0, 0.0, 2.0])) == pytest.approx(1.94)
    with pytest.raises(ValueError):
        aum_threshold(np.array([]))


def test_combining_two_runs_by_hand() -> None:
    aums = np.array([[1.0, -2.0, 0.5, 3.0], [2.0, -1.0, -0.7, 9.0]])
    is_threshold = np.array([[False, False, False, True], [True, False, False, False]])
    thresholds = np.array([0.2, -0.5])
    aum, distance = combine_runs(aums, is_threshold, thresholds)
    # sample 0 is real in run 1 only, sample 3 in run 2 only
    assert aum.tolist() == pytest.approx([1.0, -1.5, -0.1, 9.0])
    # sample 1: min(-2 - 0.2, -1 + 0.5); sample 2: min(0.5 - 0.2, -0.7 + 0.5): flagged by
    # run 2 alone
    assert distance.tolist() == pytest.approx([0.8, -2.2, -0.2, 9.5])
    assert (distance < 0).tolist() == [False, True, True, False]
    with pytest.raises(ValueError):
        combine_runs(aums, np.ones((2, 4), dtype=bool), thresholds)


def test_aum_clean_prob_is_one_half_at_the_cut() -> None:
    # sigmoid(d / s): 0.5 at d = 0, 3/4 at d = s ln 3, 1/4 at d = -s ln 3
    s = 0.8
    out = aum_clean_prob(np.array([0.0, s * np.log(3), -s * np.log(3)]), s)
    assert out.tolist() == pytest.approx([0.5, 0.75, 0.25])


# --------------------------------------------------------------------------- folds


def test_fold_assignment_is_stratified_and_seeded() -> None:
    labels = np.array([0] * 6 + [1] * 4)
    assignment = fold_assignment(labels, 2, seed=0)
    for fold in (0, 1):
        held = labels[assignment == fold]
        assert (held == 0).sum() == 3 and (held == 1).sum() == 2
    assert fold_assignment(labels, 2, seed=0).tolist() == assignment.tolist()
    assert sorted(np.bincount(fold_assignment(labels, 3, seed=0)).tolist()) == [3, 3, 4]
    with pytest.raises(NoisyCleanError, match="at least 5 images in every class"):
        fold_assignment(labels, 5, seed=0)


class _Constant(nn.Module):
    """Predicts class ``k`` (logit 5) for every image."""

    def __init__(self, k: int, num_classes: int) -> None:
        super().__init__()
        self.logits = torch.zeros(num_classes)
        self.logits[k] = 5.0
        self.seen = 0  # images evaluated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.logits.expand(len(x), -1)


def test_each_sample_is_scored_by_the_network_that_did_not_train_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 4, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2] * 4)
    data = DeviceImages(images, labels, torch.device("cpu"))
    trained_on: list[set[int]] = []
    networks: list[_Constant] = []

    def fake_warm_up(data, num_classes, config, precision, progress, indices=None):
        trained_on.append(set(indices.tolist()))
        fold = len(trained_on) - 1  # the fold-th network predicts class `fold`
        networks.append(_Constant(fold, num_classes))
        return WarmupResult([SimpleNamespace(model=networks[-1])], [], [{"epoch": 0}])

    monkeypatch.setattr(importlib.import_module("noisyclean.scanning"), "warm_up", fake_warm_up)
    config = ScanConfig(folds=3, seed=0, tta=False)
    signals, log, assignment = cross_validated_signals(
        data, 3, config, Precision(torch.device("cpu")), Progress(quiet=True))
    assert len(trained_on) == 3 and [row["fold"] for row in log] == [1, 2, 3]
    # each network evaluates its held-out fold only (12 - its training images), not all 12
    assert [net.seen for net in networks] == [12 - len(t) for t in trained_on]
    scored_by = signals[0].probs.argmax(1)
    for i in range(12):
        assert i not in trained_on[scored_by[i]]  # out of sample
        assert scored_by[i] == assignment[i]
    # the loss is that network's: -log softmax(5, 0, 0) at the given label
    p_top = np.exp(5.0) / (np.exp(5.0) + 2)
    expected = np.where(labels == assignment, -np.log(p_top), -np.log((1 - p_top) / 2))
    assert signals[0].per_sample_loss == pytest.approx(expected, rel=1e-5)


def test_probs_are_reordered_to_the_table_rows() -> None:
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    table = pd.DataFrame({"path": ["c", "a", "b"]})
    out = probs_in_table_order(probs, ["a", "b", "c"], table)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.1, 0.9], [0.8, 0.2]], rtol=1e-6)


# --------------------------------------------------------------------------- end to end


def _scan(*args: object) -> object:
    return runner.invoke(app, ["scan", *map(str, args)])


def _flagged_wrong(scores: pd.DataFrame, truth: dict[str, str]) -> np.ndarray:
    return scores["path"].map(truth).to_numpy() != scores["label"].to_numpy()


def test_scan_signal_aum(digits_folder: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, truth = digits_folder
    out = tmp_path / "out"
    # --mixture means nothing to AUM: said, not silently dropped; nor --cut, though given
    # at its default value
    result = _scan(root, "--signal", "aum", "--mixture", "bmm", "--cut", "arbitrated",
                   "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert ("warning: --mixture, --cut do not apply to --signal aum: ignored"
            in " ".join(result.output.split()))
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert sorted(scores["path"]) == sorted(truth)  # threshold samples are rows like any
    assert scores["clean_prob"].between(0, 1).all() and scores["fit_loss"].between(0, 1).all()
    assert (scores["is_noisy"] == (scores["clean_prob"] < 0.5)).all()
    summary = json.loads((out / "summary.json").read_text())
    aum = summary["aum"]
    assert aum["threshold_samples"] == [30, 30]  # 120 // (3 + 1) per network
    assert aum["runs"] == 2 and aum["percentile"] == 99.0 and len(aum["thresholds"]) == 2
    assert aum["flagged"] == int(scores["is_noisy"].sum())
    assert summary["settings"]["networks"] == 2 and summary["mixture"] == []
    assert set(scores["predicted"]) <= {"0", "1", "7"}  # the fake class is never predicted


def test_the_options_aum_ignores_are_named_as_written() -> None:
    base = ScanConfig(data=Path("d"), signal="aum")
    assert aum_ignored(base) == []
    changed = replace(base, mixture="bmm", flip_ranking=False, loss_history=3,
                      correction="none")
    assert aum_ignored(changed) == [
        "--correction", "--loss-history", "--mixture", "--no-flip-ranking"]
    # the options given on the command line, whatever their values, where they are known
    assert aum_ignored(base, {"cut", "flip_ranking", "seed"}) == ["--cut", "--flip-ranking"]
    assert aum_ignored(changed, {"mixture", "flip_ranking"}) == [
        "--mixture", "--no-flip-ranking"]
    assert aum_ignored(changed, set()) == []


def test_scan_folds_two(digits_folder: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, truth = digits_folder
    out = tmp_path / "out"
    result = _scan(root, "--folds", "2", "--out", out, "--save-probs", *TINY)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    assert sorted(scores["path"]) == sorted(truth)
    assert (scores["is_noisy"] == (scores["clean_prob"] < 0.5)).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == {"k": 2, "sizes": [60, 60]}
    assert [row["fold"] for row in summary["training"]["epochs"]] == [1, 1, 2, 2]
    probs = np.load(out / "pred_probs.npy")
    assert probs.shape == (120, 3)
    assert probs.max(1) == pytest.approx(scores["predicted_prob"].to_numpy(), abs=1e-6)
    # the estimate of wrong labels comes from the same out-of-sample probabilities
    estimate = estimate_wrong_labels(probs, scores["label_index"].to_numpy(), ["0", "1", "7"])
    assert summary["estimated_wrong_labels"]["count"] == estimate["count"]


def test_scan_save_probs_rows_follow_scores_csv(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    out = tmp_path / "out"
    assert _scan(root, "--out", out, "--save-probs", *TINY).exit_code == 0
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    probs = np.load(out / "pred_probs.npy")
    assert probs.dtype == np.float32 and probs.shape == (len(scores), 3)
    classes = json.loads((out / "summary.json").read_text())["classes"]
    assert [classes[k] for k in probs.argmax(1)] == scores["predicted"].tolist()
    given = probs[np.arange(len(scores)), scores["label_index"].to_numpy()]
    assert given == pytest.approx(scores["given_prob"].to_numpy(), abs=1e-6)
    wrong = json.loads((out / "summary.json").read_text())["estimated_wrong_labels"]
    estimate = estimate_wrong_labels(probs, scores["label_index"].to_numpy(), classes)
    assert wrong["count"] == estimate["count"] and 0 <= wrong["count"] <= len(scores)
    assert wrong["rate"] == pytest.approx(estimate["rate"])
    assert wrong["per_class"] == pytest.approx(estimate["per_class"])
    plain = tmp_path / "plain"
    assert _scan(root, "--out", plain, *TINY).exit_code == 0
    assert not (plain / "pred_probs.npy").exists()
    assert (plain / "scores.csv").read_bytes() == (out / "scores.csv").read_bytes()
    summary = json.loads((plain / "summary.json").read_text())
    assert "aum" not in summary and "folds" not in summary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--signal", "margins"], "--signal must be one of loss+margin, loss, margin, aum"),
        (["--folds", "0"], "--folds must be at least 1"),
        (["--folds", "2", "--signal", "aum"], "--folds and --signal aum exclude each other"),
        (["--folds", "2", "--loss-history", "2"], "--loss-history must be 1"),
        (["--folds", "50", *TINY], "--folds 50 needs at least 50 images in every class"),
    ],
)
def test_bad_scan_options_fail_with_one_message(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, args: list[str], message: str
) -> None:
    root, _ = digits_folder
    result = _scan(root, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
