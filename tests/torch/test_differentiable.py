"""Differentiable NAS (DARTS, PC-DARTS, GDAS, FBNet, ProxylessNAS) and its collapse guards, on tiny supernets."""
from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.torch

from archscout.errors import ArchscoutError, SpaceError, UnknownNameError  # noqa: E402
from archscout.hardware import LatencyTable  # noqa: E402
from archscout.oneshot.differentiable import METHODS, _resolve, _Search, run_differentiable  # noqa: E402
from archscout.oneshot.latency_loss import candidate_latencies  # noqa: E402
from archscout.oneshot.selection import (DartsPlusMonitor, avoid_collapse, candidate_pool, first_valid,  # noqa: E402
                                         is_collapsed, live_rows, param_free_fraction, perturbation_select)
from archscout.oneshot.supernet import ChoiceSupernet  # noqa: E402
from archscout.space.spec import space_from_spec  # noqa: E402
from archscout.training.data import load_dataset  # noqa: E402

OPS = ["none", "skip_connect", "avg_pool_3x3", "max_pool_3x3", "nor_conv_1x1", "nor_conv_3x3",
       "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
CELL_SPEC = {  # the reference space (MNIST-1D cells) with a 4-channel stem
    "name": "tiny-cells",
    "model": {"family": "cells", "stem_width": 4, "stages": 3, "cells_per_stage": 1, "reduction": "resnet"},
    "params": [{"name": "cell", "type": "cell", "nodes": 2, "inputs": "all", "op_on": "edge", "output": "last",
                "ops": OPS}],
}
MACRO_SPEC = {
    "name": "tiny-macro",
    "model": {"family": "macro", "stem_width": 4, "stage_strides": [1, 2]},
    "params": [{"name": "net", "type": "chain", "stages": [
        [{"name": "width", "type": "choice", "options": [4, 8]},
         {"name": "layers", "type": "repeat", "min_depth": 1, "max_depth": 2,
          "body": [{"name": "block", "type": "choice", "options": ["conv", "dwsep", "identity"],
                    "sub": {"conv": [{"name": "kernel", "type": "choice", "options": [3, 5]}]}}]}],
        [{"name": "width", "type": "choice", "options": [8]},
         {"name": "layers", "type": "repeat", "min_depth": 1, "max_depth": 2,
          "body": [{"name": "block", "type": "choice", "options": ["conv", "mbconv"]}]}],
    ]}],
}
FAST = {"epochs": 2, "batch_size": 16, "warmup_epochs": 0, "finetune_steps": 1, "pool_steps": 10}


@pytest.fixture(scope="module")
def cells():
    return space_from_spec(CELL_SPEC)


@pytest.fixture(scope="module")
def macro():
    return space_from_spec(MACRO_SPEC)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic-signal", seed=0, n=100, length=24)


def _fixed_table(space, data, cheap=("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3")) -> LatencyTable:
    """A latency table where every candidate of the tiny cell space has a known latency."""
    table = LatencyTable()
    net = ChoiceSupernet(space, data.input_shape, data.num_classes)
    lut = candidate_latencies(net, LatencyTable(autoprofile=True), warmup=0, repeats=1)
    for (group, row), instances in lut.keys.items():
        for keys in instances:
            for op, key in zip(net.group_index[group].candidates, keys):
                table.entries[key] = 0.01 if op in cheap else 1.0
    return table


# -- every method -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_methods_train_both_levels_and_derive_a_valid_arch(method, cells, data):
    options = {k: p.default for k, p in inspect.signature(run_differentiable).parameters.items()
               if p.kind is p.KEYWORD_ONLY and k not in ("latency_table", "progress", "alpha_init")}
    s = _resolve(method, cells, {**options, "epochs": 1, "batch_size": 16, "w_lr": 0.05, "a_lr": 0.05,
                                 "guard": "none", "warmup_epochs": 0, "finetune_steps": 0})
    table = _fixed_table(cells, data) if method in ("fbnet", "proxyless") else None
    search = _Search(method, cells, data, s, table, None)
    alpha0 = search.snapshot()
    weights0 = copy.deepcopy(search.net.state_dict())
    search.run_epoch(0)
    moved = [float((search.alpha[k].detach() - alpha0[k.replace("/", ".")]).abs().max()) for k in search.alpha]
    assert max(moved) > 1e-4                      # alphas got gradients and moved
    changed = [k for k, v in search.net.state_dict().items() if v.is_floating_point() and not torch.equal(v, weights0[k])]
    assert changed                                # supernet weights trained
    if method == "pc-darts":
        assert search.net.partial == 2 and len(search.beta) == 1
    result = run_differentiable(method, cells, data, **FAST, latency_table=table, a_lr=0.05)
    arch = result.archs[0]
    assert cells.contains(arch)
    assert len(result.history) == 2 and {"train_loss", "valid_acc", "entropy", "skips"} <= set(result.history[0])
    assert 0.0 <= result.scores[0]["supernet_acc"] <= 1.0
    assert 0.0 <= result.scores[0]["param_free_fraction"] <= 1.0
    assert isinstance(result.info["collapsed"], bool) and result.info["guard"] == "pool"
    assert result.info["pool"] and result.info["pool_init"] == "fresh"
    if method in ("fbnet", "proxyless"):
        assert result.scores[0]["lut_latency_ms"] == pytest.approx(result.info["lut_latency_ms"])
        assert result.scores[0]["lut_latency_ms"] > 0


@pytest.mark.parametrize("method", ["darts", "gdas", "proxyless"])
def test_search_is_deterministic_for_a_seed(method, cells, data):
    table = _fixed_table(cells, data)
    runs = [run_differentiable(method, cells, data, **FAST, seed=3, latency_table=table) for _ in range(2)]
    assert runs[0].archs[0].key == runs[1].archs[0].key
    assert runs[0].info["arch_weights"] == runs[1].info["arch_weights"]
    for a, b in zip(runs[0].history, runs[1].history):
        assert a == b


def test_second_order_darts_differs_from_first_order(cells, data):
    first = run_differentiable("darts", cells, data, **FAST, guard="none", order=1, a_lr=0.05)
    second = run_differentiable("darts", cells, data, **FAST, guard="none", order=2, a_lr=0.05)
    assert cells.contains(second.archs[0])
    assert first.info["arch_weights"] != second.info["arch_weights"]


@pytest.mark.parametrize("method", METHODS)
def test_macro_spaces_work_for_every_method(method, macro, data):
    result = run_differentiable(method, macro, data, epochs=1, batch_size=16, warmup_epochs=0, finetune_steps=1,
                                pool_steps=5)
    assert macro.contains(result.archs[0])
    if method == "pc-darts":
        assert result.info["settings"]["partial_channels"] == 1   # no cell edges to split
    assert "net[0].width" in result.info["arch_weights"]


# -- guards ---------------------------------------------------------------------------------------------
def test_perturbation_guard_records_its_choices(cells, data):
    result = run_differentiable("darts", cells, data, **FAST, guard="perturbation")
    decisions = [d for d in result.info["decisions"] if "selected" in d]
    assert sorted(d["row"] for d in decisions) == ["node0<-0", "node1<-0", "node1<-1"]
    for d in decisions:
        assert set(d["importance"]) == set(OPS) and d["selected"] in OPS
    assert result.info["changed"] == [d for d in decisions if d["selected"] != d["argmax"]]
    assert cells.contains(result.archs[0]) and not result.info["collapsed"]
    if result.info["changed"]:
        assert len(result.archs) == 2 and result.archs[1].to_dict() == result.info["argmax_arch"]


@pytest.mark.parametrize("method,init", [("darts", "fresh"), ("pc-darts", "fresh"), ("gdas", "inherit"),
                                         ("proxyless", "fresh")])
def test_pool_guard_picks_the_most_accurate_pool_member_and_records_the_pool(method, init, cells, data):
    table = _fixed_table(cells, data)
    kw = dict(FAST, pool_size=6, pool_steps=5, pool_init=init, seed=1, latency_table=table)
    result = run_differentiable(method, cells, data, **kw)                 # guard="pool" is the default
    assert cells.contains(result.archs[0]) and not result.info["collapsed"]
    assert result.info["guard"] == "pool" and result.info["pool_steps"] == 5 and result.info["pool_init"] == init
    pool = result.info["pool"]
    assert len(pool) == result.info["pool_size"] >= 6       # the 6 most probable and the argmax's neighbours
    assert len({cells.make(r["arch"]).key for r in pool}) == len(pool)
    assert [r["rank"] for r in pool] == list(range(len(pool)))
    assert all(0.0 <= r["valid_acc"] <= 1.0 and r["log_prob"] <= 0.0 for r in pool)
    picked = pool[result.info["picked_rank"]]
    assert cells.make(picked["arch"]).key == result.archs[0].key
    live = [r for r in pool if not r["collapsed"]]
    assert picked["valid_acc"] == max(r["valid_acc"] for r in live)
    again = run_differentiable(method, cells, data, **kw)           # deterministic for a seed
    assert again.archs[0].key == result.archs[0].key and again.info["pool"] == pool


def test_pool_repeats_average_independent_pool_supernets(cells, data):
    kw = dict(FAST, pool_size=4, pool_steps=5, seed=2)
    one = run_differentiable("darts", cells, data, **kw)
    two = run_differentiable("darts", cells, data, pool_repeats=2, **kw)
    assert two.info["pool_repeats"] == 2 and one.info["pool_repeats"] == 1
    for a, b in zip(one.info["pool"], two.info["pool"]):     # same search, same pool
        assert a["arch"] == b["arch"] and "valid_acc_runs" not in a
        runs = b["valid_acc_runs"]
        assert len(runs) == 2 and runs[0] == a["valid_acc"]      # run 0 is the single-run supernet
        assert b["valid_acc"] == pytest.approx(sum(runs) / 2)
    picked = two.info["pool"][two.info["picked_rank"]]
    live = [r for r in two.info["pool"] if not r["collapsed"]]
    assert picked["valid_acc"] == max(r["valid_acc"] for r in live)


def test_candidate_pool_lists_the_most_probable_valid_paths_first(cells, data):
    net = ChoiceSupernet(cells, data.input_shape, data.num_classes)
    probs = torch.softmax(torch.linspace(0, 3, 30).reshape(3, 10), dim=1)
    start = net.path_from_weights({"cell": probs})
    pool = candidate_pool(net, start, {"cell": probs}, 5, neighbours=False)
    assert len(pool) == 5 and pool[0][0] == start
    logp = [sum(float(torch.log(probs[r, i])) for r, i in enumerate(path["cell"])) for path, _ in pool]
    assert logp == sorted(logp, reverse=True)
    assert all(cells.contains(arch) for _, arch in pool)
    wide = candidate_pool(net, start, {"cell": probs}, 5, neighbours=True)
    assert [a.key for _, a in wide[:5]] == [a.key for _, a in pool] and len(wide) > 5
    for path, _ in wide[5:]:                                         # one-row changes of the argmax
        assert sum(a != b for a, b in zip(path["cell"], start["cell"])) == 1


def test_darts_plus_stops_when_skips_take_over(cells, data):
    init = np.zeros((3, len(OPS)))
    init[:, OPS.index("skip_connect")] = 5.0        # argmax skip on every edge from the start
    result = run_differentiable("darts", cells, data, epochs=4, batch_size=16, warmup_epochs=0, a_lr=1e-6,
                                guard="darts+", alpha_init={"cell": init})
    assert result.info["stopped_at"] == 1 and result.info["stop_reason"] == "skip"
    assert len(result.history) == 1 and result.history[0]["skips"] >= 2
    assert cells.contains(result.archs[0])
    assert not result.info["collapsed"]           # the anti-collapse rule switched a skip to a parametric op
    assert result.info["anti_collapse"] is not None


def test_darts_plus_monitor_stops_on_a_stable_ranking(cells, data):
    net = ChoiceSupernet(cells, data.input_shape, data.num_classes)
    monitor = DartsPlusMonitor(net, stable_epochs=2)
    w = {"cell": torch.linspace(0, 1, 30).reshape(3, 10)}
    path = net.path_from_weights(w)
    assert [monitor.update(path, w) for _ in range(3)] == [None, None, "stable"]
    w2 = {"cell": torch.linspace(1, 0, 30).reshape(3, 10)}
    assert monitor.update(net.path_from_weights(w2), w2) is None and monitor.stable == 0


def test_guard_none_keeps_the_argmax(cells, data):
    result = run_differentiable("gdas", cells, data, **FAST, guard="none")
    assert len(result.archs) == 1 and result.archs[0].to_dict() == result.info["argmax_arch"]
    assert "anti_collapse" not in result.info


def test_live_rows_and_collapse(cells, data):
    net = ChoiceSupernet(cells, data.input_shape, data.num_classes)
    i = OPS.index
    # node0 = max_pool(x); node1 = none(x) + skip(node0): everything live is parameter-free
    path = {"cell": [i("max_pool_3x3"), i("none"), i("skip_connect")]}
    assert live_rows(net, path)["cell"] == [True, False, True]
    assert is_collapsed(net, path)
    # node0 feeds nothing (edge node1<-1 is none): its conv is dead
    path = {"cell": [i("nor_conv_3x3"), i("avg_pool_3x3"), i("none")]}
    assert live_rows(net, path)["cell"] == [False, True, False]
    assert param_free_fraction(net, path) == 1.0
    path = {"cell": [i("nor_conv_3x3"), i("avg_pool_3x3"), i("skip_connect")]}
    assert param_free_fraction(net, path) == pytest.approx(2 / 3)
    fixed, change = avoid_collapse(net, {"cell": [i("max_pool_3x3"), i("none"), i("skip_connect")]},
                                   {"cell": torch.linspace(0, 1, 30).reshape(3, 10)})
    assert change is not None and not is_collapsed(net, fixed) and cells.contains(net.arch_of(fixed))


def test_first_valid_repairs_a_rejected_path(cells, data):
    net = ChoiceSupernet(cells, data.input_shape, data.num_classes)
    bad = {"cell": [OPS.index("none"), OPS.index("none"), OPS.index("skip_connect")]}
    with pytest.raises(SpaceError):
        net.arch_of(bad)
    scores = {"cell": torch.zeros(3, 10)}
    scores["cell"][2, OPS.index("sep_conv_3x3")] = -0.1
    arch, path, tried = first_valid(net, bad, scores)
    assert cells.contains(arch) and tried > 1
    assert sum(a != b for a, b in zip(path["cell"], bad["cell"])) == 1


def test_perturbation_select_picks_the_candidate_whose_removal_hurts_most(cells, data):
    net = ChoiceSupernet(cells, data.input_shape, data.num_classes)
    weights = {"cell": torch.full((3, 10), 0.1)}
    vital = [5, 7, 4]        # the fake evaluation loses accuracy only when row r loses candidate vital[r]

    def evaluate(w):
        return 1.0 - sum(0.1 * float(w["cell"][r, vital[r]] == 0) for r in range(3)), 0.0

    calls = []
    path, scores, records = perturbation_select(net, weights, evaluate, finetune=calls.append)
    assert path["cell"] == vital and len(calls) == 3
    assert [r["selected"] for r in records] == [OPS[v] for v in vital]
    assert float(scores["cell"][0].argmax()) == 5


# -- latency --------------------------------------------------------------------------------------------
def test_latency_table_has_one_entry_per_candidate_per_row(cells, data):
    net = ChoiceSupernet(cells, data.input_shape, data.num_classes)
    lut = candidate_latencies(net, warmup=0, repeats=2)
    assert set(lut.table) == {"cell"} and tuple(lut.table["cell"].shape) == (3, 10)
    assert lut.entries() == 30 and bool((lut.table["cell"] > 0).all())
    assert all(len(inst) == 3 for inst in lut.keys.values())          # three cell instances per row
    table = _fixed_table(cells, data)
    read = candidate_latencies(net, table)
    assert read.measured == 0 and read.read > 0
    conv = OPS.index("nor_conv_3x3")
    assert float(read.table["cell"][0, conv]) == pytest.approx(3.0)    # 1 ms in each of three cells
    user = LatencyTable()
    candidate_latencies(net, user, warmup=0, repeats=1)
    assert len(user) == read.read                                     # missing keys were timed and added


def test_latency_weight_moves_alphas_toward_cheaper_ops(cells, data):
    table = _fixed_table(cells, data)
    kw = dict(FAST, epochs=3, guard="none", a_lr=0.05, latency_table=table)
    plain = run_differentiable("fbnet", cells, data, **kw, latency_weight=0.0)
    heavy = run_differentiable("fbnet", cells, data, **kw, latency_weight=5.0)
    cheap = [OPS.index(o) for o in ("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3")]

    def cheap_mass(result):
        return float(np.asarray(result.info["arch_weights"]["cell"]["probs"])[:, cheap].sum())

    assert cheap_mass(heavy) > cheap_mass(plain) + 0.1
    assert heavy.history[-1]["expected_latency_ms"] < plain.history[-1]["expected_latency_ms"]


# -- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,options,error", [
    ("enas", {}, UnknownNameError),
    ("darts", {"guard": "magic"}, ArchscoutError),
    ("darts", {"pool_init": "warm"}, ArchscoutError),
    ("darts", {"pool_size": 0}, ArchscoutError),
    ("darts", {"pool_repeats": 0}, ArchscoutError),
    ("darts", {"pool_repeats": 2, "pool_init": "inherit"}, ArchscoutError),
    ("gdas", {"order": 2}, ArchscoutError),
    ("darts", {"order": 3}, ArchscoutError),
    ("darts", {"w_lr": -1.0}, ArchscoutError),
    ("darts", {"partial_channels": 2}, ArchscoutError),
    ("darts", {"epochs": 1.5}, ArchscoutError),
    ("fbnet", {"tau_max": 0.1, "tau_min": 1.0}, ArchscoutError),
    ("darts", {"w_optimizer": "lion"}, ArchscoutError),
])
def test_bad_methods_and_options_raise_one_line_errors(method, options, error, cells, data):
    with pytest.raises(error) as info:
        run_differentiable(method, cells, data, **options)
    assert "\n" not in str(info.value)


def test_partial_channels_on_a_macro_space_is_a_space_error(macro, data):
    with pytest.raises(SpaceError):
        run_differentiable("pc-darts", macro, data, partial_channels=2, epochs=1)
