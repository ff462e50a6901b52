"""Per-candidate latency lookup for hardware-aware differentiable NAS (FBNet, ProxylessNAS).

Every candidate of every :class:`~archscout.oneshot.supernet.MixedOp` is timed once at the
input shape it sees inside the supernet (shapes come from forward hooks during one probe
forward), batch 1, one thread, with :func:`archscout.hardware.measure_latency`. Cells
repeat a group's rows in every cell instance, so a row's latency for candidate ``i`` is the
sum over the instances. The result is a ``(rows, candidates)`` tensor of milliseconds per
group, and the expected latency of architecture weights ``p`` is
``sum_groups sum_rows sum_i p[row, i] * lat[row, i]`` -- differentiable in ``p``.

Entries are keyed like the units of built models (``block|c_in=..|c_out=..|stride=..|in=(C, L)``
for macro layers, ``cell_op:NAME|c=..|stride=..|in=(C, L)`` for cell ops), so a user's
:class:`~archscout.hardware.LatencyTable` can supply them: keys it holds are read from it,
missing keys are measured (with the table's batch size and threads) and added to it, so a
saved table is reused next time. A stage ``width`` choice carries no latency of its own
(its layers are timed at the widest option).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..build.network import unit_key
from ..hardware import LatencyTable, measure_latency
from .supernet import ChoiceSupernet, MixedOp, uniform_weights

LUT_WARMUP = 5      # untimed forwards before each candidate's timing
LUT_REPEATS = 20    # timed forwards per candidate (the median is kept)


@dataclass
class CandidateLatency:
    """Latency (ms) of each candidate of each row, summed over the row's instances.

    ``table`` maps a group name to a ``(rows, candidates)`` float tensor; ``keys`` the
    lookup keys behind each (group, row) as one list of key lists per instance; ``read``
    and ``measured`` count the distinct keys taken from a user table or timed here.
    """

    table: dict[str, torch.Tensor]
    keys: dict[tuple[str, int], list[list[str]]] = field(default_factory=dict)
    read: int = 0
    measured: int = 0

    def expected(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected latency in ms under per-row candidate probabilities (differentiable)."""
        total: torch.Tensor | None = None
        for name, lat in self.table.items():
            term = (probs[name] * lat.to(probs[name].dtype)).sum()
            total = term if total is None else total + term
        return total if total is not None else torch.zeros(())

    def of_path(self, path: Mapping[str, Sequence[int]]) -> float:
        """Latency in ms of the candidates a path picks (rows that are off cost nothing)."""
        total = 0.0
        for name, lat in self.table.items():
            for row, idx in enumerate(path[name]):
                if idx >= 0:
                    total += float(lat[row, idx])
        return total

    def entries(self) -> int:
        """How many (group, row, candidate) latencies the table holds."""
        return sum(int(t.numel()) for t in self.table.values())


def _probe_shapes(supernet: ChoiceSupernet) -> list[tuple[str, int, MixedOp, tuple[int, ...], tuple[int, ...]]]:
    """(group, row, mixed op, input shape, output shape) of every mixed op, from one eval forward."""
    seen: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = []
    ops = list(supernet.mixed_ops())
    for _, _, op in ops:
        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            seen[id(module)] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
        hooks.append(op.register_forward_hook(hook))
    was_training = supernet.training
    supernet.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(2, *supernet.input_shape)
            supernet(x, weights=uniform_weights(supernet))
    finally:
        for h in hooks:
            h.remove()
        supernet.train(was_training)
    return [(g, r, op, *seen[id(op)]) for g, r, op in ops]


def _candidate_key(supernet: ChoiceSupernet, group: str, index: int, in_shape: tuple[int, ...],
                   stride: int, c_out: int) -> str:
    g = supernet.group_index[group]
    name = g.candidates[index]
    if g.kind == "cell":
        return unit_key(f"cell_op:{name}", {"c": in_shape[0], "stride": stride}) + f"|in={in_shape}"
    if name == "skip":
        return f"skip|in={in_shape}"
    si = int(group.split("[", 1)[1].split("]", 1)[0])
    cfg = supernet.stage_plan[si]["configs"][index]
    defaults = dict(supernet.space.model.get("block_defaults") or {})
    opts = {**defaults, **{k: v for k, v in cfg.items() if k != "block"}}
    return unit_key(str(cfg["block"]), {"c_in": in_shape[0], "c_out": c_out, "stride": stride, **opts}) + f"|in={in_shape}"


def candidate_latencies(supernet: ChoiceSupernet, table: LatencyTable | None = None, *, threads: int = 1,
                        warmup: int = LUT_WARMUP, repeats: int = LUT_REPEATS) -> CandidateLatency:
    """Time (or look up in ``table``) every candidate of every row of ``supernet``.

    Without ``table`` candidates are timed at batch 1 with ``threads`` threads; with one,
    its entries are used and the missing ones timed with its settings and added to it.
    Candidates of the same key are timed once.
    """
    tables = {g.name: torch.zeros(g.rows, len(g.candidates)) for g in supernet.groups}
    keys: dict[tuple[str, int], list[list[str]]] = {}
    cache: dict[str, float] = {}
    read = measured = 0
    batch = table.batch_size if table is not None else 1
    nthreads = table.threads if table is not None else threads
    for group, row, op, in_shape, out_shape in _probe_shapes(supernet):
        stride = max(1, round(in_shape[-1] / out_shape[-1]))
        cand_in = (in_shape[0] // op.partial, *in_shape[1:]) if op.partial > 1 else in_shape
        c_out = out_shape[0] // op.partial if op.partial > 1 else out_shape[0]
        row_keys = []
        for i, module in enumerate(op.ops):
            key = _candidate_key(supernet, group, i, cand_in, stride, c_out)
            row_keys.append(key)
            if key not in cache:
                if table is not None and key in table.entries:
                    cache[key] = float(table.entries[key])
                    read += 1
                else:
                    stats = measure_latency(module, cand_in, batch_size=batch, threads=nthreads,
                                            warmup=warmup, repeats=repeats)
                    cache[key] = float(stats.median_ms)
                    measured += 1
                    if table is not None:
                        table.entries[key] = cache[key]
            tables[group][row, i] += cache[key]
        keys.setdefault((group, row), []).append(row_keys)
    return CandidateLatency(tables, keys, read, measured)


__all__ = ["CandidateLatency", "candidate_latencies"]
