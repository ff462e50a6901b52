"""Supernet strategies as study strategies (no torch: the supernet search is replaced by a fake)."""
from __future__ import annotations

import pickle
import sys
import types
from typing import Any

import pytest

from archscout.errors import ArchscoutError
from archscout.strategies import make_strategy
from archscout.strategies.oneshot import ONESHOT_STRATEGIES, OneShotStrategy, WithSearchMetrics
from archscout.study import Study



class _Result:
    def __init__(self, archs: list[Any]) -> None:
        self.archs = archs
        self.scores = [{"supernet_acc": 0.9 - 0.1 * i} for i in range(len(archs))]
        self.search_s = 12.5
        self.info = {"guard": "perturbation", "collapsed": False}


@pytest.fixture()
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def run_method(method: str, space: Any, data: Any, **options: Any) -> _Result:
        import numpy as np

        calls.append({"method": method, "data": data, **options})
        rng = np.random.default_rng(0)
        return _Result([space.sample(rng) for _ in range(3)])

    module = types.ModuleType("archscout.oneshot.runner")
    module.run_method = run_method  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "archscout.oneshot.runner", module)
    return calls


@pytest.mark.parametrize("cls", ONESHOT_STRATEGIES, ids=lambda c: c.name)
def test_derived_architectures_are_proposed_once_in_order_then_nothing(fake_runner: list, cls: type, make_nbg_problem: Any) -> None:
    problem = make_nbg_problem()
    strategy = make_strategy(cls.name, problem, 3, top=2, epochs=4)
    strategy.use_data("mnist1d")
    first, second = strategy.ask(), strategy.ask()
    assert len(first) == len(second) == 1 and first[0] != second[0]
    assert strategy.ask() == []
    assert len(fake_runner) == 1 and fake_runner[0]["method"] == cls.method
    assert fake_runner[0]["epochs"] == 4 and fake_runner[0]["seed"] == 3 and fake_runner[0]["data"] == "mnist1d"
    assert strategy.extra_metrics(first[0]) == {"supernet_acc": 0.9, "search_s": 12.5}


def test_with_the_pool_guard_top_proposes_the_best_pool_members_after_the_derived_one(
        monkeypatch: pytest.MonkeyPatch, make_nbg_problem: Any) -> None:
    import numpy as np

    problem = make_nbg_problem()
    archs = [problem.space.sample(np.random.default_rng(i)) for i in range(60)]
    archs = list({a.key: a for a in archs}.values())[:5]
    # pool: (valid_acc, collapsed); the derived arch is archs[1], the best live member
    marks = [(0.70, False), (0.90, False), (0.95, True), (0.80, False), (0.80, False)]
    pool = [{"rank": i, "arch": a.to_dict(), "valid_acc": acc, "valid_loss": 1.0 - acc, "log_prob": -float(i),
             "collapsed": dead} for i, (a, (acc, dead)) in enumerate(zip(archs, marks))]

    def run_method(method: str, space: Any, data: Any, **options: Any) -> _Result:
        result = _Result([archs[1], archs[0]])
        result.info = {"guard": "pool", "collapsed": False, "pool": pool}
        return result

    module = types.ModuleType("archscout.oneshot.runner")
    module.run_method = run_method  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "archscout.oneshot.runner", module)
    strategy = make_strategy("darts", problem, 0, top=4)
    strategy.use_data("mnist1d")
    asked = [strategy.ask()[0] for _ in range(4)]
    assert strategy.ask() == []
    # derived first, then live members by pool accuracy (ties: the pool's order), collapsed last
    assert [a.key for a in asked] == [archs[i].key for i in (1, 3, 4, 0)]
    assert strategy.extra_metrics(asked[0]) == {"supernet_acc": 0.9, "pool_acc": 0.9, "search_s": 12.5}
    assert strategy.extra_metrics(asked[1]) == {"pool_acc": 0.8, "search_s": 12.5}


def test_a_restored_snapshot_does_not_search_again(fake_runner: list, make_nbg_problem: Any) -> None:
    problem = make_nbg_problem()
    strategy = make_strategy("darts", problem, 0)
    strategy.use_data("mnist1d")
    strategy.ask()
    restored = pickle.loads(pickle.dumps(strategy))
    restored.attach(problem, [])
    assert restored.data is None and restored.derived == strategy.derived
    assert restored.ask() == [] and len(fake_runner) == 1  # top=1: the one derived arch was asked already


def test_without_data_the_search_refuses_in_one_line(fake_runner: list, make_nbg_problem: Any) -> None:
    strategy = make_strategy("spos", make_nbg_problem(), 0)
    with pytest.raises(ArchscoutError, match="needs data"):
        strategy.ask()


def test_study_stores_the_search_metrics_with_the_evaluators(fake_runner: list, make_nbg_problem: Any, nbg: Any) -> None:
    bench = nbg
    problem = make_nbg_problem()
    strategy = make_strategy("gdas", problem, 0, top=1)
    strategy.use_data("mnist1d")
    evaluator = WithSearchMetrics(bench, strategy)
    study = Study(problem, strategy, evaluator)
    study.optimize(5)
    trials = list(study.trials.values())
    assert len(trials) == 1
    assert trials[0].metrics["search_s"] == 12.5 and "valid_perf" in trials[0].metrics


@pytest.mark.parametrize("name, option", [("darts", {"order": 3}), ("pc-darts", {"partial_channels": -1}),
                                          ("spos", {"search_budget": 0}), ("bignas", {"population": 1}),
                                          ("gdas", {"guard": "magic"}), ("gdas", {"order": 2}),
                                          ("darts", {"partial_channels": 2}), ("darts", {"latency_weight": 0.1}),
                                          ("fbnet", {"pool_repeats": 0}), ("proxyless", {"pool_size": 0})])
def test_bad_options_are_refused(name: str, option: dict, make_nbg_problem: Any) -> None:
    with pytest.raises(ArchscoutError):
        make_strategy(name, make_nbg_problem(), 0, **option)


def test_differentiable_options_reach_the_method(make_nbg_problem: Any) -> None:
    fb = make_strategy("fbnet", make_nbg_problem(), 3, latency_weight=0.2, pool_size=7, pool_steps=11, pool_repeats=2)
    opts = fb.method_options()
    assert opts["latency_weight"] == 0.2 and opts["seed"] == 3 and "order" not in opts
    assert (opts["pool_size"], opts["pool_steps"], opts["pool_repeats"], opts["guard"]) == (7, 11, 2, "pool")
    pc = make_strategy("pc-darts", make_nbg_problem(), 0, partial_channels=4, order=2).method_options()
    assert pc["partial_channels"] == 4 and pc["order"] == 2 and "latency_weight" not in pc


def test_every_supernet_strategy_is_registered() -> None:
    from archscout.strategies import available_strategies

    names = {n for n, c in available_strategies().items() if issubclass(c, OneShotStrategy)}
    assert names == {"darts", "pc-darts", "gdas", "fbnet", "proxyless", "spos", "bignas"}
