"""Hardware cost models of a PyTorch model on the machine it runs on (needs the ``torch`` extra).

- :mod:`.counts`: parameters, FLOPs (2 per multiply-add) and MACs per sample;
- :mod:`.latency`: measured latency (median of many timed runs, ms);
- :mod:`.memory`: peak memory of one inference forward (bytes);
- :mod:`.lut`: per-unit latency lookup tables, ``profile_space`` for ``archscout profile``;
- :mod:`.profiling`: how tables time units (in place, interleaved rounds) and whole models;
- :mod:`.predictor`: a learned latency predictor from static features;
- :mod:`.costs`: the fixed metric names (:data:`COST_METRICS`) and :func:`cost_metrics`.

Per-unit models read the protocol every built model implements:
``profile_units() -> [(key, module, input_shape), ...]`` (see :mod:`archscout.build.network`).
"""
from __future__ import annotations

from .costs import COST_METRICS, cost_metrics
from .counts import count_flops, count_macs, count_params
from .latency import LatencyStats, measure_latency
from .lut import LatencyTable, LatencyTableError, LookupMiss, build_latency_table, machine_fingerprint, profile_space
from .memory import peak_memory
from .predictor import LatencyPredictor, PredictorError
from .profiling import measure_chains, measure_models
from .runner import Unit, units_of

__all__ = [
    "COST_METRICS", "LatencyPredictor", "LatencyStats", "LatencyTable", "LatencyTableError", "LookupMiss",
    "PredictorError", "Unit", "build_latency_table", "cost_metrics", "count_flops", "count_macs", "count_params",
    "machine_fingerprint", "measure_latency", "measure_chains", "measure_models", "peak_memory", "profile_space",
    "units_of",
]
