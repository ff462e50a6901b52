"""The training evaluator: deterministic, continues promoted trials, costs as metrics and budgets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.torch

from archscout.errors import ArchscoutError, SpaceError  # noqa: E402
from archscout.problem import Objective, Problem, parse_constraints  # noqa: E402
from archscout.space import Choice, SearchSpace  # noqa: E402
from archscout.space.spec import load_space  # noqa: E402
from archscout.strategies import make_strategy  # noqa: E402
from archscout.study import Study  # noqa: E402
from archscout.study.fidelity import SuccessiveHalving  # noqa: E402
from archscout.training import load_dataset  # noqa: E402
from archscout.training.evaluator import TrainingEvaluator  # noqa: E402
from archscout.trial import TrialState  # noqa: E402

SPACES = Path(__file__).resolve().parents[2] / "examples" / "spaces"
RECIPE = {"epochs": 4, "batch_size": 128}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return load_space(SPACES / "macro_net.yaml")


def _arch(space: SearchSpace, seed: int = 0):
    return space.sample(np.random.default_rng(seed))


def _no_time(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "train_s"}


def test_evaluation_is_deterministic_for_a_seed(space, digits) -> None:
    arch = _arch(space)
    a = TrainingEvaluator(space, digits, RECIPE, seed=0).evaluate(arch)
    b = TrainingEvaluator(space, digits, RECIPE, seed=0).evaluate(arch)
    c = TrainingEvaluator(space, digits, RECIPE, seed=1).evaluate(arch)
    assert _no_time(a) == _no_time(b)
    assert _no_time(a) != _no_time(c)
    assert set(a) >= {"valid_acc", "valid_loss", "train_loss", "test_acc", "test_loss", "epochs", "train_s"}
    assert a["epochs"] == 4 and 0.0 <= a["valid_acc"] <= 1.0


def test_promotion_continues_from_the_checkpoint_and_equals_training_straight_through(space, digits) -> None:
    arch = _arch(space, 2)
    steps: list[float] = []
    ev = TrainingEvaluator(space, digits, RECIPE)
    low = ev.evaluate_curve(arch, 2, lambda s, m: steps.append(s) or False)
    high = ev.evaluate_curve(arch, 4, lambda s, m: steps.append(s) or False)
    assert steps == [1.0, 2.0, 3.0, 4.0]  # epochs 1-2 were not trained again
    straight = TrainingEvaluator(space, digits, RECIPE).evaluate(arch)
    assert _no_time(high) == _no_time(straight)
    assert low["epochs"] == 2.0


def test_on_step_can_stop_training_early(space, digits) -> None:
    ev = TrainingEvaluator(space, digits, RECIPE)
    out = ev.evaluate_curve(_arch(space), None, lambda step, m: step >= 2)
    assert out["epochs"] == 2.0


def test_architecture_hyperparameters_override_the_recipe(digits) -> None:
    space = SearchSpace([Choice("lr", [0.5, 1e-3])], model={"family": "macro", "widths": [8]})
    with pytest.raises(SpaceError):  # no chain: cannot be built, but the recipe logic is separate
        TrainingEvaluator(space, digits, RECIPE).build(space.make({"lr": 0.5}))
    ev = TrainingEvaluator(space, digits, RECIPE)
    assert ev.recipe_for(space.make({"lr": 0.5})).lr == 0.5
    assert ev.recipe_for(space.make({"lr": 1e-3})).lr == 1e-3


def test_cost_metrics_are_cheap_metrics_and_enforce_budgets_before_training(space, digits) -> None:
    ev = TrainingEvaluator(space, digits, RECIPE, costs=["params", "flops", "latency_ms"])
    arch = _arch(space, 3)
    cheap = ev.cheap_metrics(arch)
    assert set(cheap) == {"params", "flops", "latency_ms"}
    assert cheap["params"] == sum(p.numel() for p in ev.build(arch).parameters())
    limit = sorted(ev.cheap_metrics(_arch(space, s))["params"] for s in range(10))[3]
    problem = Problem(space, [Objective("valid_acc")], parse_constraints([f"params <= {limit}"]),
                      cheap_metrics=ev.cheap_metrics)
    strategy = make_strategy("random", problem, 0)
    for arch in strategy.ask(5):
        assert ev.cheap_metrics(arch)["params"] <= limit
    assert strategy.rejected > 0
    with pytest.raises(ArchscoutError, match="unknown cost metric"):
        TrainingEvaluator(space, digits, RECIPE, costs=["watts"])
    with pytest.raises(ArchscoutError, match="latency table"):
        TrainingEvaluator(space, digits, RECIPE, costs=["lut_latency_ms"])


def test_successive_halving_study_on_digits(space, digits) -> None:
    ev = TrainingEvaluator(space, digits, {"epochs": 3, "batch_size": 128})
    problem = Problem(space, [Objective("valid_acc")], cheap_metrics=ev.cheap_metrics)
    study = Study(problem, make_strategy("bo", problem, 0, initial=3, pool_size=500), ev)
    study.optimize(6, schedule=SuccessiveHalving(1, 3, eta=3))
    states = [t.state for t in study.trials.values()]
    assert len(states) == 6
    assert states.count(TrialState.COMPLETE) == 2 and states.count(TrialState.PRUNED) == 4
    best = study.best()
    assert best.fidelity == 3.0 and best.metrics["epochs"] == 3.0
    assert [s for s, _ in best.curve] == [1.0, 2.0, 3.0]


def test_several_training_seeds_are_averaged(space, digits) -> None:
    arch = _arch(space)
    one = TrainingEvaluator(space, digits, {"epochs": 2, "batch_size": 128}, seed=0).evaluate(arch)
    other = TrainingEvaluator(space, digits, {"epochs": 2, "batch_size": 128}, seed=1).evaluate(arch)
    both = TrainingEvaluator(space, digits, {"epochs": 2, "batch_size": 128}, seed=0, seeds=2).evaluate(arch)
    assert both["valid_acc"] == pytest.approx((one["valid_acc"] + other["valid_acc"]) / 2)
