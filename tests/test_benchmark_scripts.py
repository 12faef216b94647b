"""The benchmark scripts refuse bad options and inputs with one clear line, before any work,
create the folders of the files they write up front, reuse earlier outputs only when they
were made with the same settings, and score a folder one of whose true classes no image is
given. Everything here runs on small real folders; the tests that need the CIFAR-10 data
file skip without it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from .conftest import ROOT, SHARED_DATA, load_script, write_digits_folder

BENCHMARKS = ROOT / "benchmarks"
HAS_CIFAR = all((SHARED_DATA / name).is_file()
                for name in ("cifar10.npz", "cifar10n_labels.npz"))
needs_cifar = pytest.mark.skipif(
    not HAS_CIFAR,
    reason="needs ../shared/data/cifar10.npz and cifar10n_labels.npz (benchmark data)")


def _module(name: str) -> ModuleType:
    """Load ``benchmarks/NAME.py`` as a module (its siblings importable, as when run)."""
    return load_script(BENCHMARKS / f"{name}.py")


def _run(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _refused(done: subprocess.CompletedProcess, text: str) -> None:
    """Exit status 2 and one ``error:`` line on standard error that says ``text``; no
    traceback."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], done.stderr


def _stops(capsys: pytest.CaptureFixture[str], main, argv: list, text: str) -> None:
    """``main(argv)``, run here, stops as :func:`_refused` says (status 2, one line)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


def _data_dir(path: Path, human: bool = True) -> Path:
    """A CIFAR-10-shaped ``cifar10.npz`` of 30 random images and 5 test images (and, with
    ``human``, its ``cifar10n_labels.npz``)."""
    path.mkdir()
    rng = np.random.default_rng(0)
    y = np.arange(30) % 10
    np.savez(path / "cifar10.npz", x_train=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
             y_train=y, x_test=rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(5))
    if human:
        worse = (y + (np.arange(30) % 3 == 0)) % 10
        np.savez(path / "cifar10n_labels.npz", clean_label=y, aggre_label=y, worse_label=worse,
                 random_label1=worse, random_label2=worse, random_label3=worse)
    return path


# --------------------------------------------------------------------------- make_noisy.py


def test_make_noisy_checks_every_option_before_writing(tmp_path: Path) -> None:
    data = _data_dir(tmp_path / "data")
    out = tmp_path / "out"
    _refused(_run("make_noisy.py", "--n", "10", "--test-n", "-5", "--data-dir", data,
                  "--out", out), "--test-n must be 0 or more")
    assert not out.exists()
    (tmp_path / "a-file").write_text("keep\n")
    _refused(_run("make_noisy.py", "--n", "10", "--data-dir", data, "--out",
                  tmp_path / "a-file"), "exists and is not a folder")
    assert (tmp_path / "a-file").read_text() == "keep\n"
    no_human = _data_dir(tmp_path / "no-human", human=False)
    _refused(_run("make_noisy.py", "--n", "10", "--noise", "human", "--data-dir", no_human,
                  "--out", out), "cifar10n_labels.npz not found")
    assert not out.exists()
    # --rate does not apply to human noise: any value is let through
    done = _run("make_noisy.py", "--n", "10", "--noise", "human", "--rate", "5",
                "--human", "worst", "--test-n", "3", "--data-dir", data, "--out", out)
    assert done.returncode == 0, done.stderr
    noise = json.loads((out / "noise.json").read_text())
    assert (noise["rate"], noise["human"], noise["wrong"]) == (None, "worst", 4)
    assert (noise["train_size"], noise["test_size"], noise["test_n"]) == (30, 5, 3)
    assert not list(out.glob("noise.json.*"))
    _refused(_run("make_noisy.py", "--n", "10", "--noise", "sym", "--rate", "5",
                  "--data-dir", data, "--out", tmp_path / "sym"), "--rate must be between")


def test_make_noisy_verified_writes_the_test_set_with_its_confirmed_errors(
        tmp_path: Path) -> None:
    """``--noise verified``: the test images under their own labels, named ``t<index>``;
    in ``truth.csv`` a confirmed error gets its agreed class, or ``unknown`` where the
    reviewers agreed on none; errors outside ``--start``/``--n`` are left out."""
    data = _data_dir(tmp_path / "data")  # test labels 0, 1, 2, 3, 4
    errors = {"cifar10": [
        {"index": 1, "given": 1, "true_guess": 7, "category": "correctable"},
        {"index": 3, "given": 3, "true_guess": None, "category": "non-agreement"},
        {"index": 0, "given": 0, "true_guess": None, "category": "neither"},
    ]}
    (data / "test_label_errors.json").write_text(json.dumps(errors))
    out = tmp_path / "out"
    done = _run("make_noisy.py", "--noise", "verified", "--n", "4", "--start", "1",
                "--data-dir", data, "--out", out)
    assert done.returncode == 0, done.stderr
    truth = pd.read_csv(out / "truth.csv")
    assert truth.values.tolist() == [
        ["automobile/t00001.png", "horse"], ["bird/t00002.png", "bird"],
        ["cat/t00003.png", "unknown"], ["deer/t00004.png", "deer"]]
    assert sorted(p.relative_to(out / "images").as_posix()
                  for p in (out / "images").rglob("*.png")) == truth["path"].tolist()
    noise = json.loads((out / "noise.json").read_text())
    assert (noise["noise"], noise["wrong"], noise["real_noise_rate"]) == ("verified", 2, 0.5)
    assert noise["verified"] == {"correctable": 1, "non-agreement": 1}
    assert (noise["train_size"], noise["test_size"], noise["n"]) == (30, 5, 4)
    # every check before the first file: a given label that disagrees, no file, --test-n
    errors["cifar10"][0]["given"] = 2
    (data / "test_label_errors.json").write_text(json.dumps(errors))
    _refused(_run("make_noisy.py", "--noise", "verified", "--n", "all", "--data-dir", data,
                  "--out", tmp_path / "o2"), "test image 1 is given 2 there, 1 in cifar10.npz")
    _refused(_run("make_noisy.py", "--noise", "verified", "--n", "2", "--test-n", "2",
                  "--data-dir", data, "--out", tmp_path / "o2"), "--test-n does not apply")
    (data / "test_label_errors.json").unlink()
    _refused(_run("make_noisy.py", "--noise", "verified", "--n", "2", "--data-dir", data,
                  "--out", tmp_path / "o2"), "test_label_errors.json not found")
    _refused(_run("make_noisy.py", "--noise", "verified", "--dataset", "fashion-mnist",
                  "--data-dir", data, "--out", tmp_path / "o2"), "cifar10 and mnist only")
    assert not (tmp_path / "o2").exists()


@pytest.mark.skipif(not (SHARED_DATA / "test_label_errors.json").is_file()
                    or not (SHARED_DATA / "cifar10.npz").is_file(),
                    reason="needs ../shared/data/cifar10.npz and test_label_errors.json")
def test_make_noisy_verified_on_the_real_cifar10_test_set(tmp_path: Path) -> None:
    """The first 400 CIFAR-10 test images: every confirmed error among them (the JSON's
    indices below 400) is wrong in ``truth.csv``, with its agreed class or ``unknown``,
    and no other image is."""
    errors = json.loads((SHARED_DATA / "test_label_errors.json").read_text())["cifar10"]
    first = {e["index"]: e for e in errors if e["index"] < 400}
    assert first  # test image 165 (given deer) is one
    out = tmp_path / "v"
    done = _run("make_noisy.py", "--noise", "verified", "--n", "400", "--out", out)
    assert done.returncode == 0, done.stderr
    truth = pd.read_csv(out / "truth.csv")
    given = truth["path"].str.split("/").str[0]
    index = truth["path"].str.extract(r"t(\d+)\.png")[0].astype(int)
    wrong = truth[given != truth["label"]]
    assert sorted(index[wrong.index]) == sorted(first)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    for row, i in zip(wrong["label"], index[wrong.index], strict=True):
        agreed = first[i]["true_guess"]
        assert row == ("unknown" if agreed is None else names[agreed])
    assert json.loads((out / "noise.json").read_text())["wrong"] == len(first)


def test_review_depth_counts_the_wrong_labels_in_each_rankings_first_rows(
        tmp_path: Path) -> None:
    """``review_depth.py`` on a hand-made ``detect.py`` work folder: the plain recipe's
    arrays (ranked by score) and a scan's table (``--folds 5``, a method outside
    ``detect.METHODS``; its order is its ranking), five images of which two are wrong, one
    of them with no agreed class."""
    folder, work = tmp_path / "folder", tmp_path / "work"
    folder.mkdir()
    (work / "scan-folds").mkdir(parents=True)
    paths = ["a/1.png", "a/2.png", "b/3.png", "b/4.png", "b/5.png"]
    truth = ["a", "b", "b", "unknown", "b"]  # 2.png is a "b", 4.png wrong with no class
    pd.DataFrame({"path": paths, "label": truth}).to_csv(folder / "truth.csv", index=False)
    (folder / "noise.json").write_text(json.dumps({"wrong": 2}))
    # the scan: 4.png, 1.png, 2.png first; flags the first two; writes "b" for 1.png
    order = [3, 0, 1, 2, 4]
    pd.DataFrame({
        "path": [paths[i] for i in order], "label": ["b", "a", "a", "b", "b"],
        "is_noisy": [True, True, False, False, False],
        "predicted": ["a", "b", "b", "b", "b"],
        "suggested_label": ["b", "b", "a", "b", "b"],
    }).to_csv(work / "scan-folds" / "scores.csv", index=False)
    (work / "scan-folds" / "summary.json").write_text(json.dumps({"classes": ["a", "b"]}))
    # the plain recipe: 2.png then 4.png first; flags 2.png and sets it right
    np.savez(work / "plain.npz", paths=np.array(paths), classes=np.array(["a", "b"]),
             labels=np.array([0, 0, 1, 1, 1]), flag=np.array([0, 1, 0, 0, 0], dtype=bool),
             score=np.array([0.1, 0.9, 0.2, 0.3, 0.0]), fixed=np.array([0, 1, 1, 1, 1]))
    done = _run("review_depth.py", folder, "--work", work, "--depths", "1,2,3")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| method | flags | flagged wrong | top 1 | top 2 | top 3 | set right "
                       "| with a class |")
    assert rows[1:] == ["| plain | 1 | 1 | 1 | 2 | 2 | 1 | 1 |",
                        "| noisyclean --folds 5 | 2 | 1 | 1 | 1 | 2 | 0 | 1 |"]
    _refused(_run("review_depth.py", folder, "--work", tmp_path / "none"), "is not a folder")
    _refused(_run("review_depth.py", folder, "--work", folder), "holds no method's outputs")


# --------------------------------------------------------------------------- detect.py


def test_detect_counts_a_true_class_that_no_image_is_given() -> None:
    """Every true ``7`` labelled ``1``: the folders hold classes 0 and 1 only; the figures
    still count the 7s as wrong, and as predicted wrongly (no method can predict 7)."""
    detect = _module("detect")
    truth = {"0/a.png": "0", "1/b.png": "1", "1/c.png": "7", "1/d.png": "7"}
    classes = ["0", "1"]
    assert detect.class_index(classes, truth) == {"0": 0, "1": 1, "7": 2}
    figures = detect.metrics(list(truth), flag=[False, False, True, False],
                             score=[0.0, 0.1, 0.9, 0.8], predicted=[0, 1, 0, 1],
                             fixed=[0, 1, 0, 1], truth=truth, classes=classes,
                             labels=[0, 1, 1, 1])
    assert (figures["precision"], figures["recall"], figures["auroc"]) == (1.0, 0.5, 1.0)
    assert figures["pred_acc_on_wrong"] == 0.0


def _digits_run_folder(root: Path) -> tuple[Path, dict[str, str]]:
    """A folder as make_noisy.py writes it, of 3 digit classes at 16 px, in which every
    image given class 7 is given class 1 instead: no image is given class 7."""
    truth = write_digits_folder(root / "images", per_class=20, flip=4)
    moved = {}
    for rel, label in truth.items():
        if rel.startswith("7/"):
            new = f"1/{Path(rel).name}"
            (root / "images" / rel).rename(root / "images" / new)
            rel = new
        moved[rel] = label
    (root / "images" / "7").rmdir()
    pd.DataFrame({"path": list(moved), "label": list(moved.values())}).to_csv(
        root / "truth.csv", index=False)
    wrong = sum(rel.split("/")[0] != label for rel, label in moved.items())
    (root / "noise.json").write_text(json.dumps({
        "dataset": "digits", "n": len(moved), "noise": "sym", "rate": 0.1, "human": None,
        "sym_convention": "other", "seed": 0, "real_noise_rate": wrong / len(moved),
        "wrong": wrong}))
    return root, moved


def test_detect_runs_with_fresh_caches_and_names_each_row_as_it_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One real run: a true class that no image is given; --json and --results in folders
    that do not exist yet; a scan that finds a warm cache from an earlier run in
    WORK/cache-scan-gmm decodes again; the progress line of plain-onecycle is its own; and
    --rescore names the scan's row by the options it ran with."""
    from noisyclean.data.load import load_dataset

    folder, truth = _digits_run_folder(tmp_path / "noisy")
    work = tmp_path / "work"
    load_dataset(folder / "images", cache_dir=work / "cache-scan-gmm")  # an earlier run's
    assert any((work / "cache-scan-gmm").iterdir())
    rows_json, results = tmp_path / "new" / "deep" / "rows.json", tmp_path / "r" / "R.md"
    done = _run("detect.py", folder, "--methods", "plain-onecycle,scan-gmm", "--epochs", "1",
                "--scan-args=--batch-size 16", "--model", "small-cnn", "--no-amp",
                "--work", work, "--json", rows_json, "--results", results, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(rows_json.read_text())
    assert report["complete"] is True
    onecycle, oracle, scan = report["rows"]
    wrong = sum(rel.split("/")[0] != label for rel, label in truth.items())
    assert wrong >= 20  # every 7, and the flips of the others
    assert oracle["method"].startswith("oracle") and oracle["flags"] == wrong
    assert oracle["pred_acc_on_wrong"] <= (wrong - 20) / wrong  # no 7 can be predicted
    progress = [line for line in done.stdout.splitlines() if ": F1 " in line]
    assert [line.split(": F1 ")[0] for line in progress] == [onecycle["method"],
                                                              scan["method"]]
    assert "--batch-size 16" in scan["method"]
    assert "| noisyclean --seed 0 --mixture gmm" in results.read_text()
    summary = json.loads((work / "scan-gmm" / "summary.json").read_text())
    assert summary["decode_cache"]["hit"] is False
    assert not (work / "cache-scan-gmm").exists()
    capsys.readouterr()
    detect = _module("detect")
    assert detect.main([str(folder), "--rescore", "--work", str(work),
                        "--methods", "scan-gmm,plain-onecycle"]) == 0
    rescored = capsys.readouterr().out
    table = [line for line in rescored.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0].removeprefix("| ") for line in table] == [
        scan["method"], onecycle["method"], oracle["method"]]


def test_detect_runs_a_child_that_writes_much_to_stderr() -> None:
    """run_timed waited for the child before reading its stderr pipe: a child writing more
    than the pipe holds (64 KiB on Linux) blocked forever. It ends now, and a failing
    child's message still comes back."""
    import threading

    detect = _module("detect")
    done: list[tuple[float, dict]] = []
    call = threading.Thread(daemon=True, target=lambda: done.append(detect.run_timed(
        [sys.executable, "-c", "import sys; sys.stderr.write('x' * 300_000)"])))
    call.start()
    call.join(120)  # a blocked wait fails the test instead of hanging the suite
    assert done, "run_timed did not return: the child blocked on its stderr"
    seconds, counted = done[0]
    assert seconds > 0 and counted["peak_mib"] > 0
    with pytest.raises(SystemExit, match=r"failed \(3\):\ny{2000,}last words$"):
        detect.run_timed([sys.executable, "-c",
                          "import sys; sys.stderr.write('y' * 100_000 + 'last words'); "
                          "sys.exit(3)"])


def test_detect_keeps_the_backbone_every_method_s(tmp_path: Path) -> None:
    """--model in --scan-args would reach the scans only, and the other methods would
    train another backbone: refused, pointing at detect.py's own --model (scans alone may
    take any backbone)."""
    folder, _ = _digits_run_folder(tmp_path / "noisy")
    done = _run("detect.py", folder, "--methods", "scan-gmm,plain",
                "--scan-args=--model resnet18", "--work", tmp_path / "work")
    assert done.returncode != 0
    assert ("--scan-args --model: with plain the backbone and its input must be every "
            "method's") in done.stderr
    assert not (tmp_path / "work").exists()


def test_detect_refuses_no_methods_and_unwritable_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = _module("detect").main
    folder, _ = _digits_run_folder(tmp_path / "noisy")
    _stops(capsys, main, [folder, "--methods", " , "], "--methods names no method")
    _stops(capsys, main, [folder, "--methods", "plain,bogus"], "unknown method(s): bogus")
    (tmp_path / "a-file").write_text("")
    _stops(capsys, main, [folder, "--methods", "plain", "--json",
                          tmp_path / "a-file" / "rows.json", "--work", tmp_path / "w"],
           "--json")
    assert not (tmp_path / "w").exists()  # refused before any training


# --------------------------------------------------------------------------- paired_scans.py


def _fake_scan(out: Path, truth: dict[str, str], options: list[str] | None) -> None:
    """The files of a finished scan that paired_scans.py reads, and (unless None) the
    record of its options."""
    out.mkdir(parents=True)
    paths = list(truth)
    pd.DataFrame({"path": paths, "label": [p.split("/")[0] for p in paths],
                  "is_noisy": [False] * len(paths), "predicted": list(truth.values()),
                  "suggested_label": [p.split("/")[0] for p in paths]}).to_csv(
        out / "scores.csv", index=False)
    (out / "summary.json").write_text(json.dumps(
        {"classes": sorted(set(truth.values())), "timings_s": {"warmup": 1.0}}))
    if options is not None:
        (out / "paired-options.json").write_text(json.dumps({"scan_args": options}))


def test_paired_scans_reuses_outputs_only_made_with_the_same_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = _module("paired_scans").main
    folder = tmp_path / "noisy"
    folder.mkdir()
    truth = {"0/a.png": "0", "0/b.png": "1", "1/c.png": "1"}
    pd.DataFrame({"path": list(truth), "label": list(truth.values())}).to_csv(
        folder / "truth.csv", index=False)
    _fake_scan(folder / "paired" / "a-s0", truth, ["--seed", "0", "--epochs", "3"])
    _fake_scan(folder / "paired" / "b-s0", truth, ["--seed", "0", "--epochs", "3", "--no-tta"])
    rows_json = tmp_path / "new" / "rows.json"
    main([str(folder), "--a", "--epochs 3", "--b", "--epochs 3 --no-tta", "--json",
          str(rows_json), "--results", str(tmp_path / "r" / "R.md")])  # reused: no scan ran
    assert [row["seed"] for row in json.loads(rows_json.read_text())] == [0]
    assert "| noisy | 0 |" in (tmp_path / "r" / "R.md").read_text()
    # --b changed under the same name: refused before any scan, nothing overwritten
    stamp = (folder / "paired" / "b-s0" / "summary.json").stat().st_mtime_ns
    _stops(capsys, main, [folder, "--a", "--epochs 3", "--b", "--epochs 4"],
           "--seed 0 --epochs 3 --no-tta")
    assert (folder / "paired" / "b-s0" / "summary.json").stat().st_mtime_ns == stamp
    # outputs kept by an older script, with no record of their options
    (folder / "paired" / "a-s0" / "paired-options.json").unlink()
    _stops(capsys, main, [folder, "--a", "--epochs 3", "--b", "--epochs 3 --no-tta"],
           "no record of its options")
    _stops(capsys, main, [folder, "--seeds", "0,x"], "--seeds")


# --------------------------------------------------------------------------- levers.py etc.


def test_levers_averages_over_every_epoch_of_a_short_run() -> None:
    """``levers.py --epochs 2``: the rows that average the last 5 epochs average both."""
    levers = _module("levers")
    rng = np.random.default_rng(0)
    plain = rng.dirichlet(np.ones(3), size=(2, 60))
    labels = rng.integers(0, 3, 60)
    rec = {"plain": plain, "mirrored": plain[:, ::-1], "labels": labels, "true": labels}
    names = [name for name, _, _ in levers.levers(rec, 0)]
    assert "loss averaged over 2 epochs" in names
    assert "loss + calibrated margin (TTA), averaged over 2 epochs" in names
    long = {**rec, "plain": np.concatenate([plain] * 3), "mirrored": np.concatenate([plain] * 3)}
    assert "loss averaged over 5 epochs" in [name for name, _, _ in levers.levers(long, 0)]


def test_training_levers_cut_rules_names_the_missing_ce_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "save"
    save.mkdir()
    (save / "noisy-ce@epochs=1.npz").write_bytes(b"")
    _stops(capsys, _module("training_levers").main,
           [tmp_path / "noisy", "--cut-rules", "--save", save], "noisy-ce@epochs=1.npz")


# --------------------------------------------------------------------------- train_cifar.py


def test_train_cifar_describes_human_noise_by_its_label_set() -> None:
    train_cifar = _module("train_cifar")
    noise = {"noise": "human", "rate": None, "human": "aggre", "real_noise_rate": 0.09}
    assert train_cifar.describe_noise(noise) == "human aggre: real noise rate 0.090"
    sym = {"noise": "sym", "rate": 0.5, "sym_convention": "other", "real_noise_rate": 0.5}
    assert train_cifar.describe_noise(sym) == "sym 0.5, convention 'other': real noise rate 0.500"


@needs_cifar
def test_train_cifar_reuses_data_and_runs_only_made_with_the_same_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--human`` reaches make_noisy.py; WORK/data made for other settings, and a method's
    run started with other options (or with no record of them), are refused."""
    train_cifar = _module("train_cifar")
    parser = argparse.ArgumentParser()
    train_cifar.add_arguments(parser)
    parser.add_argument("--extra", default="")
    work = tmp_path / "work"
    base = ["--n", "40", "--test-n", "5", "--noise", "human", "--work", str(work)]
    args = train_cifar.parse_arguments(parser, [*base, "--human", "aggre"])
    noise = train_cifar.make_data(args, work / "data")
    with np.load(SHARED_DATA / "cifar10n_labels.npz") as human:
        expected = int((human["aggre_label"][:40] != human["clean_label"][:40]).sum())
    assert (noise["human"], noise["wrong"]) == ("aggre", expected)
    assert train_cifar.make_data(args, work / "data") == noise  # the same: reused
    for other, said in ((["--human", "worst"], "human aggre (asked worst)"),
                        (["--n", "50"], "n 40 (asked 50)")):
        changed = train_cifar.parse_arguments(parser, [*base, "--human", "aggre", *other])
        with pytest.raises(SystemExit) as stop:
            train_cifar.make_data(changed, work / "data")
        assert stop.value.code == 2 and said in capsys.readouterr().err
    # a finished run: reused with the same options, refused with others
    out = work / "standard"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    record = train_cifar.method_record(args, "standard", work / "data", noise)
    with pytest.raises(SystemExit):
        train_cifar.check_run(out, record, force=False)  # no record of its settings
    assert "no record of its settings" in capsys.readouterr().err
    (out / train_cifar.RUN_RECORD).write_text(json.dumps(record))
    assert train_cifar.check_run(out, record, force=False) is True
    longer = train_cifar.parse_arguments(parser, [*base, "--human", "aggre", "--epochs", "5"])
    with pytest.raises(SystemExit):
        train_cifar.check_run(
            out, train_cifar.method_record(longer, "standard", work / "data", noise), False)
    assert "--epochs 30" in capsys.readouterr().err
    assert train_cifar.check_run(out, record, force=True) is False  # --force: run again


def test_detect_tables_show_gpu_memory_only_for_a_gpu_run() -> None:
    """ru_maxrss counts host memory only: a GPU run's table adds the GPU peak each run
    recorded (a scan's summary.json, a worker's .npz), a CPU run's has no such column."""
    detect = _module("detect")
    row = {"method": "m", "flags": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0,
           "auroc": 1.0, "best_cut_f1": 1.0, "fixed_acc_on_wrong": 1.0,
           "pred_acc_on_wrong": 1.0, "seconds": 3.0, "peak_mib": 900.0}
    cpu = detect.markdown("t", [{**row, "gpu_peak_mib": None}], {})
    assert "GPU" not in cpu
    gpu = detect.markdown("t", [{**row, "gpu_peak_mib": 2048.4},
                                {**row, "method": "oracle", "gpu_peak_mib": None}], {})
    lines = gpu.splitlines()
    assert lines[-4].endswith("| peak MiB | GPU peak MiB |") and lines[-3].count("---") == 12
    assert lines[-2].endswith("| 3 | 900 | 2048 |") and lines[-1].endswith("| 900 | - |")
