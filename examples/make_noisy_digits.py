"""Write examples/noisy-digits/: scikit-learn's bundled digits (1,797 8x8 greyscale images)
as PNG files in ImageFolder layout, with 20% of the labels flipped uniformly at random to
another class. The true labels go to examples/noisy-digits-truth.csv (path,label).

    python examples/make_noisy_digits.py [--rate 0.2] [--seed 0] [--out examples/noisy-digits]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def make_noisy_digits(out: Path, truth: Path, rate: float = 0.2, seed: int = 0) -> int:
    """Write the image folder and the truth CSV; return the number of flipped labels."""
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    true = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    n = len(true)
    flipped = rng.choice(n, size=round(rate * n), replace=False)
    given = true.copy()
    # a uniformly drawn OTHER class: add 1..9 modulo 10
    given[flipped] = (true[flipped] + rng.integers(1, 10, size=len(flipped))) % 10
    if out.exists():
        shutil.rmtree(out)
    rows = ["path,label"]
    for i in range(n):
        rel = f"{given[i]}/digit_{i:04d}.png"
        (out / str(given[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(out / rel)
        rows.append(f"{rel},{true[i]}")
    truth.write_text("\n".join(rows) + "\n")
    return len(flipped)


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=here / "noisy-digits")
    parser.add_argument("--truth", type=Path, default=here / "noisy-digits-truth.csv")
    args = parser.parse_args()
    n = make_noisy_digits(args.out, args.truth, args.rate, args.seed)
    print(f"wrote {args.out} with {n} flipped labels; true labels in {args.truth}")


if __name__ == "__main__":
    main()
