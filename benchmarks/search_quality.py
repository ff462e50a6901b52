"""Single-objective search quality on NAS-Bench-Graph (issue 2 target).

Protocol: maximise ``valid_perf`` with 100 distinct queries, 20 seeds; report the
median *rank* of the best architecture found (how many of the benchmark's
architectures have a strictly higher ``valid_perf``), and the mean test ``perf`` of
the best-by-validation architecture (reporting only). Target: median rank <= 20 on
cora, citeseer and pubmed for the default strategy.

Usage: python benchmarks/search_quality.py [--datasets cora,citeseer,pubmed] [--seeds 20]
       [--budget 100] [--strategies bo,evolution,local-search,rl,random,optuna-tpe] [--workers 2]
Last line: JSON {"rank_median": {dataset: {strategy: r}}, ...}.
"""
from __future__ import annotations

import argparse
import json
import time

from archscout.analysis.compare import compare
from archscout.strategies import DEFAULT_STRATEGY, available_strategies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="cora,citeseer,pubmed")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=100)
    default = [DEFAULT_STRATEGY, "evolution", "local-search", "rl", "random", "optuna-tpe"]
    parser.add_argument("--strategies", default=",".join(s for s in default if s in available_strategies()))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    ranks: dict[str, dict[str, float]] = {}
    means: dict[str, dict[str, float]] = {}
    t0 = time.time()
    for ds in args.datasets.split(","):
        s = compare(f"nasbench-graph:{ds}", strategies, args.seeds, args.budget, ["valid_perf:max"],
                    workers=args.workers)
        ranks[ds] = {k: v["rank_median"] for k, v in s["strategies"].items()}
        means[ds] = {k: round(v["rank_mean"], 1) for k, v in s["strategies"].items()}
        print(f"{ds}: median rank " + ", ".join(f"{k} {v:g}" for k, v in ranks[ds].items()), flush=True)
    print(json.dumps({"default_strategy": DEFAULT_STRATEGY, "budget": args.budget, "seeds": args.seeds,
                      "rank_median": ranks, "rank_mean": means, "wall_s": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
