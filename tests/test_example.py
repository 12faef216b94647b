"""The shipped example is exactly what its script makes: 20% uniform flips, truth recorded."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from .conftest import ROOT, load_script, tree_digest


def test_example_folder_is_reproduced_by_its_script(tmp_path: Path) -> None:
    module = _script()
    flipped = module.make_noisy_digits(tmp_path / "d", tmp_path / "truth.csv")
    assert flipped == round(0.2 * 1797)
    assert tree_digest(tmp_path / "d") == tree_digest(ROOT / "examples" / "noisy-digits")
    shipped = (ROOT / "examples" / "noisy-digits-truth.csv").read_text()
    assert (tmp_path / "truth.csv").read_text() == shipped
    truth = pd.read_csv(tmp_path / "truth.csv", dtype=str)
    given = truth["path"].str.split("/").str[0]
    assert (given != truth["label"]).sum() == flipped  # every flip goes to another class


def _script() -> ModuleType:
    return load_script(ROOT / "examples" / "make_noisy_digits.py")


def test_example_script_rewrites_its_own_folder_and_refuses_any_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` may name a folder the script wrote (rewritten the same), never one with
    other files: that one is refused, with one line and exit status 2, and left as it was."""
    module = _script()
    out, truth = tmp_path / "d", tmp_path / "new" / "truth.csv"  # truth's folder made too
    assert module.main(["--out", str(out), "--truth", str(truth), "--rate", "0.05"]) == 0
    first = tree_digest(out)
    assert module.main(["--out", str(out), "--truth", str(truth), "--rate", "0.05"]) == 0
    assert tree_digest(out) == first
    capsys.readouterr()
    precious = tmp_path / "precious"
    (precious / "3").mkdir(parents=True)
    (precious / "important.txt").write_text("keep\n")
    (precious / "3" / "digit_0001.png").write_bytes(b"not written by the script")
    assert module.main(["--out", str(precious), "--truth", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not empty" in err[0]
    assert (precious / "important.txt").read_text() == "keep\n"
    assert not (tmp_path / "t.csv").exists()
    # a class folder holding another file is not the script's either
    (precious / "important.txt").unlink()
    (precious / "3" / "notes.txt").write_text("keep\n")
    assert module.main(["--out", str(precious), "--truth", str(tmp_path / "t.csv")]) == 2
    assert (precious / "3" / "notes.txt").read_text() == "keep\n"
    (tmp_path / "a-file").write_text("keep\n")
    assert module.main(["--out", str(tmp_path / "a-file"), "--truth", str(truth)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == "keep\n"


def test_example_script_puts_the_truth_beside_its_out_folder(tmp_path: Path) -> None:
    """Without --truth, the truth CSV goes beside --out (``<out>-truth.csv``): a folder
    written elsewhere never replaces the bundled example's truth file."""
    shipped = ROOT / "examples" / "noisy-digits-truth.csv"
    before = shipped.stat().st_mtime_ns, shipped.read_bytes()
    assert _script().main(["--out", str(tmp_path / "mine"), "--rate", "0.3", "--seed", "4"]) == 0
    assert (shipped.stat().st_mtime_ns, shipped.read_bytes()) == before
    truth = pd.read_csv(tmp_path / "mine-truth.csv", dtype=str)
    assert len(truth) == 1797
    assert (truth["path"].str.split("/").str[0] != truth["label"]).sum() == round(0.3 * 1797)
