"""Co-divide (DivideMix, Algorithm 1 lines 3-5): each network's per-sample losses are fit
with a two-component mixture, and the clean probabilities it gives divide the data of the
OTHER network into a labelled set (``w >= tau``) and an unlabelled set.

The reference code trusts every division. Here a division is guarded (and every guard that
acts says so in :attr:`Division.events`):

* a mixture that did not converge (or could not be fit: fewer than two distinct losses) is
  reported; its posterior is used as it stands, as DivideMix does;
* a labelled or unlabelled set smaller than ``min_size`` is topped up with the samples of
  highest (labelled) or lowest (unlabelled) clean probability, so that neither side of the
  MixMatch batch is ever empty;
* a class whose labelled samples fall below ``min_per_class`` (a class vanishing from the
  labelled set) gets its samples of highest clean probability back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..mixture import MixtureFit, fit_mixture, normalise_losses


@dataclass
class Division:
    """The division that one network trains on.

    Attributes:
        clean_prob: ``(n,)`` clean probability ``w`` of every sample (from the other
            network's mixture).
        labelled: sorted indices of the labelled set.
        unlabelled: sorted indices of the unlabelled set.
        events: what the guards did, one sentence each.
        fit: the mixture fit the clean probabilities came from.
    """

    clean_prob: np.ndarray
    labelled: np.ndarray
    unlabelled: np.ndarray
    events: list[str] = field(default_factory=list)
    fit: MixtureFit | None = None


def divide_by_threshold(clean_prob: np.ndarray, tau: float) -> np.ndarray:
    """The plain division: ``True`` (labelled) where ``clean_prob >= tau``."""
    return np.asarray(clean_prob, dtype=np.float64) >= tau


def default_min_size(n: int, batch_size: int) -> int:
    """Smallest labelled or unlabelled set a guard allows: one batch, or 5% of the data when
    that is less, at least 4 samples (never more than half the data)."""
    return int(min(n // 2, max(4, min(batch_size, n // 20))))


def guard_division(
    clean_prob: np.ndarray,
    labelled_mask: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    min_size: int,
    min_per_class: int,
) -> tuple[np.ndarray, list[str]]:
    """Repair a division that would leave a set too small or a class without labels.

    Args:
        clean_prob: ``(n,)`` clean probabilities.
        labelled_mask: ``(n,)`` bool, the plain division (:func:`divide_by_threshold`).
        labels: ``(n,)`` given label indices.
        classes: class names (for the messages).
        min_size: smallest allowed labelled and unlabelled set.
        min_per_class: smallest number of labelled samples a class with samples keeps
            (capped at the class's size).

    Returns:
        The repaired mask and one message per guard that acted. Order: the labelled set is
        topped up, then vanishing classes are restored, then the unlabelled set is topped up
        with the least clean labelled samples whose class keeps ``min_per_class``, and,
        where that is not enough (classes of one or two images), with the least clean of
        any class. ``min_size`` is at most half the samples, so both sets reach it.
    """
    w = np.asarray(clean_prob, dtype=np.float64)
    mask = np.asarray(labelled_mask, dtype=bool).copy()
    labels = np.asarray(labels, dtype=np.int64)
    n = len(w)
    min_size = int(min(min_size, n // 2))
    events: list[str] = []
    order = np.argsort(-w, kind="stable")  # most likely clean first

    have = int(mask.sum())
    if have < min_size:
        mask[order[:min_size]] = True
        events.append(
            f"labelled set had {have} sample(s), fewer than {min_size}: took the {min_size} "
            "with the highest clean probability"
        )

    counts = np.bincount(labels, minlength=len(classes))
    need = np.minimum(counts, min_per_class)
    for c in np.flatnonzero(counts):
        in_class = labels == c
        have_c = int((mask & in_class).sum())
        if have_c < need[c]:
            missing = int(need[c] - have_c)
            candidates = np.flatnonzero(in_class & ~mask)
            best = candidates[np.argsort(-w[candidates], kind="stable")[:missing]]
            mask[best] = True
            events.append(
                f"class {classes[c]!r} kept {have_c} labelled sample(s): added back its "
                f"{len(best)} with the highest clean probability"
            )

    have_u = int((~mask).sum())
    if have_u < min_size:
        labelled_counts = np.bincount(labels[mask], minlength=len(classes))
        moved = 0
        for i in order[::-1]:  # least likely clean first
            if have_u + moved >= min_size:
                break
            if mask[i] and labelled_counts[labels[i]] > need[labels[i]]:
                mask[i] = False
                labelled_counts[labels[i]] -= 1
                moved += 1
        events.append(
            f"unlabelled set had {have_u} sample(s), fewer than {min_size}: moved the {moved} "
            "labelled one(s) with the lowest clean probability into it"
        )
        if have_u + moved < min_size:
            # every class is down to its min_per_class (classes of one image each): an empty
            # unlabelled set would make the MixMatch loss NaN, so classes give way
            more = 0
            for i in order[::-1]:
                if have_u + moved + more >= min_size:
                    break
                if mask[i]:
                    mask[i] = False
                    more += 1
            events.append(
                f"moved {more} more, though their classes then keep fewer than "
                f"{min_per_class} labelled sample(s): every class was down to that"
            )
    return mask, events


def describe_fit(fit: MixtureFit, network: int) -> list[str]:
    """Messages for a mixture fit that did not converge or could not be fit."""
    if fit.params.get("degenerate"):
        return [
            f"network {network}'s losses could not be split (fewer than two distinct "
            "values): every sample counts as clean"
        ]
    if not fit.params.get("converged", True):
        return [
            f"the {fit.kind} fit to network {network}'s losses did not converge in "
            f"{fit.params.get('n_iter')} iterations; its posterior is used as it stands"
        ]
    return []


def co_divide(
    fit_inputs: list[np.ndarray],
    labels: np.ndarray,
    classes: list[str],
    tau: float,
    mixture: str = "gmm",
    seed: int = 0,
    min_size: int = 4,
    min_per_class: int = 1,
) -> list[Division]:
    """Divide the data of each of two networks by the OTHER network's mixture.

    Args:
        fit_inputs: per network, ``(n,)`` normalised per-sample losses (eval mode,
            unaugmented; see :func:`~noisyclean.mixture.normalise_losses`).
        labels: ``(n,)`` given label indices.
        classes: class names.
        tau: clean-probability threshold of the labelled set.
        mixture: ``gmm`` or ``bmm``.
        seed: the mixture's random state.
        min_size: smallest labelled / unlabelled set (:func:`guard_division`).
        min_per_class: smallest labelled count per class (:func:`guard_division`).

    Returns:
        ``[division for network 1, division for network 2]``: network ``k`` trains on the
        division made by network ``1 - k``'s mixture.
    """
    fits = [fit_mixture(normalise_losses(x), mixture, random_state=seed) for x in fit_inputs]
    divisions = []
    for k in range(len(fits)):
        source = fits[(k + 1) % len(fits)]
        source_net = (k + 1) % len(fits) + 1
        mask, events = guard_division(
            source.clean_prob,
            divide_by_threshold(source.clean_prob, tau),
            labels,
            classes,
            min_size,
            min_per_class,
        )
        divisions.append(
            Division(
                clean_prob=source.clean_prob,
                labelled=np.flatnonzero(mask),
                unlabelled=np.flatnonzero(~mask),
                events=describe_fit(source, source_net) + events,
                fit=source,
            )
        )
    return divisions
