"""``noisyclean apply --decisions``: the review round trip (``export --format csv``, the
sheet's ``decision`` column filled in, ``apply``), a spreadsheet's CSV, and each refusal of
a bad decisions file (nothing written)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.outputs.apply import MANIFEST, MANIFEST_COLUMNS

from ..conftest import tree_digest
from .conftest import clear_failure, make_outputs, write_image

runner = CliRunner()

#: path -> (given label, scan's suggestion, scan's action); classes a, b, c.
ROWS = {
    "a/1.png": ("a", "a", "keep"),
    "a/2.png": ("a", "b", "relabel"),
    "a/3.png": ("a", "a", "review"),
    "b/4.png": ("b", "a", "review"),
    "b/5.png": ("b", "c", "relabel"),
    "c/6.png": ("c", "c", "review"),
    "c/7.png": ("c", "a", "relabel"),
    "c/8.png": ("c", "c", "keep"),
}


def _invoke(*args: object) -> object:
    return runner.invoke(app, [*map(str, args)])


def _flat(result: object) -> str:
    return " ".join(result.output.split())  # Rich wraps long lines


def _scan_outputs(tmp_path: Path) -> tuple[Path, Path]:
    """Real images and hand-made scan outputs for :data:`ROWS`: (data, out)."""
    data = tmp_path / "data"
    rows = []
    for i, (path, (label, suggested, action)) in enumerate(ROWS.items()):
        write_image(data / path, 20 * i)
        rows.append({"path": path, "label": label, "suggested_label": suggested,
                     "action": action})
    return data, make_outputs(tmp_path / "out", data, rows, ["a", "b", "c"])


def _manifest(clean: Path) -> pd.DataFrame:
    return pd.read_csv(clean / MANIFEST, dtype=str, keep_default_na=False)


def _image_files(clean: Path) -> list[str]:
    return sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def test_review_sheet_round_trip(tmp_path: Path) -> None:
    data, out = _scan_outputs(tmp_path)
    before = tree_digest(data)
    result = _invoke("export", out, "--format", "csv")
    assert result.exit_code == 0, result.output
    sheet_path = out / "review.csv"
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    # the flagged rows (relabel and review), every decision empty
    assert sorted(sheet["path"]) == sorted(p for p, r in ROWS.items() if r[2] != "keep")
    assert set(sheet["decision"]) == {""}
    decisions = {
        "a/2.png": "keep",       # reject the suggestion b: stays under a
        "a/3.png": "drop",       # left out
        "b/4.png": "c",          # a class the reviewer chose (neither given nor suggested)
        "b/5.png": "Relabel",    # accept the suggestion c, keyword in another case
        "c/6.png": "bird",       # a new class
        # c/7.png: empty, the scan's relabel to a stands
    }
    sheet["decision"] = sheet["path"].map(decisions).fillna("")
    sheet.loc[sheet["path"] == "c/6.png", "comment"] = "a bird, not a c"
    sheet.to_csv(sheet_path, index=False)

    clean = tmp_path / "clean"
    result = _invoke("apply", out, "--to", clean, "--decisions", sheet_path)
    assert result.exit_code == 0, result.output
    text = _flat(result)
    assert ("wrote 7 images (7 copied)" in text and "4 relabeled, 0 review images left out, "
            "5 decisions applied (1 image dropped by decision)" in text), text
    assert ("warning: new class folder(s), not among the scan's classes: 'bird' "
            "(suggested_label of relabel rows or decisions)") in text
    expected = {  # source -> (dest, action, decision)
        "a/1.png": ("a/1.png", "keep", ""),
        "a/2.png": ("a/2.png", "keep", "keep"),
        "b/4.png": ("c/4.png", "relabel", "c"),
        "b/5.png": ("c/5.png", "relabel", "Relabel"),
        "c/6.png": ("bird/6.png", "relabel", "bird"),
        "c/7.png": ("a/7.png", "relabel", ""),
        "c/8.png": ("c/8.png", "keep", ""),
    }
    manifest = _manifest(clean)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert {r.source: (r.dest, r.action, r.decision) for r in manifest.itertuples()} == expected
    assert all(r.new_label == r.dest.split("/")[0] and r.label == ROWS[r.source][0]
               for r in manifest.itertuples())
    assert _image_files(clean) == sorted(d for d, _, _ in expected.values())
    for source, (dest, _, _) in expected.items():
        assert (clean / dest).read_bytes() == (data / source).read_bytes()
    assert tree_digest(data) == before

    # --drop-review leaves out the rows still "review" after the decisions: none here, as
    # every review row was decided; without the decisions, all three review rows go
    result = _invoke("apply", out, "--to", clean, "--force", "--drop-review",
                     "--decisions", sheet_path)
    assert result.exit_code == 0, result.output
    assert "0 review images left out" in _flat(result)
    assert len(_manifest(clean)) == 7
    sheet["decision"] = ""
    sheet.loc[sheet["path"] == "a/3.png", "decision"] = "keep"
    sheet.to_csv(sheet_path, index=False)
    result = _invoke("apply", out, "--to", clean, "--force", "--drop-review",
                     "--decisions", sheet_path)
    assert result.exit_code == 0, result.output
    assert ("2 review images left out, 1 decision applied (0 images dropped by decision)"
            in _flat(result))
    assert sorted(_manifest(clean)["source"]) == [
        "a/1.png", "a/2.png", "a/3.png", "b/5.png", "c/7.png", "c/8.png"]
    assert _image_files(clean) == ["a/1.png", "a/3.png", "a/7.png", "b/2.png", "c/5.png",
                                   "c/8.png"]


def test_spreadsheet_csv_is_read(tmp_path: Path) -> None:
    """A sheet saved by a spreadsheet: a byte-order mark, CRLF, a blank row, spaces around
    cells and column names, columns in another order, a row with a comment alone."""
    data, out = _scan_outputs(tmp_path)
    sheet = tmp_path / "decisions.csv"
    lines = [
        "comment , decision ,path,extra",
        "looks like a c, c ,b/4.png,",
        ",,,",
        ", DROP , a/3.png ,x",  # a path with spaces around: matched without them
        "just a note,,,",
        ",,c/7.png,",          # no decision: the scan's row stands
        "",
    ]
    sheet.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    clean = tmp_path / "clean"
    result = _invoke("apply", out, "--to", clean, "--decisions", sheet)
    assert result.exit_code == 0, result.output
    assert "2 decisions applied (1 image dropped by decision)" in _flat(result)
    manifest = _manifest(clean).set_index("source")
    assert "a/3.png" not in manifest.index
    assert manifest.loc["b/4.png", ["dest", "action", "decision"]].to_list() == [
        "c/4.png", "relabel", "c"]
    assert manifest.loc["c/7.png", ["dest", "action", "decision"]].to_list() == [
        "a/7.png", "relabel", ""]
    assert len(manifest) == 7


def test_a_class_named_like_a_keyword(tmp_path: Path) -> None:
    """A class named ``keep`` is chosen by ``keep`` exactly; ``KEEP`` is the keyword."""
    data = tmp_path / "data"
    write_image(data / "keep" / "1.png", 1)
    write_image(data / "other" / "2.png", 2)
    write_image(data / "other" / "3.png", 3)
    rows = [{"path": "keep/1.png", "label": "keep", "action": "keep"},
            {"path": "other/2.png", "label": "other", "suggested_label": "keep",
             "action": "relabel"},
            {"path": "other/3.png", "label": "other", "action": "review"}]
    out = make_outputs(tmp_path / "out", data, rows, ["keep", "other"])
    sheet = tmp_path / "d.csv"
    sheet.write_text("path,decision\nother/2.png,KEEP\nother/3.png,keep\n")
    clean = tmp_path / "clean"
    result = _invoke("apply", out, "--to", clean, "--decisions", sheet)
    assert result.exit_code == 0, result.output
    assert _image_files(clean) == ["keep/1.png", "keep/3.png", "other/2.png"]
    assert "warning" not in result.output


def _refused(tmp_path: Path, content: str | bytes, *needles: str) -> None:
    _, out = _scan_outputs(tmp_path)
    sheet = tmp_path / "d.csv"
    if isinstance(content, bytes):
        sheet.write_bytes(content)
    else:
        sheet.write_text(content, encoding="utf-8")
    before = tree_digest(tmp_path)
    clear_failure(_invoke("apply", out, "--to", tmp_path / "clean", "--decisions", sheet),
                  *needles)
    assert tree_digest(tmp_path) == before
    assert not (tmp_path / "clean").exists()


def test_unknown_paths_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path,
             "path,decision\na/2.png,keep\nx/1.png,drop\nx/2.png,\nx/3.png,b\nx/4.png,b\n",
             "4 path(s) that are not in scores.csv", "'x/1.png', 'x/2.png', 'x/3.png' and "
             "1 more", "written as scores.csv writes them")


def test_the_same_path_twice_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "path,decision\na/2.png,keep\nb/4.png,c\n a/2.png ,drop\n",
             "lists the same path more than once: 'a/2.png'")


def test_missing_columns_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "path,verdict,comment\na/2.png,keep,\n",
             "lacks column(s) 'decision'", "columns found: 'path', 'verdict', 'comment'")
    _refused(tmp_path, "path,decision,decision\na/2.png,keep,drop\n",
             "more than one column 'decision'")


def test_decisions_that_are_not_folder_names_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "path,decision\na/2.png,../evil\nb/4.png,a/b\nb/5.png,..\n",
             "neither keep, relabel, drop nor a plain folder name", "'..', '../evil', 'a/b'")


def test_relabel_without_a_suggestion_is_refused(tmp_path: Path) -> None:
    """A review row keeps its label as suggestion: ``relabel`` would silently keep it."""
    _refused(tmp_path, "path,decision\nb/5.png,relabel\na/3.png,relabel\n",
             "decides 'relabel' for image(s) whose suggested label is their given label",
             "'a/3.png'", "write the class name")


def test_unreadable_decisions_files_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "path,decision\na/2.png,caf\xe9\n".encode("latin-1"), "not UTF-8")
    _refused(tmp_path, b"", "is empty")
    _refused(tmp_path, "path,decision\na/2.png,keep,extra\n", "not a readable CSV",
             "Expected 2 fields")
    _, out = _scan_outputs(tmp_path)
    clear_failure(_invoke("apply", out, "--to", tmp_path / "clean", "--decisions",
                          tmp_path / "missing.csv"), "does not exist")
    assert not (tmp_path / "clean").exists()
