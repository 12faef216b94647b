"""``noisyclean train`` end to end: the real CLI on real image folders, every output, bad
input, and a real training subprocess killed part-way and resumed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.config import TrainConfig
from noisyclean.cut import arbitrated_choice
from noisyclean.models import build_model
from noisyclean.outputs.table import SCORE_COLUMNS
from noisyclean.train.run import last_train_acc, train

from .conftest import tree_digest, write_digits_folder

runner = CliRunner()
FAST = ["--epochs", "3", "--warmup-epochs", "1", "--width", "8", "--batch-size", "16",
        "--quiet"]
STRINGS = {"label": str, "predicted": str, "suggested_label": str}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks run fastest (and undisturbed by other jobs) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_val_folder(root: Path, classes: tuple[int, ...] = (0, 1, 7), per_class: int = 10,
                     size: int = 16) -> None:
    """Correctly labelled digits not used by :func:`write_digits_folder` (from index 100)."""
    digits = load_digits()
    for c in classes:
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(digits.target == c)[100 : 100 + per_class]:
            img = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
            pil = Image.fromarray(img, mode="L").resize((size, size), Image.Resampling.BILINEAR)
            pil.convert("RGB").save(root / str(c) / f"v_{i:04d}.png")


def write_truth(path: Path, truth: dict[str, str]) -> Path:
    path.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in truth.items()))
    return path


def _train(*args: object) -> object:
    return runner.invoke(app, ["train", *map(str, args)])


def test_dividemix_writes_every_output(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    val = tmp_path / "val"
    write_val_folder(val)
    truth_csv = write_truth(tmp_path / "truth.csv", truth)
    before = tree_digest(root)
    out = tmp_path / "out"
    result = _train(root, "--out", out, "--val", val, "--truth", truth_csv, *FAST)
    assert result.exit_code == 0, result.output
    assert tree_digest(root) == before  # the user's images untouched

    # the same per-sample table as scan
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert sorted(scores["path"]) == sorted(truth)
    assert scores["clean_prob"].between(0, 1).all()
    assert (scores["is_noisy"] == (scores["clean_prob"] < 0.5)).all()
    relabeled = pd.read_csv(out / "relabeled.csv", dtype=str)
    assert list(relabeled.columns) == ["path", "label", "original_label", "changed"]
    assert (out / "skipped.csv").is_file()

    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["phase"].tolist() == ["warm-up", "dividemix", "dividemix"]
    assert history["lr"].tolist() == pytest.approx([0.02, 0.002, 0.002])  # drop at 3 // 2
    mixing = history[history["phase"] == "dividemix"]
    for k in (1, 2):
        sizes = mixing[f"labelled_{k}"] + mixing[f"unlabelled_{k}"]
        assert (sizes == len(truth)).all()
        assert mixing[f"div_auroc_{k}"].between(0, 1).all()
        assert mixing[f"div_precision_{k}"].between(0, 1).all()
    assert history.loc[0, ["labelled_1", "div_auroc_1"]].isna().all()  # no division yet
    assert mixing[["loss_x", "loss_u", "loss_reg", "lambda_u"]].notna().all().all()
    assert history["val_acc"].between(0, 1).all()
    assert (history["seconds"] > 0).all()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "dividemix"
    assert summary["counts"]["used"] == len(truth)
    wrong = summary["estimated_wrong_labels"]
    assert 0 <= wrong["count"] <= len(truth)
    assert wrong["rate"] * len(truth) == pytest.approx(wrong["count"], abs=0.5)
    assert set(wrong["per_class"]) == set(summary["classes"])
    # two networks: the mean of their own estimates, the one the cut weighed
    assert "mean of 2 networks" in wrong["method"]
    assert summary["cut"]["counts"]["confident_joint"] == wrong["count"]
    chosen = summary["dividemix"]["chosen"]
    assert set(chosen) == {"tau", "lambda_u", "penalty", "loss_history"}
    assert all(chosen[k] is not None for k in chosen)
    assert set(summary["dividemix"]["reasons"]) == set(chosen)
    assert summary["settings"]["epochs"] == 3 and summary["settings"]["lr_drop_epoch"] == 1
    assert 0 <= summary["truth_metrics"]["auroc"] <= 1
    assert summary["training"]["final_val_acc"] == pytest.approx(history["val_acc"].iloc[-1])

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["epochs_done"] == 3 and len(checkpoint["models"]) == 2
    for name in ("net1.pt", "net2.pt"):  # usable as --weights of scan and train
        state = torch.load(out / name, weights_only=True)
        build_model("small-cnn", 3, width=8).load_state_dict(state)


def test_standard_baseline_writes_the_same_outputs(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    out = tmp_path / "out"
    result = _train(root, "--method", "standard", "--out", out, "--epochs", "2", "--width", "8",
                    "--quiet")
    assert result.exit_code == 0, result.output
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "phase", "lr", "seconds", "loss", "train_acc"]
    assert history["phase"].tolist() == ["standard", "standard"]
    assert history["train_acc"].between(0, 1).all()
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert len(scores) == len(truth)
    assert (out / "net1.pt").is_file() and not (out / "net2.pt").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "standard" and "dividemix" not in summary


def test_labels_too_noisy_for_the_relabel_threshold_are_said_by_train(tmp_path: Path) -> None:
    """As a scan's: with 90 of 200 digit labels moved to another class, a network trained
    on them by cross-entropy settles near 0.55 on the class of an image it fits, under the
    default --relabel-threshold 0.7, and ``train`` says that its flags are nearly all
    review. A threshold it reaches draws no warning."""
    root = tmp_path / "images"
    write_digits_folder(root, classes=(0, 1, 2, 3, 7), per_class=40, flip=90)
    options = ["--method", "standard", "--epochs", "20", "--width", "8", "--batch-size", "16",
               "--quiet"]
    result = _train(root, "--out", tmp_path / "out", *options)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rate, counts = summary["estimated_wrong_labels"]["rate"], summary["counts"]
    assert rate > 0.3, rate
    assert summary["training"]["final_train_acc"] <= 1 - rate + 0.1
    text = " ".join(result.output.split())
    assert (f"warning: the labels are estimated {rate:.0%} wrong: a network trained on them "
            f"settles at about {1 - rate:.2f}") in text
    assert f"only {counts['relabel']:,} of the {counts['noisy']:,} flagged images" in text
    lower = _train(root, "--out", tmp_path / "lower", *options, "--relabel-threshold", "0.3")
    assert lower.exit_code == 0, lower.output
    assert "relabel-threshold" not in lower.output


def test_last_train_acc_skips_epochs_that_record_none() -> None:
    # DivideMix's epochs after its warm-up record no training accuracy (NaN in history)
    history = [{"train_acc": 0.25}, {"train_acc": 0.29}, {"train_acc": math.nan}, {}]
    assert last_train_acc(history) == 0.29
    assert last_train_acc([{"train_acc": 0.5}, {"train_acc": 0.75}]) == 0.75
    assert last_train_acc([{"train_acc": math.nan}]) is None and last_train_acc([]) is None


def test_explicit_options_override_the_automatic_choices(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    config = TrainConfig(data=root, out=tmp_path / "out", epochs=3, warmup_epochs=1, width=8,
                         batch_size=16, tau=0.3, lambda_u=7.0, penalty=True, loss_history=2,
                         mixture="bmm", augmentations=1, rampup_epochs=4, quiet=True)
    result = train(config)
    chosen = result.summary["dividemix"]["chosen"]
    assert chosen == {"tau": 0.3, "lambda_u": 7.0, "penalty": True, "loss_history": 2}
    assert set(result.summary["dividemix"]["reasons"].values()) == {"given explicitly"}
    assert all(fit["kind"] == "bmm" for fit in result.summary["mixture"])
    # the ramp: 7 * (epoch + step/steps - 1) / 4, averaged over an epoch's steps, lies in
    # [0, 7/4) in the first DivideMix epoch and in [7/4, 7/2) in the second
    ramp = result.history["lambda_u"].tolist()
    assert 0 < ramp[1] < 7 / 4 <= ramp[2] < 7 / 2


def test_resume_of_a_finished_run_rewrites_its_outputs_and_names_ignored_options(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, _ = digits_folder
    out = tmp_path / "out"
    assert _train(root, "--out", out, "--epochs", "2", "--warmup-epochs", "1", "--width", "8",
                  "--batch-size", "16", "--quiet").exit_code == 0
    first = (out / "scores.csv").read_bytes()
    (out / "scores.csv").unlink()
    result = _train(root, "--resume", out, "--epochs", "5", "--lambda-u", "3")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--epochs, --lambda-u ignored" in text and "is complete" in text
    assert (out / "scores.csv").read_bytes() == first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training"]["resumed_after_epochs"] == [2]
    assert len(pd.read_csv(out / "history.csv")) == 2


def test_the_table_is_cut_and_ranked_as_a_scan_cuts_and_ranks_its_own(tmp_path: Path) -> None:
    """``train`` cuts its table as ``scan`` does by default (the arbitrated cut, the flip
    ranking), on the same trained network as ``--cut mixture --no-flip-ranking``: the same
    seed trains the same network, so the losses agree, the mixture's count is the one the
    arbitrated cut weighed, and the count flagged is the one it chose."""
    root = tmp_path / "images"
    write_digits_folder(root, classes=(0, 1, 2, 3, 7), per_class=30, flip=30)
    options = ["--method", "standard", "--epochs", "8", "--width", "8", "--batch-size", "16"]
    scan_way = _train(root, "--out", tmp_path / "default", *options)
    assert scan_way.exit_code == 0, scan_way.output
    mixture = _train(root, "--out", tmp_path / "mixture", *options, "--quiet",
                     "--cut", "mixture", "--no-flip-ranking")
    assert mixture.exit_code == 0, mixture.output
    summaries, tables = {}, {}
    for name in ("default", "mixture"):
        summaries[name] = json.loads((tmp_path / name / "summary.json").read_text())
        tables[name] = pd.read_csv(tmp_path / name / "scores.csv", dtype=STRINGS)
    a = tables["default"].set_index("path").sort_index()
    b = tables["mixture"].set_index("path").sort_index()
    assert np.array_equal(a["loss"].to_numpy(), b["loss"].to_numpy())  # the same network

    cut = summaries["default"]["cut"]
    assert cut["rule"] == "arbitrated" and "flip_ranking" in cut
    assert summaries["default"]["settings"]["cut"] == "arbitrated"
    counts = cut["counts"]
    assert counts["mixture"] == summaries["mixture"]["cut"]["flagged"]
    assert counts["confident_joint"] == summaries["default"]["estimated_wrong_labels"]["count"]
    assert cut["chosen"] == arbitrated_choice(
        counts["mixture"], counts["loss_mixture"], counts["confident_joint"])[0]
    assert cut["flagged"] == summaries["default"]["counts"]["noisy"] == int(a["is_noisy"].sum())
    assert "cut (arbitrated)" in " ".join(scan_way.output.split())

    plain = summaries["mixture"]["cut"]
    assert plain["rule"] == "mixture" and "flip_ranking" not in plain
    assert plain["flagged"] == int(b["is_noisy"].sum())


def test_save_probs_and_report_write_what_scan_s_write(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``train --save-probs --report`` writes ``pred_probs.npy`` (float32, rows in
    ``scores.csv`` order, columns in class order: each row's largest is its ``predicted``)
    and ``report.html``, as a scan's options of those names do."""
    root, truth = digits_folder
    out = tmp_path / "out"
    result = _train(root, "--out", out, "--method", "standard", "--epochs", "2", "--width", "8",
                    "--batch-size", "16", "--quiet", "--save-probs", "--report")
    assert result.exit_code == 0, result.output
    probs = np.load(out / "pred_probs.npy")
    scores = pd.read_csv(out / "scores.csv", dtype=STRINGS)
    classes = json.loads((out / "summary.json").read_text())["classes"]
    assert probs.dtype == np.float32 and probs.shape == (len(truth), len(classes))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [classes[k] for k in probs.argmax(axis=1)] == scores["predicted"].tolist()
    assert np.allclose(probs.max(axis=1), scores["predicted_prob"], atol=1e-6)
    assert "<html" in (out / "report.html").read_text()


def test_a_run_checkpointed_before_the_cut_option_resumes_with_the_cut_it_had(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A checkpoint whose settings predate ``--cut`` and ``--flip-ranking`` (noisyclean
    before 2026-12-07, whose ``train`` cut its table by the mixture and ranked no flips)
    resumes with that cut, so the run ends as it would have; one that records them keeps
    them."""
    root, _ = digits_folder
    out = tmp_path / "out"
    assert _train(root, "--out", out, "--method", "standard", "--epochs", "2", "--width", "8",
                  "--batch-size", "16", "--quiet").exit_code == 0
    assert json.loads((out / "summary.json").read_text())["cut"]["rule"] == "arbitrated"
    checkpoint = out / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=True)
    recorded = TrainConfig.from_json(dict(payload["extra"]["config"]))
    assert (recorded.cut, recorded.flip_ranking) == ("arbitrated", True)
    for key in ("cut", "flip_ranking"):
        del payload["extra"]["config"][key]
    torch.save(payload, checkpoint)
    result = _train(root, "--resume", out, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cut"] == {"rule": "mixture", "flagged": summary["counts"]["noisy"],
                              "order": "order_score"}
    assert (summary["settings"]["cut"], summary["settings"]["flip_ranking"]) == (
        "mixture", False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "coteach"], "--method must be one of"),
        (["--epochs", "2", "--warmup-epochs", "2"], "must be larger than --warmup-epochs"),
        (["--tau", "1.5"], "--tau must be between 0 and 1"),
        (["--alpha", "0"], "--alpha must be positive"),
        (["--cut", "top"], "--cut must be one of arbitrated, mixture"),
        (["--resume", "/nonexistent/run"], "no such folder"),
        (["--lr", "1e6", "--epochs", "2", "--warmup-epochs", "1", "--width", "8"],
         "diverged"),
    ],
)
def test_bad_options_fail_with_one_message(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, args: list[str], message: str
) -> None:
    root, _ = digits_folder
    result = _train(root, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_bad_val_truth_and_checkpoint_folders_fail_with_one_message(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, truth = digits_folder
    val = tmp_path / "val"
    write_val_folder(val, classes=(0, 1, 3))  # class 3 is not a training class
    result = _train(root, "--out", tmp_path / "a", "--val", val, *FAST)
    assert result.exit_code == 2 and "'3'" in result.output
    # a truth file for a sample is fine (tests/test_train_truth_sample.py); one for no
    # training image is refused
    elsewhere = {f"other/{path}": label for path, label in truth.items()}
    csv = write_truth(tmp_path / "truth.csv", elsewhere)
    result = _train(root, "--out", tmp_path / "b", "--truth", csv, *FAST)
    assert result.exit_code == 2
    assert "has no row for any of the" in " ".join(result.output.split())
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _train(root, "--resume", empty, *FAST)
    assert result.exit_code == 2 and "nothing to resume" in " ".join(result.output.split())
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    result = _train(root, "--out", tmp_path / "c", *FAST)
    assert result.exit_code == 2 and "--resume" in result.output
    result = _train(root, "--resume", tmp_path / "c", *FAST)
    assert result.exit_code == 2 and "cannot read checkpoint" in " ".join(result.output.split())
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- kill and resume

EPOCHS = 7
KILL_AFTER = 3


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "noisyclean", "train", str(data), "--epochs", str(EPOCHS),
            "--warmup-epochs", "2", "--width", "8", "--batch-size", "16", "--device", "cpu",
            "--quiet", *extra, "--out", str(out)]


def _epochs_done(out: Path) -> int:
    try:
        return max(0, len((out / "history.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def test_a_killed_run_resumes_and_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path,
) -> None:
    data = tmp_path / "images"
    write_digits_folder(data, per_class=60, flip=18)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads for every run: same floats
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = subprocess.Popen(_command(data, whole), env=env, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_command(data, killed), env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _epochs_done(killed) < KILL_AFTER and victim.poll() is None:
            assert time.monotonic() < deadline, "the run never finished an epoch"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=True)["epochs_done"]
    assert KILL_AFTER <= stopped_at < EPOCHS, "the run finished before it could be killed"
    assert not (killed / "scores.csv").exists()
    assert uninterrupted.wait(300) == 0, uninterrupted.stderr.read().decode()

    resumed = subprocess.run(_command(data, killed, "--resume", str(killed)), env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    assert (killed / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()
    assert (killed / "relabeled.csv").read_bytes() == (whole / "relabeled.csv").read_bytes()
    a = pd.read_csv(whole / "history.csv").drop(columns="seconds")
    b = pd.read_csv(killed / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    assert len(b) == EPOCHS
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["training"]["resumed_after_epochs"] == [stopped_at]
    for k in (0, 1):  # the final networks are the same, weight for weight
        w_a = torch.load(whole / f"net{k + 1}.pt", weights_only=True)
        w_b = torch.load(killed / f"net{k + 1}.pt", weights_only=True)
        assert all(torch.equal(w_a[name], w_b[name]) for name in w_a)


def test_a_checkpoint_of_another_network_is_one_clear_error() -> None:
    from noisyclean.errors import NoisyCleanError
    from noisyclean.train.checkpoint import restore_learners
    from noisyclean.train.loop import make_learner

    learner = make_learner(build_model("small-cnn", 3, None, 8), 0.01, 0.9, 5e-4, 10)
    # as saved by a small-cnn without the pooled-feature norm (noisyclean before 2026-12-04)
    weights = {k: v for k, v in learner.model.state_dict().items()
               if not k.startswith("features.20.")}
    payload = {"models": [weights], "optimizers": [learner.optimizer.state_dict()],
               "steps": [4]}
    with pytest.raises(NoisyCleanError, match="do not match the one this run builds"):
        restore_learners([learner], payload)


def test_train_with_val_tries_a_torchvision_model_at_its_size_once(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check_input_size`` builds a throwaway network (0.1-2 s for a torchvision model):
    the training set's load runs it, with the training classes; the ``--val`` load, at the
    same size for the same model, does not run it again."""
    import noisyclean.data.load as load_module

    calls: list[tuple[str, int, int]] = []
    check = load_module.check_input_size

    def counted(name: str, num_classes: int, image_size: int) -> None:
        calls.append((name, num_classes, image_size))
        check(name, num_classes, image_size)

    monkeypatch.setattr(load_module, "check_input_size", counted)
    root, _ = digits_folder
    val = tmp_path / "val"
    write_val_folder(val, per_class=3)
    result = _train(root, "--method", "standard", "--model", "resnet18", "--image-size", "32",
                    "--val", val, "--out", tmp_path / "run", "--epochs", "1",
                    "--warmup-epochs", "1", "--batch-size", "32", "--quiet")
    assert result.exit_code == 0, result.output
    assert calls == [("resnet18", 3, 32)]
    assert pd.read_csv(tmp_path / "run" / "history.csv")["val_acc"].between(0, 1).all()


def test_a_resumed_run_reads_a_moved_val_folder_and_truth_file_given_again(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--val`` and ``--truth``, measured on and never trained on, may have moved since
    the checkpoint: given again with ``--resume`` they are read there, and the run ends as
    one that was never stopped. A run without ``--val`` does not gain one midway."""
    import noisyclean.train.run as run

    root, truth = digits_folder
    val, truth_csv = tmp_path / "val", write_truth(tmp_path / "truth.csv", truth)
    write_val_folder(val)
    options = ["--method", "standard", "--epochs", "3", "--width", "8", "--batch-size", "16",
               "--quiet"]
    whole = tmp_path / "whole"
    assert _train(root, "--out", whole, "--val", val, "--truth", truth_csv,
                  *options).exit_code == 0
    saved = run.save_checkpoint

    def stop_after_one_epoch(*args: object, **kwargs: object) -> None:
        saved(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "save_checkpoint", stop_after_one_epoch)
    stopped = tmp_path / "stopped"
    assert _train(root, "--out", stopped, "--val", val, "--truth", truth_csv,
                  *options).exit_code == 130
    monkeypatch.setattr(run, "save_checkpoint", saved)
    moved_val, moved_truth = tmp_path / "moved" / "val", tmp_path / "moved" / "truth.csv"
    moved_val.parent.mkdir()
    val.rename(moved_val)
    truth_csv.rename(moved_truth)
    result = _train(root, "--resume", stopped, "--val", moved_val, "--truth", moved_truth)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "ignored" not in text
    assert f"resuming: --val {moved_val} in place of the checkpoint's {val}" in text
    assert (stopped / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()
    history = {name: pd.read_csv(tmp_path / name / "history.csv") for name in ("whole", "stopped")}
    pd.testing.assert_frame_equal(history["stopped"][["epoch", "val_acc"]],
                                  history["whole"][["epoch", "val_acc"]])
    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text())
                 for name in ("whole", "stopped")}
    assert summaries["stopped"]["truth_metrics"] == summaries["whole"]["truth_metrics"]
    assert summaries["stopped"]["truth_metrics"]["n"] == len(truth)
    # a run that had no --val: the one given on resuming is ignored, as before
    plain = tmp_path / "plain"
    monkeypatch.setattr(run, "save_checkpoint", stop_after_one_epoch)
    assert _train(root, "--out", plain, *options).exit_code == 130
    monkeypatch.setattr(run, "save_checkpoint", saved)
    result = _train(root, "--resume", plain, "--val", moved_val)
    assert result.exit_code == 0, result.output
    assert "--val ignored" in " ".join(result.output.split())
    assert "val_acc" not in pd.read_csv(plain / "history.csv").columns
