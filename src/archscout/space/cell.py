"""Cell DAGs: nodes that choose their inputs and operations.

Covers the three common styles:

* NAS-Bench-Graph: one input per node, the op sits on the node, leaves feed the output
  (``inputs=1, op_on="node", output="leaves"``);
* DARTS: two inputs per node from two cell inputs and earlier nodes, one op per edge,
  all nodes concatenated (``cell_inputs=2, inputs=2, op_on="edge", output="concat"``);
* NAS-Bench-201: every earlier node feeds every node, one op per edge, the last node is
  the output (``inputs="all", op_on="edge", output="last"``).

Equivalent encodings are collapsed by computing each node's *expression* (what it
computes from the cell inputs): identity ops vanish, zero ops prune, sums are sorted.
"""
from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import SpaceError
from .params import MAX_DECISIONS, MAX_OPTIONS, Decoded, Dim, Fragment, Param, _check_name

OUTPUT_MODES = ("leaves", "last", "concat")

# Named equivalence rules: fn(cell, nodes) -> canonical JSON-able value. "expression"
# (the default) is the semantic rule below; benchmarks whose published identity differs
# register their own (e.g. "nasbench-graph", which reproduces that benchmark's hashing).
Equivalence = Callable[["Cell", Sequence[Mapping[str, Any]]], Any]
Representative = Callable[["Cell", list[dict[str, Any]]], list[dict[str, Any]]]
_EQUIVALENCES: dict[str, tuple[Equivalence | None, Representative | None]] = {"expression": (None, None)}
_LAZY_EQUIVALENCES = {"nasbench-graph": "archscout.evaluators.nasbench_graph"}


def register_equivalence(name: str, fn: Equivalence, representative: Representative | None = None) -> None:
    """Make ``fn`` available as ``Cell(..., equivalence=name)``.

    ``representative``, when given, rewrites a validated node list into the canonical
    member of its class, so every architecture is stored and encoded in one form.
    """
    _EQUIVALENCES[name] = (fn, representative)


def _resolve_equivalence(name: str) -> tuple[Equivalence | None, Representative | None]:
    if name not in _EQUIVALENCES and name in _LAZY_EQUIVALENCES:
        importlib.import_module(_LAZY_EQUIVALENCES[name])
    if name not in _EQUIVALENCES:
        known = sorted(set(_EQUIVALENCES) | set(_LAZY_EQUIVALENCES))
        raise SpaceError(f"unknown cell equivalence {name!r} (known: {', '.join(known)})")
    return _EQUIVALENCES[name]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_size(name: str, nodes: int, cell_inputs: int, inputs: int | str) -> None:
    """Refuse cells whose genotype or input-set tables would not fit in memory (a mistyped
    ``nodes: 1000000`` should be a one-line error, not an out-of-memory crash)."""
    edges = nodes * cell_inputs + nodes * (nodes - 1) // 2 if inputs == "all" else nodes * inputs
    if edges > MAX_DECISIONS:
        raise SpaceError(f"cell {name!r}: {nodes} nodes with {inputs} inputs each make {edges} edges "
                         f"(at most {MAX_DECISIONS:,})")
    if inputs == "all":
        return
    # Node j picks one of comb(cell_inputs + j, inputs) input sets; summed over the nodes
    # (hockey-stick identity) that is comb(cell_inputs + nodes, inputs + 1) - comb(cell_inputs, inputs + 1).
    top = cell_inputs + nodes
    too_many = inputs + 1 < top and top > MAX_OPTIONS  # comb(top, k) >= top for 0 < k < top
    if too_many or math.comb(top, inputs + 1) - math.comb(cell_inputs, inputs + 1) > MAX_OPTIONS:
        raise SpaceError(f"cell {name!r}: {nodes} nodes choosing {inputs} of their earlier inputs have more than "
                         f"{MAX_OPTIONS:,} input sets; use fewer nodes or inputs")


class Cell(Param):
    """A DAG cell of ``nodes`` computing nodes choosing inputs and operations.

    Value: a list with one dict per node, ``{"inputs": [...], "op": name}`` when ops sit
    on nodes, ``{"inputs": [...], "ops": [...]}`` when they sit on edges. Input index
    ``i < cell_inputs`` is a cell input; ``cell_inputs + j`` is computing node ``j``.
    Cells whose output involves no real operation (only identities) are rejected
    unless ``allow_degenerate``. ``equivalence`` names the rule that decides when two
    encodings are the same architecture (see ``register_equivalence``).
    """

    def __init__(
        self,
        name: str,
        nodes: int,
        ops: Sequence[str],
        inputs: int | str = 1,
        op_on: str = "node",
        cell_inputs: int = 1,
        identity_ops: Sequence[str] = ("skip", "identity", "skip_connect"),
        zero_ops: Sequence[str] = ("none", "zero"),
        output: str = "leaves",
        allow_degenerate: bool = False,
        equivalence: str = "expression",
    ) -> None:
        self.name = _check_name(name)
        if not _is_int(nodes) or nodes < 1:
            raise SpaceError(f"cell {name!r}: nodes must be a positive integer")
        if not _is_int(cell_inputs) or cell_inputs < 1:
            raise SpaceError(f"cell {name!r}: cell_inputs must be a positive integer")
        self.ops = [str(o) for o in ops]
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise SpaceError(f"cell {name!r}: ops must be a non-empty list of distinct names")
        if op_on not in ("node", "edge"):
            raise SpaceError(f"cell {name!r}: op_on must be 'node' or 'edge', not {op_on!r}")
        if output not in OUTPUT_MODES:
            raise SpaceError(f"cell {name!r}: output must be one of {OUTPUT_MODES}, not {output!r}")
        if inputs != "all" and (not _is_int(inputs) or not 1 <= inputs <= cell_inputs):
            raise SpaceError(f"cell {name!r}: inputs must be 'all' or an integer in 1..cell_inputs ({cell_inputs})")
        _check_size(name, nodes, cell_inputs, inputs)
        self.nodes, self.cell_inputs, self.inputs = nodes, cell_inputs, inputs
        self.op_on, self.output, self.allow_degenerate = op_on, output, allow_degenerate
        self.equivalence = equivalence
        self._equivalence_fn, self._representative = _resolve_equivalence(equivalence)
        self.identity = {o for o in self.ops if o in set(identity_ops)}
        self.zero = {o for o in self.ops if o in set(zero_ops)}
        # Per node: the allowed sorted input tuples.
        self._combos: list[list[tuple[int, ...]]] = []
        for j in range(nodes):
            m = cell_inputs + j
            if inputs == "all":
                self._combos.append([tuple(range(m))])
            else:
                self._combos.append(list(itertools.combinations(range(m), inputs)))
        self._combo_index = [{c: i for i, c in enumerate(cs)} for cs in self._combos]
        self._op_index = {o: i for i, o in enumerate(self.ops)}

    # -- genotype ---------------------------------------------------------------
    def _n_edges(self, j: int) -> int:
        return len(self._combos[j][0])

    def dims(self) -> list[Dim]:
        out: list[Dim] = []
        for j in range(self.nodes):
            if len(self._combos[j]) > 1:
                out.append(Dim(f"{self.name}[{j}].inputs", len(self._combos[j])))
            n_ops = 1 if self.op_on == "node" else self._n_edges(j)
            out += [Dim(f"{self.name}[{j}].op{'' if n_ops == 1 else k}", len(self.ops)) for k in range(n_ops)]
        return out

    def decode(self, genotype: Sequence[Any], pos: int) -> Decoded:
        start = pos
        nodes = []
        for j in range(self.nodes):
            if len(self._combos[j]) > 1:
                ins = self._combos[j][int(genotype[pos])]
                pos += 1
            else:
                ins = self._combos[j][0]
            if self.op_on == "node":
                nodes.append({"inputs": list(ins), "op": self.ops[int(genotype[pos])]})
                pos += 1
            else:
                k = len(ins)
                nodes.append({"inputs": list(ins), "ops": [self.ops[int(g)] for g in genotype[pos:pos + k]]})
                pos += k
        return {self.name: nodes}, pos, list(range(start, pos))

    def encode(self, fragment: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for j, node in enumerate(fragment[self.name]):
            if len(self._combos[j]) > 1:
                out.append(self._combo_index[j][tuple(node["inputs"])])
            if self.op_on == "node":
                out.append(self._op_index[node["op"]])
            else:
                out += [self._op_index[o] for o in node["ops"]]
        return out

    # -- values -----------------------------------------------------------------
    def validate(self, values: Mapping[str, Any]) -> Fragment:
        if self.name not in values:
            raise SpaceError(f"missing parameter {self.name!r}")
        raw = values[self.name]
        if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != self.nodes:
            raise SpaceError(f"cell {self.name!r} must be a list of {self.nodes} nodes")
        nodes = []
        for j, node in enumerate(raw):
            where = f"cell {self.name!r} node {j}"
            if not isinstance(node, Mapping):
                raise SpaceError(f"{where} must be a mapping with 'inputs' and '{'op' if self.op_on == 'node' else 'ops'}'")
            ins = node.get("inputs")
            if isinstance(ins, int) and not isinstance(ins, bool):
                ins = [ins]
            if not isinstance(ins, Sequence) or isinstance(ins, str) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ins):
                raise SpaceError(f"{where}: inputs must be a list of integers")
            if self.op_on == "node":
                op = node.get("op")
                if not isinstance(op, str) or op not in self._op_index:
                    raise SpaceError(f"{where}: op {op!r} is not one of {self.ops}")
                key = tuple(sorted(ins))
                if key not in self._combo_index[j]:
                    raise SpaceError(f"{where}: inputs {list(ins)} are not allowed (choose {self._describe_inputs(j)})")
                nodes.append({"inputs": list(key), "op": op})
            else:
                ops = node.get("ops")
                if not isinstance(ops, Sequence) or isinstance(ops, str) or len(ops) != len(ins):
                    raise SpaceError(f"{where}: ops must be a list with one op per input")
                for o in ops:
                    if not isinstance(o, str) or o not in self._op_index:
                        raise SpaceError(f"{where}: op {o!r} is not one of {self.ops}")
                pairs = sorted(zip(ins, ops))
                key = tuple(i for i, _ in pairs)
                if key not in self._combo_index[j]:
                    raise SpaceError(f"{where}: inputs {list(ins)} are not allowed (choose {self._describe_inputs(j)})")
                nodes.append({"inputs": list(key), "ops": [o for _, o in pairs]})
        if extra := (set(values) & {f"{self.name}.{k}" for k in ("inputs", "op")}):
            raise SpaceError(f"unknown parameter {sorted(extra)[0]!r}")
        frag = {self.name: nodes}
        if not self.allow_degenerate and self.is_degenerate(frag):
            raise SpaceError(f"cell {self.name!r} applies no operation between its inputs and output")
        if self._representative is not None:
            frag = {self.name: self._apply_rule(self._representative, nodes)}
        return frag

    def _apply_rule(self, rule: Callable[["Cell", Any], Any], nodes: Any) -> Any:
        """Run a registered equivalence rule; a rule written for another cell shape (e.g.
        ``nasbench-graph`` on a 3-node cell) rejects the architecture with a SpaceError."""
        try:
            return rule(self, nodes)
        except (LookupError, ValueError, TypeError, NameError) as exc:
            raise SpaceError(f"cell {self.name!r}: equivalence {self.equivalence!r} cannot handle these nodes "
                             f"({type(exc).__name__})") from None

    def _describe_inputs(self, j: int) -> str:
        m = self.cell_inputs + j
        return "all earlier nodes" if self.inputs == "all" else f"{self.inputs} distinct of 0..{m - 1}"

    # -- canonical form -----------------------------------------------------------
    def _expressions(self, nodes: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[bool]]:
        """Per computing node: its expression and whether it applies a real op."""
        exprs = [f"in{i}" for i in range(self.cell_inputs)]
        real = [False] * self.cell_inputs
        for node in nodes:
            ins = node["inputs"]
            if self.op_on == "node":
                terms = [exprs[i] for i in ins if exprs[i] != "0"]
                has = any(real[i] for i in ins if exprs[i] != "0")
                agg = "0" if not terms else terms[0] if len(terms) == 1 else "sum(" + ",".join(sorted(terms)) + ")"
                op = node["op"]
                if op in self.zero or agg == "0":
                    e, r = "0", False
                elif op in self.identity:
                    e, r = agg, has
                else:
                    e, r = f"{op}({agg})", True
            else:
                terms, has = [], False
                for i, op in zip(ins, node["ops"]):
                    if op in self.zero or exprs[i] == "0":
                        continue
                    if op in self.identity:
                        terms.append(exprs[i])
                        has = has or real[i]
                    else:
                        terms.append(f"{op}({exprs[i]})")
                        has = True
                e = "0" if not terms else terms[0] if len(terms) == 1 else "sum(" + ",".join(sorted(terms)) + ")"
                r = has
            exprs.append(e)
            real.append(r)
        return exprs[self.cell_inputs:], real[self.cell_inputs:]

    def output_nodes(self, nodes: Sequence[Mapping[str, Any]]) -> list[int]:
        """Indices (0-based, computing nodes) whose results form the cell output."""
        if self.output == "last":
            return [self.nodes - 1]
        if self.output == "concat":
            return list(range(self.nodes))
        used = {i - self.cell_inputs for node in nodes for i in node["inputs"]}
        return [j for j in range(self.nodes) if j not in used]

    def canonical(self, fragment: Mapping[str, Any]) -> Any:
        nodes = fragment[self.name]
        if self._equivalence_fn is not None:
            return self._apply_rule(self._equivalence_fn, nodes)
        exprs, _ = self._expressions(nodes)
        outs = sorted(exprs[j] for j in self.output_nodes(nodes) if exprs[j] != "0")
        return outs

    def is_degenerate(self, fragment: Mapping[str, Any]) -> bool:
        """True when no real operation lies on any path to the output."""
        nodes = fragment[self.name]
        exprs, real = self._expressions(nodes)
        return not any(real[j] and exprs[j] != "0" for j in self.output_nodes(nodes))

    # -- paths (for path encodings) ---------------------------------------------------
    def paths(self, fragment: Mapping[str, Any]) -> list[tuple[str, ...]]:
        """Op sequences along every input-to-output path (identities dropped, zeros cut)."""
        nodes = fragment[self.name]
        node_paths: list[list[tuple[str, ...]]] = [[()] for _ in range(self.cell_inputs)]
        for node in nodes:
            mine: list[tuple[str, ...]] = []
            ops = [node["op"]] * len(node["inputs"]) if self.op_on == "node" else node["ops"]
            for i, op in zip(node["inputs"], ops):
                if op in self.zero:
                    continue
                step = () if op in self.identity else (op,)
                mine += [p + step for p in node_paths[i]]
            node_paths.append(mine)
        out: list[tuple[str, ...]] = []
        for j in self.output_nodes(nodes):
            out += node_paths[self.cell_inputs + j]
        return out

    # -- sizes ----------------------------------------------------------------------
    def size(self) -> float:
        total = 1
        for j in range(self.nodes):
            n_ops = 1 if self.op_on == "node" else self._n_edges(j)
            total *= len(self._combos[j]) * len(self.ops) ** n_ops
        return total

    def enumerate(self) -> Iterator[Fragment]:
        per_node = []
        for j in range(self.nodes):
            n_ops = 1 if self.op_on == "node" else self._n_edges(j)
            options = []
            for ins in self._combos[j]:
                for ops in itertools.product(self.ops, repeat=n_ops):
                    if self.op_on == "node":
                        options.append({"inputs": list(ins), "op": ops[0]})
                    else:
                        options.append({"inputs": list(ins), "ops": list(ops)})
            per_node.append(options)
        for nodes in itertools.product(*per_node):
            frag = {self.name: list(nodes)}
            if self.allow_degenerate or not self.is_degenerate(frag):
                yield frag

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": "cell", "nodes": self.nodes, "ops": list(self.ops),
            "inputs": self.inputs, "op_on": self.op_on, "cell_inputs": self.cell_inputs,
            "identity_ops": sorted(self.identity), "zero_ops": sorted(self.zero),
            "output": self.output, "allow_degenerate": self.allow_degenerate, "equivalence": self.equivalence,
        }
