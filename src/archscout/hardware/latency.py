"""Measured inference latency of a whole model on this machine.

Latency on a shared CPU is noisy and skewed (a run is only ever slowed down by other
processes), so the headline figure is the **median** of many individually timed runs, with
the IQR and minimum reported beside it. All times are in milliseconds per forward of one
batch of ``batch_size`` samples.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .runner import (check_non_negative, check_positive, eval_mode, example_input, input_dtype, module_on,
                     pinned_threads, resolve_device, timed_runs)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of ``runs`` timed forwards (all times in ms per batch)."""

    median_ms: float
    mean_ms: float
    std_ms: float
    iqr_ms: float
    min_ms: float
    runs: int
    batch_size: int
    threads: int
    device: str

    @classmethod
    def from_seconds(cls, times_s: list[float], batch_size: int, threads: int, device: str) -> "LatencyStats":
        """Summarise per-run wall times given in seconds."""
        ms = np.asarray(times_s, dtype=float) * 1000.0
        q1, q3 = np.percentile(ms, [25, 75])
        return cls(median_ms=float(np.median(ms)), mean_ms=float(ms.mean()),
                   std_ms=float(statistics.stdev(ms)) if len(ms) > 1 else 0.0, iqr_ms=float(q3 - q1),
                   min_ms=float(ms.min()), runs=len(ms), batch_size=batch_size, threads=threads, device=device)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for JSON reports."""
        return asdict(self)


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, threads: int = 1,
                    device: str = "cpu", warmup: int = 10, repeats: int = 30, min_time_s: float = 0.0) -> LatencyStats:
    """Time ``repeats`` inference forwards of a batch of ``batch_size`` samples of ``input_shape``.

    The model runs in eval mode under ``torch.inference_mode`` after ``warmup`` untimed
    forwards; each timed run is measured on its own with ``time.perf_counter`` (on CUDA the
    device is synchronised around each run). Runs continue past ``repeats`` until at least
    ``min_time_s`` seconds have been timed. ``torch.set_num_threads(threads)`` applies during
    the measurement only. The caller's model is not moved or left in eval mode; a model on
    another device is measured on a copy. ``device="cuda"`` without CUDA raises EvaluationError.
    """
    dev = resolve_device(device)
    check_positive("batch_size", batch_size)
    check_positive("repeats", repeats)
    check_non_negative("warmup", warmup)
    runnable = module_on(model, dev)
    x = example_input(input_shape, batch_size, dev, input_dtype(model))
    with pinned_threads(threads), eval_mode([runnable]), torch.inference_mode():
        for _ in range(warmup):
            runnable(x)
        times = timed_runs(lambda: runnable(x), dev, repeats, min_time_s)
    return LatencyStats.from_seconds(times, batch_size, threads, str(dev))
