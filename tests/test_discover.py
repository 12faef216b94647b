"""Tests for noisyclean.data.discover: ImageFolder and CSV-manifest layouts, and every error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisyclean.data.discover import (
    IMAGE_EXTENSIONS,
    LINK_BROKEN,
    LINK_LOOP,
    Samples,
    discover,
)
from noisyclean.errors import NoisyCleanError


def _png(path: Path, colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


def _two_classes(root: Path) -> Path:
    """root/cat/{a,b}.png, root/dog/c.png."""
    _png(root / "cat" / "a.png")
    _png(root / "cat" / "b.png")
    _png(root / "dog" / "c.png")
    return root


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- ImageFolder


def test_image_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "dog" / "d1.png")
    _png(root / "cat" / "z.png")
    _png(root / "cat" / "sub" / "deeper" / "a.jpg")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "photo.png.bak").write_bytes(b"whatever")
    _png(root / "cat" / ".hidden.png")
    _png(root / "cat" / ".hiddendir" / "x.png")
    _png(root / ".git" / "y.png")
    _png(root / "root_level.png")
    (root / "README.md").write_text("ignored")
    (root / "empty_class").mkdir()
    (root / "only_hidden").mkdir()
    _png(root / "only_hidden" / ".x.png")

    samples = discover(root)

    assert isinstance(samples, Samples)
    assert samples.root == root.resolve()
    assert samples.classes == ["cat", "dog"]
    assert samples.paths == [
        "cat/notes.txt",
        "cat/photo.png.bak",
        "cat/sub/deeper/a.jpg",
        "cat/z.png",
        "dog/d1.png",
    ]
    assert samples.labels.dtype == np.int64
    assert samples.labels.tolist() == [0, 0, 0, 0, 1]
    assert len(samples) == 5
    for rel in samples.paths:
        assert "\\" not in rel and not rel.startswith("/")
        assert (samples.root / rel).is_file()


def test_image_folder_root_given_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _two_classes(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    samples = discover("data")
    assert samples.root == (tmp_path / "data").resolve()
    assert samples.paths == ["cat/a.png", "cat/b.png", "dog/c.png"]


def test_image_folder_symlinks_are_followed_wherever_they_lead(tmp_path: Path) -> None:
    """Links to files and folders are followed as torchvision's ImageFolder follows them
    (a link farm of dataset splits is a common layout); loops and broken links are not,
    and are reported with why."""
    root = _two_classes(tmp_path / "data")
    outside = _png(tmp_path / "elsewhere" / "o.png")
    os.symlink(root / "cat" / "a.png", root / "dog" / "link_inside.png")
    os.symlink(outside, root / "dog" / "link_outside.png")
    os.symlink(tmp_path / "elsewhere", root / "dog" / "linked_dir")
    os.symlink(tmp_path / "nowhere.png", root / "cat" / "broken.png")
    os.symlink(root / "cat" / "self.png", root / "cat" / "self.png")  # points to itself
    os.symlink(tmp_path / "elsewhere", root / "bird")  # a class folder that is a link
    os.symlink(root, root / "dog" / "to_root")  # loops: the dataset folder,
    os.symlink(root / "dog", root / "dog" / "to_dog")  # the folder holding the link,
    os.symlink(tmp_path, root / "cat" / "to_above")  # a folder above the dataset
    os.symlink(root, root / "all")  # and a class folder linked to the dataset folder
    samples = discover(root)
    assert samples.paths == [
        "bird/o.png", "cat/a.png", "cat/b.png", "dog/c.png", "dog/link_inside.png",
        "dog/link_outside.png", "dog/linked_dir/o.png",
    ]
    assert samples.classes == ["bird", "cat", "dog"]
    assert samples.labels.tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert samples.not_followed == [
        ("all", LINK_LOOP), ("cat/broken.png", LINK_BROKEN), ("cat/self.png", LINK_BROKEN),
        ("cat/to_above", LINK_LOOP), ("dog/to_dog", LINK_LOOP), ("dog/to_root", LINK_LOOP),
    ]


def test_a_tree_of_links_is_a_dataset(tmp_path: Path) -> None:
    """A tree of symbolic links to images elsewhere (a link farm, or what `apply
    --symlink` writes) is scanned like the images themselves."""
    source = _two_classes(tmp_path / "data")
    links = tmp_path / "links"
    for name in ("cat", "dog"):
        (links / name).mkdir(parents=True)
        for image in (source / name).iterdir():
            os.symlink(image, links / name / image.name)
    samples = discover(links)
    assert samples.paths == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert samples.root == links.resolve()
    assert samples.not_followed == []


def test_a_folder_of_broken_links_only_says_why_it_has_no_images(tmp_path: Path) -> None:
    links = tmp_path / "links"
    for name in ("cat", "dog"):
        (links / name).mkdir(parents=True)
        os.symlink(tmp_path / "gone" / f"{name}.png", links / name / f"{name}.png")
    with pytest.raises(NoisyCleanError, match="2 symbolic link.*not followed.*broken"):
        discover(links)


def test_image_extensions_constant() -> None:
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".pnm"} <= IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def test_classes_selection_and_order(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    _png(root / "bird" / "e.png")
    samples = discover(root, classes=["dog", "cat"])
    assert samples.classes == ["dog", "cat"]
    assert samples.paths == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert samples.labels.tolist() == [1, 1, 0]


def test_classes_unknown_name(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    with pytest.raises(NoisyCleanError, match="class 'horse' is not a folder under") as info:
        discover(root, classes=["cat", "horse"])
    assert str(root.resolve()) in str(info.value)


def test_classes_unknown_name_says_which_folder_has_it_with_spaces(tmp_path: Path) -> None:
    """A folder ``' sp '`` cannot be chosen by ``--classes`` (which strips the spaces
    around each name): the error for ``sp`` says so, and what to do."""
    root = _two_classes(tmp_path / "data")
    _png(root / " sp " / "e.png")
    with pytest.raises(NoisyCleanError) as info:
        discover(root, classes=["cat", "sp"])
    assert str(info.value).endswith(
        "(folders found: ' sp ', 'cat', 'dog'); ' sp ' is that name with spaces around it, "
        "which --classes strips: rename the folder to choose it")
    with pytest.raises(NoisyCleanError) as info:
        discover(root, classes=["cat", "horse"])
    assert str(info.value).endswith("(folders found: ' sp ', 'cat', 'dog')")


def test_classes_listed_twice(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    with pytest.raises(NoisyCleanError, match="'cat' is listed more than once"):
        discover(root, classes=["cat", "dog", "cat"])


# --------------------------------------------------------------------------- common errors


def test_root_missing(tmp_path: Path) -> None:
    with pytest.raises(NoisyCleanError, match="does not exist") as info:
        discover(tmp_path / "nope")
    assert "nope" in str(info.value)


def test_root_is_a_file(tmp_path: Path) -> None:
    file = _png(tmp_path / "x.png")
    with pytest.raises(NoisyCleanError, match="is not a folder") as info:
        discover(file)
    assert "x.png" in str(info.value)


def test_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    _png(root / "loose.png")
    with pytest.raises(NoisyCleanError, match="no images found under") as info:
        discover(root)
    assert "<class>/<image> or a --labels CSV" in str(info.value)


def test_single_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "cat" / "a.png")
    _png(root / "cat" / "b.png")
    (root / "dog").mkdir()
    with pytest.raises(NoisyCleanError, match=r"only one class \('cat'\) found"):
        discover(root)


# --------------------------------------------------------------------------- manifest


def test_manifest_happy_path(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "imgs" / "b.png")
    _png(root / "imgs" / "a.png")
    _png(root / "c.png")
    abs_path = (root / "imgs" / "a.png").resolve()
    csv = _csv(
        tmp_path / "labels.csv",
        f"id,path,label,extra\n1,imgs/../imgs/b.png,dog,x\n2,{abs_path},cat,y\n3,./c.png,dog,z\n",
    )
    samples = discover(root, labels_csv=csv)
    assert samples.classes == ["cat", "dog"]
    assert samples.paths == ["c.png", "imgs/a.png", "imgs/b.png"]
    assert samples.labels.tolist() == [1, 0, 1]
    assert samples.root == root.resolve()


def test_manifest_with_classes_order(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,x\ndog/c.png,y\n")
    samples = discover(root, labels_csv=csv, classes=["y", "x"])
    assert samples.classes == ["y", "x"]
    assert samples.paths == ["cat/a.png", "dog/c.png"]
    assert samples.labels.tolist() == [1, 0]


def test_manifest_label_not_in_classes(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,x\ndog/c.png,zebra\n")
    with pytest.raises(NoisyCleanError, match="'zebra'") as info:
        discover(root, labels_csv=csv, classes=["x", "y"])
    assert "not in the given classes" in str(info.value)
    assert "(first on line 3)" in str(info.value)


def test_manifest_missing_columns(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "file,target\ncat/a.png,cat\n")
    with pytest.raises(NoisyCleanError) as info:
        discover(root, labels_csv=csv)
    message = str(info.value)
    assert "'path'" in message and "'label'" in message
    assert "'file'" in message and "'target'" in message  # the columns that were found


def test_manifest_missing_one_column(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,klass\ncat/a.png,cat\n")
    with pytest.raises(NoisyCleanError, match=r"lacks column\(s\) 'label'"):
        discover(root, labels_csv=csv)


def test_manifest_nonexistent_path(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\ncat/ghost.png,dog\n")
    with pytest.raises(NoisyCleanError, match="do not exist") as info:
        discover(root, labels_csv=csv)
    assert "'cat/ghost.png'" in str(info.value)
    assert "cat/a.png" not in str(info.value)


@pytest.mark.skipif(os.name == "nt", reason="'\\' separates folders on Windows")
def test_manifest_windows_separators_get_a_hint(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat\\a.png,cat\n")
    with pytest.raises(NoisyCleanError, match="do not exist") as info:
        discover(root, labels_csv=csv)
    assert str(info.value).endswith("folders are separated by '/' (on this system a '\\' is "
                                    "part of a file name): write the paths with '/'")
    plain = _csv(tmp_path / "p.csv", "path,label\ncat/ghost.png,cat\n")
    with pytest.raises(NoisyCleanError) as info:
        discover(root, labels_csv=plain)
    assert "separated by" not in str(info.value)


def test_manifest_many_nonexistent_paths(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    rows = "".join(f"missing/{i}.png,cat\n" for i in range(12))
    csv = _csv(tmp_path / "l.csv", "path,label\n" + rows)
    with pytest.raises(NoisyCleanError) as info:
        discover(root, labels_csv=csv)
    message = str(info.value)
    assert message.startswith("12 path(s)")
    assert "'missing/0.png'" in message and "and 7 more" in message
    assert "'missing/11.png'" not in message


def test_manifest_path_outside_root_dotdot(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    _png(tmp_path / "outside.png")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\n../outside.png,dog\n")
    with pytest.raises(NoisyCleanError, match="outside the dataset root") as info:
        discover(root, labels_csv=csv)
    assert "'../outside.png'" in str(info.value)


def test_manifest_absolute_path_outside_root(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    other = _png(tmp_path / "other" / "o.png").resolve()
    csv = _csv(tmp_path / "l.csv", f"path,label\ncat/a.png,cat\n{other},dog\n")
    with pytest.raises(NoisyCleanError, match="outside the dataset root") as info:
        discover(root, labels_csv=csv)
    assert str(other) in str(info.value)


def test_manifest_symlink_pointing_outside_root_is_followed(tmp_path: Path) -> None:
    """A relative path is taken as spelled under the root, so a link in it may lead
    anywhere (as in an ImageFolder tree); `..` out of the root is still refused."""
    root = _two_classes(tmp_path / "data")
    other = _png(tmp_path / "other" / "o.png")
    os.symlink(other, root / "cat" / "linked.png")
    os.symlink(tmp_path / "other", root / "more")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\ncat/linked.png,dog\n"
               f"more/o.png,cat\n{root}/more/./o.png,dog\n")
    with pytest.raises(NoisyCleanError, match="more than once: 'more/o.png'"):
        discover(root, labels_csv=csv)
    _csv(csv, "path,label\ncat/a.png,cat\ncat/linked.png,dog\nmore/o.png,cat\n")
    samples = discover(root, labels_csv=csv)
    assert samples.paths == ["cat/a.png", "cat/linked.png", "more/o.png"]
    assert samples.labels.tolist() == [0, 1, 0]
    _csv(csv, "path,label\ncat/a.png,cat\nmore/../../other/o.png,dog\n")
    with pytest.raises(NoisyCleanError, match="outside the dataset root"):
        discover(root, labels_csv=csv)


def test_manifest_duplicate_paths(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(
        tmp_path / "l.csv",
        "path,label\ncat/a.png,cat\ndog/c.png,dog\n./cat/a.png,dog\n",
    )
    with pytest.raises(NoisyCleanError, match="more than once") as info:
        discover(root, labels_csv=csv)
    message = str(info.value)
    assert "'cat/a.png'" in message
    assert "(lines 2, 4)" in message


def test_manifest_root_through_symlink(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    link = tmp_path / "link"
    os.symlink(root, link)
    csv = _csv(tmp_path / "l.csv", f"path,label\n{link}/cat/a.png,cat\ndog/c.png,dog\n")
    samples = discover(link, labels_csv=csv)
    assert samples.root == root.resolve()
    assert samples.paths == ["cat/a.png", "dog/c.png"]


def test_manifest_duplicate_with_dotdot(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\ndog/../cat/a.png,dog\n")
    with pytest.raises(NoisyCleanError, match="more than once: 'cat/a.png'"):
        discover(root, labels_csv=csv)


def test_manifest_duplicate_via_absolute_path(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    absolute = (root / "dog" / "c.png").resolve()
    csv = _csv(tmp_path / "l.csv", f"path,label\ncat/a.png,cat\ndog/c.png,dog\n{absolute},cat\n")
    with pytest.raises(NoisyCleanError, match="'dog/c.png'"):
        discover(root, labels_csv=csv)


def test_manifest_empty_label(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\ndog/c.png,\n")
    with pytest.raises(NoisyCleanError, match="empty 'label' on line 3$"):
        discover(root, labels_csv=csv)


def test_manifest_empty_path(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\n  ,cat\ndog/c.png,dog\n")
    with pytest.raises(NoisyCleanError, match="empty 'path' on line 2$"):
        discover(root, labels_csv=csv)


def test_manifest_empty_csv(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "")
    with pytest.raises(NoisyCleanError, match="is empty") as info:
        discover(root, labels_csv=csv)
    assert "l.csv" in str(info.value)


def test_manifest_header_only(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\n")
    with pytest.raises(NoisyCleanError, match="no rows"):
        discover(root, labels_csv=csv)


def test_manifest_csv_missing(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    with pytest.raises(NoisyCleanError, match="does not exist") as info:
        discover(root, labels_csv=tmp_path / "absent.csv")
    assert "absent.csv" in str(info.value)


def test_manifest_csv_is_a_folder(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    with pytest.raises(NoisyCleanError, match="is a folder"):
        discover(root, labels_csv=root)


def test_manifest_csv_not_text(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = tmp_path / "l.csv"
    csv.write_bytes(b"path,label\n\xff\xfe\x00\x81bad,\x9c\n")
    with pytest.raises(NoisyCleanError, match="not a readable CSV") as info:
        discover(root, labels_csv=csv)
    assert "l.csv" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_manifest_csv_unreadable(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\ndog/c.png,dog\n")
    csv.chmod(0)
    try:
        with pytest.raises(NoisyCleanError, match="cannot read labels CSV"):
            discover(root, labels_csv=csv)
    finally:
        csv.chmod(0o644)


def test_manifest_single_class(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    csv = _csv(tmp_path / "l.csv", "path,label\ncat/a.png,cat\ndog/c.png,cat\n")
    with pytest.raises(NoisyCleanError, match=r"only one class \('cat'\)"):
        discover(root, labels_csv=csv)
