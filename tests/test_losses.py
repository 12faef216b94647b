"""The losses of ``noisyclean.train.losses`` against hand-computed values and their
documented limits: GCE -> CE as q -> 0 and 1 - p_y at q = 1, RCE with A = -2 is MAE, the
SCE gradient cases of the paper, bootstrapping targets, dynamic bootstrapping, mixup and
label smoothing.

Most cases use the logits ``(ln 2, 0, 0)``, whose softmax is ``p = (0.5, 0.25, 0.25)``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from noisyclean.train.losses import (
    BOOTSTRAP_BETA,
    bootstrap_loss,
    bootstrap_targets,
    dynamic_bootstrap_loss,
    generalized_cross_entropy,
    mean_absolute_error,
    mixup,
    mixup_cross_entropy,
    mixup_dynamic_bootstrap_loss,
    reverse_cross_entropy,
    smoothed_targets,
    soft_target_cross_entropy,
    symmetric_cross_entropy,
)

LN2, LN4 = math.log(2.0), math.log(4.0)


def half_quarter_quarter(rows: int = 1) -> torch.Tensor:
    """Logits whose softmax is (0.5, 0.25, 0.25), ``rows`` times."""
    return torch.tensor([[LN2, 0.0, 0.0]] * rows, dtype=torch.float64)


def labels(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# --------------------------------------------------------------------------- GCE


def test_gce_hand_values() -> None:
    logits = half_quarter_quarter(2)
    # (1 - 0.5^0.7) / 0.7 = (1 - 0.615572) / 0.7 = 0.549183;
    # (1 - 0.25^0.7) / 0.7 = (1 - 0.378929) / 0.7 = 0.887244
    out = generalized_cross_entropy(logits, labels(0, 1), q=0.7)
    assert out.tolist() == pytest.approx([0.549183, 0.887244], abs=1e-6)


def test_gce_tends_to_cross_entropy_as_q_goes_to_zero() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], dtype=torch.float64)
    y = labels(0, 2)
    ce = F.cross_entropy(logits, y, reduction="none")
    gaps = [(generalized_cross_entropy(logits, y, q) - ce).abs().max().item()
            for q in (0.5, 0.1, 0.01, 1e-4)]
    assert gaps == sorted(gaps, reverse=True)  # closer and closer
    # (1 - exp(-q L)) / q = L - q L^2 / 2 + O(q^2): the gap at q = 1e-4 is q L^2 / 2
    assert gaps[-1] == pytest.approx(1e-4 * ce.max().item() ** 2 / 2, rel=1e-3)
    # for p_y = 0.5 and q = 1e-6: (1 - 0.5^q) / q = ln 2 - q ln^2 2 / 2 + ...
    assert generalized_cross_entropy(half_quarter_quarter(), labels(0), 1e-6).item() == (
        pytest.approx(LN2, abs=1e-6)
    )


def test_gce_at_q_one_is_one_minus_p_y_half_the_mae() -> None:
    logits = half_quarter_quarter(2)
    y = labels(0, 2)
    out = generalized_cross_entropy(logits, y, q=1.0)
    assert out.tolist() == pytest.approx([0.5, 0.75])
    assert torch.allclose(2 * out, mean_absolute_error(logits, y))
    with pytest.raises(ValueError):
        generalized_cross_entropy(logits, y, q=0.0)
    with pytest.raises(ValueError):
        generalized_cross_entropy(logits, y, q=1.5)


# --------------------------------------------------------------------------- MAE, RCE, SCE


def test_mae_is_the_l1_distance_to_the_one_hot_label() -> None:
    # y = 0: |0.5 - 1| + 0.25 + 0.25 = 1.0; y = 1: 0.5 + |0.25 - 1| + 0.25 = 1.5
    assert mean_absolute_error(half_quarter_quarter(2), labels(0, 1)).tolist() == (
        pytest.approx([1.0, 1.5])
    )


def test_rce_hand_values_and_rce_with_a_minus_two_is_mae() -> None:
    # RCE = -A (1 - p_y): A = -4 gives 4 * 0.5 = 2.0 and 4 * 0.75 = 3.0
    assert reverse_cross_entropy(half_quarter_quarter(2), labels(0, 1), -4.0).tolist() == (
        pytest.approx([2.0, 3.0])
    )
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 5, (16,), generator=generator)
    assert torch.allclose(reverse_cross_entropy(logits, y, -2.0), mean_absolute_error(logits, y))
    assert not torch.allclose(reverse_cross_entropy(logits, y, -4.0),
                              mean_absolute_error(logits, y))
    with pytest.raises(ValueError):
        reverse_cross_entropy(logits, y, 0.0)


def test_sce_value_and_gradient_against_the_papers_formula() -> None:
    logits = half_quarter_quarter().requires_grad_(True)
    loss = symmetric_cross_entropy(logits, labels(0), alpha=0.1, beta=1.0, log_zero=-4.0)
    # 0.1 * ln 2 + 4 * (1 - 0.5)
    assert loss.item() == pytest.approx(0.1 * LN2 + 2.0)
    loss.sum().backward()
    # CE part: alpha (p - y) = 0.1 * (-0.5, 0.25, 0.25);
    # RCE part (paper, Sec. 3.3): j = y: -(A p_y^2 - A p_y) = -(-1 + 2) = -1;
    #                              j != y: -A p_j p_y = 4 * 0.25 * 0.5 = 0.5
    assert logits.grad[0].tolist() == pytest.approx([-1.05, 0.525, 0.525])


@pytest.mark.parametrize(("p_y", "expected"), [(0.5, -1.0), (0.9, -0.36), (0.1, -0.36),
                                               (0.01, -0.0396)])
def test_rce_pushes_hardest_at_p_half_and_fades_where_the_network_disagrees(
    p_y: float, expected: float
) -> None:
    # two classes, logits (ln(p / (1 - p)), 0): d RCE / d z_y = A p_y (1 - p_y) with A = -4,
    # largest in magnitude at p_y = 0.5 and vanishing as p_y -> 0 (a likely wrong label)
    logits = torch.tensor([[math.log(p_y / (1 - p_y)), 0.0]], dtype=torch.float64,
                          requires_grad=True)
    reverse_cross_entropy(logits, labels(0), -4.0).sum().backward()
    assert logits.grad[0, 0].item() == pytest.approx(expected)
    assert logits.grad[0, 1].item() == pytest.approx(-expected)  # -A p_j p_y, j != y


def test_sce_with_beta_zero_is_scaled_cross_entropy() -> None:
    logits = half_quarter_quarter(2)
    y = labels(0, 1)
    out = symmetric_cross_entropy(logits, y, alpha=2.0, beta=0.0)
    assert out.tolist() == pytest.approx([2 * LN2, 2 * LN4])


# --------------------------------------------------------------------------- bootstrapping


def test_bootstrap_targets_by_hand() -> None:
    probs = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)
    # soft, beta 0.95: 0.95 * (0, 1, 0) + 0.05 * (0.5, 0.25, 0.25)
    soft = bootstrap_targets(probs, labels(1), 0.95, "soft")
    assert soft[0].tolist() == pytest.approx([0.025, 0.9625, 0.0125])
    # hard, beta 0.8: the prediction is class 0: 0.8 * (0, 1, 0) + 0.2 * (1, 0, 0)
    hard = bootstrap_targets(probs, labels(1), 0.8, "hard")
    assert hard[0].tolist() == pytest.approx([0.2, 0.8, 0.0])
    # when the network agrees with the label, the hard target is the label itself
    assert bootstrap_targets(probs, labels(0), 0.8, "hard")[0].tolist() == [1.0, 0.0, 0.0]
    assert BOOTSTRAP_BETA == {"soft": 0.95, "hard": 0.8}  # Reed et al.'s values
    with pytest.raises(ValueError):
        bootstrap_targets(probs, labels(0), 0.8, "medium")


def test_bootstrap_losses_by_hand() -> None:
    logits = half_quarter_quarter()
    # hard: -(0.2 ln 0.5 + 0.8 ln 0.25) = 0.138629 + 1.109035
    assert bootstrap_loss(logits, labels(1), 0.8, "hard").item() == pytest.approx(1.247665,
                                                                                  abs=1e-6)
    # soft: -(0.025 ln 0.5 + 0.9625 ln 0.25 + 0.0125 ln 0.25) = 0.017329 + 1.351637
    assert bootstrap_loss(logits, labels(1), 0.95, "soft").item() == pytest.approx(1.368966,
                                                                                   abs=1e-6)


def test_soft_bootstrapping_is_cross_entropy_plus_entropy_in_the_gradient() -> None:
    # Reed et al.: soft bootstrapping = beta CE + (1 - beta) H(p), gradient included
    start = torch.tensor([[0.3, -0.2, 1.1]], dtype=torch.float64)
    a = start.clone().requires_grad_(True)
    bootstrap_loss(a, labels(0), 0.95, "soft").sum().backward()
    b = start.clone().requires_grad_(True)
    log_p = F.log_softmax(b, dim=1)
    (0.95 * F.cross_entropy(b, labels(0)) - 0.05 * (log_p.exp() * log_p).sum()).backward()
    assert torch.allclose(a.grad, b.grad)


def test_dynamic_bootstrap_loss_by_hand() -> None:
    logits = half_quarter_quarter(3)
    y, z = labels(1, 1, 1), labels(0, 0, 0)
    w = torch.tensor([0.3, 0.0, 1.0])
    # (1 - w) CE(y) + w CE(z): 0.7 * ln 4 + 0.3 * ln 2 = 1.178350; w = 0: ln 4; w = 1: ln 2
    out = dynamic_bootstrap_loss(logits, y, z, w)
    assert out.tolist() == pytest.approx([0.7 * LN4 + 0.3 * LN2, LN4, LN2])
    assert out[0].item() == pytest.approx(1.178350, abs=1e-6)


# --------------------------------------------------------------------------- mixup


def test_mixup_mixes_inputs_with_lambda_as_drawn() -> None:
    inputs = torch.tensor([[0.0], [10.0], [20.0]])
    perm = torch.tensor([2, 0, 1])
    # lam = 0.3 is used as it is (no max(lam, 1 - lam) as in MixMatch):
    # 0.3 * 0 + 0.7 * 20, 0.3 * 10 + 0.7 * 0, 0.3 * 20 + 0.7 * 10
    assert mixup(inputs, 0.3, perm)[:, 0].tolist() == pytest.approx([14.0, 3.0, 13.0])
    assert mixup(inputs, 1.0, perm)[:, 0].tolist() == [0.0, 10.0, 20.0]


def test_mixup_cross_entropy_by_hand() -> None:
    logits = half_quarter_quarter(3)
    y = labels(0, 1, 2)
    perm = torch.tensor([2, 0, 1])
    out = mixup_cross_entropy(logits, y, 0.3, perm)
    # sample 0: 0.3 CE(0) + 0.7 CE(2); sample 1: 0.3 CE(1) + 0.7 CE(0);
    # sample 2: 0.3 CE(2) + 0.7 CE(1)
    assert out.tolist() == pytest.approx([
        0.3 * LN2 + 0.7 * LN4, 0.3 * LN4 + 0.7 * LN2, LN4,
    ])


def test_mixup_dynamic_bootstrap_loss_by_hand() -> None:
    logits = half_quarter_quarter(2)
    y, z = labels(0, 1), labels(0, 0)
    w = torch.tensor([0.0, 0.5])
    perm = torch.tensor([1, 0])
    out = mixup_dynamic_bootstrap_loss(logits, y, z, w, 0.75, perm)
    # sample 0: 0.75 * CE(0) + 0.25 * (0.5 CE(1) + 0.5 CE(0)) = 0.519860 + 0.259930
    assert out[0].item() == pytest.approx(0.779790, abs=1e-6)
    # sample 1: 0.75 * (0.5 CE(1) + 0.5 CE(0)) + 0.25 * CE(0)
    assert out[1].item() == pytest.approx(0.75 * 0.5 * (LN4 + LN2) + 0.25 * LN2)


# --------------------------------------------------------------------------- label smoothing


def test_smoothed_targets_and_their_cross_entropy() -> None:
    # (1 - 0.1) * (0, 0, 1, 0) + 0.1 / 4
    targets = smoothed_targets(labels(2), 4, 0.1)
    assert targets[0].tolist() == pytest.approx([0.025, 0.025, 0.925, 0.025])
    assert smoothed_targets(labels(2), 4, 0.0)[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    # a uniform prediction costs ln 4 against any target distribution
    assert soft_target_cross_entropy(torch.zeros(1, 4), targets).item() == pytest.approx(LN4)
    # (0.5, 0.25, 0.25) against (0.9 + 0.1/3, 0.1/3, 0.1/3)
    smooth3 = smoothed_targets(labels(0), 3, 0.1)
    expected = (0.9 + 0.1 / 3) * LN2 + 2 * (0.1 / 3) * LN4
    assert soft_target_cross_entropy(half_quarter_quarter(), smooth3).item() == (
        pytest.approx(expected)
    )
    with pytest.raises(ValueError):
        smoothed_targets(labels(0), 3, 1.0)
