"""``scan --epochs 0 --weights FILE``: scoring with a network trained elsewhere, as loaded:
a real ``train`` run's ``net1.pt`` scoring a digits folder through the CLI, the run's
classes and normalisation taken from its ``summary.json``, and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from noisyclean.as_loaded import TrainedRun, agreement_text, trained_run
from noisyclean.cli import app

runner = CliRunner()
NET = ["--width", "8"]


def _run(*args: object) -> object:
    return runner.invoke(app, [*map(str, args)])


@pytest.fixture
def trained(digits_folder: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, Path]:
    """The digits folder and a ``train --method standard`` run's ``net1.pt`` on it."""
    root, _ = digits_folder
    out = tmp_path / "run"
    result = _run("train", root, "--out", out, "--method", "standard", "--epochs", "20",
                  "--batch-size", "16", "--quiet", *NET)
    assert result.exit_code == 0, result.output
    return root, out / "net1.pt"


def test_scan_with_a_trained_network_as_loaded(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, weights = trained
    out = tmp_path / "scan"
    result = _run("scan", root, "--out", out, "--epochs", "0", "--weights", weights, *NET)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no training (--epochs 0: the --weights network as loaded)" in text
    summary = json.loads((out / "summary.json").read_text())
    training = summary["training"]
    assert training["epochs"] == [] and training["final_train_acc"] is None
    # the run's own normalisation, not ImageNet's, and the run named
    run = json.loads((weights.parent / "summary.json").read_text())
    assert summary["normalisation"] == run["normalisation"]
    assert training["weights_run"] == str(weights.parent / "summary.json")
    # the agreement is that of the table's predicted classes with the given labels
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    agreement = float((scores["predicted"] == scores["label"]).mean())
    assert training["agreement_with_given_labels"] == pytest.approx(agreement)
    assert f"agrees with {agreement:.1%} of the given labels" in text
    assert 0.5 < agreement <= 1.0  # a network trained on these very labels
    # the same network, the same images as normalised in its run: the run's own table's
    # predicted classes, image by image
    own = pd.read_csv(weights.parent / "scores.csv", dtype=str, keep_default_na=False)
    assert (dict(zip(scores["path"], scores["predicted"], strict=True))
            == dict(zip(own["path"], own["predicted"], strict=True)))
    assert summary["settings"]["correction"] == "none"
    assert len(scores) == 120 and scores["clean_prob"].astype(float).between(0, 1).all()
    # the network as loaded: scoring twice gives the same table
    again = _run("scan", root, "--out", tmp_path / "again", "--epochs", "0", "--weights",
                 weights, "--quiet", *NET)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "scores.csv").read_bytes() == (out / "scores.csv").read_bytes()
    # options of the warm-up are said to do nothing, given at their defaults too
    warned = _run("scan", root, "--out", tmp_path / "w", "--epochs", "0", "--weights", weights,
                  "--batch-size", "64", "--lr", "0.1", "--no-augment", "--quiet", *NET)
    assert warned.exit_code == 0, warned.output
    assert ("--batch-size, --lr, --no-augment do not apply to --epochs 0: ignored"
            in " ".join(warned.output.split()))


def test_a_network_shown_its_images_otherwise_than_it_learnt_them_is_warned_of(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """The run that wrote --weights recorded its side and resize mode: a scan with another
    of either says which to give; one with the same says nothing."""
    root, weights = trained
    size = json.loads((weights.parent / "summary.json").read_text())["image_size"]
    other = _run("scan", root, "--out", tmp_path / "o", "--epochs", "0", "--weights", weights,
                 "--image-size", size + 8, "--resize", "pad", "--quiet", *NET)
    assert other.exit_code == 0, other.output
    assert (f"trained its images with --image-size {size} and --resize crop, and these come "
            f"at --image-size {size + 8} --resize pad; give --image-size {size} --resize crop"
            in " ".join(other.output.split()))
    same = _run("scan", root, "--out", tmp_path / "s", "--epochs", "0", "--weights", weights,
                "--quiet", *NET)
    assert same.exit_code == 0 and "trained its images with" not in same.output


def test_what_epochs_0_refuses(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, weights = trained
    out = tmp_path / "scan"

    def refused(*args: object) -> str:
        result = _run("scan", root, "--out", out, "--epochs", "0", *args, *NET)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        return " ".join(result.output.split())

    assert "--epochs 0 needs a --weights file" in refused()
    assert "--weights DEFAULT is not a file" in refused("--weights", "DEFAULT")
    for option, said in ((["--folds", "2"], "--epochs 0 and --folds"),
                         (["--networks", "2"], "--networks must be 1"),
                         (["--signal", "aum"], "--epochs 0 and --signal aum"),
                         (["--low-res-epochs", "2"], "--low-res-epochs and --mid-res-epochs")):
        assert said in refused("--weights", weights, *option)
    # the classes of the run's summary.json, in another order
    text = refused("--weights", weights, "--classes", "7,1,0")
    assert "trained on the classes 0, 1, 7" in text and "this scan's are 7, 1, 0" in text
    # without the run's summary.json, a network of 3 classes for a 2-class scan: its head
    # would be left at random weights
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(weights, alone / "net1.pt")
    text = refused("--weights", alone / "net1.pt", "--classes", "0,1")
    assert "not loaded, left at random weights" in text and "every weight must come from" in text
    assert not out.exists()


def _scan_by_imagenet_statistics(root: Path, weights: Path, out: Path) -> str:
    """Score ``root`` with ``weights`` as loaded, check that the images took ImageNet's
    statistics and no run was named, and return the output as one line."""
    result = _run("scan", root, "--out", out, "--epochs", "0", "--weights", weights,
                  "--quiet", *NET)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["normalisation"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert summary["training"]["weights_run"] is None
    return " ".join(result.output.split())


def test_a_weights_file_without_its_run_uses_imagenet_statistics(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """No summary.json beside the file: nothing says how its images were normalised, and
    the scan normalises as for any --weights (ImageNet's statistics); it still scores."""
    root, weights = trained
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(weights, alone / "net1.pt")
    _scan_by_imagenet_statistics(root, alone / "net1.pt", tmp_path / "scan")


def test_a_file_its_runs_summary_does_not_name_is_not_taken_for_the_runs(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """The run's summary names the networks it wrote; another file in the run's folder (a
    renamed copy here, an ImageNet state dict dropped there alike) is not taken for the
    run's network: ImageNet's statistics, no run named, and a warning that says why."""
    root, weights = trained
    run = json.loads((weights.parent / "summary.json").read_text())
    assert run["weights_files"] == ["net1.pt"]  # --method standard: one network
    renamed = weights.parent / "renamed.pt"
    shutil.copy(weights, renamed)
    text = _scan_by_imagenet_statistics(root, renamed, tmp_path / "scan")
    assert (f"--weights {renamed} lies beside a run's summary ({weights.parent / 'summary.json'})"
            " that does not name it" in text)
    assert "pass the net<k>.pt file it wrote, or a link to it" in text


@pytest.mark.parametrize("method", ["coteaching", "dividemix"])
def test_two_networks_from_one_whole_weights_file_differ(
    trained: tuple[Path, Path], tmp_path: Path, method: str
) -> None:
    """A run's net1.pt fills a whole network, head included: both networks of co-teaching
    loaded it and stayed the same bit for bit, each choosing the same samples for the
    other. The second gets a head of its own, so they differ, and the log says why."""
    root, weights = trained
    out = tmp_path / method
    result = _run("train", root, "--out", out, "--method", method, "--epochs", "3",
                  "--warmup-epochs", "1", "--batch-size", "16", "--weights", weights, *NET)
    assert result.exit_code == 0, result.output
    assert "network 2 starts from --weights with a classifier head of its own" in " ".join(
        result.output.split())
    first, second = (torch.load(out / f"net{k}.pt", weights_only=True) for k in (1, 2))
    assert not all(torch.equal(first[key], second[key]) for key in first)


def test_training_from_a_runs_weights_normalises_as_that_run(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """A warm-up (scan) or a training (train) that starts from a noisyclean run's network
    feeds it images normalised as in that run, which its first layer was trained on, not by
    ImageNet's statistics as for other weights. The copy of the images is another folder
    with other statistics, so the run's values cannot come from the images themselves."""
    root, weights = trained
    run = json.loads((weights.parent / "summary.json").read_text())
    darker = tmp_path / "darker"
    for image in root.rglob("*.png"):
        target = darker / image.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(Image.open(image).convert("RGB")) // 2).save(target)
    own = _run("scan", darker, "--out", tmp_path / "own", "--epochs", "1", "--quiet", *NET)
    assert own.exit_code == 0, own.output
    own_mean = json.loads((tmp_path / "own" / "summary.json").read_text())["normalisation"]
    assert own_mean["mean"] != pytest.approx(run["normalisation"]["mean"], abs=0.05)

    scan = _run("scan", darker, "--out", tmp_path / "scan", "--epochs", "1", "--weights",
                weights, "--quiet", *NET)
    assert scan.exit_code == 0, scan.output
    trained_again = _run("train", darker, "--out", tmp_path / "train", "--method", "standard",
                         "--epochs", "1", "--batch-size", "16", "--weights", weights,
                         "--quiet", *NET)
    assert trained_again.exit_code == 0, trained_again.output
    for out in ("scan", "train"):
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        assert summary["normalisation"] == run["normalisation"], out
        assert summary["training"]["weights_run"] == str(weights.parent / "summary.json"), out
    assert "images normalised as in the run that wrote --weights" in " ".join(
        _run("scan", darker, "--out", tmp_path / "said", "--epochs", "1", "--weights", weights,
             *NET).output.split())
    # a link to the run's file names that run, wherever the link lies
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "summary.json").write_text(json.dumps(
        {"classes": ["x"], "normalisation": {"mean": [0.1] * 3, "std": [0.9] * 3}}))
    (elsewhere / "best.pt").symlink_to(weights)
    linked = _run("scan", darker, "--out", tmp_path / "linked", "--epochs", "1", "--weights",
                  elsewhere / "best.pt", "--quiet", *NET)
    assert linked.exit_code == 0, linked.output
    summary = json.loads((tmp_path / "linked" / "summary.json").read_text())
    assert summary["normalisation"] == run["normalisation"]


def test_trained_run_reads_a_runs_summary_or_nothing(tmp_path: Path) -> None:
    weights = tmp_path / "net1.pt"
    torch.save({}, weights)
    assert trained_run(weights) is None  # no summary.json
    summary = tmp_path / "summary.json"
    for garbled in ("{", "[]", '{"classes": ["a"]}', '{"classes": ["a", "b"], "normalisation": '
                    '{"mean": [0.5], "std": [0.2]}}', '{"classes": "ab", "normalisation": '
                    '{"mean": [0.5], "std": [0.2]}}', '{"classes": ["a", "b"], "normalisation":'
                    ' {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0, 0.2]}}'):
        summary.write_text(garbled)
        assert trained_run(weights) is None, garbled
    run = {"classes": ["a", "b"], "normalisation": {"mean": [0.5, 0.4, 0.3],
                                                   "std": [0.2, 0.2, 0.25]}}
    found_parts = (["a", "b"], ([0.5, 0.4, 0.3], [0.2, 0.2, 0.25]))
    found = TrainedRun(summary, *found_parts)
    other = tmp_path / "resnet18.pth"
    torch.save({}, other)
    said: list[str] = []
    # a summary from before train named its files: the net<k>.pt names it wrote
    summary.write_text(json.dumps(run))
    assert trained_run(weights) == found
    assert trained_run(other, said.append) is None and len(said) == 1
    # a summary that names its files: those, and no other
    summary.write_text(json.dumps({**run, "weights_files": ["net2.pt", "net1.pt"]}))
    assert trained_run(weights) == found
    summary.write_text(json.dumps({**run, "weights_files": ["net2.pt"]}))
    assert trained_run(weights, said.append) is None
    assert said[-1].startswith(f"--weights {weights} lies beside a run's summary ({summary})")
    assert len(said) == 2
    # the side and resize mode it trained at, where recorded; a run from before --resize
    # cropped
    summary.write_text(json.dumps({**run, "image_size": 32, "settings": {"seed": 0}}))
    assert trained_run(weights) == TrainedRun(summary, *found_parts, 32, "crop")
    summary.write_text(json.dumps({**run, "image_size": True, "settings": {"resize": "pad"}}))
    assert trained_run(weights) == TrainedRun(summary, *found_parts, None, "pad")
    # not a run's summary: nothing said
    summary.write_text("{")
    assert trained_run(other, said.append) is None and len(said) == 2


def test_agreement_warns_at_no_better_than_the_most_common_class() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    # predicted 0, 1, 1, 0
    rate, line, warning = agreement_text(probs, np.array([0, 1, 1, 0]), ["a", "b"])
    assert (rate, warning) == (1.0, None) and "agrees with 100.0%" in line
    # given 0, 0, 0, 1: agrees on 1 of 4; the most common class is 3 of 4
    rate, _, warning = agreement_text(probs, np.array([0, 0, 0, 1]), ["a", "b"])
    assert rate == 0.25 and warning is not None
    assert "only 25.0% of the given labels" in warning and "(75.0%)" in warning
    assert "in this order (a, b)?" in warning
