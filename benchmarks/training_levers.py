"""What the scan's training does to its ranking, and where a mixture puts the cut.

    python benchmarks/training_levers.py /tmp/nb/asym40 /tmp/nb/worst \
        --variants ce,gce,penalty,mixup,ce@epochs=25,ce@width=48 --save /tmp/levers
    python benchmarks/training_levers.py /tmp/nb/sym20 ... --cut-rules --save /tmp/levers

Training levers (first form). For each folder made by ``make_noisy.py`` and each variant,
train the scan's default network (its backbone, optimiser, one-cycle schedule, automatic
epochs and seed) with the warm-up objective named, score its flip-averaged predictions
the scan's way (the loss plus the class-calibrated margin, GMM, flagged below a clean
probability of 0.5: the min-max score, ``scan --fusion minmax``, the scan's default when
these variants were measured; the default since 2026-12-04, ``hybrid``, flags as many
images from the top of the rank score instead), and report against the truth: F1 of the
flags, best-cut F1 (the highest F1 of any top-n cut of the ranking: what the ranking
allows, whatever the cut), AUROC, and the network's accuracy on the true labels of its
training images. Variants:

- ``ce``: cross-entropy, the scan's warm-up without its forward correction (the scan's
  default before forward correction; ``ce@forward=8`` is the default scan at 15 epochs
  before progressive resizing, which these variants do not use);
- ``gce``: generalized cross-entropy, q = 0.7 (Zhang & Sabuncu 2018);
- ``penalty``: cross-entropy plus DivideMix's confidence penalty (``scan --penalty``);
- ``mixup``: mixup with ``Beta(1, 1)`` (Zhang et al. 2018);
- ``elr``: cross-entropy plus early-learning regularisation (Liu et al. 2020), the
  paper's CIFAR-10 settings: a temporal ensemble of each image's predictions with momentum
  0.7 as its target, weight ``lam`` = 3;
- ``NAME@epochs=N`` / ``NAME@width=W`` / ``elr@lam=L``: another epoch count / width / ELR
  weight;
- ``ce@forward=E`` / ``ce@forwardfull=E``: from epoch E (0-based, so 8 of 15 trains the
  last 7 epochs this way), forward loss correction with the transition matrix the
  confident joint gives for the network's softmax on its training batches of epoch E - 1
  (as ``scan --correction forward`` since 2026-11-30; the figures in RESULTS.md before that
  date used a flip-averaged scoring pass at that point): its systematic flips
  (``structured_part``, as the scan) or all of it;
- ``NAME@prune=E`` (or ``E+E2+...``): at the start of epoch E, score every image with the
  network so far the scan's way and train the remaining epochs only on the images it does
  not flag (each epoch still takes as many steps as before, cycling through the kept
  images, so the schedule and the budget do not change). The final scoring covers every
  image.

Cut rules (``--cut-rules``). Read the ``ce`` predictions saved by a first run (``--save``;
the variant named exactly ``ce``, ``DIR/FOLDER-ce.npz``, which the first form writes with
``--variants ce``) and cut the same ranking in several ways: the scan's GMM, its Beta
mixture, a GMM with one variance shared by both components, the loss alone, a 3-component
GMM flagging its top component, and the top n at the calibrated confident joint's count
of wrong labels (overall, and per given class with its per-class counts). Two ceilings
close the table: the top n per class at the true per-class counts, and the best cut of
the ranking. No training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from noisyclean.confident_joint import (
    estimate_wrong_labels,
    structured_part,
    transition_matrix,
)
from noisyclean.config import ScanConfig
from noisyclean.data.load import load_dataset
from noisyclean.mixture import fit_mixture
from noisyclean.scanning import auto_epochs
from noisyclean.signals import compute_signals, noise_score
from noisyclean.train.loop import Precision
from noisyclean.train.losses import generalized_cross_entropy, mixup, mixup_cross_entropy
from noisyclean.train.methods.warmup import Warmup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import _train_network, best_cut_f1, fail, true_labels  # noqa: E402  (sibling's)

OBJECTIVES = ("ce", "gce", "penalty", "mixup", "elr")
#: ELR's temporal-ensemble momentum (the paper's CIFAR-10 value).
ELR_MOMENTUM = 0.7


def scan_flags(score: np.ndarray, seed: int) -> np.ndarray:
    """The scan's flags on a ``loss+margin`` score: a GMM's clean probability below 0.5."""
    return fit_mixture(score, "gmm", seed).clean_prob < 0.5


def early_learning_penalty(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Early-learning regularisation (Liu et al. 2020): the batch mean of
    ``log(1 - <t_i, p_i>)``, which falls as each prediction ``p_i`` moves towards its
    target ``t_i`` (the temporal ensemble of the image's earlier predictions)."""
    return torch.log(1.0 - (targets * probs).sum(dim=1)).mean()


class LeverWarmup(Warmup):
    """The scan's warm-up with another objective, and optional pruning (see the module
    docstring)."""

    def __init__(self, *args, objective: str = "ce", num_classes: int = 10,
                 elr_weight: float = 3.0,
                 prune_epochs: tuple[int, ...] = (), precision: Precision | None = None,
                 forward: tuple[int, bool] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.forward = forward
        self.flip_classes: int | None = None
        self.elr_weight = elr_weight
        self.prune_epochs = set(prune_epochs)
        self.precision = precision or Precision(torch.device("cpu"))
        self.size = len(self.indices)
        self.model: torch.nn.Module | None = None
        self.pruned: list[int] = []
        if objective == "elr":
            self.targets = torch.zeros(len(self.data), num_classes,
                                       device=self.data.labels.device)
        if forward is not None:  # the estimate reads the epoch before's training softmax
            self.record_predictions(forward[0] - 1, num_classes)

    def steps_per_epoch(self, epoch: int) -> int:
        """As many steps as an epoch over every image, pruned or not."""
        return (self.size // self.batch_size) * self.n_learners

    def start_epoch(self, epoch: int) -> None:
        """At the forward-correction epoch, estimate the transition matrix as the scan does,
        from the training softmax of the epoch before (its systematic flips, or all of it
        for ``forwardfull``); at a pruning epoch, keep only the images the scan's scoring
        does not flag."""
        forward = self.forward is not None and epoch == self.forward[0]
        if self.model is None or not (forward or epoch in self.prune_epochs):
            return
        labels = self.data.labels.cpu().numpy()
        if forward:  # as the scan does: the previous epoch's training softmax
            recorded, seen = self.recorded_predictions(0)
            transition = transition_matrix(recorded[seen], labels[seen])
            if not self.forward[1]:
                transition = structured_part(transition)
            self.flip_classes = self.correct_with(0, transition)
        if epoch not in self.prune_epochs:
            return
        probs = compute_signals(self.model, self.data, self.precision, tta=True).probs
        score = noise_score(probs, labels, "loss+margin")
        flagged = scan_flags(score, 0)
        self.pruned.append(int(flagged.sum()))
        self.indices = torch.as_tensor(np.flatnonzero(~flagged))

    def batches(self, epoch: int):
        """The warm-up's batches; once pruned, shuffled passes over the kept images, as
        many batches as an unpruned epoch."""
        if len(self.indices) == self.size:
            yield from super().batches(epoch)
            return
        per_epoch = self.size // self.batch_size
        passes = -(-per_epoch * self.batch_size // len(self.indices))
        order = torch.cat([self.indices[torch.randperm(len(self.indices), generator=self.generator)]
                           for _ in range(passes)])
        for step in range(per_epoch):
            yield 0, order[step * self.batch_size:(step + 1) * self.batch_size]

    def loss(self, learner_index, model, batch, epoch):
        """One batch of the chosen objective. ``ce`` and ``penalty`` are the warm-up's own
        (``penalty`` is its confidence-penalty flag); ``gce``, ``mixup`` and ``elr`` log
        their own value (ELR: its cross-entropy part) and the batch accuracy."""
        self.model = model
        if self.objective in ("ce", "penalty"):
            return super().loss(learner_index, model, batch, epoch)
        x = self.data.batch(batch, augment=self.augment, generator=self.generator)
        y = self.data.labels[batch.to(self.data.labels.device)]
        if self.objective == "elr":
            logits = model(x).float()
            probs = logits.softmax(1).clamp(1e-4, 1.0 - 1e-4)
            rows = batch.to(self.targets.device)
            with torch.no_grad():
                seen = probs / probs.sum(1, keepdim=True)
                self.targets[rows] = ELR_MOMENTUM * self.targets[rows] + (1 - ELR_MOMENTUM) * seen
            logged = F.cross_entropy(logits, y)
            loss = logged + self.elr_weight * early_learning_penalty(probs, self.targets[rows])
        elif self.objective == "mixup":
            lam = float(np.random.beta(1.0, 1.0))
            perm = torch.randperm(len(y))
            logits = model(mixup(x, lam, perm)).float()
            loss = logged = mixup_cross_entropy(logits, y, lam, perm).mean()
        else:
            logits = model(x).float()
            loss = logged = generalized_cross_entropy(logits, y, 0.7).mean()
        n = len(batch)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).sum().item()
        return loss, {"loss": logged.item() * n, "acc": acc, "count": n}


def parse_variant(spec: str) -> tuple[str, dict]:
    """``"ce@epochs=25@prune=5+10"`` -> ``("ce", {"epochs": 25, "prune": (5, 10)})``."""
    objective, *options = spec.split("@")
    if objective not in OBJECTIVES:
        raise SystemExit(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    settings: dict = {}
    for option in options:
        key, _, value = option.partition("=")
        if key in ("epochs", "width"):
            settings[key] = int(value)
        elif key == "lam" and objective == "elr":
            settings[key] = float(value)
        elif key == "prune":
            settings[key] = tuple(int(v) for v in value.split("+"))
        elif key in ("forward", "forwardfull") and objective in ("ce", "penalty"):
            settings["forward"] = (int(value), key == "forwardfull")
        else:
            raise SystemExit(f"unknown variant option {key!r} (epochs, width, prune; lam for "
                             "elr; forward, forwardfull for ce and penalty)")
    return objective, settings


def train_predictions(folder: Path, spec: str, seed: int) -> dict[str, np.ndarray]:
    """Train one variant on ``folder`` and return its flip-averaged probabilities."""
    objective, settings = parse_variant(spec)
    data = load_dataset(folder / "images", use_cache=False)
    epochs = settings.get("epochs") or auto_epochs(len(data.paths))
    method = LeverWarmup(data.data, 1, ScanConfig().batch_size, seed, augment=True,
                         penalty=objective == "penalty", objective=objective,
                         num_classes=len(data.classes),
                         elr_weight=settings.get("lam", 3.0),
                         prune_epochs=settings.get("prune", ()), precision=data.precision,
                         forward=settings.get("forward"))
    model = _train_network(data, data.classes, None, epochs, seed, method=method,
                           width=settings.get("width"))
    probs = compute_signals(model, data.data, data.precision, tta=True).probs
    return {"probs": probs, "labels": np.asarray(data.labels),
            "true": true_labels(folder, data.paths, data.classes),
            "pruned": np.asarray(method.pruned, dtype=np.int64),
            "flip_classes": np.asarray(-1 if method.flip_classes is None
                                       else method.flip_classes)}


def f1_of(flag: np.ndarray, wrong: np.ndarray) -> float:
    """F1 of boolean flags against the wrong-label mask."""
    tp = float((flag & wrong).sum())
    return 2.0 * tp / max(float(flag.sum() + wrong.sum()), 1.0)


def print_table(corner: str, columns: list[str], rows: dict[str, list[str]]) -> None:
    """A markdown table: one row per key, one column per folder."""
    print(f"| {corner} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def lever_cell(rec: dict[str, np.ndarray], seed: int) -> str:
    """The scan's scoring of one variant's predictions, as a table cell."""
    probs, labels = rec["probs"], rec["labels"]
    wrong = labels != rec["true"]
    score = noise_score(probs, labels, "loss+margin")
    flag = scan_flags(score, seed)
    acc = float((probs.argmax(1) == rec["true"]).mean())
    return (f"{f1_of(flag, wrong):.3f} / {best_cut_f1(wrong, score)[0]:.3f} / "
            f"{roc_auc_score(wrong, score):.3f} / {acc:.2f}")


def _gmm_noisy(x: np.ndarray, components: int, seed: int, **kwargs) -> np.ndarray:
    """Flags of the highest-mean component of a GMM on ``x``."""
    gmm = GaussianMixture(components, reg_covar=5e-4, random_state=seed, **kwargs)
    post = gmm.fit(x[:, None]).predict_proba(x[:, None])
    return post[:, int(np.argmax(gmm.means_.ravel()))] > 0.5


def top_rows(score: np.ndarray, count: int) -> np.ndarray:
    """Flags of the ``count`` highest scores."""
    flag = np.zeros(len(score), dtype=bool)
    flag[np.argsort(-score, kind="stable")[:count]] = True
    return flag


def top_rows_per_class(score: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Flags of the ``counts[k]`` highest scores among the samples labelled ``k``."""
    flag = np.zeros(len(score), dtype=bool)
    for k, count in enumerate(np.rint(counts).astype(int)):
        members = np.flatnonzero(labels == k)
        flag[members[top_rows(score[members], count)]] = True
    return flag


def cut_rules(both: np.ndarray, loss: np.ndarray, seed: int,
              probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Flags of each cut rule, given one network's ``loss+margin`` and ``loss`` scores
    (:func:`~noisyclean.signals.noise_score`) and its probabilities."""
    names = [str(k) for k in range(probs.shape[1])]
    estimate = estimate_wrong_labels(probs, labels, names)
    sizes = np.bincount(labels, minlength=len(names))
    per_class = np.array([(estimate["per_class"][k] or 0.0) for k in names]) * sizes
    return {
        "loss + margin, GMM (scan default)": scan_flags(both, seed),
        "loss + margin, BMM": fit_mixture(both, "bmm", seed).clean_prob < 0.5,
        "loss + margin, GMM with one shared variance":
            _gmm_noisy(both, 2, seed, covariance_type="tied"),
        "loss + margin, 3-component GMM, top component": _gmm_noisy(both, 3, seed, max_iter=200),
        "loss alone, GMM (`--signal loss`)": fit_mixture(loss, "gmm", seed).clean_prob < 0.5,
        "loss + margin, top n, n = the confident joint's estimate":
            top_rows(both, estimate["count"]),
        "loss + margin, top n_k per class, n_k = the confident joint's":
            top_rows_per_class(both, labels, per_class),
    }


def main(argv: list[str] | None = None) -> int:
    """Train and score each variant, or (``--cut-rules``) cut the saved ``ce`` predictions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--variants", default="ce",
                        help="comma-separated, e.g. ce,gce,ce@epochs=25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None,
                        help="keep each variant's predictions here (FOLDER-VARIANT.npz)")
    parser.add_argument("--cut-rules", action="store_true",
                        help="cut the saved ce predictions in several ways; no training")
    args = parser.parse_args(argv)
    names = [folder.name for folder in args.folders]
    if args.cut_rules:
        if args.save is None:
            parser.error("--cut-rules reads the predictions of --save")
        for folder in args.folders:  # every file before the first is read
            path = args.save / f"{folder.name}-ce.npz"
            if not path.is_file():
                kept = sorted(p.name for p in args.save.glob(f"{folder.name}-*.npz"))
                fail(f"{path} not found: --cut-rules reads the predictions of the variant "
                     f"named exactly 'ce' (a run with --variants ce --save {args.save}); "
                     + (f"saved there for {folder.name}: {', '.join(kept)}" if kept else
                        f"none saved there for {folder.name}"))
        rows: dict[str, list[str]] = {}
        wrong_counts = []
        for folder in args.folders:
            saved = np.load(args.save / f"{folder.name}-ce.npz")
            wrong = saved["labels"] != saved["true"]
            wrong_counts.append(int(wrong.sum()))
            score = noise_score(saved["probs"], saved["labels"], "loss+margin")
            loss = noise_score(saved["probs"], saved["labels"], "loss")
            rules = cut_rules(score, loss, args.seed, saved["probs"], saved["labels"])
            true_counts = np.bincount(saved["labels"][wrong], minlength=saved["probs"].shape[1])
            rules["ceiling: top n_k per class, n_k = the true counts"] = top_rows_per_class(
                score, saved["labels"], true_counts)
            for rule, flag in rules.items():
                rows.setdefault(rule, []).append(f"{f1_of(flag, wrong):.3f} ({int(flag.sum())})")
            rows.setdefault("ceiling: best cut of the default ranking", []).append(
                f"{best_cut_f1(wrong, score)[0]:.3f}")
        columns = [f"{n} ({w} wrong)" for n, w in zip(names, wrong_counts, strict=True)]
        print_table("cut rule: F1 (flags)", columns, rows)
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants:
        fail("--variants names no variant (e.g. ce,gce,ce@epochs=25)")
    for spec in variants:
        parse_variant(spec)
    if args.save is not None:  # the folder now, before any training
        try:
            args.save.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"--save {args.save}: cannot create that folder ({error.strerror})")
    cells: dict[str, list[str]] = {spec: [] for spec in variants}
    for folder in args.folders:
        for spec in variants:
            rec = train_predictions(folder, spec, args.seed)
            if args.save is not None:
                np.savez(args.save / f"{folder.name}-{spec}.npz", **rec)
            cells[spec].append(lever_cell(rec, args.seed))
            pruned = f" (pruned {'+'.join(map(str, rec['pruned']))})" if len(rec["pruned"]) else ""
            flips = int(rec["flip_classes"])
            corrected = f" (classes with flips: {flips})" if flips >= 0 else ""
            print(f"{folder} {spec}: {cells[spec][-1]}{pruned}{corrected}", file=sys.stderr,
                  flush=True)
    print_table("warm-up: F1 / best-cut F1 / AUROC / acc", names, cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
