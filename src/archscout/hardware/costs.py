"""Named cost metrics of a model, for search objectives and hard budgets.

The names are fixed (:data:`COST_METRICS`) so objectives such as ``latency_ms:min`` and
budgets such as ``params<=50000`` mean the same everywhere. Only the requested metrics are
computed: a budget on ``params`` never pays for a latency measurement.

Units: ``params`` (count), ``flops`` and ``macs`` (per sample; 2 FLOPs per multiply-add),
``latency_ms``/``latency_std_ms`` (measured median and standard deviation, ms per batch),
``peak_memory_mb`` (MiB = 2**20 bytes), ``lut_latency_ms`` (lookup-table estimate, ms),
``pred_latency_ms`` (learned predictor, ms).
"""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..errors import EvaluationError, UnknownNameError
from .counts import count_flops, count_params
from .latency import measure_latency
from .lut import LatencyTable
from .memory import peak_memory
from .predictor import LatencyPredictor

COST_METRICS = ("params", "flops", "macs", "latency_ms", "latency_std_ms", "peak_memory_mb",
                "lut_latency_ms", "pred_latency_ms")

MIB = 2**20


def cost_metrics(model: nn.Module, input_shape: tuple[int, ...], which: Iterable[str], *,
                 table: LatencyTable | None = None, predictor: LatencyPredictor | None = None,
                 batch_size: int = 1, threads: int = 1, device: str = "cpu") -> dict[str, float]:
    """The metrics named in ``which`` (and only those), as floats.

    ``lut_latency_ms`` needs ``table`` and ``pred_latency_ms`` needs a fitted ``predictor``
    (EvaluationError otherwise); an unknown name raises UnknownNameError before anything runs.
    """
    wanted = list(dict.fromkeys(str(w) for w in which))
    unknown = [w for w in wanted if w not in COST_METRICS]
    if unknown:
        raise UnknownNameError(f"unknown cost metric {unknown[0]!r}; use one of {', '.join(COST_METRICS)}")
    if "lut_latency_ms" in wanted and table is None:
        raise EvaluationError("metric 'lut_latency_ms' needs a latency table (profile one with 'archscout profile')")
    if "pred_latency_ms" in wanted and predictor is None:
        raise EvaluationError("metric 'pred_latency_ms' needs a fitted latency predictor")

    out: dict[str, float] = {}
    if "params" in wanted:
        out["params"] = float(count_params(model))
    if "flops" in wanted or "macs" in wanted:
        flops = count_flops(model, input_shape, batch_size)
        if "flops" in wanted:
            out["flops"] = float(flops)
        if "macs" in wanted:
            out["macs"] = float(flops // 2)
    if "latency_ms" in wanted or "latency_std_ms" in wanted:
        stats = measure_latency(model, input_shape, batch_size=batch_size, threads=threads, device=device)
        if "latency_ms" in wanted:
            out["latency_ms"] = stats.median_ms
        if "latency_std_ms" in wanted:
            out["latency_std_ms"] = stats.std_ms
    if "peak_memory_mb" in wanted:
        out["peak_memory_mb"] = peak_memory(model, input_shape, batch_size, device) / MIB
    if "lut_latency_ms" in wanted:
        out["lut_latency_ms"] = table.lookup(model)  # type: ignore[union-attr]
    if "pred_latency_ms" in wanted:
        out["pred_latency_ms"] = predictor.predict(model)  # type: ignore[union-attr]
    return {name: out[name] for name in wanted}
