"""Data-layer defects found in a bug hunt, each on real files (through the real CLI where a
user sees the result): names that are not UTF-8, the decode cache's key, manifest paths and
labels as written (spaces, Unicode forms), the lines a manifest's messages cite, warnings,
and named pipes."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.data.decode import cache_key, decode_image, decode_images, probe_image_size
from noisyclean.data.discover import discover
from noisyclean.errors import NoisyCleanError
from noisyclean.names import case_twins

from .test_discover import _csv, _png, _two_classes

runner = CliRunner()
FAST = ["--epochs", "1", "--width", "8", "--image-size", "16", "--quiet"]

NFC_CAFE = unicodedata.normalize("NFC", "caf\u00e9")
NFD_CAFE = unicodedata.normalize("NFD", NFC_CAFE)


def _run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _skipped(out: Path) -> dict[str, str]:
    frame = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    return dict(zip(frame["path"], frame["reason"], strict=True))


def _digits(root: Path, per_class: int = 14) -> Path:
    """A small folder of three classes (``0``, ``1``, ``7``) of real digit PNGs."""
    from .conftest import write_digits_folder

    write_digits_folder(root, per_class=per_class, flip=2)
    return root


def _bytes_path(path: Path, name: bytes) -> bytes:
    """``path / name`` for a ``name`` that is not valid UTF-8."""
    return os.fsencode(path) + b"/" + name


def _make_undecodable(root: Path) -> None:
    """Under a digits folder: a file, a nested folder and a class folder whose names are
    not valid UTF-8 (skip where the file system refuses such names)."""
    image = root / "0" / os.listdir(root / "0")[0]
    try:
        shutil.copy(image, _bytes_path(root / "0", b"caf\xe9.png"))
        os.mkdir(_bytes_path(root / "1", b"sub\xff"))
        shutil.copy(image, _bytes_path(root / "1", b"sub\xff/x.png"))
        os.mkdir(_bytes_path(root, b"b\xe9ar"))
        shutil.copy(image, _bytes_path(root, b"b\xe9ar/x.png"))
    except OSError:
        pytest.skip("the file system does not take names that are not UTF-8")


UNDECODABLE = {
    "0/caf\\xe9.png": "file name is not valid UTF-8: rename it",
    "1/sub\\xff": "folder name is not valid UTF-8: rename it (the files in it are not used)",
    "b\\xe9ar": "folder name is not valid UTF-8: rename it (the files in it are not used)",
}


# --------------------------------------------------------------------------- 1: not UTF-8


def test_scan_and_train_skip_names_that_are_not_utf8(tmp_path: Path) -> None:
    """Such a file or folder (a class folder too) is listed in skipped.csv under an escaped
    spelling, and the run goes on with the other images."""
    root = _digits(tmp_path / "images")
    _make_undecodable(root)
    result = _run("scan", root, "--out", tmp_path / "scan", *FAST)
    assert result.exit_code == 0, result.output
    assert _skipped(tmp_path / "scan") == UNDECODABLE
    summary = json.loads((tmp_path / "scan" / "summary.json").read_text(encoding="utf-8"))
    assert summary["classes"] == ["0", "1", "7"]
    counts = summary["counts"]
    assert (counts["used"], counts["skipped"], counts["found"]) == (42, 3, 45)

    result = _run("train", root, "--method", "standard", "--out", tmp_path / "train", *FAST)
    assert result.exit_code == 0, result.output
    assert _skipped(tmp_path / "train") == UNDECODABLE


def test_discovery_hands_on_no_name_that_is_not_text(tmp_path: Path) -> None:
    root = _digits(tmp_path / "images", per_class=3)
    _make_undecodable(root)
    samples = discover(root)
    assert samples.classes == ["0", "1", "7"] and len(samples) == 9
    assert dict(samples.unusable) == UNDECODABLE
    assert samples.found == 12
    for text in [*samples.paths, *(p for p, _ in samples.unusable)]:
        text.encode("utf-8")  # no lone surrogates


def test_a_dataset_folder_or_class_named_in_bytes_that_are_not_utf8_is_refused(
    tmp_path: Path,
) -> None:
    """Outputs name the dataset folder and the classes: one clear message, before any
    training, with the name escaped."""
    _digits(tmp_path / "images", per_class=6)
    root = os.fsdecode(_bytes_path(tmp_path, b"r\xe9"))
    try:
        os.rename(tmp_path / "images", root)
    except OSError:
        pytest.skip("the file system does not take names that are not UTF-8")
    result = _run("scan", root, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 2, result.output
    assert "r\\xe9 has a name that is not valid UTF-8" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(NoisyCleanError, match=r"class 'caf\\xe9' is not valid UTF-8"):
        discover(tmp_path, classes=[os.fsdecode(b"caf\xe9"), "0"])


# --------------------------------------------------------------------------- 2: decode cache


def _ppm_folder(root: Path, swap: bool) -> Path:
    """Classes ``a`` and ``b`` of 16x16 PPM files (all the same size), red and blue or
    swapped, every file with the same stored time (as an archive extracts them)."""
    colours = [(200, 0, 0), (0, 0, 200)]
    for k, name in enumerate("ab"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            path = root / name / f"{i}.ppm"
            Image.new("RGB", (16, 16), colours[k ^ swap]).save(path)
            os.utime(path, ns=(10**18, 10**18))
    return root


def test_two_folders_alike_in_paths_sizes_and_times_do_not_share_the_cache(
    tmp_path: Path,
) -> None:
    first = _ppm_folder(tmp_path / "dsA", swap=False)
    second = _ppm_folder(tmp_path / "dsB", swap=True)
    cache = tmp_path / "cache"
    for name in ("dsA", "dsB"):
        result = _run("scan", tmp_path / name, "--out", tmp_path / f"o_{name}",
                      "--cache-dir", cache, *FAST)
        assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o_dsB" / "summary.json").read_text(encoding="utf-8"))
    assert summary["decode_cache"]["hit"] is False

    paths = ["a/0.ppm", "b/0.ppm"]
    decoded = decode_images(second, paths, 16, cache_dir=cache)
    assert decoded.images[0, 0, 0].tolist() == [0, 0, 200]  # dsB's own pixels
    assert cache_key(first, paths, 16) != cache_key(second, paths, 16)
    link = tmp_path / "link"
    os.symlink(second, link)
    assert cache_key(link, paths, 16) == cache_key(second, paths, 16)  # the same folder


def test_a_file_replaced_with_the_same_size_and_mtime_is_decoded_again(tmp_path: Path) -> None:
    """Rewritten in place, or replaced by another file (a new inode), each time with its
    size and modification time put back: never the old pixels."""
    root = _ppm_folder(tmp_path / "ds", swap=False)
    cache, paths = tmp_path / "cache", ["a/0.ppm", "b/0.ppm"]
    target = root / "a" / "0.ppm"
    assert decode_images(root, paths, 16, cache_dir=cache).images[0, 0, 0].tolist() == [200, 0, 0]
    assert decode_images(root, paths, 16, cache_dir=cache).from_cache is True

    time.sleep(0.05)  # past the file system clock's tick, so the change time moves
    green = tmp_path / "green.ppm"
    Image.new("RGB", (16, 16), (0, 200, 0)).save(green)
    inode = target.stat().st_ino
    with open(target, "r+b") as handle:  # in place: same inode
        handle.write(green.read_bytes())
    assert target.stat().st_ino == inode and target.stat().st_size == green.stat().st_size
    os.utime(target, ns=(10**18, 10**18))
    again = decode_images(root, paths, 16, cache_dir=cache)
    assert again.from_cache is False
    assert again.images[0, 0, 0].tolist() == [0, 200, 0]

    other = tmp_path / "other.ppm"
    Image.new("RGB", (16, 16), (9, 9, 9)).save(other)
    os.utime(other, ns=(10**18, 10**18))
    os.replace(other, target)  # another file in its place
    third = decode_images(root, paths, 16, cache_dir=cache)
    assert third.from_cache is False
    assert third.images[0, 0, 0].tolist() == [9, 9, 9]
    np.testing.assert_array_equal(third.images[0], decode_image(target, 16))


# --------------------------------------------------------------------------- 3: manifest


def test_relabeled_csv_of_a_class_folder_with_spaces_scans_again(tmp_path: Path) -> None:
    """relabeled.csv of a class folder " sp" names " sp/..." with label " sp": fed back
    with --labels, the same files and the class " sp"."""
    root = _digits(tmp_path / "images")
    os.rename(root / "7", root / " sp")
    result = _run("scan", root, "--out", tmp_path / "a", *FAST)
    assert result.exit_code == 0, result.output
    relabeled = tmp_path / "a" / "relabeled.csv"
    assert " sp/" in relabeled.read_text(encoding="utf-8")
    result = _run("scan", root, "--labels", relabeled, "--out", tmp_path / "b", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text(encoding="utf-8"))
    assert summary["classes"] == [" sp", "0", "1"]
    scores = pd.read_csv(tmp_path / "b" / "scores.csv", dtype=str, keep_default_na=False)
    assert sorted(scores["path"]) == sorted(
        pd.read_csv(relabeled, dtype=str, keep_default_na=False)["path"])


def test_manifest_paths_match_in_another_unicode_form_or_without_spaces(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    _png(root / NFC_CAFE / f"{NFC_CAFE}.png")
    _png(root / NFC_CAFE / "b.png")
    _png(root / "dog" / "c.png")
    _png(root / " sp" / "d.png")
    try:  # a name that is not text beside them is no trouble
        shutil.copy(root / "dog" / "c.png", _bytes_path(root / NFC_CAFE, b"\xff.png"))
    except OSError:
        pass
    csv = _csv(tmp_path / "l.csv", "path,label\n"
               f"{NFD_CAFE}/{NFD_CAFE}.png,cat\n"  # NFD throughout
               f"{NFD_CAFE}/b.png ,cat\n"  # NFD folder, a trailing space
               "  dog/c.png,dog\n"  # leading spaces
               " sp/d.png,dog\n")  # as written: the folder " sp"
    samples = discover(root, labels_csv=csv)
    assert samples.paths == [" sp/d.png", f"{NFC_CAFE}/b.png", f"{NFC_CAFE}/{NFC_CAFE}.png",
                             "dog/c.png"]
    assert samples.labels.tolist() == [1, 0, 0, 1]

    mixed = _csv(tmp_path / "m.csv", f"path,label\n{NFC_CAFE}/{NFD_CAFE}.png,cat\ndog/c.png,dog\n")
    assert discover(root, labels_csv=mixed).paths[0] == f"{NFC_CAFE}/{NFC_CAFE}.png"

    twice = _csv(tmp_path / "t.csv",
                 f"path,label\n{NFD_CAFE}/b.png,cat\n{NFC_CAFE}/b.png,dog\n")
    with pytest.raises(NoisyCleanError, match=f"more than once: '{NFC_CAFE}/b.png'"):
        discover(root, labels_csv=twice)


def test_a_manifest_path_that_matches_two_unicode_forms_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / NFC_CAFE / f"{NFD_CAFE}.png")
    _png(root / NFD_CAFE / f"{NFD_CAFE}.png")
    _png(root / "dog" / "c.png")
    if len(os.listdir(root)) != 3:
        pytest.skip("the file system does not keep both Unicode forms of a name apart")
    csv = _csv(tmp_path / "l.csv",
               f"path,label\n{NFC_CAFE}/{NFC_CAFE}.png,cat\ndog/c.png,dog\n")
    with pytest.raises(NoisyCleanError, match="match more than one file in another Unicode"):
        discover(root, labels_csv=csv)


def test_manifest_labels_as_written_when_that_names_a_class(tmp_path: Path) -> None:
    """A label with surrounding spaces is that class when a class folder is so named (or
    ``classes`` names it); otherwise it is read without its spaces, as before."""
    root = tmp_path / "data"
    _png(root / " sp" / "a.png")
    _png(root / "cat" / "b.png")
    _png(root / "cat" / "c.png")
    csv = _csv(tmp_path / "l.csv", "path, label\n sp/a.png, sp\ncat/b.png, cat\ncat/c.png,cat \n")
    samples = discover(root, labels_csv=csv)
    assert samples.classes == [" sp", "cat"]
    assert samples.labels.tolist() == [0, 1, 1]

    given = _csv(tmp_path / "g.csv",
                 f"path,label\n sp/a.png,{NFD_CAFE} \ncat/b.png, sp\ncat/c.png,cat\n")
    samples = discover(root, labels_csv=given, classes=["cat", " sp", NFC_CAFE])
    assert samples.classes == ["cat", " sp", NFC_CAFE]
    assert samples.labels.tolist() == [2, 1, 0]


# --------------------------------------------------------------------------- 4: line numbers


def test_manifest_messages_cite_the_line_of_the_file(tmp_path: Path) -> None:
    root = tmp_path / "man"
    for i in range(3):
        _png(root / "imgs" / f"{i}.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n\n\nimgs/0.png,0\n\nimgs/1.png,\nimgs/2.png,1\n")
    result = _run("scan", root, "--labels", manifest, *FAST)
    assert result.exit_code == 2, result.output
    assert "has an empty 'label' on line 6" in " ".join(result.output.split())

    dup = _csv(tmp_path / "d.csv",
               '\npath,label\r\n  \r\n"imgs/0.png","a\r\nb"\r\n\r\nimgs/1.png,b\r\n'
               "imgs/0.png,c\r\n")
    with pytest.raises(NoisyCleanError, match=r"'imgs/0.png' \(lines 4, 8\)"):
        discover(root, labels_csv=dup)
    unknown = _csv(tmp_path / "u.csv", "path,label\n\nimgs/0.png,a\n\t\nimgs/1.png,zebra\n")
    with pytest.raises(NoisyCleanError, match=r"'zebra'.*\(first on line 5\)"):
        discover(root, labels_csv=unknown, classes=["a", "b"])


def test_read_user_csv_lines_counts_every_line_of_the_file(tmp_path: Path) -> None:
    from noisyclean.csvread import read_user_csv_lines

    path = tmp_path / "f.csv"
    path.write_bytes(b'\xef\xbb\xbf\npath,label\r\n \t \r\na,"x\r\ny"\r\n,\r\n\r\nb\r\n')
    frame, lines = read_user_csv_lines(path, "truth file", ("path", "label"))
    assert frame.to_dict("list") == {"path": ["a", "", "b"], "label": ["x\r\ny", "", ""]}
    assert lines == [4, 6, 8]
    path.write_bytes(b"path,label\r\"q\rq\",z\r\rc,d\r")  # old Mac line ends
    assert read_user_csv_lines(path, "truth file", ("path", "label"))[1] == [2, 5]


# --------------------------------------------------------------------------- 5: warnings


def test_a_cache_folder_that_is_a_file_gives_one_warning_line(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    root = _digits(tmp_path / "images", per_class=6)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    result = _run("scan", root, "--out", tmp_path / "out", "--cache-dir", blocker, *FAST)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"warning: could not write the decode cache in {blocker} (it is a file, not a " \
           "folder)" in text
    assert "UserWarning" not in result.output
    assert not [w for w in recwarn if "decode cache" in str(w.message)]

    messages: list[str] = []
    decode_images(root, ["0/" + os.listdir(root / "0")[0]], 8,
                  cache_dir=blocker / "sub", warn=messages.append)
    assert messages == [f"could not write the decode cache in {blocker / 'sub'} ({blocker} is "
                        "a file, not a folder); the images will be decoded again next time"]


def test_an_image_with_corrupt_exif_is_decoded_without_a_warning(tmp_path: Path) -> None:
    exif = (b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
            b"\x00\x09\x00\x00")  # one IFD entry, then the file ends: Pillow warns
    for i in range(4):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / f"{i}.jpg", exif=exif)
    paths = [f"{i}.jpg" for i in range(4)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = decode_images(tmp_path, paths, 8, workers=2)
        assert probe_image_size(tmp_path, paths) == 8
    assert [str(w.message) for w in caught] == []
    assert decoded.ok.tolist() == [0, 1, 2, 3] and decoded.skipped == []


# --------------------------------------------------------------------------- 6: named pipes


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_listed_and_never_opened(tmp_path: Path) -> None:
    root = _digits(tmp_path / "images", per_class=6)
    os.mkfifo(root / "0" / "pipe.png")
    os.symlink(root / "0" / "pipe.png", root / "1" / "link.png")
    found: list[object] = []
    worker = threading.Thread(target=lambda: found.append(discover(root)), daemon=True)
    worker.start()
    worker.join(30)  # opening the pipe would block for ever
    assert found, "discovery blocked on a named pipe"
    assert found[0].unusable == [("0/pipe.png", "not a regular file (a named pipe)"),
                                 ("1/link.png", "not a regular file (a named pipe)")]

    result = _run("scan", root, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    assert _skipped(tmp_path / "out") == {"0/pipe.png": "not a regular file (a named pipe)",
                                          "1/link.png": "not a regular file (a named pipe)"}


def test_a_folder_with_only_unusable_entries_says_why(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    for png in root.rglob("*.png"):
        png.unlink()
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs named pipes")
    os.mkfifo(root / "cat" / "p")
    with pytest.raises(NoisyCleanError, match="not usable, e.g. 'cat/p': not a regular file"):
        discover(root)


def test_classes_that_differ_only_in_case_are_named_in_a_warning(tmp_path: Path) -> None:
    """A labels CSV with ``cat`` and ``CAT`` (a typo, most likely) makes two classes: the
    scan says so, as it cannot know which was meant."""
    assert case_twins(["cat", "dog", "CAT", " Dog", "caf\u00e9", "cafe\u0301", "fox"]) == [
        ["cat", "CAT"], ["dog", " Dog"], ["caf\u00e9", "cafe\u0301"]]
    assert case_twins(["cat", "dog"]) == []
    root = tmp_path / "flat"
    rows = []
    for i in range(30):
        _png(root / f"{i}.png", (8 * i, 40, 90 if i % 3 else 200))
        rows.append(f"{i}.png,{('cat', 'CAT', 'dog')[i % 3]}\n")
    csv = _csv(tmp_path / "labels.csv", "path,label\n" + "".join(rows))
    result = runner.invoke(app, ["scan", str(root), "--labels", str(csv), "--out",
                                 str(tmp_path / "out"), *FAST, "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert ("warning: classes 'CAT', 'cat' differ only in letter case (or Unicode form) and "
            "are separate classes; rename one if they are the same") in result.output
