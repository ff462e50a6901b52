"""Property tests of the search-space language (hypothesis).

Random small spaces are generated as spec dicts (choices with nested ``sub`` spaces,
int and float ranges, repeats, chains, and cells in the three supported styles) and
built with ``space_from_spec``; every property is checked on architectures sampled
from them with random seeds.
"""
from __future__ import annotations

import itertools
import json
import math
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from archscout.errors import SpaceError
from archscout.space import ENCODINGS, Architecture, Cell, Choice, FloatRange, SearchSpace, canonical_json, space_from_spec
from archscout.space.frozen import FrozenDict

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL_OPS = ["conv", "pool", "gcn", "gat"]
IDENTITY, ZERO = "skip", "none"
CELL_STYLES = {
    # NAS-Bench-Graph: one input per node, op on the node, leaves feed the output.
    "nbg": {"inputs": 1, "op_on": "node", "cell_inputs": 1, "output": "leaves"},
    # DARTS: two inputs from two cell inputs and earlier nodes, op per edge, concat output.
    "darts": {"inputs": 2, "op_on": "edge", "cell_inputs": 2, "output": "concat"},
    # NAS-Bench-201: every earlier node feeds every node, op per edge, last node is the output.
    "nb201": {"inputs": "all", "op_on": "edge", "cell_inputs": 1, "output": "last"},
}


# ---------------------------------------------------------------------------------------------
# Space generators
# ---------------------------------------------------------------------------------------------
def _option_identity(o: Any) -> tuple[bool, Any]:
    return (isinstance(o, bool), o)  # True == 1 in Python; the space keeps them apart


OPTIONS = st.one_of(
    st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    st.integers(-3, 40),
    st.booleans(),
    st.none(),
    st.floats(-50, 50, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3)),
)


@st.composite
def cell_spec(draw: st.DrawFn, small: bool = False) -> dict[str, Any]:
    style = draw(st.sampled_from(sorted(CELL_STYLES)))
    real = draw(st.lists(st.sampled_from(REAL_OPS), min_size=1, max_size=2 if small else 3, unique=True))
    extra = draw(st.lists(st.sampled_from([IDENTITY, ZERO]), max_size=1 if small else 2, unique=True))
    ops = draw(st.permutations(real + extra))
    nodes = draw(st.integers(1, 2 if small else 3))
    return {"name": "?", "type": "cell", "nodes": nodes, "ops": ops, **CELL_STYLES[style]}


@st.composite
def choice_spec(draw: st.DrawFn, depth: int, small: bool, finite: bool) -> dict[str, Any]:
    options = draw(st.lists(OPTIONS, min_size=1, max_size=3 if small else 4, unique_by=(str, _option_identity)))
    spec: dict[str, Any] = {"name": "?", "type": "choice", "options": options}
    # Sub-spaces only under string / int options (bool and null keys have their own tests).
    keyable = [o for o in options if isinstance(o, (str, int)) and not isinstance(o, bool)]
    if depth > 0 and keyable:
        chosen = draw(st.lists(st.sampled_from(keyable), max_size=2, unique=True))
        if chosen:
            spec["sub"] = {o: draw(param_list(depth - 1, small, finite, max_size=2)) for o in chosen}
    return spec


@st.composite
def int_spec(draw: st.DrawFn, small: bool) -> dict[str, Any]:
    low = draw(st.integers(-5, 5))
    step = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3 if small else 5))
    high = low + (n - 1) * step + draw(st.integers(0, step - 1))  # high need not lie on the grid
    return {"name": "?", "type": "int", "low": low, "high": high, "step": step}


@st.composite
def float_spec(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        low = round(draw(st.floats(1e-3, 1.0)), 4)
        return {"name": "?", "type": "float", "low": low, "high": round(low * draw(st.floats(2.0, 1000.0)), 3), "log": True}
    low = round(draw(st.floats(-5.0, 5.0)), 3)
    return {"name": "?", "type": "float", "low": low, "high": round(low + draw(st.floats(0.5, 10.0)), 3), "log": False}


@st.composite
def repeat_spec(draw: st.DrawFn, depth: int, small: bool, finite: bool) -> dict[str, Any]:
    lo = draw(st.integers(0, 1 if small else 2))
    hi = lo + draw(st.integers(0, 1 if small else 2))
    body = draw(param_list(depth - 1, small, finite, max_size=1 if small else 2))
    return {"name": "?", "type": "repeat", "min_depth": lo, "max_depth": hi, "body": body}


@st.composite
def chain_spec(draw: st.DrawFn, depth: int, small: bool, finite: bool) -> dict[str, Any]:
    stages = draw(st.lists(param_list(depth - 1, small, finite, max_size=2), min_size=1, max_size=2 if small else 3))
    return {"name": "?", "type": "chain", "stages": stages}


def param_spec(depth: int, small: bool, finite: bool) -> st.SearchStrategy[dict[str, Any]]:
    leaves = [choice_spec(0, small, finite), int_spec(small), cell_spec(small)]
    if not finite:
        leaves.append(float_spec())
    if depth <= 0:
        return st.one_of(*leaves)
    return st.one_of(*leaves, choice_spec(depth, small, finite), repeat_spec(depth, small, finite),
                     chain_spec(depth, small, finite))


def param_list(depth: int, small: bool, finite: bool, max_size: int = 3) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(param_spec(depth, small, finite), min_size=1, max_size=max_size)


def _rename(items: list[dict[str, Any]], counter: Iterator[int]) -> None:
    """Give every parameter a unique name (p0, p1, ...) so no scope has a clash."""
    for item in items:
        item["name"] = f"p{next(counter)}"
        for sub in item.get("sub", {}).values():
            _rename(sub, counter)
        if "body" in item:
            _rename(item["body"], counter)
        for stage in item.get("stages", []):
            _rename(stage, counter)


@st.composite
def space_specs(draw: st.DrawFn, small: bool = False, finite: bool = False) -> dict[str, Any]:
    params = draw(param_list(1 if small else 2, small, finite, max_size=3))
    _rename(params, itertools.count())
    return {"name": "generated", "params": params}


@st.composite
def spaces(draw: st.DrawFn, small: bool = False, finite: bool = False) -> SearchSpace:
    spec = draw(space_specs(small=small, finite=finite))
    space = space_from_spec(spec)
    assume(len(space.dims) <= 80)
    return space


SEEDS = st.integers(0, 2**32 - 1)


def samples(space: SearchSpace, seed: int, n: int = 3) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def decisions_differing(space: SearchSpace, a: Architecture, b: Architecture) -> list[int]:
    """Genotype positions active in both ``a`` and ``b`` whose decisions differ."""
    ga, gb = space.genotype(a), space.genotype(b)
    common = set(space.active_positions(a)) & set(space.active_positions(b))
    out = []
    for p in sorted(common):
        if space.dims[p].n is None:
            if abs(float(ga[p]) - float(gb[p])) > 1e-9:
                out.append(p)
        elif int(ga[p]) != int(gb[p]):
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# (a) sampling, construction, serialisation, moves, encodings
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_sample_is_in_space_and_make_round_trips(space: SearchSpace, seed: int) -> None:
    for arch in samples(space, seed):
        assert space.contains(arch)
        assert space.contains(arch.to_dict())
        again = space.make(arch.to_dict())
        assert again.key == arch.key
        assert again == arch and hash(again) == hash(arch)
        # JSON round trip of the values.
        from_json = space.make(json.loads(arch.to_json()))
        assert from_json.key == arch.key
        assert json.loads(from_json.to_json()) == json.loads(arch.to_json())
        # The key is a stable 24-hex digest.
        assert isinstance(arch.key, str) and len(arch.key) == 24 and int(arch.key, 16) >= 0


@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_spec_round_trip_gives_the_same_keys(space: SearchSpace, seed: int) -> None:
    spec = json.loads(json.dumps(space.spec()))
    rebuilt = space_from_spec(spec)
    assert json.loads(json.dumps(rebuilt.spec())) == spec
    assert rebuilt.dims == space.dims
    for arch in samples(space, seed):
        assert rebuilt.make(arch.to_dict()).key == arch.key
        assert rebuilt.make(json.loads(arch.to_json())).key == arch.key
    # Same seed -> same samples in both spaces.
    assert [a.key for a in samples(rebuilt, seed)] == [a.key for a in samples(space, seed)]


@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_neighbours_are_valid_distinct_one_edit_moves(space: SearchSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for arch in samples(space, seed, n=2):
        neighbours = space.neighbours(arch, rng)
        keys = [n.key for n in neighbours]
        assert len(keys) == len(set(keys)), "neighbours repeat an architecture"
        assert arch.key not in keys, "an architecture is its own neighbour"
        for n in neighbours:
            assert space.contains(n)
            diff = decisions_differing(space, arch, n)
            assert len(diff) == 1, f"neighbour differs in decisions {[space.dims[p].path for p in diff]}"


@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_mutate_returns_a_different_architecture(space: SearchSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for arch in samples(space, seed, n=2):
        assume(space.neighbours(arch))  # a space with a single architecture cannot mutate
        child = space.mutate(arch, rng)
        assert space.contains(child)
        assert child.key != arch.key


@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_crossover_result_is_in_space(space: SearchSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b, c = samples(space, seed)
    for x, y in ((a, b), (b, c), (a, a)):
        child = space.crossover(x, y, rng)
        assert isinstance(child, Architecture)
        assert space.contains(child)
        assert space.make(child.to_dict()).key == child.key


@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_encodings_have_a_fixed_length_per_kind(space: SearchSpace, seed: int) -> None:
    archs = samples(space, seed, n=4)
    for kind in ENCODINGS:
        vectors = [space.encode(a, kind) for a in archs]
        assert len({v.shape for v in vectors}) == 1, f"{kind} encoding length varies"
        assert vectors[0].ndim == 1
        for v in vectors:
            assert np.all(np.isfinite(v))
        # Equal architectures encode equally.
        assert np.array_equal(space.encode(space.make(archs[0].to_dict()), kind), vectors[0])
    with pytest.raises(SpaceError):
        space.encode(archs[0], "no-such-encoding")


@SETTINGS
@given(space=spaces(), seed=SEEDS)
def test_architecture_pickles(space: SearchSpace, seed: int) -> None:
    for arch in samples(space, seed):
        back = pickle.loads(pickle.dumps(arch))
        assert back.key == arch.key
        assert back.values == arch.values
        assert back.to_dict() == arch.to_dict()
        assert back == arch and hash(back) == hash(arch)
        assert hash(back.values) == hash(arch.values)
        assert space.make(back.to_dict()).key == arch.key


@FEW
@given(space=spaces(), seed=SEEDS)
def test_architecture_values_are_immutable_and_hashable(space: SearchSpace, seed: int) -> None:
    arch = samples(space, seed, n=1)[0]
    name = space.params[0].name
    assert isinstance(arch.values, FrozenDict)
    hash(arch)
    hash(arch.values)
    assert len({arch, space.make(arch.to_dict())}) == 1
    with pytest.raises(TypeError):
        arch[name] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        arch.values[name] = 1  # type: ignore[index]
    with pytest.raises((TypeError, AttributeError)):
        del arch.values[name]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        arch.extra = 1  # type: ignore[attr-defined]
    # Lists become tuples, dicts FrozenDicts, all the way down.
    def walk(v: Any) -> None:
        assert not isinstance(v, (list, dict, set))
        if isinstance(v, FrozenDict):
            for x in v.values():
                walk(x)
        elif isinstance(v, tuple):
            for x in v:
                walk(x)
    walk(arch.values)
    # to_dict hands out a copy: changing it leaves the architecture alone.
    d = arch.to_dict()
    d[name] = "changed"
    assert arch.to_dict() != d


def test_architecture_attributes_cannot_be_reassigned() -> None:
    space = SearchSpace([Choice("a", [1, 2])])
    arch = space.make({"a": 1})
    seen = {arch}
    with pytest.raises(AttributeError):
        arch.key = "0" * 24  # type: ignore[misc]
    assert arch in seen
    with pytest.raises(AttributeError):
        arch.values = FrozenDict({"a": 2})  # type: ignore[misc]


@pytest.mark.parametrize("option", [True, None], ids=["bool", "null"])
def test_spec_json_round_trip_with_sub_on_bool_or_null_option(option: Any) -> None:
    spec = {"name": "s", "params": [{"name": "c", "type": "choice", "options": [option, "other"],
                                     "sub": {option: [{"name": "k", "type": "int", "low": 1, "high": 3}]}}]}
    space = space_from_spec(spec)
    rebuilt = space_from_spec(json.loads(json.dumps(space.spec())))
    assert rebuilt.make({"c": option, "k": 2}).key == space.make({"c": option, "k": 2}).key


def test_tiny_log_float_range_keeps_resolution() -> None:
    space = SearchSpace([FloatRange("eps", 1e-15, 1e-12, log=True)])
    rng = np.random.default_rng(0)
    values = {space.sample(rng)["eps"] for _ in range(20)}
    assert all(1e-15 <= v <= 1e-12 for v in values)
    assert len(values) > 10


# ---------------------------------------------------------------------------------------------
# (b) canonical forms
# ---------------------------------------------------------------------------------------------
@st.composite
def permutable_cells(draw: st.DrawFn) -> tuple[Cell, list[dict[str, Any]], list[int]]:
    """A cell (default "expression" equivalence), one of its valid values, and a topological
    re-ordering of its computing nodes (new position -> old node)."""
    style = draw(st.sampled_from(["nbg", "darts", "sum"]))
    real = draw(st.lists(st.sampled_from(REAL_OPS), min_size=1, max_size=3, unique=True))
    ops = real + draw(st.lists(st.sampled_from([IDENTITY, ZERO]), max_size=2, unique=True))
    nodes = draw(st.integers(2, 5))
    if style == "sum":  # ops on nodes, each summing two inputs
        kw: dict[str, Any] = {"inputs": 2, "op_on": "node", "cell_inputs": 2, "output": "leaves"}
    else:
        kw = dict(CELL_STYLES[style])
    cell = Cell("c", nodes=nodes, ops=ops, **kw)
    space = SearchSpace([cell])
    value = [dict(n) for n in space.sample(np.random.default_rng(draw(SEEDS))).to_dict()["c"]]
    # Random topological order of the computing nodes.
    deps = {j: {i - cell.cell_inputs for i in node["inputs"] if i >= cell.cell_inputs} for j, node in enumerate(value)}
    order: list[int] = []
    while len(order) < nodes:
        ready = [j for j in range(nodes) if j not in order and deps[j] <= set(order)]
        order.append(draw(st.sampled_from(ready)))
    return cell, value, order


def relabel(cell: Cell, value: list[dict[str, Any]], order: list[int]) -> list[dict[str, Any]]:
    new_of_old = {old: new for new, old in enumerate(order)}
    ci = cell.cell_inputs
    out = []
    for old in order:
        node = dict(value[old])
        node["inputs"] = [i if i < ci else ci + new_of_old[i - ci] for i in node["inputs"]]
        if "ops" in node:  # keep each op with its input, then list inputs in increasing order
            pairs = sorted(zip(node["inputs"], node["ops"]))
            node["inputs"], node["ops"] = [i for i, _ in pairs], [o for _, o in pairs]
        else:
            node["inputs"] = sorted(node["inputs"])
        out.append(node)
    return out


@SETTINGS
@given(case=permutable_cells())
def test_reordering_independent_cell_nodes_keeps_the_key(case: tuple[Cell, list[dict[str, Any]], list[int]]) -> None:
    cell, value, order = case
    space = SearchSpace([cell])
    original = space.make({"c": value})
    permuted = space.make({"c": relabel(cell, value, order)})
    assert permuted.key == original.key
    # The path encoding is invariant too.
    assert np.array_equal(space.encode(permuted, "path"), space.encode(original, "path"))


@SETTINGS
@given(seed=SEEDS, nodes=st.integers(1, 4), data=st.data())
def test_swapping_the_two_edges_of_a_darts_node_keeps_the_key(seed: int, nodes: int, data: st.DataObject) -> None:
    cell = Cell("c", nodes=nodes, ops=["sep3", "sep5", "max_pool", "skip_connect", "none"], **CELL_STYLES["darts"])
    space = SearchSpace([cell])
    arch = space.sample(np.random.default_rng(seed))
    value = [dict(n) for n in arch.to_dict()["c"]]
    j = data.draw(st.integers(0, nodes - 1))
    value[j] = {"inputs": value[j]["inputs"][::-1], "ops": value[j]["ops"][::-1]}
    swapped = space.make({"c": value})
    assert swapped.key == arch.key
    assert swapped.to_dict() == arch.to_dict()  # values are normalised to increasing inputs


def test_expression_equivalence_examples() -> None:
    space = SearchSpace([Cell("c", nodes=3, ops=["conv", "pool", "skip", "none"])])

    def key(*nodes: tuple[int, str]) -> str:
        return space.make({"c": [{"inputs": [i], "op": o} for i, o in nodes]}).key

    # A skip node in the middle of a chain vanishes wherever it sits.
    assert key((0, "conv"), (1, "skip"), (2, "pool")) == key((0, "conv"), (1, "pool"), (2, "skip"))
    # Two parallel branches in either order.
    assert key((0, "conv"), (0, "pool"), (1, "skip")) == key((0, "pool"), (0, "conv"), (2, "skip"))
    # Different computations differ.
    assert key((0, "conv"), (1, "pool"), (2, "skip")) != key((0, "pool"), (1, "conv"), (2, "skip"))


# NAS-Bench-Graph: our keys against the benchmark's own Arch.valid_hash.
NBG_OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")


def _nbg_link() -> st.SearchStrategy[list[int]]:
    return st.tuples(*(st.integers(0, j) for j in range(4))).map(list)


def _nbg_key_and_hash(space: SearchSpace, link: list[int], ops: list[str]) -> tuple[str, int] | None:
    from nas_bench_graph import Arch

    try:
        arch = space.make({"cell": [{"inputs": [lk], "op": op} for lk, op in zip(link, ops)]})
    except SpaceError:
        return None  # degenerate: only skips between input and output
    return arch.key, int(Arch(list(link), list(ops)).valid_hash())


def _assert_same_partition(pairs: list[tuple[str, int]]) -> None:
    by_key: dict[str, set[int]] = {}
    by_hash: dict[int, set[str]] = {}
    for k, h in pairs:
        by_key.setdefault(k, set()).add(h)
        by_hash.setdefault(h, set()).add(k)
    assert all(len(v) == 1 for v in by_key.values()), "one key, several benchmark hashes"
    assert all(len(v) == 1 for v in by_hash.values()), "one benchmark hash, several keys"


@SETTINGS
@given(encodings=st.lists(st.tuples(_nbg_link(), st.lists(st.sampled_from(NBG_OPS[:2] + ("skip",)), min_size=4, max_size=4)),
                          min_size=2, max_size=40),
       more=st.lists(st.tuples(_nbg_link(), st.lists(st.sampled_from(NBG_OPS), min_size=4, max_size=4)), max_size=10))
def test_nasbench_graph_keys_match_valid_hash(nbg: Any, encodings: list, more: list) -> None:
    space = nbg.space
    pairs = [p for link, ops in encodings + more if (p := _nbg_key_and_hash(space, link, ops)) is not None]
    _assert_same_partition(pairs)


def test_nasbench_graph_keys_match_valid_hash_exhaustively_on_three_ops(nbg: Any) -> None:
    """Every raw (link, ops) encoding over {gat, gcn, skip}: 24 link patterns x 81 op lists."""
    links = [list(t) for t in itertools.product(*(range(j + 1) for j in range(4)))]
    pairs = [p for link in links for ops in itertools.product(("gat", "gcn", "skip"), repeat=4)
             if (p := _nbg_key_and_hash(nbg.space, link, list(ops))) is not None]
    assert len(pairs) > 1000
    _assert_same_partition(pairs)
    assert len({k for k, _ in pairs}) < len(pairs)  # equivalent encodings were merged


@pytest.fixture(scope="module")
def nbg_enumerated(nbg: Any) -> list[Architecture]:
    return list(nbg.space.enumerate())


def test_nasbench_graph_enumerates_26206_architectures(nbg: Any, nbg_enumerated: list[Architecture]) -> None:
    from archscout.evaluators.nasbench_graph import _benchmark_hash

    assert len(nbg_enumerated) == 26_206
    assert len({a.key for a in nbg_enumerated}) == 26_206
    cell = nbg.space.params[0]
    hashes = {_benchmark_hash(cell, a["cell"]) for a in nbg_enumerated}
    assert hashes == set(nbg._table)  # exactly the benchmark's table
    assert nbg.space.size() == 24 * 9**4  # raw encodings before merging


def test_nasbench_graph_samples_lie_in_the_enumeration(nbg: Any, nbg_enumerated: list[Architecture]) -> None:
    keys = {a.key for a in nbg_enumerated}
    rng = np.random.default_rng(7)
    for _ in range(300):
        assert nbg.space.sample(rng).key in keys


# ---------------------------------------------------------------------------------------------
# (c) size and enumeration of small finite spaces
# ---------------------------------------------------------------------------------------------
MAX_BRUTE = 4000


@st.composite
def small_finite_spaces(draw: st.DrawFn) -> SearchSpace:
    space = space_from_spec(draw(space_specs(small=True, finite=True)))
    assume(math.prod(d.n for d in space.dims) <= MAX_BRUTE)
    return space


def brute_force(space: SearchSpace) -> tuple[int, set[str]]:
    """Distinct raw encodings (decoded values, inactive decisions ignored) and the keys of the valid ones."""
    raw: set[str] = set()
    keys: set[str] = set()
    for g in itertools.product(*(range(d.n) for d in space.dims)):
        values, _, _ = space.group.decode(g, 0)
        text = canonical_json(values)
        if text in raw:
            continue
        raw.add(text)
        arch = space.from_genotype(list(g))
        if arch is not None:
            keys.add(arch.key)
    return len(raw), keys


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(space=small_finite_spaces(), seed=SEEDS)
def test_size_counts_raw_encodings_and_enumerate_is_complete(space: SearchSpace, seed: int) -> None:
    n_raw, valid_keys = brute_force(space)
    assert space.size() == n_raw
    enumerated = list(space.enumerate())
    keys = [a.key for a in enumerated]
    assert len(keys) == len(set(keys)), "enumerate yields an architecture twice"
    assert len(enumerated) <= space.size()
    assert set(keys) == valid_keys
    for a in enumerated:
        assert space.contains(a)
    for a in samples(space, seed, n=5):
        assert a.key in valid_keys


def test_size_is_infinite_with_a_float_and_enumerate_refuses() -> None:
    space = SearchSpace([Choice("a", [1, 2]), FloatRange("lr", 1e-4, 1e-1, log=True)])
    assert space.size() == math.inf
    with pytest.raises(SpaceError):
        list(space.enumerate())
