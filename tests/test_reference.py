"""The shipped MNIST-1D reference benchmark is complete and matches its recipe (no torch for
the table; the data split needs the torch extra)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from archscout.evaluators.tabular import load_tabular
from archscout.reference import reference_data, reference_recipe, reference_space, reference_table
from archscout.space import load_space


def test_every_distinct_architecture_has_one_entry_per_recipe_seed() -> None:
    recipe = reference_recipe()
    space = load_space(reference_space())
    doc = json.loads(reference_table().read_text())
    per_arch = Counter(space.make(e["arch"]).key for e in doc["entries"])
    distinct = {a.key for a in space.enumerate()}
    assert set(per_arch) == distinct and len(distinct) == 692
    assert set(per_arch.values()) == {len(recipe["seeds"])}
    assert len(recipe["seeds"]) >= 2
    metrics = doc["entries"][0]["metrics"]
    assert {"valid_acc", "test_acc", "train_s", "params", "flops"} <= set(metrics)


def test_the_table_averages_the_seeds() -> None:
    table = load_tabular(reference_table())
    doc = json.loads(reference_table().read_text())
    first = table.space.make(doc["entries"][0]["arch"])
    runs = [e["metrics"]["valid_acc"] for e in doc["entries"] if table.space.make(e["arch"]).key == first.key]
    mean = next(m for a, m in table.entries() if a.key == first.key)["valid_acc"]
    assert mean == pytest.approx(sum(runs) / len(runs))


def test_reference_data_is_the_split_the_table_was_made_on() -> None:
    pytest.importorskip("torch")
    data = reference_data()
    assert data.name == reference_recipe()["dataset"] == "mnist1d"
    assert (len(data.y_train), len(data.y_valid), len(data.y_test)) == (3200, 800, 1000)
    again = reference_data()
    assert bool((again.x_valid == data.x_valid).all())
