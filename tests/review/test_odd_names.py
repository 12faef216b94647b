"""Names the review commands meet in real folders: a backslash in a class folder's name on
POSIX, a colon on Windows, and a decisions sheet saved in Unicode NFD (macOS)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.errors import NoisyCleanError
from noisyclean.outputs.apply import MANIFEST, plan
from noisyclean.outputs.decisions import read_decisions
from noisyclean.outputs.load import safe_name, safe_relative_path

from .conftest import make_outputs, write_image

runner = CliRunner()

posix_only = pytest.mark.skipif(os.name == "nt", reason="a Windows name cannot hold a '\\'")


@posix_only
def test_safe_name_on_posix() -> None:
    assert safe_name("a\\b") and safe_name("..\\x") and safe_name("C:x")
    for bad in ("", ".", "..", "a/b", "a\x00b"):
        assert not safe_name(bad), bad


def test_hidden_class_folders_are_refused_in_full_words(tmp_path: Path) -> None:
    """A label or a decision starting with '.' would be a class folder that ImageFolder
    readers skip; both messages, word for word (they share one check)."""
    tail = ("hidden class folders, which ImageFolder readers (noisyclean scan among them) "
            "skip: their images would be lost; refusing to apply")
    table = pd.DataFrame({
        "path": ["a/1.png", "a/2.png", "a/3.png", "a/4.png", "a/5.png"],
        "label": ["a"] * 5,
        "suggested_label": [".d", ".b", ".c", ".a", ".b"],
        "action": ["relabel"] * 5,
    })
    with pytest.raises(NoisyCleanError) as error:
        plan(table, tmp_path / "data", tmp_path / "clean")
    assert str(error.value) == f"label(s) '.a', '.b', '.c' and 1 more would be {tail}"
    sheet = tmp_path / "decisions.csv"
    sheet.write_text("path,decision\na/1.png,keep\na/2.png,.cat\na/3.png,\n")
    with pytest.raises(NoisyCleanError) as error:
        read_decisions(sheet)
    assert str(error.value) == (
        f"decisions file {sheet} has decision(s) '.cat' that would be {tail}")


def test_safe_names_and_paths_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``\\`` separates folders and ``C:x`` is drive-relative, both are refused."""
    monkeypatch.setattr("noisyclean.outputs.load.WINDOWS", True)
    for bad in ("a\\b", "C:x", "x:", "a/b", ".."):
        assert not safe_name(bad), bad
    assert safe_name("cat")
    for bad in ("C:x.png", "cat/C:x.png", "cat/x.png:stream", "cat\\..\\x.png"):
        assert safe_relative_path(bad) is None, bad
    assert safe_relative_path("cat\\x.png").parts == ("cat", "x.png")


@posix_only
def test_apply_into_a_class_folder_with_a_backslash(tmp_path: Path) -> None:
    """A class folder ``x\\y`` (legal on POSIX, and scanned as a class) is a destination
    ``apply`` writes, not a label it refuses."""
    data = tmp_path / "data"
    write_image(data / "a" / "1.png", 1)
    write_image(data / "x\\y" / "2.png", 2)
    rows = [{"path": "a/1.png", "label": "a", "suggested_label": "x\\y", "action": "relabel"},
            {"path": "x\\y/2.png", "label": "x\\y", "action": "keep"}]
    out = make_outputs(tmp_path / "out", data, rows, ["a", "x\\y"])
    clean = tmp_path / "clean"
    result = runner.invoke(app, ["apply", str(out), "--to", str(clean)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png")) == [
        "x\\y/1.png", "x\\y/2.png"]
    assert (clean / "x\\y" / "1.png").read_bytes() == (data / "a" / "1.png").read_bytes()


def test_a_decisions_sheet_in_nfd_matches(tmp_path: Path) -> None:
    """A sheet saved on macOS spells ``é`` as ``e`` + a combining accent, in its paths and
    in a class name: both match the scan's NFC names, so nothing is unknown or new."""
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    data = tmp_path / "data"
    write_image(data / nfc / "1.png", 1)
    write_image(data / "tea" / "2.png", 2)
    write_image(data / "tea" / "3.png", 3)
    rows = [{"path": f"{nfc}/1.png", "label": nfc, "action": "keep"},
            {"path": "tea/2.png", "label": "tea", "action": "review"},
            {"path": "tea/3.png", "label": "tea", "action": "keep"}]
    out = make_outputs(tmp_path / "out", data, rows, [nfc, "tea"])
    sheet = tmp_path / "decisions.csv"
    sheet.write_text(f"path,decision\ntea/2.png,{nfd}\n{nfd}/1.png,drop\n", encoding="utf-8")
    clean = tmp_path / "clean"
    result = runner.invoke(app, ["apply", str(out), "--to", str(clean), "--decisions",
                                 str(sheet)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # no "new class" café
    manifest = pd.read_csv(clean / MANIFEST, dtype=str, keep_default_na=False)
    assert sorted(manifest["dest"]) == [f"{nfc}/2.png", "tea/3.png"]
    assert (clean / nfc / "2.png").is_file()
