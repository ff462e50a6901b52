"""Per-unit latency lookup tables (ProxylessNAS / FBNet / OFA style).

A built model is a chain of units (stem, layers, head), each with a key that fully names its
type, configuration and input shape. A :class:`LatencyTable` holds one measured latency per
key and estimates a whole model's latency as the sum of its units' entries plus a fixed
per-forward overhead. A lookup costs microseconds, so a search can rank or filter
thousands of candidates by latency without running them.

Entries are medians in ms, measured *in place*: the units are timed inside forwards of the
models they belong to, in shuffled interleaved rounds (see :mod:`.profiling` for why timing
a unit alone is biased on small models, and how the noise of a shared machine is handled).
Use the same batch size, thread count and device as the latencies you compare with; the
table records them in ``machine``.

``overhead_ms`` is what a whole forward costs beyond its units' timed calls: the model's
own call and loop over units (a few microseconds on CPU). :meth:`LatencyTable.calibrate`
measures it as the median, over some whole models, of (measured latency - sum of entries);
``profile_space`` calibrates on ten of its sampled models. It is 0 until calibrated.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ArchscoutError, EvaluationError
from .profiling import measure_chains, measure_models
from .runner import Unit, as_unit, check_non_negative, check_positive, resolve_device, units_of

TABLE_FORMAT = "archscout-latency-table"
TABLE_VERSION = 1


class LatencyTableError(ArchscoutError):
    """A latency-table file that cannot be used (unreadable, corrupt, foreign or newer format)."""


class LookupMiss(ArchscoutError, KeyError):
    """A model unit whose key the latency table has no entry for (a KeyError, too)."""

    def __init__(self, key: str, missing: int = 1) -> None:
        self.key = key
        self.missing = missing
        more = f" (and {missing - 1} more)" if missing > 1 else ""
        super().__init__(f"latency table has no entry for unit {key!r}{more}; profile it first "
                         "(LatencyTable.profile, 'archscout profile') or use autoprofile=True")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def machine_fingerprint(batch_size: int, threads: int, device: str) -> dict[str, Any]:
    """What the figures depend on: host, CPU, torch build and the measurement settings."""
    dev = resolve_device(device)
    fingerprint: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "batch_size": batch_size,
        "device": str(dev),
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        fingerprint["gpu"] = torch.cuda.get_device_name(dev)
    return fingerprint


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def model_input_shape(model: nn.Module) -> tuple[int, ...]:
    """Input shape (no batch axis) of a unit-protocol model: that of its first unit."""
    units = units_of(model)
    if not units:
        raise EvaluationError(f"{type(model).__name__}.profile_units() returned no units")
    return units[0].input_shape


class LatencyTable:
    """Unit key -> median latency (ms) on one machine, with a fixed per-forward overhead.

    ``lookup(model)`` sums the entries of the model's units plus ``overhead_ms``. A unit
    missing from the table raises :class:`LookupMiss` unless the table was made with
    ``autoprofile=True``, in which case it is measured on the spot (with this table's
    settings) and kept.

    ``machine`` (the fingerprint of a loaded table) takes precedence over ``batch_size``,
    ``threads`` and ``device``, which only describe a new table. ``warmup``, ``repeats`` and
    ``rounds`` are the defaults of :meth:`profile` (see :func:`.profiling.measure_chains`).
    """

    def __init__(self, entries: dict[str, float] | None = None, *, overhead_ms: float = 0.0,
                 machine: dict[str, Any] | None = None, batch_size: int = 1, threads: int = 1, device: str = "cpu",
                 warmup: int = 3, repeats: int = 10, rounds: int = 3, autoprofile: bool = False) -> None:
        self.machine: dict[str, Any] = dict(machine) if machine is not None else machine_fingerprint(
            check_positive("batch_size", batch_size), check_positive("threads", threads), str(device))
        self.entries: dict[str, float] = {str(k): float(v) for k, v in (entries or {}).items()}
        self.overhead_ms = float(overhead_ms)
        self.warmup = check_non_negative("warmup", warmup)
        self.repeats = check_positive("repeats", repeats)
        self.rounds = check_positive("rounds", rounds)
        self.autoprofile = bool(autoprofile)

    # -- measurement settings live in the fingerprint, so a loaded table re-measures alike --
    @property
    def batch_size(self) -> int:
        return int(self.machine.get("batch_size", 1))

    @property
    def threads(self) -> int:
        return int(self.machine.get("threads", 1))

    @property
    def device(self) -> str:
        return str(self.machine.get("device", "cpu"))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __repr__(self) -> str:
        return (f"LatencyTable({len(self.entries)} entries, overhead {self.overhead_ms:.4f} ms, "
                f"batch {self.batch_size}, {self.threads} thread(s), {self.device})")

    def profile(self, units: Iterable[Any] | nn.Module, warmup: int | None = None, repeats: int | None = None,
                rounds: int | None = None) -> int:
        """Measure each unit whose key is not in the table yet; returns how many entries were added.

        ``units``: a unit-protocol model, or (key, module, input_shape[, dtype]) tuples such as
        ``model.profile_units()``. The units are timed in place as one chain, in the order
        given (a unit whose input shape does not follow from the previous one gets its own
        input). A key seen twice is one entry. ``warmup``/``repeats``/``rounds`` default to
        the table's settings.
        """
        chain = units_of(units) if isinstance(units, nn.Module) else [as_unit(u) for u in units]
        return self._profile_chains([chain], warmup, repeats, rounds)

    def profile_models(self, models: Iterable[nn.Module], warmup: int | None = None, repeats: int | None = None,
                       rounds: int | None = None) -> int:
        """Like :meth:`profile` for many models at once: every new key is timed inside each model
        that holds it (more contexts, one median); returns how many entries were added."""
        return self._profile_chains([units_of(m) for m in models], warmup, repeats, rounds)

    def _profile_chains(self, chains: list[list[Unit]], warmup: int | None, repeats: int | None,
                        rounds: int | None) -> int:
        new = {u.key for chain in chains for u in chain if u.key not in self.entries}
        if not new:
            return 0
        measured = measure_chains(chains, new, self.batch_size, self.threads, self.device,
                                  self.warmup if warmup is None else warmup,
                                  self.repeats if repeats is None else repeats,
                                  self.rounds if rounds is None else rounds)
        self.entries.update(measured)
        return len(measured)

    def unit_sum(self, model: nn.Module) -> float:
        """Sum of the model's unit entries in ms, without the overhead (LookupMiss / autoprofile as lookup)."""
        units = units_of(model)
        missing = [u for u in units if u.key not in self.entries]
        if missing:
            if not self.autoprofile:
                raise LookupMiss(missing[0].key, len({u.key for u in missing}))
            self.profile(units)  # times the missing keys in place, inside this model
        return float(sum(self.entries[u.key] for u in units))

    def lookup(self, model: nn.Module) -> float:
        """Estimated latency of one forward of ``model`` in ms: its units' entries + ``overhead_ms``."""
        return self.unit_sum(model) + self.overhead_ms

    def calibrate(self, models: Sequence[nn.Module], warmup: int | None = None, repeats: int | None = None,
                  rounds: int | None = None) -> float:
        """Set ``overhead_ms`` to the median of (measured - unit sum) over ``models``; returns it.

        The whole models are measured with the table's settings, interleaved like the units.
        Needs every unit of ``models`` in the table (or ``autoprofile``).
        """
        models = list(models)
        if not models:
            raise EvaluationError("calibrate needs at least one model")
        sums = [self.unit_sum(m) for m in models]
        measured = measure_models(models, [model_input_shape(m) for m in models], self.batch_size, self.threads,
                                  self.device, self.warmup if warmup is None else warmup,
                                  self.repeats if repeats is None else repeats,
                                  self.rounds if rounds is None else rounds)
        self.overhead_ms = float(np.median(np.asarray(measured) - np.asarray(sums)))
        return self.overhead_ms

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        return {"format": TABLE_FORMAT, "version": TABLE_VERSION, "machine": self.machine,
                "settings": {"warmup": self.warmup, "repeats": self.repeats, "rounds": self.rounds},
                "overhead_ms": self.overhead_ms, "entries": dict(sorted(self.entries.items()))}

    def save(self, path: str | Path) -> None:
        """Write the table as JSON (atomically: a crash never leaves a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path, autoprofile: bool = False) -> "LatencyTable":
        """Read a table written by :meth:`save`; LatencyTableError (one line) when it is not one."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LatencyTableError(f"latency table {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LatencyTableError(f"cannot read latency table {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise LatencyTableError(f"latency table {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return cls.from_dict(doc, str(path), autoprofile=autoprofile)

    @classmethod
    def from_dict(cls, doc: Any, where: str = "latency table", autoprofile: bool = False) -> "LatencyTable":
        """Validate and rebuild a table from :meth:`to_dict` output (LatencyTableError naming the problem)."""
        if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
            raise LatencyTableError(f"{where} is not an archscout latency table (no format: {TABLE_FORMAT!r})")
        version = doc.get("version")
        if not isinstance(version, int) or version > TABLE_VERSION or version < 1:
            raise LatencyTableError(f"{where} has format version {version!r}; this archscout reads version "
                                    f"{TABLE_VERSION} (a newer archscout wrote it?)")
        machine, entries, settings = doc.get("machine"), doc.get("entries"), doc.get("settings", {})
        if not isinstance(machine, dict):
            raise LatencyTableError(f"{where}: 'machine' must be an object")
        if not isinstance(entries, dict):
            raise LatencyTableError(f"{where}: 'entries' must be an object of unit key -> ms")
        for key, value in entries.items():
            if not _finite_non_negative(value):
                raise LatencyTableError(f"{where}: entry {key!r} is {value!r}, not a finite latency in ms")
        overhead = doc.get("overhead_ms", 0.0)
        if not _finite(overhead):
            raise LatencyTableError(f"{where}: overhead_ms is {overhead!r}, not a finite number")
        if not isinstance(settings, dict):
            raise LatencyTableError(f"{where}: 'settings' must be an object")
        for name in ("batch_size", "threads"):
            value = machine.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LatencyTableError(f"{where}: machine.{name} is {value!r}, not a positive integer")
        try:
            return cls(entries, overhead_ms=overhead, machine=machine, autoprofile=autoprofile,
                       warmup=settings.get("warmup", 3), repeats=settings.get("repeats", 10),
                       rounds=settings.get("rounds", 3))
        except EvaluationError as exc:
            raise LatencyTableError(f"{where}: bad settings ({exc})") from None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_non_negative(value: Any) -> bool:
    return _finite(value) and value >= 0


def build_latency_table(models: Iterable[nn.Module], batch_size: int = 1, threads: int = 1, device: str = "cpu",
                        warmup: int = 3, repeats: int = 10, rounds: int = 3, calibrate: int = 0,
                        autoprofile: bool = False) -> LatencyTable:
    """A table holding every distinct unit key of ``models``, each timed in place inside them.

    With ``calibrate`` > 0 the first ``calibrate`` models are also measured whole to set
    ``overhead_ms`` (see :meth:`LatencyTable.calibrate`).
    """
    models = list(models)
    table = LatencyTable(batch_size=batch_size, threads=threads, device=device, warmup=warmup, repeats=repeats,
                         rounds=rounds, autoprofile=autoprofile)
    table.profile_models(models)
    if calibrate > 0 and models:
        table.calibrate(models[:calibrate])
    return table


def profile_space(space: Any, input_shape: tuple[int, ...], num_classes: int, samples: int = 200, seed: int = 0,
                  batch_size: int = 1, threads: int = 1, device: str = "cpu", out: str | Path | None = None,
                  progress: bool = False, warmup: int = 3, repeats: int = 10, rounds: int = 3,
                  calibrate: int = 10, table: LatencyTable | None = None) -> LatencyTable:
    """Profile the units of ``samples`` random architectures of ``space``; save the table to ``out``.

    Builds each sampled architecture (``space.sample`` with ``numpy.random.default_rng(seed)``)
    with :func:`archscout.build.build_model` and times every distinct unit key in place, inside
    the sampled models that hold it (the key includes the unit's input shape, so each block
    choice is profiled at each position it takes). Then ``calibrate`` of the sampled models are
    measured whole to set ``overhead_ms`` (0 skips it). Pass an existing ``table`` to extend it:
    only keys it lacks are measured, with its own settings. Returns the table, also saved to
    ``out`` when given.
    """
    from ..build import build_model  # the builder is optional torch-side code; import on use

    check_positive("samples", samples)
    check_non_negative("calibrate", calibrate)
    if table is None:
        table = LatencyTable(batch_size=batch_size, threads=threads, device=device, warmup=warmup,
                             repeats=repeats, rounds=rounds)
    rng = np.random.default_rng(seed)
    to_profile: list[nn.Module] = []  # sampled models holding at least one key the table lacks
    calibration_models: list[nn.Module] = []
    new_keys: set[str] = set()
    bar = _progress(samples, "building", progress)
    for _ in range(samples):
        model = build_model(space, space.sample(rng), tuple(input_shape), num_classes)
        missing = {u.key for u in units_of(model)} - table.entries.keys()
        if missing:
            to_profile.append(model)
            new_keys |= missing
        if len(calibration_models) < calibrate:
            calibration_models.append(model)
        bar.update(1)
    bar.close()
    if progress:
        print(f"profiling {len(new_keys)} new unit keys in {len(to_profile)} models "
              f"({len(table.entries)} keys already in the table)", flush=True)
    table.profile_models(to_profile)
    if calibration_models:
        table.calibrate(calibration_models)
    if out is not None:
        table.save(out)
    return table


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if enabled:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="arch")
    return _NoBar()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass
