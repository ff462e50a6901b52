"""Executors: where trials are evaluated while the study's driver keeps asking and telling.

The driver (the process running :meth:`Study.optimize`) is the only one that talks to the
strategy and the storage; executors only turn ``(number, architecture, fidelity)`` into a
:class:`TrialResult`. Evaluation is asynchronous: a worker that finishes gets the next
trial at once (strategies handle the trials still running elsewhere as pending), so no
worker waits for a batch.

- :class:`ProcessExecutor` — ``workers`` local processes, each holding its own evaluator.
  A trial that crashes its process (segfault, out of memory, ``os._exit``, SIGKILL) or runs
  past ``trial_timeout_s`` takes down only that worker: the executor reports it and starts a
  fresh one. Workers exit when the driver dies (their pipe closes).
- ``RayExecutor`` (:mod:`archscout.study.ray_executor`) — the same contract on Ray actors.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import ArchscoutError
from ..evaluators.base import Evaluator
from ..space import Architecture

EvaluatorSource = Evaluator | Callable[[], Evaluator]


@dataclass
class TrialResult:
    """What an executor returns for one submitted trial.

    ``lost`` means the worker died while evaluating it (the trial itself may be fine and
    can be re-run); ``error`` is set for evaluation failures and timeouts. ``curve`` holds
    the (step, metrics) the evaluator reported on the way (learning curves).
    """

    number: int
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    curve: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    lost: bool = False
    duration_s: float = 0.0


class Executor(ABC):
    """Runs trials somewhere else. ``workers`` trials can be in flight at once.

    Implementations keep one entry per worker in ``_slots``, each with a ``number``
    attribute: the trial it evaluates, or None when free.
    """

    workers: int = 1
    _slots: list[Any]

    @abstractmethod
    def start(self, evaluator: EvaluatorSource) -> None:
        """Start the workers with ``evaluator`` (or a zero-argument factory that builds one in each worker)."""

    @abstractmethod
    def submit(self, number: int, arch: Architecture, fidelity: float | None = None) -> None:
        """Start evaluating trial ``number`` on a free worker (call only when :meth:`free` > 0)."""

    def free(self) -> int:
        """How many more trials can be submitted now."""
        return sum(1 for slot in self._slots if slot.number is None)

    def in_flight(self) -> list[int]:
        """Numbers of the trials being evaluated."""
        return [slot.number for slot in self._slots if slot.number is not None]

    @abstractmethod
    def wait(self, timeout: float) -> list[TrialResult]:
        """Results that arrive within ``timeout`` seconds (possibly none)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop every worker (trials in flight are abandoned)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def evaluate_with_curve(evaluator: Evaluator, number: int, arch: Architecture,
                        fidelity: float | None) -> TrialResult:
    """Evaluate in this process, collecting the reported curve; failures become an error message."""
    curve: list[tuple[float, dict[str, float]]] = []
    start = time.perf_counter()

    def on_step(step: float, metrics: Mapping[str, float]) -> bool:
        curve.append((float(step), {k: float(v) for k, v in metrics.items()}))
        return False

    try:
        metrics = dict(evaluator.evaluate_curve(arch, fidelity, on_step))
        error = None
    except Exception as exc:  # noqa: BLE001 - any evaluation failure is recorded, never fatal
        metrics, error = {}, (f"{type(exc).__name__}: {exc}".strip().splitlines() or ["error"])[0]
    return TrialResult(number, metrics, error, curve, duration_s=time.perf_counter() - start)


def _die_with(parent: int) -> None:
    """Make this worker end when the driver ``parent`` dies (even by SIGKILL).

    Pipe EOF alone is not enough: forked siblings inherit each other's pipe ends, so a
    dead driver's pipes can stay open. On Linux the kernel sends SIGKILL on parent death
    (``PR_SET_PDEATHSIG``); elsewhere the worker polls its parent id.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the driver died before we got here
        os._exit(0)


def _worker_main(conn: Connection, payload: bytes, parent: int) -> None:
    """A worker process: build the evaluator once, then evaluate what the driver sends until EOF."""
    _die_with(parent)
    source = pickle.loads(payload)
    evaluator = source if isinstance(source, Evaluator) else source()
    while True:
        try:
            while not conn.poll(1.0):
                if os.getppid() != parent:
                    return
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        number, arch, fidelity = message
        result = evaluate_with_curve(evaluator, number, arch, fidelity)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    number: int | None = None   # trial being evaluated
    since: float = 0.0          # when it started (monotonic seconds)


class ProcessExecutor(Executor):
    """``workers`` local processes with one evaluator each; crashes and hangs stay contained.

    ``trial_timeout_s``: a trial running longer is stopped (its worker is killed and
    replaced) and reported as failed. ``start_method``: ``fork`` (fast; the default on
    Linux while torch is not imported in the driver), ``spawn`` or ``forkserver``.
    """

    def __init__(self, workers: int = 2, trial_timeout_s: float | None = None, start_method: str | None = None) -> None:
        if workers < 1:
            raise ArchscoutError(f"workers must be >= 1, not {workers}")
        if trial_timeout_s is not None and trial_timeout_s <= 0:
            raise ArchscoutError(f"the trial timeout must be positive, not {trial_timeout_s}")
        self.workers = int(workers)
        self.trial_timeout_s = trial_timeout_s
        if start_method is None:
            start_method = "fork" if sys.platform.startswith("linux") and "torch" not in sys.modules else "spawn"
        self.ctx = mp.get_context(start_method)
        self._payload: bytes | None = None
        self._slots: list[_Worker] = []
        self._queued: list[TrialResult] = []

    def start(self, evaluator: EvaluatorSource) -> None:
        try:
            self._payload = pickle.dumps(evaluator, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - lambdas, open files ...
            raise ArchscoutError(f"the evaluator cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                                 "pass a picklable evaluator or factory") from None
        self._slots = [self._spawn() for _ in range(self.workers)]

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker_main, args=(child, self._payload, os.getpid()), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, number: int, arch: Architecture, fidelity: float | None = None) -> None:
        for i, w in enumerate(self._slots):
            if w.number is None:
                if not w.process.is_alive():
                    w = self._slots[i] = self._spawn()
                try:
                    w.conn.send((number, arch, fidelity))
                except (BrokenPipeError, OSError):
                    self._replace(i)
                    self._queued.append(TrialResult(number, lost=True, error="worker died before the trial started"))
                    return
                w.number, w.since = number, time.monotonic()
                return
        raise ArchscoutError("no free worker (check free() before submit())")

    def wait(self, timeout: float) -> list[TrialResult]:
        out, self._queued = self._queued, []
        busy = [w for w in self._slots if w.number is not None]
        if not busy:
            return out
        deadline = timeout
        if self.trial_timeout_s is not None:
            now = time.monotonic()
            deadline = max(0.0, min(timeout, min(w.since + self.trial_timeout_s - now for w in busy)))
        ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0 if out else deadline)
        for i, w in enumerate(self._slots):
            if w.number is None:
                continue
            if w.conn in ready:
                try:
                    result = w.conn.recv()
                    w.number = None
                    out.append(result)
                    continue
                except (EOFError, OSError):
                    pass  # died while answering: reported below
            if w.process.sentinel in ready or not w.process.is_alive():
                w.process.join(1)
                code = w.process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                out.append(TrialResult(w.number, lost=True, error=f"worker process died ({how})",
                                       duration_s=time.monotonic() - w.since))
                self._replace(i)
            elif self.trial_timeout_s is not None and time.monotonic() - w.since >= self.trial_timeout_s:
                out.append(TrialResult(w.number, error=f"timed out after {self.trial_timeout_s:g} s",
                                       duration_s=time.monotonic() - w.since))
                self._replace(i)
        return out

    def _replace(self, i: int) -> None:
        w = self._slots[i]
        if w.process.is_alive():
            w.process.kill()
        w.process.join(5)
        w.conn.close()
        self._slots[i] = self._spawn()

    def shutdown(self) -> None:
        for w in self._slots:
            try:
                if w.number is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._slots:
            w.process.join(0.5 if w.number is None else 0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5)
            w.conn.close()
        self._slots = []
