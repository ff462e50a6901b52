"""Search-space parameters: categorical choices (optionally with nested sub-spaces),
integer and float ranges, repeated blocks with searchable depth, and macro chains.

Every parameter maps its values to and from a *genotype*: a flat slice of decisions
(an integer index per categorical decision, a float in [0, 1] per continuous one).
Strategies mutate, cross over and encode genotypes without knowing the parameter
kinds; parameters turn genotypes back into readable values ("fragments": the dict
entries a parameter writes into its scope).
"""
from __future__ import annotations

import itertools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SpaceError

Fragment = dict[str, Any]
Decoded = tuple[Fragment, int, list[int]]  # (fragment, next position, active positions)

SCALAR_TYPES = (str, int, float, bool, type(None))
# Size limits that turn a mistyped number (high: 10**12, max_depth: 10**9) into a one-line
# SpaceError instead of an out-of-memory crash: encodings hold one slot per option of every
# decision, and a genotype one entry per decision.
MAX_OPTIONS = 100_000
MAX_DECISIONS = 100_000


@dataclass(frozen=True)
class Dim:
    """One decision of the genotype.

    ``n`` is the number of options of a categorical decision, or ``None`` for a
    continuous decision in [0, 1]. ``ordinal`` decisions move by one step in a
    one-edit neighbourhood (depths, integer ranges); others may jump to any option.
    """

    path: str
    n: int | None
    ordinal: bool = False


class Param(ABC):
    """A named parameter of a search space."""

    name: str

    @abstractmethod
    def dims(self) -> list[Dim]:
        """The genotype decisions this parameter owns, in order."""

    @abstractmethod
    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        """Read this parameter's decisions starting at ``pos``."""

    @abstractmethod
    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        """Decisions for a (validated) fragment; inactive decisions are 0."""

    @abstractmethod
    def validate(self, values: Mapping[str, Any]) -> Fragment:
        """Pick this parameter's entries out of ``values``, checked; raise SpaceError."""

    @abstractmethod
    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        """A canonical form: equal for equivalent values."""

    @abstractmethod
    def size(self) -> float:
        """Number of distinct encodings (``math.inf`` for continuous parameters)."""

    @abstractmethod
    def enumerate(self) -> Iterator[Fragment]:
        """Every fragment (only for finite parameters)."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON/YAML-ready description, readable by ``param_from_spec``."""

    def keys(self) -> set[str]:
        """Names this parameter may write into its scope."""
        return {self.name}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or not name.replace("_", "a").replace("-", "a").isalnum():
        raise SpaceError(f"parameter name {name!r} must be a non-empty identifier (letters, digits, _ or -)")
    return name


class Group:
    """An ordered scope of parameters whose values form one dict."""

    def __init__(self, params: Sequence[Param]) -> None:
        self.params = list(params)
        seen: set[str] = set()
        for p in self.params:
            clash = p.keys() & seen
            if clash:
                raise SpaceError(f"parameter name {sorted(clash)[0]!r} is used twice in one scope")
            seen |= p.keys()
        self._keys = seen

    def keys(self) -> set[str]:
        return self._keys

    def dims(self, prefix: str = "") -> list[Dim]:
        out: list[Dim] = []
        for p in self.params:
            out += [Dim(prefix + d.path, d.n, d.ordinal) for d in p.dims()]
        return out

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        values: Fragment = {}
        active: list[int] = []
        for p in self.params:
            frag, pos, act = p.decode(genotype, pos)
            values.update(frag)
            active += act
        return values, pos, active

    def encode(self, values: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for p in self.params:
            out += p.encode(values)
        return out

    def validate(self, values: Any, where: str = "") -> Fragment:
        if not isinstance(values, Mapping):
            raise SpaceError(f"{where or 'architecture'} must be a mapping of parameter names to values")
        out: Fragment = {}
        for p in self.params:
            out.update(p.validate(values))
        extra = set(values) - set(out)
        if extra:
            raise SpaceError(f"unknown or inactive parameter {sorted(map(str, extra))[0]!r}{' in ' + where if where else ''}")
        return out

    def canonical(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.params:
            c = p.canonical(values)
            if isinstance(p, Choice) and p.sub:
                out.update(c)
            else:
                out[p.name] = c
        return out

    def size(self) -> float:
        return math.prod(p.size() for p in self.params)

    def enumerate(self) -> Iterator[Fragment]:
        for parts in itertools.product(*(list(p.enumerate()) for p in self.params)):
            merged: Fragment = {}
            for frag in parts:
                merged.update(frag)
            yield merged

    def spec(self) -> list[dict[str, Any]]:
        return [p.spec() for p in self.params]


class Choice(Param):
    """A categorical choice among scalar options.

    ``sub`` maps an option to parameters that exist only when that option is chosen
    (conditional / nested choices); their values sit beside the choice in the same dict.
    """

    def __init__(self, name: str, options: Sequence[Any], sub: Mapping[Any, Sequence[Param]] | None = None) -> None:
        self.name = _check_name(name)
        self.options = list(options)
        if not self.options:
            raise SpaceError(f"choice {name!r} has no options")
        for o in self.options:
            if not isinstance(o, SCALAR_TYPES):
                raise SpaceError(f"choice {name!r}: option {o!r} is not a scalar (string, number, bool or null)")
        if len(set(map(_option_id, self.options))) != len(self.options):
            raise SpaceError(f"choice {name!r} lists an option twice")
        self.sub: dict[int, Group] = {}
        for opt, params in (sub or {}).items():
            idx = self._index_of(opt, strict=False)
            if idx is None:
                # YAML/JSON keys are strings: accept "3" for 3, "true" for True, "null" for None.
                idx = next((i for i, o in enumerate(self.options)
                            if str(o) == str(opt) or json.dumps(o) == str(opt)), None)
            if idx is None:
                raise SpaceError(f"choice {name!r}: sub-space given for unknown option {opt!r}")
            self.sub[idx] = Group(params)
            if self.name in self.sub[idx].keys():
                raise SpaceError(f"choice {name!r}: a sub-parameter reuses the name {name!r}")

    def _index_of(self, value: Any, strict: bool = True) -> int | None:
        vid = _option_id(value)
        for i, o in enumerate(self.options):
            if _option_id(o) == vid:
                return i
        if strict:
            raise SpaceError(f"{value!r} is not an option of {self.name!r} (options: {self.options})")
        return None

    def keys(self) -> set[str]:
        out = {self.name}
        for g in self.sub.values():
            out |= g.keys()
        return out

    def dims(self) -> list[Dim]:
        out = [Dim(self.name, len(self.options))]
        for i in sorted(self.sub):
            out += self.sub[i].dims(f"{self.name}={self.options[i]}.")
        return out

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        idx = int(genotype[pos])
        frag: Fragment = {self.name: self.options[idx]}
        active = [pos]
        pos += 1
        for i in sorted(self.sub):
            sub_frag, pos2, sub_active = self.sub[i].decode(genotype, pos)
            if i == idx:
                frag.update(sub_frag)
                active += sub_active
            pos = pos2
        return frag, pos, active

    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        idx = self._index_of(fragment[self.name])
        out: list[Any] = [idx]
        for i in sorted(self.sub):
            group = self.sub[i]
            out += group.encode(fragment) if i == idx else [0] * len(group.dims())
        return out

    def validate(self, values: Mapping[str, Any]) -> Fragment:
        if self.name not in values:
            raise SpaceError(f"missing parameter {self.name!r}")
        idx = self._index_of(values[self.name])
        frag: Fragment = {self.name: self.options[idx]}
        if idx in self.sub:
            group = self.sub[idx]
            frag.update(group.validate({k: v for k, v in values.items() if k in group.keys()}, self.name))
        return frag

    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        if not self.sub:
            return fragment[self.name]
        idx = self._index_of(fragment[self.name])
        out = {self.name: fragment[self.name]}
        if idx in self.sub:
            out.update(self.sub[idx].canonical(fragment))
        return out

    def size(self) -> float:
        return sum(self.sub[i].size() if i in self.sub else 1 for i in range(len(self.options)))

    def enumerate(self) -> Iterator[Fragment]:
        for i, o in enumerate(self.options):
            if i in self.sub:
                for frag in self.sub[i].enumerate():
                    yield {self.name: o, **frag}
            else:
                yield {self.name: o}

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": "choice", "options": list(self.options)}
        if self.sub:
            out["sub"] = {self.options[i]: g.spec() for i, g in sorted(self.sub.items())}
        return out


def _option_id(o: Any) -> tuple[str, Any]:
    # True == 1 in Python; keep bools and numbers apart.
    return (type(o).__name__ if isinstance(o, bool) else "v", o)


class IntRange(Param):
    """An integer in [low, high] on a grid of ``step``; neighbours are one step away."""

    def __init__(self, name: str, low: int, high: int, step: int = 1) -> None:
        self.name = _check_name(name)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)):
            raise SpaceError(f"int range {name!r}: low, high and step must be integers")
        if step <= 0 or high < low:
            raise SpaceError(f"int range {name!r}: need low <= high and step > 0")
        self.low, self.high, self.step = low, high, step
        self.n = (high - low) // step + 1
        if self.n > MAX_OPTIONS:
            raise SpaceError(f"int range {name!r} has {self.n} values (at most {MAX_OPTIONS:,}); "
                             "use a larger step or a float range")

    def dims(self) -> list[Dim]:
        return [Dim(self.name, self.n, ordinal=True)]

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        return {self.name: self.low + int(genotype[pos]) * self.step}, pos + 1, [pos]

    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        return [(fragment[self.name] - self.low) // self.step]

    def validate(self, values: Mapping[str, Any]) -> Fragment:
        if self.name not in values:
            raise SpaceError(f"missing parameter {self.name!r}")
        v = values[self.name]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or not self.low <= v <= self.high or (v - self.low) % self.step:
            raise SpaceError(f"{self.name!r}={v!r} is not an integer in [{self.low}, {self.high}] with step {self.step}")
        return {self.name: v}

    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        return fragment[self.name]

    def size(self) -> float:
        return self.n

    def enumerate(self) -> Iterator[Fragment]:
        for i in range(self.n):
            yield {self.name: self.low + i * self.step}

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "type": "int", "low": self.low, "high": self.high, "step": self.step}


class FloatRange(Param):
    """A real number in [low, high], optionally on a log scale (e.g. learning rates)."""

    def __init__(self, name: str, low: float, high: float, log: bool = False) -> None:
        self.name = _check_name(name)
        try:
            self.low, self.high = float(low), float(high)
        except (TypeError, ValueError, OverflowError):
            raise SpaceError(f"float range {name!r}: low and high must be numbers within float range") from None
        # The width must be finite too: [-1e308, 1e308] would map every unit value to NaN.
        if not math.isfinite(self.high - self.low) or self.high <= self.low:
            raise SpaceError(f"float range {name!r}: need finite low < high")
        if log and self.low <= 0:
            raise SpaceError(f"float range {name!r}: a log scale needs low > 0")
        self.log = bool(log)

    def dims(self) -> list[Dim]:
        return [Dim(self.name, None)]

    def _from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return min(max(float(f"{v:.12g}"), self.low), self.high)

    def _to_unit(self, v: float) -> float:
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        return {self.name: self._from_unit(genotype[pos])}, pos + 1, [pos]

    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        return [min(max(self._to_unit(fragment[self.name]), 0.0), 1.0)]

    def validate(self, values: Mapping[str, Any]) -> Fragment:
        if self.name not in values:
            raise SpaceError(f"missing parameter {self.name!r}")
        v = values[self.name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not self.low <= v <= self.high:
            raise SpaceError(f"{self.name!r}={v!r} is not a number in [{self.low}, {self.high}]")
        return {self.name: float(v)}

    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        return float(f"{fragment[self.name]:.10g}")

    def size(self) -> float:
        return math.inf

    def enumerate(self) -> Iterator[Fragment]:
        raise SpaceError(f"cannot enumerate the continuous parameter {self.name!r}")

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "type": "float", "low": self.low, "high": self.high, "log": self.log}


class Repeat(Param):
    """A block repeated a searchable number of times; each repetition has its own values.

    The value is a list of dicts, one per repetition (length between ``min_depth`` and
    ``max_depth``). Typical use: the layers of one stage of a macro network.
    """

    def __init__(self, name: str, body: Sequence[Param], min_depth: int, max_depth: int) -> None:
        self.name = _check_name(name)
        if not (isinstance(min_depth, int) and isinstance(max_depth, int)) or not 0 <= min_depth <= max_depth:
            raise SpaceError(f"repeat {name!r}: need integers 0 <= min_depth <= max_depth")
        self.body = Group(body)
        self.min_depth, self.max_depth = min_depth, max_depth
        self._body_dims = len(self.body.dims())
        if 1 + max_depth * max(1, self._body_dims) > MAX_DECISIONS:
            raise SpaceError(f"repeat {name!r}: max_depth {max_depth} makes more than {MAX_DECISIONS:,} "
                             "decisions; lower it")

    def dims(self) -> list[Dim]:
        out = [Dim(f"{self.name}.depth", self.max_depth - self.min_depth + 1, ordinal=True)]
        for i in range(self.max_depth):
            out += self.body.dims(f"{self.name}[{i}].")
        return out

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        depth = self.min_depth + int(genotype[pos])
        active = [pos]
        pos += 1
        layers = []
        for i in range(self.max_depth):
            frag, pos2, act = self.body.decode(genotype, pos)
            if i < depth:
                layers.append(frag)
                active += act
            pos = pos2
        return {self.name: layers}, pos, active

    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        layers = fragment[self.name]
        out: list[Any] = [len(layers) - self.min_depth]
        for i in range(self.max_depth):
            out += self.body.encode(layers[i]) if i < len(layers) else [0] * self._body_dims
        return out

    def validate(self, values: Mapping[str, Any]) -> Fragment:
        if self.name not in values:
            raise SpaceError(f"missing parameter {self.name!r}")
        layers = values[self.name]
        if not isinstance(layers, Sequence) or isinstance(layers, str):
            raise SpaceError(f"{self.name!r} must be a list of blocks")
        if not self.min_depth <= len(layers) <= self.max_depth:
            raise SpaceError(f"{self.name!r} has {len(layers)} blocks; allowed {self.min_depth}..{self.max_depth}")
        return {self.name: [self.body.validate(v, f"{self.name}[{i}]") for i, v in enumerate(layers)]}

    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        return [self.body.canonical(v) for v in fragment[self.name]]

    def size(self) -> float:
        s = self.body.size()
        return sum(s**d for d in range(self.min_depth, self.max_depth + 1))

    def enumerate(self) -> Iterator[Fragment]:
        options = list(self.body.enumerate())
        for d in range(self.min_depth, self.max_depth + 1):
            for layers in itertools.product(options, repeat=d):
                yield {self.name: list(layers)}

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "type": "repeat", "min_depth": self.min_depth,
                "max_depth": self.max_depth, "body": self.body.spec()}


class Chain(Param):
    """A macro chain: a fixed sequence of stages, each a scope of its own parameters.

    The value is a list of dicts, one per stage (e.g. each stage with a width choice
    and a ``Repeat`` of layers). Stages may differ in what they search.
    """

    def __init__(self, name: str, stages: Sequence[Sequence[Param]]) -> None:
        self.name = _check_name(name)
        if not stages:
            raise SpaceError(f"chain {name!r} has no stages")
        self.stages = [Group(s) for s in stages]

    def dims(self) -> list[Dim]:
        out: list[Dim] = []
        for i, g in enumerate(self.stages):
            out += g.dims(f"{self.name}[{i}].")
        return out

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        stages, active = [], []
        for g in self.stages:
            frag, pos, act = g.decode(genotype, pos)
            stages.append(frag)
            active += act
        return {self.name: stages}, pos, active

    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for g, v in zip(self.stages, fragment[self.name]):
            out += g.encode(v)
        return out

    def validate(self, values: Mapping[str, Any]) -> Fragment:
        if self.name not in values:
            raise SpaceError(f"missing parameter {self.name!r}")
        stages = values[self.name]
        if not isinstance(stages, Sequence) or isinstance(stages, str) or len(stages) != len(self.stages):
            raise SpaceError(f"{self.name!r} must be a list of {len(self.stages)} stages")
        return {self.name: [g.validate(v, f"{self.name}[{i}]") for i, (g, v) in enumerate(zip(self.stages, stages))]}

    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        return [g.canonical(v) for g, v in zip(self.stages, fragment[self.name])]

    def size(self) -> float:
        return math.prod(g.size() for g in self.stages)

    def enumerate(self) -> Iterator[Fragment]:
        for stages in itertools.product(*(list(g.enumerate()) for g in self.stages)):
            yield {self.name: list(stages)}

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "type": "chain", "stages": [g.spec() for g in self.stages]}
