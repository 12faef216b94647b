"""Two-component mixtures on per-sample losses: which samples look clean, which look noisy.

A network trained for a few epochs on data with wrong labels fits the correct labels first,
so wrongly labelled samples keep a larger training loss for a while (Arazo et al. 2019,
"Unsupervised label noise modeling and loss correction"; Li et al. 2020, "DivideMix").
The per-sample losses, min-max normalised to ``[0, 1]`` (:func:`normalise_losses`), are
then roughly bimodal: a large low-loss mode of clean samples and a smaller high-loss mode
of noisy ones. Fitting a two-component mixture to them and taking each sample's posterior
probability of the low-mean component gives its *clean probability*.

Two mixtures are offered by :func:`fit_mixture`:

* ``"gmm"``: scikit-learn's :class:`~sklearn.mixture.GaussianMixture` with the settings
  DivideMix uses (``max_iter=10, tol=1e-2, reg_covar=5e-4``).
* ``"bmm"``: :class:`BetaMixture`, a mixture of Beta distributions (the loss lives on
  ``[0, 1]`` and its clean mode is skewed, which a Beta fits better than a Gaussian),
  fitted by EM whose M-step uses weighted moments (Arazo et al. 2019): for component
  ``k`` with responsibilities ``r_k``, the weighted mean ``m`` and variance ``v`` give

  .. math::

      \\alpha_k = m\\left(\\frac{m(1-m)}{v} - 1\\right), \\qquad
      \\beta_k = \\alpha_k \\frac{1-m}{m}, \\qquad
      \\pi_k = \\operatorname{mean}_i r_{ik}.

A two-component mixture whose components have unequal spreads can give a very low loss a
lower clean posterior than a moderate one (the wider component wins in the far tail). A
clean probability should never rise with the loss, so :func:`fit_mixture` also applies
:func:`monotone_clean_prob`: each sample receives the largest raw posterior among the
samples whose loss is at least its own. Above the noisy component's mean the raw
posterior is first made non-increasing on its own (a running minimum), so a posterior that
rises again in the far right tail (a wider clean component, or a Beta boundary effect at a
loss of 1) cannot be spread by that envelope over the noisy samples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "BETA_PARAM_MAX",
    "BETA_PARAM_MIN",
    "MIXTURE_KINDS",
    "BetaMixture",
    "MixtureFit",
    "beta_from_moments",
    "estimate_noise_rate",
    "fit_mixture",
    "monotone_clean_prob",
    "normalise_losses",
]

#: The kinds :func:`fit_mixture` accepts.
MIXTURE_KINDS: tuple[str, ...] = ("gmm", "bmm")

#: Smallest value :class:`BetaMixture` lets a fitted ``alpha`` or ``beta`` take.
BETA_PARAM_MIN: float = 1e-2
#: Largest value :class:`BetaMixture` lets a fitted ``alpha`` or ``beta`` take.
BETA_PARAM_MAX: float = 1e4

# A component whose responsibilities sum to less than this (in samples) is treated as empty.
_EMPTY_COMPONENT = 1e-8
# Floor on a component's weighted variance, so a zero variance does not divide by zero.
_MIN_VARIANCE = 1e-12


def normalise_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max normalise per-sample losses to ``[0, 1]``.

    Args:
        losses: per-sample losses, any shape (usually ``(n,)``).

    Returns:
        A float64 array of the same shape: ``(losses - min) / (max - min)``. The smallest
        loss maps to exactly 0 and the largest to exactly 1; a constant input (or an empty
        one) gives all zeros.

    Raises:
        ValueError: if any loss is NaN or infinite.
    """
    x = np.asarray(losses, dtype=np.float64)
    if x.size == 0:
        return np.zeros_like(x)
    if not np.all(np.isfinite(x)):
        raise ValueError("losses contain NaN or infinite values")
    lo = x.min()
    span = x.max() - lo
    if span <= 0:
        return np.zeros_like(x)
    out = (x - lo) / span
    # guard against a rounding excursion just outside [0, 1]
    return np.clip(out, 0.0, 1.0)


def beta_from_moments(mean: float, var: float) -> tuple[float, float]:
    """Beta parameters with the given mean and variance (the method of moments).

    ``alpha = m * (m * (1 - m) / v - 1)`` and ``beta = alpha * (1 - m) / m``, so that
    ``alpha / (alpha + beta) == m`` and the Beta variance equals ``v``. This is the plain
    formula without the clamping :class:`BetaMixture` applies to degenerate components.

    Args:
        mean: the mean ``m``, strictly inside ``(0, 1)``.
        var: the variance ``v``, strictly inside ``(0, m * (1 - m))``.

    Returns:
        ``(alpha, beta)``, both positive.

    Raises:
        ValueError: if no Beta distribution has these moments.
    """
    m = float(mean)
    v = float(var)
    if not (np.isfinite(m) and np.isfinite(v)):
        raise ValueError("mean and var must be finite")
    if not 0.0 < m < 1.0:
        raise ValueError(f"a Beta mean must lie in (0, 1), got {m}")
    if not 0.0 < v < m * (1.0 - m):
        raise ValueError(f"a Beta with mean {m} needs a variance in (0, {m * (1.0 - m)}), got {v}")
    alpha = m * (m * (1.0 - m) / v - 1.0)
    beta = alpha * (1.0 - m) / m
    return alpha, beta


def _clamped_beta_params(means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised method of moments that always returns finite, positive parameters.

    The means are already inside ``(0, 1)`` (the data are clipped). The concentration
    ``phi = alpha + beta = m(1-m)/v - 1`` is clipped so that both ``alpha = m * phi`` and
    ``beta = (1 - m) * phi`` land in ``[BETA_PARAM_MIN, BETA_PARAM_MAX]``, which keeps the
    component mean ``m`` exact; a mean so extreme that no such ``phi`` exists falls back to
    clipping ``alpha`` and ``beta`` separately.
    """
    m = np.asarray(means, dtype=np.float64)
    v = np.maximum(np.asarray(variances, dtype=np.float64), _MIN_VARIANCE)
    phi = m * (1.0 - m) / v - 1.0
    phi_lo = BETA_PARAM_MIN / np.minimum(m, 1.0 - m)
    phi_hi = BETA_PARAM_MAX / np.maximum(m, 1.0 - m)
    phi = np.minimum(np.maximum(phi, phi_lo), phi_hi)
    alpha = np.clip(m * phi, BETA_PARAM_MIN, BETA_PARAM_MAX)
    beta = np.clip((1.0 - m) * phi, BETA_PARAM_MIN, BETA_PARAM_MAX)
    return alpha, beta


class BetaMixture(BaseEstimator, DensityMixin):
    """A mixture of Beta distributions on data in ``[0, 1]``, fitted by EM.

    The E-step computes posteriors (responsibilities) with log-sum-exp; the M-step sets
    each component's weight to its mean responsibility and its ``alpha``, ``beta`` by the
    weighted method of moments (Arazo et al. 2019). The interface follows
    :class:`sklearn.mixture.GaussianMixture`: ``X`` may be shaped ``(n,)`` or ``(n, 1)``.

    Data are clipped to ``[eps, 1 - eps]`` before fitting and scoring, since a Beta
    density can be zero or infinite at 0 and 1. Values outside ``[0, 1]`` are an error.

    Initialisation is deterministic: 1-D k-means on the values, started from evenly
    spaced quantiles, gives hard responsibilities, so component 0 starts on the lowest
    values and the last component on the highest.

    Degenerate components are guarded: a zero weighted variance is floored, ``alpha`` and
    ``beta`` are kept within ``[BETA_PARAM_MIN, BETA_PARAM_MAX]`` (``[1e-2, 1e4]``,
    preserving the component mean where that range allows), and a component whose
    responsibilities sum to (almost) zero keeps its previous ``alpha`` and ``beta`` with a
    weight of (almost) zero.

    Parameters:
        n_components: number of Beta components.
        max_iter: maximum number of EM iterations (M-steps after the initial one).
        tol: EM stops once the mean log-likelihood changes by less than this.
        eps: data are clipped to ``[eps, 1 - eps]``; must lie in ``(0, 0.5)``.
        random_state: seed or ``RandomState`` for :meth:`sample`. Fitting is deterministic
            and does not use it; it is accepted so the estimator can stand in for
            ``GaussianMixture``.

    Attributes:
        weights_: ``(n_components,)`` mixing weights.
        alphas_: ``(n_components,)`` Beta ``alpha`` parameters.
        betas_: ``(n_components,)`` Beta ``beta`` parameters.
        means_: ``(n_components,)`` component means ``alpha / (alpha + beta)``.
        converged_: whether the change in mean log-likelihood fell below ``tol``.
        n_iter_: number of EM iterations run.
        lower_bound_: mean log-likelihood of the training data under the final parameters.
        n_features_in_: always 1.
    """

    def __init__(
        self,
        n_components: int = 2,
        max_iter: int = 10,
        tol: float = 1e-4,
        eps: float = 1e-4,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.eps = eps
        self.random_state = random_state

    # ----------------------------------------------------------------------------- helpers
    def _check_params(self) -> None:
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be an integer >= 1, got {self.n_components!r}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not (np.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}")
        if not 0.0 < self.eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {self.eps!r}")

    def _validate_X(self, X) -> np.ndarray:
        """Return ``X`` as a clipped float64 vector, checking shape and range."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        elif x.ndim != 1:
            raise ValueError(f"X must have shape (n,) or (n, 1), got {x.shape}")
        if x.size == 0:
            raise ValueError("X is empty")
        if not np.all(np.isfinite(x)):
            raise ValueError("X contains NaN or infinite values")
        if x.min() < 0.0 or x.max() > 1.0:
            raise ValueError("BetaMixture needs data in [0, 1]; normalise the losses first")
        return np.clip(x, self.eps, 1.0 - self.eps)

    def _initial_resp(self, x: np.ndarray) -> np.ndarray:
        """Hard responsibilities from 1-D k-means started at evenly spaced quantiles."""
        k = self.n_components
        n = x.size
        centres = np.quantile(x, (np.arange(k) + 0.5) / k)
        labels = np.zeros(n, dtype=np.intp)
        for _ in range(100):
            labels = np.argmin(np.abs(x[:, None] - centres[None, :]), axis=1)
            new = centres.copy()
            for j in range(k):
                members = x[labels == j]
                if members.size:
                    new[j] = members.mean()
            new = np.sort(new)  # tied starting centres could otherwise change places
            if np.array_equal(new, centres):
                break
            centres = new
        # with sorted centres cluster j holds the j-th lowest values, so component 0 starts low
        if np.bincount(labels, minlength=k).min() == 0:
            # too few distinct values for k clusters: split the sorted samples evenly instead
            labels = np.empty(n, dtype=np.intp)
            labels[np.argsort(x, kind="stable")] = np.arange(n) * k // n
        resp = np.zeros((n, k))
        resp[np.arange(n), labels] = 1.0
        return resp

    def _m_step(self, x: np.ndarray, resp: np.ndarray) -> None:
        """Weights and weighted-moment ``alpha``, ``beta`` from responsibilities."""
        n, k = resp.shape
        totals = resp.sum(axis=0)
        empty = totals < _EMPTY_COMPONENT
        safe = np.where(empty, 1.0, totals)
        means = (resp * x[:, None]).sum(axis=0) / safe
        means = np.clip(means, self.eps, 1.0 - self.eps)
        variances = (resp * (x[:, None] - means[None, :]) ** 2).sum(axis=0) / safe
        alphas, betas = _clamped_beta_params(means, variances)
        if empty.any():
            prev_a = getattr(self, "alphas_", np.ones(k))
            prev_b = getattr(self, "betas_", np.ones(k))
            alphas = np.where(empty, prev_a, alphas)
            betas = np.where(empty, prev_b, betas)
        self.weights_ = totals / n
        self.alphas_ = alphas
        self.betas_ = betas
        self.means_ = alphas / (alphas + betas)

    def _weighted_log_prob(self, x: np.ndarray) -> np.ndarray:
        """``log(weight_k) + log Beta(x; alpha_k, beta_k)``, shape ``(n, n_components)``."""
        log_pdf = stats.beta.logpdf(x[:, None], self.alphas_[None, :], self.betas_[None, :])
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights_)
        return log_pdf + log_w[None, :]

    def _e_step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample log mixture density and responsibilities."""
        wlp = self._weighted_log_prob(x)
        log_norm = logsumexp(wlp, axis=1)
        resp = np.exp(wlp - log_norm[:, None])
        return log_norm, resp

    # ------------------------------------------------------------------------- public API
    def fit(self, X, y=None) -> BetaMixture:
        """Fit the mixture to ``X`` by EM.

        Args:
            X: values in ``[0, 1]``, shape ``(n,)`` or ``(n, 1)``, ``n >= n_components``.
            y: ignored.

        Returns:
            ``self``.
        """
        self._check_params()
        x = self._validate_X(X)
        if x.size < self.n_components:
            raise ValueError(
                f"need at least n_components={self.n_components} samples, got {x.size}"
            )
        for name in ("weights_", "alphas_", "betas_", "means_"):
            self.__dict__.pop(name, None)  # a refit starts from scratch
        self.n_features_in_ = 1
        self._m_step(x, self._initial_resp(x))
        log_norm, resp = self._e_step(x)
        lower_bound = float(log_norm.mean())
        self.converged_ = False
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            self.n_iter_ += 1
            previous = lower_bound
            self._m_step(x, resp)
            log_norm, resp = self._e_step(x)
            lower_bound = float(log_norm.mean())
            if abs(lower_bound - previous) < self.tol:
                self.converged_ = True
                break
        self.lower_bound_ = lower_bound
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then return the most probable component of each sample."""
        return self.fit(X).predict(X)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, shape ``(n, n_components)``."""
        check_is_fitted(self, "weights_")
        return self._e_step(self._validate_X(X))[1]

    def predict(self, X) -> np.ndarray:
        """Index of the most probable component for each sample, shape ``(n,)``."""
        return np.argmax(self.predict_proba(X), axis=1)

    def score_samples(self, X) -> np.ndarray:
        """Log of the mixture density at each (clipped) sample, shape ``(n,)``."""
        check_is_fitted(self, "weights_")
        return self._e_step(self._validate_X(X))[0]

    def score(self, X, y=None) -> float:
        """Mean log-likelihood of ``X`` under the fitted mixture."""
        return float(self.score_samples(X).mean())

    def _n_parameters(self) -> int:
        return 3 * self.n_components - 1

    def bic(self, X) -> float:
        """Bayesian information criterion of the fitted model on ``X`` (lower is better)."""
        n = self._validate_X(X).size
        return -2.0 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion of the fitted model on ``X`` (lower is better)."""
        n = self._validate_X(X).size
        return -2.0 * self.score(X) * n + 2.0 * self._n_parameters()

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture using ``random_state``.

        Returns:
            ``(X, y)``: values of shape ``(n_samples, 1)`` and their component labels.
        """
        check_is_fitted(self, "weights_")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        rng = check_random_state(self.random_state)
        weights = self.weights_ / self.weights_.sum()
        y = rng.choice(self.n_components, size=n_samples, p=weights)
        x = rng.beta(self.alphas_[y], self.betas_[y])
        return x.reshape(-1, 1), y


@dataclass
class MixtureFit:
    """The result of :func:`fit_mixture`.

    Attributes:
        kind: ``"gmm"`` or ``"bmm"``.
        clean_prob: ``(n,)`` clean probability per sample, never increasing with the loss,
            in ``[0, 1]``: ``monotone_clean_prob(losses, raw_clean_prob,
            noisy_mean=params["means"][1])``.
        raw_clean_prob: ``(n,)`` plain posterior of the low-mean component.
        clean_component: index of the low-mean component in ``model``.
        params: JSON-serialisable summary: ``kind``, ``degenerate``, ``weights``,
            ``means``, and ``stds`` (gmm) or ``alphas``/``betas`` (bmm), ``converged``,
            ``n_iter``, ``lower_bound``; every list has the clean component first.
            A degenerate fit holds only ``kind``, ``degenerate`` (True), ``n_samples``,
            ``converged`` (False) and ``n_iter`` (0).
        model: the fitted estimator (``None`` for a degenerate fit).
    """

    kind: str
    clean_prob: np.ndarray
    raw_clean_prob: np.ndarray
    clean_component: int
    params: dict
    model: object


def monotone_clean_prob(
    losses: np.ndarray, raw_clean_prob: np.ndarray, noisy_mean: float | None = None
) -> np.ndarray:
    """Make clean probabilities non-increasing in the loss.

    ``out[i]`` is the largest ``raw_clean_prob[j]`` over all samples ``j`` with
    ``losses[j] >= losses[i]``: sort by loss and take a reversed cumulative maximum.
    Samples with equal losses therefore get equal outputs. This lifts the low clean
    posterior a mixture can give the very lowest losses when its noisy component is the
    wider one.

    The envelope would also spread a *rise* of the posterior in the far right tail (the
    clean component being the wider one, or a Beta boundary effect at a loss of 1) to
    every lower loss, marking all noisy samples clean. Passing ``noisy_mean`` guards
    against that: above ``noisy_mean`` the raw posterior is first replaced by its running
    minimum in order of increasing loss (beyond the noisy mode it may only fall), and the
    envelope is taken of that. :func:`fit_mixture` passes the noisy component's mean.

    Args:
        losses: ``(n,)`` per-sample losses.
        raw_clean_prob: ``(n,)`` clean posteriors, in the same order.
        noisy_mean: optional loss above which the raw posterior is not allowed to rise
            before the envelope is taken; ``None`` applies the plain envelope.

    Returns:
        ``(n,)`` float64 array in the original sample order.

    Raises:
        ValueError: if the shapes differ or any value is NaN or infinite.
    """
    loss = np.asarray(losses, dtype=np.float64).ravel()
    raw = np.asarray(raw_clean_prob, dtype=np.float64).ravel()
    if loss.shape != raw.shape:
        raise ValueError(f"losses and raw_clean_prob differ in length: {loss.size} != {raw.size}")
    if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(raw))):
        raise ValueError("losses and raw_clean_prob must be finite")
    n = loss.size
    if n == 0:
        return np.zeros(0)
    order = np.argsort(loss, kind="stable")
    sorted_loss = loss[order]
    # work on runs of equal loss, each represented by its largest raw value, so that tied
    # samples get equal outputs whatever their order
    run_start = np.empty(n, dtype=bool)
    run_start[0] = True
    run_start[1:] = sorted_loss[1:] != sorted_loss[:-1]
    starts = np.flatnonzero(run_start)
    run_loss = sorted_loss[starts]
    run_raw = np.maximum.reduceat(raw[order], starts)
    if noisy_mean is not None:
        tail = np.flatnonzero(run_loss > noisy_mean)
        if tail.size:
            first = tail[0]
            run_raw[first:] = np.minimum.accumulate(run_raw[first:])
    run_env = np.maximum.accumulate(run_raw[::-1])[::-1]
    envelope = run_env[np.cumsum(run_start) - 1]
    out = np.empty(n)
    out[order] = envelope
    return out


def _fit_gmm(x: np.ndarray, random_state: int | None) -> tuple[GaussianMixture, dict]:
    model = GaussianMixture(
        n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=random_state
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=10 is deliberate
        model.fit(x.reshape(-1, 1))
    means = model.means_.ravel()
    order = np.argsort(means, kind="stable")
    params = {
        "weights": [float(v) for v in model.weights_[order]],
        "means": [float(v) for v in means[order]],
        "stds": [float(v) for v in np.sqrt(model.covariances_.ravel())[order]],
    }
    return model, params


def _fit_bmm(x: np.ndarray, random_state: int | None) -> tuple[BetaMixture, dict]:
    model = BetaMixture(n_components=2, random_state=random_state).fit(x)
    order = np.argsort(model.means_, kind="stable")
    params = {
        "weights": [float(v) for v in model.weights_[order]],
        "means": [float(v) for v in model.means_[order]],
        "alphas": [float(v) for v in model.alphas_[order]],
        "betas": [float(v) for v in model.betas_[order]],
    }
    return model, params


def fit_mixture(
    normalised_losses: np.ndarray, kind: str = "gmm", random_state: int | None = 0
) -> MixtureFit:
    """Fit a two-component mixture to normalised losses and derive clean probabilities.

    Args:
        normalised_losses: ``(n,)`` (or ``(n, 1)``) per-sample losses in ``[0, 1]``, as
            made by :func:`normalise_losses`.
        kind: ``"gmm"`` (a Gaussian mixture with DivideMix's settings) or ``"bmm"`` (a
            :class:`BetaMixture`).
        random_state: seed passed to the estimator.

    Returns:
        A :class:`MixtureFit`. The clean component is the one with the smaller mean;
        ``raw_clean_prob`` is its posterior and ``clean_prob`` its monotone envelope
        (:func:`monotone_clean_prob` with ``noisy_mean`` set to the noisy component's
        mean, so a posterior rising again far above the noisy mode cannot lift the
        noisy samples). Input with fewer than two samples or fewer than two
        distinct values cannot be split: every sample is then called clean (probability
        1.0) and ``params["degenerate"]`` is True.

    Raises:
        ValueError: for an unknown ``kind``, a non-finite loss, input of the wrong shape,
            or (``"bmm"`` only) a loss outside ``[0, 1]``.
    """
    if kind not in MIXTURE_KINDS:
        raise ValueError(f"unknown mixture kind {kind!r}; valid kinds are {list(MIXTURE_KINDS)}")
    x = np.asarray(normalised_losses, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim != 1:
        raise ValueError(f"normalised_losses must have shape (n,) or (n, 1), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("normalised_losses contain NaN or infinite values")
    n = x.size

    if n < 2 or np.unique(x).size < 2:
        ones = np.ones(n)
        params = {
            "kind": kind,
            "degenerate": True,
            "n_samples": int(n),
            "converged": False,
            "n_iter": 0,
        }
        return MixtureFit(kind, ones, ones.copy(), 0, params, None)

    if kind == "gmm":
        model, summary = _fit_gmm(x, random_state)
        component_means = model.means_.ravel()
        proba = model.predict_proba(x.reshape(-1, 1))
    else:
        model, summary = _fit_bmm(x, random_state)
        component_means = model.means_
        proba = model.predict_proba(x)
    clean_component = int(np.argmin(component_means))
    noisy_mean = float(np.max(component_means))
    raw = np.clip(proba[:, clean_component], 0.0, 1.0)
    clean = np.clip(monotone_clean_prob(x, raw, noisy_mean=noisy_mean), 0.0, 1.0)
    params = {
        "kind": kind,
        "degenerate": False,
        **summary,
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "lower_bound": float(model.lower_bound_),
    }
    return MixtureFit(kind, clean, raw, clean_component, params, model)


def estimate_noise_rate(clean_prob: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of samples whose clean probability is below ``threshold``.

    Args:
        clean_prob: per-sample clean probabilities.
        threshold: a sample counts as noisy when its clean probability is below this.

    Returns:
        The noisy fraction in ``[0, 1]``; 0.0 for an empty input.

    Raises:
        ValueError: if any probability is NaN or infinite.
    """
    p = np.asarray(clean_prob, dtype=np.float64).ravel()
    if p.size == 0:
        return 0.0
    if not np.all(np.isfinite(p)):
        raise ValueError("clean_prob contains NaN or infinite values")
    return float(np.mean(p < threshold))
