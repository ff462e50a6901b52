"""Priors in strategies (no torch): PredictorBO's warm start and prior feature, RandomSearch's
proxy filter, and that without a prior nothing changes. A fake prior on a small tabular space
stands in for a training-free proxy."""
from __future__ import annotations

import pickle
import numpy as np
import pytest

from archscout.problem import Objective, Problem
from archscout.space import Architecture
from archscout.space.spec import space_from_spec
from archscout.strategies import make_strategy
from archscout.strategies.base import Strategy
from archscout.trial import Trial, TrialState

SPACE = space_from_spec({"name": "grid", "params": [
    {"name": "a", "type": "choice", "options": list(range(8))},
    {"name": "b", "type": "choice", "options": list(range(8))},
    {"name": "c", "type": "choice", "options": ["x", "y"]},
]})  # 128 architectures


def accuracy(arch: Architecture) -> float:
    """The "expensive" objective: best at a = 6, b = 2, c = "y"."""
    v = arch.values
    return 1.0 - 0.05 * abs(v["a"] - 6) - 0.04 * abs(v["b"] - 2) - (0.02 if v["c"] == "x" else 0.0)


def prior(arch: Architecture) -> float:
    """A cheap prior that ranks by a alone (higher a = better; ties broken by nothing)."""
    return float(arch.values["a"])


def problem() -> Problem:
    return Problem(SPACE, [Objective("acc", True)])


def run(strategy: Strategy, budget: int) -> list[str]:
    """Ask/tell ``budget`` trials one at a time; the keys in the order asked."""
    keys = []
    for n in range(budget):
        (arch,) = strategy.ask()
        keys.append(arch.key)
        strategy.tell(Trial(n, arch, TrialState.COMPLETE, {"acc": accuracy(arch)}, finished_at=float(n)))
    return keys


# -- PredictorBO ------------------------------------------------------------------------------------
def test_warm_start_proposes_the_prior_top_first() -> None:
    s = make_strategy("bo", problem(), seed=3, warm_start=8, initial=4, pool_size=500)
    s.use_prior(prior)
    first = [s.ask()[0] for _ in range(8)]
    # 16 architectures have a = 7 (the prior's best): the warm start picks 8 of them, best first
    assert all(a.values["a"] == 7 for a in first)
    assert len({a.key for a in first}) == 8


def test_warm_start_design_has_max_of_initial_and_warm_start_trials() -> None:
    s = make_strategy("bo", problem(), seed=0, warm_start=3, initial=5, pool_size=500)
    s.use_prior(prior)
    keys = run(s, 5)
    assert [t.arch.values["a"] for t in s.trials[:3]] == [7, 7, 7]  # the prior's top first
    assert len(set(keys)) == 5


def test_warm_start_and_prior_feature_find_the_best_faster() -> None:
    best = max(SPACE.enumerate(), key=accuracy).key
    cold_found, warm_found = [], []
    for seed in range(4):
        cold = make_strategy("bo", problem(), seed=seed, initial=5, pool_size=500)
        warm = make_strategy("bo", problem(), seed=seed, initial=5, warm_start=5, pool_size=500)
        warm.use_prior(lambda a: -abs(a.values["a"] - 6))  # a prior that knows the best a
        for strategy, found in ((cold, cold_found), (warm, warm_found)):
            keys = run(strategy, 40)
            found.append(keys.index(best) if best in keys else 40)
    assert np.mean(warm_found) < np.mean(cold_found)


def test_prior_feature_is_rank_normalised_and_cached_by_the_prior() -> None:
    s = make_strategy("bo", problem(), seed=1, initial=4, pool_size=300, prior_pool=50)
    s.use_prior(prior)
    run(s, 8)
    a7 = SPACE.make({"a": 7, "b": 0, "c": "x"})
    a0 = SPACE.make({"a": 0, "b": 0, "c": "x"})
    rank7, rank0 = s._prior_rank(a7), s._prior_rank(a0)
    assert 0.0 <= rank0 < rank7 <= 1.0
    feature = s._feature(a7)
    assert feature[-1] == pytest.approx(2.0 * rank7)   # PRIOR_FEATURE_SCALE * rank
    assert len(feature) == len(SPACE.encode(a7, "stats")) + 1


def test_without_prior_bo_options_change_nothing() -> None:
    base = run(make_strategy("bo", problem(), seed=7, initial=4, pool_size=300), 15)
    with_options = run(make_strategy("bo", problem(), seed=7, initial=4, pool_size=300, warm_start=6,
                                     prior_feature=True, prior_pool=20), 15)
    assert base == with_options
    dropped = make_strategy("bo", problem(), seed=7, initial=4, pool_size=300, warm_start=6)
    dropped.use_prior(prior)
    dropped.use_prior(None)
    assert run(dropped, 15) == base


def test_bo_prior_options_are_validated() -> None:
    from archscout.errors import ArchscoutError

    with pytest.raises(ArchscoutError, match="warm_start"):
        make_strategy("bo", problem(), warm_start=-1)
    with pytest.raises(ArchscoutError, match="prior_pool"):
        make_strategy("bo", problem(), prior_pool=0)
    with pytest.raises(ArchscoutError, match="prior_feature"):
        make_strategy("bo", problem(), prior_feature=3)


# -- RandomSearch -------------------------------------------------------------------------------------
def test_filter_returns_the_prior_best_of_its_draws() -> None:
    s = make_strategy("random", problem(), seed=11, prior_filter=5)
    s.use_prior(prior)
    twin = np.random.default_rng(11)  # the same stream of draws the strategy makes
    for _ in range(6):
        draws = [SPACE.sample(twin) for _ in range(5)]
        fresh = [d for d in draws if s.is_new(d)]
        expected = max(fresh, key=prior)  # first of the best on ties, as the filter does
        (got,) = s.ask()
        assert got.key == expected.key


def test_filter_without_prior_or_of_one_is_plain_random_search() -> None:
    base = run(make_strategy("random", problem(), seed=5), 30)
    assert run(make_strategy("random", problem(), seed=5, prior_filter=4), 30) == base
    with_prior = make_strategy("random", problem(), seed=5, prior_filter=1)
    with_prior.use_prior(prior)
    assert run(with_prior, 30) == base
    with pytest.raises(Exception, match="prior_filter"):
        make_strategy("random", problem(), prior_filter=0)


def test_filter_improves_on_random_for_a_good_prior() -> None:
    mean_a = []
    for k in (1, 8):
        s = make_strategy("random", problem(), seed=2, prior_filter=k)
        s.use_prior(prior)
        mean_a.append(np.mean([a.values["a"] for a in (s.ask()[0] for _ in range(10))]))
    assert mean_a[1] > mean_a[0] + 1.0


def test_filter_still_exhausts_the_space() -> None:
    s = make_strategy("random", problem(), seed=0, prior_filter=6)
    s.use_prior(prior)
    keys = run(s, 128)
    assert len(set(keys)) == 128 and not s.ask()


# -- snapshots ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,options", [("bo", {"warm_start": 4, "initial": 3, "pool_size": 300}),
                                          ("random", {"prior_filter": 3})])
def test_snapshot_drops_the_prior_and_resumes_after_reattaching(name: str, options: dict) -> None:
    s = make_strategy(name, problem(), seed=4, **options)
    s.use_prior(lambda a: float(a.values["a"]))  # a lambda: pickling it would fail
    run(s, 6)
    blob = pickle.dumps(s)
    restored = pickle.loads(blob)
    assert restored.prior is None
    assert s.prior is not None                   # the live strategy keeps it
    restored.attach(problem(), list(s.trials))
    restored.use_prior(prior)
    s.use_prior(prior)
    assert [a.key for a in restored.ask(3)] == [a.key for a in s.ask(3)]


def test_use_prior_rejects_non_callables() -> None:
    s = make_strategy("random", problem())
    with pytest.raises(TypeError):
        s.use_prior(3.0)  # type: ignore[arg-type]
