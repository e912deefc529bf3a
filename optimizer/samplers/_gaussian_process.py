"""A Gaussian process on the unit cube: Matérn 5/2 with one lengthscale per input, fitted by MAP.

Small on purpose (numpy and scipy, which hyperopt already needs): a tuning
search sees tens to hundreds of points, where an exact GP is cheap and, on
smooth problems, far more sample-efficient than density estimators such as TPE.

- **Priors** keep a fit on 10 points sane: log-normal lengthscales centred at
  0.5 of the unit cube (the mean of BoTorch's former Gamma(3, 6) prior; the
  longer ones of its present dimension-scaled prior, ``exp(sqrt(2)) sqrt(d)``,
  left the model too smooth to leave the first basin it found on Hartmann-6
  in our runs), a signal variance around 1 and a noise variance around
  ``exp(-4)`` of the standardized outputs. The one-hot columns of a choice
  have theirs centred at 4: changing an option then shifts the function
  rather than making it an unrelated one, so what one option does is learned
  from points that differ in the other parameters too (choices in tuning
  spaces mostly act as offsets: an optimizer, a pooling type). Centred at
  0.5, every combination of options had to be tried before the model knew it;
  on the CNN-like space of ``bench/quality.py`` the median regret after 50
  evaluations fell from 0.41-0.51 to 0.001-0.002 (held-out seeds 100-139;
  0.25, 0.5, 1, 2, 4 and 8 tried on seeds 100-119).
- **Outputs** are Yeo-Johnson transformed, then standardized: losses are often
  skewed (a few diverged trials far above the rest), which a GP on raw values
  fits badly.
- **Pending points** enter as *Kriging believers*: with the posterior mean as
  their value, they shrink the variance, hence the expected improvement,
  around themselves, so points proposed in parallel spread out.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.optimize
from scipy.special import log_ndtr

SQRT5 = math.sqrt(5.0)
JITTER = 1e-8
NOISE_BOUNDS = (math.log(1e-6), math.log(1.0))
LENGTHSCALE_PRIOR = (math.log(0.5), 1.0)  # mean and sd of log(lengthscale)
ONE_HOT_LENGTHSCALE_MEAN = math.log(4.0)  # a choice's one-hot columns: the same sd


def transform_outputs(y: np.ndarray) -> np.ndarray:
    """Yeo-Johnson then standardization: skewed losses made roughly normal (order kept)."""
    if len(y) < 2 or np.ptp(y) == 0:
        return np.zeros_like(y)
    z = (y - y.mean()) / y.std()
    with np.errstate(all="ignore"):
        warped = _yeo_johnson(z, _yeo_johnson_lambda(z))
    if not np.all(np.isfinite(warped)) or np.ptp(warped) == 0:
        warped = z
    return (warped - warped.mean()) / warped.std()


def _yeo_johnson(x: np.ndarray, lmbda: float) -> np.ndarray:
    """The Yeo-Johnson transform (as ``scipy.stats.yeojohnson`` computes it)."""
    out, pos, eps = np.zeros_like(x), x >= 0, np.finfo(x.dtype).eps
    out[pos] = np.log1p(x[pos]) if abs(lmbda) < eps else np.expm1(lmbda * np.log1p(x[pos])) / lmbda
    out[~pos] = (-np.expm1((2 - lmbda) * np.log1p(-x[~pos])) / (2 - lmbda) if abs(lmbda - 2) > eps
                 else -np.log1p(-x[~pos]))
    return out


def _yeo_johnson_lambda(x: np.ndarray) -> float:
    """The maximum-likelihood lambda, found as ``scipy.stats.yeojohnson_normmax`` finds it (same value).

    Written out because scipy.stats costs every master's start-up 0.4 s to import
    (tests/caviar/test_imports.py) and its per-call argument handling was an eighth of a proposal.
    """
    n, log_jacobian = len(x), np.sum(np.sign(x) * np.log1p(np.abs(x)))

    def neg_llf(lmbda: float) -> float:
        var = np.var(_yeo_johnson(x, lmbda))
        llf = -n / 2 * (np.log(var) if var >= np.finfo(var.dtype).smallest_normal else -np.inf) \
            + (lmbda - 1) * log_jacobian
        return -llf if np.isfinite(llf) or np.isnan(llf) else np.inf

    finfo = np.finfo(x.dtype)
    log1p_max_x = np.log1p(20 * np.max(np.abs(x)))  # bounds that keep the transformed values representable
    lb = (np.log(finfo.tiny) - np.log(finfo.eps)) / 2 / log1p_max_x
    ub = (np.log(finfo.max) + np.log(finfo.eps)) / 2 / log1p_max_x
    if np.all(x < 0):
        lb, ub = 2 - ub, 2 - lb
    elif np.any(x < 0):
        lb, ub = max(2 - ub, lb), min(2 - lb, ub)
    return float(scipy.optimize.fminbound(neg_llf, lb, ub, xtol=1.48e-08))


def _matern(r2: np.ndarray, signal: float) -> np.ndarray:
    """Matérn 5/2 of scaled squared distances."""
    r = np.sqrt(np.maximum(r2, 0.0))
    return signal * (1 + SQRT5 * r + 5.0 / 3.0 * r2) * np.exp(-SQRT5 * r)


def _matern_and_factor(r2: np.ndarray, signal: float) -> tuple[np.ndarray, np.ndarray]:
    """``_matern``, and the factor d k / d log(lengthscale_k) has over scaled_k (for the fit's gradient)."""
    r = np.sqrt(np.maximum(r2, 0.0))
    return _matern(r2, signal), signal * 5.0 / 3.0 * (1 + SQRT5 * r) * np.exp(-SQRT5 * r)


class GaussianProcess:
    """An exact GP regression of ``y`` on ``x`` (rows in [0, 1]^d), hyperparameters by MAP.

    The hyperparameters are fitted on ``fit`` (a subset of the rows' indices,
    default all), the posterior conditioned on every row. ``one_hot`` marks
    the columns that encode a choice (their own lengthscale prior).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, fit: np.ndarray | None = None, max_iterations: int = 50,
                 one_hot: np.ndarray | None = None):
        d = x.shape[1]
        self._ls_mean, self._ls_sd = np.full(d, LENGTHSCALE_PRIOR[0]), LENGTHSCALE_PRIOR[1]
        if one_hot is not None:
            self._ls_mean[one_hot] = ONE_HOT_LENGTHSCALE_MEAN
        xf, self._y_fit = (x, y) if fit is None else (x[fit], y[fit])
        self._sq = ((xf[:, None, :] - xf[None, :, :]) ** 2).reshape(len(xf) ** 2, d)  # every pair's, per input
        start = np.concatenate([self._ls_mean, [0.0, -4.0]])
        bounds = [(math.log(1e-2), math.log(1e3))] * d + [(math.log(0.05), math.log(20.0)), NOISE_BOUNDS]
        best = scipy.optimize.minimize(self._neg_log_posterior, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                       options={"maxiter": max_iterations})
        self.theta = best.x
        self._inv_ls = np.exp(-best.x[:d])
        self._signal, self._noise = math.exp(best.x[d]), math.exp(best.x[d + 1])
        self._factor(x, y)

    def _neg_log_posterior(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        d, n, y = self._sq.shape[-1], len(self._y_fit), self._y_fit
        inv_ls2 = np.exp(-2 * theta[:d])
        k, common = _matern_and_factor((self._sq @ inv_ls2).reshape(n, n), math.exp(theta[d]))
        noise = math.exp(theta[d + 1])
        signal_part = k.copy()
        k[np.diag_indices(n)] += noise + JITTER
        try:
            chol = scipy.linalg.cho_factor(k, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = scipy.linalg.cho_solve(chol, y, check_finite=False)
        k_inv = scipy.linalg.cho_solve(chol, np.eye(n), check_finite=False)
        nll = 0.5 * y @ alpha + np.log(np.diag(chol[0])).sum() + 0.5 * n * math.log(2 * math.pi)
        w = np.outer(alpha, alpha) - k_inv  # d(log likelihood) = 0.5 tr(w dK)
        grad = np.empty_like(theta)
        grad[:d] = -0.5 * ((w * common).ravel() @ self._sq) * inv_ls2
        grad[d] = -0.5 * np.sum(w * signal_part)
        grad[d + 1] = -0.5 * np.trace(w) * noise
        # Priors: log-normal lengthscales, signal variance (around 1) and noise variance (around e^-4).
        z_ls = (theta[:d] - self._ls_mean) / self._ls_sd
        nll += 0.5 * np.sum(z_ls**2) + 0.5 * theta[d] ** 2 + 0.5 * (theta[d + 1] + 4.0) ** 2
        grad[:d] += z_ls / self._ls_sd
        grad[d] += theta[d]
        grad[d + 1] += theta[d + 1] + 4.0
        return float(nll), grad

    def _r2(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scaled squared distances between the rows of ``a`` and ``b``."""
        sa, sb = a * self._inv_ls, b * self._inv_ls
        return (sa * sa).sum(1)[:, None] + (sb * sb).sum(1)[None, :] - 2 * sa @ sb.T

    def _factor(self, x: np.ndarray, y: np.ndarray) -> None:
        k = _matern(self._r2(x, x), self._signal)
        k[np.diag_indices(len(y))] += self._noise + JITTER
        self._train_x, self._train_y, self._chol = x, y, scipy.linalg.cho_factor(k, lower=True, check_finite=False)
        self._alpha = scipy.linalg.cho_solve(self._chol, y, check_finite=False)

    def condition_on_pending(self, x_pending: np.ndarray, lie: float | None = None) -> None:
        """Add pending points with ``lie`` as their value, or the posterior mean (Kriging believers)."""
        if len(x_pending):
            values = self.predict(x_pending)[0] if lie is None else np.full(len(x_pending), lie)
            self._factor(np.vstack([self._train_x, x_pending]), np.concatenate([self._train_y, values]))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (of the latent function) at the rows of ``x``."""
        k_star = _matern(self._r2(x, self._train_x), self._signal)
        mean = k_star @ self._alpha
        v = scipy.linalg.solve_triangular(self._chol[0], k_star.T, lower=True, check_finite=False)
        return mean, np.sqrt(np.maximum(self._signal - np.sum(v * v, axis=0), 1e-12))


def log_expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """log EI of going below ``best``, stable where EI underflows (far from the incumbent)."""
    z = (best - mean) / sd
    out = np.empty_like(z)
    mid = z > -6
    zm = z[mid]
    out[mid] = np.log(np.maximum(zm * np.exp(log_ndtr(zm)) + np.exp(-0.5 * zm * zm) / math.sqrt(2 * math.pi), 1e-300))
    zt = z[~mid]  # z Phi(z) + phi(z) ~ phi(z) / z^2 for z -> -inf
    out[~mid] = -0.5 * zt * zt - 0.5 * math.log(2 * math.pi) - 2 * np.log(-zt)
    return out + np.log(sd)
