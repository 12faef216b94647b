"""``noisyclean export``: the Label Studio import checked field by field against the format
Label Studio documents for pre-annotated tasks, its labeling config, and the CSV sheet."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit
from xml.etree import ElementTree

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.outputs.export import REVIEW_COLUMNS

from ..conftest import tree_digest
from .conftest import (
    SCRIPT_PATH,
    Scanned,
    clear_failure,
    make_outputs,
    moved_scan,
    write_image,
)

runner = CliRunner()


def _export(*args: object) -> object:
    return runner.invoke(app, ["export", *map(str, args)])


def _check_task(task: dict, row: pd.Series) -> None:
    """One task as Label Studio's import expects it, carrying this row's suggestion."""
    assert set(task) == {"data", "predictions"}
    data = task["data"]
    assert isinstance(data["image"], str) and data["image"]
    assert data["path"] == row["path"]
    assert data["given_label"] == row["label"]
    assert data["suggested_label"] == row["suggested_label"]
    assert data["action"] == row["action"]
    assert row["label"] in data["note"] and row["suggested_label"] in data["note"]
    [prediction] = task["predictions"]
    assert set(prediction) == {"model_version", "score", "result"}
    assert prediction["model_version"].startswith("noisyclean-")
    expected = row["predicted_prob"] if row["suggested_label"] == row["predicted"] \
        else row["given_prob"]
    assert abs(prediction["score"] - expected) < 1e-4 and 0 <= prediction["score"] <= 1
    [result] = prediction["result"]
    assert set(result) == {"id", "from_name", "to_name", "type", "value"}
    assert (result["from_name"], result["to_name"], result["type"]) == (
        "label", "image", "choices")
    assert result["value"] == {"choices": [row["suggested_label"]]}


def test_labelstudio_export_of_the_flagged_images(scanned: Scanned) -> None:
    result = _export(scanned.out)
    assert result.exit_code == 0, result.output
    assert "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT" in "".join(result.output.split())
    tasks = json.loads((scanned.out / "labelstudio.json").read_text(encoding="utf-8"))
    scores = scanned.scores()
    flagged = scores[scores["is_noisy"]].sort_values("clean_prob", kind="stable")
    assert isinstance(tasks, list) and len(tasks) == len(flagged) > 0
    assert [t["data"]["path"] for t in tasks] == flagged["path"].tolist()
    for task, (_, row) in zip(tasks, flagged.iterrows(), strict=True):
        _check_task(task, row)
        # default: a local-files URL relative to the dataset folder's parent
        url = urlsplit(task["data"]["image"])
        assert url.path == "/data/local-files/"
        [d] = parse_qs(url.query)["d"]
        assert d == f"{scanned.root.name}/{row['path']}"
        assert (scanned.root.parent / d).is_file()
    ids = [t["predictions"][0]["result"][0]["id"] for t in tasks]
    assert len(set(ids)) == len(ids)

    # the labeling config next to it names the same tags, and every class as a choice
    config = ElementTree.fromstring((scanned.out / "labelstudio.xml").read_text())
    image = config.find("Image")
    choices = config.find("Choices")
    assert image.get("name") == "image" and image.get("value") == "$image"
    assert choices.get("name") == "label" and choices.get("toName") == "image"
    assert choices.get("choice") == "single"
    assert [c.get("value") for c in choices.findall("Choice")] == ["0", "1", "7"]
    assert config.find("Header").get("value") == "$note"


def test_labelstudio_export_of_every_image_with_a_url_prefix(
    scanned: Scanned, tmp_path: Path
) -> None:
    target = tmp_path / "ls" / "tasks.json"
    target.parent.mkdir()
    result = _export(scanned.out, "--all", "--url-prefix", "https://files.example/set/",
                     "-o", target)
    assert result.exit_code == 0, result.output
    tasks = json.loads(target.read_text(encoding="utf-8"))
    assert (tmp_path / "ls" / "tasks.xml").is_file()
    scores = scanned.scores().set_index("path", drop=False)
    assert sorted(t["data"]["path"] for t in tasks) == sorted(scores["path"])
    for task in tasks:
        _check_task(task, scores.loc[task["data"]["path"]])
        assert task["data"]["image"] == "https://files.example/set/" + quote(
            task["data"]["path"], safe="/")
    script = [t for t in tasks if t["data"]["path"] == SCRIPT_PATH][0]
    assert "<" not in script["data"]["image"] and "%3Cscript%3E" in script["data"]["image"]


def test_document_root(scanned: Scanned, tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    root = scanned.root.parent.parent
    result = _export(scanned.out, "--document-root", root, "-o", target)
    assert result.exit_code == 0, result.output
    [task, *_] = json.loads(target.read_text())
    [d] = parse_qs(urlsplit(task["data"]["image"]).query)["d"]
    assert root / d == scanned.root / task["data"]["path"]
    clear_failure(_export(scanned.out, "--document-root", tmp_path, "-o", target),
                  "not inside --document-root")


def test_csv_review_sheet(scanned: Scanned, tmp_path: Path) -> None:
    target = tmp_path / "sheet.csv"
    result = _export(scanned.out, "--format", "csv", "-o", target)
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(target, dtype=str, keep_default_na=False)
    assert list(sheet.columns) == REVIEW_COLUMNS
    scores = scanned.scores()
    flagged = scores[scores["is_noisy"]].sort_values("clean_prob", kind="stable")
    assert sheet["path"].tolist() == flagged["path"].tolist()
    assert sheet["suggested_label"].tolist() == flagged["suggested_label"].tolist()
    assert (sheet["decision"] == "").all() and (sheet["comment"] == "").all()
    for path, file in zip(sheet["path"], sheet["file"], strict=True):
        assert os.path.isabs(file) and Path(file) == scanned.root / path


def test_export_top_n_takes_the_first_rows_of_the_ranking(
    scanned: Scanned, tmp_path: Path
) -> None:
    """``--top N``: the first N rows of scores.csv (the scan's ranking), flagged or not, in
    both formats: past the flags it reaches into the unflagged rows, as a close call's other
    count asks for."""
    scores = scanned.scores()
    flagged = int(scores["is_noisy"].sum())
    top = flagged + 5
    assert top < len(scores)
    sheet_path, tasks_path = tmp_path / "top.csv", tmp_path / "top.json"
    result = _export(scanned.out, "--format", "csv", "--top", top, "-o", sheet_path)
    assert result.exit_code == 0, result.output
    assert f"wrote {top} rows" in " ".join(result.output.split())
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    assert sheet["path"].tolist() == scores["path"].head(top).tolist()
    assert scores.set_index("path").loc[sheet["path"], "is_noisy"].tolist() == (
        [True] * flagged + [False] * 5)
    result = _export(scanned.out, "--top", 3, "-o", tasks_path)
    assert result.exit_code == 0, result.output
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    assert [t["data"]["path"] for t in tasks] == scores["path"].head(3).tolist()
    for task, (_, row) in zip(tasks, scores.head(3).iterrows(), strict=True):
        _check_task(task, row)
    clear_failure(_export(scanned.out, "--top", 0), "--top takes a count of 1 or more")
    clear_failure(_export(scanned.out, "--top", 5, "--all"), "not with --all")


def test_export_errors(scanned: Scanned, tmp_path: Path) -> None:
    clear_failure(_export(scanned.out, "--format", "coco"), "--format", "labelstudio, csv")
    clear_failure(_export(tmp_path), "summary.json not found")
    clear_failure(_export(scanned.out, "-o", tmp_path / "no" / "such" / "t.json"),
                  "cannot write")


def test_export_refuses_paths_that_leave_the_dataset(tmp_path: Path) -> None:
    write_image(tmp_path / "data" / "a" / "1.png", 1)
    rows = [{"path": "a/1.png", "label": "a", "action": "keep"},
            {"path": "../../etc/passwd", "label": "b", "action": "review"}]
    out = make_outputs(tmp_path / "out", tmp_path / "data", rows, ["a", "b"])
    for fmt in ("labelstudio", "csv"):
        clear_failure(_export(out, "--format", fmt), "'../../etc/passwd'", "refusing")
    assert sorted(p.name for p in out.iterdir()) == ["scores.csv", "summary.json"]


def test_export_keeps_a_backslash_in_a_file_name(tmp_path: Path) -> None:
    """On POSIX ``a\\b.png`` is one file name: the review sheet's ``file`` and the Label
    Studio URLs point at that file, not at ``a/b.png``."""
    if os.name == "nt":
        pytest.skip("a Windows file name cannot hold a backslash")
    data = tmp_path / "data"
    write_image(data / "cat" / "a\\b.png", 1)
    write_image(data / "cat" / "1.png", 2)
    rows = [{"path": "cat/a\\b.png", "label": "cat", "action": "review"},
            {"path": "cat/1.png", "label": "cat", "action": "keep"}]
    out = make_outputs(tmp_path / "out", data, rows, ["cat", "dog"])
    sheet_path = tmp_path / "sheet.csv"
    result = _export(out, "--format", "csv", "--all", "-o", sheet_path)
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    files = dict(zip(sheet["path"], sheet["file"], strict=True))
    assert files == {"cat/a\\b.png": os.path.join(os.path.abspath(data), "cat", "a\\b.png"),
                     "cat/1.png": os.path.join(os.path.abspath(data), "cat", "1.png")}
    assert all(Path(f).is_file() for f in files.values())
    tasks_path = tmp_path / "t.json"
    result = _export(out, "-o", tasks_path)
    assert result.exit_code == 0, result.output
    [task] = json.loads(tasks_path.read_text(encoding="utf-8"))
    [d] = parse_qs(urlsplit(task["data"]["image"]).query)["d"]
    assert d == "data/cat/a\\b.png" and (tmp_path / d).is_file()
    result = _export(out, "--url-prefix", "http://host/img/", "-o", tasks_path)
    assert result.exit_code == 0, result.output
    [task] = json.loads(tasks_path.read_text(encoding="utf-8"))
    assert task["data"]["image"] == "http://host/img/cat/a%5Cb.png"


def test_a_moved_dataset_folder_asks_for_data(scanned: Scanned, tmp_path: Path) -> None:
    """After the dataset folder moved, export and apply stop with one error naming --data
    instead of exporting links to the old folder; evaluate, which reads no image, works;
    with --data the export points at the new folder."""
    out, old, moved = moved_scan(scanned, tmp_path)
    before = tree_digest(out)
    for fmt in ("labelstudio", "csv"):
        clear_failure(_export(out, "--format", fmt), str(old), "does not exist",
                      "--data NEW_FOLDER")
    clean = tmp_path / "clean"
    clear_failure(runner.invoke(app, ["apply", str(out), "--to", str(clean)]), str(old),
                  "--data NEW_FOLDER")
    assert not clean.exists()
    assert tree_digest(out) == before
    truth = tmp_path / "truth.csv"
    pd.DataFrame(sorted(scanned.truth.items()), columns=["path", "label"]).to_csv(
        truth, index=False)
    result = runner.invoke(app, ["evaluate", str(out), "--truth", str(truth), "-o",
                                 str(tmp_path / "ev.json")])
    assert result.exit_code == 0, result.output

    result = _export(out, "--format", "csv", "--data", moved, "-o", tmp_path / "sheet.csv")
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(tmp_path / "sheet.csv", dtype=str, keep_default_na=False)
    assert len(sheet) and all(Path(f).is_file() and Path(f).is_relative_to(moved)
                              for f in sheet["file"])
    result = _export(out, "--data", moved, "-o", tmp_path / "t.json")
    assert result.exit_code == 0, result.output
    [d, *_] = [parse_qs(urlsplit(t["data"]["image"]).query)["d"][0]
               for t in json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))]
    assert (moved.parent / d).is_file() and d.startswith("moved/")

    # a folder of that name again, but without the images: one error as well
    old.mkdir()
    for fmt in ("labelstudio", "csv"):
        clear_failure(_export(out, "--format", fmt), "none of the", str(old),
                      "--data NEW_FOLDER")
    clear_failure(_export(out, "--data", old), "none of the", "--data")
    assert tree_digest(out) == before


def test_output_never_replaces_the_scans_own_files(scanned: Scanned, tmp_path: Path) -> None:
    """``export -o`` and ``evaluate -o`` refuse a path that is one of the scan's own files
    in its output folder, however it is spelled, and write nothing."""
    out = tmp_path / "out"
    shutil.copytree(scanned.out, out)
    truth = tmp_path / "truth.csv"
    pd.DataFrame(sorted(scanned.truth.items()), columns=["path", "label"]).to_csv(
        truth, index=False)
    (tmp_path / "link.csv").symlink_to(out / "scores.csv")
    before = tree_digest(tmp_path)
    cases = [
        ("csv", out / "scores.csv", "scores.csv"),
        ("labelstudio", out / "summary.json", "summary.json"),
        ("labelstudio", out / "relabeled.csv", "relabeled.csv"),
        ("csv", out / ".." / "out" / "skipped.csv", "skipped.csv"),
        ("labelstudio", out / "pred_probs.npy", "pred_probs.npy"),
        ("csv", out / "net0.pt", "net0.pt"),
        ("csv", tmp_path / "link.csv", "scores.csv"),
    ]
    for fmt, target, name in cases:
        clear_failure(_export(out, "--format", fmt, "-o", target), "scan's own", name)
    for name in ("scores.csv", "summary.json"):
        clear_failure(runner.invoke(app, ["evaluate", str(out), "--truth", str(truth),
                                          "-o", str(out / name)]), "scan's own", name)
    assert tree_digest(tmp_path) == before
    # the review commands' own files are fine
    result = _export(out, "--format", "csv", "-o", out / "review.csv")
    assert result.exit_code == 0, result.output


def test_labelstudio_tasks_named_xml_are_refused(scanned: Scanned, tmp_path: Path) -> None:
    """The labeling config goes beside the tasks with the same stem and ``.xml``: tasks
    named ``.xml`` would be overwritten by it, so they are refused, nothing written."""
    for name in ("tasks.xml", "tasks.XML"):
        clear_failure(_export(scanned.out, "-o", tmp_path / name), name, "labeling config",
                      ".json")
    assert list(tmp_path.iterdir()) == []
    result = _export(scanned.out, "-o", tmp_path / "tasks.json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.json", "tasks.xml"]


def test_labelstudio_clean_prob_keeps_full_precision(tmp_path: Path) -> None:
    """Flagged rows' clean probabilities go down to 1e-50 and below: the tasks carry them
    unrounded, so sorting on ``clean_prob`` in Label Studio keeps the scan's ranking."""
    data = tmp_path / "data"
    probs = [1e-56, 3.5e-30, 2.25e-12, 1.0e-7, 4e-7, 0.25]
    rows = []
    for i, p in enumerate(probs):
        write_image(data / "a" / f"{i}.png", i)
        rows.append({"path": f"a/{i}.png", "label": "a", "action": "review", "clean_prob": p})
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    result = _export(out)
    assert result.exit_code == 0, result.output
    tasks = json.loads((out / "labelstudio.json").read_text(encoding="utf-8"))
    values = [t["data"]["clean_prob"] for t in tasks]
    assert values == pytest.approx(probs, rel=1e-12, abs=0)
    assert len(set(values)) == len(values) and values == sorted(values)
