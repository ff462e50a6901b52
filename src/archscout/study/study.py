"""Study: the one place where strategy, evaluator and storage meet.

``ask``/``tell`` and ``optimize`` share one path. With a storage, every ask and tell
is written together with the strategy's pickled state in one transaction, so a study
killed at any moment (even SIGKILL) resumes where it stopped: trials that were running
are evaluated again under their original numbers, nothing finished is lost or repeated,
and with a deterministic evaluator the final result equals an uninterrupted run's.
"""
from __future__ import annotations

import contextlib
import math
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.pareto import pareto_mask
from ..errors import ArchscoutError, ConstraintError, SpaceError, StorageError, StudyError
from ..evaluators.base import Evaluator, TabularEvaluator
from ..problem import Problem
from ..space import Architecture
from ..strategies.base import Strategy
from ..trial import Trial, TrialState
from .executors import Executor, TrialResult
from .fidelity import Bracket, CurveStopper, Schedule, rank_for_rung
from .liveness import HEARTBEAT_S, Heartbeat, is_abandoned, process_identity
from .storage import Storage, StoredTrial, StudyExists

ASK_RETRIES = 50  # proposals refused because another process stored them first, before giving up
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
        # learning curves: trial number -> [(step, metrics)], steps ascending
        self.curves: dict[int, list[tuple[float, dict[str, float]]]] = {}
        self.bracket: Bracket | None = None  # the multi-fidelity bracket in progress
        # Shared studies: this process's identity, trials other live processes are running,
        # and how often a trial whose driver or worker died is run again.
        self.owner = process_identity()
        self._others: dict[int, Architecture] = {}
        self.max_retries = 3
        self._lost: dict[int, int] = {}
        self._last_sync = 0.0
        self._strategy_empty = False

    # -- opening --------------------------------------------------------------------
    @classmethod
    def open(cls, storage: Storage, name: str, problem: Problem, make_strategy: Callable[[], Strategy],
             evaluator: Evaluator | None, config: Mapping[str, Any]) -> "Study":
        """Create the study ``name`` in ``storage``, or resume it if it exists with the same settings."""
        found = storage.get_study(name)
        if found is None:
            try:
                study_id = storage.create_study(name, dict(config))
                return cls(problem, make_strategy(), evaluator, storage, name, study_id)
            except StudyExists:  # another process sharing the study created it first: join it
                found = storage.get_study(name)
                if found is None:
                    raise
        study_id, stored = found
        for key in IDENTITY_KEYS:
            if key in config and stored.get(key) != config.get(key):
                raise StudyError(f"study {name!r} exists with a different {key} ({_short(stored.get(key))}); "
                                 "use another --study name")
        owner = process_identity()
        # Trials whose driver died (killed, crashed, machine lost) are taken over and run again.
        storage.claim_abandoned(study_id, owner, is_abandoned, max_retries=3)
        curves = storage.load_curves(study_id)
        loaded = cls._load(storage, study_id, name, problem, curves)
        trials = [t for _, t in loaded]
        strategy, bracket = cls._restore_strategy(storage.load_state(study_id), problem, make_strategy, trials)
        study = cls(problem, strategy, evaluator, storage, name, study_id)
        study.owner = owner
        study.curves = curves
        study.bracket = bracket
        study._absorb(loaded)
        return study

    @staticmethod
    def _load(storage: Storage, study_id: int, name: str, problem: Problem,
              curves: Mapping[int, list[tuple[float, dict[str, float]]]],
              known: Callable[[StoredTrial], bool] = lambda row: False) -> list[tuple[StoredTrial, Trial]]:
        out = []
        for row in storage.load_trials(study_id):
            if known(row):  # nothing new about it: skip re-validating its architecture
                continue
            try:
                arch = problem.space.make(row.arch)
            except SpaceError as exc:
                raise StorageError(f"study {name!r}: trial {row.number} does not fit the space ({exc})") from None
            out.append((row, Trial(row.number, arch, row.state, row.metrics, row.error, row.started_at,
                                   row.finished_at, row.fidelity, _frozen_curve(curves.get(row.number, [])))))
        return out

    def _absorb(self, loaded: Sequence[tuple[StoredTrial, Trial]]) -> None:
        """Bring stored trials into this study: finished ones (also told to the strategy when it
        has not seen them: other processes' results), this process's running ones, and other
        live processes' running ones (pending for the strategy, never proposed again)."""
        told = {t.arch.key for t in self.strategy.trials}
        for row, t in loaded:
            if t.state.finished:
                self._others.pop(t.number, None)
                self._running.pop(t.number, None)  # finished here, or by a process that took it over
                if t.number not in self.trials:
                    self.trials[t.number] = t
                    if t.arch.key not in told:
                        self.strategy.tell(t)
            elif row.owner == self.owner or row.owner is None:
                if t.number not in self._running:
                    self._running[t.number] = PendingTrial(t.number, t.arch, t.started_at or time.time())
                    self.strategy.mark_pending(t.arch)
            elif t.number not in self._running:
                self._others[t.number] = t.arch
                self.strategy.mark_pending(t.arch)
        self._next_number = max([self._next_number - 1] + [t.number for _, t in loaded]) + 1

    def sync(self, force: bool = True) -> None:
        """Catch up with other processes sharing the stored study (their results, their running
        trials) and take over trials whose driver died. ``force=False`` does it at most once a second."""
        if self.storage is None or self.study_id is None:
            return
        now = time.time()
        if not force and now - self._last_sync < 1.0:
            return
        self._last_sync = now
        self.storage.claim_abandoned(self.study_id, self.owner, is_abandoned, self.max_retries)
        def known(row: StoredTrial) -> bool:
            if row.number in self.trials:
                return True
            return not row.state.finished and (row.number in self._running or row.number in self._others)

        self._absorb(self._load(self.storage, self.study_id, self.name, self.problem, {}, known))

    @staticmethod
    def _restore_strategy(state: bytes | None, problem: Problem, make_strategy: Callable[[], Strategy],
                          trials: Sequence[Trial]) -> tuple[Strategy, Bracket | None]:
        if state is not None:
            try:
                snap = pickle.loads(state)
                # schema 1 stored the bare strategy; later versions a dict with the bracket too
                strategy, bracket = (snap.get("strategy"), snap.get("bracket")) if isinstance(snap, dict) else (snap, None)
                if isinstance(strategy, Strategy):
                    strategy.attach(problem, trials)
                    return strategy, bracket
            except Exception:  # noqa: BLE001 - an unreadable snapshot falls back to replay
                pass
        # Rebuild from the stored trials: tell every finished one, re-register running ones.
        strategy = make_strategy()
        for t in trials:
            if t.state.finished:
                strategy.tell(t)
            else:
                strategy.mark_pending(t.arch)
        return strategy, None

    # -- ask / tell -------------------------------------------------------------------
    def ask(self, n: int = 1, budget: int | None = None) -> list[PendingTrial]:
        """New trials to evaluate: fewer than ``n`` when the space is exhausted, or when the study
        (counting every process sharing it) would exceed ``budget`` trials."""
        for attempt in range(ASK_RETRIES):
            archs = self.strategy.ask(n)
            self._strategy_empty = not archs
            if self.storage is not None and self.study_id is not None:
                numbers = self.storage.add_trials(self.study_id, archs, self._snapshot(), self.owner, budget)
            else:
                room = len(archs) if budget is None else max(0, budget - len(self.trials) - len(self._running))
                numbers = [self._next_number + i if i < room else None for i in range(len(archs))]
            now = time.time()
            out = []
            for num, a in zip(numbers, archs):
                if num is None:  # over the budget, or stored meanwhile by another process
                    self.strategy.release(a)
                    continue
                out.append(PendingTrial(num, a, now))
                self._running[num] = out[-1]
            if out:
                self._next_number = max(self._next_number, max(p.number for p in out) + 1)
            if out or not archs or self.storage is None or self.study_id is None:
                return out
            if budget is not None and self.storage.count_trials(self.study_id) >= budget:
                return out
            # Every proposal was taken by another process sharing the study (processes with
            # the same seed propose alike): learn what they run and propose again.
            self.sync()
        return []

    def tell(self, number: int, metrics: Mapping[str, float] | None = None, error: str | None = None,
             finished_at: float | None = None, fidelity: float | None = None, pruned: bool = False) -> Trial:
        """Finish trial ``number`` with its metrics, or with an error message.

        ``pruned`` marks a trial stopped at the lower ``fidelity`` (its metrics are that
        fidelity's); it counts against the budget but never as a result.
        """
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
            elif pruned:
                state = TrialState.PRUNED
            else:
                state = TrialState.COMPLETE if self.problem.feasible_metrics(metrics) else TrialState.INFEASIBLE
        trial = Trial(number, pending.arch, state, metrics, error, pending.started_at, finished_at or time.time(),
                      fidelity, _frozen_curve(self.curves.get(number, [])))
        self.strategy.tell(trial)
        self._lost.pop(number, None)
        if self.storage is not None and self.study_id is not None:
            written = self.storage.finish_trial(self.study_id, number, state, metrics, error, trial.started_at,
                                                trial.finished_at or time.time(), self._snapshot(), fidelity,
                                                owner=self.owner)
            if not written:  # another process took this trial over meanwhile: its result stands
                return trial
        self.trials[number] = trial
        return trial

    def report(self, number: int, step: float, metrics: Mapping[str, float]) -> None:
        """Record running trial ``number``'s metrics at fidelity ``step`` (one point of its learning curve)."""
        if number not in self._running:
            raise StudyError(f"trial {number} is not running in study {self.name!r}")
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        curve = [(s, m) for s, m in self.curves.get(number, []) if s != float(step)]
        curve.append((float(step), clean))
        curve.sort(key=lambda p: p[0])
        self.curves[number] = curve
        if self.storage is not None and self.study_id is not None:
            self.storage.report(self.study_id, number, float(step), clean)

    def _snapshot(self) -> bytes:
        return pickle.dumps({"strategy": self.strategy, "bracket": self.bracket}, protocol=pickle.HIGHEST_PROTOCOL)

    # -- running --------------------------------------------------------------------------
    def evaluate(self, pending: PendingTrial, stopper: CurveStopper | None = None) -> Trial:
        """Evaluate one asked trial in this process at full fidelity and tell the result.

        With a ``stopper``, the evaluator's per-step reports (epochs) are checked against
        the finished trials' learning curves and a hopeless trial is stopped as pruned.
        """
        metrics, error, stopped, step = self._run(pending, None, stopper)
        return self.tell(pending.number, metrics, error, fidelity=step, pruned=stopped)

    def _run(self, pending: PendingTrial, fidelity: float | None,
             stopper: CurveStopper | None) -> tuple[dict[str, float], str | None, bool, float | None]:
        """(metrics, error, stopped early, last step reported) for one evaluation."""
        if self.evaluator is None:
            raise StudyError("this study has no evaluator; use ask() and tell() instead")
        number = pending.number
        stopped = False
        last: list[float] = []

        def on_step(step: float, metrics: Mapping[str, float]) -> bool:
            nonlocal stopped
            self.report(number, step, metrics)
            last[:] = [float(step)]
            if stopper is not None and stopper.should_stop(self._score_curve(number), self._finished_curves()):
                stopped = True
            return stopped

        try:
            metrics = dict(self.evaluator.evaluate_curve(pending.arch, fidelity, on_step))
            error = None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - any evaluation failure is recorded, never fatal
            metrics, error = {}, f"{type(exc).__name__}: {exc}".strip()
        step = fidelity if fidelity is not None else (last[0] if last else None)
        return metrics, error, stopped, step

    def _score_curve(self, number: int) -> list[tuple[float, float]]:
        """(step, first-objective score) of a trial's reported curve."""
        obj = self.problem.objectives[0]
        return [(s, obj.score(m)) for s, m in self.curves.get(number, []) if obj.metric in m]

    def _finished_curves(self) -> list[list[tuple[float, float]]]:
        out = []
        for t in self.trials.values():
            if t.state is TrialState.COMPLETE:
                curve = self._score_curve(t.number)
                if curve:
                    out.append(curve)
        return out

    def optimize(self, budget: int, batch_size: int = 1, progress: bool = False,
                 callback: Callable[["Study", Trial], None] | None = None, schedule: Schedule | None = None,
                 stopper: CurveStopper | None = None, executor: Executor | None = None,
                 evaluator_factory: Callable[[], Evaluator] | None = None) -> None:
        """Run until ``budget`` trials (architectures) have finished, counting every process sharing the study.

        ``schedule`` runs successive-halving / Hyperband brackets over the evaluator's
        fidelity (pruned architectures count against the budget); ``stopper`` stops
        hopeless trials early from their learning curves. ``executor`` evaluates trials in
        worker processes (or on Ray) while this process asks and tells asynchronously; the
        workers build their evaluator with ``evaluator_factory`` when given (cheaper than
        sending a large evaluator), else receive a copy of the study's.
        """
        if not isinstance(budget, int) or budget <= 0:
            raise ArchscoutError(f"budget must be a positive number of trials, not {budget!r}")
        self.check_constraints_possible()
        if schedule is not None and not getattr(self.evaluator, "supports_fidelity", False):
            raise StudyError(f"the {getattr(self.evaluator, 'name', 'given')} evaluator has a single fidelity; "
                             "multi-fidelity schedules need one that trains (e.g. --evaluator train)")
        if executor is not None and (schedule is not None or stopper is not None):
            raise StudyError("multi-fidelity schedules and early stopping run in the driver process; "
                             "use them without worker processes")
        bar = _progress(progress, budget, len(self.trials), self.name)

        def finished(trial: Trial) -> None:
            if bar is not None:
                bar.n = min(len(self.trials), budget)
                best = self.best()
                if best is not None:
                    bar.set_postfix_str(_postfix(self.problem, best), refresh=False)
                bar.refresh()
            if callback is not None:
                callback(self, trial)

        beat = None
        if self.storage is not None and self.study_id is not None:
            storage, study_id = self.storage, self.study_id
            beat = Heartbeat(lambda numbers: storage.heartbeat(study_id, self.owner, numbers),
                             lambda: list(self._running), HEARTBEAT_S)
        try:
            with beat or _nothing():
                if executor is not None:
                    self._optimize_async(budget, executor, evaluator_factory, finished)
                else:
                    self._optimize_here(budget, batch_size, schedule, stopper, finished)
        finally:
            if bar is not None:
                bar.close()

    def _optimize_here(self, budget: int, batch_size: int, schedule: Schedule | None, stopper: CurveStopper | None,
                       finished: Callable[[Trial], None]) -> None:
        """Evaluate in this process, one trial (or bracket) at a time."""
        while True:
            self.sync(force=False)
            if len(self.trials) >= budget:
                return
            if schedule is not None:
                if not self._next_bracket(schedule, budget):
                    self._stop_empty()
                    return
                self._run_bracket(self.bracket, stopper, finished)  # type: ignore[arg-type]
                continue
            todo = sorted(self._running.values(), key=lambda p: p.number)
            if not todo:
                want = min(batch_size, budget - len(self.trials))
                todo = self.ask(want, budget)
                if not todo:
                    if self._wait_for_others():
                        continue
                    self._stop_empty()
                    return
            for pending in todo:
                if pending.number in self._running:
                    finished(self.evaluate(pending, stopper))

    def _wait_for_others(self) -> bool:
        """When nothing can be asked but other processes still run trials of this study: wait a
        moment and sync (their results, or their trials taken over if they died). False when
        there is nothing to wait for."""
        if self._strategy_empty or not self._others:
            return False
        time.sleep(0.2)
        self.sync()
        return True

    def _optimize_async(self, budget: int, executor: Executor, factory: Callable[[], Evaluator] | None,
                        finished: Callable[[Trial], None]) -> None:
        """Keep every worker busy: ask when one is free, tell as results arrive (in any order)."""
        if self.evaluator is None and factory is None:
            raise StudyError("this study has no evaluator; use ask() and tell() instead")
        executor.start(factory if factory is not None else self.evaluator)  # type: ignore[arg-type]
        try:
            while True:
                self.sync(force=False)
                if len(self.trials) >= budget:
                    return
                self._fill(executor, budget)
                if not executor.in_flight():
                    if self._running or self._wait_for_others():
                        continue
                    self._stop_empty()
                    return
                for result in executor.wait(timeout=1.0):
                    trial = self._absorb_result(result)
                    if trial is not None:
                        finished(trial)
        finally:
            executor.shutdown()

    def _fill(self, executor: Executor, budget: int) -> None:
        flying = set(executor.in_flight())
        while executor.free() > 0:
            waiting = sorted(n for n in self._running if n not in flying)
            if waiting:
                pending = self._running[waiting[0]]
            else:
                asked = self.ask(1, budget)
                if not asked:
                    return
                pending = asked[0]
            executor.submit(pending.number, pending.arch, None)
            flying.add(pending.number)

    def _absorb_result(self, result: TrialResult) -> Trial | None:
        """Tell a worker's result; a trial whose worker died is re-run up to ``max_retries`` times."""
        if result.number not in self._running:
            return None  # taken over by another process meanwhile
        if result.lost:
            self._lost[result.number] = self._lost.get(result.number, 0) + 1
            if self._lost[result.number] <= self.max_retries:
                return None  # stays running: submitted again by the next fill
            result.error = f"{result.error} ({self._lost[result.number]} times)"
        for step, metrics in result.curve:
            self.report(result.number, step, metrics)
        step = result.curve[-1][0] if result.curve else None
        return self.tell(result.number, result.metrics, result.error, fidelity=step)

    # -- multi-fidelity brackets -----------------------------------------------------------
    def _next_bracket(self, schedule: Schedule, budget: int) -> bool:
        """Keep the unfinished bracket, or ask the architectures of a new one; False when none are left."""
        b = self.bracket
        if b is not None and any(n in self._running for n in b.members()):
            return True
        if self._running:  # running trials without a bracket (state replayed): give them one
            numbers = sorted(self._running)
            rungs = schedule.bracket(schedule.bracket_index(numbers[0]), numbers[0], len(numbers)).rungs
            self.bracket = Bracket(numbers[0], numbers[-1] - numbers[0] + 1, rungs)
            return True
        limit = budget - len(self.trials)
        index = schedule.bracket_index(self._next_number)
        self.bracket = schedule.bracket(index, self._next_number, limit)
        asked = self.ask(self.bracket.size)  # the snapshot written with the ask holds the bracket
        if not asked:
            self.bracket = None
            return False
        numbers = [p.number for p in asked]
        if numbers != list(self.bracket.members()):
            self.bracket = schedule.bracket(index, numbers[0], len(numbers))
            if numbers != list(self.bracket.members()):
                raise StudyError("trial numbers of a bracket are not consecutive; is another process "
                                 "writing to this study?")
            self._save_snapshot()
        return True

    def _run_bracket(self, bracket: Bracket, stopper: CurveStopper | None,
                     finished: Callable[[Trial], None]) -> None:
        """Run (or resume) a bracket: every decision is re-derived from the stored curves."""
        obj = self.problem.objectives[0]
        candidates = list(bracket.members())
        prev: float | None = None
        for i, rung in enumerate(bracket.rungs):
            last = i == len(bracket.rungs) - 1
            if prev is None:
                members = candidates
            else:
                results = {n: self._score_at(n, prev, obj) for n in candidates}
                members = rank_for_rung(candidates, results, rung.keep)
                for n in candidates:  # losers of the previous rung stop here
                    if n in self._running and n not in members:
                        finished(self.tell(n, self._metrics_at(n, prev), fidelity=prev, pruned=True))
            for n in sorted(members):
                pending = self._running.get(n)
                if pending is None or (not last and self._metrics_at(n, rung.fidelity) is not None):
                    continue
                metrics, error, stopped, step = self._run(pending, rung.fidelity, stopper)
                if error is None and not stopped and self._metrics_at(n, rung.fidelity) is None:
                    self.report(n, rung.fidelity, metrics)  # evaluators without per-step reports
                if error is not None or stopped or last:
                    finished(self.tell(n, metrics, error, fidelity=step, pruned=stopped))
            candidates = [n for n in members if n in self._running]
            prev = rung.fidelity
        self.bracket = None

    def _metrics_at(self, number: int, step: float) -> dict[str, float] | None:
        for s, m in self.curves.get(number, []):
            if s == step:
                return m
        return None

    def _score_at(self, number: int, step: float, obj: Any) -> float | None:
        m = self._metrics_at(number, step)
        if m is None or obj.metric not in m or not math.isfinite(m[obj.metric]):
            return None
        return obj.score(m)

    def _save_snapshot(self) -> None:
        if self.storage is not None and self.study_id is not None:
            self.storage.save_state(self.study_id, self._snapshot())

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


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _frozen_curve(curve: Sequence[tuple[float, Mapping[str, float]]]) -> tuple[tuple[float, Mapping[str, float]], ...]:
    return tuple((float(step), dict(metrics)) for step, metrics in curve)


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
