"""Generic tabular benchmarks: a user's file that maps architectures to measured metrics.

Two formats (full description with examples in ``docs/tabular-format.md``):

* JSON or YAML (``.json``, ``.yaml``, ``.yml``)::

      {"format": "archscout-tabular", "version": 1, "name": "my-bench",
       "space": {...} | "space_file": "space.yaml",
       "objectives": ["acc:max"], "cheap_metrics": ["latency"],
       "entries": [{"arch": {...}, "metrics": {"acc": 0.91, "latency": 3.2}}, ...]}

* CSV (``.csv``): a header row; columns named after a (scalar) parameter of the space
  hold architecture values, every other column is a metric. The space comes from
  ``space_path`` or from a sidecar ``<stem>.space.yaml|.yml|.json`` beside the CSV,
  which may also carry ``objectives`` and ``cheap_metrics``.

Rows whose architectures share a canonical key (``Architecture.key``: equal values, or
equivalent cell encodings) are merged by averaging each metric over the rows that
report it. Empty, null and non-finite metric values count as missing.

Every user mistake raises a one-line :class:`~archscout.errors.SpaceError` (the space
description is malformed or unreadable) or :class:`~archscout.errors.TabularError`
(anything else, including entries that do not belong to the space), naming the file
and, where there is one, the entry or line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchscoutError, SpaceError, TabularError
from ..problem import Objective
from ..space import Architecture, Choice, FloatRange, IntRange, Param, SearchSpace, space_from_spec
from ..space.spec import printable, read_structured_file
from .base import TabularEvaluator

FORMAT_NAME = "archscout-tabular"
FORMAT_VERSION = 1
STRUCTURED_SUFFIXES = (".json", ".yaml", ".yml")
SIDECAR_SUFFIXES = (".space.yaml", ".space.yml", ".space.json")
# Keys a space file may carry beside the space spec itself.
SETTING_KEYS = ("objectives", "cheap_metrics")
_TABLE_KEYS = ("format", "version", "name", "description", "space", "space_file", *SETTING_KEYS, "entries")
_ENTRY_KEYS = ("arch", "metrics")
# CSV cell texts (case-insensitive) that mean "no value", besides the empty cell.
_MISSING_TEXT = {"", "na", "n/a", "null", "none"}


# -- the evaluator ---------------------------------------------------------------------------
@dataclass
class _Record:
    """One canonical architecture of a table: its first-seen encoding and averaged metrics."""

    arch: Architecture
    metrics: dict[str, float]
    replicates: int


class TabularBenchmark(TabularEvaluator):
    """Look-ups in a user-supplied table of measured architectures (no training).

    Build instances with :func:`load_tabular`. ``fidelity`` is ignored: a table holds
    one measurement (or the mean of replicates) per architecture. Metric units are
    whatever the file uses; they are passed through unchanged. ``dataset`` names the data
    the table was measured on when archscout knows it (its reference benchmarks), so
    supernet strategies searching this space can train on the same data; ``reference`` is
    the reference benchmark's name (its exact data split: ``archscout.reference.reference_data``).
    """

    dataset: str | None = None
    reference: str | None = None

    def __init__(self, space: SearchSpace, records: Mapping[str, _Record], *, path: Path, sha256: str,
                 objectives: Sequence[str], cheap_metrics: Sequence[str] = (), title: str | None = None) -> None:
        self._space = space
        self._records = dict(records)
        self._cheap = tuple(cheap_metrics)
        self.path = Path(path).resolve()
        self.sha256 = sha256
        self.name = f"tabular:{Path(path).name}"
        self.title = title  # the file's own "name" field, if any
        self.metric_names = tuple(sorted({m for r in self._records.values() for m in r.metrics}))
        self.default_objectives = tuple(objectives)

    @property
    def space(self) -> SearchSpace:
        return self._space

    def __len__(self) -> int:
        """Number of distinct (canonical) architectures in the table."""
        return len(self._records)

    def __repr__(self) -> str:
        return f"TabularBenchmark({self.name!r}, {len(self)} architectures)"

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        """A copy of the stored metrics of ``arch`` (KeyError when it is not in the table)."""
        rec = self._records.get(arch.key)
        if rec is None:
            raise KeyError(f"architecture {arch.to_json()} is not in the table {self.name}")
        return dict(rec.metrics)

    def contains(self, arch: Architecture) -> bool:
        return arch.key in self._records

    def replicates(self, arch: Architecture) -> int:
        """How many rows of the file were averaged into ``arch``'s metrics (0 when absent)."""
        rec = self._records.get(arch.key)
        return rec.replicates if rec else 0

    def cheap_metrics(self, arch: Architecture) -> Mapping[str, float]:
        """The declared cheap metrics (costs known before training) that ``arch`` has."""
        rec = self._records.get(arch.key)
        if rec is None:
            return {}
        return {m: rec.metrics[m] for m in self._cheap if m in rec.metrics}

    def cheap_metric_names(self) -> tuple[str, ...]:
        return self._cheap

    def entries(self) -> Iterator[tuple[Architecture, Mapping[str, float]]]:
        """(architecture, metrics) once per canonical architecture, in file order."""
        for rec in self._records.values():
            yield rec.arch, dict(rec.metrics)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256}


# -- loading -------------------------------------------------------------------------------------
@dataclass
class _Row:
    """One entry (JSON/YAML) or line (CSV) of a table, with metrics already cleaned."""

    where: str  # e.g. "table.json: entry 3" or "table.csv: line 5"
    values: Mapping[str, Any]
    metrics: dict[str, float]


@dataclass
class _Parsed:
    """What a format reader hands to :func:`_assemble`."""

    space: SearchSpace
    rows: list[_Row]
    settings: dict[str, Any] = field(default_factory=dict)  # objectives / cheap_metrics
    settings_where: str = ""  # the file the settings came from, for messages
    title: str | None = None


def load_tabular(path: str | Path, space_path: str | Path | None = None) -> TabularBenchmark:
    """Read a tabular benchmark from a JSON, YAML or CSV file.

    ``space_path`` names the space file for a CSV table (default: the sidecar
    ``<stem>.space.yaml|.yml|.json`` beside it), or for a JSON/YAML table that neither
    embeds a ``space`` nor names a ``space_file``. Raises SpaceError or TabularError
    with one line naming the file and location of the first problem.
    """
    p = Path(path)
    label = printable(path)
    suffix = p.suffix.lower()
    if suffix not in (*STRUCTURED_SUFFIXES, ".csv"):
        raise TabularError(f"{label}: unsupported table format {suffix or '(no extension)'!r} "
                           "(use .json, .yaml, .yml or .csv)")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TabularError(f"{label}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise TabularError(f"{label}: cannot read ({exc})") from None
    if suffix == ".csv":
        parsed = _parse_csv(p, label, data, space_path)
    else:
        parsed = _parse_structured(p, label, space_path)
    return _assemble(p, label, hashlib.sha256(data).hexdigest(), parsed)


def _assemble(path: Path, label: str, digest: str, parsed: _Parsed) -> TabularBenchmark:
    """Validate every row against the space, merge duplicates and check the settings."""
    if not parsed.rows:
        raise TabularError(f"{label}: the table has no entries")
    space = parsed.space
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    records: dict[str, _Record] = {}
    order: dict[str, None] = {}  # metric names in order of first appearance
    for row in parsed.rows:
        arch = _make(space, row)
        rec = records.get(arch.key)
        if rec is None:
            rec = records[arch.key] = _Record(arch, {}, 0)
            sums[arch.key], counts[arch.key] = {}, {}
        rec.replicates += 1
        for name, value in row.metrics.items():
            order.setdefault(name)
            sums[arch.key][name] = sums[arch.key].get(name, 0.0) + value
            counts[arch.key][name] = counts[arch.key].get(name, 0) + 1
    for key, rec in records.items():
        rec.metrics = {m: s / counts[key][m] for m, s in sums[key].items()}
    if not order:
        raise TabularError(f"{label}: no metric values in the table (every value is empty or not finite)")
    names = sorted(order)
    where = parsed.settings_where or label
    objectives = _objectives(parsed.settings.get("objectives"), where, names, next(iter(order)))
    cheap = _cheap_metrics(parsed.settings.get("cheap_metrics"), where, names)
    return TabularBenchmark(space, records, path=path, sha256=digest, objectives=objectives,
                            cheap_metrics=cheap, title=parsed.title)


def _make(space: SearchSpace, row: _Row) -> Architecture:
    """``space.make`` with the row's location on any error."""
    try:
        return space.make(row.values)
    except SpaceError as exc:
        raise TabularError(f"{row.where}: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError) as exc:  # odd value types deep in a parameter
        raise TabularError(f"{row.where}: not a valid architecture ({type(exc).__name__}: {exc})") from None


def _objectives(raw: Any, where: str, names: Sequence[str], first: str) -> tuple[str, ...]:
    """Normalised ``metric:max|min`` strings (default: the first metric of the file, maximised)."""
    if raw is None:
        return (f"{first}:max",)
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise TabularError(f"{where}: 'objectives' must be a non-empty list like ['acc:max', 'latency:min']")
    out: list[Objective] = []
    for text in items:
        try:
            obj = Objective.parse(text)
        except ArchscoutError as exc:
            raise TabularError(f"{where}: {exc}") from None
        if obj.metric not in names:
            raise TabularError(f"{where}: objective {text!r} names no metric of the table "
                               f"(metrics: {', '.join(map(printable, names))})")
        if any(o.metric == obj.metric for o in out):
            raise TabularError(f"{where}: objective metric {obj.metric!r} is listed twice")
        out.append(obj)
    return tuple(str(o) for o in out)


def _cheap_metrics(raw: Any, where: str, names: Sequence[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise TabularError(f"{where}: 'cheap_metrics' must be a list of metric names")
    for m in items:
        if m not in names:
            raise TabularError(f"{where}: cheap metric {m!r} is not a metric of the table "
                               f"(metrics: {', '.join(map(printable, names))})")
    return tuple(dict.fromkeys(items))


def _read_space_file(path: Path) -> tuple[SearchSpace, dict[str, Any]]:
    """A space spec file, plus the ``objectives``/``cheap_metrics`` keys it may carry."""
    raw = read_structured_file(path)
    settings: dict[str, Any] = {}
    if isinstance(raw, Mapping):
        settings = {k: raw[k] for k in SETTING_KEYS if k in raw}
        raw = {k: v for k, v in raw.items() if k not in SETTING_KEYS}
    return space_from_spec(raw, printable(path)), settings


# -- JSON / YAML -----------------------------------------------------------------------------------
def _parse_structured(p: Path, label: str, space_path: str | Path | None) -> _Parsed:
    try:
        doc = read_structured_file(p)
    except SpaceError as exc:  # unreadable or malformed: a table problem, not a space problem
        raise TabularError(str(exc)) from None
    if not isinstance(doc, Mapping):
        raise TabularError(f"{label}: expected a mapping with 'format', 'version', 'space' and 'entries'")
    if "format" not in doc:
        raise TabularError(f"{label}: missing 'format' (expected \"format\": \"{FORMAT_NAME}\")")
    if doc["format"] != FORMAT_NAME:
        raise TabularError(f"{label}: 'format' is {doc['format']!r}, expected {FORMAT_NAME!r}")
    if "version" not in doc:
        raise TabularError(f"{label}: missing 'version' (expected \"version\": {FORMAT_VERSION})")
    version = doc["version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise TabularError(f"{label}: unknown format version {version!r} "
                           f"(this archscout reads version {FORMAT_VERSION})")
    extra = [str(k) for k in doc if k not in _TABLE_KEYS]
    if extra:
        raise TabularError(f"{label}: unknown key {sorted(extra)[0]!r} (expected: {', '.join(_TABLE_KEYS)})")

    settings: dict[str, Any] = {}
    settings_where = label
    if "space" in doc and "space_file" in doc:
        raise TabularError(f"{label}: give either 'space' or 'space_file', not both")
    if space_path is not None and ("space" in doc or "space_file" in doc):
        raise TabularError(f"{label}: the table already names its space; do not also pass a space file")
    if "space" in doc:
        space = space_from_spec(doc["space"], f"{label}: space")
    else:
        if "space_file" in doc:
            ref = doc["space_file"]
            if not isinstance(ref, str) or not ref.strip():
                raise TabularError(f"{label}: 'space_file' must be a file path")
            sp = Path(ref)
            sp = sp if sp.is_absolute() else p.parent / sp
        elif space_path is not None:
            sp = Path(space_path)
        else:
            raise TabularError(f"{label}: missing 'space' (or 'space_file')")
        space, settings = _read_space_file(sp)
        settings_where = printable(sp)
    # Settings in the table itself take precedence over those in its space file.
    for key in SETTING_KEYS:
        if key in doc:
            settings[key] = doc[key]
            settings_where = label

    if "entries" not in doc:
        raise TabularError(f"{label}: missing 'entries'")
    entries = doc["entries"]
    if not isinstance(entries, list):
        raise TabularError(f"{label}: 'entries' must be a list of {{arch, metrics}} mappings")
    rows = [_structured_row(e, f"{label}: entry {i}") for i, e in enumerate(entries, 1)]
    title = doc.get("name")
    return _Parsed(space, rows, settings, settings_where, None if title is None else str(title))


def _structured_row(entry: Any, where: str) -> _Row:
    """One ``{"arch": ..., "metrics": ...}`` entry (numbered from 1 in messages)."""
    if not isinstance(entry, Mapping):
        raise TabularError(f"{where}: expected a mapping with 'arch' and 'metrics'")
    extra = [str(k) for k in entry if k not in _ENTRY_KEYS]
    if extra:
        raise TabularError(f"{where}: unknown key {sorted(extra)[0]!r} (expected arch, metrics)")
    for key in _ENTRY_KEYS:
        if key not in entry:
            raise TabularError(f"{where}: missing '{key}'")
    arch, raw_metrics = entry["arch"], entry["metrics"]
    if not isinstance(arch, Mapping):
        raise TabularError(f"{where}: 'arch' must map parameter names to values")
    if not isinstance(raw_metrics, Mapping):
        raise TabularError(f"{where}: 'metrics' must map metric names to numbers")
    metrics: dict[str, float] = {}
    for name, value in raw_metrics.items():
        # Printable: metric names end up in one-line messages and report tables.
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise TabularError(f"{where}: metric name {name!r} must be a non-empty, printable one-line string")
        number = _structured_number(value, where, name)
        if number is not None:
            metrics[name] = number
    return _Row(where, arch, metrics)


def _structured_number(value: Any, where: str, name: str) -> float | None:
    """A finite float, or None for null / NaN / infinite values (missing)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TabularError(f"{where}: metric {name!r} is not a number ({value!r})")
    try:
        # Strings are accepted because YAML reads e.g. 1e-3 (no dot) as text.
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise TabularError(f"{where}: metric {name!r} is not a number ({value!r})") from None
    except OverflowError:  # an integer beyond float range: treat as infinite, i.e. missing
        return None
    return number if math.isfinite(number) else None


# -- CSV ---------------------------------------------------------------------------------------------
def _parse_csv(p: Path, label: str, data: bytes, space_path: str | Path | None) -> _Parsed:
    try:
        text = data.decode("utf-8-sig")  # tolerate the byte-order mark spreadsheets write
    except UnicodeDecodeError:
        raise TabularError(f"{label}: not a UTF-8 text file") from None
    sp = Path(space_path) if space_path is not None else _find_sidecar(p, label)
    space, settings = _read_space_file(sp)
    scalar, other = _csv_params(space, label)

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise TabularError(f"{label}: line {reader.line_num}: malformed CSV ({exc})") from None
    if not lines:
        raise TabularError(f"{label}: empty file (expected a header row)")
    header_line, header = lines[0]
    columns = [c.strip() for c in header]
    for i, c in enumerate(columns, 1):
        if not c:
            raise TabularError(f"{label}: line {header_line}: column {i} has no name")
        if not c.isprintable():
            raise TabularError(f"{label}: line {header_line}: column {i} name {c!r} must be printable one-line text")
        if c in other:
            raise TabularError(f"{label}: line {header_line}: parameter {c!r} is a {other[c]} and cannot be "
                               "a CSV column (use the JSON or YAML table format)")
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise TabularError(f"{label}: line {header_line}: column {dup!r} appears twice")
    for top in space.params:
        if top.name not in columns:
            raise TabularError(f"{label}: line {header_line}: no column for parameter {top.name!r}")
    metric_cols = [c for c in columns if c not in scalar]
    if not metric_cols:
        raise TabularError(f"{label}: line {header_line}: no metric columns (every column is a parameter)")

    rows = []
    for line, cells in lines[1:]:
        where = f"{label}: line {line}"
        if len(cells) != len(columns):
            raise TabularError(f"{where}: expected {len(columns)} fields, found {len(cells)}")
        values: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for col, cell in zip(columns, cells):
            cell = cell.strip()
            if col in scalar:
                if cell:  # an empty cell leaves the parameter out (inactive sub-parameters)
                    values[col] = _csv_value(scalar[col], cell, where)
            else:
                number = _csv_number(cell, where, col)
                if number is not None:
                    metrics[col] = number
        rows.append(_Row(where, values, metrics))
    return _Parsed(space, rows, settings, printable(sp))


def _find_sidecar(p: Path, label: str) -> Path:
    """The one ``<stem>.space.{yaml,yml,json}`` beside a CSV table."""
    found = [c for c in (p.with_name(p.stem + s) for s in SIDECAR_SUFFIXES) if c.is_file()]
    if not found:
        sidecar = printable(p.stem + SIDECAR_SUFFIXES[0])
        raise TabularError(f"{label}: no space given (expected {sidecar} beside it or --space FILE)")
    if len(found) > 1:
        raise TabularError(f"{label}: several space files beside it ({', '.join(printable(f.name) for f in found)}); "
                           "keep one or pass --space FILE")
    return found[0]


def _csv_params(space: SearchSpace, label: str) -> tuple[dict[str, Param], dict[str, str]]:
    """Parameters a CSV column may name (scalars, including choices' sub-parameters), and
    the names of the others with their kinds. A non-scalar top-level parameter is an error."""
    scalar: dict[str, Param] = {}
    other: dict[str, str] = {}

    def walk(params: Sequence[Param]) -> None:
        for prm in params:
            if isinstance(prm, (Choice, IntRange, FloatRange)):
                scalar[prm.name] = prm
                if isinstance(prm, Choice):
                    for group in prm.sub.values():
                        walk(group.params)
            else:
                other[prm.name] = type(prm).__name__.lower()

    walk(space.params)
    for top in space.params:
        if top.name in other:
            raise TabularError(f"{label}: parameter {top.name!r} is a {other[top.name]}; CSV tables hold only "
                               "choice, int and float parameters (use the JSON or YAML table format)")
    return scalar, other


def _csv_value(param: Param, text: str, where: str) -> Any:
    """The parameter value a CSV cell means (validity is checked later by ``space.make``)."""
    if isinstance(param, Choice):
        exact = [o for o in param.options if str(o) == text]
        if len(exact) > 1:
            raise TabularError(f"{where}: {text!r} matches several options of {param.name!r} ({exact})")
        if exact:
            return exact[0]
        try:  # "16.0" for the option 16, "1e-2" for 0.01
            x = float(text)
            numeric = [o for o in param.options if isinstance(o, (int, float)) and not isinstance(o, bool) and o == x]
        except ValueError:
            numeric = []
        if len(numeric) == 1:
            return numeric[0]
        folded = [o for o in param.options if str(o).lower() == text.lower()]  # "true" for True
        return folded[0] if len(folded) == 1 else text
    try:
        if isinstance(param, IntRange):
            try:
                return int(text)
            except ValueError:
                return float(text)  # "32.0" is accepted as 32 by the space; "32.5" is rejected there
        return float(text)
    except ValueError:
        raise TabularError(f"{where}: parameter {param.name!r} is not a number ({text!r})") from None


def _csv_number(text: str, where: str, name: str) -> float | None:
    """A finite float from a metric cell, or None when the cell is empty, NA or not finite."""
    if text.lower() in _MISSING_TEXT:
        return None
    try:
        number = float(text)
    except ValueError:
        raise TabularError(f"{where}: metric {name!r} is not a number ({text!r})") from None
    return number if math.isfinite(number) else None
