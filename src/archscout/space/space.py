"""SearchSpace: sampling, neighbourhoods, crossover, enumeration and encodings."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import SpaceError
from .architecture import Architecture, key_of
from .cell import Cell
from .params import Dim, Group, Param

Predicate = Callable[[Mapping[str, Any]], bool]
ENCODINGS = ("onehot", "adjacency", "path", "stats")
MAX_SAMPLE_TRIES = 2000


class SearchSpace:
    """A search space: parameters (one scope) plus optional predicates over values.

    ``constraints`` are Python callables on an architecture's values that must return
    True for an architecture to belong to the space (e.g. "total depth <= 12").
    Constraints on *metrics* (latency, parameters) belong to the study, not the space.
    """

    def __init__(self, params: Sequence[Param], constraints: Sequence[Predicate] = (), name: str = "space",
                 path_length: int = 3, model: Mapping[str, Any] | None = None) -> None:
        if not params:
            raise SpaceError("a search space needs at least one parameter")
        if model is not None and not isinstance(model, Mapping):
            raise SpaceError("a space's 'model' section must be a mapping (e.g. {family: macro})")
        self.name = name
        # How the torch builder turns architectures of this space into networks (family and
        # fixed settings); opaque to the space itself.
        self.model: dict[str, Any] = dict(model or {})
        self.group = Group(params)
        self.constraints = list(constraints)
        self.dims: list[Dim] = self.group.dims()
        self.path_length = path_length
        # Slices of the genotype owned by each top-level parameter.
        self._slices: list[tuple[Param, slice]] = []
        pos = 0
        for p in self.group.params:
            n = len(p.dims())
            self._slices.append((p, slice(pos, pos + n)))
            pos += n
        self._n_cat = np.array([d.n or 0 for d in self.dims])
        self._path_vocab: dict[str, dict[tuple[str, ...], int]] = {}

    @property
    def params(self) -> list[Param]:
        return self.group.params

    # -- construction -------------------------------------------------------------
    def make(self, values: Mapping[str, Any]) -> Architecture:
        """Check ``values`` against the space and return the Architecture (SpaceError if invalid)."""
        checked = self.group.validate(values)
        for pred in self.constraints:
            if not pred(checked):
                raise SpaceError(f"architecture violates a constraint of space {self.name!r}")
        return Architecture(checked, key_of(self.group.canonical(checked)), tuple(self.group.encode(checked)))

    def from_genotype(self, genotype: Sequence[Any]) -> Architecture | None:
        """The architecture a genotype decodes to, or None when it is not in the space."""
        values, _, _ = self.group.decode(genotype, 0)
        try:
            return self.make(values)
        except SpaceError:
            return None

    def genotype(self, arch: Architecture) -> tuple:
        if arch._genotype is None:
            arch._cache_genotype(tuple(self.group.encode(arch.values)))
        return arch._genotype

    def active_positions(self, arch: Architecture) -> list[int]:
        return self.group.decode(self.genotype(arch), 0)[2]

    def contains(self, arch_or_values: Architecture | Mapping[str, Any]) -> bool:
        values = arch_or_values.values if isinstance(arch_or_values, Architecture) else arch_or_values
        try:
            self.make(values)
        except SpaceError:
            return False
        return True

    # -- sampling and moves ---------------------------------------------------------
    def _random_genotype(self, rng: np.random.Generator) -> list[Any]:
        u = rng.random(len(self.dims))
        return [int(x * n) if n else float(x) for x, n in zip(u, self._n_cat)]

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random genotype, resampled until it is in the space."""
        for _ in range(MAX_SAMPLE_TRIES):
            arch = self.from_genotype(self._random_genotype(rng))
            if arch is not None:
                return arch
        raise SpaceError(f"no valid architecture in {MAX_SAMPLE_TRIES} random samples of space {self.name!r}; "
                         "its constraints may be impossible")

    def _alternatives(self, pos: int, current: Any) -> list[Any]:
        d = self.dims[pos]
        if d.n is None:
            return [min(current + 0.1, 1.0), max(current - 0.1, 0.0)]
        if d.ordinal:
            return [v for v in (current - 1, current + 1) if 0 <= v < d.n]
        return [v for v in range(d.n) if v != current]

    def _filled_genotype(self, arch: Architecture, rng: np.random.Generator) -> tuple[list[Any], list[int]]:
        """The genotype with inactive decisions redrawn at random, and the active positions."""
        active = self.active_positions(arch)
        filler = self._random_genotype(rng)
        act = set(active)
        return [b if p in act else filler[p] for p, b in enumerate(self.genotype(arch))], active

    def neighbours(self, arch: Architecture, rng: np.random.Generator | None = None) -> list[Architecture]:
        """All architectures one edit away: one active decision changed.

        Decisions that an edit makes active (a deeper repeat, a newly chosen option's
        sub-parameters) take random values from ``rng`` (seed 0 when not given).
        """
        rng = rng if rng is not None else np.random.default_rng(0)
        base, active = self._filled_genotype(arch, rng)
        out: dict[str, Architecture] = {}
        for p in active:
            for alt in self._alternatives(p, base[p]):
                g = list(base)
                g[p] = alt
                cand = self.from_genotype(g)
                if cand is not None and cand.key != arch.key and cand.key not in out:
                    out[cand.key] = cand
        return list(out.values())

    def mutate(self, arch: Architecture, rng: np.random.Generator, rate: float = 0.0,
               tries: int = 100) -> Architecture:
        """A random edit: one active decision changed, plus each other active decision with
        probability ``rate`` (0 gives a one-edit neighbour); decisions the edit activates take
        random values, redrawn after a failed try. Falls back to a random
        :meth:`neighbours` member (else a fresh sample, for a space of one architecture) if no
        valid, different architecture is found in ``tries`` attempts."""
        base, active = self._filled_genotype(arch, rng)
        for _ in range(tries):
            forced = active[int(rng.integers(len(active)))]
            g = list(base)
            for p in active:
                if p == forced or (rate > 0 and rng.random() < rate):
                    alts = self._alternatives(p, base[p])
                    if alts:
                        g[p] = alts[int(rng.integers(len(alts)))]
            cand = self.from_genotype(g)
            if cand is not None and cand.key != arch.key:
                return cand
            # Decisions an edit activates (a deeper repeat, an option's sub-parameters) hold
            # random filler; a filler that gives an invalid architecture would fail every
            # try alike, so the next try draws a new one.
            base, _ = self._filled_genotype(arch, rng)
        near = self.neighbours(arch)
        if near:
            return near[int(rng.integers(len(near)))]
        return self.sample(rng)

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator, tries: int = 20) -> Architecture:
        """Uniform crossover of two genotypes (each decision from either parent)."""
        ga, gb = self.genotype(a), self.genotype(b)
        for _ in range(tries):
            mask = rng.random(len(ga)) < 0.5
            cand = self.from_genotype([x if m else y for x, y, m in zip(ga, gb, mask)])
            if cand is not None:
                return cand
        return self.mutate(a, rng)

    # -- size and enumeration ---------------------------------------------------------
    def size(self) -> float:
        """Number of distinct encodings before constraints and canonical merging (may be inf)."""
        return self.group.size()

    def enumerate(self) -> Iterator[Architecture]:
        """Every distinct architecture (one per canonical key), for finite spaces."""
        if self.size() == float("inf"):
            raise SpaceError(f"space {self.name!r} has continuous parameters and cannot be enumerated")
        seen: set[str] = set()
        for values in self.group.enumerate():
            try:
                arch = self.make(values)
            except SpaceError:
                continue
            if arch.key not in seen:
                seen.add(arch.key)
                yield arch

    # -- encodings for predictors -------------------------------------------------------
    def encode(self, arch: Architecture, kind: str = "onehot") -> np.ndarray:
        """A fixed-length float vector for predictors.

        ``onehot``: every active categorical decision one-hot, continuous ones as [0, 1].
        ``adjacency``: as onehot, but each top-level cell as its adjacency matrix plus
        op one-hots. ``path``: each top-level cell as counts of input-to-output op
        sequences up to ``path_length`` ops (BANANAS), invariant to equivalent encodings.
        ``stats``: as onehot, plus for each top-level cell its op counts, the count of each
        op at each depth from the output along input-to-output paths, the number of such
        paths and their length histogram (compact, invariant summaries for predictors).
        """
        if kind not in ENCODINGS:
            raise SpaceError(f"unknown encoding {kind!r}; choose from {', '.join(ENCODINGS)}")
        g = self.genotype(arch)
        active = set(self.active_positions(arch))
        parts: list[np.ndarray] = []
        for p, sl in self._slices:
            if kind in ("adjacency", "path") and isinstance(p, Cell):
                parts.append(self._cell_adjacency(p, arch.values) if kind == "adjacency" else self._cell_paths(p, arch.values))
                continue
            parts.append(self._onehot(range(sl.start, sl.stop), g, active))
            if kind == "stats" and isinstance(p, Cell):
                parts.append(self._cell_stats(p, arch.values))
        return np.concatenate(parts) if parts else np.zeros(0)

    def _onehot(self, positions: range, g: Sequence[Any], active: set[int]) -> np.ndarray:
        sizes = [self.dims[p].n or 1 for p in positions]
        out = np.zeros(sum(sizes))
        off = 0
        for p, s in zip(positions, sizes):
            if p in active:
                if self.dims[p].n is None:
                    out[off] = g[p]
                else:
                    out[off + int(g[p])] = 1.0
            off += s
        return out

    @staticmethod
    def _cell_adjacency(cell: Cell, values: Mapping[str, Any]) -> np.ndarray:
        n_src = cell.cell_inputs + cell.nodes
        n_ops = len(cell.ops)
        op_idx = {o: i for i, o in enumerate(cell.ops)}
        adj = np.zeros((n_src, cell.nodes))
        if cell.op_on == "node":
            ops = np.zeros((cell.nodes, n_ops))
            for j, node in enumerate(values[cell.name]):
                adj[node["inputs"], j] = 1.0
                ops[j, op_idx[node["op"]]] = 1.0
            return np.concatenate([adj.ravel(), ops.ravel()])
        edge_ops = np.zeros((n_src, cell.nodes, n_ops))
        for j, node in enumerate(values[cell.name]):
            for i, o in zip(node["inputs"], node["ops"]):
                adj[i, j] = 1.0
                edge_ops[i, j, op_idx[o]] = 1.0
        return np.concatenate([adj.ravel(), edge_ops.ravel()])

    @staticmethod
    def _cell_stats(cell: Cell, values: Mapping[str, Any]) -> np.ndarray:
        op_idx = {o: i for i, o in enumerate(cell.ops)}
        n_ops = len(cell.ops)
        counts = np.zeros(n_ops)
        for node in values[cell.name]:
            for o in ([node["op"]] if cell.op_on == "node" else node["ops"]):
                counts[op_idx[o]] += 1.0
        depth = np.zeros((cell.nodes, n_ops))
        lengths = np.zeros(cell.nodes + 1)
        paths = set(cell.paths(values))
        for path in paths:
            lengths[min(len(path), cell.nodes)] += 1.0
            for d, o in enumerate(reversed(path)):
                depth[min(d, cell.nodes - 1), op_idx[o]] += 1.0
        return np.concatenate([counts, depth.ravel(), [float(len(paths))], lengths])

    def _cell_paths(self, cell: Cell, values: Mapping[str, Any]) -> np.ndarray:
        vocab = self._path_vocab.get(cell.name)
        if vocab is None:
            real = [o for o in cell.ops if o not in cell.identity and o not in cell.zero]
            seqs = [s for n in range(self.path_length + 1) for s in itertools.product(real, repeat=n)]
            vocab = self._path_vocab[cell.name] = {s: i for i, s in enumerate(seqs)}
        out = np.zeros(len(vocab))
        for path in cell.paths(values):
            i = vocab.get(path)
            if i is not None:
                out[i] += 1.0
        return out

    # -- description ------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """A JSON/YAML-ready description (Python constraints are not included)."""
        out: dict[str, Any] = {"name": self.name, "params": self.group.spec()}
        if self.model:
            out["model"] = dict(self.model)
        return out

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.params)} params, {len(self.dims)} decisions)"
