"""The per-batch pieces of DivideMix (Li, Socher, Hoi 2020, Algorithm 1) and MixMatch
(Berthelot et al. 2019), as plain tensor functions.

For a labelled batch with (one-hot) given labels ``y`` and clean probabilities ``w`` (from
the other network's mixture), and an unlabelled batch, each seen under M augmentations:

* :func:`co_refine`: ``y' = sharpen(w * y + (1 - w) * p, T)``, ``p`` the network's own
  prediction averaged over the M augmentations (label co-refinement, Algorithm 1 lines 8-10).
* :func:`co_guess`: ``q = sharpen(mean of both networks' predictions over the M
  augmentations, T)`` (label co-guessing, lines 11-13).
* :func:`mixmatch`: ``lambda ~ Beta(alpha, alpha)``, ``lambda' = max(lambda, 1 - lambda)``;
  every input (labelled and unlabelled, concatenated) is mixed with a randomly permuted
  partner: ``x' = lambda' x_1 + (1 - lambda') x_2`` and likewise for the targets
  (lines 14-19), so each mixed sample stays closer to its own input.
* The loss: :func:`soft_cross_entropy` on the mixed labelled part (``L_x``),
  :func:`squared_error` on the mixed unlabelled part (``L_u``), weighted by
  :func:`linear_rampup`, and :func:`uniform_prior_loss` (``L_reg``, the KL divergence
  from a uniform prior to the batch's mean prediction).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import betaincinv


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening: ``p_c^(1/T) / sum_k p_k^(1/T)`` over the last dimension.

    ``T = 1`` leaves ``probs`` as they are; ``T -> 0`` tends to one-hot. A row whose powers
    underflow (sum below the dtype's smallest normal number: three classes at ``T = 0.01``
    raise 1/3 to the 100th power, below float32's range) is computed in log space instead,
    as ``softmax(log p / T)``, the same value without the underflow.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    probs = probs.clamp_min(0)
    powered = probs.pow(1.0 / temperature)
    total = powered.sum(dim=-1, keepdim=True)
    underflow = ~(total >= torch.finfo(total.dtype).tiny)
    if not underflow.any():
        return powered / total
    in_log_space = torch.softmax(probs.log() / temperature, dim=-1)
    return torch.where(underflow, in_log_space, powered / total)


def co_refine(
    labels: torch.Tensor, clean_prob: torch.Tensor, probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Label co-refinement of a labelled batch.

    Args:
        labels: ``(B, C)`` one-hot given labels.
        clean_prob: ``(B,)`` clean probability ``w`` of each sample (from the other
            network's mixture).
        probs: ``(M, B, C)`` this network's softmax predictions under M augmentations.
        temperature: sharpening temperature ``T``.

    Returns:
        ``(B, C)`` targets ``sharpen(w * y + (1 - w) * mean_m probs[m], T)``.
    """
    w = clean_prob.reshape(-1, 1).to(probs.dtype)
    refined = w * labels.to(probs.dtype) + (1 - w) * probs.mean(dim=0)
    return sharpen(refined, temperature)


def co_guess(
    probs_self: torch.Tensor, probs_other: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Label co-guessing of an unlabelled batch.

    Args:
        probs_self: ``(M, B, C)`` this network's softmax predictions under M augmentations.
        probs_other: ``(M, B, C)`` the other network's, on the same augmented images.
        temperature: sharpening temperature ``T``.

    Returns:
        ``(B, C)`` targets: the sharpened mean of all ``2M`` predictions.
    """
    mean = 0.5 * (probs_self.mean(dim=0) + probs_other.mean(dim=0))
    return sharpen(mean, temperature)


def mix_weight(alpha: float, uniform: float) -> float:
    """``lambda' = max(lambda, 1 - lambda)`` for ``lambda`` the ``uniform``-quantile of
    Beta(alpha, alpha) (inverse-CDF sampling: a uniform draw in, a Beta draw out).

    Always in ``[0.5, 1]``. With ``alpha = 1`` (the uniform distribution) it is
    ``max(uniform, 1 - uniform)``.
    """
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    lam = float(betaincinv(alpha, alpha, float(np.clip(uniform, 0.0, 1.0))))
    return max(lam, 1.0 - lam)


def sample_mix_weight(alpha: float, generator: torch.Generator) -> float:
    """Draw ``lambda' = max(lambda, 1 - lambda)``, ``lambda ~ Beta(alpha, alpha)``, from a
    uniform number of ``generator`` (so a checkpointed generator resumes the same draws)."""
    return mix_weight(alpha, torch.rand(1, generator=generator, dtype=torch.float64).item())


def mixmatch(
    inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixMatch's mixing of a concatenated labelled + unlabelled batch.

    Args:
        inputs: ``(N, ...)`` images (all augmentations of the labelled, then of the
            unlabelled samples).
        targets: ``(N, C)`` their targets (refined labels, then guessed labels).
        lam: the mixing weight; ``max(lam, 1 - lam)`` is used, so each mixed sample keeps
            at least half of its own input.
        perm: ``(N,)`` permutation giving each sample its partner.

    Returns:
        ``(mixed_inputs, mixed_targets)``: ``lam' * a + (1 - lam') * a[perm]`` for both.
    """
    lam = max(lam, 1.0 - lam)
    perm = perm.to(inputs.device)
    mixed_inputs = lam * inputs + (1.0 - lam) * inputs[perm]
    mixed_targets = lam * targets + (1.0 - lam) * targets[perm.to(targets.device)]
    return mixed_inputs, mixed_targets


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``L_x``: mean over the batch of ``-sum_c t_c log softmax(logits)_c``."""
    return -(F.log_softmax(logits.float(), dim=1) * targets).sum(dim=1).mean()


def squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``L_u``: mean over batch and classes of ``(softmax(logits) - t)^2`` (the reference
    code's mean; the paper's formula divides by the batch size times the classes too)."""
    return (logits.float().softmax(dim=1) - targets).pow(2).mean()


def uniform_prior_loss(logits: torch.Tensor) -> torch.Tensor:
    """``L_reg = sum_c pi_c log(pi_c / pbar_c)`` with ``pi_c = 1/C`` and ``pbar`` the
    batch's mean softmax prediction: 0 when the batch predicts every class equally often on
    average, large when it favours a few classes."""
    mean_pred = logits.float().softmax(dim=1).mean(dim=0)
    prior = torch.full_like(mean_pred, 1.0 / mean_pred.numel())
    return (prior * (prior.log() - mean_pred.clamp_min(1e-12).log())).sum()


def linear_rampup(
    current: float, warmup_epochs: float, rampup_epochs: float, lambda_u: float
) -> float:
    """The weight of ``L_u``: ``lambda_u * clip((current - warmup_epochs) / rampup_epochs,
    0, 1)``, with ``current`` the fractional epoch (``epoch + step / steps``), as in the
    reference code: 0 when the DivideMix epochs start, ``lambda_u`` after ``rampup_epochs``.
    ``rampup_epochs = 0`` gives the full weight at once."""
    if rampup_epochs <= 0:
        return float(lambda_u) if current >= warmup_epochs else 0.0
    return float(lambda_u) * float(np.clip((current - warmup_epochs) / rampup_epochs, 0.0, 1.0))
