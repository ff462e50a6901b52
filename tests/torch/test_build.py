"""The builder: every family from its example space file builds, runs, trains and decomposes into units."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.torch

from archscout.build import build_model, model_family  # noqa: E402
from archscout.errors import ArchscoutError, SpaceError  # noqa: E402
from archscout.space import Choice, SearchSpace  # noqa: E402
from archscout.space.spec import load_space, space_from_spec  # noqa: E402

SPACES = Path(__file__).resolve().parents[2] / "examples" / "spaces"
CASES = [  # (space file, input shape, vocab size)
    ("macro_net", (1, 8, 8), None),
    ("macro_net", (1, 40), None),
    ("macro_quant", (1, 8, 8), None),
    ("nb201_net", (1, 8, 8), None),
    ("nb201_net", (3, 12), None),
    ("darts_net", (1, 16, 16), None),
    ("tokens_net", (1, 40), None),
    ("tokens_net", (3, 8, 8), None),
    ("tokens_net", (16,), 12),
]


@pytest.mark.parametrize("name,shape,vocab", CASES, ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}" for c in CASES])
def test_sampled_architectures_build_run_and_learn(name: str, shape: tuple[int, ...], vocab: int | None) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    for seed in range(4):
        arch = space.sample(np.random.default_rng(seed))
        model = build_model(space, arch, shape, num_classes=5, vocab_size=vocab)
        x = model.example_input(3)
        if vocab:
            x = torch.randint(0, vocab, (3, *shape))
        out = model(x)
        assert out.shape == (3, 5)
        loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2]))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name,shape", [("macro_net", (1, 8, 8)), ("nb201_net", (1, 8, 8)), ("tokens_net", (1, 40))])
def test_units_compose_to_the_model_and_keys_describe_them(name: str, shape: tuple[int, ...]) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    arch = space.sample(np.random.default_rng(1))
    model = build_model(space, arch, shape, num_classes=10).eval()
    x = model.example_input(2)
    y = x
    units = model.profile_units()
    for key, module, in_shape in units:
        assert tuple(y.shape[1:]) == in_shape
        assert f"in={in_shape}" in key
        y = module(y)
    assert torch.equal(y, model(x))
    assert units[0][0].startswith("stem") or units[0][0].startswith("embed")
    assert units[-1][0].startswith("head")


def test_same_seed_same_weights_and_the_global_rng_is_untouched() -> None:
    space = load_space(SPACES / "macro_net.yaml")
    arch = space.sample(np.random.default_rng(0))
    state = torch.random.get_rng_state()
    a = build_model(space, arch, (1, 8, 8), 10, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    b = build_model(space, arch, (1, 8, 8), 10, seed=3)
    c = build_model(space, arch, (1, 8, 8), 10, seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_macro_layers_follow_the_architecture() -> None:
    space = space_from_spec({"name": "m", "model": {"family": "macro", "stem_width": 8, "stage_strides": [1, 2]},
                             "params": [{"name": "net", "type": "chain", "stages": [
                                 [{"name": "width", "type": "choice", "options": [8]},
                                  {"name": "layers", "type": "repeat", "min_depth": 2, "max_depth": 2,
                                   "body": [{"name": "block", "type": "choice", "options": ["conv"]},
                                            {"name": "kernel", "type": "choice", "options": [5]}]}],
                                 [{"name": "width", "type": "choice", "options": [16]},
                                  {"name": "depth", "type": "choice", "options": [3]},
                                  {"name": "block", "type": "choice", "options": ["mbconv"]}]]}]})
    model = build_model(space, space.sample(np.random.default_rng(0)), (1, 8, 8), 10)
    keys = [k for k, _, _ in model.profile_units()]
    assert len(keys) == 1 + 2 + 3 + 1
    assert keys[1].startswith("conv|c_in=8|c_out=8|kernel=5|stride=1")
    assert keys[3].startswith("mbconv|c_in=8|c_out=16|stride=2")  # the stage's first layer carries the stride
    assert "stride=1" in keys[4]
    assert model.output_shape == (10,)


def test_spaces_without_a_model_section_or_with_bad_settings_fail_with_one_line() -> None:
    plain = SearchSpace([Choice("op", ["a", "b"])])
    with pytest.raises(SpaceError, match="model"):
        model_family(plain)
    bad_family = SearchSpace([Choice("op", ["a"])], model={"family": "graph"})
    with pytest.raises(SpaceError, match="unknown model family"):
        build_model(bad_family, {"op": "a"}, (1, 8, 8), 10)
    macro = load_space(SPACES / "macro_net.yaml")
    arch = macro.sample(np.random.default_rng(0))
    with pytest.raises(SpaceError, match=r"\(C, L\) or \(C, H, W\)"):
        build_model(macro, arch, (40,), 10)
    wrong_op = space_from_spec({"name": "m", "model": {"family": "macro"}, "params": [
        {"name": "net", "type": "chain", "stages": [[{"name": "width", "type": "choice", "options": [8]},
                                                     {"name": "block", "type": "choice", "options": ["convv"]}]]}]})
    with pytest.raises(ArchscoutError) as info:
        build_model(wrong_op, wrong_op.sample(np.random.default_rng(0)), (1, 8, 8), 10)
    assert "convv" in str(info.value) and "\n" not in str(info.value)
    cells = load_space(SPACES / "nb201_net.yaml")
    gnn_ops = SearchSpace(cells.params[:0] + [type(cells.params[0])("cell", nodes=2, ops=["gcn", "gat"])],
                          model={"family": "cells"})
    with pytest.raises(ArchscoutError, match="gcn|gat"):
        build_model(gnn_ops, gnn_ops.sample(np.random.default_rng(0)), (1, 8, 8), 10)


def test_model_section_round_trips_through_the_spec() -> None:
    space = load_space(SPACES / "tokens_net.yaml")
    again = space_from_spec(space.spec())
    assert again.model == space.model
    assert again.spec() == space.spec()
