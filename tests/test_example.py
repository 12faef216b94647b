"""The shipped example is exactly what its script makes: 20% uniform flips, truth recorded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from .conftest import ROOT, tree_digest


def test_example_folder_is_reproduced_by_its_script(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_noisy_digits", ROOT / "examples" / "make_noisy_digits.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flipped = module.make_noisy_digits(tmp_path / "d", tmp_path / "truth.csv")
    assert flipped == round(0.2 * 1797)
    assert tree_digest(tmp_path / "d") == tree_digest(ROOT / "examples" / "noisy-digits")
    shipped = (ROOT / "examples" / "noisy-digits-truth.csv").read_text()
    assert (tmp_path / "truth.csv").read_text() == shipped
    truth = pd.read_csv(tmp_path / "truth.csv", dtype=str)
    given = truth["path"].str.split("/").str[0]
    assert (given != truth["label"]).sum() == flipped  # every flip goes to another class
