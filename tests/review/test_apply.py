"""``noisyclean apply``: the new ImageFolder tree byte for byte, links, --drop-review,
--force, and refusals of hostile scores.csv files (nothing written anywhere)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.outputs.apply import MANIFEST, MANIFEST_COLUMNS
from noisyclean.outputs.load import safe_relative_path

from ..conftest import tree_digest
from .conftest import QUOTE_PATH, SCRIPT_PATH, Scanned, clear_failure, make_outputs, write_image

runner = CliRunner()


def _apply(*args: object) -> object:
    return runner.invoke(app, ["apply", *map(str, args)])


def _manifest(clean: Path) -> pd.DataFrame:
    return pd.read_csv(clean / MANIFEST, dtype=str, keep_default_na=False)


def _image_files(clean: Path) -> list[str]:
    return sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != MANIFEST)


def test_apply_copies_every_image_under_its_suggested_label(
    scanned: Scanned, tmp_path: Path
) -> None:
    """The installed command, in a subprocess."""
    before = tree_digest(scanned.root)
    clean = tmp_path / "clean"
    script = Path(sys.executable).parent / "noisyclean"
    done = subprocess.run([str(script), "apply", str(scanned.out), "--to", str(clean)],
                          capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "wrote 122 images (122 copied)" in done.stderr
    assert tree_digest(scanned.root) == before  # the source is untouched

    scores = scanned.scores().set_index("path")
    manifest = _manifest(clean)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert sorted(manifest["source"]) == sorted(scores.index)
    assert _image_files(clean) == sorted(manifest["dest"])
    assert set(manifest["method"]) == {"copy"}
    for row in manifest.itertuples():
        suggested = scores.loc[row.source, "suggested_label"]
        assert row.new_label == suggested and row.label == scores.loc[row.source, "label"]
        assert row.dest.split("/") == [suggested, row.source.rsplit("/", 1)[1]]
        dest = clean / row.dest
        assert not dest.is_symlink()
        assert dest.read_bytes() == (scanned.root / row.source).read_bytes()
    relabel = scores[scores["action"] == "relabel"]
    assert len(relabel) > 0
    for path, row in relabel.iterrows():
        assert row["suggested_label"] != row["label"]
        name = path.rsplit("/", 1)[1]
        assert (clean / row["suggested_label"] / name).is_file()
        assert not (clean / row["label"] / name).exists()
    # the hostile names were copied as the plain files they are, under their suggested
    # labels (both are copies of a "0", filed under 1 and 7: the scan may relabel them)
    for path, name in ((SCRIPT_PATH, "script>.png"), (QUOTE_PATH, QUOTE_PATH.split("/")[1])):
        dest = clean / scores.loc[path, "suggested_label"] / name
        assert dest.read_bytes() == (scanned.root / path).read_bytes()


def test_drop_review_and_hard_links(mixed: Scanned, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    result = _apply(mixed.out, "--to", clean, "--drop-review", "--link")
    assert result.exit_code == 0, result.output
    scores = mixed.scores()
    kept = scores[scores["action"] != "review"]
    assert (scores["action"] == "review").sum() > 0
    manifest = _manifest(clean)
    assert sorted(manifest["source"]) == sorted(kept["path"])
    assert "review" not in set(manifest["action"])
    assert set(manifest["method"]) == {"hard"}
    for row in manifest.itertuples():
        assert os.stat(clean / row.dest).st_ino == os.stat(mixed.root / row.source).st_ino
        assert row.new_label == scores.set_index("path").loc[row.source, "suggested_label"]
    assert _image_files(clean) == sorted(manifest["dest"])


def test_symbolic_links(scanned: Scanned, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    result = _apply(scanned.out, "--to", clean, "--symlink")
    assert result.exit_code == 0, result.output
    manifest = _manifest(clean)
    assert set(manifest["method"]) == {"symlink"}
    for row in manifest.itertuples():
        dest = clean / row.dest
        assert dest.is_symlink()
        assert dest.resolve() == (scanned.root / row.source).resolve()
    clear_failure(_apply(scanned.out, "--to", tmp_path / "x", "--link", "--symlink"),
                  "--link and --symlink")


def test_non_empty_destination_needs_force(mixed: Scanned, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "mine.txt").write_text("keep me")
    clear_failure(_apply(mixed.out, "--to", clean), "not empty", "--force")
    assert sorted(p.name for p in clean.iterdir()) == ["mine.txt"]
    assert _apply(mixed.out, "--to", clean, "--force").exit_code == 0
    first = _manifest(clean)
    # a second apply with --force replaces the first one's files, and keeps the rest
    result = _apply(mixed.out, "--to", clean, "--force", "--drop-review")
    assert result.exit_code == 0, result.output
    second = _manifest(clean)
    assert len(second) < len(first)
    assert _image_files(clean) == sorted([*second["dest"], "mine.txt"])
    assert (clean / "mine.txt").read_text() == "keep me"


def test_destination_that_overlaps_the_source_is_refused(
    scanned: Scanned, tmp_path: Path
) -> None:
    before = tree_digest(scanned.root)
    for to in (scanned.root, scanned.root / "0", scanned.root.parent, scanned.out):
        clear_failure(_apply(scanned.out, "--to", to, "--force"), "--to")
    assert tree_digest(scanned.root) == before


def _hostile(tmp_path: Path, path: str, suggested: str) -> Path:
    """A dataset of real images plus a scores.csv whose third row is hostile."""
    data = tmp_path / "data"
    write_image(data / "a" / "1.png", 10)
    write_image(data / "b" / "2.png", 20)
    write_image(data / "a" / "3.png", 40)
    write_image(tmp_path / "outside.png", 30)
    (data / "a" / "link.png").symlink_to(tmp_path / "outside.png")
    rows = [{"path": "a/1.png", "label": "a", "action": "keep"},
            {"path": "b/2.png", "label": "b", "action": "keep"},
            {"path": path, "label": "a", "suggested_label": suggested, "action": "relabel"}]
    return make_outputs(tmp_path / "out", data, rows, ["a", "b"])


@pytest.mark.parametrize(
    "path,suggested,needle",
    [
        ("../outside.png", "b", "'../outside.png'"),
        ("a/../../outside.png", "b", "'a/../../outside.png'"),
        ("a\\..\\..\\outside.png", "b", "outside.png"),
        ("{tmp}/outside.png", "b", "absolute"),
        ("a/missing.png", "b", "missing"),
        ("a\\3.png", "b", "part of a file name"),  # "a/3.png" exists; "\\" is no separator
        ("a/3.png", "../../evil", "'../../evil'"),
        ("a/3.png", "{tmp}/evil", "not plain folder names"),
        ("a/3.png", "..", "'..'"),
        ("a/3.png", "", "not plain folder names"),
        ("a/3.png", "x" * 256, "longer than 255 bytes"),  # refused before any copy
        ("a/3.png", "é" * 128, "longer than 255 bytes"),  # 128 characters, 256 bytes
    ],
)
def test_hostile_scores_are_refused_and_nothing_is_written(
    tmp_path: Path, path: str, suggested: str, needle: str
) -> None:
    out = _hostile(tmp_path, path.format(tmp=tmp_path), suggested.format(tmp=tmp_path))
    before = tree_digest(tmp_path)
    result = _apply(out, "--to", tmp_path / "clean")
    clear_failure(result, needle)
    assert tree_digest(tmp_path) == before  # nothing written, nothing changed
    assert not (tmp_path / "clean").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_a_link_in_the_dataset_is_followed_wherever_it_leads(tmp_path: Path, mode: str) -> None:
    """The dataset's own symbolic links are followed, as the scan follows them: a copy of
    the image a link leads to, or a link to it; only the table's paths are distrusted."""
    out = _hostile(tmp_path, "a/link.png", "b")
    clean = tmp_path / "clean"
    result = _apply(out, "--to", clean, *(["--symlink"] if mode == "symlink" else []))
    assert result.exit_code == 0, result.output
    dest = clean / "b" / "link.png"
    assert dest.read_bytes() == (tmp_path / "outside.png").read_bytes()
    assert dest.is_symlink() == (mode == "symlink")
    if mode == "symlink":
        assert dest.resolve() == (tmp_path / "outside.png").resolve()


def test_force_never_removes_files_outside_the_destination(
    scanned: Scanned, tmp_path: Path
) -> None:
    """--force removes the files a previous apply's manifest lists: a forged manifest that
    lists files outside CLEAN_DIR must not make it delete them."""
    clean = tmp_path / "clean"
    clean.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (clean / "0").mkdir()
    (clean / "0" / "old.png").write_text("from a previous apply")
    (clean / MANIFEST).write_text(
        "source,dest,label,new_label,action,method\n"
        f"x,../victim.txt,0,0,keep,copy\nx,{victim},0,0,keep,copy\n"
        "x,0/../../victim.txt,0,0,keep,copy\nx,0/old.png,0,0,keep,copy\n"
    )
    result = _apply(scanned.out, "--to", clean, "--force")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"
    assert not (clean / "0" / "old.png").exists()  # listed inside CLEAN_DIR: replaced


def test_same_file_names_do_not_overwrite_each_other(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_image(data / "a" / "x.png", 1)
    write_image(data / "b" / "x.png", 2)
    write_image(data / "b" / "sub" / "X.png", 3)
    rows = [
        {"path": "a/x.png", "label": "a", "suggested_label": "b", "action": "relabel"},
        {"path": "b/x.png", "label": "b", "action": "keep"},
        {"path": "b/sub/X.png", "label": "b", "action": "keep"},
    ]
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    clean = tmp_path / "clean"
    result = _apply(out, "--to", clean)
    assert result.exit_code == 0, result.output
    manifest = _manifest(clean).set_index("source")
    assert manifest["dest"].to_dict() == {
        "a/x.png": "b/x.png", "b/sub/X.png": "b/X-2.png", "b/x.png": "b/x-3.png"}
    for source, dest in manifest["dest"].items():
        assert (clean / dest).read_bytes() == (data / source).read_bytes()
    assert _image_files(clean) == ["b/X-2.png", "b/x-3.png", "b/x.png"]


def test_backslash_in_a_file_name_is_part_of_the_name(tmp_path: Path) -> None:
    """On POSIX ``a\\b.png`` is one file name, as scan writes it into scores.csv: apply
    copies that very file (not ``a/b.png``, here a different image), under its name."""
    if os.name == "nt":
        pytest.skip("a Windows file name cannot hold a backslash")
    data = tmp_path / "data"
    write_image(data / "cat" / "a\\b.png", 1)
    write_image(data / "cat" / "a" / "b.png", 2)  # what a "\" read as "/" would find
    write_image(data / "dog" / "x\\y.png", 3)
    rows = [
        {"path": "cat/a\\b.png", "label": "cat", "suggested_label": "dog",
         "action": "relabel"},
        {"path": "cat/a/b.png", "label": "cat", "action": "keep"},
        {"path": "dog/x\\y.png", "label": "dog", "action": "keep"},
    ]
    out = make_outputs(tmp_path / "out", data, rows, ["cat", "dog"])
    clean = tmp_path / "clean"
    result = _apply(out, "--to", clean)
    assert result.exit_code == 0, result.output
    manifest = _manifest(clean).set_index("source")
    assert manifest["dest"].to_dict() == {
        "cat/a/b.png": "cat/b.png", "cat/a\\b.png": "dog/a\\b.png",
        "dog/x\\y.png": "dog/x\\y.png"}
    assert _image_files(clean) == ["cat/b.png", "dog/a\\b.png", "dog/x\\y.png"]
    for source, dest in manifest["dest"].items():
        assert (clean / dest).read_bytes() == (data / source).read_bytes()
    # --force after it removes what the manifest lists, backslash names included
    assert _apply(out, "--to", clean, "--force").exit_code == 0
    assert _image_files(clean) == ["cat/b.png", "dog/a\\b.png", "dog/x\\y.png"]


@pytest.mark.parametrize("path", [
    "C:\\outside.png", "C:/outside.png", "c:", "\\\\server\\share\\outside.png",
    "//server/share/outside.png", "\\outside.png", "a\\..\\outside.png", "..\\outside.png",
    "a/..", "", "a/\x00.png",
])
def test_unsafe_table_paths_stay_refused(path: str) -> None:
    """Windows drive, UNC and rooted forms, and ``..`` between backslashes, are refused
    whatever the system: a table may come from Windows."""
    assert safe_relative_path(path) is None


@pytest.mark.parametrize("path,parts", [
    ("cat/a\\b.png", ("cat", "a\\b.png")),
    ("./cat//1.png", ("cat", "1.png")),
    ("cat/C:x.png", ("cat", "C:x.png")),
    ("cat/a\\.\\b.png", ("cat", "a\\.\\b.png")),
])
def test_safe_table_paths_keep_backslashes_in_names(path: str, parts: tuple) -> None:
    if os.name == "nt":
        pytest.skip("on Windows a backslash is a separator")
    assert safe_relative_path(path).parts == parts


@pytest.mark.parametrize("first", ["--symlink", "--link"])
def test_force_after_symbolic_links_replaces_them(
    scanned: Scanned, tmp_path: Path, first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The links a previous apply left (--symlink, or --link fallen back to symbolic
    links) lead into the dataset: --force must replace them, not refuse them as
    destinations outside CLEAN_DIR, and never write through them."""
    if first == "--link":  # a file system that refuses hard links: symbolic links instead
        def refuse(*_: object) -> None:
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "link", refuse)
    before = tree_digest(scanned.root)
    clean = tmp_path / "clean"
    assert _apply(scanned.out, "--to", clean, first).exit_code == 0
    assert set(_manifest(clean)["method"]) == {"symlink"}
    for again in (["--symlink"], []):
        result = _apply(scanned.out, "--to", clean, "--force", *again)
        assert result.exit_code == 0, result.output
        manifest = _manifest(clean)
        assert set(manifest["method"]) == {"symlink" if again else "copy"}
        assert _image_files(clean) == sorted(manifest["dest"])
    for row in manifest.itertuples():
        dest = clean / row.dest
        assert not dest.is_symlink()
        assert dest.read_bytes() == (scanned.root / row.source).read_bytes()
    assert tree_digest(scanned.root) == before  # never written through a link


def test_class_folder_linking_out_of_the_destination_is_refused(tmp_path: Path) -> None:
    """A CLEAN_DIR whose class folder is a symbolic link to elsewhere: writing there would
    leave CLEAN_DIR, so apply refuses before writing anything."""
    out = _hostile(tmp_path, "a/3.png", "b")
    clean = tmp_path / "clean"
    clean.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (clean / "b").symlink_to(elsewhere, target_is_directory=True)
    before = tree_digest(tmp_path)
    clear_failure(_apply(out, "--to", clean, "--force"), "destination b/3.png leaves")
    assert tree_digest(tmp_path) == before
    assert list(elsewhere.iterdir()) == []


def test_the_action_decides_the_label(tmp_path: Path) -> None:
    """A reviewer rejects a suggestion by changing the action alone (relabel -> keep or
    review), leaving suggested_label as it was: the image stays under its given label."""
    data = tmp_path / "data"
    for i, name in enumerate(("keep", "relabel", "rejected", "doubt", "plain")):
        write_image(data / "a" / f"{name}.png", 10 * i)
    rows = [
        {"path": "a/keep.png", "label": "a", "action": "keep"},
        {"path": "a/relabel.png", "label": "a", "suggested_label": "b", "action": "relabel"},
        {"path": "a/rejected.png", "label": "a", "suggested_label": "b", "action": "keep"},
        {"path": "a/doubt.png", "label": "a", "suggested_label": "b", "action": "review"},
        {"path": "a/plain.png", "label": "a", "action": "review"},
    ]
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    clean = tmp_path / "clean"
    result = _apply(out, "--to", clean)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "wrote 5 images (5 copied)" in text and ": 1 relabeled," in text
    manifest = _manifest(clean).set_index("source")
    assert manifest["new_label"].to_dict() == {
        "a/doubt.png": "a", "a/keep.png": "a", "a/plain.png": "a", "a/rejected.png": "a",
        "a/relabel.png": "b"}
    assert _image_files(clean) == [
        "a/doubt.png", "a/keep.png", "a/plain.png", "a/rejected.png", "b/relabel.png"]
    result = _apply(out, "--to", clean, "--force", "--drop-review")
    assert result.exit_code == 0, result.output
    assert "1 relabeled, 2 review images left out" in " ".join(result.output.split())
    assert _image_files(clean) == ["a/keep.png", "a/rejected.png", "b/relabel.png"]


def test_given_labels_reformatted_by_a_spreadsheet_are_refused(tmp_path: Path) -> None:
    """A spreadsheet reads class "007" as the number 7 and writes it back as "7": apply
    must not merge those images into a new folder "7"."""
    data = tmp_path / "data"
    write_image(data / "007" / "1.png", 1)
    write_image(data / "007" / "2.png", 2)
    write_image(data / "010" / "3.png", 3)
    write_image(data / "abc" / "4.png", 4)
    rows = [
        {"path": "007/1.png", "label": "007", "action": "keep"},
        {"path": "007/2.png", "label": "007", "suggested_label": "010", "action": "relabel"},
        {"path": "010/3.png", "label": "010", "action": "keep"},
        {"path": "abc/4.png", "label": "abc", "action": "keep"},
    ]
    out = make_outputs(tmp_path / "out", data, rows, ["007", "010", "abc"])
    # the spreadsheet round trip: every cell that looks like a number becomes one
    table = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    for column in ("label", "predicted", "suggested_label"):
        table[column] = [str(int(v)) if v.isdigit() else v for v in table[column]]
    table.to_csv(out / "scores.csv", index=False)
    assert "\n007/1.png,7," in (out / "scores.csv").read_text()
    before = tree_digest(tmp_path)
    clear_failure(_apply(out, "--to", tmp_path / "clean"),
                  "given label(s) that are not among the scan's 3 classes",
                  "'10', '7'", "spreadsheet", "refusing to apply")
    assert tree_digest(tmp_path) == before
    assert not (tmp_path / "clean").exists()


def test_a_new_suggested_class_is_written_with_a_warning(tmp_path: Path) -> None:
    """A reviewer may relabel an image into a class the scan did not know: allowed, but
    the new class folder is named in a warning."""
    data = tmp_path / "data"
    write_image(data / "a" / "1.png", 1)
    write_image(data / "b" / "2.png", 2)
    write_image(data / "a" / "3.png", 3)
    rows = [
        {"path": "a/1.png", "label": "a", "suggested_label": "bird", "action": "relabel"},
        {"path": "b/2.png", "label": "b", "suggested_label": "ghost", "action": "keep"},
        {"path": "a/3.png", "label": "a", "action": "keep"},
    ]
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    clean = tmp_path / "clean"
    result = _apply(out, "--to", clean)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: new class folder(s), not among the scan's classes: 'bird'" in text
    assert "ghost" not in text  # a keep row's suggestion is not used
    assert _image_files(clean) == ["a/3.png", "b/2.png", "bird/1.png"]
    # no warning when every folder is one of the scan's classes
    rows[0]["suggested_label"] = "b"
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    result = _apply(out, "--to", tmp_path / "clean2")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
