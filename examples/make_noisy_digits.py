"""Write examples/noisy-digits/: scikit-learn's bundled digits (1,797 8x8 greyscale images)
as PNG files in ImageFolder layout, with 20% of the labels flipped uniformly at random to
another class. The true labels go beside the folder, to ``<out>-truth.csv`` (path,label;
examples/noisy-digits-truth.csv for the default ``--out``), or to ``--truth``.

    python examples/make_noisy_digits.py [--rate 0.2] [--seed 0] [--out examples/noisy-digits]
        [--truth FILE]

``--out`` must be a new or empty folder, or one this script wrote (class folders ``0`` to
``9`` holding only its ``digit_NNNN.png`` files, as examples/noisy-digits), which it
rewrites; any other folder is refused and left as it is.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

#: the files this script writes under ``--out``: ``<class>/digit_<index>.png``
OWN_FILE = re.compile(r"digit_\d{4}\.png")
CLASSES = {str(k) for k in range(10)}


class OutputFolderError(ValueError):
    """``--out`` names something this script must not write into (or delete)."""


def written_by_this_script(out: Path) -> bool:
    """Whether ``out`` holds nothing but what :func:`make_noisy_digits` writes there: class
    folders ``0`` to ``9`` of ``digit_NNNN.png`` files (so it may be deleted and rewritten)."""
    for entry in out.iterdir():
        if entry.name not in CLASSES or entry.is_symlink() or not entry.is_dir():
            return False
        for item in entry.iterdir():
            if not OWN_FILE.fullmatch(item.name) or item.is_symlink() or not item.is_file():
                return False
    return True


def check_out(out: Path) -> None:
    """Raise :class:`OutputFolderError` unless ``out`` is new, an empty folder or a folder
    this script wrote."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputFolderError(f"--out {out} exists and is not a folder")
    if out.is_dir() and not written_by_this_script(out):
        raise OutputFolderError(
            f"{out} exists and is not empty (and holds files this script did not write): "
            "choose a new or empty folder")


def make_noisy_digits(out: Path, truth: Path, rate: float = 0.2, seed: int = 0) -> int:
    """Write the image folder and the truth CSV; return the number of flipped labels.

    ``out`` is refused (:class:`OutputFolderError`, nothing written) unless it is new, empty
    or a folder this script wrote, which is replaced."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be between 0 and 1")
    check_out(out)
    if truth.exists() and not truth.is_file():
        raise OutputFolderError(f"--truth {truth} exists and is not a file")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    true = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    n = len(true)
    flipped = rng.choice(n, size=round(rate * n), replace=False)
    given = true.copy()
    # a uniformly drawn OTHER class: add 1..9 modulo 10
    given[flipped] = (true[flipped] + rng.integers(1, 10, size=len(flipped))) % 10
    if out.exists():  # checked above: empty, or only this script's own files
        shutil.rmtree(out)
    truth.parent.mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for i in range(n):
        rel = f"{given[i]}/digit_{i:04d}.png"
        (out / str(given[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(out / rel)
        rows.append(f"{rel},{true[i]}")
    truth.write_text("\n".join(rows) + "\n")
    return len(flipped)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, write the folder and its truth; errors as one line, exit 2."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=here / "noisy-digits")
    parser.add_argument("--truth", type=Path, default=None,
                        help="the truth CSV [default: <out>-truth.csv, beside --out]")
    args = parser.parse_args(argv)
    if args.truth is None:  # never the bundled example's truth for another --out
        args.truth = args.out.parent / f"{args.out.name}-truth.csv"
    if not 0.0 <= args.rate <= 1.0:
        print("error: --rate must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        n = make_noisy_digits(args.out, args.truth, args.rate, args.seed)
    except (OutputFolderError, OSError) as error:
        text = error if isinstance(error, OutputFolderError) else (
            f"cannot write {error.filename}: {error.strerror}")
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} with {n} flipped labels; true labels in {args.truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
