"""Training-free proxies: finite, deterministic, order-invariant, side-effect free; the proxy evaluator."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.torch

from archscout.build import build_model  # noqa: E402
from archscout.errors import ArchscoutError  # noqa: E402
from archscout.hardware import count_flops, count_params  # noqa: E402
from archscout.proxies import PROXIES, ProxyEvaluator, compute_proxies, compute_proxy, make_prior  # noqa: E402
from archscout.proxies.scores import (NASWOT_SINGULAR, SYNFLOW_FLOOR, ZICO_FLOOR, jacob_cov_score,  # noqa: E402
                                      minibatch)
from archscout.space import SearchSpace  # noqa: E402
from archscout.space.spec import load_space, space_from_spec  # noqa: E402
from archscout.training import load_dataset  # noqa: E402
from archscout.training.data import TaskData  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "src/archscout/reference/mnist1d_cells.space.yaml"
MACRO = ROOT / "examples/spaces/macro_net.yaml"
# Proxies whose math does not depend on the order of the samples in the batch (all but the
# count-based ones, which read no batch at all, and zico, which splits the batch into two halves
# in the order given: its score depends on which samples land in which half).
ORDER_INVARIANT = ("synflow", "snip", "grasp", "fisher", "grad_norm", "jacob_cov", "naswot", "epsinas")
NONE_CELL = [{"inputs": [0], "ops": ["none"]}, {"inputs": [0, 1], "ops": ["none", "none"]}]
CONV_CELL = [{"inputs": [0], "ops": ["nor_conv_3x3"]}, {"inputs": [0, 1], "ops": ["skip_connect", "sep_conv_3x3"]}]


@pytest.fixture(scope="module")
def reference() -> SearchSpace:
    return load_space(REFERENCE)


@pytest.fixture(scope="module")
def degenerate() -> SearchSpace:
    """The reference space with cells whose output is all zeros allowed (it excludes them)."""
    spec = yaml.safe_load(REFERENCE.read_text())
    spec["params"][0]["allow_degenerate"] = True
    return space_from_spec(spec)


@pytest.fixture(scope="module")
def mnist1d() -> TaskData:
    return load_dataset("mnist1d", seed=0)


@pytest.fixture(scope="module")
def macro() -> SearchSpace:
    return load_space(MACRO)


@pytest.fixture(scope="module")
def signal() -> TaskData:
    return load_dataset("synthetic-signal", seed=0, n=200)


def _reference_model(space: SearchSpace, data: TaskData, cell: list, seed: int = 0):
    return build_model(space, space.make({"cell": cell}), data.input_shape, data.num_classes, seed=seed)


def _macro_model(space: SearchSpace, data: TaskData, seed: int = 0):
    arch = space.sample(np.random.default_rng(5))
    return build_model(space, arch, data.input_shape, data.num_classes, seed=seed)


@pytest.mark.parametrize("proxy", PROXIES)
def test_reference_model_scores_are_finite_and_deterministic(proxy: str, reference: SearchSpace,
                                                             mnist1d: TaskData) -> None:
    a = compute_proxy(proxy, _reference_model(reference, mnist1d, CONV_CELL), mnist1d, batch_size=32, seed=3)
    b = compute_proxy(proxy, _reference_model(reference, mnist1d, CONV_CELL), mnist1d, batch_size=32, seed=3)
    assert math.isfinite(a) and a == b


@pytest.mark.parametrize("proxy", PROXIES)
def test_macro_model_scores_are_finite_and_deterministic(proxy: str, macro: SearchSpace, signal: TaskData) -> None:
    a = compute_proxy(proxy, _macro_model(macro, signal), signal, batch_size=16, seed=1)
    b = compute_proxy(proxy, _macro_model(macro, signal), signal, batch_size=16, seed=1)
    assert math.isfinite(a) and a == b


def test_scores_depend_on_the_batch_seed_and_the_architecture(reference: SearchSpace, mnist1d: TaskData) -> None:
    model = _reference_model(reference, mnist1d, CONV_CELL)
    assert compute_proxy("snip", model, mnist1d, seed=0) != compute_proxy("snip", model, mnist1d, seed=1)
    other = _reference_model(reference, mnist1d, [{"inputs": [0], "ops": ["avg_pool_3x3"]},
                                                  {"inputs": [0, 1], "ops": ["none", "max_pool_3x3"]}])
    for proxy in ("synflow", "naswot", "epsinas", "params"):
        assert compute_proxy(proxy, model, mnist1d) != compute_proxy(proxy, other, mnist1d)


def test_minibatch_is_a_seeded_subset_of_the_training_split(mnist1d: TaskData) -> None:
    x, y = minibatch(mnist1d, 64, seed=2)
    x2, _ = minibatch(mnist1d, 64, seed=2)
    assert x.shape == (64, *mnist1d.input_shape) and torch.equal(x, x2)
    assert not torch.equal(x, minibatch(mnist1d, 64, seed=3)[0])
    with pytest.raises(ArchscoutError):
        minibatch(mnist1d, 1)


@pytest.mark.parametrize("proxy", ORDER_INVARIANT)
def test_scores_do_not_depend_on_the_order_of_the_batch(proxy: str, reference: SearchSpace,
                                                         mnist1d: TaskData) -> None:
    # a training split of exactly one batch: the proxy sees the same samples, shuffled differently
    x, y = mnist1d.x_train[:24], mnist1d.y_train[:24]
    flip = torch.arange(23, -1, -1)
    one = dataclasses.replace(mnist1d, x_train=x, y_train=y)
    other = dataclasses.replace(mnist1d, x_train=x[flip], y_train=y[flip])
    model = _reference_model(reference, mnist1d, CONV_CELL)
    assert not torch.equal(minibatch(one, 24)[0], minibatch(other, 24)[0])
    a = compute_proxy(proxy, model, one, batch_size=24)
    b = compute_proxy(proxy, model, other, batch_size=24)
    assert a == pytest.approx(b, rel=1e-5, abs=1e-9)


def test_the_model_is_left_as_it_was(reference: SearchSpace, mnist1d: TaskData) -> None:
    model = _reference_model(reference, mnist1d, CONV_CELL)
    model.eval()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    compute_proxies(PROXIES, model, mnist1d, batch_size=16)
    assert not model.training and not any(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    model.train()
    compute_proxy("naswot", model, mnist1d, batch_size=16)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("cell", [NONE_CELL, [{"inputs": [0], "ops": ["nor_conv_3x3"]},
                                             {"inputs": [0, 1], "ops": ["none", "none"]}]])
def test_a_cell_with_only_none_paths_gets_finite_bottom_scores(cell: list, reference: SearchSpace,
                                                               degenerate: SearchSpace, mnist1d: TaskData) -> None:
    dead = _reference_model(degenerate, mnist1d, cell)
    live = _reference_model(reference, mnist1d, CONV_CELL)
    scores = compute_proxies(PROXIES, dead, mnist1d)
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["synflow"] == SYNFLOW_FLOOR          # no path from input to output
    assert scores["epsinas"] == 0.0                    # constant output
    assert scores["zico"] == ZICO_FLOOR                # no layer with a varying gradient
    assert scores["snip"] == 0.0 and scores["grad_norm"] == 0.0     # no gradient reaches a weight
    assert scores["jacob_cov"] == pytest.approx(jacob_cov_score(np.ones((64, 40))))  # rank-1: the minimum
    live_scores = compute_proxies(PROXIES, live, mnist1d)
    for proxy in ("synflow", "snip", "grad_norm", "fisher", "jacob_cov", "naswot", "epsinas", "zico"):
        assert live_scores[proxy] > scores[proxy], proxy


def test_jacob_cov_score_prefers_uncorrelated_jacobians() -> None:
    rng = np.random.default_rng(0)
    independent = jacob_cov_score(rng.normal(size=(16, 200)))
    shared = rng.normal(size=(1, 200))
    correlated = jacob_cov_score(shared + 0.1 * rng.normal(size=(16, 200)))
    identical = jacob_cov_score(np.repeat(shared, 16, axis=0))
    dead = jacob_cov_score(np.zeros((16, 200)))
    assert independent > correlated > identical
    assert dead == pytest.approx(identical)
    assert all(math.isfinite(v) for v in (independent, correlated, identical, dead))


def test_naswot_without_relus_is_singular(mnist1d: TaskData) -> None:
    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(40, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    assert compute_proxy("naswot", Linear(), mnist1d) == NASWOT_SINGULAR


class _TwoLayer(torch.nn.Module):
    """A 2-layer MLP on MNIST-1D; ``dead=True`` adds a linear layer that is never used and one whose
    output is multiplied by zero, so neither gets a gradient that depends on the data."""

    def __init__(self, dead: bool = False) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.fc1 = torch.nn.Linear(40, 16)
            self.fc2 = torch.nn.Linear(16, 10)
            self.dead = dead
            if dead:
                self.unused = torch.nn.Linear(40, 10)
                self.zeroed = torch.nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(torch.relu(self.fc1(x.flatten(1))))
        return out + 0.0 * self.zeroed(x.flatten(1)) if self.dead else out


def test_zico_ignores_layers_the_output_does_not_depend_on(mnist1d: TaskData) -> None:
    live = compute_proxy("zico", _TwoLayer(), mnist1d, batch_size=32, seed=1)
    dead = compute_proxy("zico", _TwoLayer(dead=True), mnist1d, batch_size=32, seed=1)
    assert math.isfinite(dead) and live > 0
    assert dead == pytest.approx(live, rel=1e-9)  # the two extra layers add nothing


def test_zico_depends_on_the_split_into_halves(reference: SearchSpace, mnist1d: TaskData) -> None:
    x, y = mnist1d.x_train[:24], mnist1d.y_train[:24]
    mix = torch.tensor([0, 12, 1, 13, 2, 14, 3, 15, 4, 16, 5, 17, 6, 18, 7, 19, 8, 20, 9, 21, 10, 22, 11, 23])
    model = _reference_model(reference, mnist1d, CONV_CELL)
    one = compute_proxy("zico", model, dataclasses.replace(mnist1d, x_train=x, y_train=y), batch_size=24)
    other = compute_proxy("zico", model, dataclasses.replace(mnist1d, x_train=x[mix], y_train=y[mix]), batch_size=24)
    assert math.isfinite(one) and math.isfinite(other) and one != pytest.approx(other, rel=1e-6)


def test_zico_needs_two_halves_of_two_samples(reference: SearchSpace, mnist1d: TaskData) -> None:
    model = _reference_model(reference, mnist1d, CONV_CELL)
    for size in (2, 3):
        with pytest.raises(ArchscoutError, match=r"zico needs a batch of at least 4 samples") as info:
            compute_proxy("zico", model, mnist1d, batch_size=size)
        assert "\n" not in str(info.value)
    assert math.isfinite(compute_proxy("zico", model, mnist1d, batch_size=5))  # odd: the last sample is dropped
    with pytest.raises(ArchscoutError, match=">= 4 for zico"):
        ProxyEvaluator(reference, mnist1d, "zico", batch_size=3)


def test_count_proxies_match_the_hardware_counts(reference: SearchSpace, mnist1d: TaskData) -> None:
    model = _reference_model(reference, mnist1d, CONV_CELL)
    assert compute_proxy("params", model, mnist1d) == count_params(model)
    assert compute_proxy("flops", model, mnist1d) == count_flops(model, mnist1d.input_shape)


def test_compute_proxies_builds_once_and_keeps_the_order(reference: SearchSpace, mnist1d: TaskData) -> None:
    calls = []

    def factory():
        calls.append(1)
        return _reference_model(reference, mnist1d, CONV_CELL)

    out = compute_proxies(["naswot", "params", "synflow"], factory, mnist1d)
    assert list(out) == ["naswot", "params", "synflow"] and len(calls) == 1
    with pytest.raises(ArchscoutError, match="synflow"):
        compute_proxies(["bogus"], factory, mnist1d)


# -- the evaluator and priors --------------------------------------------------------------------------
def test_proxy_evaluator_reports_the_score_and_costs(reference: SearchSpace, mnist1d: TaskData) -> None:
    ev = ProxyEvaluator(reference, mnist1d, "naswot", batch_size=32, seed=2, costs=["macs"])
    arch = reference.make({"cell": CONV_CELL})
    metrics = ev.evaluate(arch)
    model = build_model(reference, arch, mnist1d.input_shape, mnist1d.num_classes, seed=2)
    assert set(metrics) == {"naswot", "params", "flops", "macs"} == set(ev.metric_names)
    assert metrics["naswot"] == compute_proxy("naswot", model, mnist1d, batch_size=32, seed=2)
    assert metrics["params"] == count_params(model) and metrics["macs"] == metrics["flops"] // 2
    assert ev.evaluate(arch) == metrics
    assert ev.cheap_metrics(arch) == {"macs": metrics["macs"]}
    assert ev.default_objectives == ("naswot:max",)
    assert ev.describe() == {"name": "proxy:naswot", "proxy": "naswot", "dataset": "mnist1d", "batch_size": 32,
                             "seed": 2, "costs": ["macs"]}


def test_proxy_evaluator_loads_datasets_by_name(macro: SearchSpace) -> None:
    ev = ProxyEvaluator(macro, "synthetic-signal", "synflow", batch_size=8)
    metrics = ev.evaluate(macro.sample(np.random.default_rng(0)))
    assert math.isfinite(metrics["synflow"]) and metrics["params"] > 0


def test_unknown_proxy_or_cost_is_a_one_line_error(reference: SearchSpace, mnist1d: TaskData) -> None:
    with pytest.raises(ArchscoutError, match="unknown proxy 'zen'.*synflow.*naswot"):
        ProxyEvaluator(reference, mnist1d, "zen")
    with pytest.raises(ArchscoutError, match="lut_latency_ms"):
        ProxyEvaluator(reference, mnist1d, "snip", costs=["lut_latency_ms"])
    with pytest.raises(ArchscoutError, match="unknown proxy"):
        compute_proxy("zen", _reference_model(reference, mnist1d, CONV_CELL), mnist1d)


def test_make_prior_caches_per_architecture_key(reference: SearchSpace, mnist1d: TaskData) -> None:
    prior = make_prior(reference, mnist1d, "epsinas", batch_size=32)
    arch = reference.make({"cell": CONV_CELL})
    value = prior(arch)
    assert value == prior(reference.make({"cell": CONV_CELL})) and len(prior) == 1
    model = build_model(reference, arch, mnist1d.input_shape, mnist1d.num_classes, seed=0)
    assert value == compute_proxy("epsinas", model, mnist1d, batch_size=32)
