"""Tests for the trainer (archscout.training.trainer): prefix property, determinism, recipes, failures."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torch.set_num_threads(1)

from torch import nn  # noqa: E402

from archscout.errors import EvaluationError  # noqa: E402
from archscout.training import Recipe, TaskData, Trainer, load_dataset  # noqa: E402

CURVE_KEYS = {"epoch", "train_loss", "valid_loss", "valid_acc", "lr", "epoch_s"}


@pytest.fixture(scope="module")
def digits() -> TaskData:
    return load_dataset("digits", seed=0)


def mlp(init_seed: int = 0) -> nn.Module:
    """Tiny MLP with dropout, so the global RNG matters."""
    torch.manual_seed(init_seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))


def cnn(init_seed: int = 0) -> nn.Module:
    torch.manual_seed(init_seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_time(curve: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "epoch_s"} for e in curve]


@pytest.mark.parametrize("make,recipe", [
    (mlp, Recipe(epochs=8, warmup_epochs=1.0)),
    (cnn, Recipe(epochs=8, optimizer="sgd", lr=0.05, schedule="step", augment="shift+flip", label_smoothing=0.1)),
])
def test_prefix_property_and_checkpoint_resume(digits: TaskData, make, recipe: Recipe) -> None:
    straight = Trainer(make(), digits, recipe, seed=7)
    straight.train_to(6)
    staged = Trainer(make(), digits, recipe, seed=7)
    first = staged.train_to(3)
    ckpt = staged.state_dict()
    second = staged.train_to(6)
    assert len(first) == 3 and len(second) == 3 and staged.epoch == 6
    assert same_weights(weights(straight.model), weights(staged.model))
    assert without_time(straight.curve) == without_time(staged.curve) == without_time(first + second)
    # a new trainer over a freshly (differently) initialised model continues from the checkpoint
    resumed = Trainer(make(init_seed=99), digits, recipe, seed=7)
    resumed.load_state_dict(ckpt)
    assert resumed.epoch == 3 and without_time(resumed.curve) == without_time(first)
    resumed.train_to(6)
    assert same_weights(weights(straight.model), weights(resumed.model))
    assert without_time(resumed.curve) == without_time(straight.curve)
    # the checkpoint was a copy: training on did not change it
    again = Trainer(make(init_seed=5), digits, recipe, seed=7)
    again.load_state_dict(ckpt)
    assert again.epoch == 3 and not same_weights(weights(again.model), weights(straight.model))


def test_determinism_threads_and_global_rng_restored(digits: TaskData) -> None:
    recipe = Recipe(epochs=3, threads=2)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    runs = []
    for _ in range(2):
        t = Trainer(mlp(), digits, recipe, seed=1)
        torch.set_rng_state(rng_before)
        t.train_to(3)
        assert torch.get_num_threads() == 1                                     # restored after training
        assert torch.equal(torch.get_rng_state(), rng_before)                   # caller's RNG untouched
        runs.append((without_time(t.curve), t.evaluate("test"), weights(t.model)))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1] and same_weights(runs[0][2], runs[1][2])
    other = Trainer(mlp(), digits, recipe, seed=2)
    other.train_to(3)
    assert without_time(other.curve) != runs[0][0]                              # the seed matters


def test_learns_digits_and_reports_a_full_curve(digits: TaskData) -> None:
    t = Trainer(cnn(), digits, Recipe(epochs=4, lr=1e-2), seed=0)
    seen: list[int] = []
    new = t.train_to(4, on_epoch=lambda e, m: seen.append(e) and False)
    assert seen == [1, 2, 3, 4] and len(new) == 4 and t.curve == new
    assert all(set(e) == CURVE_KEYS for e in t.curve) and [e["epoch"] for e in t.curve] == [1, 2, 3, 4]
    assert t.curve[-1]["train_loss"] < t.curve[0]["train_loss"]
    assert t.curve[-1]["valid_acc"] > 0.6 and all(e["epoch_s"] > 0 for e in t.curve)
    test = t.evaluate("test")
    assert set(test) == {"loss", "accuracy"} and 0.6 < test["accuracy"] <= 1.0 and math.isfinite(test["loss"])
    assert t.model.training                                                     # evaluate restores the mode
    assert t.train_to(2) == [] and t.epoch == 4
    with pytest.raises(EvaluationError, match="0..4"):
        t.train_to(5)
    with pytest.raises(EvaluationError, match="unknown split"):
        t.evaluate("holdout")


def test_on_epoch_true_stops_early(digits: TaskData) -> None:
    t = Trainer(mlp(), digits, Recipe(epochs=10), seed=0)
    new = t.train_to(10, on_epoch=lambda epoch, metrics: epoch >= 2)
    assert len(new) == 2 and t.epoch == 2 and len(t.curve) == 2


def test_lr_schedules_span_the_full_recipe(digits: TaskData) -> None:
    steps = math.ceil(len(digits.y_train) / 64)
    cos = Trainer(mlp(), digits, Recipe(epochs=4, lr=0.1, warmup_epochs=1.0), seed=0)
    assert cos.lr_at(0) == pytest.approx(0.1 / steps)
    assert cos.lr_at(steps - 1) == pytest.approx(0.1)
    lrs = [cos.lr_at(s) for s in range(steps, 4 * steps)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.01
    cos.train_to(2)
    assert cos.curve[-1]["lr"] == pytest.approx(cos.lr_at(2 * steps - 1))       # over 4 epochs, not 2
    step = Trainer(mlp(), digits, Recipe(epochs=4, lr=0.1, schedule="step"), seed=0)
    assert [step.lr_at(s) for s in (0, 2 * steps, 3 * steps)] == pytest.approx([0.1, 0.01, 0.001])
    const = Trainer(mlp(), digits, Recipe(epochs=4, lr=0.1, schedule="constant"), seed=0)
    assert const.lr_at(4 * steps - 1) == 0.1


class AuxProbe(nn.Module):
    """Identity that reports an auxiliary loss depending only on its own, otherwise unused, parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.aux_loss = (self.p ** 2).sum()
        return x


def test_auxiliary_losses_are_added(digits: TaskData) -> None:
    def run(aux_weight: float) -> torch.Tensor:
        torch.manual_seed(0)
        probe = AuxProbe()
        model = nn.Sequential(nn.Flatten(), probe, nn.Linear(64, 10))
        t = Trainer(model, digits, Recipe(epochs=1, optimizer="sgd", lr=0.05, weight_decay=0.0,
                                          aux_weight=aux_weight), seed=0)
        t.train_to(1)
        return probe.p.detach()

    assert torch.equal(run(0.0), torch.ones(3))                                 # no gradient without the weight
    assert (run(1.0) < 0.5).all()                                               # pulled towards 0 by the aux loss


class Poison(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


def test_divergence_and_bad_models_raise(digits: TaskData) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), Poison())
    with pytest.raises(EvaluationError, match=r"^training diverged at epoch 1 \(loss nan\)$"):
        Trainer(model, digits, Recipe(epochs=2)).train_to(2)
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(EvaluationError, match="expected"):
        Trainer(wrong, digits, Recipe(epochs=1)).train_to(1)
    with pytest.raises(EvaluationError, match="no trainable parameters"):
        Trainer(nn.Flatten(), digits, Recipe(epochs=1))


def test_checkpoint_mismatches_are_refused(digits: TaskData) -> None:
    t = Trainer(mlp(), digits, Recipe(epochs=2), seed=0)
    t.train_to(1)
    ckpt = t.state_dict()
    with pytest.raises(EvaluationError, match="seed"):
        Trainer(mlp(), digits, Recipe(epochs=2), seed=1).load_state_dict(ckpt)
    with pytest.raises(EvaluationError, match="lr"):
        Trainer(mlp(), digits, Recipe(epochs=2, lr=0.1), seed=0).load_state_dict(ckpt)
    with pytest.raises(EvaluationError, match="does not fit"):
        Trainer(cnn(), digits, Recipe(epochs=2), seed=0).load_state_dict(ckpt)
    Trainer(mlp(), digits, Recipe(epochs=2, threads=2), seed=0).load_state_dict(ckpt)  # threads may differ


def test_token_task_trains_and_rejects_augmentation() -> None:
    seq = load_dataset("synthetic-seq", n=300, length=8, vocab=6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(6, 8), nn.Flatten(), nn.Linear(64, 2))
    t = Trainer(model, seq, Recipe(epochs=2, lr=1e-2), seed=0)
    t.train_to(2)
    assert 0.0 <= t.evaluate("test")["accuracy"] <= 1.0
    with pytest.raises(EvaluationError, match="token ids"):
        Trainer(model, seq, Recipe(epochs=1, augment="noise"))


def test_custom_augment_callable_is_used(digits: TaskData) -> None:
    calls: list[int] = []

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(len(x))
        return x + 0.01 * torch.randn(x.shape, generator=g)

    Trainer(mlp(), digits, Recipe(epochs=1), augment=augment).train_to(1)
    assert sum(calls) == len(digits.y_train)                                   # every sample, once per epoch


def test_recipe_from_dict_and_validation() -> None:
    r = Recipe.from_dict({"epochs": 10.0, "lr": "3e-3", "grad_clip": "none", "augment": "null",
                          "optimizer": "SGD", "batch_size": "32"})
    assert r == Recipe(epochs=10, lr=3e-3, grad_clip=None, augment=None, optimizer="sgd", batch_size=32)
    assert Recipe.from_dict(r.to_dict()) == r
    assert r.replace(lr=0.1).lr == 0.1 and r.lr == 3e-3
    bad = [{"optimiser": "sgd"}, {"optimizer": "lion"}, {"schedule": "linear"}, {"epochs": 0}, {"lr": -1},
           {"lr": "fast"}, {"label_smoothing": 1.0}, {"grad_clip": 0}, {"augment": "rotate"},
           {"warmup_epochs": 50}, {"threads": 0}, {"batch_size": 2.5}]
    for d in bad:
        with pytest.raises(EvaluationError) as exc:
            Recipe.from_dict(d)
        assert "\n" not in str(exc.value)
    with pytest.raises(EvaluationError, match="unknown recipe setting"):
        Recipe().replace(momentum=0.9)
    with pytest.raises(EvaluationError, match="optimizer"):
        Recipe(optimizer="rmsprop")
