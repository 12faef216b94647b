"""``noisyclean evaluate``: metrics computed by hand on a small table, the Rich table,
``evaluation.json``, and bad truth files."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.evaluate import detection_metrics
from noisyclean.outputs.evaluation import evaluate_scan

from .conftest import Scanned, clear_failure, make_outputs, write_image

runner = CliRunner()


def _evaluate(*args: object) -> object:
    return runner.invoke(app, ["evaluate", *map(str, args)])


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    """Six images, three wrong labels; the scan flags two of them and one right label.

    row  given  true  clean_prob  flagged  action   suggested
    a/1  a      a     0.90        no       keep     a
    a/2  a      b     0.05        yes      relabel  b   (wrong, caught, fixed)
    a/3  a      a     0.30        yes      review   a   (right, flagged: false positive)
    b/4  b      b     0.80        no       keep     b
    b/5  b      a     0.60        no       keep     b   (wrong, missed)
    b/6  b      a     0.10        yes      relabel  a   (wrong, caught, fixed)
    """
    data = tmp_path / "data"
    spec = [("a/1.png", "a", "a", 0.9, "keep", "a"), ("a/2.png", "a", "b", 0.05, "relabel", "b"),
            ("a/3.png", "a", "a", 0.3, "review", "a"), ("b/4.png", "b", "b", 0.8, "keep", "b"),
            ("b/5.png", "b", "a", 0.6, "keep", "b"), ("b/6.png", "b", "a", 0.1, "relabel", "a")]
    rows = []
    for i, (path, given, _, prob, action, suggested) in enumerate(spec):
        write_image(data / path, i)
        rows.append({"path": path, "label": given, "clean_prob": prob, "action": action,
                     "is_noisy": prob < 0.5, "suggested_label": suggested})
    out = make_outputs(tmp_path / "out", data, rows, ["a", "b"])
    truth = tmp_path / "truth.csv"
    # written the way people write them: "./" prefixes, a row the scan did not use
    lines = [f"./{path},{true}" for path, _, true, *_ in spec] + ["a/skipped.png,a"]
    truth.write_text("path,label\n" + "\n".join(lines) + "\n")
    return out, truth


def _estimate_four_wrong(out: Path) -> None:
    """Give the hand-made scan the confident joint's estimate: 4 wrong labels of 6."""
    summary = json.loads((out / "summary.json").read_text())
    summary["estimated_wrong_labels"] = {"count": 4, "rate": 4 / 6, "per_class": {}}
    (out / "summary.json").write_text(json.dumps(summary))


def test_metrics_match_a_hand_count(small: tuple[Path, Path]) -> None:
    out, truth = small
    result = _evaluate(out, "--truth", truth)
    assert result.exit_code == 0, result.output
    for label in ("precision", "recall", "F1", "AUROC"):
        assert label in result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    # wrong: a/2, b/5, b/6; flagged: a/2, a/3, b/6
    assert (metrics["n"], metrics["n_wrong"], metrics["n_flagged"]) == (6, 3, 3)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    # noise score 1 - clean_prob; wrong: .95 .40 .90, right: .10 .70 .20 -> 8 of 9 pairs
    assert metrics["auroc"] == pytest.approx(8 / 9)
    assert metrics["suggested_accuracy_on_wrong"] == pytest.approx(2 / 3)
    assert metrics["suggested_accuracy"] == pytest.approx(5 / 6)
    assert (metrics["n_relabel"], metrics["relabel_accuracy"]) == (2, 1.0)
    assert "0.667" in result.output and "0.889" in result.output
    # every scored image evaluated; the truth's row for a skipped image left out, and said
    assert (metrics["n_scored"], metrics["truth_rows_unused"]) == (6, 1)
    assert "6 of 6 scored" in result.output
    assert "note: 1 truth row(s) name no image of scores.csv" in result.output
    # a hand-made summary without the confident joint's estimate: nothing to compare
    assert metrics["n_estimated_wrong"] is None and metrics["top_estimated"] is None
    assert "estimated wrong" not in result.output


def test_top_rows_down_to_the_estimated_count(small: tuple[Path, Path]) -> None:
    """scores.csv as the scan writes it (most suspicious first: a/2, b/6, a/3, b/5, b/4,
    a/1) and an estimate of 4 wrong labels: the top 4 rows hold all 3 wrong ones (a/2, b/6,
    b/5) and one right one (a/3), so precision 3/4, recall 1, F1 6/7."""
    out, truth = small
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    scores = scores.sort_values("clean_prob", key=lambda c: c.astype(float))
    scores.to_csv(out / "scores.csv", index=False)
    _estimate_four_wrong(out)
    result = _evaluate(out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["n_estimated_wrong"] == 4
    assert metrics["top_estimated"] == pytest.approx(
        {"precision": 3 / 4, "recall": 1.0, "f1": 6 / 7})
    assert "top 4 rows (estimated wrong)" in result.output
    assert "0.750 / 1.000 / 0.857" in result.output
    # the flags themselves are scored as before
    assert metrics["f1"] == pytest.approx(2 / 3)
    # a garbled estimate (a text count, a missing rate) is ignored, not a traceback
    summary = json.loads((out / "summary.json").read_text())
    for garbled in ({"count": "4", "rate": 0.5}, {"count": 4}, {"count": True, "rate": 0.5}):
        summary["estimated_wrong_labels"] = garbled
        (out / "summary.json").write_text(json.dumps(summary))
        result = _evaluate(out, "--truth", truth)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "evaluation.json").read_text())["top_estimated"] is None


def test_wrong_labels_in_the_first_rows(small: tuple[Path, Path]) -> None:
    """``--top K``: the ranking is a/2 (.05, wrong), b/6 (.10, wrong), a/3 (.30), b/5 (.60,
    wrong), b/4, a/1. The first row holds 1 of the 3 wrong labels; the first 3 hold 2; a
    depth past the table takes every row (3 found, precision 1/2)."""
    out, truth = small
    result = _evaluate(out, "--truth", truth, "--top", "3", "--top", "1", "--top", "10",
                       "--top", "3")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["n_flagged_wrong"] == 2
    assert metrics["top_rows"] == [
        {"rows": 1, "evaluated": 1, "wrong_found": 1, "precision": 1.0,
         "recall": pytest.approx(1 / 3), "f1": pytest.approx(1 / 2)},
        {"rows": 3, "evaluated": 3, "wrong_found": 2, "precision": pytest.approx(2 / 3),
         "recall": pytest.approx(2 / 3), "f1": pytest.approx(2 / 3)},
        {"rows": 10, "evaluated": 6, "wrong_found": 3, "precision": 0.5, "recall": 1.0,
         "f1": pytest.approx(2 / 3)},
    ]
    text = " ".join(result.output.split())
    assert "first 3 rows: wrong found / precision / recall │ 2 / 0.667 / 0.667" in text
    assert "first 10 rows" in text and "first 2 rows" not in text
    # no --top: no rows of the kind
    result = _evaluate(out, "--truth", truth)
    assert json.loads((out / "evaluation.json").read_text())["top_rows"] == []
    assert "rows: wrong found" not in result.output
    (out / "evaluation.json").unlink()
    clear_failure(_evaluate(out, "--truth", truth, "--top", "0"), "--top must be at least 1")
    assert not (out / "evaluation.json").exists()


def test_all_labels_right_gives_null_auroc(small: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = small
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    truth = tmp_path / "all-right.csv"
    scores[["path", "label"]].to_csv(truth, index=False)
    target = tmp_path / "e.json"
    result = _evaluate(out, "--truth", truth, "-o", target)
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert '"auroc": null' in text and "NaN" not in text
    assert json.loads(text)["n_wrong"] == 0
    assert "n/a" in result.output


def test_evaluate_a_real_scan(scanned: Scanned, tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"path": list(scanned.truth), "label": list(scanned.truth.values())}).to_csv(
        truth, index=False)
    target = tmp_path / "evaluation.json"
    result = _evaluate(scanned.out, "--truth", truth, "--output", target)
    assert result.exit_code == 0, result.output
    metrics = json.loads(target.read_text())
    scores = scanned.scores()
    wrong = sum(scanned.truth[p] != g for p, g in zip(scores["path"], scores["label"],
                                                          strict=True))
    # 6 flipped digits, plus the two hostile-named copies of a "0" filed under 1 and 7
    assert metrics["n"] == len(scores) == 122 and metrics["n_wrong"] == wrong == 8
    assert metrics["n_flagged"] == int(scores["is_noisy"].sum())
    assert 0 <= metrics["auroc"] <= 1
    summary = json.loads((scanned.out / "summary.json").read_text())
    count = summary["estimated_wrong_labels"]["count"]
    assert metrics["n_estimated_wrong"] == count
    top = scores.head(count)
    caught = sum(scanned.truth[p] != g for p, g in zip(top["path"], top["label"], strict=True))
    assert metrics["top_estimated"]["recall"] == pytest.approx(caught / wrong)


def test_bad_truth_files(small: tuple[Path, Path], tmp_path: Path) -> None:
    out, truth = small
    clear_failure(_evaluate(out, "--truth", tmp_path / "nope.csv"), "cannot read truth file")
    # a truth file that covers none of the scored images names both sides' paths
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("path,label\nimages/a/1.png,a\nimages/a/2.png,b\n")
    clear_failure(_evaluate(out, "--truth", elsewhere), "no row for any of the 6 scored",
                  "'images/a/1.png'", "'a/1.png'")
    columns = tmp_path / "columns.csv"
    columns.write_text("file,class\na/1.png,a\n")
    clear_failure(_evaluate(out, "--truth", columns), "lacks column",
                  "columns found: 'file', 'class'")
    dupes = tmp_path / "dupes.csv"
    dupes.write_text(truth.read_text() + "a/1.png,b\n")
    clear_failure(_evaluate(out, "--truth", dupes), "more than once", "a/1.png")
    clear_failure(_evaluate(tmp_path / "no-out", "--truth", truth), "does not exist")
    assert not (out / "evaluation.json").exists()


def test_truth_files_that_cannot_be_right(small: tuple[Path, Path], tmp_path: Path) -> None:
    """A truth file in another encoding, or with labels that are not class names, is one
    clear error, not a traceback or metrics that count every label as wrong."""
    out, truth = small
    latin = tmp_path / "latin.csv"
    latin.write_bytes(truth.read_text().replace("a/skipped.png", "a/caf\u00e9.png")
                      .encode("cp1252"))
    clear_failure(_evaluate(out, "--truth", latin), "not UTF-8")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(truth.read_text().replace(",a\n", ",class_a\n"))
    clear_failure(_evaluate(out, "--truth", renamed), "not class names", "class_a")
    assert not (out / "evaluation.json").exists()


def test_truth_labels_of_no_class(small: tuple[Path, Path], tmp_path: Path) -> None:
    """``--no-class other``: a/2 (given a, suggested b, relabelled) is of none of the
    classes. It is still one of the three wrong labels, so the detection metrics are the
    hand count's; the suggestions are scored on the rows with a class: on the wrong ones
    b/5 (b for a: wrong) and b/6 (a: right), 1/2; on all five, 4/5; the relabel of a/2
    is wrong, b/6's right: 1/2."""
    out, truth = small
    other = tmp_path / "other.csv"
    other.write_text(truth.read_text().replace("./a/2.png,b", "./a/2.png,other"))
    clear_failure(_evaluate(out, "--truth", other), "'other'", "not class names",
                  "--no-class LABEL")
    clear_failure(_evaluate(out, "--truth", other, "--no-class", "other", "--no-class", "b"),
                  "--no-class 'b' is a class name")
    assert not (out / "evaluation.json").exists()
    result = _evaluate(out, "--truth", other, "--no-class", " other", "--no-class", "junk")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert (metrics["n"], metrics["n_wrong"], metrics["n_no_class"]) == (6, 3, 1)
    assert metrics["no_class"] == ["other", "junk"]
    assert metrics["f1"] == pytest.approx(2 / 3) and metrics["auroc"] == pytest.approx(8 / 9)
    assert metrics["suggested_accuracy_on_wrong"] == pytest.approx(1 / 2)
    assert metrics["suggested_accuracy"] == pytest.approx(4 / 5)
    assert (metrics["n_relabel"], metrics["relabel_accuracy"]) == (2, 0.5)
    text = " ".join(result.output.split())
    assert "of which of no class (--no-class) │ 1" in text
    assert "on wrong samples with a class │ 0.500" in text
    # from Python, one label may be given as a string
    assert (evaluate_scan(out, other, tmp_path / "e.json", no_class="other")[0]
            == {**metrics, "no_class": ["other"]})
    # the same truth file without its odd row: no such row, and no "with a class"
    result = _evaluate(out, "--truth", truth, "--no-class", "other")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "evaluation.json").read_text())["n_no_class"] == 0
    assert "of no class" not in result.output and "with a class" not in result.output


def test_auroc_orders_tiny_clean_probabilities_exactly() -> None:
    """1 - clean_prob rounds 1e-30 and 1e-20 to the same 1.0; the AUROC must not tie them:
    the one wrong label has the lowest clean probability, so the AUROC is 1."""
    table = pd.DataFrame({
        "path": ["a/1.png", "a/2.png", "b/3.png", "b/4.png"],
        "label": ["a", "a", "b", "b"],
        "clean_prob": [1e-30, 1e-20, 0.9, 0.95],
        "is_noisy": [True, True, False, False],
        "suggested_label": ["b", "a", "b", "b"],
    })
    truth = pd.DataFrame({"path": table["path"], "label": ["b", "a", "b", "b"]})
    metrics = detection_metrics(table, truth)
    assert metrics["auroc"] == 1.0
    assert metrics["n_wrong"] == 1 and metrics["precision"] == 0.5 and metrics["recall"] == 1.0


def test_names_with_surrounding_spaces_or_a_backslash_match_their_truth_rows(
    tmp_path: Path,
) -> None:
    """The truth file is read without the spaces around its cells, and with ``/`` for
    ``\\``; the table is matched the same way, so a class folder named " lead" or "cat ",
    or a file name holding a backslash, is neither missing nor counted wrong."""
    data = tmp_path / "data"
    spec = [(" lead/1.png", " lead", "keep"), (" lead/2.png", " lead", "review"),
            ("cat /3.png", "cat ", "keep"), ("cat /back\\slash.png", "cat ", "review")]
    rows = []
    for i, (path, label, action) in enumerate(spec):
        write_image(data / path, i)
        rows.append({"path": path, "label": label, "action": action,
                     "clean_prob": 0.9 if action == "keep" else 0.1})
    out = make_outputs(tmp_path / "out", data, rows, [" lead", "cat "])
    truth = tmp_path / "truth.csv"
    # the truth copied from the given labels, but " lead/2.png" is really "cat "
    truth.write_text('path,label\n" lead/1.png", lead\n" lead/2.png",cat \n'
                     'cat /3.png,cat \ncat /back\\slash.png,cat \n')
    result = _evaluate(out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["n"] == 4 and metrics["n_wrong"] == 1
    assert metrics["precision"] == 0.5 and metrics["recall"] == 1.0


def test_top_rows_are_ranked_by_clean_prob_whatever_the_file_order(
    small: tuple[Path, Path],
) -> None:
    """A reviewer who sorts scores.csv by path (here: in reverse) gets the same top rows
    as ``export --top``: the 4 lowest clean probabilities (a/2, b/6, a/3, b/5), not the
    first 4 lines of the file (b/6, b/5, b/4, a/3: precision 1/2, recall 2/3)."""
    out, truth = small
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    scores.sort_values("path", ascending=False).to_csv(out / "scores.csv", index=False)
    _estimate_four_wrong(out)
    result = _evaluate(out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["top_estimated"] == pytest.approx(
        {"precision": 3 / 4, "recall": 1.0, "f1": 6 / 7})
    exported = runner.invoke(app, ["export", str(out), "--format", "csv", "--top", "4"])
    assert exported.exit_code == 0, exported.output
    review = pd.read_csv(out / "review.csv", dtype=str, keep_default_na=False)
    assert sorted(review["path"]) == ["a/2.png", "a/3.png", "b/5.png", "b/6.png"]


def test_truth_headers_with_spaces_or_capitals(small: tuple[Path, Path], tmp_path: Path) -> None:
    """``path, label`` (a space after the comma, as scan's --labels manifest takes it) is
    read; ``Path,Label`` is refused, as by --labels, but the message shows the columns
    found and which to rename."""
    out, truth = small
    body = truth.read_text().split("\n", 1)[1]
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(" path , label\n" + body)
    result = _evaluate(out, "--truth", spaced)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "evaluation.json").read_text())["n_wrong"] == 3
    capitals = tmp_path / "capitals.csv"
    capitals.write_text("Path,Label\n" + body)
    clear_failure(_evaluate(out, "--truth", capitals), "lacks column(s) 'path', 'label'",
                  "columns found: 'Path', 'Label'", "rename 'Path', 'Label' to 'path', 'label'")


def test_a_truth_file_in_nfd_matches_nfc_paths_and_labels(tmp_path: Path) -> None:
    """A truth file written on macOS spells "é" as "e" and a combining accent (NFD); the
    scan's table, from a Linux folder, as one character (NFC). Both are matched in NFC:
    the error used to list names that look identical to the table's."""
    data = tmp_path / "data"
    cafe, the = "caf\u00e9", "th\u00e9"
    spec = [(f"{cafe}/cr\u00e8me.png", cafe, cafe, "keep", 0.9),
            (f"{cafe}/2.png", cafe, the, "review", 0.1),
            (f"{the}/3.png", the, the, "keep", 0.8)]
    rows = []
    for i, (path, given, _, action, prob) in enumerate(spec):
        write_image(data / path, i)
        rows.append({"path": path, "label": given, "action": action, "clean_prob": prob})
    out = make_outputs(tmp_path / "out", data, rows, [cafe, the])
    truth = tmp_path / "truth.csv"
    text = "path,label\n" + "".join(f"{p},{t}\n" for p, _, t, *_ in spec)
    truth.write_text(unicodedata.normalize("NFD", text), encoding="utf-8")
    assert unicodedata.normalize("NFD", cafe).encode() in truth.read_bytes()
    result = _evaluate(out, "--truth", truth)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert (metrics["n"], metrics["n_wrong"], metrics["precision"], metrics["recall"]) == (
        3, 1, 1.0, 1.0)


def test_train_truth_in_nfd_matches_an_nfc_folder(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """train --truth matches its paths and class names as evaluate does: a class folder
    named "sept\u00e9" (NFC on disk) and a truth file in NFD."""
    root, truth = digits_folder
    name = "sept\u00e9"
    (root / "7").rename(root / name)
    renamed = {p.replace("7/", f"{name}/", 1) if p.startswith("7/") else p:
               name if t == "7" else t for p, t in truth.items()}
    csv = tmp_path / "truth.csv"
    text = "path,label\n" + "".join(f"{p},{t}\n" for p, t in renamed.items())
    csv.write_text(unicodedata.normalize("NFD", text), encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "train", str(root), "--out", str(out), "--method", "standard", "--truth", str(csv),
        "--epochs", "2", "--width", "8", "--batch-size", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth_metrics"]["n"] == len(truth)
    assert summary["truth_metrics"]["n_wrong"] == 6


def test_a_truth_file_for_a_sample_of_the_rows(small: tuple[Path, Path], tmp_path: Path) -> None:
    """A labelled sample (a/2 wrong and flagged, a/3 right and flagged, b/4 right, b/5
    wrong and missed) is scored on its own rows: precision 1/2, recall 1/2; the top 4
    rows (a/2, b/6, a/3, b/5) are taken from the whole table and scored on the three the
    sample covers (2 wrong of 3, both wrong ones caught)."""
    out, _ = small
    _estimate_four_wrong(out)
    sample = tmp_path / "sample.csv"
    sample.write_text("path,label\na/2.png,b\na/3.png,a\nb/4.png,b\nb/5.png,a\n")
    result = _evaluate(out, "--truth", sample)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert (metrics["n"], metrics["n_scored"], metrics["truth_rows_unused"]) == (4, 6, 0)
    assert (metrics["n_wrong"], metrics["n_flagged"]) == (2, 2)
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["auroc"] == pytest.approx(3 / 4)  # wrong .05 .60, right .30 .80
    assert (metrics["n_relabel"], metrics["relabel_accuracy"]) == (1, 1.0)
    assert metrics["top_estimated"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8})
    assert "4 of 6 scored" in result.output
    assert "note:" not in result.output
