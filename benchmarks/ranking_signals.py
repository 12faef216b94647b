"""Two more rankings from the scan's own network, next to the default: the labels of each
image's nearest neighbours in the network's feature space, and the network's predictions
during training averaged over epochs.

For each folder, one network is trained exactly as the scan trains it (the default
backbone, one-cycle SGD, the automatic epochs, ``--seed``; as it did before progressive
resizing: every epoch at full resolution), while a forward hook keeps
every image's softmax from the training steps (augmented, train mode), once per epoch.
After training come the scan's flip-averaged probabilities ``p`` and the flip-averaged
features before the classifier. Every row is then scored the scan's way (the normalised
loss plus the class-calibrated margin of some probabilities, a two-component GMM, flagged
below a clean probability of 0.5; this is the min-max score, ``scan --fusion minmax``.
The scan's default since 2026-12-04, ``hybrid``, flags as many images but takes them from
the top of the rank score, so ``default`` here is the scan's ranking as it was when these
rows were measured, and it still reproduces the tables recorded in RESULTS.md):

- ``default``: ``p`` itself (the scan's figures);
- ``kNN k=K, blend A``: ``(1 - A) p + A q``, where ``q`` is the share of each label among
  the image's ``K`` nearest other images (cosine similarity of the features); the label
  agreement of neighbours is the signal of SimiFeat (Zhu et al. 2022) and Deep k-NN
  (Bahri et al. 2020);
- ``training probabilities, epochs E-last``: the training-step softmax averaged over those
  epochs (``p`` for an image a dropped last batch left out), alone and averaged with
  ``p``; early predictions follow the clean majority, which is what early-learning
  regularisation builds on.

Cells: F1 of the flags / best-cut F1 / AUROC. Example::

    python benchmarks/ranking_signals.py /tmp/nb/asym40 /tmp/nb/worst
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from noisyclean.config import ScanConfig
from noisyclean.data.load import load_dataset
from noisyclean.scanning import auto_epochs
from noisyclean.signals import compute_signals, eval_batch_size, noise_score
from noisyclean.train.methods.warmup import Warmup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import _train_network, best_cut_f1, true_labels  # noqa: E402  (the siblings')
from training_levers import f1_of, print_table, scan_flags  # noqa: E402

NEIGHBOURS = (10, 30, 100)
BLENDS = (0.3, 0.5)
FIRST_EPOCHS = (1, 8, 13)


class RecordingWarmup(Warmup):
    """The scan's warm-up, unchanged, keeping each training step's softmax per image and
    epoch in ``history`` (``(epochs, n, C)``, NaN where an image was not drawn)."""

    def __init__(self, *args, epochs: int, num_classes: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.history = np.full((epochs, len(self.data), num_classes), np.nan, np.float32)
        self._step: tuple[torch.Tensor, int] | None = None
        self._hooked: set[int] = set()

    def _record(self, module: torch.nn.Module, inputs, output: torch.Tensor) -> None:
        if module.training and self._step is not None:
            batch, epoch = self._step
            self.history[epoch, batch.numpy()] = output.detach().float().softmax(1).cpu().numpy()

    def loss(self, learner_index, model, batch, epoch):
        """The warm-up's loss; the hook records the forward pass it makes."""
        if id(model) not in self._hooked:
            model.register_forward_hook(self._record)
            self._hooked.add(id(model))
        self._step = (batch.cpu(), epoch)
        try:
            return super().loss(learner_index, model, batch, epoch)
        finally:
            self._step = None


@torch.no_grad()
def flip_averaged_features(model: torch.nn.Module, data, precision) -> np.ndarray:
    """``model.features`` of every image, averaged with its mirror image (eval mode)."""
    model.eval()
    size = eval_batch_size(data.device)
    parts = []
    for start in range(0, len(data), size):
        idx = torch.arange(start, min(start + size, len(data)))
        with precision.autocast():
            both = model.features(data.batch(idx)) + model.features(data.flipped(idx))
        parts.append(0.5 * both.float().cpu().numpy())
    return np.concatenate(parts)


def neighbour_labels(features: np.ndarray, labels: np.ndarray, k: int,
                     num_classes: int) -> np.ndarray:
    """Share of each label among each image's ``k`` nearest other images (cosine)."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    return np.eye(num_classes)[labels[nearest]].mean(axis=1)


def rankings(probs: np.ndarray, features: np.ndarray, history: np.ndarray,
             labels: np.ndarray) -> dict[str, np.ndarray]:
    """The noise score of each row (see the module docstring)."""
    num_classes = probs.shape[1]
    rows = {"default (the scan's final probabilities)": noise_score(probs, labels)}
    for k in NEIGHBOURS:
        q = neighbour_labels(features, labels, min(k, len(labels) - 1), num_classes)
        for share in BLENDS:
            rows[f"kNN k={k}, blend {share}"] = noise_score((1 - share) * probs + share * q,
                                                            labels)
    epochs = history.shape[0]
    for first in (e for e in FIRST_EPOCHS if e <= epochs):
        with warnings.catch_warnings():  # images never drawn: an all-NaN mean
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(history[first - 1:], axis=0)
        mean = np.where(np.isnan(mean), probs, mean)
        span = f"epochs {first}-{epochs}"
        rows[f"training probabilities, {span}"] = noise_score(mean, labels)
        rows[f"training probabilities, {span}, averaged with the final"] = noise_score(
            0.5 * (mean + probs), labels)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the scan's automatic epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cells: dict[str, list[str]] = {}
    for folder in args.folders:
        data = load_dataset(folder / "images", use_cache=False)
        epochs = args.epochs or auto_epochs(len(data.paths))
        labels = np.asarray(data.labels)
        method = RecordingWarmup(data.data, 1, ScanConfig().batch_size, args.seed,
                                 augment=True, epochs=epochs, num_classes=len(data.classes))
        model = _train_network(data, data.classes, None, epochs, args.seed, method=method)
        if not hasattr(model, "features"):
            raise SystemExit(f"{data.model} has no .features; this script needs small-cnn")
        probs = compute_signals(model, data.data, data.precision, tta=True).probs
        features = flip_averaged_features(model, data.data, data.precision)
        wrong = labels != true_labels(folder, data.paths, data.classes)
        for name, score in rankings(probs, features, method.history, labels).items():
            flag = scan_flags(score, args.seed)
            cells.setdefault(name, []).append(
                f"{f1_of(flag, wrong):.3f} / {best_cut_f1(wrong, score)[0]:.3f} / "
                f"{roc_auc_score(wrong, score):.3f}")
        print(f"{folder} done", file=sys.stderr, flush=True)
    print_table("ranking: F1 / best-cut F1 / AUROC", [f.name for f in args.folders], cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
