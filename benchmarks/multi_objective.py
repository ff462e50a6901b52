"""Multi-objective search quality on NAS-Bench-Graph (issue 2 target).

Objectives ``valid_perf`` (max) and ``latency`` (min), 300 distinct queries, 20 seeds.
Hypervolume gap = 1 - HV(found) / HV(true front); the true front comes from
enumerating the benchmark; the reference point is the benchmark's median valid_perf
and median latency. Target: median gap <= 0.10 on cora and citeseer.

Usage: python benchmarks/multi_objective.py [--datasets cora,citeseer] [--seeds 20] [--budget 300]
Last line: JSON {"hv_gap_median": {dataset: {strategy: gap}}, ...}.
"""
from __future__ import annotations

import argparse
import json
import time

from archscout.analysis.compare import compare
from archscout.strategies import DEFAULT_STRATEGY, available_strategies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="cora,citeseer")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=300)
    default = [DEFAULT_STRATEGY, "nsga2", "rl", "random", "optuna-tpe"]
    parser.add_argument("--strategies", default=",".join(s for s in default if s in available_strategies()))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    gaps: dict[str, dict[str, float]] = {}
    t0 = time.time()
    for ds in args.datasets.split(","):
        s = compare(f"nasbench-graph:{ds}", args.strategies.split(","), args.seeds, args.budget,
                    ["valid_perf:max", "latency:min"], workers=args.workers)
        gaps[ds] = {k: round(v["hv_gap_median"], 4) for k, v in s["strategies"].items()}
        print(f"{ds}: median HV gap " + ", ".join(f"{k} {v:.3f}" for k, v in gaps[ds].items()), flush=True)
    print(json.dumps({"default_strategy": DEFAULT_STRATEGY, "budget": args.budget, "seeds": args.seeds,
                      "hv_gap_median": gaps, "wall_s": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
