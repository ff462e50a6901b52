"""Issue-4 part 5: does a training-free proxy prior make the ``bo`` strategy find a top
architecture with fewer (expensive) evaluations?

Protocol: the MNIST-1D reference table (``src/archscout/reference/mnist1d_cells.json``, mean of
three training seeds per architecture) as the evaluator, objective ``valid_acc:max``, one
sequential query at a time. A run counts the queries (table evaluations) until the best
architecture found is in the table's top 1% by mean valid_acc (the 7 best of 692); a run that
has not got there after ``--budget`` queries counts as the budget (a miss, reported).
``--seeds`` seeds per row. Rows:

* ``bo`` cold: the default strategy, no prior;
* ``bo`` warm: the same with the proxy as prior, ``warm_start=W`` (the initial design is the
  prior's top W of the strategy's random reference sample) and ``prior_feature=True``;
* ablations: warm start only (``prior_feature=False``) and feature only (``warm_start=0``);
* references: ``random`` and ``random`` with ``prior_filter=10`` (best-by-prior of 10 draws).

Note: ``bo``'s default ``prior_pool`` (1000) exceeds the 692 architectures, so its reference
sample is the whole space and the warm-start design, hence the whole warm run, is the same for
every seed; ``--pools`` adds warm rows with smaller, seed-dependent reference samples.

The proxy is fixed in advance (``--proxy``, default ``snip``; see the printed rationale), not
picked by its correlation with the table; ``--all-proxies`` adds a warm row per proxy as a
sensitivity check. Proxy scores come from the cache written by ``benchmarks/proxies.py``.
``--sweep`` runs the warm row for several W to choose the warm-start size.

Usage: python benchmarks/proxy_warmstart.py [--seeds 20] [--budget 150] [--proxy snip]
       [--warm-start 10] [--sweep 5,10,20] [--pools 50,200] [--all-proxies] [--table PATH] [--cache PATH]
Last line: JSON {"queries_cold": {"mean", "median", "misses", "per_seed"}, "queries_warm": {...},
"speedup" (mean cold / mean warm), "proxy", "seeds", "warm_start", ...}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "archscout" / "reference" / "mnist1d_cells.json"
CACHE = ROOT / "benchmarks" / "results" / "proxy_scores_mnist1d_cells.json"
RATIONALE = {
    "snip": "fixed in advance: the table scores accuracy after 4 epochs, i.e. early trainability, which the "
            "gradient-saliency proxies (snip, grad_norm) measure; snip is the stronger of the two in "
            "Abdelfattah et al. 2021",
}


def run_once(strategy: Any, table: Any, threshold: float, budget: int) -> tuple[int, bool]:
    """Queries until the best found reaches ``threshold`` (``budget`` and False on a miss)."""
    from archscout.trial import Trial, TrialState

    for q in range(1, budget + 1):
        asked = strategy.ask()
        if not asked:
            break
        arch = asked[0]
        metrics = table.evaluate(arch)
        strategy.tell(Trial(q - 1, arch, TrialState.COMPLETE, metrics, finished_at=float(q)))
        if metrics["valid_acc"] >= threshold:
            return q, True
    return budget, False


def summary(counts: list[tuple[int, bool]]) -> dict[str, Any]:
    q = [c for c, _ in counts]
    return {"mean": round(float(np.mean(q)), 2), "median": float(np.median(q)),
            "misses": sum(1 for _, hit in counts if not hit), "per_seed": q}


def main() -> None:
    from archscout.evaluators.tabular import load_tabular
    from archscout.problem import Objective, Problem
    from archscout.strategies import make_strategy

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=150)
    p.add_argument("--proxy", default="snip")
    p.add_argument("--warm-start", type=int, default=10)
    p.add_argument("--sweep", default="", help="comma-separated warm-start sizes to compare (warm rows only)")
    p.add_argument("--pools", default="", help="comma-separated prior_pool sizes to compare (warm rows only)")
    p.add_argument("--filter", type=int, default=10, help="prior_filter of the filtered random row")
    p.add_argument("--all-proxies", action="store_true", help="a warm row for every cached proxy")
    p.add_argument("--table", default=str(TABLE))
    p.add_argument("--cache", default=str(CACHE))
    args = p.parse_args()

    table = load_tabular(args.table)
    cache = json.loads(Path(args.cache).read_text())
    scores: dict[str, dict[str, float]] = cache["scores"]
    missing = [a for a, _ in table.entries() if a.key not in scores]
    if missing:
        raise SystemExit(f"{len(missing)} table architectures lack proxy scores: run benchmarks/proxies.py first")
    valid = sorted((m["valid_acc"] for _, m in table.entries()), reverse=True)
    n_top = max(1, math.ceil(0.01 * len(valid)))
    threshold = valid[n_top - 1]
    n_hits = sum(1 for v in valid if v >= threshold)

    def problem() -> Problem:
        return Problem(table.space, [Objective("valid_acc", True)], cheap_metrics=table.cheap_metrics,
                       admissible=table.contains)

    def prior_of(proxy: str) -> Callable[[Any], float]:
        return lambda arch: scores.get(arch.key, {}).get(proxy, -math.inf)

    def row(label: str, name: str, proxy: str | None, **options: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        counts = []
        for seed in range(args.seeds):
            strategy = make_strategy(name, problem(), seed=seed, **options)
            if proxy is not None:
                strategy.use_prior(prior_of(proxy))
            counts.append(run_once(strategy, table, threshold, args.budget))
        out = summary(counts)
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"{label:<44} mean {out['mean']:>6.1f}  median {out['median']:>5.1f}  misses {out['misses']:>2}"
              f"  ({out['wall_s']:.0f} s)", flush=True)
        return out

    print(f"{len(valid)} architectures; top 1% = valid_acc >= {threshold:.5f} ({n_hits} architectures); "
          f"budget {args.budget}, {args.seeds} seeds; proxy {args.proxy} "
          f"({RATIONALE.get(args.proxy, 'chosen on the command line')})", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    w = args.warm_start
    rows["bo_cold"] = row("bo (no prior)", "bo", None)
    rows["bo_warm"] = row(f"bo + {args.proxy} (warm_start={w}, prior_feature)", "bo", args.proxy, warm_start=w)
    rows["bo_warm_only"] = row(f"bo + {args.proxy} (warm_start={w} only)", "bo", args.proxy, warm_start=w,
                               prior_feature=False)
    rows["bo_feature_only"] = row(f"bo + {args.proxy} (prior_feature only)", "bo", args.proxy, warm_start=0)
    rows["random"] = row("random", "random", None)
    rows["random_filter"] = row(f"random + {args.proxy} (prior_filter={args.filter})", "random", args.proxy,
                                prior_filter=args.filter)
    sweep = {}
    for size in [int(s) for s in args.sweep.split(",") if s.strip()]:
        sweep[size] = rows["bo_warm"] if size == w else row(f"  sweep: bo + {args.proxy} (warm_start={size})", "bo",
                                                             args.proxy, warm_start=size)
    pools = {}
    for size in [int(s) for s in args.pools.split(",") if s.strip()]:
        pools[size] = row(f"  pool: bo + {args.proxy} (warm_start={w}, prior_pool={size})", "bo", args.proxy,
                          warm_start=w, prior_pool=size)
    others = {}
    if args.all_proxies:
        for proxy in cache.get("proxies", []):
            if proxy != args.proxy:
                others[proxy] = row(f"  sensitivity: bo + {proxy} (warm_start={w})", "bo", proxy, warm_start=w)

    cold, warm = rows["bo_cold"], rows["bo_warm"]
    speedup = cold["mean"] / warm["mean"]
    print(f"speedup (mean queries, bo cold / bo warm): {speedup:.2f}x; target >= 1.5x: "
          f"{'met' if speedup >= 1.5 else 'NOT met'}")
    print(json.dumps({
        "queries_cold": cold, "queries_warm": warm, "speedup": round(speedup, 3),
        "speedup_median": round(cold["median"] / warm["median"], 3) if warm["median"] else None,
        "proxy": args.proxy, "proxy_rule": RATIONALE.get(args.proxy, "command line"), "seeds": args.seeds,
        "budget": args.budget, "warm_start": w, "top_fraction": 0.01, "threshold": threshold, "n_top": n_hits,
        "rows": {k: {kk: vv for kk, vv in v.items() if kk != "per_seed"} for k, v in rows.items()},
        "sweep": {str(k): {"mean": v["mean"], "median": v["median"], "misses": v["misses"]} for k, v in sweep.items()},
        "prior_pool": {str(k): {"mean": v["mean"], "median": v["median"], "misses": v["misses"]}
                       for k, v in pools.items()},
        "sensitivity": {k: {"mean": v["mean"], "median": v["median"], "misses": v["misses"]}
                        for k, v in others.items()},
    }))


if __name__ == "__main__":
    main()
