"""Turning architecture weights into one architecture, and guarding against collapse.

Differentiable NAS tends to *collapse*: the argmax of the architecture weights drifts to
parameter-free candidates (skip connections, pooling) that help the supernet's optimisation
more than they help a stand-alone network. The guards here (chosen with ``guard=``):

* ``"pool"`` (the default of :func:`~archscout.oneshot.differentiable.run_differentiable`)
  -- selection by supernet accuracy over a candidate pool, the core idea of Wang et al. 2021
  (architecture weights do not show op strength, supernet accuracy does), done as in DARTS's
  candidate selection: :func:`candidate_pool` lists the most probable valid architectures
  under the architecture weights (and every one-row change of the argmax), a single-path
  supernet trains on that pool, and the most accurate non-collapsed member on the validation
  split is derived (see ``_Search.select_from_pool`` in :mod:`.differentiable`).
* ``"perturbation"`` -- perturbation-based selection (Wang et al. 2021, "Rethinking
  Architecture Selection in Differentiable NAS"): row by row in a random order, pick the
  candidate whose *removal* from the trained supernet hurts validation accuracy most
  (ties broken by validation loss), fix that row to it, fine-tune the supernet a few steps,
  go on. Supernets trained on single sampled paths (GDAS, ProxylessNAS) are probed in the
  same single-path form: each candidate in turn takes the row (the others fixed to their
  current choice) and the best one stays. Cells whose nodes keep ``k`` inputs then keep the
  ``k`` incoming edges whose removal hurts most.
* ``"darts+"`` -- DARTS+ early stopping (Liang et al. 2019): stop searching once a cell has
  two or more rows whose strongest candidate is a skip connection (macro spaces: two skipped
  or identity layers in one stage), deriving from the weights of the epoch before; or once
  the ranking of the parametric candidates of every row has not changed for ``k`` epochs.
* ``"none"`` -- the plain argmax (DARTS's rule).

``pool``, ``perturbation`` and ``darts+`` also refuse a fully collapsed result (``pool``
first skips collapsed pool members): when every live
decision of the derived architecture is parameter-free, the row whose best parametric
candidate scores closest to its pick is switched to it (:func:`avoid_collapse`).
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import SpaceError
from ..space import Architecture, Cell
from .supernet import SKIP, ChoiceGroup, ChoiceSupernet, Path

GUARDS = ("pool", "perturbation", "darts+", "none")
IDENTITY_BLOCKS = frozenset({SKIP, "identity", "skip_connect"})

Metric = tuple[float, float]   # (accuracy, loss) on the selection data


# -- what a path holds -------------------------------------------------------------------
def _cell_param(supernet: ChoiceSupernet, name: str) -> Cell:
    return next(p for p in supernet.space.params if isinstance(p, Cell) and p.name == name)


def identity_candidates(supernet: ChoiceSupernet, group: str) -> set[int]:
    """Indices of a group's skip-connection candidates (identity ops; macro: skipped layers)."""
    g = supernet.group_index[group]
    if g.kind == "cell":
        ident = _cell_param(supernet, group).identity
        return {i for i, c in enumerate(g.candidates) if c in ident}
    return {i for i, c in enumerate(g.candidates) if c in IDENTITY_BLOCKS}


def live_rows(supernet: ChoiceSupernet, path: Mapping[str, Sequence[int]]) -> dict[str, list[bool]]:
    """Per group and row: does the decision matter? Cell edges that are off, carry a zero op
    or lie on no input-to-output path are dead; macro layer rows are live (a skipped layer
    is a parameter-free pick), width rows are not op decisions and count as dead."""
    out: dict[str, list[bool]] = {}
    for g in supernet.groups:
        idx = list(path[g.name])
        if g.kind == "layer":
            out[g.name] = [True] * g.rows
            continue
        if g.kind != "cell":
            out[g.name] = [False] * g.rows
            continue
        cell = _cell_param(supernet, g.name)
        n_in = cell.cell_inputs
        edges = []   # (row, src state, dst node)
        row = 0
        for j in range(cell.nodes):
            for i in range(n_in + j):
                on = idx[row] >= 0 and not g.zero[idx[row]]
                if on:
                    edges.append((row, i, j))
                row += 1
        alive = [True] * n_in + [False] * cell.nodes        # computes something from the inputs
        for j in range(cell.nodes):
            alive[n_in + j] = any(alive[i] for _, i, d in edges if d == j)
        if cell.output == "last":
            outs = [cell.nodes - 1]
        elif cell.output == "concat":
            outs = list(range(cell.nodes))
        else:
            read = {i - n_in for _, i, _ in edges if i >= n_in}
            outs = [j for j in range(cell.nodes) if j not in read] or [cell.nodes - 1]
        needed = [False] * cell.nodes
        for j in outs:
            needed[j] = True
        for j in reversed(range(cell.nodes)):
            if needed[j] and alive[n_in + j]:
                for _, i, d in edges:
                    if d == j and i >= n_in:
                        needed[i - n_in] = True
        flags = [False] * g.rows
        for r, i, j in edges:
            flags[r] = needed[j] and alive[n_in + j] and alive[i]
        out[g.name] = flags
    return out


def param_free_fraction(supernet: ChoiceSupernet, path: Mapping[str, Sequence[int]]) -> float:
    """Fraction of the live decisions of ``path`` that picked a parameter-free candidate
    (1.0 when nothing is live)."""
    live = live_rows(supernet, path)
    total = free = 0
    for g in supernet.groups:
        for row, flag in enumerate(live[g.name]):
            if flag:
                total += 1
                free += bool(g.param_free[path[g.name][row]])
    return free / total if total else 1.0


def is_collapsed(supernet: ChoiceSupernet, path: Mapping[str, Sequence[int]]) -> bool:
    """True when every live decision of ``path`` is parameter-free."""
    return param_free_fraction(supernet, path) >= 1.0


def skip_count(supernet: ChoiceSupernet, path: Mapping[str, Sequence[int]]) -> int:
    """Most skip connections in one cell group (macro: skipped or identity layers in one stage)."""
    counts: dict[str, int] = {}
    for g in supernet.groups:
        if g.kind == "width":
            continue
        ident = identity_candidates(supernet, g.name)
        key = g.name if g.kind == "cell" else g.name.split(".layers[", 1)[0]
        counts[key] = counts.get(key, 0) + sum(1 for i in path[g.name] if i in ident)
    return max(counts.values(), default=0)


# -- DARTS+ --------------------------------------------------------------------------------
class DartsPlusMonitor:
    """DARTS+ stopping rules, fed once per epoch with the argmax path and the weights.

    ``update`` returns the reason to stop (``"skip"``: a cell reached ``max_skips`` skip
    connections; ``"stable"``: the ranking of parametric candidates in every row held for
    ``stable_epochs`` epochs) or None. ``stable`` counts epochs without a ranking change.
    """

    def __init__(self, supernet: ChoiceSupernet, stable_epochs: int = 5, max_skips: int = 2) -> None:
        self.supernet = supernet
        self.stable_epochs = int(stable_epochs)
        self.max_skips = int(max_skips)
        self.stable = 0
        self.skips = 0
        self._ranking: tuple[tuple[int, ...], ...] | None = None

    def ranking(self, weights: Mapping[str, torch.Tensor]) -> tuple[tuple[int, ...], ...]:
        """Per row, the parametric candidates ordered by weight (strongest first)."""
        out = []
        for g in self.supernet.groups:
            learnable = [i for i, free in enumerate(g.param_free) if not free]
            if not learnable:
                continue
            w = weights[g.name].detach().float().cpu()
            for row in range(g.rows):
                out.append(tuple(sorted(learnable, key=lambda i: (-float(w[row, i]), i))))
        return tuple(out)

    def update(self, path: Mapping[str, Sequence[int]], weights: Mapping[str, torch.Tensor]) -> str | None:
        self.skips = skip_count(self.supernet, path)
        rank = self.ranking(weights)
        self.stable = self.stable + 1 if rank == self._ranking else 0
        self._ranking = rank
        if self.skips >= self.max_skips:
            return "skip"
        if self.stable >= self.stable_epochs:
            return "stable"
        return None


# -- valid and non-collapsed paths ------------------------------------------------------------
def _try_arch(supernet: ChoiceSupernet, path: Path) -> Architecture | None:
    try:
        return supernet.arch_of(path)
    except SpaceError:
        return None


Slot = tuple[str, int, list[int], np.ndarray]   # group, row, alternatives (best first), cost of each


def _best_first(slots: Sequence[Slot], limit: int) -> Iterator[tuple[int, ...]]:
    """Rank tuples (one index into each slot's alternatives) in order of increasing summed
    cost, starting from all-zeros (every slot's first alternative); at most ``limit``."""
    start = (0,) * len(slots)
    heap: list[tuple[float, tuple[int, ...]]] = [(0.0, start)]
    seen = {start}
    for _ in range(limit):
        if not heap:
            return
        cost, ranks = heapq.heappop(heap)
        yield ranks
        for k, (_, _, alts, costs) in enumerate(slots):
            if ranks[k] + 1 < len(alts):
                nxt = ranks[:k] + (ranks[k] + 1,) + ranks[k + 1:]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (cost - costs[ranks[k]] + costs[ranks[k] + 1], nxt))


def _with_ranks(path: Path, slots: Sequence[Slot], ranks: tuple[int, ...]) -> dict[str, list[int]]:
    candidate = {k: list(v) for k, v in path.items()}
    for (name, row, alts, _), r in zip(slots, ranks):
        candidate[name][row] = alts[r]
    return candidate


def _allowed(g: ChoiceGroup) -> list[int]:
    return [i for i in range(len(g.candidates)) if not (g.pick and g.zero[i] and not all(g.zero))]


def first_valid(supernet: ChoiceSupernet, path: Path, scores: Mapping[str, torch.Tensor],
                limit: int = 2000) -> tuple[Architecture, Path, int]:
    """``path``'s architecture, or when the space rejects it (a cell of only skips ...) the
    valid path that gives up the least total score (best-first over per-row alternatives,
    ``scores[group][row, i]``: higher is better). Returns (arch, path, paths tried)."""
    slots: list[Slot] = []
    for g in supernet.groups:
        s = scores[g.name].detach().float().cpu().numpy()
        for row, cur in enumerate(path[g.name]):
            if cur < 0:
                continue
            alts = [cur] + sorted((i for i in _allowed(g) if i != cur), key=lambda i: (-s[row, i], i))
            gaps = np.array([max(0.0, s[row, cur] - s[row, i]) for i in alts])
            slots.append((g.name, row, alts, gaps))
    tried = 0
    for ranks in _best_first(slots, limit):
        tried += 1
        candidate = _with_ranks(path, slots, ranks)
        arch = _try_arch(supernet, candidate)
        if arch is not None:
            return arch, candidate, tried
    raise SpaceError(f"no valid architecture near the derived one (tried {tried} paths)")


def candidate_pool(supernet: ChoiceSupernet, path: Path, weights: Mapping[str, torch.Tensor], size: int,
                   neighbours: bool = True, limit: int = 20000) -> list[tuple[Path, Architecture]]:
    """The ``size`` most probable distinct valid architectures near ``path`` under per-row
    candidate ``weights`` (probabilities; a path's score is the sum of its rows' log weights),
    found best-first over per-row alternatives of the decided rows (rows at ``-1`` stay off).
    ``neighbours`` adds every path that changes one decided row of ``path`` (so each
    candidate of each row is tried once beside the others' picks). Returns (path, arch)
    pairs, the most probable first, one per architecture."""
    slots: list[Slot] = []
    for g in supernet.groups:
        lw = torch.log(weights[g.name].detach().float().cpu().clamp_min(1e-12)).numpy()
        for row, cur in enumerate(path[g.name]):
            if cur < 0:
                continue
            alts = sorted(_allowed(g), key=lambda i: (-lw[row, i], i))
            costs = np.array([lw[row, alts[0]] - lw[row, i] for i in alts])
            slots.append((g.name, row, alts, costs))
    out: list[tuple[Path, Architecture]] = []
    seen_keys: set[str] = set()

    def add(ranks: tuple[int, ...]) -> None:
        candidate = _with_ranks(path, slots, ranks)
        arch = _try_arch(supernet, candidate)
        if arch is not None and arch.key not in seen_keys:
            seen_keys.add(arch.key)
            out.append((candidate, arch))

    for ranks in _best_first(slots, limit):
        add(ranks)
        if len(out) >= size:
            break
    if neighbours:
        base = tuple(alts.index(path[name][row]) if path[name][row] in alts else 0 for name, row, alts, _ in slots)
        for k, (_, _, alts, _) in enumerate(slots):
            for r in range(len(alts)):
                if r != base[k]:
                    add(base[:k] + (r,) + base[k + 1:])
    return out


def avoid_collapse(supernet: ChoiceSupernet, path: Path, scores: Mapping[str, torch.Tensor]
                   ) -> tuple[Path, dict[str, Any] | None]:
    """When every live decision of ``path`` is parameter-free, switch the one row whose best
    parametric candidate loses the least score against the row's pick (and gives a valid,
    non-collapsed architecture). Returns the path and what changed (None: nothing)."""
    if not is_collapsed(supernet, path):
        return path, None
    options = []
    for g in supernet.groups:
        s = scores[g.name].detach().float().cpu()
        for row, cur in enumerate(path[g.name]):
            if cur < 0:
                continue
            for i, free in enumerate(g.param_free):
                if not free:
                    options.append((float(s[row, cur] - s[row, i]), g.name, row, i))
    for _, name, row, i in sorted(options, key=lambda o: (o[0], o[1], o[2], o[3])):
        trial = {k: list(v) for k, v in path.items()}
        old = trial[name][row]
        trial[name][row] = i
        if not is_collapsed(supernet, trial) and _try_arch(supernet, trial) is not None:
            g = supernet.group_index[name]
            return trial, {"group": name, "row": g.row_labels[row], "was": g.candidates[old], "now": g.candidates[i]}
    return path, None


# -- perturbation-based selection ----------------------------------------------------------------
def perturbation_select(supernet: ChoiceSupernet, weights: Mapping[str, torch.Tensor],
                        evaluate: Callable[[dict[str, torch.Tensor]], Metric], *, mode: str = "mixture",
                        order: Sequence[tuple[str, int]] | None = None,
                        finetune: Callable[[dict[str, torch.Tensor]], None] | None = None,
                        ) -> tuple[Path, dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Select one candidate per row by how much the supernet relies on it.

    ``weights``: the trained per-row candidate weights (softmax of alpha for ``"mixture"``,
    one-hot rows of the current path for ``"path"``). ``evaluate(weights)`` returns
    (accuracy, loss) of the supernet run with those weights (an all-zero row means the
    edge is off). ``"mixture"`` scores candidate ``i`` of a row by the accuracy drop (then
    loss rise) when its weight is zeroed; ``"path"`` by the accuracy (then -loss) when it
    alone takes the row. Rows are processed in ``order`` and fixed to their pick (one-hot);
    ``finetune(fixed)`` runs after each, ``fixed`` holding the decided rows one-hot and the
    others all zero. Returns the path, the per-candidate importance
    scores (for :func:`first_valid` / :func:`avoid_collapse`) and one record per decision.
    """
    if mode not in ("mixture", "path"):
        raise ValueError(f"unknown perturbation mode {mode!r}")
    w = {k: v.detach().clone().float() for k, v in weights.items()}
    scores = {g.name: torch.full((g.rows, len(g.candidates)), -1e9) for g in supernet.groups}
    rows = list(order) if order is not None else [(g.name, r) for g in supernet.groups for r in range(g.rows)]
    fixed = {k: torch.zeros_like(v) for k, v in w.items()}
    records: list[dict[str, Any]] = []

    def importance(metric: Metric, base: Metric | None) -> float:
        acc, loss = metric
        if mode == "mixture":
            assert base is not None
            return (base[0] - acc) + 1e-3 * np.tanh(loss - base[1])
        return acc - 1e-3 * np.tanh(loss)

    for name, row in rows:
        g = supernet.group_index[name]
        allowed = [i for i in range(len(g.candidates)) if not (g.pick and g.zero[i] and not all(g.zero))]
        if len(allowed) == 1:
            pick, found = allowed[0], {allowed[0]: 0.0}
        else:
            base = evaluate(w) if mode == "mixture" else None
            found = {}
            for i in allowed:
                trial = {k: v.clone() for k, v in w.items()}
                if mode == "mixture":
                    trial[name][row, i] = 0.0
                else:
                    trial[name][row] = 0.0
                    trial[name][row, i] = 1.0
                found[i] = float(importance(evaluate(trial), base))
            pick = max(allowed, key=lambda i: (found[i], -i))
        for i, value in found.items():
            scores[name][row, i] = value
        argmax = int(w[name][row].argmax())
        w[name][row] = 0.0
        w[name][row, pick] = 1.0
        fixed[name][row, pick] = 1.0
        records.append({"group": name, "row": g.row_labels[row], "argmax": g.candidates[argmax],
                        "selected": g.candidates[pick],
                        "importance": {g.candidates[i]: round(v, 6) for i, v in found.items()}})
        if finetune is not None:
            finetune({k: v.clone() for k, v in fixed.items()})
    path: Path = {name: [int(r.argmax()) for r in w[name]] for name in w}
    for g in supernet.groups:
        if g.kind != "cell" or g.pick == 0:
            continue
        cell = _cell_param(supernet, g.name)
        row = 0
        for j in range(cell.nodes):
            incoming = list(range(row, row + cell.cell_inputs + j))
            row += len(incoming)
            if len(incoming) <= g.pick:
                continue
            drop = {}
            base = evaluate(w)
            for r in incoming:
                trial = {k: v.clone() for k, v in w.items()}
                trial[g.name][r] = 0.0
                m = evaluate(trial)
                drop[r] = (base[0] - m[0]) + 1e-3 * np.tanh(m[1] - base[1])
            keep = sorted(incoming, key=lambda r: (-drop[r], r))[: g.pick]
            for r in incoming:
                if r not in keep:
                    path[g.name][r] = -1
                    w[g.name][r] = 0.0
            records.append({"group": g.name, "node": j, "kept_edges": [g.row_labels[r] for r in sorted(keep)]})
    return path, scores, records


__all__ = ["DartsPlusMonitor", "GUARDS", "avoid_collapse", "candidate_pool", "first_valid", "identity_candidates",
           "is_collapsed", "live_rows", "param_free_fraction", "perturbation_select", "skip_count"]
