"""Study: the one place where strategy, evaluator and storage meet.

``ask``/``tell`` and ``optimize`` share one path. With a storage, every ask and tell
is written together with the strategy's pickled state in one transaction, so a study
killed at any moment (even SIGKILL) resumes where it stopped: trials that were running
are evaluated again under their original numbers, nothing finished is lost or repeated,
and with a deterministic evaluator the final result equals an uninterrupted run's.
"""
from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.pareto import pareto_mask
from ..errors import ArchscoutError, ConstraintError, SpaceError, StorageError, StudyError
from ..evaluators.base import Evaluator, TabularEvaluator
from ..problem import Problem
from ..space import Architecture
from ..strategies.base import Strategy
from .storage import Storage
from ..trial import Trial, TrialState

# Settings that must match when a stored study is reopened.
IDENTITY_KEYS = ("evaluator", "strategy", "strategy_options", "seed", "objectives", "constraints", "space")


@dataclass(frozen=True)
class PendingTrial:
    """An asked trial awaiting its result."""

    number: int
    arch: Architecture
    started_at: float


class Study:
    """Runs a strategy against an evaluator and records every trial.

    Build with :meth:`open` (creates or resumes a stored study) or directly for an
    in-memory study (``storage=None``).
    """

    def __init__(self, problem: Problem, strategy: Strategy, evaluator: Evaluator | None = None,
                 storage: Storage | None = None, name: str = "study", study_id: int | None = None) -> None:
        self.problem = problem
        self.strategy = strategy
        self.evaluator = evaluator
        self.storage = storage
        self.name = name
        self.study_id = study_id
        self.trials: dict[int, Trial] = {}
        self._running: dict[int, PendingTrial] = {}
        self._next_number = 0
        self.exhausted = False

    # -- opening --------------------------------------------------------------------
    @classmethod
    def open(cls, storage: Storage, name: str, problem: Problem, make_strategy: Callable[[], Strategy],
             evaluator: Evaluator | None, config: Mapping[str, Any]) -> "Study":
        """Create the study ``name`` in ``storage``, or resume it if it exists with the same settings."""
        found = storage.get_study(name)
        if found is None:
            strategy = make_strategy()
            study_id = storage.create_study(name, dict(config))
            return cls(problem, strategy, evaluator, storage, name, study_id)
        study_id, stored = found
        for key in IDENTITY_KEYS:
            if key in config and stored.get(key) != config.get(key):
                raise StudyError(f"study {name!r} exists with a different {key} ({_short(stored.get(key))}); "
                                 "use another --study name")
        rows = storage.load_trials(study_id)
        trials: list[Trial] = []
        for row in rows:
            try:
                arch = problem.space.make(row.arch)
            except SpaceError as exc:
                raise StorageError(f"study {name!r}: trial {row.number} does not fit the space ({exc})") from None
            trials.append(Trial(row.number, arch, row.state, row.metrics, row.error, row.started_at,
                                row.finished_at, row.fidelity))
        strategy = cls._restore_strategy(storage.load_state(study_id), problem, make_strategy, trials)
        study = cls(problem, strategy, evaluator, storage, name, study_id)
        for t in trials:
            if t.state.finished:
                study.trials[t.number] = t
            else:
                study._running[t.number] = PendingTrial(t.number, t.arch, t.started_at or time.time())
        study._next_number = max((t.number for t in trials), default=-1) + 1
        return study

    @staticmethod
    def _restore_strategy(state: bytes | None, problem: Problem, make_strategy: Callable[[], Strategy],
                          trials: Sequence[Trial]) -> Strategy:
        if state is not None:
            try:
                strategy = pickle.loads(state)
                if isinstance(strategy, Strategy):
                    strategy.attach(problem)
                    return strategy
            except Exception:  # noqa: BLE001 - an unreadable snapshot falls back to replay
                pass
        # Rebuild from the stored trials: tell every finished one, re-register running ones.
        strategy = make_strategy()
        for t in trials:
            if t.state.finished:
                strategy.tell(t)
            else:
                strategy.mark_pending(t.arch)
        return strategy

    # -- ask / tell -------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[PendingTrial]:
        """New trials to evaluate (fewer than ``n`` when the space is exhausted)."""
        archs = self.strategy.ask(n)
        if self.storage is not None and self.study_id is not None:
            numbers = self.storage.add_trials(self.study_id, archs, self._snapshot())
        else:
            numbers = list(range(self._next_number, self._next_number + len(archs)))
        now = time.time()
        out = [PendingTrial(num, a, now) for num, a in zip(numbers, archs)]
        for p in out:
            self._running[p.number] = p
        if numbers:
            self._next_number = max(numbers) + 1
        return out

    def tell(self, number: int, metrics: Mapping[str, float] | None = None, error: str | None = None,
             finished_at: float | None = None) -> Trial:
        """Finish trial ``number`` with its metrics, or with an error message."""
        pending = self._running.pop(number, None)
        if pending is None:
            raise StudyError(f"trial {number} is not running in study {self.name!r}")
        metrics = dict(metrics or {})
        state = TrialState.FAILED
        if error is None:
            bad = [o.metric for o in self.problem.objectives
                   if not isinstance(metrics.get(o.metric), (int, float)) or not math.isfinite(metrics[o.metric])]
            if bad:
                error = f"objective metric {bad[0]!r} is missing or not finite ({metrics.get(bad[0])!r})"
            else:
                state = TrialState.COMPLETE if self.problem.feasible_metrics(metrics) else TrialState.INFEASIBLE
        trial = Trial(number, pending.arch, state, metrics, error, pending.started_at, finished_at or time.time())
        self.strategy.tell(trial)
        if self.storage is not None and self.study_id is not None:
            self.storage.finish_trial(self.study_id, number, state, metrics, error, trial.started_at,
                                      trial.finished_at or time.time(), self._snapshot())
        self.trials[number] = trial
        return trial

    def _snapshot(self) -> bytes:
        return pickle.dumps(self.strategy, protocol=pickle.HIGHEST_PROTOCOL)

    # -- running --------------------------------------------------------------------------
    def evaluate(self, pending: PendingTrial) -> Trial:
        """Evaluate one asked trial in this process and tell the result."""
        if self.evaluator is None:
            raise StudyError("this study has no evaluator; use ask() and tell() instead")
        try:
            metrics = self.evaluator.evaluate(pending.arch)
            error = None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - any evaluation failure is recorded, never fatal
            metrics, error = {}, f"{type(exc).__name__}: {exc}".strip()
        return self.tell(pending.number, metrics, error)

    def optimize(self, budget: int, batch_size: int = 1, progress: bool = False,
                 callback: Callable[["Study", Trial], None] | None = None) -> None:
        """Run until ``budget`` trials have finished (counting those already stored)."""
        if not isinstance(budget, int) or budget <= 0:
            raise ArchscoutError(f"budget must be a positive number of trials, not {budget!r}")
        self.check_constraints_possible()
        bar = _progress(progress, budget, len(self.trials), self.name)
        try:
            while len(self.trials) < budget:
                todo = sorted(self._running.values(), key=lambda p: p.number)
                if not todo:
                    want = min(batch_size, budget - len(self.trials))
                    todo = self.ask(want)
                    if not todo:
                        self._stop_empty()
                        break
                for pending in todo:
                    trial = self.evaluate(pending)
                    if bar is not None:
                        bar.update(1)
                        best = self.best()
                        if best is not None:
                            bar.set_postfix_str(_postfix(self.problem, best))
                    if callback is not None:
                        callback(self, trial)
        finally:
            if bar is not None:
                bar.close()

    def _stop_empty(self) -> None:
        if not self.trials and self.strategy.rejected:
            raise ConstraintError(f"every candidate violates the budgets {[c.text for c in self.problem.constraints]}; "
                                  "they appear impossible")
        self.exhausted = True

    def check_constraints_possible(self) -> None:
        """For tabular evaluators: fail fast when no architecture meets the constraints."""
        cons = self.problem.constraints
        if not cons or not isinstance(self.evaluator, TabularEvaluator) or self.trials:
            return
        texts = tuple(c.text for c in cons)
        checked = self.evaluator.__dict__.setdefault("_possible_constraints", set())
        if texts in checked:
            return
        if not any(all(c(metrics) for c in cons) for _arch, metrics in self.evaluator.entries()):
            raise ConstraintError(f"no architecture in {self.evaluator.name} satisfies {' and '.join(texts)}")
        checked.add(texts)

    # -- results ----------------------------------------------------------------------------
    def complete_trials(self) -> list[Trial]:
        return [t for _, t in sorted(self.trials.items()) if t.state is TrialState.COMPLETE]

    def best(self) -> Trial | None:
        """The feasible trial with the best first objective (earliest on ties)."""
        done = self.complete_trials()
        if not done:
            return None
        return max(done, key=lambda t: (self.problem.objectives[0].score(t.metrics), -t.number))

    def pareto(self) -> list[Trial]:
        """Feasible trials not dominated on all objectives."""
        done = self.complete_trials()
        if not done:
            return []
        pts = np.array([self.problem.scores(t.metrics) for t in done])
        return [t for t, keep in zip(done, pareto_mask(pts)) if keep]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) < 60 else text[:57] + "..."


def _postfix(problem: Problem, best: Trial) -> str:
    o = problem.objectives[0]
    return f"best {o.metric}={best.metrics.get(o.metric, float('nan')):.4g}"


def _progress(enabled: bool, total: int, initial: int, name: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=min(initial, total), desc=name, unit="trial", dynamic_ncols=True, disable=None)
