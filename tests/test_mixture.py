"""Tests for noisyclean.mixture: the Beta mixture, the loss mixtures and clean probabilities."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture

from noisyclean.mixture import (
    BETA_PARAM_MAX,
    BETA_PARAM_MIN,
    BetaMixture,
    MixtureFit,
    beta_from_moments,
    estimate_noise_rate,
    fit_mixture,
    monotone_clean_prob,
    normalise_losses,
)

# ----------------------------------------------------------------------------- helpers


def sample_beta_mixture(weights, alphas, betas, n, seed):
    """Draw ``n`` values from a two-Beta mixture; returns (x, component labels)."""
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < weights[1]).astype(int)
    x = np.where(z == 1, rng.beta(alphas[1], betas[1], n), rng.beta(alphas[0], betas[0], n))
    return x, z


def bimodal_losses(n=2000, seed=0):
    """80% clean losses near 0.1 and 20% noisy losses near 0.8; returns (losses, is_noisy)."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < 0.2
    loss = np.where(noisy, rng.beta(16, 4, n), rng.beta(2, 18, n))
    return loss, noisy


def max_increase(losses, prob):
    """Largest rise of ``prob`` between consecutive samples in order of increasing loss."""
    order = np.argsort(losses, kind="stable")
    return float(np.max(np.diff(prob[order])))


def assert_non_increasing(losses, prob):
    order = np.argsort(losses, kind="stable")
    assert np.all(np.diff(prob[order]) <= 0.0)


# --------------------------------------------------------------------- normalise_losses


def test_normalise_losses_hand_case():
    out = normalise_losses(np.array([2.0, 4.0, 6.0]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def test_normalise_losses_keeps_order_and_range():
    out = normalise_losses([5, -1, 3, 11])  # ints are accepted
    np.testing.assert_allclose(out, [0.5, 0.0, 1 / 3, 1.0])


def test_normalise_losses_constant_gives_zeros():
    out = normalise_losses(np.full(5, 3.7))
    np.testing.assert_array_equal(out, np.zeros(5))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_normalise_losses_rejects_non_finite(bad):
    with pytest.raises(ValueError):
        normalise_losses(np.array([0.1, bad, 0.3]))


# -------------------------------------------------------------------- beta_from_moments


def test_beta_from_moments_hand_cases():
    # mean 0.5, var 0.05: m(1-m)/v - 1 = 0.25/0.05 - 1 = 4 -> alpha = beta = 0.5 * 4 = 2
    np.testing.assert_allclose(beta_from_moments(0.5, 0.05), (2.0, 2.0))
    # mean 0.2, var 0.01: 0.16/0.01 - 1 = 15 -> alpha = 0.2 * 15 = 3, beta = 0.8 * 15 = 12
    np.testing.assert_allclose(beta_from_moments(0.2, 0.01), (3.0, 12.0))


def test_beta_from_moments_round_trips_through_scipy():
    a, b = beta_from_moments(0.3, 0.02)
    mean, var = stats.beta.stats(a, b, moments="mv")
    np.testing.assert_allclose([mean, var], [0.3, 0.02])


@pytest.mark.parametrize(
    "mean,var", [(0.0, 0.01), (1.0, 0.01), (0.5, 0.0), (0.5, 0.25), (0.5, 0.3)]
)
def test_beta_from_moments_rejects_impossible_moments(mean, var):
    with pytest.raises(ValueError):
        beta_from_moments(mean, var)


# --------------------------------------------------------------- BetaMixture: the M-step


def test_single_component_is_the_method_of_moments():
    # x = [0.2, 0.4, 0.6]: mean 0.4, population variance 0.08 / 3;
    # 0.24 / (0.08 / 3) - 1 = 8 -> alpha = 0.4 * 8 = 3.2, beta = 0.6 * 8 = 4.8
    model = BetaMixture(n_components=1).fit(np.array([0.2, 0.4, 0.6]))
    np.testing.assert_allclose(model.weights_, [1.0])
    np.testing.assert_allclose(model.alphas_, [3.2])
    np.testing.assert_allclose(model.betas_, [4.8])
    np.testing.assert_allclose(model.means_, [0.4])


def test_m_step_uses_responsibility_weighted_moments():
    x = np.array([0.2, 0.6, 0.9])
    resp = np.array([[0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    model = BetaMixture()
    model._m_step(x, resp)  # the M-step on its own, with responsibilities chosen by hand
    # component 0: total 1; mean 0.75*0.2 + 0.25*0.6 = 0.3;
    #   var 0.75*0.1**2 + 0.25*0.3**2 = 0.03; 0.21/0.03 - 1 = 6 -> alpha 1.8, beta 4.2
    # component 1: total 2; mean (0.25*0.2 + 0.75*0.6 + 0.9) / 2 = 0.7;
    #   var (0.25*0.5**2 + 0.75*0.1**2 + 0.2**2) / 2 = 0.055
    phi1 = 0.7 * 0.3 / 0.055 - 1
    np.testing.assert_allclose(model.weights_, [1 / 3, 2 / 3])
    np.testing.assert_allclose(model.alphas_, [1.8, 0.7 * phi1])
    np.testing.assert_allclose(model.betas_, [4.2, 0.3 * phi1])
    np.testing.assert_allclose(model.means_, [0.3, 0.7])


# --------------------------------------------------------- BetaMixture: parameter recovery


@pytest.mark.parametrize(
    "weights,alphas,betas,seed",
    [
        # well separated: Beta(2, 8) and Beta(8, 2)
        ((0.7, 0.3), (2.0, 8.0), (8.0, 2.0), 0),
        # overlapping: Beta(2, 6) (mean 0.25) and Beta(4, 3) (mean 0.57)
        ((0.6, 0.4), (2.0, 4.0), (6.0, 3.0), 0),
    ],
)
def test_beta_mixture_recovers_sampled_parameters(weights, alphas, betas, seed):
    x, _ = sample_beta_mixture(weights, alphas, betas, 20_000, seed)
    model = BetaMixture(max_iter=200, tol=1e-6).fit(x)
    assert model.converged_
    assert model.means_[0] < model.means_[1]  # component 0 is the low one
    # measured over ten seeds: weight errors <= 0.013, alpha/beta relative errors <= 0.066
    np.testing.assert_allclose(model.weights_, weights, atol=0.02)
    np.testing.assert_allclose(model.alphas_, alphas, rtol=0.10)
    np.testing.assert_allclose(model.betas_, betas, rtol=0.10)
    np.testing.assert_allclose(model.means_, model.alphas_ / (model.alphas_ + model.betas_))


def test_beta_mixture_classifies_sampled_components():
    x, z = sample_beta_mixture((0.7, 0.3), (2.0, 8.0), (8.0, 2.0), 5000, 1)
    model = BetaMixture(max_iter=100).fit(x)
    # the Bayes error of this mixture is about 1.3%
    assert np.mean(model.predict(x) == z) > 0.97


# -------------------------------------------------- BetaMixture: the sklearn-like surface


@pytest.fixture(scope="module")
def fitted():
    x, _ = sample_beta_mixture((0.7, 0.3), (2.0, 8.0), (8.0, 2.0), 3000, 2)
    return BetaMixture(max_iter=100).fit(x), x


def test_fitted_attributes(fitted):
    model, x = fitted
    for name in ("weights_", "alphas_", "betas_", "means_"):
        assert getattr(model, name).shape == (2,)
    assert np.isclose(model.weights_.sum(), 1.0)
    assert isinstance(model.converged_, bool) and model.converged_
    assert 1 <= model.n_iter_ <= 100
    # lower_bound_ is the mean log-likelihood of the training data under the final fit
    assert model.lower_bound_ == pytest.approx(model.score(x), rel=1e-12)


def test_predict_proba_rows_sum_to_one(fitted):
    model, x = fitted
    proba = model.predict_proba(x)
    assert proba.shape == (x.size, 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(x), np.argmax(proba, axis=1))


def test_score_samples_and_posterior_match_hand_computed_pdf(fitted):
    model, _ = fitted
    points = np.array([0.05, 0.3, 0.5, 0.7, 0.95])
    weighted = np.stack(
        [
            w * stats.beta.pdf(points, a, b)
            for w, a, b in zip(model.weights_, model.alphas_, model.betas_, strict=True)
        ],
        axis=1,
    )
    np.testing.assert_allclose(model.score_samples(points), np.log(weighted.sum(axis=1)))
    np.testing.assert_allclose(
        model.predict_proba(points), weighted / weighted.sum(axis=1, keepdims=True)
    )
    assert model.score(points) == pytest.approx(np.mean(np.log(weighted.sum(axis=1))))


def test_scoring_clips_to_eps(fitted):
    model, _ = fitted
    eps = model.eps
    np.testing.assert_allclose(
        model.score_samples(np.array([0.0, 1.0])), model.score_samples(np.array([eps, 1 - eps]))
    )
    assert np.all(np.isfinite(model.score_samples(np.array([0.0, 1.0]))))


def test_one_and_two_dimensional_input_agree():
    x, _ = sample_beta_mixture((0.6, 0.4), (2.0, 6.0), (5.0, 2.0), 1000, 3)
    flat = BetaMixture(max_iter=50).fit(x)
    column = BetaMixture(max_iter=50).fit(x.reshape(-1, 1))
    np.testing.assert_array_equal(flat.alphas_, column.alphas_)
    np.testing.assert_array_equal(flat.betas_, column.betas_)
    np.testing.assert_array_equal(flat.weights_, column.weights_)
    np.testing.assert_array_equal(flat.predict_proba(x), column.predict_proba(x.reshape(-1, 1)))
    np.testing.assert_array_equal(flat.score_samples(x), flat.score_samples(x.reshape(-1, 1)))


def test_clone_and_get_params():
    model = BetaMixture(n_components=3, max_iter=7, tol=1e-3, eps=1e-3, random_state=5)
    params = model.get_params()
    assert params == {
        "n_components": 3,
        "max_iter": 7,
        "tol": 1e-3,
        "eps": 1e-3,
        "random_state": 5,
    }
    model.fit(np.linspace(0.0, 1.0, 30))
    copy = clone(model)
    assert copy.get_params() == params
    assert not hasattr(copy, "weights_")  # clone gives an unfitted estimator
    copy.set_params(max_iter=3)
    assert copy.max_iter == 3 and model.max_iter == 7


def test_fit_is_deterministic_and_refit_starts_afresh():
    x, _ = sample_beta_mixture((0.7, 0.3), (2.0, 8.0), (8.0, 2.0), 1000, 4)
    a = BetaMixture(random_state=1).fit(x)
    b = BetaMixture(random_state=2).fit(x)
    np.testing.assert_array_equal(a.alphas_, b.alphas_)
    y, _ = sample_beta_mixture((0.5, 0.5), (3.0, 9.0), (9.0, 3.0), 1000, 5)
    a.fit(y)
    np.testing.assert_array_equal(a.alphas_, BetaMixture().fit(y).alphas_)


def test_sample_is_reproducible_and_follows_weights(fitted):
    model, _ = fitted
    x1, y1 = clone(model).set_params(random_state=0).fit(fitted[1]).sample(4000)
    x2, y2 = clone(model).set_params(random_state=0).fit(fitted[1]).sample(4000)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (4000, 1) and y1.shape == (4000,)
    assert np.all((x1 > 0) & (x1 < 1))
    assert np.mean(y1 == 1) == pytest.approx(model.weights_[1], abs=0.03)


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError):
        BetaMixture().predict_proba(np.array([0.5]))


@pytest.mark.parametrize(
    "bad",
    [
        np.array([0.2, -0.1, 0.5]),
        np.array([0.2, 1.5, 0.5]),
        np.array([0.2, np.nan, 0.5]),
        np.zeros((4, 2)),
        np.array([]),
    ],
)
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        BetaMixture().fit(bad)


@pytest.mark.parametrize(
    "kwargs", [{"n_components": 0}, {"max_iter": 0}, {"tol": -1.0}, {"eps": 0.0}, {"eps": 0.5}]
)
def test_bad_hyperparameters_raise_at_fit(kwargs):
    model = BetaMixture(**kwargs)  # sklearn style: __init__ only stores
    with pytest.raises(ValueError):
        model.fit(np.linspace(0.1, 0.9, 10))


@pytest.mark.parametrize(
    "x",
    [
        np.full(50, 0.3),  # one value: every component has zero variance
        np.r_[np.zeros(30), np.ones(20)],  # two values at the boundaries
        np.r_[np.full(40, 0.2), np.full(10, 0.7)],
    ],
)
def test_degenerate_data_keep_parameters_finite_and_in_range(x):
    model = BetaMixture().fit(x)
    for values in (model.alphas_, model.betas_):
        assert np.all(np.isfinite(values))
        assert np.all((values >= BETA_PARAM_MIN) & (values <= BETA_PARAM_MAX))
    assert np.all(np.isfinite(model.score_samples(x)))
    np.testing.assert_allclose(model.predict_proba(x).sum(axis=1), 1.0)


def test_degenerate_components_keep_their_means():
    model = BetaMixture().fit(np.r_[np.full(40, 0.2), np.full(10, 0.7)])
    np.testing.assert_allclose(model.means_, [0.2, 0.7])
    np.testing.assert_allclose(model.weights_, [0.8, 0.2])


# ------------------------------------------------------------------ monotone_clean_prob


def test_monotone_clean_prob_hand_case():
    out = monotone_clean_prob(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.6, 0.9, 0.8, 0.1]))
    np.testing.assert_allclose(out, [0.9, 0.9, 0.8, 0.1])


def test_monotone_clean_prob_unsorted_input_keeps_sample_order():
    out = monotone_clean_prob(np.array([0.4, 0.1, 0.3, 0.2]), np.array([0.1, 0.6, 0.8, 0.9]))
    np.testing.assert_allclose(out, [0.1, 0.9, 0.8, 0.9])


def test_monotone_clean_prob_ties_get_equal_values_whatever_their_order():
    losses = np.array([0.3, 0.1, 0.3, 0.2])
    raw = np.array([0.2, 0.9, 0.7, 0.4])
    # by loss: 0.1 -> 0.9; 0.2 -> 0.4; 0.3 -> max(0.2, 0.7) = 0.7 for both tied samples
    expected = [0.7, 0.9, 0.7, 0.7]
    np.testing.assert_allclose(monotone_clean_prob(losses, raw), expected)
    swapped = [2, 1, 0, 3]  # the tied samples change places
    np.testing.assert_allclose(
        monotone_clean_prob(losses[swapped], raw[swapped]), np.array(expected)[swapped]
    )


def test_monotone_clean_prob_noisy_mean_stops_a_right_tail_rise():
    losses = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    raw = np.array([0.6, 0.9, 0.2, 0.1, 0.95])
    # plain envelope: the 0.95 at the highest loss lifts everything
    np.testing.assert_allclose(monotone_clean_prob(losses, raw), [0.95] * 5)
    # above 0.25 the raw values first become a running minimum: 0.2, 0.1, 0.1
    np.testing.assert_allclose(
        monotone_clean_prob(losses, raw, noisy_mean=0.25), [0.9, 0.9, 0.2, 0.1, 0.1]
    )
    # a noisy_mean above every loss changes nothing
    np.testing.assert_allclose(
        monotone_clean_prob(losses, raw, noisy_mean=0.9), monotone_clean_prob(losses, raw)
    )


def test_monotone_clean_prob_rejects_bad_input():
    with pytest.raises(ValueError):
        monotone_clean_prob(np.array([0.1, 0.2]), np.array([0.5]))
    with pytest.raises(ValueError):
        monotone_clean_prob(np.array([0.1, np.nan]), np.array([0.5, 0.5]))


# -------------------------------------------------------------------------- fit_mixture


@pytest.mark.parametrize("kind", ["gmm", "bmm"])
def test_fit_mixture_finds_the_noisy_samples(kind):
    loss, noisy = bimodal_losses()
    fit = fit_mixture(normalise_losses(loss), kind)
    assert isinstance(fit, MixtureFit)
    assert fit.kind == kind
    assert fit.clean_prob.shape == fit.raw_clean_prob.shape == loss.shape
    assert np.all((fit.clean_prob >= 0) & (fit.clean_prob <= 1))
    assert_non_increasing(loss, fit.clean_prob)
    assert np.mean((fit.clean_prob < 0.5) == noisy) > 0.95
    assert estimate_noise_rate(fit.clean_prob) == pytest.approx(noisy.mean(), abs=0.02)
    # the clean component is the low-mean one, and params list it first
    model_means = np.ravel(fit.model.means_)
    assert fit.clean_component == int(np.argmin(model_means))
    np.testing.assert_allclose(
        fit.raw_clean_prob,
        fit.model.predict_proba(normalise_losses(loss).reshape(-1, 1))[:, fit.clean_component],
    )
    params = fit.params
    assert params["kind"] == kind and params["degenerate"] is False
    assert params["means"][0] < params["means"][1]
    assert params["weights"][0] == pytest.approx(0.8, abs=0.03)
    assert isinstance(params["converged"], bool) and isinstance(params["n_iter"], int)
    shape_keys = ("stds",) if kind == "gmm" else ("alphas", "betas")
    for key in ("weights", "means", *shape_keys):
        assert len(params[key]) == 2 and all(type(v) is float for v in params[key])
    json.loads(json.dumps(params))


def test_fit_mixture_gmm_uses_dividemix_settings():
    loss, _ = bimodal_losses(500)
    model = fit_mixture(loss, "gmm", random_state=3).model
    assert isinstance(model, GaussianMixture)
    assert (model.n_components, model.max_iter, model.tol, model.reg_covar) == (2, 10, 1e-2, 5e-4)
    assert model.random_state == 3


def test_fit_mixture_bmm_uses_beta_mixture():
    loss, _ = bimodal_losses(500)
    fit = fit_mixture(loss, "bmm", random_state=None)
    assert isinstance(fit.model, BetaMixture)
    order = np.argsort(fit.model.means_)
    np.testing.assert_allclose(fit.params["alphas"], fit.model.alphas_[order])
    np.testing.assert_allclose(fit.params["betas"], fit.model.betas_[order])


def test_envelope_lifts_low_losses_that_a_wide_noisy_component_claims():
    # narrow clean losses and a much wider noisy component: the GMM gives the very lowest
    # losses a low clean posterior, which the envelope must undo
    rng = np.random.default_rng(0)
    noisy = rng.random(2000) < 0.2
    loss = normalise_losses(
        np.where(noisy, rng.normal(0.55, 0.3, 2000), rng.normal(0.1, 0.03, 2000))
    )
    fit = fit_mixture(loss, "gmm")
    assert fit.params["stds"][0] < fit.params["stds"][1]
    assert max_increase(loss, fit.raw_clean_prob) > 0.1  # the raw posterior is not monotone
    assert_non_increasing(loss, fit.clean_prob)
    assert np.all(fit.clean_prob >= fit.raw_clean_prob - 1e-12)  # only lifted, below the tail
    assert np.mean((fit.clean_prob < 0.5) == noisy) > 0.95


@pytest.mark.parametrize("kind", ["gmm", "bmm"])
def test_right_tail_rise_does_not_mark_noisy_samples_clean(kind):
    # a clean component much wider than the noisy one, plus one hard clean sample with the
    # highest loss: the raw clean posterior rises again there
    rng = np.random.default_rng(0)
    noisy = np.r_[rng.random(2000) < 0.2, False]
    raw_loss = np.r_[
        np.where(noisy[:-1], rng.normal(0.7, 0.01, 2000), rng.normal(0.3, 0.12, 2000)), 1.2
    ]
    loss = normalise_losses(raw_loss)
    fit = fit_mixture(loss, kind)
    assert max_increase(loss, fit.raw_clean_prob) > 0.5
    assert_non_increasing(loss, fit.clean_prob)
    assert np.mean((fit.clean_prob < 0.5) == noisy) > 0.95
    # the plain envelope would have called every sample clean
    plain = monotone_clean_prob(loss, fit.raw_clean_prob)
    assert np.mean((plain < 0.5) == noisy) < 0.85
    np.testing.assert_array_equal(
        fit.clean_prob, monotone_clean_prob(loss, fit.raw_clean_prob, fit.params["means"][1])
    )


def test_fit_mixture_accepts_a_column():
    loss, _ = bimodal_losses(500)
    a = fit_mixture(loss, "bmm")
    b = fit_mixture(loss.reshape(-1, 1), "bmm")
    np.testing.assert_array_equal(a.clean_prob, b.clean_prob)


def test_fit_mixture_silences_gmm_convergence_warning_but_records_it():
    rng = np.random.default_rng(2)
    x = np.r_[rng.normal(0, 1e-3, 2000), rng.normal(0.02, 0.3, 1000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit = fit_mixture(x, "gmm")
    assert fit.params["converged"] is False  # this data needs more than 10 iterations
    assert fit.params["n_iter"] == 10


@pytest.mark.parametrize("kind", ["gmm", "bmm"])
@pytest.mark.parametrize("x", [np.array([]), np.array([0.4]), np.full(10, 0.25)])
def test_degenerate_input_calls_everything_clean(kind, x):
    fit = fit_mixture(x, kind)
    np.testing.assert_array_equal(fit.clean_prob, np.ones(x.size))
    np.testing.assert_array_equal(fit.raw_clean_prob, np.ones(x.size))
    assert fit.params["degenerate"] is True and fit.params["kind"] == kind
    json.loads(json.dumps(fit.params))


@pytest.mark.parametrize("kind", ["gmm", "bmm"])
def test_two_distinct_values_do_not_crash(kind):
    x = np.r_[np.zeros(30), np.ones(20)]
    fit = fit_mixture(x, kind)
    assert fit.params["degenerate"] is False
    np.testing.assert_allclose(fit.clean_prob[:30], 1.0, atol=1e-6)
    np.testing.assert_allclose(fit.clean_prob[30:], 0.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["GMM", "kmeans", ""])
def test_unknown_kind_raises(kind):
    with pytest.raises(ValueError, match="gmm"):
        fit_mixture(np.linspace(0, 1, 10), kind)


def test_fit_mixture_rejects_non_finite_and_bmm_out_of_range():
    with pytest.raises(ValueError):
        fit_mixture(np.array([0.1, np.nan, 0.3]), "gmm")
    with pytest.raises(ValueError):
        fit_mixture(np.array([0.1, 2.0, 0.3]), "bmm")


# ------------------------------------------------------------------- estimate_noise_rate


def test_estimate_noise_rate():
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert estimate_noise_rate(p) == 0.5
    assert estimate_noise_rate(p, threshold=0.7) == 0.75
    assert estimate_noise_rate(p, threshold=0.1) == 0.0  # strictly below the threshold
    assert estimate_noise_rate(np.array([])) == 0.0
    assert isinstance(estimate_noise_rate(p), float)
