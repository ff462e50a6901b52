"""Hardware cost models: counts, measured latency, peak memory, lookup tables, predictor, cost_metrics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.torch

from torch import nn  # noqa: E402

from archscout.errors import ArchscoutError, EvaluationError, UnknownNameError  # noqa: E402
from archscout.hardware import (COST_METRICS, LatencyPredictor, LatencyTable, LatencyTableError,  # noqa: E402
                                LookupMiss, PredictorError, build_latency_table, cost_metrics, count_flops,
                                count_macs, count_params, measure_latency, peak_memory, profile_space)
from archscout.space.spec import load_space  # noqa: E402

torch.set_num_threads(1)
FAST = {"warmup": 1, "repeats": 3, "rounds": 1}
ROOT = Path(__file__).resolve().parents[2]
MACRO_SPACE = ROOT / "examples/spaces/macro_net.yaml"


class ToyNet(nn.Module):
    """A small model implementing the unit protocol: conv stem, ``depth`` conv layers, linear head."""

    def __init__(self, width: int = 8, depth: int = 1, kernel: int = 3, c_in: int = 1, size: int = 8) -> None:
        super().__init__()
        self.input_shape = (c_in, size, size)
        layers: list[tuple[str, nn.Module, tuple[int, ...]]] = []
        layers.append((f"stem|c_in={c_in}|c_out={width}|in={self.input_shape}",
                       nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()), self.input_shape))
        for _ in range(depth):
            shape = (width, size, size)
            layers.append((f"conv|c={width}|kernel={kernel}|in={shape}",
                           nn.Sequential(nn.Conv2d(width, width, kernel, padding=kernel // 2), nn.ReLU()), shape))
        layers.append((f"head|c={width}|in={(width, size, size)}",
                       nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)),
                       (width, size, size)))
        self._keys = [k for k, _, _ in layers]
        self._shapes = [s for _, _, s in layers]
        self.units = nn.ModuleList([m for _, m, _ in layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
        return x

    def profile_units(self) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        return list(zip(self._keys, self.units, self._shapes))


# -- counts ---------------------------------------------------------------------------------
def test_params_exact_for_known_model() -> None:
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2, bias=False))
    model[2].weight.requires_grad_(False)  # frozen parameters still count
    assert count_params(model) == 10 * 5 + 5 + 5 * 2
    assert count_params(nn.BatchNorm2d(4)) == 8  # running stats are buffers, not parameters


def test_flops_linear_and_conv_by_hand() -> None:
    assert count_flops(nn.Linear(64, 32), (64,)) == 2 * 64 * 32
    assert count_flops(nn.Linear(64, 32), (64,), batch_size=4) == 2 * 64 * 32  # per sample
    assert count_macs(nn.Linear(64, 32), (64,)) == 64 * 32
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert count_flops(conv, (3, 10, 10)) == 2 * (10 * 10) * 8 * 3 * 3 * 3
    strided = nn.Conv2d(4, 6, kernel_size=3, stride=2, groups=2)  # out 4x4, 2 input channels per group
    assert count_flops(strided, (4, 9, 9)) == 2 * (4 * 4) * 6 * 2 * 3 * 3


def test_flops_count_fused_attention() -> None:
    batch, length, dim = 1, 6, 16
    layer = nn.TransformerEncoderLayer(dim, 2, 32, batch_first=True)
    expected = 2 * 3 * length * dim * dim + 4 * length * length * dim + 2 * length * dim * dim + 4 * length * dim * 32
    assert count_flops(layer, (length, dim)) == batch * expected
    assert layer.training  # the caller's mode is restored


# -- latency --------------------------------------------------------------------------------
def test_latency_stats_sane_and_threads_restored() -> None:
    model = ToyNet()
    model.train()
    torch.set_num_threads(1)
    stats = measure_latency(model, model.input_shape, threads=2, warmup=2, repeats=7)
    assert torch.get_num_threads() == 1
    assert model.training
    assert stats.runs == 7 and stats.batch_size == 1 and stats.threads == 2 and stats.device == "cpu"
    assert 0 < stats.min_ms <= stats.median_ms <= stats.mean_ms + 10 * stats.std_ms + 1e-9
    assert stats.min_ms <= stats.median_ms <= stats.min_ms + 1e6
    assert stats.std_ms >= 0 and stats.iqr_ms >= 0


def test_latency_min_time_extends_runs() -> None:
    stats = measure_latency(nn.Linear(4, 4), (4,), warmup=0, repeats=2, min_time_s=0.002)
    assert stats.runs >= 2


def test_latency_bad_device_and_settings() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(EvaluationError, match="CUDA"):
            measure_latency(nn.Linear(4, 4), (4,), device="cuda")
    with pytest.raises(EvaluationError, match="device"):
        measure_latency(nn.Linear(4, 4), (4,), device="tpu")
    with pytest.raises(EvaluationError, match="threads"):
        measure_latency(nn.Linear(4, 4), (4,), threads=0)


# -- memory ---------------------------------------------------------------------------------
def test_peak_memory_counts_weights_and_activations() -> None:
    model = nn.Sequential(nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 10))
    weights = 4 * count_params(model)
    # input (100) + hidden (200) + ReLU output (200) alive at once, float32, batch 4
    assert peak_memory(model, (100,), batch_size=4) == weights + 4 * 4 * (100 + 200 + 200)
    toy = ToyNet()
    assert peak_memory(toy, toy.input_shape) > 4 * count_params(toy)


# -- lookup table ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_table() -> LatencyTable:
    return build_latency_table([ToyNet(depth=2), ToyNet(kernel=5)], **FAST)


def test_lut_lookup_sums_profiled_entries(toy_table: LatencyTable) -> None:
    assert len(toy_table) == 4  # stem, conv k3, conv k5, head (shared keys profiled once)
    assert all(v > 0 for v in toy_table.entries.values())
    model = ToyNet(depth=2)
    expected = sum(toy_table.entries[k] for k, _, _ in model.profile_units())
    toy_table.overhead_ms = 0.25
    try:
        assert toy_table.lookup(model) == pytest.approx(expected + 0.25, abs=1e-12)
    finally:
        toy_table.overhead_ms = 0.0
    assert toy_table.profile(model.profile_units()) == 0  # nothing new to measure


def test_lut_missing_key_and_autoprofile(toy_table: LatencyTable) -> None:
    other = ToyNet(width=4)
    with pytest.raises(LookupMiss) as info:
        toy_table.lookup(other)
    assert isinstance(info.value, KeyError) and isinstance(info.value, ArchscoutError)
    assert "stem|c_in=1|c_out=4" in str(info.value) and "\n" not in str(info.value)
    auto = LatencyTable(dict(toy_table.entries), machine=toy_table.machine, autoprofile=True, **FAST)
    value = auto.lookup(other)
    assert value > 0 and len(auto) == len(toy_table) + 3


def test_lut_save_load_round_trip(toy_table: LatencyTable, tmp_path) -> None:
    path = tmp_path / "lut.json"
    toy_table.save(path)
    loaded = LatencyTable.load(path)
    assert loaded.entries == toy_table.entries
    assert loaded.machine == toy_table.machine and loaded.overhead_ms == toy_table.overhead_ms
    assert loaded.threads == 1 and loaded.batch_size == 1 and loaded.device == "cpu"
    assert loaded.lookup(ToyNet()) == toy_table.lookup(ToyNet())


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": "other"}',
                                  '{"format": "archscout-latency-table", "version": 99, "machine": {}, "entries": {}}',
                                  '{"format": "archscout-latency-table", "version": 1, "machine": {}, '
                                  '"entries": {"a": "fast"}}'])
def test_lut_corrupt_file_refused(tmp_path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LatencyTableError) as info:
        LatencyTable.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(LatencyTableError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")


def test_lut_calibrate_sets_overhead(toy_table: LatencyTable) -> None:
    table = LatencyTable(dict(toy_table.entries), machine=toy_table.machine, **FAST)
    overhead = table.calibrate([ToyNet(), ToyNet(depth=2)])
    assert math.isfinite(overhead) and table.overhead_ms == overhead


def test_lut_rejects_model_without_units(toy_table: LatencyTable) -> None:
    with pytest.raises(EvaluationError, match="profile_units"):
        toy_table.lookup(nn.Linear(3, 3))


# -- predictor ------------------------------------------------------------------------------
def _toy_models() -> list[ToyNet]:
    return [ToyNet(width=w, depth=d, kernel=k) for w in (4, 8, 12) for d in (1, 2) for k in (3, 5)]


def test_predictor_fit_predict_deterministic(tmp_path) -> None:
    models = _toy_models()
    # synthetic "measurements": a fixed cost per unit plus a cost per MFLOP
    latencies = [0.01 * len(m.profile_units()) + count_flops(m, m.input_shape) / 1e6 for m in models]
    first = LatencyPredictor().fit(models, latencies)
    second = LatencyPredictor().fit(models, latencies)
    preds = first.predict_many(models)
    assert all(math.isfinite(p) for p in preds)
    assert preds == second.predict_many(models)
    err = sum(abs(p - y) / y for p, y in zip(preds, latencies)) / len(models)
    assert err < 0.05
    path = tmp_path / "pred.json"
    first.save(path)
    assert LatencyPredictor.load(path).predict(models[0]) == pytest.approx(preds[0], rel=1e-12)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "archscout-latency-predictor", "version": 1}))
    with pytest.raises(PredictorError):
        LatencyPredictor.load(tmp_path / "bad.json")


def test_predictor_with_table_feature(toy_table: LatencyTable) -> None:
    table = LatencyTable(dict(toy_table.entries), machine=toy_table.machine, autoprofile=True, **FAST)
    models = _toy_models()[:4]
    latencies = [table.lookup(m) * 1.1 for m in models]
    pred = LatencyPredictor(table=table).fit(models, latencies)
    assert "lut_ms" in pred.features(models[0])
    assert all(math.isfinite(p) and p > 0 for p in pred.predict_many(models))


def test_predictor_unseen_unit_type_still_predicts() -> None:
    models = _toy_models()
    pred = LatencyPredictor().fit(models, [0.05 * len(m.profile_units()) for m in models])
    odd = ToyNet()
    odd._keys = [k.replace("conv|", "novel|") for k in odd._keys]
    assert math.isfinite(pred.predict(odd)) and pred.predict(odd) > 0


def test_predictor_unfitted_refused() -> None:
    with pytest.raises(PredictorError, match="not fitted"):
        LatencyPredictor().predict(ToyNet())


# -- cost_metrics ---------------------------------------------------------------------------
def test_cost_metrics_returns_exactly_the_asked_keys(toy_table: LatencyTable) -> None:
    model = ToyNet()
    assert set(cost_metrics(model, model.input_shape, ["params", "macs"])) == {"params", "macs"}
    predictor = LatencyPredictor().fit(_toy_models()[:4], [0.1, 0.2, 0.3, 0.4])
    everything = cost_metrics(model, model.input_shape, COST_METRICS, table=toy_table, predictor=predictor)
    assert list(everything) == list(COST_METRICS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in everything.values())
    assert everything["macs"] == everything["flops"] // 2 and everything["params"] == count_params(model)
    with pytest.raises(UnknownNameError, match="bogus"):
        cost_metrics(model, model.input_shape, ["bogus"])
    with pytest.raises(EvaluationError, match="table"):
        cost_metrics(model, model.input_shape, ["lut_latency_ms"])


# -- with the real builder, CUDA ------------------------------------------------------------
def test_profile_space_with_builder(tmp_path) -> None:
    build = pytest.importorskip("archscout.build")
    if not MACRO_SPACE.exists():
        pytest.skip("no macro space example")
    space = load_space(MACRO_SPACE)
    out = tmp_path / "table.json"
    table = profile_space(space, (1, 8, 8), 10, samples=3, seed=0, out=out, calibrate=2, **FAST)
    assert LatencyTable.load(out).entries == table.entries
    assert math.isfinite(table.overhead_ms)
    first = build.build_model(space, space.sample(np.random.default_rng(0)), (1, 8, 8), 10)
    assert table.lookup(first) > 0  # profile_space's first sample: every unit is in the table
    again = profile_space(space, (1, 8, 8), 10, samples=3, seed=0, calibrate=0, table=table, **FAST)
    assert again is table and again.entries == LatencyTable.load(out).entries  # nothing new to measure


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_and_memory() -> None:
    model = ToyNet()
    stats = measure_latency(model, model.input_shape, device="cuda", warmup=2, repeats=5)
    assert stats.runs == 5 and stats.median_ms > 0 and stats.device.startswith("cuda")
    assert next(model.parameters()).device.type == "cpu"  # measured on a copy
    assert peak_memory(model, model.input_shape, device="cuda") > 4 * count_params(model)
    table = build_latency_table([model], device="cuda", **FAST)
    assert table.lookup(model) > 0
