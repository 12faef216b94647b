"""Defects a user found in ``train``: sharpening that underflowed at a small temperature
(reported as a divergence, with advice to lower --lr), and unreadable --weights or
checkpoint files reported in torch's own several paragraphs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from noisyclean.errors import NoisyCleanError
from noisyclean.models import build_model
from noisyclean.torchfile import load_torch_file
from noisyclean.train.mixmatch import sharpen

from .test_train import FAST, _one_thread, _train, write_val_folder  # noqa: F401 (autouse)


def test_sharpen_at_a_small_temperature_is_finite_and_exact() -> None:
    """At T = 0.01 the powers of (0.4, 0.35, 0.25) fall below float32's normal range; the
    result must still be p^100 / sum p^100, computed here in float64 (entries below 1e-20
    may come out as 0: (0.3 / 0.5)^100 is 6.5e-23)."""
    probs = torch.tensor([[0.4, 0.35, 0.25], [0.5, 0.3, 0.2]])
    expected = probs.double().pow(100)
    expected = expected / expected.sum(dim=1, keepdim=True)
    out = sharpen(probs, 0.01)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-20)
    assert out[0, 1].item() == pytest.approx(0.875 ** 100, rel=1e-4)
    # where nothing underflows the value is the plain formula's, bit for bit
    usual = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    powered = usual.pow(2.0)
    assert torch.equal(sharpen(usual, 0.5), powered / powered.sum(dim=1, keepdim=True))


def test_dividemix_at_temperature_0_01_trains(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    result = _train(root, "--out", tmp_path / "out", "--temperature", "0.01", *FAST)
    assert result.exit_code == 0, result.output
    assert "diverged" not in result.output


def _files(tmp_path: Path) -> dict[str, Path]:
    """Files a user might give as --weights or find as checkpoint.pt."""
    files = {name: tmp_path / f"{name}.pt"
             for name in ("empty", "text", "cut", "pickle", "prose", "png", "cut-late")}
    files["empty"].write_bytes(b"")
    files["text"].write_text("print('hello')\n")
    # text and an image that pickle reads as opcodes: its errors were "101", "pop from
    # empty list"
    files["prose"].write_text("hello this is not a torch file\n")
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    torch.save({"w": torch.zeros(64)}, tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    files["cut"].write_bytes(whole[: len(whole) // 2])
    files["pickle"].write_bytes(pickle.dumps({"w": 1}, protocol=4))
    torch.save({"w": torch.zeros(10_000)}, files["cut-late"])  # cut inside its tensor data
    with open(files["cut-late"], "r+b") as handle:
        handle.truncate(5_000)
    return files


def test_unreadable_torch_files_are_one_plain_line(tmp_path: Path) -> None:
    reasons = {"empty": "empty or cut short", "text": "not a file written by torch.save",
               "cut": "cut short or not a file written by torch.save",
               "pickle": "not a file written by torch.save",
               "prose": "it is not a file written by torch.save",
               "png": "it is not a file written by torch.save",
               "cut-late": "it is cut short or damaged"}
    for name, path in _files(tmp_path).items():
        with pytest.raises(NoisyCleanError) as caught:
            load_torch_file(path, "weights file")
        message = str(caught.value)
        assert message.startswith(f"cannot read weights file {path}: "), message
        assert reasons[name] in message, message
        assert "\n" not in message and "weights_only" not in message, message
    with pytest.raises(NoisyCleanError, match="it is a folder"):
        load_torch_file(tmp_path, "checkpoint")
    assert load_torch_file(tmp_path / "whole.pt", "weights file")["w"].shape == (64,)


def test_the_cli_says_why_a_weights_file_or_checkpoint_is_unreadable(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    files = _files(tmp_path)
    for name in ("empty", "text"):
        result = _train(root, "--out", tmp_path / f"w-{name}", "--weights", files[name],
                        *FAST)
        text = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "weights_only" not in text
        assert "cannot read weights file" in text
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(files["text"].read_bytes())
    result = _train(root, "--resume", run, *FAST)
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "cannot read checkpoint" in text
    assert "not a file written by torch.save" in text and "weights_only" not in text
    with pytest.raises(NoisyCleanError, match="empty or cut short"):
        build_model("small-cnn", 3, weights=str(files["empty"]))


def test_unreadable_validation_files_are_listed_in_skipped_csv(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The log said "see skipped.csv" for --val files that could not be read, and the file
    did not list them: it now does, after the training set's, marked ``--val:``."""
    root, _ = digits_folder
    val = tmp_path / "val"
    write_val_folder(val, per_class=3)
    (val / "0" / "zero.png").write_bytes(b"")
    out = tmp_path / "out"
    result = _train(root, "--out", out, "--val", val, "--method", "standard", *FAST)
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(out / "skipped.csv", dtype=str)
    rows = skipped[skipped["path"] == (val / "0" / "zero.png").as_posix()]
    assert len(rows) == 1, skipped
    assert rows["reason"].iloc[0].startswith("--val: ")
    assert not skipped["path"].str.startswith(str(root)).any()


def test_an_output_folder_that_is_not_utf8_is_refused_up_front(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Such an --out crashed when summary.json was written, after the whole training."""
    root, _ = digits_folder
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    result = _train(root, "--out", out, "--method", "standard", *FAST)
    assert result.exit_code == 2, result.output
    assert "is a path that is not valid UTF-8" in " ".join(result.output.split())
    assert not os.path.exists(os.fsencode(out))


def test_an_output_folder_inside_the_validation_folder_is_refused(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The --val folder is an ImageFolder as the training set is: outputs written there
    would be read as a class of it by the next run."""
    root, _ = digits_folder
    val = tmp_path / "val"
    write_val_folder(val, per_class=3)
    out = val / "out"
    result = _train(root, "--out", out, "--val", val, "--method", "standard", *FAST)
    assert result.exit_code == 2, result.output
    assert f"lies inside the dataset folder {val}" in " ".join(result.output.split())
    assert not out.exists()
