"""Ranking by the flip posterior: Bayes' rule with the transition matrix against hand
cases, the re-ranking of clean probabilities, a synthetic class flip with a look-alike
class that receives none, and ``scan --flip-ranking`` end to end on digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.confident_joint import structured_part, transition_matrix
from noisyclean.flips import (
    FLIP_RANK_MIN,
    calibrated_probs,
    flip_posterior,
    flip_ranking,
    rerank,
    systematic_flips,
)
from noisyclean.mixture import fit_mixture, normalise_losses
from noisyclean.scoring import score_samples
from noisyclean.signals import Signals, class_thresholds, label_loss, noise_score, order_score

from .conftest import symmetric_noise_predictions

runner = CliRunner()


def test_flip_posterior_by_hand() -> None:
    """True class 1 is given label 0 for 40% of its images; nothing flips into 1 or 2.
    Labelled 0 with p = (0.5, 0.5, 0): 1 - 0.5 * 1 / (0.5 * 1 + 0.5 * 0.4) = 2/7.
    Labelled 0 with p = (0.2, 0.6, 0.2): 1 - 0.2 / (0.2 + 0.24) = 6/11.
    Labelled 1 or 2: 0 whatever the probabilities (no class flips into them)."""
    transition = np.array([[1.0, 0.0, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0]])
    probs = np.array([[0.5, 0.5, 0.0], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])
    labels = np.array([0, 0, 1, 2])
    np.testing.assert_allclose(
        flip_posterior(probs, labels, transition), [2 / 7, 6 / 11, 0.0, 0.0]
    )


def test_flip_posterior_is_zero_without_flips_and_where_undefined() -> None:
    probs = np.array([[0.7, 0.3], [0.1, 0.9]])
    np.testing.assert_array_equal(flip_posterior(probs, np.array([1, 0]), np.eye(2)), [0, 0])
    # nothing that could give label 0 is predicted: the denominator is 0, no flip claimed
    transition = np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_array_equal(
        flip_posterior(np.array([[0.0, 0.0]]), np.array([0]), transition), [0.0]
    )


def test_calibrated_probs_divide_by_the_class_thresholds() -> None:
    """Thresholds: class 0 mean over samples labelled 0 = (0.8 + 0.4) / 2 = 0.6, class 1
    (0.5) / 1 = 0.5. Row (0.8, 0.2) -> (1.333, 0.4) -> (0.769, 0.231)."""
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    labels = np.array([0, 0, 1])
    np.testing.assert_allclose(class_thresholds(probs, labels), [0.6, 0.5])
    calibrated = calibrated_probs(probs, labels)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    np.testing.assert_allclose(calibrated[0], [0.8 / 0.6, 0.4] / np.sum([0.8 / 0.6, 0.4]))


def test_rerank_by_hand() -> None:
    """Values 0.1, 0.2, 0.8, 0.9 go to the samples in the order of the new score, the
    highest score first; the count below 0.5 stays 2; ties keep the old order."""
    clean = np.array([0.9, 0.1, 0.8, 0.2])
    np.testing.assert_allclose(rerank(clean, np.array([0.7, 0.1, 0.9, 0.3])),
                               [0.2, 0.9, 0.1, 0.8])
    np.testing.assert_allclose(rerank(clean, np.zeros(4)), clean)
    with pytest.raises(ValueError, match="differ in shape"):
        rerank(clean, np.zeros(3))


def test_systematic_flips_lists_the_off_diagonal_entries_largest_first() -> None:
    transition = np.array([[0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.3, 0.7]])
    assert systematic_flips(transition, ["a", "b", "c"]) == [
        {"true": "c", "given": "b", "share": 0.3},
        {"true": "a", "given": "b", "share": 0.1},
    ]
    assert systematic_flips(np.eye(3), ["a", "b", "c"]) == []


def _class_flip(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four classes. 40% of true class 1 is given label 0; class 2 looks like class 0 (its
    images give class 0 0.3 more probability) but receives no flips; 5% of
    every label is also replaced at random. The "network" predicts the true class with a
    Dirichlet spread, as a forward-corrected warm-up would."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, n)
    labels = true.copy()
    flipped = (true == 1) & (rng.random(n) < 0.4)
    labels[flipped] = 0
    diffuse = rng.random(n) < 0.05
    labels[diffuse] = (true[diffuse] + rng.integers(1, 4, diffuse.sum())) % 4
    probs = rng.dirichlet(np.full(4, 0.6), n) * 0.5
    probs[np.arange(n), true] += 0.5
    lookalike = true == 2
    probs[lookalike] *= 0.7
    probs[lookalike, 0] += 0.3
    return probs, labels, true


def test_flip_ranking_on_a_class_flip_ranks_better_and_keeps_the_count() -> None:
    probs, labels, true = _class_flip()
    wrong = labels != true
    score = noise_score(probs, labels)
    clean = fit_mixture(score, "gmm", 0).clean_prob
    ranked, summary = flip_ranking(clean, score, probs, labels, ["a", "b", "c", "d"])
    assert summary["used"]
    assert summary["flips"][0]["true"] == "b" and summary["flips"][0]["given"] == "a"
    assert all(f["share"] >= FLIP_RANK_MIN for f in summary["flips"])
    np.testing.assert_allclose(np.sort(ranked), np.sort(clean))  # the same values
    n = int((clean < 0.5).sum())
    assert int((ranked < 0.5).sum()) == n
    # the flagged set is the top n of the normalised score + flip posterior
    transition = structured_part(transition_matrix(probs, labels), FLIP_RANK_MIN)
    combined = normalise_losses(
        score + flip_posterior(calibrated_probs(probs, labels), labels, transition)
    )
    flagged = ranked < 0.5
    assert combined[flagged].min() >= combined[~flagged].max()

    def precision_at(clean_prob: np.ndarray, k: int) -> float:
        return float(wrong[np.argsort(clean_prob, kind="stable")[:k]].mean())

    k = int(wrong.sum())
    # fewer look-alikes (true class 2, labelled 2) among the top k
    assert precision_at(ranked, k) > precision_at(clean, k) + 0.03
    top = np.argsort(ranked, kind="stable")[:k]
    top_before = np.argsort(clean, kind="stable")[:k]
    assert (labels[top] == 2).sum() < (labels[top_before] == 2).sum()


def test_flip_ranking_changes_nothing_without_a_systematic_flip() -> None:
    probs, labels = symmetric_noise_predictions(seed=3, n=2000, rate=0.3)
    score = noise_score(probs, labels)
    clean = fit_mixture(score, "gmm", 0).clean_prob
    ranked, summary = flip_ranking(clean, score, probs, labels, list("abcd"))
    assert summary == {"used": False, "flips": []}
    np.testing.assert_array_equal(ranked, clean)


def test_score_samples_records_the_flip_ranking() -> None:
    probs, labels, _ = _class_flip(1, 1200)
    signals = [Signals(label_loss(probs, labels), probs)]
    paths = [f"{i}.png" for i in range(len(labels))]
    score = noise_score(probs, labels)
    names = list("abcd")
    off = score_samples(paths, labels, names, [score], signals, cut="arbitrated")
    on = score_samples(paths, labels, names, [score], signals, cut="arbitrated", flips=True)
    assert "flip_ranking" not in off.cut
    assert on.cut["flip_ranking"]["used"]
    assert int(on.table["is_noisy"].sum()) == int(off.table["is_noisy"].sum())
    assert set(on.table["path"][on.table["is_noisy"]]) != set(
        off.table["path"][off.table["is_noisy"]]
    )


def _digits_with_a_class_flip(root: Path) -> dict[str, str]:
    """Digits 1, 4, 7 and 0, 60 each at 16 px; 24 of the 7s (40%) labelled 1."""
    digits = load_digits()
    truth: dict[str, str] = {}
    for c in (0, 1, 4, 7):
        for k, i in enumerate(np.flatnonzero(digits.target == c)[:60]):
            given = 1 if c == 7 and k % 5 in (0, 2) else c
            img = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
            pil = Image.fromarray(img, mode="L").resize((16, 16), Image.Resampling.BILINEAR)
            rel = f"{given}/img_{i:04d}.png"
            (root / str(given)).mkdir(parents=True, exist_ok=True)
            pil.convert("RGB").save(root / rel)
            truth[rel] = str(c)
    return truth


def test_scan_flip_ranking_end_to_end(tmp_path: Path) -> None:
    """On digits with 40% of the 7s labelled 1, the default scan finds the flip, prints
    it, records it, and flags the same number as ``--no-flip-ranking`` with the same
    training; the flags are the top of the score plus the flip posterior."""
    root = tmp_path / "images"
    truth = _digits_with_a_class_flip(root)
    common = ["--epochs", "8", "--width", "8", "--batch-size", "16", "--save-probs"]
    runs = {}
    for name, extra in (("on", []), ("off", ["--no-flip-ranking"])):
        out = tmp_path / name
        result = runner.invoke(app, ["scan", str(root), "--out", str(out), *common, *extra])
        assert result.exit_code == 0, result.output
        assert ("ranked by flip posterior" in result.output) == (name == "on")
        table = pd.read_csv(out / "scores.csv")
        summary = json.loads((out / "summary.json").read_text())
        runs[name] = (table, summary, np.load(out / "pred_probs.npy"))
    table, summary, probs = runs["on"]
    off_table, off_summary, _ = runs["off"]
    assert summary["settings"]["flip_ranking"] is True
    assert off_summary["settings"]["flip_ranking"] is False
    assert "flip_ranking" not in off_summary["cut"]
    flips = summary["cut"]["flip_ranking"]
    assert flips["used"]
    assert {"true": "7", "given": "1"} in [{k: f[k] for k in ("true", "given")}
                                           for f in flips["flips"]]
    assert int(table["is_noisy"].sum()) == int(off_table["is_noisy"].sum())
    # recompute the ranking from what the scan wrote
    labels = table["label_index"].to_numpy()
    transition = structured_part(transition_matrix(probs, labels), FLIP_RANK_MIN)
    posterior = flip_posterior(calibrated_probs(probs, labels), labels, transition)
    # the score the flags are taken from: the rank fusion under the default --fusion hybrid
    assert summary["cut"]["order"] == "order_score"
    order = order_score(probs, labels)
    assert order is not None
    combined = normalise_losses(order + posterior)
    flagged = table["is_noisy"].to_numpy()
    assert combined[flagged].min() >= combined[~flagged].max() - 1e-6
    # the flipped 7s: at least as many found as without the flip ranking
    flipped = {p for p, c in truth.items() if c == "7" and p.startswith("1/")}
    found = len(flipped & set(table["path"][table["is_noisy"]]))
    found_off = len(flipped & set(off_table["path"][off_table["is_noisy"]]))
    assert found >= found_off
    assert found >= len(flipped) // 2
