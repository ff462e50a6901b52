"""Cell networks: stacked cells with reductions (NAS-Bench-201 and DARTS style).

The space holds one ``cell`` parameter (used for every normal cell) or two (``normal`` and
``reduce``, DARTS). Node ``j`` of a cell reads inputs numbered ``0 .. cell_inputs-1`` (the
cell inputs) and ``cell_inputs + k`` (node ``k``); with ops on edges a node is the sum of
``op_i(input_i)``, with the op on the node it is ``op(sum(inputs))``. The cell output is the
last node (``last``), the sum of nodes no other node reads (``leaves``) or their
concatenation along channels (``concat``, DARTS).

``model:`` settings: ``cells`` (``{normal: NAME, reduce: NAME}``; default the first cell
parameter for both), ``stem_width`` (16), ``stages`` (3), ``cells_per_stage`` (NB201: 5;
default 1), ``reduction`` (``resnet``: a ResNet basic block of stride 2 between stages, as
NAS-Bench-201 does; ``cell``: a reduce cell, as DARTS does; default ``cell`` when a reduce
parameter exists).

Single-input cells chain as units (one profile unit per cell); two-input (DARTS) cells
read the two previous outputs, so such a network is one unit between stem and head.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import SpaceError
from ..ops import make_block, make_cell_op
from ..space import Cell, SearchSpace
from .network import ClassifierHead, UnitNetwork, unit_key


class CellModule(nn.Module):
    """One cell: a DAG of ops over ``cell.cell_inputs`` inputs of ``c`` channels each."""

    def __init__(self, cell: Cell, nodes: Sequence[Mapping[str, Any]], c: int, dim: int, reduction: bool) -> None:
        super().__init__()
        self.n_in = cell.cell_inputs
        self.output = cell.output
        self.reduction = reduction
        self.inputs: list[tuple[int, ...]] = [tuple(int(i) for i in n["inputs"]) for n in nodes]
        self.on_edge = cell.op_on == "edge"
        self.ops = nn.ModuleList()
        zero = cell.zero
        self.live: list[list[bool]] = []
        for node in nodes:
            names = list(node["ops"]) if self.on_edge else [node["op"]]
            row = nn.ModuleList()
            flags = []
            for j, name in enumerate(names):
                src = self.inputs[len(self.ops)][j] if self.on_edge else 0
                stride = 2 if reduction and self.on_edge and src < self.n_in else 1
                row.append(make_cell_op(str(name), c, stride=stride, dim=dim))
                flags.append(str(name) not in zero)
            self.ops.append(row)
            self.live.append(flags)
        read = {i for ins in self.inputs for i in ins}
        n = len(nodes)
        if self.output == "last":
            self.out_nodes = [n - 1]
        elif self.output == "concat":
            self.out_nodes = list(range(n))
        else:  # leaves
            self.out_nodes = [k for k in range(n) if k + self.n_in not in read] or [n - 1]
        self.out_channels = c * len(self.out_nodes) if self.output == "concat" else c
        if reduction and not self.on_edge:
            # ops on nodes cannot carry the stride: reduce the cell inputs first
            self.pre_reduce = nn.ModuleList([make_block("avgpool", c, c, stride=2, dim=dim) for _ in range(self.n_in)])
        else:
            self.pre_reduce = nn.ModuleList()

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        states = list(xs)
        if len(self.pre_reduce):
            states = [p(s) for p, s in zip(self.pre_reduce, states)]
        for ins, ops, live in zip(self.inputs, self.ops, self.live):
            if self.on_edge:
                terms = [op(states[i]) for i, op, keep in zip(ins, ops, live) if keep]
                if terms:
                    node = terms[0]
                    for t in terms[1:]:
                        node = node + t
                else:
                    node = ops[0](states[ins[0]])  # every edge is "none": zeros of the right shape
            else:
                total = states[ins[0]]
                for i in ins[1:]:
                    total = total + states[i]
                node = ops[0](total)
            states.append(node)
        outs = [states[self.n_in + k] for k in self.out_nodes]
        if self.output == "concat":
            return torch.cat(outs, dim=1)
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        return total


class TwoInputCellStack(nn.Module):
    """DARTS-style stack: each cell reads the outputs of the two cells before it."""

    def __init__(self, cells: Sequence[nn.Module], preprocess: Sequence[tuple[nn.Module, nn.Module]]) -> None:
        super().__init__()
        self.cells = nn.ModuleList(cells)
        self.pre0 = nn.ModuleList([p[0] for p in preprocess])
        self.pre1 = nn.ModuleList([p[1] for p in preprocess])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = x
        for cell, p0, p1 in zip(self.cells, self.pre0, self.pre1):
            s0, s1 = s1, cell(p0(s0), p1(s1))
        return s1


def resolve_cells(space: SearchSpace, model: Mapping[str, Any]) -> tuple[dict[str, Cell], str, str | None, str]:
    """The space's cell parameters by name, the normal and reduce cell names (reduce None when
    the normal cell also reduces) and the reduction mode (``cell`` or ``resnet``)."""
    cell_params = {p.name: p for p in space.params if isinstance(p, Cell)}
    if not cell_params:
        raise SpaceError("a cells model needs at least one 'cell' parameter in the space")
    names = dict(model.get("cells") or {})
    first = next(iter(cell_params))
    normal_name = names.get("normal", first)
    reduce_name = names.get("reduce", "reduce" if "reduce" in cell_params and normal_name != "reduce" else None)
    for nm in (normal_name, reduce_name):
        if nm is not None and nm not in cell_params:
            raise SpaceError(f"cells model: no cell parameter named {nm!r}")
    reduction = str(model.get("reduction", "cell" if reduce_name else "resnet"))
    if reduction not in ("cell", "resnet"):
        raise SpaceError(f"cells model: reduction must be 'cell' or 'resnet', not {reduction!r}")
    return cell_params, normal_name, reduce_name, reduction


def cell_plan(model: Mapping[str, Any]) -> tuple[int, list[tuple[str, int]]]:
    """The stem width and the (kind, width) sequence of cells: ``normal`` cells per stage, a
    ``reduce`` step (doubling the width) between stages."""
    c = int(model.get("stem_width", 16))
    plan: list[tuple[str, int]] = []
    width = c
    for s in range(int(model.get("stages", 3))):
        if s > 0:
            width *= 2
            plan.append(("reduce", width))
        plan += [("normal", width)] * int(model.get("cells_per_stage", 1))
    return c, plan


def build_cells(space: SearchSpace, values: Mapping[str, Any], model: Mapping[str, Any],
                input_shape: tuple[int, ...], num_classes: int, dropout: float) -> UnitNetwork:
    """Build a cell network for inputs of ``input_shape`` = (C, L) or (C, H, W)."""
    if len(input_shape) not in (2, 3):
        raise SpaceError(f"cell networks need (C, L) or (C, H, W) inputs, not {tuple(input_shape)}")
    dim = len(input_shape) - 1
    cell_params, normal_name, reduce_name, reduction = resolve_cells(space, model)
    c, plan = cell_plan(model)
    normal = cell_params[normal_name]
    reduce_cell = cell_params[reduce_name] if reduce_name else normal

    stem_cfg = {"kernel": 3}
    stem = ("stem:conv|" + unit_key("", {"c_in": input_shape[0], "c_out": c, "kernel": 3}),
            make_block("conv", input_shape[0], c, stride=1, dim=dim, **stem_cfg))

    if normal.cell_inputs == 1 and reduce_cell.cell_inputs == 1:
        units = [stem]
        prev = c
        for kind, w in plan:
            if kind == "reduce" and reduction == "resnet":
                units.append((unit_key("resnet_basic", {"c_in": prev, "c_out": w, "stride": 2}),
                              make_block("resnet_basic", prev, w, stride=2, dim=dim)))
                prev = w
                continue
            cell = normal if kind == "normal" else reduce_cell
            key_values = values[cell.name]
            mods: list[nn.Module] = []
            if prev != w:
                mods.append(make_block("conv", prev, w, stride=1, dim=dim, kernel=1))
            body = CellModule(cell, key_values, w, dim, reduction=(kind == "reduce"))
            mods.append(body)
            if body.out_channels != w:
                mods.append(make_block("conv", body.out_channels, w, stride=1, dim=dim, kernel=1))
            units.append((unit_key(f"cell:{kind}", {"c": w, "in_c": prev, "genotype": _genotype_text(key_values)}),
                          nn.Sequential(*mods) if len(mods) > 1 else body))
            prev = w
        units.append((unit_key("head", {"c": prev, "classes": num_classes}), ClassifierHead(prev, num_classes, dropout)))
        return UnitNetwork(units, input_shape, {"family": "cells", "dim": dim})

    if normal.cell_inputs != 2 or reduce_cell.cell_inputs != 2:
        raise SpaceError("cells model: cells must all take 1 input or all take 2 inputs")
    cells: list[nn.Module] = []
    pre: list[tuple[nn.Module, nn.Module]] = []
    c_pp, c_p = c, c          # channels of the two previous outputs
    reduced_prev = False      # whether the previous cell halved the spatial size
    for kind, w in plan:
        cell = reduce_cell if kind == "reduce" else normal
        body = CellModule(cell, values[cell.name], w, dim, reduction=(kind == "reduce"))
        p0 = make_block("conv", c_pp, w, stride=2 if reduced_prev else 1, dim=dim, kernel=1)
        p1 = make_block("conv", c_p, w, stride=1, dim=dim, kernel=1)
        cells.append(body)
        pre.append((p0, p1))
        c_pp, c_p = c_p, body.out_channels
        reduced_prev = kind == "reduce"
    genotype = {n: _genotype_text(values[n]) for n in {normal.name, reduce_cell.name}}
    units = [stem, (unit_key("cells:two-input", {"c": c, "plan": plan, "genotype": genotype}),
                    TwoInputCellStack(cells, pre)),
             (unit_key("head", {"c": c_p, "classes": num_classes}), ClassifierHead(c_p, num_classes, dropout))]
    return UnitNetwork(units, input_shape, {"family": "cells", "dim": dim})


def _genotype_text(nodes: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for n in nodes:
        ops = n.get("ops", (n.get("op"),))
        parts.append("+".join(f"{o}<{i}" for o, i in zip(ops, n["inputs"])))
    return ";".join(parts)
