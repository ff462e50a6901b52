"""BigNAS / OFA: the elastic macro supernet, sandwich training, BN recalibration, constrained evolution."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.torch

from archscout.build import build_model  # noqa: E402
from archscout.errors import ArchscoutError, SpaceError  # noqa: E402
from archscout.hardware import count_flops, count_params  # noqa: E402
from archscout.oneshot.base import OneShotResult  # noqa: E402
from archscout.oneshot.bignas import (  # noqa: E402
    evolve,
    recalibrate_bn,
    run_bignas,
    subnet_accuracy,
    train_bignas,
)
from archscout.oneshot.elastic import ElasticMacroSupernet  # noqa: E402
from archscout.oneshot.runner import run_method  # noqa: E402
from archscout.space import load_space, space_from_spec  # noqa: E402
from archscout.training.data import load_dataset  # noqa: E402

SPACES = Path(__file__).resolve().parents[2] / "examples" / "spaces"
MB = {"mbconv": [{"name": "kernel", "type": "choice", "options": [3, 5]},
                 {"name": "expansion", "type": "choice", "options": [2, 3]}]}


def _layers(options: list[str], sub: dict) -> dict:
    return {"name": "layers", "type": "repeat", "min_depth": 1, "max_depth": 2,
            "body": [{"name": "block", "type": "choice", "options": options, "sub": sub}]}


def tiny_spec(stage2_blocks: list[str] | None = None) -> dict:
    """Two stages, widths {8, 12}, depth 1..2, kernels {3, 5}, expansions {2, 3}; stage 2 may mix blocks."""
    blocks = stage2_blocks or ["mbconv", "conv", "dwsep"]
    sub2 = {"mbconv": MB["mbconv"] + [{"name": "se", "type": "choice", "options": [False, True]}],
            "conv": [{"name": "kernel", "type": "choice", "options": [3, 5]}],
            "dwsep": [{"name": "kernel", "type": "choice", "options": [3, 5]}]}
    sub2 = {k: v for k, v in sub2.items() if k in blocks}
    return {
        "name": "tiny-elastic",
        "model": {"family": "macro", "stem_width": 8, "stage_strides": [1, 2]},
        "params": [
            {"name": "net", "type": "chain", "stages": [
                [{"name": "width", "type": "choice", "options": [8, 12]}, _layers(["mbconv"], MB)],
                [{"name": "width", "type": "choice", "options": [8, 12]}, _layers(blocks, sub2)],
            ]},
            {"name": "dropout", "type": "choice", "options": [0.0, 0.1]},
        ],
    }


STAGE_LEVEL = {  # stage-level block settings with a depth choice (no per-layer repeat), and a stem choice
    "name": "stage-level",
    "model": {"family": "macro", "stage_strides": [1, 2], "block_defaults": {"act": "silu"}},
    "params": [
        {"name": "stem", "type": "choice", "options": [6, 10]},
        {"name": "net", "type": "chain", "stages": [
            [{"name": "width", "type": "choice", "options": [8, 12]},
             {"name": "depth", "type": "int", "low": 1, "high": 3},
             {"name": "block", "type": "choice", "options": ["mbconv", "dwsep"],
              "sub": {"mbconv": [{"name": "kernel", "type": "choice", "options": [3, 7]},
                                 {"name": "expansion", "type": "choice", "options": [1, 4]},
                                 {"name": "se", "type": "choice", "options": [False, True]}]}}],
            [{"name": "width", "type": "choice", "options": [12, 16]},
             {"name": "block", "type": "choice", "options": ["conv"],
              "sub": {"conv": [{"name": "kernel", "type": "choice", "options": [1, 3]}]}}],
        ]},
    ],
}


@pytest.fixture(scope="module")
def space():
    return space_from_spec(tiny_spec())


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic-signal", seed=0, n=300)


def _archs(net: ElasticMacroSupernet, n: int = 5) -> list:
    rng = np.random.default_rng(1)
    return [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(n)]


def test_subnets_run_with_the_right_shapes(space, data) -> None:
    net = ElasticMacroSupernet(space, data.input_shape, data.num_classes, seed=0)
    largest, smallest = net.largest(), net.smallest()
    assert [s["width"] for s in largest["net"]] == [12, 12] and [len(s["layers"]) for s in largest["net"]] == [2, 2]
    assert all(layer["kernel"] == 5 and layer.get("expansion", 3) == 3 for s in largest["net"] for layer in s["layers"])
    assert [s["width"] for s in smallest["net"]] == [8, 8] and [len(s["layers"]) for s in smallest["net"]] == [1, 1]
    assert smallest["net"][1]["layers"][0]["block"] == "dwsep"
    # the largest subnet uses every weight of a single-kind supernet stage; stand-alone costs order as expected
    big, small = (build_model(space, a, data.input_shape, data.num_classes) for a in (largest, smallest))
    assert count_params(small) < count_params(big)
    x = data.x_train[:5]
    for arch in _archs(net):
        net.set_active(arch)
        assert net(x).shape == (5, data.num_classes)
    img = ElasticMacroSupernet(space, (1, 8, 8), 3, seed=0)
    for arch in _archs(img, 2):
        img.set_active(arch)
        assert img(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_gradients_reach_the_shared_prefix_only(space, data) -> None:
    net = ElasticMacroSupernet(space, data.input_shape, data.num_classes, seed=0)
    net.set_active(net.smallest())          # widths 8 of max 12; stage 0 mbconv k3 e2 of k5 e3
    net(data.x_train[:16]).logsumexp(dim=1).mean().backward()
    stem_grad = net.stem.conv.weight.grad
    assert stem_grad[:8].abs().sum() > 0 and torch.all(stem_grad[8:] == 0)
    block = net.stages[0][0]["mbconv"]
    expand = block.expand.conv.weight.grad      # (12 * 3, 12, 1): active 8 * 2 hidden of 8 inputs
    assert expand[:16, :8].abs().sum() > 0
    assert torch.all(expand[16:] == 0) and torch.all(expand[:, 8:] == 0)
    dw = block.depthwise.conv.weight.grad       # kernel 5, active centre 3
    assert dw[:16, :, 1:4].abs().sum() > 0 and torch.all(dw[:, :, [0, 4]] == 0)
    assert net.stages[0][1]["mbconv"].project.conv.weight.grad is None     # depth 1: second slot unused
    assert net.head.fc.weight.grad[:, :8].abs().sum() > 0 and torch.all(net.head.fc.weight.grad[:, 8:] == 0)


@pytest.mark.parametrize("spec", [tiny_spec(), STAGE_LEVEL], ids=["layers", "stage-level"])
@pytest.mark.parametrize("shape", [(1, 64), (1, 8, 8)], ids=["1d", "2d"])
def test_extract_computes_what_the_supernet_computes(spec, shape) -> None:
    space = space_from_spec(spec)
    net = ElasticMacroSupernet(space, shape, 4, seed=3)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(0))
    for arch in _archs(net, 6):
        net.set_active(arch)
        net.train()
        net(x * 2 + 1)          # move the (sliced) BN running statistics away from their defaults
        net.eval()
        with torch.no_grad():
            expected = net(x)
            model = net.extract(arch).eval()
            got = model(x)
            fresh = build_model(space, arch, shape, 4, seed=0).eval()(x)
        assert (got - expected).abs().max() < 1e-5
        assert (fresh - expected).abs().max() > 1e-3      # the copied weights are what makes them equal
        assert count_params(model) == count_params(build_model(space, arch, shape, 4))


def test_bn_recalibration_sets_the_subnets_statistics(space, data) -> None:
    net = ElasticMacroSupernet(space, data.input_shape, data.num_classes, seed=0)
    net.train()
    net.set_active(net.largest())
    net(data.x_train[:32] * 3.0)        # some other statistics in the shared buffers
    small = net.smallest()
    stem_bn = net.stem.bn.bn
    before = stem_bn.running_mean.clone()
    unused = net.stages[0][1]["mbconv"].project.bn.bn.running_mean.clone()     # slot 1: not in the smallest
    n_layers = recalibrate_bn(net, small, data, batches=1, batch_size=len(data.y_train))
    assert n_layers == 1 + 3 + 2         # stem, mbconv (expand, depthwise, project), dwsep (2)
    with torch.no_grad():
        w = net.stem.conv.weight[:8]
        y = torch.nn.functional.conv1d(data.x_train, w, padding=1)
    assert torch.allclose(stem_bn.running_mean[:8], y.mean(dim=(0, 2)), atol=1e-5)
    assert torch.allclose(stem_bn.running_var[:8], y.transpose(0, 1).reshape(8, -1).var(dim=1), rtol=1e-4)
    assert not torch.allclose(before[:8], stem_bn.running_mean[:8])
    assert torch.equal(before[8:], stem_bn.running_mean[8:])                    # beyond the active width
    assert torch.equal(unused, net.stages[0][1]["mbconv"].project.bn.bn.running_mean)
    assert net.active == small and net.training      # the mode is restored


def test_training_is_deterministic_and_learns(space, data) -> None:
    def run(seed: int, distill: bool = True, epochs: int = 2):
        net = ElasticMacroSupernet(space, data.input_shape, data.num_classes, seed=0)
        log = train_bignas(net, data, epochs=epochs, batch_size=64, lr=5e-3, n_random=1, distill=distill, seed=seed)
        return net, log

    net_a, log_a = run(0)
    net_b, log_b = run(0)
    net_c, _ = run(1)
    strip = [{k: v for k, v in e.items() if k != "epoch_s"} for e in log_a["history"]]
    assert strip == [{k: v for k, v in e.items() if k != "epoch_s"} for e in log_b["history"]]
    assert all(torch.equal(p, q) for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(net_a.state_dict().values(), net_c.state_dict().values()))
    assert log_a["steps"] == 2 * 3 and len(log_a["history"]) == 2 and log_a["seconds"] > 0
    assert log_a["history"][-1]["loss_largest"] < log_a["history"][0]["loss_largest"]
    assert {"loss_others", "valid_acc_largest", "valid_acc_smallest", "lr"} <= set(log_a["history"][0])
    net_d, log_d = run(0, distill=False, epochs=1)    # labels for every subnet: another objective, other weights
    assert log_d["history"][0]["loss_others"] > log_a["history"][0]["loss_others"]
    acc = subnet_accuracy(net_a, net_a.smallest(), data, "valid")
    assert 0.0 <= acc <= 1.0 and net_a.active == net_a.smallest()


def test_evolve_respects_the_budget_and_is_deterministic(space, data) -> None:
    net = ElasticMacroSupernet(space, data.input_shape, data.num_classes, seed=0)
    train_bignas(net, data, epochs=1, batch_size=64, n_random=1, seed=0)
    costs = [count_flops(build_model(space, a, data.input_shape, data.num_classes), data.input_shape)
             for a in (net.smallest(), net.largest())]
    budget = costs[0] + 0.3 * (costs[1] - costs[0])
    found = evolve(net, space, data, budgets={"flops": budget}, population=6, generations=2, seed=0)
    again = evolve(net, space, data, budgets={"flops": budget}, population=6, generations=2, seed=0)
    assert [c.arch.key for c in found] == [c.arch.key for c in again]
    assert [c.accuracy for c in found] == [c.accuracy for c in again]
    assert len(found) >= 6 and len({net.subnet_key(c.arch) for c in found}) == len(found)     # distinct subnets
    assert [c.accuracy for c in found] == sorted((c.accuracy for c in found), reverse=True)
    for c in found[:8]:
        assert space.make(c.arch.to_dict()) == c.arch
        model = build_model(space, c.arch, data.input_shape, data.num_classes)
        assert count_flops(model, data.input_shape) == c.costs["flops"] <= budget
        assert c.costs["params"] == count_params(model)
        assert c.scores()["supernet_acc"] == c.accuracy
    as_text = evolve(net, space, data, constraints=[f"flops <= {budget}"], population=6, generations=2, seed=0)
    assert [c.arch.key for c in as_text] == [c.arch.key for c in found]
    with pytest.raises(ArchscoutError, match="meets the budget flops<=10"):
        evolve(net, space, data, budgets={"flops": 10}, population=4, generations=1, init_tries=25)
    with pytest.raises(ArchscoutError, match="not a cost metric"):
        evolve(net, space, data, budgets={"energy_mj": 1.0}, population=4, generations=1)
    # a custom cost function (as a latency table would give) is used as given
    fake = evolve(net, space, data, budgets={"latency_ms": 2.0}, population=4, generations=1, seed=0,
                  cost_fn=lambda a: {"latency_ms": float(sum(len(s["layers"]) for s in a["net"]))})
    assert all(c.costs["latency_ms"] <= 2.0 for c in fake)
    assert all(len(s["layers"]) == 1 for c in fake for s in c.arch["net"])


def test_run_bignas_returns_a_oneshot_result(space, data) -> None:
    result = run_method("bignas", space, data, constraints=["params <= 2000"], seed=0, epochs=1, population=4,
                        generations=1, n_random=1, top_k=3)
    assert isinstance(result, OneShotResult) and result.method == "bignas"
    assert 1 <= len(result.archs) <= 3 and len(result.scores) == len(result.archs)
    for arch, score in zip(result.archs, result.scores):
        assert space.make(arch.to_dict()) == arch
        assert score["params"] <= 2000 and 0.0 <= score["supernet_acc"] <= 1.0
    assert len(result.history) == 1 and result.search_s > 0
    assert result.info["evaluated"] >= len(result.archs) and "supernet" not in result.info
    assert result.info["constraints"] == ["params <= 2000"]
    kept = run_bignas(space, data, epochs=1, budgets={"params": 2000}, seed=0, population=4, generations=1,
                      n_random=1, top_k=3, keep_supernet=True)
    assert [a.key for a in kept.archs] == [a.key for a in result.archs]
    assert isinstance(kept.info["supernet"], ElasticMacroSupernet)


def test_unsupported_blocks_and_families_are_rejected(data) -> None:
    with pytest.raises(SpaceError, match=r"support mbconv/conv/dwsep.*'attention'"):
        ElasticMacroSupernet(space_from_spec(tiny_spec(["mbconv", "attention"])), (1, 64), 4)
    with pytest.raises(SpaceError, match=r"support mbconv/conv/dwsep.*'resnet_basic'"):
        ElasticMacroSupernet(load_space(SPACES / "macro_net.yaml"), (1, 40), 10)
    with pytest.raises(SpaceError, match="macro-family"):
        ElasticMacroSupernet(load_space(SPACES / "nb201_net.yaml"), (1, 40), 10)


def test_ofa_example_space_builds_an_exact_supernet() -> None:
    space = load_space(SPACES / "ofa_net.yaml")
    net = ElasticMacroSupernet(space, (1, 40), 10, seed=0)
    largest = net.largest()
    assert count_params(net) == count_params(build_model(space, largest, (1, 40), 10))
    x = torch.randn(4, 1, 40, generator=torch.Generator().manual_seed(0))
    net.eval()
    for arch in (largest, net.smallest(), net.sample(np.random.default_rng(0))):
        net.set_active(arch)
        with torch.no_grad():
            assert (net.extract(arch).eval()(x) - net(x)).abs().max() < 1e-5
