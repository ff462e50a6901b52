"""Predictor-guided Bayesian optimisation (BANANAS / Neural Predictor / GBDT-NAS family).

Each step fits a Gaussian process to the encodings of the finished architectures and
proposes the candidate with the highest acquisition value. Candidates are every
one-edit neighbour of the best ``top_k`` architectures found so far plus ``n_random``
architectures drawn from a fixed pool of random samples (BANANAS' "mutation"
acquisition optimiser, widened with random samples so the search can jump between
basins; the pool is sampled once so a step costs milliseconds, not a fresh sampling
pass). Pending trials (asked, not yet told)
are treated as observed at the GP's predicted mean ("kriging believer"), so batch and
asynchronous asks spread out instead of repeating one proposal.

With several objectives each one gets its own GP and the acquisition is ParEGO's
random augmented-Chebyshev scalarisation of the predicted objectives, redrawn every
step.

With a prior (``Strategy.use_prior``: a cheap score such as a training-free proxy, higher =
predicted better) the prior is computed on a reference sample of the random pool (its first
``prior_pool`` architectures). ``warm_start`` > 0 makes the initial design the top-``warm_start``
architectures of that sample by prior instead of random ones, and ``prior_feature`` appends
the prior, rank-normalised against the reference sample (its empirical CDF, in [0, 1], times
``PRIOR_FEATURE_SCALE``), to the GP's features; random candidates are then drawn from the
reference sample, so the prior is only ever computed on it and on incumbents' neighbours
(each architecture once, cached by the prior). Without a prior nothing changes.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr
from threadpoolctl import threadpool_limits

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial
from .base import Strategy, require
from .gp import GaussianProcess

ENCODINGS = ("stats",)
# Weight of the rank-normalised prior in the features. On the MNIST-1D reference cell a one-op
# change moves the "stats" encoding by a squared distance of 6-8 (random pairs: about 17), so a
# unit-range prior feature would be almost invisible to the isotropic kernel; with 2, the
# prior's best and worst are 4 apart, about half a one-op change.
PRIOR_FEATURE_SCALE = 2.0
SQRT_2PI = float(np.sqrt(2 * np.pi))


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    """Standard normal density (as scipy.stats.norm.pdf computes it; scipy.stats costs 0.5 s to import)."""
    return np.exp(-z**2 / 2.0) / SQRT_2PI  # genotype one-hot + cell summaries (see SearchSpace.encode)


class PredictorBO(Strategy):
    """GP-based BO over architecture encodings.

    Options: ``initial`` random architectures before the model is used; ``top_k``
    incumbents whose neighbourhoods are scored; ``n_random`` random candidates per step;
    ``acquisition`` ``"ei"`` (expected improvement), ``"ucb"`` (mean + 2 sd) or
    ``"mean"``; ``noisy_ei`` scores EI on a new noisy observation instead of the latent
    value; ``max_train`` caps the GP's training set (best half plus most recent half) to
    bound the O(n^3) fit; ``retune_every`` steps between hyperparameter searches;
    ``encodings`` the space encodings concatenated into features; ``pool_size`` the
    random pool; ``cost_features`` adds the log of metrics known before evaluation
    (latency, parameters) to the features (did not help on NAS-Bench-Graph).

    Prior options (used only when a prior is attached, see the module docstring):
    ``warm_start`` prior-top architectures as the initial design (the model is fitted once
    max(``initial``, ``warm_start``) trials are complete; 0 = random initial design);
    ``prior_feature`` adds the rank-normalised prior to the features; ``prior_pool`` is the
    size of the prior-scored reference sample.
    """

    name = "bo"
    summary = "predictor-guided Bayesian optimisation: GP over encodings, EI over mutations + samples"
    multi_objective = True
    # Class-level defaults so snapshots pickled before the prior options existed still load.
    warm_start, prior_feature, prior_pool = 0, True, 1000
    _prior_ref: np.ndarray | None = None
    _prior_top: list[Architecture] | None = None

    def __init__(self, problem: Problem, seed: int = 0, initial: int = 10, top_k: int = 10, n_random: int = 2000,
                 acquisition: str = "ei", max_train: int = 300, retune_every: int = 10,
                 encodings: tuple[str, ...] = ENCODINGS, noisy_ei: bool = True, pool_size: int = 20000,
                 cost_features: bool = False, warm_start: int = 0, prior_feature: bool = True,
                 prior_pool: int = 1000) -> None:
        super().__init__(problem, seed)
        require(acquisition in ("ei", "ucb", "mean"), f"acquisition must be 'ei', 'ucb' or 'mean', not {acquisition!r}")
        require(initial >= 1 and top_k >= 0 and n_random >= 0, "initial must be >= 1; top_k and n_random >= 0")
        require(max_train >= 2 and retune_every >= 1 and pool_size >= 1,
                "max_train must be >= 2, retune_every and pool_size >= 1")
        require(warm_start >= 0 and prior_pool >= 1, "warm_start must be >= 0 and prior_pool >= 1")
        self.initial, self.top_k, self.n_random = initial, top_k, n_random
        self.acquisition, self.max_train, self.retune_every = acquisition, max_train, retune_every
        self.encodings, self.noisy_ei, self.pool_size = tuple(encodings), noisy_ei, pool_size
        self.cost_features = cost_features
        self.warm_start, self.prior_feature, self.prior_pool = warm_start, prior_feature, prior_pool
        self._prior_ref: np.ndarray | None = None          # sorted prior scores of the reference sample
        self._prior_top: list[Architecture] | None = None  # the reference sample, best prior first
        self._pool: list[Architecture] | None = None
        self._neighbourhoods: dict[str, list[Architecture]] = {}
        self._hyper: list[tuple[float, float] | None] = [None] * len(problem.objectives)
        self._fits = 0
        self._features: dict[str, np.ndarray] = {}

    # -- features ---------------------------------------------------------------------
    def _feature(self, arch: Architecture) -> np.ndarray:
        f = self._features.get(arch.key)
        if f is None:
            parts = [self.space.encode(arch, kind) for kind in self.encodings]
            if self.cost_features and self.problem.cheap_metrics is not None:
                # Costs known before evaluation (latency, parameters) as log features.
                cheap = self.problem.cheap_metrics(arch)
                parts.append(np.log(np.maximum([float(cheap[k]) for k in sorted(cheap)], 1e-12)))
            if self.prior is not None and self.prior_feature:
                parts.append(np.array([PRIOR_FEATURE_SCALE * self._prior_rank(arch)]))
            f = np.concatenate(parts)
            self._features[arch.key] = f
        return f

    def _matrix(self, archs: list[Architecture]) -> np.ndarray:
        return np.array([self._feature(a) for a in archs])

    # -- prior ------------------------------------------------------------------------------
    def use_prior(self, score_fn: Any) -> None:
        super().use_prior(score_fn)
        self._features = {}  # features (and the reference sample) depend on the prior
        self._prior_ref = self._prior_top = None

    def _prior_reference(self) -> tuple[np.ndarray, list[Architecture]]:
        """Sorted prior scores of the reference sample, and the sample ranked best-first."""
        if self._prior_ref is None or self._prior_top is None:
            assert self.prior is not None
            sample = self._random_pool()[: self.prior_pool]
            scores = np.array([self._prior_value(a) for a in sample])
            self._prior_ref = np.sort(scores)
            self._prior_top = [sample[int(i)] for i in np.argsort(-scores, kind="stable")]
        return self._prior_ref, self._prior_top

    def _prior_value(self, arch: Architecture) -> float:
        assert self.prior is not None
        v = float(self.prior(arch))
        return v if np.isfinite(v) else -np.inf

    def _prior_rank(self, arch: Architecture) -> float:
        """Mid-rank of the prior of ``arch`` among the reference sample's, in [0, 1]."""
        ref, _ = self._prior_reference()
        v = self._prior_value(arch)
        lo, hi = np.searchsorted(ref, v, "left"), np.searchsorted(ref, v, "right")
        return float(lo + hi) / (2.0 * len(ref))

    def _warm(self) -> bool:
        return self.prior is not None and self.warm_start > 0

    def _warm_proposal(self) -> Architecture | None:
        """The best-by-prior architecture of the reference sample's top ``warm_start`` not yet seen."""
        _, ranked = self._prior_reference()
        for arch in ranked[: self.warm_start]:
            if self.is_new(arch):
                return arch
        return None

    # -- proposal -------------------------------------------------------------------------
    def _propose(self) -> Architecture | None:
        # complete trials, or under multi-fidelity schedules BOHB's highest well-observed fidelity
        initial = max(self.initial, self.warm_start) if self._warm() else self.initial
        done = self.model_trials(initial)
        if len(done) < initial:
            if self._warm():
                arch = self._warm_proposal()
                if arch is not None:
                    return arch
            return self.space.sample(self.rng)
        # Small dense algebra: one BLAS thread is much faster than many contending ones.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._propose_with_model(done)

    def _propose_with_model(self, done: list[Trial]) -> Architecture | None:
        candidates = self._candidates(done)
        if not candidates:
            return None
        train = self._training_set(done)
        x_train = self._matrix([t.arch for t in train])
        x_pending = self._matrix(self.pending) if self._pending else None
        x_cand = self._matrix(candidates)
        objectives = self.problem.objectives
        retune = self._fits % self.retune_every == 0
        self._fits += 1
        means, sds = [], []
        for j, obj in enumerate(objectives):
            y = np.array([obj.score(t.metrics) for t in train])
            gp = GaussianProcess().fit(x_train, y, None if retune else self._hyper[j])
            self._hyper[j] = gp.hyper
            if x_pending is not None:  # kriging believer: pending trials at their predicted mean
                believed, _ = gp.predict(x_pending)
                gp = GaussianProcess().fit(np.vstack([x_train, x_pending]), np.concatenate([y, believed]), gp.hyper)
            mu, sd = gp.predict(x_cand, observation=self.noisy_ei)
            means.append(mu)
            sds.append(sd)
        if len(objectives) == 1:
            best = max(objectives[0].score(t.metrics) for t in done)
            score = self._acquire(means[0], sds[0], best)
        else:
            score = self._parego(np.array(means), np.array(sds), done)
        # Budgets are checked lazily, best-scored first: cost metrics can be expensive to compute
        # (a network is built per candidate), so only the candidates that would be chosen pay.
        top = np.flatnonzero(score >= score.max() - 1e-12)
        first = int(top[self.rng.integers(len(top))])
        if self.admissible(candidates[first]):
            return candidates[first]
        for i in np.argsort(-score, kind="stable"):
            if int(i) != first and self.admissible(candidates[int(i)]):
                return candidates[int(i)]
        return None

    def _acquire(self, mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
        if self.acquisition == "mean":
            return mu
        if self.acquisition == "ucb":
            return mu + 2.0 * sd
        z = (mu - best) / sd
        return (mu - best) * ndtr(z) + sd * _norm_pdf(z)

    def _parego(self, mu: np.ndarray, sd: np.ndarray, done: list[Trial]) -> np.ndarray:
        """Expected improvement of a random augmented-Chebyshev scalarisation (Knowles 2006)."""
        observed = np.array([self.problem.scores(t.metrics) for t in done]).T  # (m, n)
        lo, hi = observed.min(axis=1, keepdims=True), observed.max(axis=1, keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        w = self.rng.dirichlet(np.ones(len(mu)))[:, None]

        def scalar(v: np.ndarray) -> np.ndarray:
            u = (v - lo) / span
            return (w * u).min(axis=0) + 0.05 * (w * u).sum(axis=0)

        best = float(scalar(observed).max())
        mean = scalar(mu)
        # Propagate uncertainty by the weighted sd of the objectives (a first-order estimate).
        spread = np.sqrt(((w * sd / span) ** 2).sum(axis=0)) + 1e-12
        z = (mean - best) / spread
        return (mean - best) * ndtr(z) + spread * _norm_pdf(z)

    def _candidates(self, done: list[Trial]) -> list[Architecture]:
        ranked = sorted(done, key=self.fitness, reverse=True)[: self.top_k]
        pool: dict[str, Architecture] = {}
        for t in ranked:
            for a in self._neighbours(t.arch):
                pool.setdefault(a.key, a)
        random_pool = self._random_pool()
        if self.prior is not None and self.prior_feature:
            random_pool = random_pool[: self.prior_pool]  # the prior-scored reference sample
        for i in self.rng.choice(len(random_pool), size=min(self.n_random, len(random_pool)), replace=False):
            a = random_pool[int(i)]
            pool.setdefault(a.key, a)
        return [a for a in pool.values() if self.is_new(a)]

    # Caches below are rebuilt identically after a resume: each uses its own RNG derived
    # from the seed (and the architecture), never the strategy's main generator.
    def _random_pool(self) -> list[Architecture]:
        """``pool_size`` random architectures, drawn once; each step scores a subset."""
        if self._pool is None:
            rng = np.random.default_rng([self.seed, 0x9001])
            pool: dict[str, Architecture] = {}
            for _ in range(self.pool_size):
                a = self.space.sample(rng)
                pool.setdefault(a.key, a)
            self._pool = list(pool.values())
        return self._pool

    def _neighbours(self, arch: Architecture) -> list[Architecture]:
        hood = self._neighbourhoods.get(arch.key)
        if hood is None:
            rng = np.random.default_rng([self.seed, int(arch.key[:12], 16)])
            hood = self._neighbourhoods[arch.key] = self.space.neighbours(arch, rng)
        return hood

    def _training_set(self, done: list[Trial]) -> list[Trial]:
        if len(done) <= self.max_train:
            return done
        half = self.max_train // 2
        best = sorted(done, key=self.fitness, reverse=True)[:half]
        keys = {t.arch.key for t in best}
        recent = [t for t in reversed(done) if t.arch.key not in keys][: self.max_train - half]
        return best + recent

    # -- persistence ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # caches, rebuilt on demand (the prior's ones once the prior is attached again)
        state.update(_features={}, _pool=None, _neighbourhoods={}, _prior_ref=None, _prior_top=None)
        return state
