"""How ``loss+margin`` adds its parts (``--fusion``): ``score_samples`` with an order score
of its own, and end to end, the scan and train commands fit their mixture (and order the
samples) on the fusion chosen, from the same trained network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.flips import flip_ranking, rerank
from noisyclean.mixture import fit_mixture
from noisyclean.scoring import score_samples
from noisyclean.signals import Signals, label_loss, noise_score

from .conftest import symmetric_noise_predictions
from .test_flips import _class_flip

runner = CliRunner()
TINY = ["--epochs", "3", "--width", "8", "--batch-size", "16", "--save-probs"]
NAMES = list("abcd")


def _flagged(table: pd.DataFrame) -> set[str]:
    return set(table.loc[table["is_noisy"], "path"])


def _top(paths: list[str], score: np.ndarray, n: int) -> set[str]:
    return {paths[i] for i in np.argsort(-score, kind="stable")[:n]}


@pytest.mark.parametrize("cut", ["mixture", "arbitrated"])
def test_order_score_chooses_which_samples_the_cut_flags(cut: str) -> None:
    """With an order score, the count flagged is the cut's on the fit score, the samples
    flagged are that many from the top of the order score, and the clean probabilities
    are the same values, re-assigned."""
    probs, labels = symmetric_noise_predictions(seed=5, n=1500, rate=0.3)
    signals = [Signals(label_loss(probs, labels), probs)]
    paths = [f"{i}.png" for i in range(len(labels))]
    fit = noise_score(probs, labels, fusion="minmax")
    # an order that disagrees with the fit score: the rank fusion plus noise
    order = noise_score(probs, labels, fusion="rank") + np.random.default_rng(0).random(1500)
    alone = score_samples(paths, labels, NAMES, [fit], signals, cut=cut)
    ordered = score_samples(paths, labels, NAMES, [fit], signals, cut=cut, order_inputs=[order])
    n = int(alone.table["is_noisy"].sum())
    assert 300 < n < 900  # about 30% of 1,500 are wrong
    assert int(ordered.table["is_noisy"].sum()) == n
    assert ordered.cut["flagged"] == alone.cut["flagged"] == n
    assert (ordered.cut["order"], alone.cut["order"]) == ("order_score", "fit_score")
    assert _flagged(ordered.table) == _top(paths, order, n)
    assert _flagged(alone.table) == _top(paths, fit, n)
    assert _flagged(ordered.table) != _flagged(alone.table)  # the two orders differ here
    assert np.sort(ordered.table["clean_prob"]) == pytest.approx(np.sort(alone.table["clean_prob"]))
    # the table still shows what the mixture saw
    by_path = ordered.table.set_index("path").loc[paths]
    assert by_path["fit_loss"].to_numpy() == pytest.approx(fit, abs=1e-6)


def test_flip_ranking_adds_its_posterior_to_the_order_score() -> None:
    """With systematic flips, the flip ranking re-ranks by the order score plus the flip
    posterior (not by the fit score), keeping the cut's count."""
    probs, labels, _ = _class_flip(1, 1200)
    signals = [Signals(label_loss(probs, labels), probs)]
    paths = [f"{i}.png" for i in range(len(labels))]
    fit = noise_score(probs, labels, fusion="minmax")
    order = noise_score(probs, labels, fusion="rank")
    result = score_samples(paths, labels, NAMES, [fit], signals, cut="mixture", flips=True,
                           order_inputs=[order])
    assert result.cut["flip_ranking"]["used"]
    clean = fit_mixture(fit, "gmm", random_state=0).clean_prob
    expected, _ = flip_ranking(rerank(clean, order), order, probs, labels, NAMES)
    by_path = result.table.set_index("path").loc[paths]
    assert by_path["clean_prob"].to_numpy() == pytest.approx(expected)
    by_fit, _ = flip_ranking(clean, fit, probs, labels, NAMES)
    assert set(np.flatnonzero(expected < 0.5)) != set(np.flatnonzero(by_fit < 0.5))
    assert (expected < 0.5).sum() == (by_fit < 0.5).sum() == (clean < 0.5).sum()


def _run(root: Path, out: Path, *options: str) -> tuple[dict, pd.DataFrame, np.ndarray]:
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), *TINY, *options],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    # the printed summary says when the flags follow the rank fusion
    said = "flags taken by" in result.output
    assert said == (summary["cut"]["order"] == "order_score"), result.output
    table = pd.read_csv(out / "scores.csv", dtype={"label": str}, keep_default_na=False)
    return summary, table, np.load(out / "pred_probs.npy")


def test_scan_fits_its_mixture_and_orders_on_the_fusion_chosen(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The default (hybrid), --fusion minmax and --fusion rank train the same network (same
    probabilities). Each table's fit_loss is the fusion its mixture was fit on (minmax for
    hybrid); hybrid flags minmax's count, chosen from the top of the rank fusion."""
    root, _ = digits_folder
    fixed = ["--no-flip-ranking", "--cut", "mixture"]  # the order is then the score's alone
    runs = {name: _run(root, tmp_path / name, *fixed, *options)
            for name, options in (("default", []), ("minmax", ["--fusion", "minmax"]),
                                  ("rank", ["--fusion", "rank"]))}
    tables = {name: run[1] for name, run in runs.items()}
    paths = list(tables["minmax"]["path"])
    probs = runs["minmax"][2].astype(np.float64)
    labels = tables["minmax"]["label_index"].to_numpy()
    for name, (summary, table, p) in runs.items():
        assert summary["settings"]["fusion"] == ("hybrid" if name == "default" else name)
        by_path = table.set_index("path")
        assert np.array_equal(p[[by_path.index.get_loc(q) for q in paths]], runs["minmax"][2])
        fit_as = "minmax" if name == "default" else name
        expected = noise_score(probs, labels, fusion=fit_as)
        assert by_path.loc[paths, "fit_loss"].to_numpy() == pytest.approx(expected, abs=1e-6)
    n = int(tables["minmax"]["is_noisy"].sum())
    assert n > 0 and int(tables["default"]["is_noisy"].sum()) == n
    assert runs["default"][0]["cut"]["order"] == "order_score"
    assert runs["minmax"][0]["cut"]["order"] == "fit_score"
    rank = noise_score(probs, labels, fusion="rank")
    assert _flagged(tables["default"]) == _top(paths, rank, n)
    assert not np.allclose(rank, noise_score(probs, labels, fusion="minmax"))


def test_bad_fusion_fails_with_one_message(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    for command in ("scan", "train"):
        result = runner.invoke(app, [command, str(root), "--out", str(tmp_path / command),
                                     "--fusion", "sum", "--quiet"])
        assert result.exit_code == 2, result.output
        assert "--fusion must be one of hybrid, minmax, rank" in " ".join(result.output.split())


@pytest.mark.parametrize("fusion", ["rank", "hybrid"])
def test_train_scores_its_table_with_the_fusion_chosen(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    fusion: str,
) -> None:
    """train's final table is scored with --fusion (spied on): the order score reaches
    score_samples for hybrid only, and summary.json records the fusion."""
    import noisyclean.train.run as run_module

    seen: list[tuple[str, bool]] = []
    real = run_module.score_samples

    def spy(*args, **kwargs):
        seen.append((kwargs.get("order_inputs") is not None, len(args[3])))
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "score_samples", spy)
    root, _ = digits_folder
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(root), "--method", "standard", "--out", str(out),
                                 "--epochs", "1", "--width", "8", "--quiet",
                                 "--fusion", fusion])
    assert result.exit_code == 0, result.output
    assert seen == [(fusion == "hybrid", 1)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["fusion"] == fusion
