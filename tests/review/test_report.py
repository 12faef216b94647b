"""``noisyclean report`` and ``scan --report``: the HTML parsed back, thumbnails, escaping,
the histogram, bad input, and (where Chromium is installed) a headless screenshot."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.outputs.load import load_outputs
from noisyclean.outputs.report import (
    PLACEHOLDER_URI,
    _component_curves,
    histogram_caption,
    histogram_input,
)

from ..conftest import tree_digest
from .conftest import (
    QUOTE_PATH,
    SCRIPT_PATH,
    Scanned,
    clear_failure,
    make_outputs,
    moved_scan,
    write_image,
)

runner = CliRunner()


class Page(HTMLParser):
    """Every start tag with its attributes, the text, and the gallery items."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def items(self) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "div" and a.get("class") == "item"]

    def thumbs(self) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img" and a.get("class") == "thumb"]

    def all_text(self) -> str:
        return "".join(self.text)


def _report(*args: object) -> object:
    return runner.invoke(app, ["report", *map(str, args)])


def _decode(uri: str) -> Image.Image:
    header, payload = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64"), header
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_scan_report_flag_writes_a_self_contained_report(scanned: Scanned) -> None:
    html = (scanned.out / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith("data:"), (tag, attrs[key][:40])
    assert not any(t in ("script", "link", "iframe", "object") for t, _ in page.tags)
    assert 'src="http' not in html and 'href="http' not in html
    # default gallery: flagged images only, most suspicious first
    scores = scanned.scores()
    flagged = scores[scores["is_noisy"]].sort_values("clean_prob", kind="stable")
    assert [a["data-path"] for a in page.items()] == _grouped(flagged.head(100), scores)


def _grouped(rows: pd.DataFrame, scores: pd.DataFrame) -> list[str]:
    """Row paths in gallery order: grouped by given class (class order), suspicious first."""
    classes = ["0", "1", "7"]
    return [p for c in classes for p in rows.loc[rows["label"] == c, "path"]]


def test_report_shows_every_image_escaped(scanned: Scanned, tmp_path: Path) -> None:
    before = tree_digest(scanned.root)
    target = tmp_path / "all.html"
    result = _report(scanned.out, "--all", "--top", "1000", "-o", target)
    assert result.exit_code == 0, result.output
    assert tree_digest(scanned.root) == before  # the report only reads the images
    html = target.read_text(encoding="utf-8")
    page = Page(html)
    scores = scanned.scores()
    items, thumbs = page.items(), page.thumbs()
    # every image present exactly once, as a decodable thumbnail of the right size
    assert sorted(a["data-path"] for a in items) == sorted(scores["path"])
    assert len(thumbs) == len(scores) == 122
    assert all(t["data-state"] == "ok" for t in thumbs)
    for thumb in thumbs:
        image = _decode(thumb["src"])
        image.load()
        assert max(image.size) <= 96
    # the first thumbnail is the source image (16 px PNG, kept at its size), pixel for pixel
    first = items[0]["data-path"]
    source = Image.open(scanned.root / first).convert("RGB")
    assert np.array_equal(np.asarray(_decode(thumbs[0]["src"]).convert("RGB")),
                          np.asarray(source))
    # hostile names are text, never markup
    assert not any(tag == "script" for tag, _ in page.tags)
    assert "<script>" not in html
    assert SCRIPT_PATH in page.all_text()
    assert "1/&lt;script&gt;alert(1)&lt;/script&gt;.png" in html
    assert QUOTE_PATH in [a["data-path"] for a in items]  # attribute survived intact
    assert QUOTE_PATH in [t["alt"] for t in thumbs]
    assert 'src="http' not in html and 'href="http' not in html
    # the summary numbers and the label matrix are those of scores.csv
    text = " ".join(page.all_text().split())
    noisy = int(scores["is_noisy"].sum())
    assert f"<b>{noisy} ({noisy / len(scores):.1%})</b><span>flagged noisy</span>" in html
    relabel = int((scores["action"] == "relabel").sum())
    assert f"<b>{relabel}</b><span>relabel</span>" in html
    summary = json.loads((scanned.out / "summary.json").read_text())
    wrong = summary["estimated_wrong_labels"]
    assert (f"<b>~{wrong['count']} ({wrong['rate']:.1%})</b>"
            "<span>estimated wrong labels</span>") in html
    assert "<th>flagged share</th><th>est. wrong labels</th>" in html
    for name, rate in wrong["per_class"].items():  # each class's row holds its estimate
        row = html.split(f'<td class="name">{name}</td>', 1)[1].split("</tr>", 1)[0]
        assert f"<td>{rate:.1%} <span" in row
    cells = [int(v) for v in _matrix_cells(html)]
    expected = [summary["label_matrix"][g][s] for g in ("0", "1", "7") for s in ("0", "1", "7")]
    assert cells == expected
    # the histogram is a real PNG
    figure = [a for t, a in page.tags if t == "img" and a.get("class") == "figure"]
    assert len(figure) == 1 and _decode(figure[0]["src"]).size == (640, 330)
    assert "Histogram of fit_loss" in text


def _matrix_cells(html: str) -> list[str]:
    """The numbers in the label matrix's <td> cells, row by row."""
    table = html.split('<table class="matrix">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<td[^>]*>(\d+)</td>", table)


def test_top_caps_the_gallery_and_keeps_the_most_suspicious(
    scanned: Scanned, tmp_path: Path
) -> None:
    result = _report(scanned.out, "--top", "5", "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    scores = scanned.scores()
    flagged = scores[scores["is_noisy"]].sort_values("clean_prob", kind="stable")
    assert [a["data-path"] for a in page.items()] == _grouped(flagged.head(5), scores)
    assert len(page.thumbs()) == 5
    assert "Use --top to show more" in page.all_text()


def test_unreadable_image_gets_a_placeholder(scanned: Scanned, tmp_path: Path) -> None:
    copy = tmp_path / "images"
    shutil.copytree(scanned.root, copy)
    scores = scanned.scores()
    victim = scores.loc[scores["is_noisy"], "path"].iloc[0]
    (copy / victim).write_bytes(b"not a png at all")
    gone = scores.loc[scores["is_noisy"], "path"].iloc[1]
    (copy / gone).unlink()
    result = _report(scanned.out, "--data", copy, "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    states = {a["data-path"]: t for a, t in zip(page.items(), page.thumbs(), strict=True)}
    for path in (victim, gone):
        assert states[path]["data-state"] == "missing"
        assert states[path]["src"] == PLACEHOLDER_URI
    assert sum(t["data-state"] == "ok" for t in states.values()) == len(states) - 2
    assert "image unreadable" in page.all_text()


def test_images_reached_through_links_out_of_the_dataset_are_shown(tmp_path: Path) -> None:
    """A dataset of links (an ``apply --symlink`` tree, a class folder that is a link) scans
    like its images, and the report shows them, as ``apply`` copies them: the dataset's own
    links are followed wherever they lead; only the table's paths are held inside it."""
    elsewhere, data = tmp_path / "elsewhere", tmp_path / "data"
    write_image(elsewhere / "x.png", 40)
    write_image(elsewhere / "cls" / "y.png", 80)
    (data / "a").mkdir(parents=True)
    (data / "a" / "x.png").symlink_to(elsewhere / "x.png")
    (data / "b").symlink_to(elsewhere / "cls")
    out = make_outputs(tmp_path / "out", data, [
        {"path": "a/x.png", "label": "a", "action": "review"},
        {"path": "b/y.png", "label": "b", "action": "review"},
    ], ["a", "b"])
    result = _report(out, "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    states = {a["data-path"]: t for a, t in zip(page.items(), page.thumbs(), strict=True)}
    assert {path: t["data-state"] for path, t in states.items()} == {"a/x.png": "ok",
                                                                     "b/y.png": "ok"}
    shown = np.asarray(_decode(states["a/x.png"]["src"]).convert("RGB"))
    assert abs(int(shown[6, 6, 0]) - 40) <= 2  # the linked image's grey, not a placeholder


def test_report_on_a_table_without_fit_loss_says_so(scanned: Scanned, tmp_path: Path) -> None:
    out = tmp_path / "old"
    shutil.copytree(scanned.out, out)
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    scores.drop(columns=["fit_loss"]).to_csv(out / "scores.csv", index=False)
    result = _report(out)
    assert result.exit_code == 0, result.output
    text = " ".join(Page((out / "report.html").read_text()).all_text().split())
    assert "no fit_loss column" in text and "min-max normalised" in text


def test_report_notes_a_close_call_of_the_cut(scanned: Scanned, tmp_path: Path) -> None:
    """The real scan's report says nothing of a close call unless its summary holds one;
    with one written into a copy, the note gives the other count and where to read on."""
    plain = " ".join(Page((scanned.out / "report.html").read_text()).all_text().split())
    cut = json.loads((scanned.out / "summary.json").read_text())["cut"]
    assert ("close call" in plain) == (cut.get("close_call") is not None)
    out = tmp_path / "close"
    shutil.copytree(scanned.out, out)
    summary = json.loads((out / "summary.json").read_text())
    summary["cut"] = {"rule": "arbitrated", "flagged": 12, "chosen": "loss_mixture",
                      "estimate_position": 0.45, "close_call": 20,
                      "counts": {"mixture": 20, "loss_mixture": 12, "confident_joint": 15}}
    (out / "summary.json").write_text(json.dumps(summary))
    result = _report(out)
    assert result.exit_code == 0, result.output
    text = " ".join(Page((out / "report.html").read_text()).all_text().split())
    assert ("The cut was a close call: the estimate (15) lay 45% of the way from 12 to 20 "
            "(the two mixtures' counts); a little further and the cut would have flagged "
            "20. scores.csv is sorted most suspicious first: review on to row 20 (export --top "
            "20).") in text
    # a summary edited by hand (a count missing) still renders, without the note
    del summary["cut"]["counts"]["loss_mixture"]
    (out / "summary.json").write_text(json.dumps(summary))
    result = _report(out)
    assert result.exit_code == 0, result.output
    assert "close call" not in " ".join(Page((out / "report.html").read_text()).all_text().split())


def test_histogram_components_and_degenerate_fits(tmp_path: Path) -> None:
    write_image(tmp_path / "data" / "a" / "x.png", 10)
    write_image(tmp_path / "data" / "b" / "y.png", 200)
    rows = [{"path": "a/x.png", "label": "a", "action": "keep"},
            {"path": "b/y.png", "label": "b", "action": "review"}]
    bmm = {"kind": "bmm", "degenerate": False, "weights": [0.75, 0.25],
           "means": [0.2, 0.8], "alphas": [2.0, 8.0], "betas": [8.0, 2.0]}
    out = make_outputs(tmp_path / "out", tmp_path / "data", rows, ["a", "b"], [bmm])
    hist = histogram_input(load_outputs(out))
    assert hist.column == "fit_loss" and list(hist.values) == [0.1, 0.8]
    x = np.linspace(0, 1, 20001)
    curves = _component_curves(hist.mixture, x)
    assert curves is not None and [label.split(" (")[0] for label, _ in curves] == [
        "clean component", "noisy component"]
    # each drawn curve is its component's density times its weight: it integrates to the weight
    areas = [np.trapezoid(y, x) if hasattr(np, "trapezoid") else np.trapz(y, x)
             for _, y in curves]
    assert areas == pytest.approx([0.75, 0.25], abs=1e-3)
    gmm = {"kind": "gmm", "degenerate": False, "weights": [0.6, 0.4],
           "means": [0.3, 0.7], "variances": [0.01, 0.04]}
    gmm_curves = _component_curves(gmm, x)
    assert x[np.argmax(gmm_curves[0][1])] == pytest.approx(0.3, abs=1e-3)
    degenerate = {"kind": "gmm", "degenerate": True, "n_samples": 2}
    assert _component_curves(degenerate, x) is None
    make_outputs(out, tmp_path / "data", rows, ["a", "b"], [degenerate])
    result = _report(out)
    assert result.exit_code == 0, result.output
    text = " ".join(Page((out / "report.html").read_text()).all_text().split())
    assert "degenerate" in text
    hist = histogram_input(load_outputs(out))
    assert "degenerate" in histogram_caption(hist, drew_components=False)


def test_bad_output_folders_are_clear_errors(scanned: Scanned, tmp_path: Path) -> None:
    clear_failure(_report(tmp_path / "nope"), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    clear_failure(_report(empty), "summary.json not found")
    garbled = tmp_path / "garbled"
    shutil.copytree(scanned.out, garbled)
    (garbled / "summary.json").write_text("{not json")
    clear_failure(_report(garbled), "cannot read", "summary.json")
    summary = json.loads((scanned.out / "summary.json").read_text())
    truth = tmp_path / "truth.csv"
    pd.DataFrame(sorted(scanned.truth.items()), columns=["path", "label"]).to_csv(truth,
                                                                                index=False)
    for classes in ("notalist", [], ["0", 1]):
        (garbled / "summary.json").write_text(json.dumps({**summary, "classes": classes}))
        for command in ("report", "export", "apply", "evaluate"):
            extra = {"apply": ["--to", tmp_path / "clean"], "export": ["-o", tmp_path / "x.json"],
                     "evaluate": ["--truth", truth]}.get(command, [])
            result = runner.invoke(app, [command, str(garbled), *map(str, extra)])
            clear_failure(result, 'is garbled: its "classes" is not a list of class names')
    shutil.copy(scanned.out / "summary.json", garbled / "summary.json")
    scores = pd.read_csv(garbled / "scores.csv", dtype=str, keep_default_na=False)
    scores.drop(columns=["clean_prob"]).to_csv(garbled / "scores.csv", index=False)
    clear_failure(_report(garbled), "lacks column", "clean_prob")
    scores.assign(clean_prob="oops").to_csv(garbled / "scores.csv", index=False)
    clear_failure(_report(garbled), "clean_prob", "non-numeric")
    clear_failure(_report(scanned.out, "--top", "-1"), "--top")
    clear_failure(_report(scanned.out, "-o", tmp_path / "missing" / "r.html"), "cannot write")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None,
                    reason="needs Chromium for a headless screenshot (apt-get install chromium)")
def test_report_renders_in_headless_chromium(scanned: Scanned, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1000,900", f"--screenshot={shot}",
         (scanned.out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1000)
    assert pixels.std() > 20  # a rendered page, not a blank one


def test_report_output_never_replaces_the_scans_own_files(
    scanned: Scanned, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(scanned.out, out)
    before = tree_digest(out)
    for name in ("summary.json", "scores.csv", "relabeled.csv", "skipped.csv",
                 "pred_probs.npy", "history.csv", "checkpoint.pt", "net1.pt"):
        clear_failure(_report(out, "-o", out / name), "scan's own", name,
                      "choose another file name")
    clear_failure(_report(out, "-o", out / "." / "summary.json"), "scan's own")
    assert tree_digest(out) == before
    result = _report(out, "-o", out / "summary.html")
    assert result.exit_code == 0, result.output


def test_report_of_a_moved_dataset_asks_for_data(scanned: Scanned, tmp_path: Path) -> None:
    """A dataset folder moved since the scan: one error naming --data, not a report of
    placeholders; with --data every thumbnail is there."""
    out, old, moved = moved_scan(scanned, tmp_path)
    before = tree_digest(out)
    clear_failure(_report(out), str(old), "does not exist", "--data NEW_FOLDER")
    clear_failure(_report(out, "-o", tmp_path / "r.html"), "--data NEW_FOLDER")
    old.mkdir()  # the folder is there again, without the images
    clear_failure(_report(out), "none of the", str(old), "--data NEW_FOLDER")
    assert tree_digest(out) == before and not (tmp_path / "r.html").exists()
    result = _report(out, "--data", moved, "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    thumbs = Page((tmp_path / "r.html").read_text(encoding="utf-8")).thumbs()
    assert thumbs and all(t["data-state"] == "ok" for t in thumbs)
