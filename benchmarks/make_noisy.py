"""Write a real image folder with known label noise from ../shared/data.

    python benchmarks/make_noisy.py --dataset cifar10 --n 5000 --noise sym --rate 0.5 \
        --out /tmp/cifar-sym50 [--test-n 10000] [--seed 0] [--start 0]

writes ``OUT/images/<given class>/<index>.png`` (ImageFolder layout, the noisy labels),
``OUT/truth.csv`` (``path,label``: the true class of every image, paths relative to
``OUT/images``), ``OUT/noise.json`` (what was done, the real noise rate) and, with
``--test-n``, clean test images in ``OUT/test/<class>/``. The images are training images
``--start`` to ``--start + --n - 1``, named by their index in the training set.

Noise kinds:

* ``sym``: a fraction ``--rate`` of the labels (exactly ``round(rate * n)`` samples) is
  replaced by a class drawn uniformly from the OTHER classes, so the real noise rate is
  ``rate``. (DivideMix's reference code draws from all classes, the true one included,
  which gives a real rate of ``rate * (C - 1) / C``; ``--sym-convention all`` does that.)
* ``asym``: DivideMix's class-dependent flips for CIFAR-10 (truck -> automobile,
  bird -> airplane, deer -> horse, cat <-> dog): a fraction ``--rate`` of all samples is
  drawn and those of the five source classes are flipped, so ``rate`` of each source
  class is wrong and the real noise rate is about ``rate / 2``.
* ``human``: CIFAR-10N's human labels (``--human aggre|random1|random2|random3|worst``,
  read from ``cifar10n_labels.npz`` in ``--data-dir``), real annotator errors; ``--rate``
  is ignored.
* ``verified``: the TEST set with its own published labels, whose known errors are the
  ones people confirmed (``test_label_errors.json`` in ``--data-dir``, from
  cleanlab/label-errors: 54 for CIFAR-10, 15 for MNIST); ``--n``/``--start`` count test
  images (``--n all``: all of them), named ``t<index>``. In ``truth.csv`` a confirmed error
  has the class the reviewers agreed on, or :data:`UNKNOWN_CLASS` where they agreed on
  none (it is still wrong: no image is given that class). Two limits: the confirmed
  errors are the ones confident learning proposed (a wrong label it missed counts as
  right here), and the rest of the test set is taken to be right. ``--rate`` is ignored.

The training images are ``--n`` of the CIFAR-10 training set in its original order, from
``--start`` (Fashion-MNIST and MNIST: of their training sets); ``--n all`` takes every one.
``../shared/data``'s ``cifar10.npz`` holds the first 30,000 of CIFAR-10's 50,000 (its
README says why); ``noise.json``'s ``train_size`` and ``test_size`` record how many
training and test images the data file held. ``noise.json`` is written last (whole, under
its final name only once complete): a folder without it was left half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
FASHION_CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
    "ankle-boot",
]
MNIST_CLASSES = [str(k) for k in range(10)]
FILES = {"cifar10": "cifar10.npz", "fashion-mnist": "fashion_mnist.npz", "mnist": "mnist.npz"}
# DivideMix's asymmetric noise for CIFAR-10: truck->automobile, bird->airplane,
# deer->horse, cat<->dog
CIFAR10_ASYM = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
#: ``truth.csv``'s class for a confirmed error whose reviewers agreed on no class
UNKNOWN_CLASS = "unknown"
VERIFIED_FILE = "test_label_errors.json"
HUMAN_KEYS = {
    "aggre": "aggre_label",
    "worst": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
}


def fail(message: str) -> NoReturn:
    """Stop with ``error: message`` on one line of standard error and exit status 2 (every
    benchmark script's way of refusing bad options or inputs)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_arrays(dataset: str, data_dir: Path) -> tuple[np.ndarray, ...]:
    """Return ``x_train, y_train, x_test, y_test, classes`` of a dataset in ``data_dir``."""
    path = data_dir / FILES[dataset]
    if not path.is_file():
        fail(f"{path} not found (the benchmark data lives in ../shared/data)")
    with np.load(path) as arrays:
        x_train, y_train = arrays["x_train"], arrays["y_train"].astype(np.int64)
        x_test, y_test = arrays["x_test"], arrays["y_test"].astype(np.int64)
    classes = {"cifar10": CIFAR10_CLASSES, "fashion-mnist": FASHION_CLASSES,
               "mnist": MNIST_CLASSES}[dataset]
    return x_train, y_train, x_test, y_test, classes


def symmetric_noise(
    labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
    convention: str = "other",
) -> np.ndarray:
    """Replace ``round(rate * n)`` labels by a uniformly drawn class: another class
    (``convention="other"``) or any class, the true one included (``"all"``)."""
    noisy = labels.copy()
    chosen = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    if convention == "all":
        noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
    else:
        shift = rng.integers(1, num_classes, size=len(chosen))
        noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy


def asymmetric_noise(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """DivideMix's CIFAR-10 asymmetric flips applied to a random ``rate`` of the samples."""
    noisy = labels.copy()
    chosen = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    for i in chosen:
        noisy[i] = CIFAR10_ASYM.get(int(labels[i]), int(labels[i]))
    return noisy


def verified_truth(
    labels: np.ndarray, start: int, classes: list[str], dataset: str, data_dir: Path
) -> tuple[list[str], dict[str, int]]:
    """The true class name of test images ``start .. start + len(labels) - 1``: the given
    one, except for the confirmed errors of :data:`VERIFIED_FILE` (the agreed class, or
    :data:`UNKNOWN_CLASS`); and the count of those errors in that range by category."""
    path = data_dir / VERIFIED_FILE
    if not path.is_file():
        fail(f"{path} not found (--noise verified reads the confirmed errors from it)")
    errors = json.loads(path.read_text()).get(dataset)
    if errors is None:
        fail(f"{path} has no confirmed errors for {dataset}")
    truth = [classes[label] for label in labels]
    counts: dict[str, int] = {}
    for error in errors:
        row = int(error["index"]) - start
        if not 0 <= row < len(labels):
            continue
        if int(error["given"]) != int(labels[row]):
            fail(f"{path}: test image {error['index']} is given {error['given']} there, "
                 f"{labels[row]} in {FILES[dataset]}")
        agreed = error.get("true_guess")
        truth[row] = UNKNOWN_CLASS if agreed is None else classes[int(agreed)]
        counts[error["category"]] = counts.get(error["category"], 0) + 1
    return truth, counts


def write_folder(
    root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], names: list[str]
) -> list[str]:
    """Write ``images`` as PNG files under ``root/<class of label>/<name>.png``."""
    paths = []
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
    for image, label, name in zip(images, labels, names, strict=True):
        rel = f"{classes[label]}/{name}.png"
        Image.fromarray(image).save(root / rel, optimize=False, compress_level=1)
        paths.append(rel)
    return paths


def _count(text: str) -> int | None:
    """``--n``: a number of images, or ``all`` (None here: every training image)."""
    return None if text == "all" else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(FILES), default="cifar10")
    parser.add_argument("--n", type=_count, default=5000,
                        help="training images (n of them, from --start), or 'all' of them "
                        "(test images with --noise verified)")
    parser.add_argument("--start", type=int, default=0,
                        help="index of the first training image (default 0)")
    parser.add_argument("--noise", choices=["sym", "asym", "human", "verified", "none"],
                        default="sym")
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--human", choices=sorted(HUMAN_KEYS), default="worst")
    parser.add_argument("--sym-convention", choices=["other", "all"], default="other")
    parser.add_argument("--test-n", type=int, default=0, help="clean test images to write")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args(argv)

    # every check before the first file is written
    if args.out.exists() and not args.out.is_dir():
        fail(f"--out {args.out} exists and is not a folder")
    if args.out.is_dir() and any(args.out.iterdir()):
        fail(f"{args.out} exists and is not empty")
    if args.test_n < 0:
        fail("--test-n must be 0 or more")
    if args.noise in ("sym", "asym") and not 0.0 <= args.rate <= 1.0:
        fail("--rate must be between 0 and 1")
    if args.noise == "asym" and args.dataset != "cifar10":
        fail("--noise asym is defined for cifar10 only")
    human_file = args.data_dir / "cifar10n_labels.npz"
    if args.noise == "human":
        if args.dataset != "cifar10":
            fail("--noise human (CIFAR-10N) is defined for cifar10 only")
        if not human_file.is_file():
            fail(f"{human_file} not found (--noise human reads CIFAR-10N's labels from it)")
    if args.noise == "verified":
        if args.dataset not in ("cifar10", "mnist"):
            fail("--noise verified (the confirmed test-set errors) covers cifar10 and mnist only")
        if args.test_n:
            fail("--noise verified writes test images already; --test-n does not apply")
    x_train, y_train, x_test, y_test, classes = load_arrays(args.dataset, args.data_dir)
    train_size = len(x_train)
    if args.noise == "verified":  # the test set takes the training set's place
        x_train, y_train = x_test, y_test
    if args.n is None:
        if not 0 <= args.start < len(x_train):
            fail(f"--start must be between 0 and {len(x_train) - 1} for --n all")
        args.n = len(x_train) - args.start
    if not 1 <= args.n <= len(x_train):
        fail(f"--n must be between 1 and {len(x_train)}")
    if not 0 <= args.start <= len(x_train) - args.n:
        fail(f"--start must be between 0 and {len(x_train) - args.n} for --n {args.n}")
    rng = np.random.default_rng(args.seed)
    chosen = slice(args.start, args.start + args.n)
    x, truth = x_train[chosen], y_train[chosen]
    verified: dict[str, int] | None = None
    if args.noise == "verified":
        given = truth.copy()
        truth_names, verified = verified_truth(given, args.start, classes, args.dataset,
                                               args.data_dir)
    elif args.noise == "sym":
        given = symmetric_noise(truth, args.rate, len(classes), rng, args.sym_convention)
    elif args.noise == "asym":
        given = asymmetric_noise(truth, args.rate, rng)
    elif args.noise == "human":
        with np.load(human_file) as human:
            clean = human["clean_label"][chosen]
            given = human[HUMAN_KEYS[args.human]][chosen].astype(np.int64)
        if not np.array_equal(clean, truth):
            fail("CIFAR-10N clean labels do not match cifar10.npz")
    else:
        given = truth.copy()

    if verified is None:
        truth_names = [classes[t] for t in truth]
    prefix = "t" if verified is not None else ""
    names = [f"{prefix}{i:05d}" for i in range(args.start, args.start + args.n)]
    paths = write_folder(args.out / "images", x, given, classes, names)
    truth_rows = ["path,label"] + [
        f"{p},{t}" for p, t in zip(paths, truth_names, strict=True)
    ]
    (args.out / "truth.csv").write_text("\n".join(truth_rows) + "\n")
    if args.test_n:
        k = min(args.test_n, len(x_test))
        write_folder(args.out / "test", x_test[:k], y_test[:k], classes,
                     [f"t{i:05d}" for i in range(k)])
    wrong = np.array([classes[g] != t for g, t in zip(given, truth_names, strict=True)])
    info = {
        "dataset": args.dataset,
        "n": args.n,
        "start": args.start,
        "train_size": train_size,
        "test_size": len(x_test),
        "noise": args.noise,
        "rate": args.rate if args.noise in ("sym", "asym") else None,
        "human": args.human if args.noise == "human" else None,
        "sym_convention": args.sym_convention if args.noise == "sym" else None,
        "seed": args.seed,
        "real_noise_rate": float(np.mean(wrong)),
        "wrong": int(np.sum(wrong)),
        "verified": verified,
        "test_n": int(min(args.test_n, len(x_test))),
    }
    # written last, and whole: its presence says the folder is complete
    partial = args.out / "noise.json.partial"
    partial.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(partial, args.out / "noise.json")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
