"""Issue-4 targets for weight sharing, judged on archscout's MNIST-1D reference benchmark
(src/archscout/reference/mnist1d_cells.json: all 692 architectures trained stand-alone, 3 seeds).

1. SPOS ranking: train a SPOS supernet of the reference space on MNIST-1D, score every
   architecture with inherited weights (BN recalibrated) on the validation split, and report
   Kendall tau (and Spearman rho) against the table's mean stand-alone valid_acc.
   Target: tau >= 0.5.
2. Differentiable methods (darts, pc-darts, gdas, fbnet, proxyless; 5 seeds each, their
   defaults, collapse guard on): the derived architecture's rank in the table as a top
   percentage (100 * #strictly better / n; 0 = the best). Target: every seed <= 10 and none
   collapsed to parameter-free ops. Also SPOS's own evolution result.
   Also (``best_of_3_percentile``) the best of the first 3 finalists a study would evaluate
   with ``--strategy-option top=3`` (the derived architecture, then the next best pool
   members; ``archscout.oneshot.base.finalists``), judged by the table itself: what DARTS's
   pick-among-candidates step gives with an exact evaluator, at 3 stand-alone trainings.
3. Search cost in CPU-minutes (wall seconds x torch threads / 60, 1 thread here) beside the
   stand-alone training cost of the derived architecture (the table's train_s, same machine).

Validation accuracy is the only signal any method sees; test accuracy is reported only.

Usage: python benchmarks/oneshot.py [--seeds 5] [--methods darts,gdas,...] [--spos-epochs 30] [--quick]
Last line: JSON {"spos_kendall", "spos_spearman", "derived_percentile", "best_of_3_percentile", "collapsed",
"search_cpu_min", "standalone_cpu_min", "n_archs", ...}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", default="darts,pc-darts,gdas,fbnet,proxyless")
    p.add_argument("--spos-epochs", type=int, default=30)
    p.add_argument("--spos-seed", type=int, default=0)
    p.add_argument("--skip-spos", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 seeds, few epochs (a smoke run, not the figures)")
    args = p.parse_args()

    import torch
    from scipy.stats import kendalltau, spearmanr

    from archscout.evaluators.tabular import load_tabular
    from archscout.oneshot.base import finalists
    from archscout.oneshot.runner import run_method
    from archscout.oneshot.evaluator import SupernetEvaluator
    from archscout.reference import reference_data, reference_table

    torch.set_num_threads(1)
    table = load_tabular(reference_table())
    space = table.space
    data = reference_data()
    entries = list(table.entries())
    acc = {a.key: m["valid_acc"] for a, m in entries}
    test = {a.key: m["test_acc"] for a, m in entries}
    cost = {a.key: m["train_s"] for a, m in entries}  # seconds of one stand-alone training (mean of the seeds)
    values = np.array(sorted(acc.values()))
    n = len(acc)

    def percentile(key: str) -> float:
        return round(100.0 * float(np.sum(values > acc[key])) / n, 2)

    out: dict = {"n_archs": n, "seeds": args.seeds if not args.quick else 2}
    seeds = range(out["seeds"])
    if not args.skip_spos:
        start = time.perf_counter()
        ev = SupernetEvaluator(space, data, epochs=3 if args.quick else args.spos_epochs, seed=args.spos_seed)
        ev.fit()
        inherited = {a.key: ev.evaluate(a)["supernet_acc"] for a, _ in entries}
        keys = list(acc)
        tau = kendalltau([inherited[k] for k in keys], [acc[k] for k in keys])[0]
        rho = spearmanr([inherited[k] for k in keys], [acc[k] for k in keys])[0]
        out.update(spos_kendall=round(float(tau), 4), spos_spearman=round(float(rho), 4),
                   spos_train_s=round(ev.train_s, 1), spos_score_all_s=round(time.perf_counter() - start - ev.train_s, 1))
        best_inherited = max(keys, key=lambda k: inherited[k])
        out["spos_top_by_inherited_percentile"] = percentile(best_inherited)
        print(f"SPOS: Kendall tau {tau:.3f}, Spearman {rho:.3f} over {n} architectures "
              f"(supernet {ev.train_s:.0f} s); best by inherited accuracy is in the top {percentile(best_inherited)}%",
              flush=True)

    derived: dict[str, list[float]] = {}
    best_of_3: dict[str, list[float]] = {}
    collapsed: dict[str, list[bool]] = {}
    search_min: dict[str, float] = {}
    standalone_min: dict[str, float] = {}
    test_acc: dict[str, list[float]] = {}
    methods = [m for m in args.methods.split(",") if m]
    if not args.skip_spos:
        methods.append("spos")
    for method in methods:
        derived[method], collapsed[method], secs, alone, tests = [], [], [], [], []
        for seed in seeds:
            opts: dict = {"epochs": 2} if args.quick else {}
            if method == "spos":
                opts = {"epochs": 3 if args.quick else args.spos_epochs, "search_budget": 100}
            result = run_method(method, space, data, seed=seed, **opts)
            arch = result.best
            derived[method].append(percentile(arch.key))
            best_of_3.setdefault(method, []).append(min(percentile(a.key) for a, _ in finalists(space, result, 3)))
            collapsed[method].append(bool(result.info.get("collapsed", False)))
            secs.append(result.search_s)
            alone.append(cost[arch.key])
            tests.append(test[arch.key])
            print(f"  {method} seed {seed}: top {derived[method][-1]}% (best of 3 finalists "
                  f"{best_of_3[method][-1]}%; valid {acc[arch.key]:.4f}, test "
                  f"{test[arch.key]:.4f}), search {result.search_s:.0f} s, collapsed={collapsed[method][-1]}, "
                  f"{json.dumps(result.info.get('guard_changes', result.info.get('guard', '')))[:120]}", flush=True)
        search_min[method] = round(float(np.mean(secs)) / 60, 2)
        standalone_min[method] = round(float(np.mean(alone)) / 60, 3)
        test_acc[method] = [round(t, 4) for t in tests]
    out.update(derived_percentile=derived, best_of_3_percentile=best_of_3, collapsed=collapsed,
               search_cpu_min=search_min,
               standalone_cpu_min=standalone_min, derived_test_acc=test_acc,
               all_within_top10={m: all(v <= 10 for v in vs) for m, vs in derived.items()},
               best_test_acc_in_table=round(max(test.values()), 4))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
