"""A small exact Gaussian-process regressor for architecture encodings (numpy + scipy).

RBF kernel on Euclidean distances between encodings, with the length scale expressed
as a multiple of the median squared norm of the encodings; the length-scale multiple and
the noise level are chosen from a grid by maximum log marginal likelihood. Targets are
standardised. Cost: O(n^3) per fit, O(n m) per mean prediction over m candidates.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

LENGTH_GRID = (0.5, 1.0, 2.0, 4.0)
NOISE_GRID = (1e-3, 1e-2, 0.1, 0.3)


class GaussianProcess:
    """Exact GP regression with grid-selected hyperparameters."""

    def __init__(self, length_grid: Sequence[float] = LENGTH_GRID, noise_grid: Sequence[float] = NOISE_GRID) -> None:
        self.length_grid, self.noise_grid = tuple(length_grid), tuple(noise_grid)
        self.hyper: tuple[float, float] | None = None
        self.log_likelihood = -np.inf

    def _kernel(self, a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.exp(-np.maximum(sq, 0.0) / (2.0 * length * length * self._scale))

    def fit(self, x: np.ndarray, y: np.ndarray, hyper: tuple[float, float] | None = None) -> "GaussianProcess":
        """Fit to rows ``x`` and targets ``y``; select hyperparameters unless ``hyper`` is given."""
        self.x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        self._mean, self._std = float(y.mean()), float(y.std()) + 1e-12
        z = (y - self._mean) / self._std
        self._scale = float(np.median((self.x * self.x).sum(1))) or 1.0
        lengths = [hyper[0]] if hyper else self.length_grid
        noises = [hyper[1]] if hyper else self.noise_grid
        best = None
        for length in lengths:
            k0 = self._kernel(self.x, self.x, length)
            for noise in noises:
                try:
                    chol = cho_factor(k0 + noise * np.eye(len(z)), lower=True)
                except LinAlgError:
                    continue
                alpha = cho_solve(chol, z)
                ll = -0.5 * float(z @ alpha) - float(np.log(np.diag(chol[0])).sum())
                if best is None or ll > best[0]:
                    best = (ll, length, noise, chol, alpha)
        if best is None:
            raise LinAlgError("kernel matrix is not positive definite for any hyperparameters")
        self.log_likelihood, length, noise, self._chol, self._alpha = best
        self.hyper = (length, noise)
        return self

    def predict(self, x: np.ndarray, observation: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (in the targets' units) at rows ``x``.

        With ``observation`` the deviation is that of a new noisy measurement (latent
        variance plus the fitted noise), not of the latent function.
        """
        assert self.hyper is not None, "fit() first"
        ks = self._kernel(np.asarray(x, dtype=float), self.x, self.hyper[0])
        mean = ks @ self._alpha
        var = 1.0 - np.einsum("ij,ji->i", ks, cho_solve(self._chol, ks.T))
        if observation:
            var = var + self.hyper[1]
        return mean * self._std + self._mean, np.sqrt(np.maximum(var, 1e-12)) * self._std
