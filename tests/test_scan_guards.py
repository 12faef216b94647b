"""What a scan refuses or cleans up, with one clear message: an output folder inside the
dataset, an earlier scan's files in a reused output folder, a warm-up that diverges, a
torchvision model that cannot run at the image size, a file that cannot be written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.errors import NoisyCleanError
from noisyclean.models import build_model, check_input_size
from noisyclean.outputs.write import DERIVED_OUTPUTS, atomic_write_bytes
from noisyclean.scanning import relabel_reach_warning

from .conftest import write_digits_folder

runner = CliRunner()
FAST = ["--epochs", "2", "--width", "8", "--loss-history", "2", "--quiet"]


def _scan(*args: object) -> object:
    return runner.invoke(app, ["scan", *map(str, args)])


def _clear_failure(result: object, *needles: str) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in text


def test_an_output_folder_inside_the_dataset_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It would be read as a class (or write into one) by the next run; the default
    output folder counts too when the scan runs from inside the dataset folder."""
    root, _ = digits_folder
    before = sorted(p.name for p in root.iterdir())
    _clear_failure(_scan(root, "--out", root / "run", *FAST), "inside the dataset folder")
    _clear_failure(_scan(root, "--out", root / "0", *FAST), "inside the dataset folder")
    monkeypatch.chdir(root)
    _clear_failure(_scan(".", *FAST), "inside the dataset folder")
    assert sorted(p.name for p in root.iterdir()) == before
    # a manifest lists its images, so an output folder under its root is harmless
    manifest = tmp_path / "labels.csv"
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    manifest.write_text("path,label\n" + "".join(f"{p},{p.split('/')[0]}\n" for p in paths))
    result = _scan(".", "--labels", manifest, "--out", "run", *FAST)
    assert result.exit_code == 0, result.output


def test_a_new_scan_removes_the_files_an_earlier_one_left(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """pred_probs.npy, report.html, evaluation.json and the exports describe the scan they
    came from; a new scan into the same folder must not leave them next to its own."""
    root, _ = digits_folder
    out = tmp_path / "out"
    assert _scan(root, "--out", out, "--save-probs", *FAST).exit_code == 0
    first = np.load(out / "pred_probs.npy")
    for name in DERIVED_OUTPUTS:
        if name != "pred_probs.npy":
            (out / name).write_text("from an earlier scan")
    (out / "notes.txt").write_text("the user's own")
    # --save-probs again: a new pred_probs.npy (another seed), the rest removed
    assert _scan(root, "--out", out, "--save-probs", "--seed", "1", *FAST).exit_code == 0
    assert (out / "pred_probs.npy").is_file()
    assert not np.array_equal(np.load(out / "pred_probs.npy"), first)
    assert [n for n in DERIVED_OUTPUTS if (out / n).exists()] == ["pred_probs.npy"]
    # without --save-probs the old probabilities go too; files of other names stay
    result = _scan(root, "--out", out, "--width", "8", "--epochs", "2", "--loss-history", "2")
    assert result.exit_code == 0, result.output
    assert "removed pred_probs.npy" in " ".join(result.output.split())
    assert not any((out / n).exists() for n in DERIVED_OUTPUTS)
    assert (out / "notes.txt").read_text() == "the user's own"
    assert (out / "scores.csv").is_file()


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "noisy-digits"


@pytest.mark.parametrize("example,options", [
    (False, ["--lr", "1e6", *FAST]),
    # the bundled example diverges by the epoch where the forward correction (or the late
    # loss) reads the training softmax, before any scoring pass
    (True, ["--lr", "1e6", "--epochs", "2", "--width", "8", "--quiet"]),
    (True, ["--lr", "1e6", "--epochs", "2", "--width", "8", "--quiet", "--correction", "none",
            "--late-loss", "auto"]),
])
def test_a_diverging_warm_up_is_one_clear_error(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, example: bool,
    options: list[str],
) -> None:
    root = EXAMPLE if example else digits_folder[0]
    _clear_failure(_scan(root, "--out", tmp_path / "o", *options), "diverged", "lower --lr")
    assert not (tmp_path / "o" / "scores.csv").exists()


def test_a_torchvision_model_too_big_for_the_images_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """alexnet's pooling cannot run on 16 px images: one message naming the model and the
    size, before any decoding, and torch's random state untouched by the check."""
    root, _ = digits_folder
    _clear_failure(_scan(root, "--out", tmp_path / "o", "--model", "alexnet", *FAST),
                   "--model alexnet cannot run on 16x16 px images", "--image-size")
    state = torch.random.get_rng_state()
    with pytest.raises(NoisyCleanError, match="vit_b_16 cannot run on 32x32"):
        check_input_size("vit_b_16", 3, 32)
    check_input_size("resnet18", 3, 32)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_torchvision_model_too_big_for_the_resized_epochs_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """alexnet runs at 64 px but not at the 32 px of --low-res-epochs nor at the 48 px of
    --mid-res-epochs: one line naming the option, before any training (it was a
    traceback from the first resized step)."""
    root, _ = digits_folder
    for option, side in (("--low-res-epochs", 32), ("--mid-res-epochs", 48)):
        out = tmp_path / option.strip("-")
        result = _scan(root, "--out", out, "--model", "alexnet", "--image-size", "64",
                       option, "1", "--epochs", "1", "--quiet")
        _clear_failure(result, f"--model alexnet cannot run on {side}x{side} px images, the "
                       f"side of the {option} epochs", f"set {option} 0")
        assert not out.exists()


def test_googlenet_trains_on_its_main_head() -> None:
    """GoogLeNet returns its auxiliary heads' logits too in training mode; it is built
    without them, so a training step gets one row of logits per image."""
    check_input_size("googlenet", 3, 32)
    model = build_model("googlenet", 3).train()
    out = model(torch.zeros(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)


def test_a_file_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "scores.csv").mkdir()
    with pytest.raises(NoisyCleanError, match="cannot write .*scores.csv"):
        atomic_write_bytes(tmp_path / "scores.csv", b"path,label\n")
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]  # no temporary file left
    with pytest.raises(NoisyCleanError, match="there is no folder .*missing; create it first"):
        atomic_write_bytes(tmp_path / "missing" / "x.csv", b"")


def test_links_are_followed_and_loops_listed_in_skipped_csv(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A link to an image outside the dataset is scanned; a link to a folder above the
    dataset (a loop) is not followed and is listed in skipped.csv with why."""
    root, _ = digits_folder
    outside = tmp_path / "outside.png"
    outside.write_bytes(next(root.rglob("*.png")).read_bytes())
    os.symlink(outside, root / "0" / "link_out.png")
    os.symlink(tmp_path, root / "0" / "link_dir")
    out = tmp_path / "out"
    result = _scan(root, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["path"].tolist() == ["0/link_dir"]
    assert skipped["reason"].str.contains("a loop; not followed").all()
    assert "0/link_out.png" in pd.read_csv(out / "scores.csv")["path"].tolist()
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts["found"] == 122 and counts["used"] == 121 and counts["skipped"] == 1


def test_a_link_farm_scans_applies_and_rescans(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A dataset made of symbolic links to images elsewhere (class folders linked too)
    scans like the images; `apply --symlink` writes a tree of links that scans again."""
    root, _ = digits_folder
    farm = tmp_path / "farm"
    classes = sorted(p.name for p in root.iterdir())
    for name in classes[:-1]:
        (farm / name).mkdir(parents=True)
        for image in (root / name).iterdir():
            os.symlink(image, farm / name / image.name)
    os.symlink(root / classes[-1], farm / classes[-1])  # a class folder that is a link
    direct, linked = tmp_path / "direct", tmp_path / "linked"
    assert _scan(root, "--out", direct, *FAST).exit_code == 0
    result = _scan(farm, "--out", linked, *FAST)
    assert result.exit_code == 0, result.output
    # the same images, the same scores, byte for byte
    assert (linked / "scores.csv").read_bytes() == (direct / "scores.csv").read_bytes()
    assert pd.read_csv(linked / "skipped.csv").empty
    clean = tmp_path / "clean"
    result = runner.invoke(app, ["apply", str(linked), "--to", str(clean), "--symlink"])
    assert result.exit_code == 0, result.output
    links = [p for p in clean.rglob("*.png")]
    assert len(links) == 120 and all(p.is_symlink() for p in links)
    assert {p.resolve().parent.parent for p in links} == {root.resolve()}
    result = _scan(clean, "--out", tmp_path / "again", *FAST)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "again" / "scores.csv")) == 120


def test_a_weights_file_for_other_classes_is_said_once(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A small-cnn state dict saved for 5 classes, given to a scan of the digits' classes:
    the backbone loads, the head cannot and starts from random weights. The scan says so
    once, though each of its two networks meets it, --quiet or not."""
    root, _ = digits_folder
    torch.save(build_model("small-cnn", 5, width=8).state_dict(), tmp_path / "five.pt")
    result = _scan(root, "--out", tmp_path / "out", "--weights", tmp_path / "five.pt",
                   "--networks", "2", *FAST)
    assert result.exit_code == 0, result.output
    # (a warm-up this short may draw other warnings, of its estimate of wrong labels)
    lines = [line for line in result.output.splitlines()
             if line.startswith("warning:") and "random weights" in line]
    assert len(lines) == 1, result.output
    assert "classifier.weight (file 5x32, network " in lines[0]
    assert "left at random weights" in lines[0]


def test_the_penalty_under_the_relabel_threshold_is_said(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """With --penalty a network's confidence on 3 classes settles near 0.68, under the
    default --relabel-threshold 0.7: the scan says that its flags will mostly be review."""
    root, _ = digits_folder
    result = _scan(root, "--out", tmp_path / "out", "--penalty", *FAST)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ("warning: --penalty keeps the network's confidence low (on an image it fits "
            "perfectly it settles at about 0.68 with 3 classes), under --relabel-threshold "
            "0.7") in text


def test_relabel_reach_warning_hand_cases() -> None:
    text = relabel_reach_warning(0.5, 0.7, 3, 40)
    assert text is not None
    assert "estimated 50% wrong" in text and "settles at about 0.50" in text
    assert "only 3 of the 40 flagged images are relabel" in text
    assert relabel_reach_warning(0.2, 0.7, 3, 40) is None  # settles near 0.8
    assert relabel_reach_warning(0.3, 0.7, 3, 40) is None  # at the threshold, not under
    assert relabel_reach_warning(0.35, 0.6, 3, 40) is None
    assert relabel_reach_warning(0.5, 0.7, 0, 0) is None  # nothing flagged
    assert relabel_reach_warning(0.304, 0.7, 3, 40) is None  # 0.696 shows as 0.70
    assert relabel_reach_warning(0.5, 0.7, 10, 40) is None  # a quarter are relabel
    assert relabel_reach_warning(0.5, 0.7, 9, 40) is not None
    # a network that agrees with far more labels than 1 - r: the estimate is of a network
    # not yet fitted (its probabilities spread), not of the labels
    assert relabel_reach_warning(0.5, 0.7, 3, 40, train_acc=0.61) is None
    assert relabel_reach_warning(0.5, 0.7, 3, 40, train_acc=0.59) is not None


def test_labels_too_noisy_for_the_relabel_threshold_are_said(tmp_path: Path) -> None:
    """With 90 of 200 digit labels moved to another class the network, trained on them,
    settles near 0.55 on the class of an image it fits, under the default
    --relabel-threshold 0.7: nearly every flag is review, and the scan says so, with the
    summary's counts. A threshold it reaches draws no warning."""
    root = tmp_path / "images"
    write_digits_folder(root, classes=(0, 1, 2, 3, 7), per_class=40, flip=90)
    result = _scan(root, "--out", tmp_path / "out", "--width", "8", "--batch-size", "16",
                   "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rate = summary["estimated_wrong_labels"]["rate"]
    counts = summary["counts"]
    assert rate > 0.3, rate
    text = " ".join(result.output.split())
    assert (f"warning: the labels are estimated {rate:.0%} wrong: a network trained on them "
            f"settles at about {1 - rate:.2f}") in text
    assert f"only {counts['relabel']:,} of the {counts['noisy']:,} flagged images" in text
    assert counts["relabel"] < counts["noisy"] / 2
    lower = _scan(root, "--out", tmp_path / "lower", "--width", "8", "--batch-size", "16",
                  "--quiet", "--relabel-threshold", "0.3")
    assert lower.exit_code == 0, lower.output
    assert "relabel-threshold" not in lower.output


def test_a_class_whose_files_are_all_unreadable_is_said(tmp_path: Path) -> None:
    """A class folder holding only files that cannot be decoded stays a class (an output
    of the network), which the scan says once, naming it, rather than going on silently."""
    data = tmp_path / "data"
    write_digits_folder(data, per_class=20, flip=0)
    (data / "junk").mkdir()
    for i in range(3):
        (data / "junk" / f"f{i}.png").write_text("not an image")
    result = _scan(data, "--out", tmp_path / "out", "--epochs", "1")
    assert result.exit_code == 0, result.output
    said = ("class 'junk' has no usable image: none of its 3 files could be read (see "
            "skipped.csv); it stays a class that the network learns nothing of")
    assert " ".join(result.output.split()).count(said) == 1, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "junk" in summary["classes"]
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert sorted(skipped["path"]) == [f"junk/f{i}.png" for i in range(3)]


def test_the_whole_warm_up_is_estimated_from_its_first_epoch() -> None:
    from noisyclean.scanning import warm_up_estimate

    # 6 half-resolution epochs at 1/3, 5 at 0.6, 10 full: the first took 20 s, so a full
    # one takes 60 s: 6 * 20 + 5 * 36 + 10 * 60 = 900 s
    assert warm_up_estimate(20.0, 6, 5, 21) == pytest.approx(900.0)
    assert warm_up_estimate(30.0, 0, 0, 15) == pytest.approx(450.0)
    assert warm_up_estimate(12.0, 0, 2, 4) == pytest.approx(12.0 * 2 + 20.0 * 2)


def test_a_long_warm_up_on_the_cpu_is_announced_with_the_ways_to_shorten_it(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import noisyclean.scanning as scanning

    root, _ = digits_folder
    args = ["scan", str(root), "--epochs", "3", "--width", "8", "--out", str(tmp_path / "a")]
    quick = runner.invoke(app, args)
    assert quick.exit_code == 0 and "first epoch's pace" not in quick.output
    monkeypatch.setattr(scanning, "LONG_WARM_UP_S", 0.0)  # every warm-up is long
    told = runner.invoke(app, [*args[:-1], str(tmp_path / "b")])
    text = " ".join(told.output.split())
    assert told.exit_code == 0
    assert "at its first epoch's pace the warm-up's 3 epochs take about" in text
    assert "a GPU, a smaller --image-size" not in text
    monkeypatch.setattr(scanning, "SLOW_WARM_UP_S", 0.0)
    warned = runner.invoke(app, [*args[:-1], str(tmp_path / "c")])
    assert "on the CPU; a GPU, a smaller --image-size or fewer --epochs would shorten it" in (
        " ".join(warned.output.split()))


def test_file_system_errors_are_one_line_not_a_traceback(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    long_name = tmp_path / ("x" * 300) / "o"  # one component over NAME_MAX
    result = runner.invoke(app, ["scan", str(root), "--out", str(long_name), "--epochs", "1",
                                 "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "File name too long" in result.output
    assert not isinstance(result.exception, OSError)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "dangling"),
                                 "--epochs", "1", "--quiet"])
    assert result.exit_code == 2
    assert "is a symbolic link to nothing" in " ".join(result.output.split())


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_training(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only output folder was found only when the results were written, after the
    whole warm-up (root ignores permissions, so the check itself is made to say no)."""
    import noisyclean.data.load as load
    import noisyclean.outputs.write as write

    root, _ = digits_folder
    out = tmp_path / "readonly"
    real = write.os.access
    monkeypatch.setattr(write.os, "access",
                        lambda path, mode: Path(path) != out and real(path, mode))
    decoded: list[int] = []
    monkeypatch.setattr(load, "decode_images", lambda *a, **k: decoded.append(1))
    for command in (["scan"], ["train", "--method", "standard"]):
        result = runner.invoke(app, [*command, str(root), "--out", str(out), "--epochs", "1",
                                     "--quiet"])
        assert result.exit_code == 2, result.output
        assert f"cannot write in output folder {out}" in " ".join(result.output.split())
    assert not decoded


def test_manifest_classes_that_cannot_be_folders_are_warned_of_at_the_scan(
    tmp_path: Path,
) -> None:
    """A --labels manifest may name classes 'n/a' or '.hidden'; the scan works, but the
    review's last step (apply) cannot make folders of them: said at the start, not at the
    end of the review."""
    root = tmp_path / "data"
    write_digits_folder(root, per_class=8)
    images = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    names = ["n/a", ".hidden", "ok"]
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"{p},{names[i % 3]}\n" for i, p in enumerate(images)))
    result = _scan(root, "--labels", tmp_path / "labels.csv", "--out", tmp_path / "out",
                   "--epochs", "1", "--width", "8", "--no-cache")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "class(es) '.hidden', 'n/a' of --labels cannot be folder names" in text
    clean = _scan(root, "--out", tmp_path / "o2", "--epochs", "1", "--width", "8", "--no-cache")
    assert "cannot be folder names" not in clean.output


def test_a_given_class_that_no_image_has_is_warned_of(tmp_path: Path) -> None:
    """--classes with a manifest may name a class no row has (a typo): the network gets
    an output for it, learnt from nothing; said, not silent."""
    root = tmp_path / "data"
    write_digits_folder(root, per_class=8)
    images = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"{p},{p.split('/')[0]}\n" for p in images))
    classes = sorted({p.split("/")[0] for p in images})
    result = _scan(root, "--labels", tmp_path / "labels.csv", "--classes",
                   ",".join([*classes, "sevn"]), "--out", tmp_path / "out", "--epochs", "1",
                   "--width", "8", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "class(es) 'sevn' have no image" in " ".join(result.output.split())
