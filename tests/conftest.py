"""Shared fixtures: small real image folders made from scikit-learn's bundled digits."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def load_script(path: Path) -> ModuleType:
    """Load a script of ``benchmarks/`` or ``examples/`` as a module named after its file,
    with its folder importable (its sibling scripts), as when it is run."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_digits_folder(
    root: Path, classes: tuple[int, ...] = (0, 1, 7), per_class: int = 40, flip: int = 6,
    size: int = 16, seed: int = 0,
) -> dict[str, str]:
    """Write digits of ``classes`` as RGB PNGs at ``size`` px in ImageFolder layout, with
    ``flip`` labels moved to another class. Returns {relative path: true class name}."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    truth: dict[str, str] = {}
    chosen = []
    for c in classes:
        idx = np.flatnonzero(digits.target == c)[:per_class]
        chosen += [(int(i), c) for i in idx]
    flipped = set(rng.choice(len(chosen), size=flip, replace=False).tolist())
    for k, (i, c) in enumerate(chosen):
        given = c
        if k in flipped:
            others = [o for o in classes if o != c]
            given = others[k % len(others)]
        img = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
        pil = Image.fromarray(img, mode="L").resize((size, size), Image.Resampling.BILINEAR)
        rel = f"{given}/img_{i:04d}.png"
        (root / str(given)).mkdir(parents=True, exist_ok=True)
        pil.convert("RGB").save(root / rel)
        truth[rel] = str(c)
    return truth


def symmetric_noise_predictions(
    seed: int = 0, n: int = 600, rate: float = 0.2, num_classes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``num_classes`` classes, about ``rate`` of the labels replaced by
    another class, and predictions that put 0.5 on the true class plus a Dirichlet(1)
    spread of the other 0.5. Returns ``(probs, labels)``."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, num_classes, n)
    labels = true.copy()
    wrong = rng.random(n) < rate
    labels[wrong] = (true[wrong] + rng.integers(1, num_classes, wrong.sum())) % num_classes
    probs = rng.dirichlet(np.ones(num_classes), n) * 0.5
    probs[np.arange(n), true] += 0.5
    return probs, labels


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def digits_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A 3-class, 120-image digits folder with 6 wrong labels, and its truth."""
    root = tmp_path / "images"
    truth = write_digits_folder(root)
    return root, truth


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep the decode cache of every test out of the user's home."""
    monkeypatch.setenv("NOISYCLEAN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
