"""Multi-fidelity schedules (successive halving, Hyperband), early stopping and BOHB's model rule.

A synthetic evaluator with a learning curve per architecture stands in for training, so
these tests need no torch: ``acc(arch, epoch) = q(arch) * (1 - exp(-epoch / tau(arch)))``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from archscout.errors import ArchscoutError, StudyError
from archscout.evaluators.base import Evaluator
from archscout.problem import Objective, Problem
from archscout.space import Architecture, Choice, IntRange, SearchSpace
from archscout.strategies import make_strategy
from archscout.study import Storage, Study
from archscout.study.fidelity import CurveStopper, Hyperband, SuccessiveHalving, make_schedule, rank_for_rung
from archscout.trial import Trial, TrialState


class CurveEvaluator(Evaluator):
    """Reports one point per epoch; continues from where an architecture stopped (like checkpoints)."""

    name = "curves"
    metric_names = ("acc", "epochs")
    supports_fidelity = True

    def __init__(self, max_epochs: int = 9, crash_after: int | None = None) -> None:
        self._space = SearchSpace([Choice("op", ["a", "b", "c", "d"]), IntRange("width", 1, 20)])
        self.max_epochs = max_epochs
        self.epochs_trained = 0           # total epochs of "training" done
        self.progress: dict[str, int] = {}  # arch key -> epochs done (the checkpoint)
        self.crash_after = crash_after

    @property
    def space(self) -> SearchSpace:
        return self._space

    @staticmethod
    def acc(arch: Architecture, epoch: float) -> float:
        q = 0.5 + 0.02 * arch["width"] + {"a": 0.0, "b": 0.05, "c": 0.1, "d": -0.1}[arch["op"]]
        tau = 1.0 + (arch["width"] % 5)
        return q * (1 - math.exp(-epoch / tau))

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        return self.evaluate_curve(arch, fidelity, lambda s, m: False)

    def evaluate_curve(self, arch: Architecture, fidelity: float | None,
                       on_step: Callable[[float, Mapping[str, float]], bool]) -> dict[str, float]:
        target = int(fidelity or self.max_epochs)
        done = self.progress.get(arch.key, 0)
        metrics = {"acc": self.acc(arch, done), "epochs": float(done)}
        while done < target:
            if self.crash_after is not None and self.epochs_trained >= self.crash_after:
                raise KeyboardInterrupt  # stands in for the process being killed
            done += 1
            self.epochs_trained += 1
            self.progress[arch.key] = done
            metrics = {"acc": self.acc(arch, done), "epochs": float(done)}
            if on_step(float(done), metrics):
                break
        return metrics


def _study(ev: CurveEvaluator, strategy: str = "random", storage: Storage | None = None, name: str = "mf") -> Study:
    problem = Problem(ev.space, [Objective("acc")])
    if storage is None:
        return Study(problem, make_strategy(strategy, problem, 0), ev)
    return Study.open(storage, name, problem, lambda: make_strategy(strategy, problem, 0), ev,
                      {"strategy": strategy, "seed": 0})


def test_successive_halving_rungs_and_hyperband_brackets_follow_the_papers() -> None:
    sh = SuccessiveHalving(1, 9, eta=3)
    b = sh.bracket(0, first=0, limit=100)
    assert b.size == 9
    assert [(r.keep, r.fidelity) for r in b.rungs] == [(9, 1.0), (3, 3.0), (1, 9.0)]
    assert sh.bracket(0, first=5, limit=4).size == 4  # capped by the remaining budget
    hb = Hyperband(1, 27, eta=3)
    # Li et al. (2017), R = 27, eta = 3: brackets of 27, 12, 6 and 4 configurations
    assert [hb.bracket_shape(i) for i in range(5)] == [(3, 27), (2, 12), (1, 6), (0, 4), (3, 27)]
    assert [r.fidelity for r in hb.bracket(1, 0, 100).rungs] == [3.0, 9.0, 27.0]
    assert hb.bracket_index(0) == 0 and hb.bracket_index(27) == 1 and hb.bracket_index(39) == 2
    assert make_schedule("none", 1, 9) is None
    with pytest.raises(ArchscoutError, match="schedule"):
        make_schedule("asha", 1, 9)
    with pytest.raises(ArchscoutError, match="min"):
        SuccessiveHalving(10, 9)


def test_rank_for_rung_keeps_the_best_and_breaks_ties_by_trial_number() -> None:
    assert rank_for_rung([0, 1, 2, 3], {0: 0.5, 1: 0.9, 2: 0.9, 3: None}, 2) == [1, 2]
    assert rank_for_rung([0, 1, 2], {0: math.nan, 1: 0.1, 2: 0.2}, 5) == [2, 1]


def test_a_bracket_promotes_the_best_third_and_continues_training() -> None:
    ev = CurveEvaluator(max_epochs=9)
    study = _study(ev)
    study.optimize(9, schedule=SuccessiveHalving(1, 9, eta=3))
    trials = [study.trials[n] for n in range(9)]
    by_state = {s: [t for t in trials if t.state is s] for s in TrialState}
    assert len(by_state[TrialState.COMPLETE]) == 1
    assert len(by_state[TrialState.PRUNED]) == 8
    # rung 1: the three best after one epoch reached epoch 3; the best of those after 3 epochs finished
    after1 = sorted(trials, key=lambda t: (-ev.acc(t.arch, 1), t.number))
    promoted = {t.number for t in after1[:3]}
    assert {t.number for t in trials if t.fidelity == 3.0} | {by_state[TrialState.COMPLETE][0].number} == promoted
    winner = max((t for t in trials if t.number in promoted), key=lambda t: (ev.acc(t.arch, 3), -t.number))
    assert by_state[TrialState.COMPLETE][0].number == winner.number
    assert by_state[TrialState.COMPLETE][0].fidelity == 9.0
    # continuation: 9 x 1 epoch + 3 x 2 more + 1 x 6 more
    assert ev.epochs_trained == 9 + 6 + 6
    # each trial's learning curve holds every epoch it trained
    assert [s for s, _ in study.trials[winner.number].curve] == [float(e) for e in range(1, 10)]
    assert study.best().number == winner.number


def test_schedules_need_an_evaluator_with_fidelities(make_nbg_problem: Callable, nbg) -> None:
    p = make_nbg_problem()
    study = Study(p, make_strategy("random", p, 0), nbg)
    with pytest.raises(StudyError, match="single fidelity"):
        study.optimize(5, schedule=SuccessiveHalving(1, 9))


def test_a_bracket_killed_midway_resumes_with_the_same_decisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/mf.db"
    reference = _study(CurveEvaluator())
    reference.optimize(18, schedule=SuccessiveHalving(1, 9, eta=3))
    expected = {n: (t.arch.key, t.state, t.fidelity) for n, t in reference.trials.items()}

    for crash in (4, 11, 17, 30):  # inside rung 0, rung 1, rung 2 and the second bracket
        storage = Storage(url)
        study = _study(CurveEvaluator(crash_after=crash), storage=storage, name=f"crash{crash}")
        with pytest.raises(KeyboardInterrupt):
            study.optimize(18, schedule=SuccessiveHalving(1, 9, eta=3))
        storage.dispose()
        storage = Storage(url)  # a new process: no checkpoints, only what was stored
        resumed = _study(CurveEvaluator(), storage=storage, name=f"crash{crash}")
        resumed.optimize(18, schedule=SuccessiveHalving(1, 9, eta=3))
        got = {n: (t.arch.key, t.state, t.fidelity) for n, t in resumed.trials.items()}
        assert got == expected, f"crash after {crash} epochs"
        assert not resumed._running
        storage.dispose()


def test_hyperband_runs_every_bracket_within_the_budget() -> None:
    ev = CurveEvaluator(max_epochs=9)
    study = _study(ev)
    hb = Hyperband(1, 9, eta=3)  # brackets of 9, 5 and 3 architectures
    study.optimize(17, schedule=hb)
    assert len(study.trials) == 17
    complete = [t for t in study.trials.values() if t.state is TrialState.COMPLETE]
    # bracket s=2 finishes 1, bracket s=1 finishes 1 (of 5 -> 1), bracket s=0 (capped at 3) finishes all 3
    assert len(complete) == 1 + 1 + 3
    assert all(t.fidelity == 9.0 for t in complete)


def test_curve_stopper_rules() -> None:
    finished = [[(float(e), 0.5 + 0.04 * e) for e in range(1, 10)] for _ in range(5)]
    stopper = CurveStopper(9, grace=2, min_trials=5, rules=("median",))
    bad = [(1.0, 0.1), (2.0, 0.12), (3.0, 0.13)]
    good = [(1.0, 0.6), (2.0, 0.7), (3.0, 0.8)]
    assert stopper.should_stop(bad, finished)
    assert not stopper.should_stop(good, finished)
    assert not stopper.should_stop(bad[:1], finished)  # within the grace period
    assert not stopper.should_stop(bad, finished[:4])  # too few finished trials to compare with
    extrapolate = CurveStopper(9, grace=2, min_trials=5, rules=("extrapolate",))
    assert extrapolate.should_stop(bad, finished)
    rising = [(1.0, 0.3), (2.0, 0.6), (3.0, 0.75)]  # steep: could still reach 0.86
    assert not extrapolate.should_stop(rising, finished)
    with pytest.raises(ArchscoutError):
        CurveStopper(9, rules=("patience",))


def test_early_stopping_prunes_hopeless_trials_without_a_schedule() -> None:
    ev = CurveEvaluator(max_epochs=9)
    study = _study(ev)
    study.optimize(40, stopper=CurveStopper(9, grace=2, min_trials=3))
    states = [t.state for t in study.trials.values()]
    assert states.count(TrialState.PRUNED) > 0
    assert ev.epochs_trained < 40 * 9
    pruned = [t for t in study.trials.values() if t.state is TrialState.PRUNED]
    assert all(t.fidelity is not None and t.fidelity < 9 for t in pruned)


def test_bohb_rule_models_the_highest_fidelity_with_enough_points() -> None:
    ev = CurveEvaluator()
    problem = Problem(ev.space, [Objective("acc")])
    strategy = make_strategy("bo", problem, 0, initial=4)
    archs = strategy.ask(6)
    for i, arch in enumerate(archs):
        steps = 3 if i < 4 else 9
        curve = tuple((float(e), {"acc": ev.acc(arch, e)}) for e in range(1, steps + 1))
        state = TrialState.PRUNED if steps < 9 else TrialState.COMPLETE
        strategy.tell(Trial(i, arch, state, dict(curve[-1][1]), fidelity=float(steps), curve=curve))
    modelled = strategy.model_trials(4)
    assert len(modelled) == 6 and {t.fidelity for t in modelled} == {3.0}  # 6 reached epoch 3, only 2 epoch 9
    assert all(t.state is TrialState.COMPLETE for t in modelled)
    assert len(strategy.model_trials(2)) == 2  # enough complete trials: those
    assert strategy.ask(1)  # the model fits on the epoch-3 results
