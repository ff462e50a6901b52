"""Optuna's TPE sampler as a peer strategy (only when optuna is installed).

Each genotype decision becomes an Optuna distribution. When TPE suggests an
architecture already evaluated (or an equivalent encoding of one), the known result is
told back to Optuna and it is asked again, so no architecture is evaluated twice.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial, TrialState
from .base import Strategy

REPEAT_LIMIT = 50  # duplicate suggestions tolerated per proposal


def optuna_available() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


class OptunaTPE(Strategy):
    name = "optuna-tpe"
    summary = "Optuna's TPE sampler (peer baseline; needs the optuna package)"
    multi_objective = True

    def __init__(self, problem: Problem, seed: int = 0, n_startup_trials: int = 10) -> None:
        super().__init__(problem, seed)
        self.n_startup_trials = n_startup_trials
        self._build()

    def _build(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials,
                                             multivariate=True, constant_liar=True)
        directions = ["maximize" if o.maximize else "minimize" for o in self.problem.objectives]
        self._study = optuna.create_study(sampler=sampler, directions=directions)
        self._dists = {
            f"d{i}": (optuna.distributions.CategoricalDistribution(list(range(d.n))) if d.n
                      else optuna.distributions.FloatDistribution(0.0, 1.0))
            for i, d in enumerate(self.space.dims)
        }
        self._open: dict[str, Any] = {}
        self._known: dict[str, Trial] = {}
        for t in self.trials:
            self._add_finished(t)

    def _values(self, trial: Trial) -> list[float] | None:
        if trial.state is not TrialState.COMPLETE:
            return None
        return [float(trial.metrics[o.metric]) for o in self.problem.objectives]

    def _add_finished(self, trial: Trial) -> None:
        import optuna

        params = {f"d{i}": v for i, v in enumerate(self.space.genotype(trial.arch))}
        values = self._values(trial)
        state = optuna.trial.TrialState.COMPLETE if values is not None else optuna.trial.TrialState.FAIL
        self._study.add_trial(optuna.trial.create_trial(params=params, distributions=self._dists,
                                                        values=values, state=state))
        self._known[trial.arch.key] = trial

    def _propose(self) -> Architecture | None:
        import optuna

        for _ in range(REPEAT_LIMIT):
            ot = self._study.ask(self._dists)
            arch = self.space.from_genotype([ot.params[f"d{i}"] for i in range(len(self.space.dims))])
            if arch is None:
                self._study.tell(ot, state=optuna.trial.TrialState.FAIL)
                continue
            if arch.key in self._known:
                values = self._values(self._known[arch.key])
                self._study.tell(ot, values, state=None if values else optuna.trial.TrialState.FAIL)
                continue
            if not self.admissible(arch):
                self._study.tell(ot, state=optuna.trial.TrialState.FAIL)
                continue
            self._open[arch.key] = ot
            return arch
        return None

    def _observe(self, trial: Trial) -> None:
        import optuna

        ot = self._open.pop(trial.arch.key, None)
        if ot is None:
            self._add_finished(trial)
            return
        values = self._values(trial)
        self._study.tell(ot, values, state=None if values else optuna.trial.TrialState.FAIL)
        self._known[trial.arch.key] = trial

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for k in ("_study", "_dists", "_open", "_known"):
            state.pop(k, None)
        return state

    def attach(self, problem: Problem, trials: Sequence[Trial] | None = None) -> None:
        super().attach(problem, trials)
        self._build()
