"""Strategy comparison on tabular benchmarks: anytime curves over many seeds.

Single objective: the best value found after each query, and its *rank* — how many
architectures in the whole table are strictly better than the best found (0 = the
optimum). Several objectives: the hypervolume gap ``1 - HV(found)/HV(true front)``,
with the table's per-objective medians as the reference point.
"""
from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..evaluators import make_evaluator
from ..evaluators.base import TabularEvaluator
from ..problem import Objective, Problem, parse_constraints
from ..strategies import make_strategy
from ..study import Study
from ..trial import TrialState
from .pareto import hypervolume


@lru_cache(maxsize=8)
def _table(benchmark: str, objectives: tuple[str, ...]) -> dict[str, Any]:
    ev = make_evaluator(benchmark)
    if not isinstance(ev, TabularEvaluator):
        raise ValueError(f"{benchmark} is not a tabular benchmark")
    objs = [Objective.parse(o) for o in objectives]
    pts = np.array([[o.score(m) for o in objs] for _, m in ev.entries()])
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    ref = np.median(pts, axis=0)
    return {"evaluator": ev, "scores": pts, "reference": ref,
            "true_hv": hypervolume(pts, ref) if len(objs) > 1 else None}


def run_once(benchmark: str, strategy: str, seed: int, budget: int, objectives: Sequence[str],
             constraints: Sequence[str] = (), checkpoints: Sequence[int] = ()) -> dict[str, Any]:
    """One in-memory search; returns its curve (and rank or hypervolume gap)."""
    table = _table(benchmark, tuple(objectives))
    ev: TabularEvaluator = table["evaluator"]
    objs = [Objective.parse(o) for o in objectives]
    problem = Problem(ev.space, objs, parse_constraints(constraints), cheap_metrics=ev.cheap_metrics,
                      admissible=ev.contains)
    study = Study(problem, make_strategy(strategy, problem, seed), ev)
    study.optimize(budget)
    trials = [t for _, t in sorted(study.trials.items())]
    scores = [problem.scores(t.metrics) if t.state is TrialState.COMPLETE else None for t in trials]
    out: dict[str, Any] = {"strategy": strategy, "seed": seed, "n": len(trials)}
    if len(objs) == 1:
        best, curve = -math.inf, []
        for s in scores:
            if s is not None:
                best = max(best, s[0])
            curve.append(best if objs[0].maximize else -best)
        out["curve"] = curve
        out["rank"] = int((table["scores"][:, 0] > best).sum())
        out["best"] = curve[-1] if curve else None
        out["ranks_at"] = {c: int((table["scores"][:, 0] > (curve[c - 1] if objs[0].maximize else -curve[c - 1])).sum())
                           for c in checkpoints if 0 < c <= len(curve)}
    else:
        found = np.array([s for s in scores if s is not None])
        gaps = {}
        for c in list(checkpoints) + [len(trials)]:
            sub = np.array([s for s in scores[:c] if s is not None])
            hv = hypervolume(sub, table["reference"]) if len(sub) else 0.0
            gaps[c] = 1.0 - hv / table["true_hv"]
        out["hv_gap"] = gaps[len(trials)]
        out["hv_gap_at"] = gaps
        out["n_found"] = len(found)
    return out


def _run_star(args: tuple) -> dict[str, Any]:
    return run_once(*args)


def compare(benchmark: str, strategies: Sequence[str], seeds: int, budget: int, objectives: Sequence[str],
            constraints: Sequence[str] = (), workers: int = 1, progress: bool = False,
            first_seed: int = 0) -> dict[str, Any]:
    """Run every strategy for seeds ``first_seed .. first_seed+seeds-1``; summarise the
    curves with mean, std and median."""
    checkpoints = sorted({max(1, budget // 10), max(1, budget // 4), max(1, budget // 2), budget})
    jobs = [(benchmark, s, seed, budget, list(objectives), list(constraints), checkpoints)
            for s in strategies for seed in range(first_seed, first_seed + seeds)]
    _table(benchmark, tuple(objectives))  # load once before forking
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            it = pool.imap(_run_star, jobs)
            results = list(_bar(it, len(jobs), progress))
    else:
        results = list(_bar(map(_run_star, jobs), len(jobs), progress))
    summary: dict[str, Any] = {"benchmark": benchmark, "budget": budget, "seeds": seeds, "first_seed": first_seed,
                               "objectives": list(objectives), "constraints": list(constraints),
                               "checkpoints": checkpoints, "strategies": {}}
    for s in strategies:
        runs = [r for r in results if r["strategy"] == s]
        entry: dict[str, Any] = {}
        if len(objectives) == 1:
            curves = np.array([r["curve"] + [r["curve"][-1]] * (budget - len(r["curve"])) for r in runs])
            ranks = np.array([r["rank"] for r in runs])
            entry.update(rank_median=float(np.median(ranks)), rank_mean=float(ranks.mean()),
                         best_mean=float(curves[:, -1].mean()), best_std=float(curves[:, -1].std()),
                         curve_mean=curves.mean(axis=0).tolist(), curve_std=curves.std(axis=0).tolist(),
                         rank_median_at={c: float(np.median([r["ranks_at"].get(c, r["rank"]) for r in runs]))
                                         for c in checkpoints},
                         ranks=ranks.tolist())
        else:
            gaps = np.array([r["hv_gap"] for r in runs])
            entry.update(hv_gap_median=float(np.median(gaps)), hv_gap_mean=float(gaps.mean()),
                         hv_gap_std=float(gaps.std()), hv_gaps=gaps.tolist(),
                         hv_gap_median_at={c: float(np.median([r["hv_gap_at"][c] for r in runs])) for c in checkpoints})
        summary["strategies"][s] = entry
    return summary


def _bar(it: Any, total: int, enabled: bool) -> Any:
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, unit="run", desc="benchmark", dynamic_ncols=True)
