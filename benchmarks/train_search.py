"""A multi-fidelity architecture search with real training, timed end to end (shared by
digits_search.py and mnist1d_search.py; also runnable on its own).

Runs the default strategy (predictor BO, BOHB-style under the schedule) over a macro space
with successive halving over epochs, on this machine's CPU, and reports the wall time, the
number of architectures tried, and the held-out test accuracy of the best architecture by
validation accuracy (test accuracy is never used by the search).

Usage: python benchmarks/train_search.py --dataset digits [--budget 54] [--epochs 27] [--min-epochs 1]
       [--eta 3] [--schedule sh|hyperband] [--space examples/spaces/macro_net.yaml] [--strategy bo]
       [--seed 0] [--recipe lr=0.003 ...] [--quick]
Last line: JSON {"n_archs", "wall_s", "best_test_acc", "best_valid_acc", ...}.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def parse(description: str, defaults: Mapping[str, Any]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dataset", default=defaults.get("dataset", "digits"))
    p.add_argument("--space", default=str(ROOT / "examples" / "spaces" / defaults.get("space", "macro_net.yaml")))
    p.add_argument("--budget", type=int, default=defaults.get("budget", 54))
    p.add_argument("--epochs", type=int, default=defaults.get("epochs", 27))
    p.add_argument("--min-epochs", type=int, default=defaults.get("min_epochs", 1))
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--schedule", default=defaults.get("schedule", "sh"), choices=("sh", "hyperband"))
    p.add_argument("--strategy", default="bo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per training")
    p.add_argument("--recipe", nargs="*", default=[f"{k}={v}" for k, v in defaults.get("recipe", {}).items()],
                   metavar="NAME=VALUE")
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    args = p.parse_args()
    if args.quick:
        args.budget, args.epochs, args.min_epochs = 6, 3, 1
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from archscout.problem import Objective, Problem
    from archscout.space.spec import load_space
    from archscout.strategies import make_strategy
    from archscout.study import Study
    from archscout.study.fidelity import make_schedule
    from archscout.training.evaluator import TrainingEvaluator
    from archscout.trial import TrialState

    torch.set_num_threads(args.threads)
    recipe = {k: yaml.safe_load(v) for k, _, v in (r.partition("=") for r in args.recipe)}
    recipe.update(epochs=args.epochs, threads=args.threads)
    t0 = time.perf_counter()
    space = load_space(args.space)
    evaluator = TrainingEvaluator(space, args.dataset, recipe, seed=args.seed)
    problem = Problem(space, [Objective.parse("valid_acc:max")], cheap_metrics=evaluator.cheap_metrics)
    study = Study(problem, make_strategy(args.strategy, problem, args.seed), evaluator)
    schedule = make_schedule(args.schedule, args.min_epochs, args.epochs, args.eta)

    def show(s: Study, t: Any) -> None:
        acc = t.metrics.get("valid_acc", float("nan"))
        extra = f" test_acc={t.metrics['test_acc']:.4f}" if "test_acc" in t.metrics else ""
        print(f"[{time.perf_counter() - t0:6.1f}s] trial {t.number:3d} {t.state.value:8s} "
              f"epochs={t.fidelity} valid_acc={acc:.4f}{extra}", flush=True)

    study.optimize(args.budget, schedule=schedule, callback=show)
    wall = time.perf_counter() - t0
    best = study.best()
    trials = list(study.trials.values())
    epochs = sum(max((s for s, _ in t.curve), default=0) for t in trials)
    out = {
        "dataset": args.dataset, "space": Path(args.space).name, "strategy": args.strategy,
        "schedule": schedule.describe(), "n_archs": len(trials),
        "n_complete": sum(t.state is TrialState.COMPLETE for t in trials),
        "wall_s": round(wall, 1), "epochs_trained": epochs,
        "best_valid_acc": round(best.metrics["valid_acc"], 4) if best else None,
        "best_test_acc": round(best.metrics["test_acc"], 4) if best else None,
        "best_arch": best.arch.to_dict() if best else None, "threads": args.threads,
        "recipe": evaluator.recipe.to_dict(), "seed": args.seed,
    }
    return out


def main(description: str = __doc__.splitlines()[0], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    args = parse(description, defaults or {})
    out = run(args)
    print(f"{out['n_archs']} architectures ({out['n_complete']} trained fully, {out['epochs_trained']:.0f} epochs) "
          f"in {out['wall_s']:.0f} s; best by validation: valid_acc={out['best_valid_acc']}, "
          f"test_acc={out['best_test_acc']}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
