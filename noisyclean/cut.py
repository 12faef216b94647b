"""Where to cut: how many samples a scan flags.

The mixture fit to the ``loss+margin`` score ranks samples well but flags too many at low
noise rates (20% symmetric noise: about 1.7 flags per wrong label), while a mixture fit to
the loss alone counts better there and far too few on human label noise. The
``arbitrated`` cut keeps the ``loss+margin`` ranking and takes, of the two mixtures'
counts, the one closer to a third, independent estimate: the calibrated confident joint's
count of wrong labels (:func:`~noisyclean.confident_joint.estimate_wrong_labels`). When
both mixtures flag more than that estimate, both are taken to over-flag (their known
failure at low noise rates) and the cut goes halfway between the nearer count and the
estimate, which itself under-counts where the network fits well. When the two counts
agree within 20% (:func:`counts_agree`) and the estimate is not below both, the cut takes
the lower count: at high symmetric noise the mixtures agree that closely and the estimate
over-counts, so the nearer count was the higher one, though the lower was nearer the
truth, while on human label noise, where the loss mixture's count is far too low, the two
differ by 44% or more. The clean probabilities are then re-assigned by rank
(:func:`move_cut`) so that exactly that many fall below the threshold. Measured in
``benchmarks/RESULTS.md`` ("Where to cut: two mixtures' counts and the confident joint",
"The cut when both mixtures flag more than the estimate", and "The lower count when the
two mixtures agree").

When the estimate lies between two counts that do not agree, close to halfway, the choice
is a close call: a small change in training moves the estimate across the middle and the
count by the whole gap between the mixtures (on CIFAR-10N worst, 2,845 flags instead of
4,227 for 4,006 wrong labels). :func:`close_call` says when; the scan records it and tells
the user which count the other side would have taken, so a reviewer can read on down the
ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``scan --cut`` values.
CUTS = ("arbitrated", "mixture")

#: A cut is a close call when the estimate lies between the two mixtures' counts and within
#: this share of their gap from halfway (between 40% and 60% of the way from the lower to
#: the higher count). Over 72 saved CIFAR-10 scans the two that took the lower count on
#: CIFAR-10N worst (F1 -0.07) lay at 46% and 49%; the other 30 worst scans at 53-84%
#: (``benchmarks/RESULTS.md``, "How close the arbitrated cut's calls are").
CLOSE_CALL_BAND = 0.1


#: The two mixtures' counts agree when the higher is less than this many times the lower.
#: Over 69 saved CIFAR-10 and Fashion-MNIST scans the higher was 1.02-1.17 times the lower
#: at 50% symmetric noise, and at least 1.26 times on every other setting (sym 20%, asym
#: 40%, CIFAR-10N) but where the estimate was below both counts (the midpoint rule's
#: case); rule G of ``benchmarks/RESULTS.md``, "The lower count when the two mixtures
#: agree", was written with this value before its check on nine fresh folders.
AGREEMENT = 1.2


def effective_cut(cut: str, signal: str) -> str:
    """``cut``, except that the ``arbitrated`` cut (which weighs a mixture on the loss alone
    against the one on ``loss+margin``) applies to ``--signal loss+margin`` only; other
    signals are cut by their mixture."""
    return cut if signal == "loss+margin" else "mixture"


def nearer_choice(n_mixture: int, n_loss: int, n_estimate: int) -> tuple[str, int]:
    """Of the two mixtures' counts, the one nearer the confident joint's estimate:
    ``("mixture", n_mixture)`` (also on a tie) or ``("loss_mixture", n_loss)``.

    Args:
        n_mixture: samples the mixture on the scan's score flags.
        n_loss: samples a mixture of the same kind on the loss alone flags.
        n_estimate: the calibrated confident joint's count of wrong labels.
    """
    if abs(n_mixture - n_estimate) <= abs(n_loss - n_estimate):
        return "mixture", n_mixture
    return "loss_mixture", n_loss


def counts_agree(n_mixture: int, n_loss: int) -> bool:
    """Whether the two mixtures' counts agree: they differ (equal counts leave nothing to
    choose), and the higher is less than :data:`AGREEMENT` times the lower.

    Args:
        n_mixture: samples the mixture on the scan's score flags.
        n_loss: samples a mixture of the same kind on the loss alone flags.
    """
    low, high = sorted((n_mixture, n_loss))
    return low < high < AGREEMENT * low


def arbitrated_choice(n_mixture: int, n_loss: int, n_estimate: int) -> tuple[str, int]:
    """How many samples the arbitrated cut flags, and by which rule.

    Of the two mixtures' counts, the one nearer the confident joint's estimate is taken
    (:func:`nearer_choice`).
    When both counts are above the estimate, both mixtures are taken to over-flag and the
    estimate to under-count, and the cut goes halfway between the nearer count and the
    estimate (``"midpoint"``, rounded down). Otherwise, when the two counts agree
    (:func:`counts_agree`), the lower is taken (``"lower"``), wherever the estimate lies.

    Args:
        n_mixture: samples the mixture on the scan's score flags.
        n_loss: samples a mixture of the same kind on the loss alone flags.
        n_estimate: the calibrated confident joint's count of wrong labels.

    Returns:
        ``(rule, count)``.
    """
    nearer, n_nearer = nearer_choice(n_mixture, n_loss, n_estimate)
    if n_estimate < min(n_mixture, n_loss):
        return "midpoint", (n_nearer + n_estimate) // 2
    if counts_agree(n_mixture, n_loss):
        return "lower", min(n_mixture, n_loss)
    return nearer, n_nearer


def estimate_position(n_mixture: int, n_loss: int, n_estimate: int) -> float | None:
    """Where the confident joint's estimate lies between the two mixtures' counts: 0 at the
    lower count, 1 at the higher, below 0 or above 1 outside them; ``None`` when the two
    counts are equal.

    Args:
        n_mixture: samples the mixture on the scan's score flags.
        n_loss: samples a mixture of the same kind on the loss alone flags.
        n_estimate: the calibrated confident joint's count of wrong labels.
    """
    low, high = sorted((n_mixture, n_loss))
    if high == low:
        return None
    return (n_estimate - low) / (high - low)


def close_call(
    n_mixture: int, n_loss: int, n_estimate: int, band: float = CLOSE_CALL_BAND
) -> int | None:
    """The count the arbitrated cut would have taken with the estimate on the other side of
    halfway between the two mixtures' counts, when it lies within ``band`` of halfway
    (:data:`CLOSE_CALL_BAND`); ``None`` when the call was not close, or when the two counts
    agree (:func:`counts_agree`: the lower is taken wherever the estimate lies).

    Args:
        n_mixture: samples the mixture on the scan's score flags.
        n_loss: samples a mixture of the same kind on the loss alone flags.
        n_estimate: the calibrated confident joint's count of wrong labels.
        band: how far from halfway, as a share of the gap between the counts, still counts
            as close.
    """
    low, high = sorted((n_mixture, n_loss))
    # |position - 1/2| < band, in the counts themselves (no rounding at the band's edges)
    if (not low < n_estimate < high or counts_agree(n_mixture, n_loss)
            or abs(2 * n_estimate - low - high) >= 2 * band * (high - low)):
        return None
    _, taken = nearer_choice(n_mixture, n_loss, n_estimate)
    return n_loss if taken == n_mixture else n_mixture


def arbitrated_count(n_mixture: int, n_loss: int, n_estimate: int) -> int:
    """The count the arbitrated cut flags (:func:`arbitrated_choice`).

    Args:
        n_mixture: samples the mixture on the scan's score flags.
        n_loss: samples a mixture of the same kind on the loss alone flags.
        n_estimate: the calibrated confident joint's count of wrong labels.
    """
    return arbitrated_choice(n_mixture, n_loss, n_estimate)[1]


def move_cut(
    clean_prob: np.ndarray, score: np.ndarray, n_flagged: int, threshold: float = 0.5
) -> np.ndarray:
    """Re-assign clean probabilities by rank so that exactly ``n_flagged`` samples are
    below ``threshold``, keeping the order (by clean probability, ties broken by the higher
    ``score`` first).

    Samples are sorted most suspicious first. If ``m`` samples are below the threshold
    now, rank ``r < n_flagged`` gets the probability now held by rank
    ``floor(r * m / n_flagged)`` and rank ``r >= n_flagged`` the one held by
    ``m + floor((r - n_flagged) * (n - m) / (n - n_flagged))``: the flagged and the
    unflagged parts are each stretched or squeezed onto the old ones, so the values stay
    the mixture's and the order is unchanged.

    Args:
        clean_prob: ``(n,)`` clean probabilities.
        score: ``(n,)`` noise scores (higher = more suspicious), for ties.
        n_flagged: how many samples to flag, ``0 <= n_flagged <= n``.
        threshold: a sample is flagged when its clean probability is below this.

    Returns:
        ``(n,)`` clean probabilities; the input unchanged when no or every sample is below
        the threshold now (there is no flagged or unflagged value to reuse).

    Raises:
        ValueError: for shapes that differ or ``n_flagged`` out of range.
    """
    clean_prob = np.asarray(clean_prob, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    n = clean_prob.size
    if score.shape != clean_prob.shape:
        raise ValueError(
            f"clean_prob and score differ in shape: {clean_prob.shape} != {score.shape}"
        )
    if not 0 <= n_flagged <= n:
        raise ValueError(f"n_flagged must be between 0 and {n}, got {n_flagged}")
    m = int((clean_prob < threshold).sum())
    if m in (0, n) or m == n_flagged:
        return clean_prob.copy()
    order = np.lexsort((-score, clean_prob))  # most suspicious first
    values = clean_prob[order]
    ranks = np.arange(n)
    source = np.where(
        ranks < n_flagged,
        (ranks * m) // max(n_flagged, 1),
        m + ((ranks - n_flagged) * (n - m)) // max(n - n_flagged, 1),
    )
    out = np.empty(n)
    out[order] = values[np.minimum(source, n - 1)]
    return out


def arbitrated_cut(
    clean_prob: np.ndarray,
    score: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    mixture: str = "gmm",
    threshold: float = 0.5,
    seed: int = 0,
    n_estimate: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``arbitrated`` cut (module docstring).

    Args:
        clean_prob: ``(n,)`` clean probabilities from the mixture on the scan's score.
        score: ``(n,)`` that score (for ties).
        probs: ``(n, C)`` predicted probabilities (the networks' average).
        labels: ``(n,)`` given labels.
        mixture: ``"gmm"`` or ``"bmm"``, for the mixture on the loss.
        threshold: a sample is flagged when its clean probability is below this.
        seed: mixture random state.
        n_estimate: the confident joint's count of wrong labels where the caller has it
            (:func:`~noisyclean.confident_joint.networks_estimate`: several networks' own
            estimates averaged); None: estimated from ``probs``.

    Returns:
        The clean probabilities (moved by :func:`move_cut` when a count other than the
        first mixture's was chosen) and ``summary.json["cut"]``: the rule, the three
        counts, which rule of :func:`arbitrated_choice` chose, the count flagged, where
        the estimate lay between the counts (``estimate_position``,
        :func:`estimate_position`) and, for a close call (:func:`close_call`), the count
        the other side of halfway would have flagged (``close_call``, else ``None``).
    """
    # imported here: they bring torch and scipy, which the review commands, reading
    # close_call_text, do not need (report took 6.5 s, 5.6 of them importing these)
    from .confident_joint import estimate_wrong_labels
    from .mixture import fit_mixture, normalise_losses
    from .signals import label_loss

    n_mixture = int((np.asarray(clean_prob) < threshold).sum())
    loss = normalise_losses(label_loss(probs, labels))
    n_loss = int((fit_mixture(loss, mixture, random_state=seed).clean_prob < threshold).sum())
    if n_estimate is None:
        classes = [str(k) for k in range(np.asarray(probs).shape[1])]
        n_estimate = int(estimate_wrong_labels(probs, labels, classes)["count"])
    counts = {"mixture": n_mixture, "loss_mixture": n_loss, "confident_joint": n_estimate}
    chosen, n_flagged = arbitrated_choice(n_mixture, n_loss, n_estimate)
    moved = move_cut(clean_prob, score, n_flagged, threshold)
    flagged = int((moved < threshold).sum())
    position = estimate_position(n_mixture, n_loss, n_estimate)
    summary = {
        "rule": "arbitrated", "counts": counts, "chosen": chosen, "flagged": flagged,
        "estimate_position": None if position is None else round(position, 4),
        "close_call": close_call(n_mixture, n_loss, n_estimate),
    }
    return moved, summary


def _percent(position: float) -> str:
    """``position`` as a whole percent, or to one decimal where the whole percent would
    land on an edge of the close-call band (which is open: 0.5989 is close, 60% is not)."""
    edges = {round(100 * (0.5 - CLOSE_CALL_BAND)), round(100 * (0.5 + CLOSE_CALL_BAND))}
    return f"{position:.1%}" if round(100 * position) in edges else f"{position:.0%}"


def close_call_text(cut: dict[str, Any]) -> str:
    """What a close arbitrated cut means for the review, from ``summary.json["cut"]`` (an
    arbitrated cut whose ``close_call`` is set): where the estimate lay, the count the
    other side of halfway would have flagged, and where to read on in ``scores.csv``.
    Empty when there is no close call, or when it names the count already flagged (a cut
    that could not move, on degenerate data)."""
    if cut.get("close_call") in (None, cut.get("flagged")):
        return ""
    n, other = cut["counts"], int(cut["close_call"])
    low, high = sorted((n["mixture"], n["loss_mixture"]))
    where = cut.get("estimate_position")
    share = "nearly halfway" if where is None else f"{_percent(where)} of the way"
    text = (f"the estimate ({n['confident_joint']}) lay {share} from {low} to {high} (the "
            f"two mixtures' counts); a little further and the cut would have flagged "
            f"{other}. scores.csv is sorted most suspicious first: ")
    if other > cut["flagged"]:
        return text + f"review on to row {other} (export --top {other})"
    return text + f"its first {other} rows are the surest"
