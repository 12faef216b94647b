"""Defects a bug hunt of the review commands found, each through the real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pandas as pd
import pytest
from typer.testing import CliRunner

import noisyclean.outputs.apply as apply_module
from noisyclean.cli import app
from noisyclean.outputs.apply import MANIFEST, apply_labels
from noisyclean.outputs.table import clean_prob_text

from .conftest import clear_failure, make_outputs, write_image

runner = CliRunner()

CLASSES = ["cat", "dog", "fox"]


def _invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _flat(result: object) -> str:
    return " ".join(result.output.split())


def _outputs(tmp_path: Path) -> tuple[Path, Path]:
    """Hand-made scan outputs over 9 real images: two relabel rows, two review rows."""
    root = tmp_path / "images"
    rows = []
    for i, label in enumerate(CLASSES * 3):
        path = f"{label}/{i:03d}.png"
        write_image(root / path, 20 * i)
        rows.append({"path": path, "label": label, "action": "keep"})
    rows[0].update(action="relabel", suggested_label="dog")
    rows[1].update(action="relabel", suggested_label="fox")
    rows[2].update(action="review")
    rows[3].update(action="review")
    return make_outputs(tmp_path / "out", root, rows, CLASSES), root


def test_a_sample_truth_file_may_hold_a_class_its_rows_do_not_show(tmp_path: Path) -> None:
    """Two rows given 'dog', one truly a 'fox': 'fox' is a class of the scan, though no
    row the truth covers has it as its given or suggested label."""
    out, _ = _outputs(tmp_path)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\ndog/004.png,fox\ndog/007.png,dog\n")
    result = _invoke("evaluate", out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert (metrics["n"], metrics["n_wrong"], metrics["n_flagged"]) == (2, 1, 0)
    assert metrics["recall"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["precision"] is None  # nothing flagged: 0/0, not 0
    # a label that is no class at all is still refused
    truth.write_text("path,label\ndog/004.png,wolf\n")
    clear_failure(_invoke("evaluate", out, "--truth", truth), "'wolf'", "not class names")


def test_undefined_metrics_are_null_not_perfect_or_zero(tmp_path: Path) -> None:
    """A sample with no wrong label: recall and the suggestions' accuracy on wrong labels
    are undefined (they read 1.0 and 0.0 before), and shown as n/a."""
    out, _ = _outputs(tmp_path)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\ncat/006.png,cat\ndog/007.png,dog\n")
    result = _invoke("evaluate", out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["n_wrong"] == 0 and metrics["n_flagged"] == 0
    for key in ("precision", "recall", "f1", "auroc", "suggested_accuracy_on_wrong"):
        assert metrics[key] is None, key
    assert "suggested label right, on wrong samples │ n/a" in result.output


def test_blank_rows_of_a_truth_file_are_ignored(tmp_path: Path) -> None:
    out, _ = _outputs(tmp_path)
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    truth = tmp_path / "truth.csv"
    lines = ["path,label", *(f"{p},{lab}" for p, lab in zip(scores["path"], scores["label"],
                                                             strict=True)), ",", " , ", ""]
    truth.write_text("\n".join(lines))
    result = _invoke("evaluate", out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["n"] == 9 and metrics["truth_rows_unused"] == 0
    assert "truth row(s) name no image" not in result.output


def test_an_apply_stopped_partway_is_cleaned_up_by_the_next_force_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after four files: the manifest already lists every planned file, so the
    rerun with --force --drop-review removes the review images the first run wrote."""
    out, _ = _outputs(tmp_path)
    clean = tmp_path / "clean"
    place, calls = apply_module._place, []

    def interrupted(*args: object) -> str:
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(args)
        return place(*args)

    monkeypatch.setattr(apply_module, "_place", interrupted)
    with pytest.raises(KeyboardInterrupt):
        apply_labels(out, clean)
    monkeypatch.undo()
    pending = pd.read_csv(clean / MANIFEST, dtype=str, keep_default_na=False)
    assert len(pending) == 9 and set(pending["method"]) == {"pending"}
    written = sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png"))
    assert written == ["cat/003.png", "cat/006.png", "dog/000.png", "fox/001.png"]
    # cat/003.png is a review row
    result = _invoke("apply", out, "--to", clean, "--force", "--drop-review")
    assert result.exit_code == 0, result.output
    images = sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png"))
    manifest = pd.read_csv(clean / MANIFEST, dtype=str, keep_default_na=False)
    assert len(images) == 7 and sorted(manifest["dest"]) == images
    assert "cat/003.png" not in images and "fox/002.png" not in images
    assert set(manifest["method"]) == {"copy"}


def test_a_failed_write_names_the_file_being_written(tmp_path: Path) -> None:
    """A class folder of the new copy that cannot be created: the message names the file
    in CLEAN_DIR (it named the source image in the dataset, which is never written)."""
    out, root = _outputs(tmp_path)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "dog").write_text("a file where a class folder goes")
    result = _invoke("apply", out, "--to", clean, "--force")
    clear_failure(result, f"cannot write {clean / 'dog' / '000.png'} (from {root / 'cat'}",
                  "is incomplete", "--force")


def test_export_keeps_a_reviewer_s_filled_in_sheet(tmp_path: Path) -> None:
    out, _ = _outputs(tmp_path)
    assert _invoke("export", out, "-f", "csv").exit_code == 0
    sheet_path = out / "review.csv"
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    sheet.loc[0, "comment"] = "blurry"
    sheet.loc[1, "decision"] = "drop"
    sheet.to_csv(sheet_path, index=False)
    before = sheet_path.read_bytes()
    result = _invoke("export", out, "-f", "csv", "--top", "6")
    clear_failure(result, "holds a reviewer's work: 2 row(s)", "--force", "-o")
    assert sheet_path.read_bytes() == before
    other = tmp_path / "more.csv"
    assert _invoke("export", out, "-f", "csv", "--top", "6", "-o", other).exit_code == 0
    assert len(pd.read_csv(other)) == 6
    result = _invoke("export", out, "-f", "csv", "--top", "6", "--force")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(sheet_path)) == 6
    # a sheet nobody filled in is replaced as before
    assert _invoke("export", out, "-f", "csv").exit_code == 0


def test_export_csv_refuses_label_studio_options(tmp_path: Path) -> None:
    out, _ = _outputs(tmp_path)
    for option in ("--url-prefix", "--document-root"):
        clear_failure(_invoke("export", out, "-f", "csv", option, "/x/"),
                      "are for --format labelstudio")


def test_hidden_class_folders_are_refused(tmp_path: Path) -> None:
    """A decision '.cat' made a class folder that ImageFolder readers skip: its images
    vanished from the next scan of the cleaned copy."""
    out, _ = _outputs(tmp_path)
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("path,decision\ncat/000.png,.cat\n")
    result = _invoke("apply", out, "--to", tmp_path / "clean", "--decisions", decisions)
    clear_failure(result, "'.cat'", "hidden class folders", "skip")
    assert not (tmp_path / "clean").exists()
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    scores.loc[0, "suggested_label"] = ".dog"  # a table edited by hand
    scores.to_csv(out / "scores.csv", index=False)
    result = _invoke("apply", out, "--to", tmp_path / "clean")
    clear_failure(result, "'.dog'", "hidden class folders")


def test_apply_counts_the_files_the_scan_skipped(tmp_path: Path) -> None:
    out, _ = _outputs(tmp_path)
    (out / "skipped.csv").write_text(
        "path,reason\ncat/bad.png,not an image\nval/x.png,--val: truncated\n")
    result = _invoke("apply", out, "--to", tmp_path / "clean")
    assert result.exit_code == 0, result.output
    text = _flat(result)
    assert "wrote 9 images" in text and "0 review images left out" in text
    assert "note: 1 file the scan skipped" in text and "is not in the copy" in text


def test_clean_probabilities_are_cut_not_rounded_up() -> None:
    """A flagged 0.4999 read 0.500, as if at the threshold."""
    assert clean_prob_text(0.4999) == "0.499"
    assert clean_prob_text(0.5) == "0.500"
    assert clean_prob_text(0.3) == "0.300"  # not 0.299 from the float's binary digits
    assert clean_prob_text(0.9999) == "0.999"
    assert clean_prob_text(8.8e-11) == "8.8e-11" and clean_prob_text(0.0) == "0"


def test_the_report_of_an_aum_scan_names_no_mixture(tmp_path: Path) -> None:
    out, _ = _outputs(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["mixture"] = []
    summary["settings"] = {"model": "small-cnn", "signal": "aum", "mixture": "gmm",
                           "threshold": 0.5}
    (out / "summary.json").write_text(json.dumps(summary))
    result = _invoke("report", out, "--no-images")
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert "signal aum, threshold 0.5" in html and "mixture gmm" not in html
    assert "Area under the margin</h2>" in html and "AUM fits no mixture" in html
    assert "no usable mixture parameters" not in html
    assert "the rows the scan flags" in html


@pytest.mark.parametrize("folder", ["train"])
def test_train_truth_sample_with_an_unshown_class(tmp_path: Path, folder: str) -> None:
    """``train --truth`` ran every epoch, then refused a sample whose true class no
    sampled row was given: no scores.csv."""
    root = tmp_path / "images"
    for label in CLASSES:
        for i in range(6):
            write_image(root / label / f"{i}.png", 40 * CLASSES.index(label) + i)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\ncat/0.png,fox\ncat/1.png,cat\n")
    out = tmp_path / folder
    result = _invoke("train", root, "--method", "standard", "--epochs", "1", "--width", "4",
                     "--truth", truth, "--out", out, "--quiet", "--no-cache")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth_metrics"]["n"] == 2 and summary["truth_metrics"]["n_wrong"] == 1
    assert (out / "scores.csv").is_file()
    shutil.rmtree(out)


def test_the_review_commands_do_not_import_torch(tmp_path: Path) -> None:
    """``report`` imported the scan's cut module, which brings torch: 6.5 s and 800 MB
    for a page of a few images, of which 5.6 s was importing."""
    out, _ = _outputs(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    summary["cut"] = {"rule": "arbitrated", "flagged": 4, "estimate_position": 0.46,
                      "close_call": 6, "counts": {"mixture": 4, "loss_mixture": 8,
                                                  "confident_joint": 5}}
    (out / "summary.json").write_text(json.dumps(summary))
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\ncat/000.png,cat\n")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from noisyclean.cli import app\n"
        f"out = {str(out)!r}\n"
        "for args in (['report', out], ['export', out], ['export', out, '-f', 'csv'],\n"
        f"             ['evaluate', out, '--truth', {str(truth)!r}],\n"
        f"             ['apply', out, '--to', {str(tmp_path / 'clean')!r}]):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "close call" in (out / "report.html").read_text()


def _linked_outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A dataset whose class folders are links to folders elsewhere (``X/cat``, ...), and
    hand-made scan outputs over it; returns the outputs, the dataset and ``X``."""
    elsewhere = tmp_path / "X"
    root = tmp_path / "images"
    root.mkdir()
    rows = []
    for i, label in enumerate(CLASSES * 2):
        write_image(elsewhere / label / f"{i:03d}.png", 30 * i)
        rows.append({"path": f"{label}/{i:03d}.png", "label": label, "action": "keep"})
    for label in CLASSES:
        (root / label).symlink_to(elsewhere / label, target_is_directory=True)
    rows[0].update(action="relabel", suggested_label="dog")
    return make_outputs(tmp_path / "out", root, rows, CLASSES), root, elsewhere


def test_apply_refuses_a_copy_among_images_reached_through_a_linked_class_folder(
    tmp_path: Path,
) -> None:
    """--to inside a linked class folder's target would put the copy among the images
    (the next scan reads it as images of that class); --to holding those targets would,
    with --force, write over them. Both are refused, and nothing is written."""
    out, _, elsewhere = _linked_outputs(tmp_path)
    before = {p: p.read_bytes() for p in elsewhere.rglob("*.png")}
    inside_class = elsewhere / "cat" / "cleaned"
    clear_failure(_invoke("apply", out, "--to", inside_class),
                  f"--to {inside_class} overlaps {elsewhere / 'cat'}, where the dataset's "
                  "folder", "symbolic link")
    assert not inside_class.exists()
    clear_failure(_invoke("apply", out, "--to", elsewhere, "--force"),
                  f"--to {elsewhere} holds", "an image of the dataset", "choose a new folder")
    assert {p: p.read_bytes() for p in elsewhere.rglob("*.png")} == before
    assert not (elsewhere / MANIFEST).exists()
    fine = _invoke("apply", out, "--to", tmp_path / "clean")
    assert fine.exit_code == 0, fine.output
    assert len(list((tmp_path / "clean").rglob("*.png"))) == 6


def test_apply_never_writes_over_the_image_a_link_leads_to(tmp_path: Path) -> None:
    """A link to one image, a/link.png -> X/b/link.png, relabelled b: with --to X the copy
    would be the source itself (with --symlink, a link to itself, the image lost)."""
    elsewhere = tmp_path / "X"
    write_image(elsewhere / "b" / "link.png", 99)
    root = tmp_path / "images"
    write_image(root / "b" / "other.png", 5)
    (root / "a").mkdir()
    (root / "a" / "link.png").symlink_to(elsewhere / "b" / "link.png")
    rows = [{"path": "a/link.png", "label": "a", "action": "relabel", "suggested_label": "b"},
            {"path": "b/other.png", "label": "b", "action": "keep"}]
    out = make_outputs(tmp_path / "out", root, rows, ["a", "b"])
    before = (elsewhere / "b" / "link.png").read_bytes()
    clear_failure(_invoke("apply", out, "--to", elsewhere, "--force", "--symlink"),
                  f"--to {elsewhere} holds {elsewhere / 'b' / 'link.png'}, an image of the "
                  "dataset", "(its a/link.png, reached through a symbolic link)")
    assert not (elsewhere / "b" / "link.png").is_symlink()
    assert (elsewhere / "b" / "link.png").read_bytes() == before


def test_the_linked_folder_guard_holds_when_decisions_drop_its_images(tmp_path: Path) -> None:
    """Decisions that drop every image of a linked class folder take it out of the copy,
    not out of the dataset: the next scan still reads that folder, so a --to inside it
    is refused all the same."""
    out, _, elsewhere = _linked_outputs(tmp_path)
    drops = tmp_path / "drops.csv"
    drops.write_text("path,decision\ncat/000.png,drop\ncat/003.png,drop\n")
    target = elsewhere / "cat" / "clean"
    clear_failure(_invoke("apply", out, "--to", target, "--decisions", drops),
                  f"--to {target} overlaps {elsewhere / 'cat'}")
    assert not target.exists()


def test_force_never_removes_images_the_dataset_links_to(tmp_path: Path) -> None:
    """A dataset of links to the files of an earlier copy: applying it over that copy with
    --force would remove the very images it reads (every link left dangling). Refused
    before anything is removed."""
    out, _ = _outputs(tmp_path)
    copy = tmp_path / "copy"
    assert _invoke("apply", out, "--to", copy).exit_code == 0
    linked = tmp_path / "linked"
    rows = []
    for image in sorted(copy.rglob("*.png")):
        rel = image.relative_to(copy).as_posix()
        (linked / rel).parent.mkdir(parents=True, exist_ok=True)
        (linked / rel).symlink_to(image)
        rows.append({"path": rel, "label": rel.split("/")[0], "action": "keep"})
    out2 = make_outputs(tmp_path / "out2", linked, rows, CLASSES)
    before = {p: p.read_bytes() for p in copy.rglob("*.png")}
    clear_failure(_invoke("apply", out2, "--to", copy, "--force"), f"--to {copy} holds",
                  "an image of the dataset")
    assert {p: p.read_bytes() for p in copy.rglob("*.png")} == before


def test_a_repeated_name_whose_suffix_alone_is_near_the_limit(tmp_path: Path) -> None:
    """'a.' and 253 'b's: the '-2' cannot go before a suffix of 254 bytes; the name is cut
    to fit instead (the shortening had looped forever)."""
    name = "a." + "b" * 253
    taken: set[str] = set()
    first = apply_module._unique_name(PurePosixPath("c0"), name, taken)
    second = apply_module._unique_name(PurePosixPath("c0"), name, taken)
    assert first.name == name
    assert second.name == name[:253] + "-2" and len(second.name.encode()) == 255


def test_a_force_run_over_an_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    """A spreadsheet re-saved the manifest in cp1252: the files it lists cannot be told
    apart, so --force refuses rather than leave the old copy's files beside the new."""
    out, _ = _outputs(tmp_path)
    clean = tmp_path / "clean"
    assert _invoke("apply", out, "--to", clean).exit_code == 0
    manifest = clean / MANIFEST
    manifest.write_bytes(manifest.read_text().replace("\n", "\r\n").encode("cp1252")
                         + "caf\u00e9\r\n".encode("cp1252"))
    before = sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png"))
    clear_failure(_invoke("apply", out, "--to", clean, "--force", "--drop-review"),
                  f"{manifest} cannot be read as a manifest", "choose a new folder")
    assert sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png")) == before


def test_a_force_run_leaves_no_empty_class_folder(tmp_path: Path) -> None:
    """A reviewer's typo made a class folder; the rerun after the fix removes it with its
    file, as ImageFolder readers fail on an empty class folder. A folder with other files
    (not the previous apply's) stays."""
    out, _ = _outputs(tmp_path)
    clean = tmp_path / "clean"
    typo = tmp_path / "typo.csv"
    typo.write_text("path,decision\ncat/000.png,cta\ndog/001.png,cta\n")
    assert _invoke("apply", out, "--to", clean, "--decisions", typo).exit_code == 0
    assert len(list((clean / "cta").iterdir())) == 2
    (clean / "fox" / "notes.txt").write_text("the user's own file")
    fixed = _invoke("apply", out, "--to", clean, "--force", "--drop-review")
    assert fixed.exit_code == 0, fixed.output
    assert not (clean / "cta").exists()
    assert sorted(p.name for p in clean.iterdir()) == ["cat", "dog", "fox", MANIFEST]
    assert (clean / "fox" / "notes.txt").is_file()


def test_apply_writes_names_at_the_length_limit(tmp_path: Path) -> None:
    """A 254-byte file name (a valid one) is written (its temporary name was 14 bytes
    longer), and a second of that name in the same class is shortened to fit its -2."""
    root = tmp_path / "images"
    long_name = "L" * 250 + ".png"
    rows = []
    for i, folder in enumerate(("cat", "cat/sub", "dog")):
        write_image(root / folder / long_name, 40 * i)
        rows.append({"path": f"{folder}/{long_name}", "label": folder.split("/")[0],
                     "action": "keep"})
    write_image(root / "fox" / "a.png", 7)
    rows.append({"path": "fox/a.png", "label": "fox", "action": "keep"})
    out = make_outputs(tmp_path / "out", root, rows, CLASSES)
    clean = tmp_path / "clean"
    result = _invoke("apply", out, "--to", clean)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (clean / "cat").iterdir())
    assert names == ["L" * 249 + "-2.png", long_name]
    assert all(len(n.encode()) <= 255 for n in names)
    assert (clean / "dog" / long_name).is_file()


def test_ctrl_c_during_apply_names_the_file_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, root = _outputs(tmp_path)
    clean = tmp_path / "clean"
    place = apply_module._place

    def interrupted(source: Path, dest: Path, link: str) -> str:
        if dest.name == "004.png":
            raise KeyboardInterrupt
        return place(source, dest, link)

    monkeypatch.setattr(apply_module, "_place", interrupted)
    result = _invoke("apply", out, "--to", clean)
    assert result.exit_code == 130
    text = "".join(result.output.split())
    assert "".join(f"interrupted during: write {clean / 'dog' / '004.png'}".split()) in text
    assert "".join(f"{clean} is incomplete (rerun with --force".split()) in text


def test_review_files_are_refused_inside_a_linked_class_folder(tmp_path: Path) -> None:
    """report -o and export -o into the folder a class folder links to: among the images,
    as inside the dataset folder itself."""
    out, _, elsewhere = _linked_outputs(tmp_path)
    for command, name in (("report", "report.html"), ("export", "review.csv")):
        target = elsewhere / "dog" / name
        args = [command, out, "-o", target] + (["--format", "csv"] if command == "export" else [])
        clear_failure(_invoke(*args), f"--output {target}", "a link to", "never write into")
        assert not target.exists()


def test_the_review_sheet_keeps_formulas_out_of_a_spreadsheet(tmp_path: Path) -> None:
    """Names a spreadsheet would run as formulas (=, +, -, @) are written as text, with a
    leading quote, and a sheet read back either way (as written, or saved by a
    spreadsheet, which drops the quote) applies to the same images and classes."""
    classes = ["=cmd", "-1", "ok"]
    root = tmp_path / "images"
    rows = []
    for i, (label, name) in enumerate([("=cmd", "=HYPERLINK(x).png"), ("-1", "'q.png"),
                                       ("ok", "+1.png"), ("ok", "plain.png")]):
        write_image(root / label / name, 25 * i)
        rows.append({"path": f"{label}/{name}", "label": label, "action": "review"})
    out = make_outputs(tmp_path / "out", root, rows, classes)
    assert _invoke("export", out, "--format", "csv").exit_code == 0
    sheet = pd.read_csv(out / "review.csv", dtype=str, keep_default_na=False)
    assert list(sheet["path"]) == ["'=cmd/=HYPERLINK(x).png", "'-1/'q.png", "ok/+1.png",
                                   "ok/plain.png"]
    assert list(sheet["label"]) == ["'=cmd", "'-1", "ok", "ok"]
    assert all(not cell.startswith(("=", "+", "-", "@"))
               for column in ("path", "file", "label", "suggested_label", "predicted")
               for cell in sheet[column])
    # as written: decisions copied from the label cells, quote and all
    as_written = sheet.assign(decision=["'-1", "'=cmd", "drop", ""])
    # as a spreadsheet saves it: the quotes gone
    saved = as_written.map(lambda v: v[1:] if v.startswith("'") and v[1:2] in "=-" else v)
    for name, frame in (("written", as_written), ("saved", saved)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        clean = tmp_path / f"clean-{name}"
        result = _invoke("apply", out, "--to", clean, "--decisions", tmp_path / f"{name}.csv")
        assert result.exit_code == 0, result.output
        assert sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*.png")) == [
            "-1/=HYPERLINK(x).png", "=cmd/'q.png", "ok/plain.png"]


def test_review_commands_never_write_over_a_file_they_did_not_write(tmp_path: Path) -> None:
    """-o with the name of the user's own file (the truth CSV, a page, notes) destroyed
    it; refused now, while each command writes over its own file as before."""
    out, _ = _outputs(tmp_path)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\ncat/000.png,dog\n")
    page = tmp_path / "index.html"
    page.write_text("<html><title>my page</title></html>")
    notes = tmp_path / "notes.json"
    notes.write_text('{"todo": 1}')
    for args, target in ((["report", out, "-o", truth], truth),
                         (["report", out, "-o", page], page),
                         (["export", out, "--format", "csv", "-o", truth], truth),
                         (["export", out, "-o", notes], notes),
                         (["evaluate", out, "--truth", truth, "-o", notes], notes)):
        before = target.read_bytes()
        clear_failure(_invoke(*args), f"{target} is a file that this command did not write")
        assert target.read_bytes() == before
    for args in (["report", out, "-o", tmp_path / "r.html"],
                 ["export", out, "--format", "csv", "-o", tmp_path / "r.csv"],
                 ["export", out, "-o", tmp_path / "t.json"],
                 ["evaluate", out, "--truth", truth, "-o", tmp_path / "e.json"]):
        for _ in range(2):  # the second time over its own file
            result = _invoke(*args)
            assert result.exit_code == 0, result.output


def test_a_decision_that_is_a_class_in_another_case_is_refused(tmp_path: Path) -> None:
    """'Dog' for the class 'dog' made a new class folder 'Dog' (the same folder as 'dog' on
    a case-insensitive file system); a new class in its own name is still taken, and the
    keywords in any case are keywords."""
    out, _ = _outputs(tmp_path)
    typo = tmp_path / "typo.csv"
    typo.write_text("path,decision\ncat/000.png,Dog\ndog/001.png,KEEP\n")
    clear_failure(_invoke("apply", out, "--to", tmp_path / "c1", "--decisions", typo),
                  "differ from a class only in letter case: 'Dog' (class 'dog')")
    assert not (tmp_path / "c1").exists()
    new = tmp_path / "new.csv"
    new.write_text("path,decision\ncat/000.png,wolf\ndog/001.png,KEEP\n")
    result = _invoke("apply", out, "--to", tmp_path / "c2", "--decisions", new)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c2" / "wolf" / "000.png").is_file()
