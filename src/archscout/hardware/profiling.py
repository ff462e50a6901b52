"""How latency tables time units and whole models on a noisy, shared machine.

**Units are timed in place.** A unit timed alone, over and over, runs with its code and
weights hot in the CPU's caches and branch predictors; inside a model it runs after other
units have evicted part of that state. On small models (tens of microseconds per unit, much
of it framework dispatch) the difference is large: on our 2-core CPU box the sum of
isolated back-to-back timings came out about 25% *below* the measured whole-model latency,
and timing each unit once between unrelated units about 25% *above* it. So units are timed
where they sit: whole chains of units (a model's ``profile_units()``) are run forward as
the model would run, with a timer around each unit. A key that appears in several chains
collects samples from all of its contexts, and its entry is the median over them. Context
still matters a little: a unit inside a very small model (everything cache-resident) runs
faster than its median over contexts, so tables overestimate the smallest models most.

**Noise.** Other processes only ever slow a run down, in bursts. Every figure is therefore
a median over many runs, and the chains (or models) are visited in ``rounds`` passes in a
freshly shuffled order, so a burst of load is spread over many entries instead of ruining
one. All results are in milliseconds.
"""
from __future__ import annotations

import random
import time
from collections.abc import Collection, Sequence

import numpy as np
import torch
from torch import nn

from .runner import (Unit, check_non_negative, check_positive, eval_mode, example_input, input_dtype, module_on,
                     pinned_threads, resolve_device, synchronize, timed_runs)


class _Chain:
    """A sequence of units ready to run on one device, with a fresh input wherever the chain breaks.

    Units are meant to be consecutive (each reads the previous one's output), but any list
    works: a unit whose declared input shape or dtype does not match the running tensor
    starts a new segment with its own example input.
    """

    def __init__(self, units: Sequence[Unit], batch_size: int, dev: torch.device) -> None:
        self.units = list(units)
        self.modules = [module_on(u.module, dev) for u in self.units]
        self.restarts: list[torch.Tensor | None] = []
        self.batch_size, self.dev = batch_size, dev

    def prepare(self) -> None:
        """One untimed pass that finds where the chain breaks (call in eval and inference mode)."""
        x: torch.Tensor | None = None
        for u, m in zip(self.units, self.modules):
            if not (isinstance(x, torch.Tensor) and tuple(x.shape[1:]) == u.input_shape and x.dtype == u.dtype):
                fresh = example_input(u.input_shape, self.batch_size, self.dev, u.dtype)
                self.restarts.append(fresh)
                x = fresh
            else:
                self.restarts.append(None)
            x = m(x)

    def run(self, times: list[list[float]] | None = None) -> None:
        """One forward along the chain; with ``times``, append each unit's seconds to its list."""
        x = None
        sync, clock, dev = synchronize, time.perf_counter, self.dev
        for i, m in enumerate(self.modules):
            fresh = self.restarts[i]
            if fresh is not None:
                x = fresh
            if times is None:
                x = m(x)
                continue
            sync(dev)
            t0 = clock()
            x = m(x)
            sync(dev)
            times[i].append(clock() - t0)


def measure_chains(chains: Sequence[Sequence[Unit]], record: Collection[str] | None = None, batch_size: int = 1,
                   threads: int = 1, device: str = "cpu", warmup: int = 3, repeats: int = 10, rounds: int = 3,
                   seed: int = 0) -> dict[str, float]:
    """Median ms of each unit key, timed in place inside its chains (see the module docstring).

    Each of ``rounds`` passes visits the chains in a shuffled order (``seed``); each visit
    runs ``warmup`` untimed forwards of the chain, then ``repeats`` forwards with every unit
    timed. Only keys in ``record`` (default: all) are returned; a chain without any recorded
    key is not run.
    """
    dev = resolve_device(device)
    check_positive("batch_size", batch_size)
    check_positive("repeats", repeats)
    check_positive("rounds", rounds)
    check_non_negative("warmup", warmup)
    wanted = None if record is None else set(record)
    prepared = [_Chain(c, batch_size, dev) for c in chains
                if c and (wanted is None or any(u.key in wanted for u in c))]
    samples: dict[str, list[float]] = {}
    order = list(range(len(prepared)))
    rng = random.Random(seed)
    modules = [m for chain in prepared for m in chain.modules]
    with pinned_threads(threads), eval_mode(modules), torch.inference_mode():
        for chain in prepared:
            chain.prepare()
        for _ in range(rounds):
            rng.shuffle(order)
            for ci in order:
                chain = prepared[ci]
                for _ in range(warmup):
                    chain.run()
                times: list[list[float]] = [[] for _ in chain.units]
                for _ in range(repeats):
                    chain.run(times)
                for u, t in zip(chain.units, times):
                    if wanted is None or u.key in wanted:
                        samples.setdefault(u.key, []).extend(t)
    return {key: 1000.0 * float(np.median(t)) for key, t in samples.items()}


def measure_models(models: Sequence[nn.Module], input_shapes: Sequence[tuple[int, ...]], batch_size: int = 1,
                   threads: int = 1, device: str = "cpu", warmup: int = 3, repeats: int = 10, rounds: int = 3,
                   seed: int = 0) -> list[float]:
    """Median ms per whole forward of each model, in shuffled interleaved rounds.

    Each visit of a model is like :func:`~archscout.hardware.latency.measure_latency`:
    ``warmup`` untimed forwards, then ``repeats`` individually timed ones; the result is the
    median over all rounds' timings.
    """
    dev = resolve_device(device)
    check_positive("batch_size", batch_size)
    check_positive("repeats", repeats)
    check_positive("rounds", rounds)
    check_non_negative("warmup", warmup)
    runnable = [module_on(m, dev) for m in models]
    inputs = [example_input(s, batch_size, dev, input_dtype(m)) for m, s in zip(models, input_shapes)]
    samples: list[list[float]] = [[] for _ in runnable]
    order = list(range(len(runnable)))
    rng = random.Random(seed)
    with pinned_threads(threads), eval_mode(runnable), torch.inference_mode():
        for _ in range(rounds):
            rng.shuffle(order)
            for i in order:
                model, x = runnable[i], inputs[i]
                for _ in range(warmup):
                    model(x)
                samples[i].extend(timed_runs(lambda m=model, x=x: m(x), dev, repeats))
    return [1000.0 * float(np.median(t)) for t in samples]
