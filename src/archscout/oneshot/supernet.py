"""Choice supernets: every candidate of every decision in one network, generated from the space.

A supernet is built from the same space file (and its ``model:`` section) that
:func:`archscout.build.build_model` reads, so a user never writes a second definition:

* **cells** family (NAS-Bench-201 / DARTS stacks, ops on edges): every cell instance holds
  every edge a node *could* read, each edge a :class:`MixedOp` over the cell's ``ops``.
  Cells of the same parameter share one :class:`ChoiceGroup` (DARTS shares ``normal`` and
  ``reduce`` weights across the stack); a group has one *row* per possible edge.
* **macro** family (stages of per-layer block choices): every layer slot up to the stage's
  ``max_depth`` is a :class:`MixedOp` over the layer's full block configurations (block
  choice x its sub-choices) plus, for slots past ``min_depth``, ``skip`` (the layer is
  absent). A stage ``width`` choice is searched by channel masking (FBNetV2): layers are
  built at the widest option and the output is multiplied by a mix of channel masks.

How the supernet runs is chosen per call:

* ``supernet(x, weights=w)``: every candidate weighted (DARTS); ``w`` maps a group name to
  a ``(rows, candidates)`` tensor. ``active`` (same keys, a list of candidate indices per
  row) limits the candidates computed (GDAS, ProxylessNAS); ``edge_weights`` (group ->
  ``(rows,)``) scales each edge (PC-DARTS edge normalisation).
* ``supernet(x)`` after ``set_path(path)``: one candidate per row (SPOS, evaluation);
  a *path* maps a group name to one candidate index per row, ``-1`` for an edge that is
  off (cells whose nodes pick ``inputs: k`` of their predecessors).

:meth:`ChoiceSupernet.path_of` and :meth:`ChoiceSupernet.arch_of` translate between paths
and architectures of the space, so every derived result is a valid, storable trial.
Parameters the network does not search (``dropout``, ``lr``, a ``stem`` choice ...) take
the values of ``base`` (default: the space's first architecture).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..build import model_family
from ..build.cells import cell_plan, resolve_cells
from ..build.network import ClassifierHead
from ..errors import SpaceError
from ..ops import make_block, make_cell_op
from ..space import Architecture, Cell, SearchSpace
from ..space.params import Chain, Choice, Repeat

Path = dict[str, list[int]]
PARAM_FREE_BLOCKS = frozenset({"identity", "skip", "zero", "none", "avgpool", "maxpool"})
SKIP = "skip"


@dataclass(frozen=True)
class ChoiceGroup:
    """One family of decisions sharing a candidate list.

    ``rows`` independent decisions (the edges of a cell, or one layer slot) each pick one of
    ``candidates``. ``param_free[i]`` is True for candidates without weights (skip, pooling,
    none), the ops differentiable NAS tends to collapse to. ``row_labels`` name the rows
    (``"node1<-0"``); ``kind`` is ``"cell"``, ``"layer"`` or ``"width"``; ``pick`` is the number
    of incoming edges a cell node keeps (0 = all of them, ops may be ``none``).
    """

    name: str
    kind: str
    candidates: tuple[str, ...]
    param_free: tuple[bool, ...]
    row_labels: tuple[str, ...]
    pick: int = 0
    zero: tuple[bool, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.row_labels)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle over axis 1 (any number of spatial axes)."""
    b, c = x.shape[:2]
    return x.reshape(b, groups, c // groups, *x.shape[2:]).transpose(1, 2).reshape(b, c, *x.shape[2:])


class MixedOp(nn.Module):
    """Candidates of one decision; output = sum of ``w[i] * op_i(x)`` over the active ``i``.

    ``partial`` > 1 is PC-DARTS's partial channel connection: only ``1/partial`` of the
    channels go through the candidates, the rest bypass them (max-pooled when strided) and
    the result is channel-shuffled. Candidates are built at ``c // partial`` channels then.
    """

    def __init__(self, ops: Sequence[nn.Module], partial: int = 1, stride: int = 1, dim: int = 2) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.partial = int(partial)
        pool = nn.MaxPool1d if dim == 1 else nn.MaxPool2d
        self.bypass = pool(2, 2, ceil_mode=True) if stride > 1 and self.partial > 1 else nn.Identity()

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None, active: Sequence[int] | None = None) -> torch.Tensor:
        if self.partial > 1:
            k = x.shape[1] // self.partial
            y = self._mix(x[:, :k], w, active)
            return channel_shuffle(torch.cat([y, self.bypass(x[:, k:])], dim=1), self.partial)
        return self._mix(x, w, active)

    def _mix(self, x: torch.Tensor, w: torch.Tensor | None, active: Sequence[int] | None) -> torch.Tensor:
        idx = range(len(self.ops)) if active is None else active
        out: torch.Tensor | None = None
        for i in idx:
            y = self.ops[i](x)
            if w is not None:
                y = w[i] * y
            out = y if out is None else out + y
        if out is None:
            raise SpaceError("a mixed op was run with no active candidate")
        return out


class MixedCell(nn.Module):
    """One cell instance with every possible edge (ops on edges) as a :class:`MixedOp`."""

    def __init__(self, cell: Cell, c: int, dim: int, reduction: bool, partial: int) -> None:
        super().__init__()
        self.n_in, self.nodes, self.output = cell.cell_inputs, cell.nodes, cell.output
        self.edges: list[tuple[int, int]] = [(j, i) for j in range(cell.nodes) for i in range(cell.cell_inputs + j)]
        self.mixed = nn.ModuleList()
        for j, i in self.edges:
            stride = 2 if reduction and i < self.n_in else 1
            cp = c // partial if partial > 1 else c
            ops = [make_cell_op(name, cp, stride=stride, dim=dim) for name in cell.ops]
            self.mixed.append(MixedOp(ops, partial, stride, dim))
        self.out_channels = c * cell.nodes if cell.output == "concat" else c

    def forward(self, xs: Sequence[torch.Tensor], w: torch.Tensor | None, active: Sequence[Sequence[int]] | None,
                edge_w: torch.Tensor | None) -> torch.Tensor:
        states = list(xs)
        row = 0
        read: set[int] = set()
        for j in range(self.nodes):
            node: torch.Tensor | None = None
            for i in range(self.n_in + j):
                act = None if active is None else active[row]
                if act is not None and len(act) == 0:  # edge off
                    row += 1
                    continue
                y = self.mixed[row](states[i], None if w is None else w[row], act)
                if edge_w is not None:
                    y = edge_w[row] * y
                node = y if node is None else node + y
                read.add(i)
                row += 1
            if node is None:
                raise SpaceError(f"cell node {j} has no active input edge")
            states.append(node)
        nodes = states[self.n_in:]
        if self.output == "concat":
            return torch.cat(nodes, dim=1)
        if self.output == "last" or active is None:
            # weighted mode: a node's leaf status is not decided yet; DARTS-style 'leaves'
            # supernets read the sum of all nodes, paths read the real leaves
            return nodes[-1] if self.output == "last" else torch.stack(nodes).sum(0)
        leaves = [n for k, n in enumerate(nodes) if self.n_in + k not in read] or [nodes[-1]]
        return torch.stack(leaves).sum(0)


class ChoiceSupernet(nn.Module):
    """A supernet for a cells- or macro-family space (see the module docstring)."""

    def __init__(self, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int, *,
                 partial_channels: int = 1, base: Architecture | Mapping[str, Any] | None = None,
                 seed: int | None = 0) -> None:
        super().__init__()
        self.space = space
        self.family = model_family(space)
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) not in (2, 3):
            raise SpaceError(f"supernets need (C, L) or (C, H, W) inputs, not {self.input_shape}")
        self.dim = len(self.input_shape) - 1
        self.num_classes = int(num_classes)
        self.partial = int(partial_channels)
        if self.partial < 1:
            raise SpaceError(f"partial_channels must be >= 1, not {partial_channels}")
        self.base = self._base(base)
        self.groups: list[ChoiceGroup] = []
        self._path: Path | None = None
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            if self.family == "cells":
                self._build_cells()
            elif self.family == "macro":
                if self.partial > 1:
                    raise SpaceError("partial channel connections (PC-DARTS) need a cells-family space")
                self._build_macro()
            else:
                raise SpaceError(f"supernets cover the cells and macro families, not {self.family!r}")
        self.group_index = {g.name: g for g in self.groups}

    # -- construction ------------------------------------------------------------------
    def _base(self, base: Architecture | Mapping[str, Any] | None) -> Architecture:
        if isinstance(base, Architecture):
            return base
        if base is not None:
            return self.space.make(base)
        arch = self.space.from_genotype([0] * len(self.space.dims))
        return arch if arch is not None else self.space.sample(np.random.default_rng(0))

    def _build_cells(self) -> None:
        model = self.space.model
        cells, normal_name, reduce_name, reduction = resolve_cells(self.space, model)
        used = [normal_name] + ([reduce_name] if reduce_name and reduce_name != normal_name else [])
        for nm in used:
            cell = cells[nm]
            if cell.op_on != "edge":
                raise SpaceError(f"cell {nm!r}: supernets need ops on edges (op_on: edge), not on nodes")
            labels = tuple(f"node{j}<-{i}" for j in range(cell.nodes) for i in range(cell.cell_inputs + j))
            free = tuple(self._cell_op_free(op, cell) for op in cell.ops)
            self.groups.append(ChoiceGroup(nm, "cell", tuple(cell.ops), free, labels,
                                           pick=0 if cell.inputs == "all" else int(cell.inputs),
                                           zero=tuple(op in cell.zero for op in cell.ops)))
        self.cells_used = {"normal": normal_name, "reduce": reduce_name or normal_name}
        c, plan = cell_plan(model)
        self.stem = make_block("conv", self.input_shape[0], c, stride=1, dim=self.dim, kernel=3)
        self.two_input = cells[normal_name].cell_inputs == 2
        self.body = nn.ModuleList()
        self.pre0, self.pre1, self.post = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.body_kind: list[str] = []   # "resnet" or the group name, per body module
        c_pp, c_p, reduced_prev = c, c, False
        prev = c
        for kind, w in plan:
            if kind == "reduce" and reduction == "resnet":
                if self.two_input:
                    raise SpaceError("two-input (DARTS) cells need reduction: cell")
                self.body.append(make_block("resnet_basic", prev, w, stride=2, dim=self.dim))
                self.body_kind.append("resnet")
                self.pre0.append(nn.Identity())
                self.pre1.append(nn.Identity())
                self.post.append(nn.Identity())
                prev = w
                continue
            name = self.cells_used[kind]
            cell = cells[name]
            mc = MixedCell(cell, w, self.dim, reduction=(kind == "reduce"), partial=self.partial)
            self.body.append(mc)
            self.body_kind.append(name)
            if self.two_input:
                self.pre0.append(make_block("conv", c_pp, w, stride=2 if reduced_prev else 1, dim=self.dim, kernel=1))
                self.pre1.append(make_block("conv", c_p, w, stride=1, dim=self.dim, kernel=1))
                self.post.append(nn.Identity())
                c_pp, c_p, reduced_prev = c_p, mc.out_channels, kind == "reduce"
            else:
                self.pre0.append(make_block("conv", prev, w, stride=1, dim=self.dim, kernel=1) if prev != w else nn.Identity())
                self.pre1.append(nn.Identity())
                self.post.append(make_block("conv", mc.out_channels, w, stride=1, dim=self.dim, kernel=1)
                                 if mc.out_channels != w else nn.Identity())
                prev = w
        head_c = c_p if self.two_input else prev
        dropout = float(self.base.values.get("dropout", model.get("dropout", 0.0)))
        self.head = ClassifierHead(head_c, self.num_classes, dropout)

    def _cell_op_free(self, op: str, cell: Cell) -> bool:
        if op in cell.zero or op in cell.identity:
            return True
        return sum(p.numel() for p in make_cell_op(op, 4, stride=1, dim=self.dim).parameters()) == 0

    def _build_macro(self) -> None:
        model = self.space.model
        chains = [p for p in self.space.params if isinstance(p, Chain)]
        name = model.get("chain", chains[0].name if chains else None)
        chain = next((p for p in chains if p.name == name), None)
        if chain is None:
            raise SpaceError("a macro supernet needs a 'chain' parameter in the space")
        self.chain_name = chain.name
        strides = list(model.get("stage_strides") or [1] + [2] * (len(chain.stages) - 1))
        strides += [2] * (len(chain.stages) - len(strides))
        widths = model.get("widths")
        defaults = dict(model.get("block_defaults") or {})
        base_stages = self.base.values[chain.name]
        c = int(self.base.values.get("stem", model.get("stem_width", 16)))
        self.stem = make_block("conv", self.input_shape[0], c, stride=1, dim=self.dim, kernel=int(model.get("stem_kernel", 3)))
        self.layers = nn.ModuleList()
        self.layer_group: list[str] = []
        self.layer_stage: list[int] = []
        self.stage_plan: list[dict[str, Any]] = []
        for si, group in enumerate(chain.stages):
            params = {p.name: p for p in group.params}
            extra = set(params) - {"width", "layers"}
            if extra:
                raise SpaceError(f"macro supernet: stage {si} searches {sorted(extra)[0]!r}; supernets search "
                                 "per-layer blocks ('layers' repeat) and 'width' only")
            wp = params.get("width")
            if isinstance(wp, Choice):
                options = [int(o) for o in wp.options]
                wname = f"{chain.name}[{si}].width"
                self.groups.append(ChoiceGroup(wname, "width", tuple(str(o) for o in options),
                                               (False,) * len(options), ("width",)))
            elif wp is not None:
                raise SpaceError(f"macro supernet: stage {si} width must be a choice")
            else:
                fixed = base_stages[si].get("width", widths[si] if widths and si < len(widths) else None)
                if fixed is None:
                    raise SpaceError(f"macro stage {si} has no width (add a 'width' parameter or model.widths)")
                options, wname = [int(fixed)], None
            rp = params.get("layers")
            if not isinstance(rp, Repeat):
                raise SpaceError(f"macro supernet: stage {si} needs a 'layers' repeat of block choices")
            configs = list(rp.body.enumerate())
            if not configs or not all("block" in cfg for cfg in configs):
                raise SpaceError(f"macro supernet: stage {si} layers need a 'block' choice")
            wmax = max(options)
            self.stage_plan.append({"width_group": wname, "widths": options, "configs": configs, "min": rp.min_depth})
            for li in range(rp.max_depth):
                stride = strides[si] if li == 0 else 1
                optional = li >= rp.min_depth
                if optional and li == 0 and (stride != 1 or c != wmax or len(options) > 1):
                    raise SpaceError(f"macro supernet: stage {si} may have no layers but changes shape; "
                                     "use min_depth >= 1")
                ops: list[nn.Module] = []
                names: list[str] = []
                free: list[bool] = []
                for cfg in configs:
                    opts = {**defaults, **{k: v for k, v in cfg.items() if k != "block"}}
                    ops.append(make_block(str(cfg["block"]), c, wmax, stride=stride, dim=self.dim, **opts))
                    names.append(_config_name(cfg))
                    free.append(str(cfg["block"]) in PARAM_FREE_BLOCKS)
                if optional:
                    ops.append(nn.Identity())
                    names.append(SKIP)
                    free.append(True)
                gname = f"{chain.name}[{si}].layers[{li}]"
                self.groups.append(ChoiceGroup(gname, "layer", tuple(names), tuple(free), ("block",)))
                self.layers.append(MixedOp(ops, 1, stride, self.dim))
                self.layer_group.append(gname)
                self.layer_stage.append(si)
                c = wmax
        dropout = float(self.base.values.get("dropout", model.get("dropout", 0.0)))
        self.head = ClassifierHead(c, self.num_classes, dropout)

    # -- running -----------------------------------------------------------------------
    def set_path(self, path: Mapping[str, Sequence[int]] | None) -> None:
        """Run one candidate per row from now on (``None``: back to needing ``weights``)."""
        self._path = None if path is None else {k: [int(i) for i in v] for k, v in path.items()}

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None,
                active: Mapping[str, Sequence[Sequence[int]]] | None = None,
                edge_weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        if weights is None:
            if self._path is None:
                raise SpaceError("supernet: pass weights or call set_path() first")
            active = {k: [[i] if i >= 0 else [] for i in v] for k, v in self._path.items()}
        x = self.stem(x)
        if self.family == "cells":
            x = self._forward_cells(x, weights, active, edge_weights)
        else:
            x = self._forward_macro(x, weights, active)
        return self.head(x)

    def _forward_cells(self, x: torch.Tensor, weights: Any, active: Any, edge_weights: Any) -> torch.Tensor:
        s0 = s1 = x
        for kind, body, p0, p1, post in zip(self.body_kind, self.body, self.pre0, self.pre1, self.post):
            if kind == "resnet":
                s1 = body(s1)
                continue
            w = None if weights is None else weights[kind]
            act = None if active is None else active.get(kind)
            ew = None if edge_weights is None else edge_weights.get(kind)
            if self.two_input:
                s0, s1 = s1, body([p0(s0), p1(s1)], w, act, ew)
            else:
                s1 = post(body([p0(s1)], w, act, ew))
        return s1

    def _forward_macro(self, x: torch.Tensor, weights: Any, active: Any) -> torch.Tensor:
        masks: dict[int, torch.Tensor] = {}
        for si, plan in enumerate(self.stage_plan):
            g = plan["width_group"]
            if g is None:
                continue
            opts = plan["widths"]
            eye = torch.zeros(len(opts), max(opts), dtype=x.dtype, device=x.device)
            for k, wdt in enumerate(opts):
                eye[k, :wdt] = 1.0
            if weights is not None:
                mask = weights[g][0].to(x.dtype) @ eye
            else:
                mask = eye[active[g][0][0]]
            masks[si] = mask.reshape(1, -1, *([1] * self.dim))
        for gname, si, layer in zip(self.layer_group, self.layer_stage, self.layers):
            act = None if active is None else active.get(gname, [None])[0]
            w = None if weights is None else weights[gname][0]
            x = layer(x, w, act)
            if si in masks:
                x = x * masks[si]
        return x

    # -- paths and architectures ----------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, int]]:
        """(rows, candidates) of every group: the shapes of architecture-weight tensors."""
        return {g.name: (g.rows, len(g.candidates)) for g in self.groups}

    def mixed_ops(self) -> Iterator[tuple[str, int, MixedOp]]:
        """Every :class:`MixedOp` with its group name and row (cells repeat rows per instance)."""
        if self.family == "cells":
            for kind, body in zip(self.body_kind, self.body):
                if isinstance(body, MixedCell):
                    for row, op in enumerate(body.mixed):
                        yield kind, row, op
        else:
            for gname, layer in zip(self.layer_group, self.layers):
                yield gname, 0, layer

    def sample_path(self, rng: np.random.Generator) -> Path:
        """A uniformly sampled architecture of the space, as a path (SPOS)."""
        return self.path_of(self.space.sample(rng))

    def path_of(self, arch: Architecture | Mapping[str, Any]) -> Path:
        """The path that runs ``arch`` (an architecture of the space) in this supernet."""
        values = arch.values if isinstance(arch, Architecture) else arch
        path: Path = {}
        if self.family == "cells":
            for g in self.groups:
                row_of = {lab: k for k, lab in enumerate(g.row_labels)}
                idx = [-1] * g.rows
                for j, node in enumerate(values[g.name]):
                    for i, op in zip(node["inputs"], node["ops"]):
                        idx[row_of[f"node{j}<-{int(i)}"]] = g.candidates.index(str(op))
                path[g.name] = idx
            return path
        stages = values[self.chain_name]
        for si, plan in enumerate(self.stage_plan):
            stage = stages[si]
            if plan["width_group"] is not None:
                path[plan["width_group"]] = [plan["widths"].index(int(stage["width"]))]
            layers = list(stage["layers"])
            configs = [_plain(c) for c in plan["configs"]]
            for li in range(self._max_depth(si)):
                g = self.group_index[f"{self.chain_name}[{si}].layers[{li}]"]
                path[g.name] = [configs.index(_plain(layers[li])) if li < len(layers) else g.candidates.index(SKIP)]
        return path

    def _max_depth(self, si: int) -> int:
        return sum(1 for s in self.layer_stage if s == si)

    def arch_of(self, path: Mapping[str, Sequence[int]]) -> Architecture:
        """The architecture of the space that ``path`` runs (others from ``base``); raises
        :class:`SpaceError` when the space rejects it (e.g. a cell of only skips)."""
        values = self.base.to_dict()
        if self.family == "cells":
            for g in self.groups:
                idx = list(path[g.name])
                nodes, row = [], 0
                n_in = next(p for p in self.space.params if isinstance(p, Cell) and p.name == g.name).cell_inputs
                for j in range(len(values[g.name])):
                    ins, ops = [], []
                    for i in range(n_in + j):
                        if idx[row] >= 0:
                            ins.append(i)
                            ops.append(g.candidates[idx[row]])
                        row += 1
                    nodes.append({"inputs": ins, "ops": ops})
                values[g.name] = nodes
            return self.space.make(values)
        stages = values[self.chain_name]
        for si, plan in enumerate(self.stage_plan):
            if plan["width_group"] is not None:
                stages[si]["width"] = plan["widths"][path[plan["width_group"]][0]]
            layers = []
            for li in range(self._max_depth(si)):
                g = self.group_index[f"{self.chain_name}[{si}].layers[{li}]"]
                k = path[g.name][0]
                if g.candidates[k] != SKIP:
                    layers.append(copy.deepcopy(plan["configs"][k]))
            stages[si]["layers"] = layers
        return self.space.make(values)

    def path_from_weights(self, weights: Mapping[str, torch.Tensor], edge_weights: Mapping[str, torch.Tensor] | None = None,
                          exclude_zero: bool = True) -> Path:
        """The discrete path of architecture weights, DARTS-style: per row the strongest
        candidate; cells whose nodes keep ``k`` inputs keep the ``k`` incoming edges whose best
        non-``none`` candidate is strongest (times the edge weight, PC-DARTS)."""
        path: Path = {}
        for g in self.groups:
            w = weights[g.name].detach().float().cpu()
            if g.kind != "cell" or g.pick == 0:
                path[g.name] = [int(r.argmax()) for r in w]
                continue
            masked = w.clone()
            if exclude_zero and not all(g.zero):
                masked[:, [k for k, z in enumerate(g.zero) if z]] = -float("inf")
            best, arg = masked.max(dim=1)
            if edge_weights is not None and g.name in edge_weights:
                best = best * edge_weights[g.name].detach().float().cpu()
            idx = [-1] * g.rows
            row = 0
            n_in = len([lab for lab in g.row_labels if lab.startswith("node0<-")])
            for j in range(len({lab.split("<-")[0] for lab in g.row_labels})):
                rows = list(range(row, row + n_in + j))
                keep = sorted(rows, key=lambda r: -float(best[r]))[: g.pick]
                for r in keep:
                    idx[r] = int(arg[r])
                row += n_in + j
            path[g.name] = idx
        return path


def _plain(cfg: Mapping[str, Any]) -> str:
    return json.dumps({k: cfg[k] for k in sorted(cfg)}, default=str)


def _config_name(cfg: Mapping[str, Any]) -> str:
    opts = ",".join(f"{k}={cfg[k]}" for k in sorted(cfg) if k != "block")
    return f"{cfg['block']}({opts})" if opts else str(cfg["block"])


def build_supernet(space: SearchSpace, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> ChoiceSupernet:
    """A :class:`ChoiceSupernet` for ``space`` (keyword options as the class)."""
    return ChoiceSupernet(space, input_shape, num_classes, **kwargs)


def uniform_weights(supernet: ChoiceSupernet) -> dict[str, torch.Tensor]:
    """Equal weights on every candidate (a probe or a starting point)."""
    return {g.name: torch.full((g.rows, len(g.candidates)), 1.0 / len(g.candidates)) for g in supernet.groups}


__all__ = ["ChoiceGroup", "ChoiceSupernet", "MixedCell", "MixedOp", "Path", "build_supernet",
           "channel_shuffle", "uniform_weights"]
