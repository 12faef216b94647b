"""How ``loss+margin`` adds its parts (``--fusion``), end to end: the scan and train
commands fit their mixture on the fusion chosen, from the same trained network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.signals import noise_score

runner = CliRunner()
TINY = ["--epochs", "3", "--width", "8", "--batch-size", "16", "--quiet", "--save-probs"]


def _run(root: Path, out: Path, *options: str) -> tuple[dict, pd.DataFrame, np.ndarray]:
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), *TINY, *options])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_csv(out / "scores.csv", dtype={"label": str}, keep_default_na=False)
    return summary, table, np.load(out / "pred_probs.npy")


def test_scan_fits_its_mixture_on_the_fusion_chosen(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The default (minmax) and --fusion rank train the same network (same probabilities);
    each table's fit_loss is that fusion of the saved probabilities, and the two differ."""
    root, _ = digits_folder
    runs = {name: _run(root, tmp_path / name, *options)
            for name, options in (("default", []), ("rank", ["--fusion", "rank"]))}
    (s_mm, t_mm, p_mm), (s_rank, t_rank, p_rank) = runs["default"], runs["rank"]
    assert s_rank["settings"]["fusion"] == "rank" and s_mm["settings"]["fusion"] == "minmax"
    by_path = t_mm.set_index("path")
    assert np.array_equal(p_rank, p_mm[[by_path.index.get_loc(p) for p in t_rank["path"]]])
    for table, probs, fusion in ((t_rank, p_rank, "rank"), (t_mm, p_mm, "minmax")):
        labels = table["label_index"].to_numpy()
        expected = noise_score(probs.astype(np.float64), labels, fusion=fusion)
        assert table["fit_loss"].to_numpy() == pytest.approx(expected, abs=1e-6)
    rank_fit = t_rank.set_index("path")["fit_loss"]
    assert not np.allclose(rank_fit.loc[by_path.index].to_numpy(), by_path["fit_loss"])


def test_bad_fusion_fails_with_one_message(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    for command in ("scan", "train"):
        result = runner.invoke(app, [command, str(root), "--out", str(tmp_path / command),
                                     "--fusion", "sum", "--quiet"])
        assert result.exit_code == 2, result.output
        assert "--fusion must be one of minmax, rank" in " ".join(result.output.split())


def test_train_scores_its_table_with_the_fusion_chosen(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train's final table goes through noise_score with --fusion (spied on), and
    summary.json records it."""
    import noisyclean.train.run as run_module

    seen: list[str] = []
    real = run_module.noise_score

    def spy(probs, labels, signal="loss+margin", fusion="minmax"):
        seen.append(fusion)
        return real(probs, labels, signal, fusion)

    monkeypatch.setattr(run_module, "noise_score", spy)
    root, _ = digits_folder
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(root), "--method", "standard", "--out", str(out),
                                 "--epochs", "1", "--width", "8", "--quiet",
                                 "--fusion", "rank"])
    assert result.exit_code == 0, result.output
    assert seen == ["rank"]
    assert json.loads((out / "summary.json").read_text())["settings"]["fusion"] == "rank"
