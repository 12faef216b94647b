"""What each lever of the scan's scoring does, measured on one trained network per folder.

    python benchmarks/levers.py /tmp/cifar-sym20 /tmp/cifar-asym40 ... [--epochs N]

For each folder made by ``make_noisy.py``: train the scan's default network once (its
backbone, optimiser, one-cycle schedule and automatic epochs; plain cross-entropy, i.e.
``scan --correction none``), keep every epoch's
predictions on the unaugmented and the mirrored images, then score the same predictions
in several ways and report F1 (precision / recall) of the flags (clean probability below
0.5) and AUROC against the truth. Every row uses the same network, so the differences are
the scoring's alone: the loss of the last epoch (the plain recipe), the loss averaged over
epochs, flip TTA, the Beta mixture, per-class mixtures, the uncalibrated and the
class-calibrated margin, and the loss plus the calibrated margin (the scan's default).
The averages over epochs take the last 5 (all of them in a run of fewer, ``--epochs``
below 5, and their rows say how many).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from noisyclean.config import ScanConfig
from noisyclean.data.load import load_dataset
from noisyclean.mixture import fit_mixture, normalise_losses
from noisyclean.models import build_model
from noisyclean.progress import Progress
from noisyclean.scanning import _set_seed, auto_epochs
from noisyclean.signals import calibrated_margin, compute_signals, label_loss
from noisyclean.train.loop import make_learner, run_epochs
from noisyclean.train.methods.warmup import Warmup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import check_noisy_folder, fail, true_labels  # noqa: E402  (the sibling script's)

#: epochs of the rows that average the scores over the last epochs
AVERAGED_EPOCHS = 5


def record_predictions(folder: Path, epochs: int | None, seed: int) -> dict[str, np.ndarray]:
    """Train the scan's default network and keep each epoch's plain and mirrored softmax."""
    cfg = ScanConfig()
    data = load_dataset(folder / "images", use_cache=False)
    epochs = epochs or auto_epochs(len(data.paths))
    method = Warmup(data.data, 1, cfg.batch_size, seed, penalty=False, augment=True)
    _set_seed(seed)
    model = build_model(data.model, len(data.classes), None, cfg.width).to(data.device)
    learner = make_learner(
        model, cfg.lr, cfg.momentum, cfg.weight_decay, method.total_steps(epochs)
    )
    plain, mirrored = [], []

    @torch.no_grad()
    def record(epoch: int, stats: dict[str, float]) -> None:
        plain.append(compute_signals(learner.model, data.data, data.precision).probs)
        tta = compute_signals(learner.model, data.data, data.precision, tta=True).probs
        mirrored.append(2 * tta - plain[-1])

    run_epochs([learner], method, range(epochs), data.precision, Progress(quiet=True), record)
    return {"plain": np.array(plain), "mirrored": np.array(mirrored),
            "labels": data.labels, "true": true_labels(folder, data.paths, data.classes)}


def plain_gmm(score: np.ndarray, seed: int) -> np.ndarray:
    """The one-run DivideMix recipe: GMM on the min-max normalised score, raw posterior."""
    x = normalise_losses(score).reshape(-1, 1)
    gmm = GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed).fit(x)
    return gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]


def per_class(score: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """One GMM per given class."""
    out = np.ones(len(score))
    for c in np.unique(labels):
        mask = labels == c
        out[mask] = fit_mixture(normalise_losses(score[mask]), "gmm", seed).clean_prob
    return out


def uncalibrated_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``max_{k != y} p_k - p_y``."""
    rows = np.arange(len(labels))
    other = probs.copy()
    other[rows, labels] = -np.inf
    return other.max(1) - probs[rows, labels]


def levers(rec: dict[str, np.ndarray], seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, clean probability, ranking score) for every scoring variant."""
    y = rec["labels"]
    epochs = len(rec["plain"])

    def probs(epoch: int, tta: bool) -> np.ndarray:
        p = rec["plain"][epoch]
        return 0.5 * (p + rec["mirrored"][epoch]) if tta else p

    def avg(fn, last: int, tta: bool) -> np.ndarray:
        return np.mean([normalise_losses(fn(probs(e, tta), y))
                        for e in range(epochs - last, epochs)], axis=0)

    # the last AVERAGED_EPOCHS epochs, or every epoch of a shorter run
    k = min(AVERAGED_EPOCHS, epochs)
    over = f"averaged over {k} epoch{'s' if k != 1 else ''}"
    loss1 = avg(label_loss, 1, False)
    loss_avg = avg(label_loss, k, False)
    loss_tta = avg(label_loss, 1, True)
    margin_tta = avg(uncalibrated_margin, 1, True)
    cal_tta = avg(calibrated_margin, 1, True)
    both = normalise_losses(loss_tta + cal_tta)
    both_avg = normalise_losses(avg(label_loss, k, True) + avg(calibrated_margin, k, True))
    gmm = lambda s: fit_mixture(s, "gmm", seed).clean_prob  # noqa: E731
    bmm = lambda s: fit_mixture(s, "bmm", seed).clean_prob  # noqa: E731
    return [
        ("loss, last epoch, GMM raw posterior (the plain recipe)", plain_gmm(loss1, seed), loss1),
        ("loss, last epoch, GMM monotone", gmm(loss1), loss1),
        (f"loss {over}", gmm(loss_avg), loss_avg),
        ("loss with flip TTA", gmm(loss_tta), loss_tta),
        ("loss with flip TTA, BMM", bmm(loss_tta), loss_tta),
        ("loss with flip TTA, one GMM per class", per_class(loss_tta, y, seed), loss_tta),
        ("margin max_k p_k - p_y (TTA)", gmm(margin_tta), margin_tta),
        ("class-calibrated margin (TTA)", gmm(cal_tta), cal_tta),
        ("loss + calibrated margin (TTA): scan default, gmm", gmm(both), both),
        ("loss + calibrated margin (TTA), bmm", bmm(both), both),
        (f"loss + calibrated margin (TTA), {over}", gmm(both_avg), both_avg),
    ]


def main(argv: list[str] | None = None) -> int:
    """Train once per folder, score every lever, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        fail("--epochs must be 1 or more")
    for folder in args.folders:
        check_noisy_folder(folder)
    results: dict[str, list[str]] = {}
    names = []
    for folder in args.folders:
        rec = record_predictions(folder, args.epochs, args.seed)
        wrong = rec["labels"] != rec["true"]
        acc = float((rec["plain"][-1].argmax(1) == rec["true"]).mean())
        names.append(f"{folder.name} (noise {wrong.mean():.2f}, acc {acc:.2f})")
        for name, clean, score in levers(rec, args.seed):
            flag = clean < 0.5
            tp = int((flag & wrong).sum())
            precision, recall = tp / max(flag.sum(), 1), tp / max(wrong.sum(), 1)
            f1 = 2 * precision * recall / max(precision + recall, 1e-12)
            auroc = roc_auc_score(wrong, score)
            results.setdefault(name, []).append(
                f"{f1:.3f} ({precision:.2f}/{recall:.2f}) {auroc:.3f}")
        print(f"{folder}: done", file=sys.stderr, flush=True)
    print("| scoring | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name, cells in results.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
