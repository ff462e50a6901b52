"""The Ray executor: trials evaluated on Ray actors (one machine or a cluster).

Same contract as :class:`~archscout.study.executors.ProcessExecutor`: ``workers`` actors,
each holding one evaluator built once, get one trial at a time while the driver asks and
tells. An actor whose process dies (SIGKILL, out of memory, ``os._exit``, a lost node)
reports its trial as lost and is replaced; a trial running past ``trial_timeout_s`` has its
actor killed and replaced and is recorded as failed.

Ray is imported only when :meth:`RayExecutor.start` runs, so archscout imports (and this
module imports) without Ray installed.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ArchscoutError
from ..evaluators.base import Evaluator
from ..space import Architecture
from .executors import EvaluatorSource, Executor, TrialResult, evaluate_with_curve

MISSING_RAY = "the ray executor needs Ray: pip install 'archscout[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ArchscoutError(MISSING_RAY) from None
    return ray


def ray_init_options(workers: int, address: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments :class:`RayExecutor` passes to ``ray.init`` (``overrides`` win).

    ``address=None`` (and no ``RAY_ADDRESS`` in the environment) starts a private local Ray
    with at least ``workers`` CPUs, no dashboard and no worker output copied to this
    terminal; its workers get this process's ``sys.path`` (what ``multiprocessing`` does
    too), so an evaluator class that the driver imports from an added path unpickles in
    the workers. Any other address connects to that running cluster as it is. Useful to
    start Ray once for several studies: ``ray.init(**ray_init_options(4))``.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        options["address"] = "local"
        options["num_cpus"] = max(int(workers), os.cpu_count() or 1)
        job_config = _job_config_with_driver_path()
        if job_config is not None:
            options["job_config"] = job_config
    else:
        options["address"] = address
    options.update(overrides)
    return options


def _job_config_with_driver_path() -> Any:
    """A JobConfig giving local workers the driver's own ``sys.path`` entries (outside the
    interpreter's prefix), or None when this Ray has no way to pass them.

    Ray itself passes only the script's directory and the working directory; a
    ``runtime_env`` with PYTHONPATH would work too but costs ~1.5 s at the first actor
    and ~0.3 s at each replacement here (no prestarted worker fits it).
    """
    from ray.job_config import JobConfig

    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = []
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and os.path.isdir(real) and not any(real == p or real.startswith(p + os.sep) for p in prefixes) \
                and real not in paths:
            paths.append(real)
    try:
        return JobConfig(_py_driver_sys_path=paths)
    except TypeError:  # a Ray without the (private) option: workers see Ray's defaults only
        return None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) nobody listens on: ``ray.init``
    itself retries such an address for many minutes."""
    if address in ("auto", "local") or ("://" in address and not address.startswith("ray://")):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port; let Ray judge it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ArchscoutError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
                             "is it running? (ray start --head)") from None


@contextlib.contextmanager
def _quiet_ray_logger() -> Iterator[None]:
    """Hide Ray's start-up and shut-down chatter (warnings included); errors still show."""
    logger = logging.getLogger("ray")
    level = logger.level
    if level < logging.ERROR:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


_log = logging.getLogger(__name__)


def _route_raylet_messages_to_log() -> bool:
    """Send the raylet's error messages (e.g. "A worker died or was killed ...") to this
    module's logger at INFO instead of the driver's stdout, where they would interleave with
    archscout's own output (``--json``). The trial's error already says the worker died.

    Ray prints them from a background thread through ``ray._private.worker.print_to_stdstream``;
    that private hook is wrapped when present. Returns whether it was wrapped now.
    """
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - layout of another Ray version
        return False
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "archscout_original", None) is not None:
        return False

    def print_to_stdstream(data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and data.get("pid") == "raylet":
            for line in data.get("lines", []):
                _log.info("ray: %s", line)
            return None
        return original(data, *args, **kwargs)

    print_to_stdstream.archscout_original = original  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_to_stdstream
    return True


def _restore_raylet_messages() -> None:
    from ray._private import worker as ray_worker

    original = getattr(getattr(ray_worker, "print_to_stdstream", None), "archscout_original", None)
    if original is not None:
        ray_worker.print_to_stdstream = original


class _TrialActor:
    """Body of one Ray actor: builds the evaluator once, then evaluates one trial per call."""

    def __init__(self, payload: bytes) -> None:
        from ray import cloudpickle

        source = cloudpickle.loads(payload)
        self.evaluator: Evaluator = source if isinstance(source, Evaluator) else source()

    def ready(self) -> bool:
        """Answered once the evaluator is built (calls run in order, one at a time)."""
        return True

    def evaluate(self, number: int, arch: Architecture, fidelity: float | None) -> TrialResult:
        return evaluate_with_curve(self.evaluator, number, arch, fidelity)


@functools.lru_cache(maxsize=1)
def _actor_class() -> Any:
    ray = _import_ray()
    # One CPU each, so Ray never runs more actors than the cluster has cores for; never
    # restarted by Ray (a dead actor is replaced here, with its trial reported as lost).
    return ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_TrialActor)


# A replacement actor that has not built its evaluator this long after the trial's timeout
# would have run out counts as timed out too (a hung evaluator factory, a cluster without
# room for it): seconds.
START_GRACE_S = 60.0


@dataclass
class _Slot:
    actor: Any
    ready_ref: Any                 # resolves once the actor has built its evaluator
    ready: bool = False
    number: int | None = None      # trial being evaluated
    ref: Any = None                # its ObjectRef
    since: float = 0.0             # when it was submitted (monotonic seconds)
    started: float | None = None   # when its evaluation could start: submitted and the actor ready

    def deadline(self, timeout_s: float) -> float:
        """Monotonic time at which this slot's trial times out."""
        if self.started is not None:
            return self.started + timeout_s
        return self.since + timeout_s + START_GRACE_S


class RayExecutor(Executor):
    """``workers`` Ray actors (``num_cpus=1`` each) with one evaluator each.

    ``address``: a running cluster to use (``"auto"``, ``"ray://host:10001"``, ...); by
    default a private local Ray is started by :meth:`start` and stopped by
    :meth:`shutdown`. When Ray is already initialised in this process, that connection is
    used and left running. ``trial_timeout_s`` (seconds): a trial running longer is stopped
    by killing its actor and recorded as failed; the time counts from when its actor has
    built the evaluator (a fresh actor takes ~0.2-2 s to start), so slow starts do not eat
    into it. ``ray_init_kwargs`` go to ``ray.init``. The constructor starts nothing.
    """

    def __init__(self, workers: int = 2, address: str | None = None, trial_timeout_s: float | None = None,
                 **ray_init_kwargs: Any) -> None:
        if workers < 1:
            raise ArchscoutError(f"workers must be >= 1, not {workers}")
        if trial_timeout_s is not None and trial_timeout_s <= 0:
            raise ArchscoutError(f"the trial timeout must be positive, not {trial_timeout_s:g}")
        self.workers = int(workers)
        self.address = address
        self.trial_timeout_s = trial_timeout_s
        self.ray_init_kwargs = ray_init_kwargs
        self._ray: Any = None
        self._owns_ray = False
        self._payload_ref: Any = None
        self._slots: list[_Slot] = []
        self.startup_s = 0.0  # seconds the last start() took (ray.init, if it ran, included)

    # -- life cycle -------------------------------------------------------------------
    def start(self, evaluator: EvaluatorSource) -> None:
        t0 = time.perf_counter()
        ray = self._ray = _import_ray()
        from ray import cloudpickle

        try:  # cloudpickle: classes defined in a script's __main__ travel by value
            payload = cloudpickle.dumps(evaluator)
        except Exception as exc:  # noqa: BLE001 - open files, locks, ...
            raise ArchscoutError(f"the evaluator cannot be sent to Ray workers ({type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                                 "pass a picklable evaluator or factory") from None
        if not ray.is_initialized():
            options = ray_init_options(self.workers, self.address, **self.ray_init_kwargs)
            where = options["address"] if options["address"] != "local" else "a local Ray"
            if options["address"] != "local":
                _check_reachable(str(options["address"]))
            try:
                with _quiet_ray_logger():
                    ray.init(**options)
            except Exception as exc:  # noqa: BLE001 - bad address, cluster down, bad option
                text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ArchscoutError(f"cannot start or reach {where}: {text}") from None
            self._owns_ray = True
        _route_raylet_messages_to_log()
        self._payload_ref = ray.put(payload)  # once: every actor reads the same object
        self._slots = [self._new_slot() for _ in range(self.workers)]
        self.startup_s = time.perf_counter() - t0

    def _new_slot(self) -> _Slot:
        actor = _actor_class().remote(self._payload_ref)
        return _Slot(actor, actor.ready.remote())

    def shutdown(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for slot in self._slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        self._slots, self._payload_ref = [], None
        if self._owns_ray:  # Ray's message thread has stopped: its printing can be restored
            with _quiet_ray_logger():
                ray.shutdown()
            _restore_raylet_messages()
            self._owns_ray = False
        self._ray = None

    # -- trials -------------------------------------------------------------------------
    def submit(self, number: int, arch: Architecture, fidelity: float | None = None) -> None:
        for slot in self._slots:
            if slot.number is None:
                slot.ref = slot.actor.evaluate.remote(number, arch, fidelity)
                slot.number, slot.since = number, time.monotonic()
                slot.started = slot.since if slot.ready else None
                return
        raise ArchscoutError("no free worker (check free() before submit())")

    def wait(self, timeout: float) -> list[TrialResult]:
        out: list[TrialResult] = []
        busy = [s for s in self._slots if s.number is not None]
        if not busy:
            return out
        ray = self._ray
        limit = self.trial_timeout_s
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            pause = max(0.0, end - now)
            if limit is not None:
                pause = max(0.0, min(pause, min(s.deadline(limit) for s in busy) - now))
            starting = [s.ready_ref for s in busy if not s.ready] if limit is not None else []
            refs = [s.ref for s in busy] + starting
            ready, _ = ray.wait(refs, num_returns=1, timeout=pause)
            if ready:  # whatever else has finished meanwhile, without waiting
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            done = set(ready)
            now = time.monotonic()
            for slot in busy:
                if slot.ready_ref in done:  # its evaluator is built: the trial's clock starts
                    slot.ready, slot.started = True, now
            finished = False
            for slot in busy:
                if slot.ref in done:
                    out.append(self._collect(slot))
                    finished = True
                elif limit is not None and now >= slot.deadline(limit):
                    out.append(TrialResult(slot.number, error=f"timed out after {limit:g} s",
                                           duration_s=now - slot.since))
                    self._replace(slot)
                    finished = True
            busy = [s for s in busy if s.number is not None]
            if finished or not busy or now >= end:
                return out

    def _collect(self, slot: _Slot) -> TrialResult:
        """The finished trial's result; a dead actor makes it lost (and is replaced)."""
        ray = self._ray
        number, elapsed = slot.number, time.monotonic() - slot.since
        try:
            result = ray.get(slot.ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
                ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.LocalRayletDiedError) as exc:
            self._replace(slot)
            return TrialResult(number, lost=True, error=f"ray worker died ({_death_reason(exc)})", duration_s=elapsed)
        except ray.exceptions.RayError as exc:  # the call itself failed; the actor lives on
            slot.number, slot.ref = None, None
            return TrialResult(number, error=f"ray task failed ({_first_line(exc)})", duration_s=elapsed)
        slot.number, slot.ref = None, None
        return result

    def _replace(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(slot.actor, no_restart=True)
        slot.number, slot.ref = None, None
        self._slots[self._slots.index(slot)] = self._new_slot()


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(exc)):
        exc = cause
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _death_reason(exc: BaseException) -> str:
    """A short reason from Ray's long multi-line actor-death message."""
    if getattr(exc, "actor_init_failed", False):  # the evaluator (factory) raised in the actor
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        return f"its evaluator could not be built: {lines[-1][:200] if lines else type(exc).__name__}"
    text = " ".join(str(exc).split())
    for marker in ("Worker exit detail:", "The actor is dead because"):
        at = text.find(marker)
        if at >= 0:
            detail = text[at + len(marker):].strip()
            end = detail.find(". ")
            return (detail[:end] if end > 0 else detail)[:200]
    return type(exc).__name__
