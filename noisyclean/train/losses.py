"""Noise-robust losses and the per-batch pieces of the single-network methods of
``noisyclean train``, as pure tensor functions.

Every loss takes ``logits`` ``(B, C)`` and given labels ``(B,)`` (int64) and returns the
per-sample loss ``(B,)``; the methods average it over the batch. ``p = softmax(logits)``,
``p_y`` the probability of the given label.

* :func:`generalized_cross_entropy` (GCE, Zhang & Sabuncu, NeurIPS 2018):
  ``(1 - p_y^q) / q``; cross-entropy as ``q -> 0``, ``1 - p_y`` at ``q = 1``.
* :func:`mean_absolute_error` (MAE, Ghosh et al., AAAI 2017): ``sum_k |p_k - y_k| =
  2 (1 - p_y)``.
* :func:`reverse_cross_entropy` (RCE) and :func:`symmetric_cross_entropy` (SCE, Wang et al.,
  ICCV 2019): ``RCE = -sum_k p_k log y_k`` with ``log 0`` replaced by ``A < 0``, so
  ``RCE = -A (1 - p_y)``; ``SCE = alpha CE + beta RCE``. With ``A = -2`` RCE is MAE.
* :func:`bootstrap_targets` and :func:`bootstrap_loss` (Reed et al., ICLR 2015 workshop):
  cross-entropy against ``beta y + (1 - beta) p`` (soft) or ``beta y + (1 - beta) z``,
  ``z`` the one-hot prediction (hard).
* :func:`dynamic_bootstrap_loss` and :func:`mixup_dynamic_bootstrap_loss` (Arazo et al.,
  ICML 2019): hard bootstrapping with a per-sample weight ``w`` (the noise posterior of a
  Beta mixture on the losses), with and without mixup (M-DYR-H).
* :func:`smoothed_targets` (label smoothing, Szegedy et al., CVPR 2016) and
  :func:`soft_target_cross_entropy`.
* :func:`mixup` and :func:`mixup_cross_entropy` (Zhang et al., ICLR 2018):
  ``x = lam x_i + (1 - lam) x_j`` and ``lam CE(y_i) + (1 - lam) CE(y_j)``.

Each costs one softmax over the batch (``O(B C)``) on top of the forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _full(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (half precision from autocast is upcast; float64 stays)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _given_log_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p_y`` per sample, from a numerically stable log-softmax."""
    return F.log_softmax(_full(logits), dim=1).gather(1, labels.view(-1, 1)).squeeze(1)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``-sum_c t_c log softmax(logits)_c``.

    Args:
        logits: ``(B, C)``.
        targets: ``(B, C)`` target distributions (rows sum to 1).

    Returns:
        ``(B,)`` losses.
    """
    return -(F.log_softmax(_full(logits), dim=1) * targets).sum(dim=1)


def generalized_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7
) -> torch.Tensor:
    """Generalized cross-entropy ``L_q = (1 - p_y^q) / q`` (Zhang & Sabuncu 2018).

    A Box-Cox transform of ``p_y``: it tends to the cross-entropy ``-log p_y`` as
    ``q -> 0`` and is ``1 - p_y`` (half of :func:`mean_absolute_error`) at ``q = 1``, so
    ``q`` trades CE's fast fitting for MAE's robustness to wrong labels. The paper uses
    ``q = 0.7``.

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` given labels.
        q: in ``(0, 1]``.

    Returns:
        ``(B,)`` losses.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError("q must be in (0, 1]")
    return -torch.expm1(q * _given_log_prob(logits, labels)) / q


def mean_absolute_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between the prediction and the one-hot label,
    ``sum_k |p_k - y_k| = 2 (1 - p_y)`` (Ghosh et al. 2017): bounded, hence robust to
    wrong labels, but slow to fit (its gradient vanishes where ``p_y`` is small).

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` given labels.

    Returns:
        ``(B,)`` losses in ``[0, 2]``.
    """
    return 2.0 * (1.0 - _given_log_prob(logits, labels).exp())


def reverse_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, log_zero: float = -4.0
) -> torch.Tensor:
    """Reverse cross-entropy ``-sum_k p_k log y_k`` with ``log 0 := A`` (Wang et al. 2019).

    With a one-hot ``y``, ``log y_y = 0`` and ``log y_k = A`` elsewhere, so
    ``RCE = -A sum_{k != y} p_k = -A (1 - p_y)``. ``A = -2`` gives
    :func:`mean_absolute_error` exactly. The paper uses ``A = -4``; its reference code
    clips the one-hot label at ``1e-4`` before a natural log, i.e. ``A = ln 1e-4 = -9.21``.

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` given labels.
        log_zero: ``A``, negative.

    Returns:
        ``(B,)`` losses in ``[0, -A]``.
    """
    if log_zero >= 0:
        raise ValueError("log_zero (A) must be negative")
    return -log_zero * (1.0 - _given_log_prob(logits, labels).exp())


def symmetric_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
) -> torch.Tensor:
    """Symmetric cross-entropy ``alpha CE + beta RCE`` (Wang et al. 2019).

    Its gradient with respect to the logit ``z_j`` is ``alpha (p_j - y_j)`` plus ``beta``
    times ``A p_y (1 - p_y)`` for ``j = y`` and ``-A p_j p_y`` for ``j != y`` (the paper's
    Section 3.3): the RCE term pushes hardest on samples with ``p_y`` near 0.5 (where CE
    under-learns hard classes) and fades on samples the network contradicts
    (``p_y -> 0``, likely wrong labels). CIFAR-10 values of the paper: ``alpha = 0.1,
    beta = 1, A = -4``.

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` given labels.
        alpha: weight of the cross-entropy.
        beta: weight of the reverse cross-entropy.
        log_zero: ``A`` of :func:`reverse_cross_entropy`.

    Returns:
        ``(B,)`` losses.
    """
    ce = -_given_log_prob(logits, labels)
    return alpha * ce + beta * reverse_cross_entropy(logits, labels, log_zero)


BOOTSTRAP_MODES = ("hard", "soft")
#: Reed et al.'s values: beta 0.95 for soft and 0.8 for hard bootstrapping.
BOOTSTRAP_BETA = {"soft": 0.95, "hard": 0.8}


def bootstrap_targets(
    probs: torch.Tensor, labels: torch.Tensor, beta: float, mode: str = "hard"
) -> torch.Tensor:
    """Bootstrapping targets of Reed et al. (2015).

    Args:
        probs: ``(B, C)`` the network's predicted probabilities.
        labels: ``(B,)`` given labels.
        beta: weight of the given label.
        mode: ``soft``: ``beta y + (1 - beta) p``; ``hard``: ``beta y + (1 - beta) z`` with
            ``z`` the one-hot of ``argmax p``.

    Returns:
        ``(B, C)`` target distributions.
    """
    if mode not in BOOTSTRAP_MODES:
        raise ValueError(f"mode must be one of {BOOTSTRAP_MODES}")
    num_classes = probs.shape[1]
    y = F.one_hot(labels, num_classes).to(probs.dtype)
    own = probs if mode == "soft" else F.one_hot(probs.argmax(1), num_classes).to(probs.dtype)
    return beta * y + (1.0 - beta) * own


def bootstrap_loss(
    logits: torch.Tensor, labels: torch.Tensor, beta: float, mode: str = "hard"
) -> torch.Tensor:
    """Cross-entropy against :func:`bootstrap_targets` of the network's own prediction.

    Soft: the prediction inside the target is not detached, so the loss is
    ``beta CE + (1 - beta) H(p)``, the "minimum entropy regularisation" Reed et al.
    describe. Hard: ``beta CE(y) + (1 - beta) CE(argmax p)``.

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` given labels.
        beta: weight of the given label (Reed et al.: 0.95 soft, 0.8 hard).
        mode: ``hard`` or ``soft``.

    Returns:
        ``(B,)`` losses.
    """
    probs = _full(logits).softmax(dim=1)
    if mode == "hard":
        probs = probs.detach()
    return soft_target_cross_entropy(logits, bootstrap_targets(probs, labels, beta, mode))


def dynamic_bootstrap_loss(
    logits: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Dynamic hard bootstrapping (Arazo et al. 2019, eq. 9 with a per-sample weight):
    ``(1 - w) CE(y) + w CE(z)``.

    Args:
        logits: ``(B, C)``.
        labels: ``(B,)`` given labels ``y``.
        predicted: ``(B,)`` the network's predicted classes ``z`` (from a pass without
            gradient).
        weight: ``(B,)`` ``w``, each sample's posterior probability of the noisy component.

    Returns:
        ``(B,)`` losses.
    """
    log_p = F.log_softmax(_full(logits), dim=1)
    ce_given = -log_p.gather(1, labels.view(-1, 1)).squeeze(1)
    ce_own = -log_p.gather(1, predicted.view(-1, 1)).squeeze(1)
    w = weight.to(log_p.dtype)
    return (1.0 - w) * ce_given + w * ce_own


def mixup(inputs: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """mixup's inputs ``lam x + (1 - lam) x[perm]`` (Zhang et al. 2018).

    Unlike MixMatch (:func:`noisyclean.train.mixmatch.mixmatch`), ``lam`` is used as drawn.

    Args:
        inputs: ``(B, ...)`` a batch.
        lam: mixing weight in ``[0, 1]``, drawn from ``Beta(alpha, alpha)``.
        perm: ``(B,)`` each sample's partner.

    Returns:
        The mixed batch.
    """
    return lam * inputs + (1.0 - lam) * inputs[perm.to(inputs.device)]


def mixup_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, lam: float, perm: torch.Tensor
) -> torch.Tensor:
    """mixup's loss ``lam CE(y) + (1 - lam) CE(y[perm])`` on the mixed batch's logits.

    Args:
        logits: ``(B, C)`` of the mixed inputs.
        labels: ``(B,)`` given labels of the unmixed batch.
        lam: the mixing weight of :func:`mixup`.
        perm: the permutation of :func:`mixup`.

    Returns:
        ``(B,)`` losses.
    """
    log_p = F.log_softmax(_full(logits), dim=1)
    perm = perm.to(labels.device)
    ce_a = -log_p.gather(1, labels.view(-1, 1)).squeeze(1)
    ce_b = -log_p.gather(1, labels[perm].view(-1, 1)).squeeze(1)
    return lam * ce_a + (1.0 - lam) * ce_b


def mixup_dynamic_bootstrap_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    predicted: torch.Tensor,
    weight: torch.Tensor,
    lam: float,
    perm: torch.Tensor,
) -> torch.Tensor:
    """M-DYR-H's loss (Arazo et al. 2019): each mixed sample carries the dynamic hard
    bootstrapping loss of both its parents, weighted by ``lam`` and ``1 - lam``.

    Args:
        logits: ``(B, C)`` of the mixed inputs.
        labels: ``(B,)`` given labels of the unmixed batch.
        predicted: ``(B,)`` predicted classes of the unmixed batch.
        weight: ``(B,)`` noise posteriors of the unmixed batch.
        lam: the mixing weight.
        perm: the mixing permutation.

    Returns:
        ``(B,)`` losses.
    """
    perm = perm.to(labels.device)
    first = dynamic_bootstrap_loss(logits, labels, predicted, weight)
    second = dynamic_bootstrap_loss(logits, labels[perm], predicted[perm], weight[perm])
    return lam * first + (1.0 - lam) * second


def smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label smoothing: ``(1 - eps) y + eps / C`` (Szegedy et al. 2016).

    Args:
        labels: ``(B,)`` given labels.
        num_classes: ``C``.
        smoothing: ``eps`` in ``[0, 1)``.

    Returns:
        ``(B, C)`` target distributions.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError("smoothing must be in [0, 1)")
    y = F.one_hot(labels, num_classes).float()
    return (1.0 - smoothing) * y + smoothing / num_classes
