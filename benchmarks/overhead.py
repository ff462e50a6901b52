"""Strategy overhead: median wall time of one ask + tell (evaluation excluded), in ms,
measured after the strategy has been told ``--warm`` completed trials.

Target (issue 2): <= 2 ms for random, evolution and local search; <= 50 ms for BO.
Usage: python benchmarks/overhead.py [--warm 1000] [--measure 50] [--strategies ...]
Last line: a JSON object {strategy: median_ms, ...}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from archscout.evaluators.nasbench_graph import NasBenchGraph
from archscout.problem import Objective, Problem
from archscout.strategies import available_strategies, make_strategy
from archscout.trial import Trial, TrialState


def measure(name: str, ev: NasBenchGraph, warm: int, n: int) -> float:
    problem = Problem(ev.space, [Objective("valid_perf")], admissible=ev.contains)
    strategy = make_strategy(name, problem, 0)
    times: list[float] = []
    for i in range(warm + n):
        t0 = time.perf_counter()
        (arch,) = strategy.ask(1)
        t1 = time.perf_counter()
        metrics = ev.evaluate(arch)
        trial = Trial(i, arch, TrialState.COMPLETE, metrics)
        t2 = time.perf_counter()
        strategy.tell(trial)
        t3 = time.perf_counter()
        if i >= warm:
            times.append((t1 - t0) + (t3 - t2))
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=1000)
    parser.add_argument("--measure", type=int, default=50)
    parser.add_argument("--strategies", default=",".join(sorted(available_strategies())))
    args = parser.parse_args()
    ev = NasBenchGraph("cora")
    out = {}
    for name in args.strategies.split(","):
        out[name] = round(measure(name, ev, args.warm, args.measure), 3)
        print(f"{name:<14} median ask+tell {out[name]:8.3f} ms at {args.warm} completed trials", flush=True)
    print(json.dumps({"warm_trials": args.warm, "median_ms": out}))


if __name__ == "__main__":
    main()
