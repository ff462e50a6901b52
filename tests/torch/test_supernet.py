"""Choice supernets generated from spaces, SPOS training and inherited-weight evaluation."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from archscout.errors import ArchscoutError, SpaceError  # noqa: E402
from archscout.oneshot.bn import batchnorms, recalibrate_bn  # noqa: E402
from archscout.oneshot.evaluator import SupernetEvaluator  # noqa: E402
from archscout.oneshot.spos import inherited_accuracy, path_accuracy, train_spos  # noqa: E402
from archscout.oneshot.supernet import build_supernet, uniform_weights  # noqa: E402
from archscout.space import load_space  # noqa: E402
from archscout.space.spec import space_from_spec  # noqa: E402
from archscout.training.data import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "src" / "archscout" / "reference" / "mnist1d_cells.space.yaml"
SPACES = {name: ROOT / "examples" / "spaces" / f"{name}.yaml" for name in ("nb201_net", "darts_net", "macro_net")}


def tiny_cells(ops=("none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"), nodes=2, stem=4):
    return space_from_spec({"name": "tiny", "model": {"family": "cells", "stem_width": stem, "stages": 2, "reduction": "resnet"},
                            "params": [{"name": "cell", "type": "cell", "nodes": nodes, "inputs": "all",
                                        "op_on": "edge", "output": "last", "ops": list(ops)}]})


def tiny_macro():
    return space_from_spec({"name": "tiny-macro", "model": {"family": "macro", "stem_width": 4},
                            "params": [{"name": "net", "type": "chain", "stages": [
                                [{"name": "width", "type": "choice", "options": [4, 8]},
                                 {"name": "layers", "type": "repeat", "min_depth": 1, "max_depth": 2, "body": [
                                     {"name": "block", "type": "choice", "options": ["conv", "identity"],
                                      "sub": {"conv": [{"name": "kernel", "type": "choice", "options": [3, 5]}]}}]}],
                                [{"name": "width", "type": "choice", "options": [8, 12]},
                                 {"name": "layers", "type": "repeat", "min_depth": 1, "max_depth": 2, "body": [
                                     {"name": "block", "type": "choice", "options": ["mbconv", "dwsep"]}]}]]},
                                       {"name": "dropout", "type": "choice", "options": [0.0, 0.1]}]})


@pytest.fixture(scope="module")
def signal():
    data = load_dataset("synthetic-signal", seed=0, n=240)
    return data


@pytest.mark.parametrize("path", [REFERENCE, *SPACES.values()], ids=lambda p: Path(p).stem)
def test_every_sampled_architecture_round_trips_through_a_path(path):
    space = load_space(path)
    net = build_supernet(space, (1, 24), 5)
    rng = np.random.default_rng(1)
    x = torch.randn(3, 1, 24)
    for _ in range(15):
        arch = space.sample(rng)
        p = net.path_of(arch)
        back = net.arch_of(p)
        assert net.path_of(back) == p
        if net.family == "cells":
            assert back.key == arch.key  # cells spaces search every parameter
        net.set_path(p)
        assert net(x).shape == (3, 5)


def test_weighted_forward_reaches_every_candidate_and_the_weights():
    space = tiny_cells()
    net = build_supernet(space, (1, 16), 3)
    w = {k: torch.zeros(*shape, requires_grad=True) for k, shape in net.shapes().items()}
    soft = {k: v.softmax(-1) for k, v in w.items()}
    net(torch.randn(4, 1, 16), weights=soft).pow(2).sum().backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in w.values())
    conv_grads = [p.grad for n, p in net.named_parameters() if "mixed" in n and p.grad is not None]
    assert conv_grads and all(torch.isfinite(g).all() for g in conv_grads)


def test_active_candidates_limit_the_computation():
    space = tiny_cells()
    net = build_supernet(space, (1, 16), 3, seed=3)
    net.eval()
    x = torch.randn(2, 1, 16)
    path = net.path_of(space.sample(np.random.default_rng(0)))
    onehot = {g: torch.nn.functional.one_hot(torch.tensor(idx), len(net.group_index[g].candidates)).float()
              for g, idx in path.items()}
    active = {g: [[i] for i in idx] for g, idx in path.items()}
    net.set_path(path)
    single = net(x)
    weighted = net(x, weights=onehot, active=active)
    assert torch.allclose(single, weighted, atol=1e-6)


def test_partial_channels_keep_shapes_and_refuse_macro_spaces():
    space = load_space(SPACES["darts_net"])
    net = build_supernet(space, (1, 24), 4, partial_channels=2)
    out = net(torch.randn(2, 1, 24), weights=uniform_weights(net))
    assert out.shape == (2, 4)
    with pytest.raises(SpaceError, match="cells-family"):
        build_supernet(tiny_macro(), (1, 16), 3, partial_channels=2)


def test_path_from_weights_keeps_k_inputs_and_avoids_none():
    space = load_space(SPACES["darts_net"])
    net = build_supernet(space, (1, 24), 4)
    weights = {k: torch.rand(*shape, generator=torch.Generator().manual_seed(0)) for k, shape in net.shapes().items()}
    path = net.path_from_weights(weights)
    arch = net.arch_of(path)
    for node in arch.values["normal"]:
        assert len(node["inputs"]) == 2
    cells = tiny_cells()
    cnet = build_supernet(cells, (1, 16), 3)
    w = torch.zeros(3, 4)
    w[:, 0] = 5.0   # "none" strongest everywhere...
    w[:, 2] = 1.0
    p = cnet.path_from_weights({"cell": w})
    assert p["cell"] == [0, 0, 0]  # all-edges cells keep argmax semantics (NAS-Bench-201 style)


def test_macro_supernet_masks_widths_and_skips_layers():
    space = tiny_macro()
    net = build_supernet(space, (1, 16), 3)
    names = [g.name for g in net.groups]
    assert names[0] == "net[0].width" and "skip" in net.group_index["net[0].layers[1]"].candidates
    assert "skip" not in net.group_index["net[0].layers[0]"].candidates
    out = net(torch.randn(2, 1, 16), weights=uniform_weights(net))
    assert out.shape == (2, 3)
    path = {g.name: [0] for g in net.groups}
    path["net[0].layers[1]"] = [net.group_index["net[0].layers[1]"].candidates.index("skip")]
    arch = net.arch_of(path)
    assert len(arch.values["net"][0]["layers"]) == 1 and arch.values["net"][0]["width"] == 4
    assert arch.values["dropout"] == 0.0  # not searched by the supernet: from the base architecture


def test_bn_recalibration_sets_statistics_of_the_batches():
    space = tiny_cells()
    net = build_supernet(space, (1, 16), 3)
    bns = batchnorms(net)
    x = torch.randn(64, 1, 16) * 3 + 1
    net.set_path(net.path_of(space.sample(np.random.default_rng(2))))
    before = [bn.running_mean.clone() for bn in bns]
    seen = recalibrate_bn(net, [x[:32], x[32:]])
    assert seen == 64 and not net.training
    assert any(not torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))
    assert all(bn.momentum == 0.1 for bn in bns)


def test_spos_training_is_deterministic_and_learns(signal):
    space = tiny_cells()
    nets = [build_supernet(space, signal.input_shape, signal.num_classes, seed=0) for _ in range(2)]
    start = copy.deepcopy(nets[0].state_dict())
    logs = [train_spos(n, signal, epochs=2, batch_size=32, seed=5) for n in nets]
    assert logs[0][-1]["train_loss"] == logs[1][-1]["train_loss"]
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(v, nets[0].state_dict()[k]) for k, v in start.items() if v.dtype.is_floating_point)
    arch = space.sample(np.random.default_rng(0))
    acc = inherited_accuracy(nets[0], arch, signal)
    assert 0.0 <= acc <= 1.0
    assert acc == path_accuracy(nets[1], nets[1].path_of(arch), signal)


def test_spos_sampler_restricts_training_to_its_paths(signal):
    # A few-shot sub-supernet: every training path has edge 0 fixed to nor_conv_3x3, so the
    # edge's other conv (nor_conv_1x1) keeps its initial weights and nor_conv_3x3's change.
    space = tiny_cells(ops=("none", "skip_connect", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"))
    net = build_supernet(space, signal.input_shape, signal.num_classes, seed=0)
    group = net.groups[0]
    conv = group.candidates.index("nor_conv_3x3")
    start = copy.deepcopy(net.state_dict())
    drawn = []

    def fixed(rng):
        path = {k: list(v) for k, v in net.sample_path(rng).items()}
        path[group.name][0] = conv
        drawn.append(path)
        return path

    train_spos(net, signal, epochs=1, batch_size=32, seed=1, sampler=fixed)
    assert drawn and all(p[group.name][0] == conv for p in drawn)
    changed = {k for k, v in net.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, start[k])}
    names = {id(p): k for k, p in net.named_parameters()}
    checked = 0
    for _, row, op in net.mixed_ops():
        for i, cand in enumerate(op.ops):
            params = {names[id(p)] for p in cand.parameters()}
            if row == 0 and params:
                assert bool(params & changed) == (i == conv), (i, params & changed)
                checked += 1
    assert checked >= 2


def test_supernet_evaluator_scores_and_searches_under_a_budget(signal):
    space = tiny_cells(nodes=2)
    ev = SupernetEvaluator(space, signal, epochs=1, batch_size=32)
    arch = space.sample(np.random.default_rng(0))
    m = ev.evaluate(arch)
    assert set(m) == {"supernet_acc", "params", "flops"} and 0 <= m["supernet_acc"] <= 1
    costs = sorted(ev.cheap_metrics(a)["params"] for a in space.enumerate())
    cap = costs[len(costs) // 2]
    ranked = ev.search(12, constraints=[f"params<={cap}"], seed=1)
    assert ranked and all(mm["params"] <= cap for _, mm in ranked)
    assert [mm["supernet_acc"] for _, mm in ranked] == sorted((mm["supernet_acc"] for _, mm in ranked), reverse=True)
    with pytest.raises(ArchscoutError):
        ev.search(5, constraints=["params<=1"])
