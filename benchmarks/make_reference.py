"""Regenerate archscout's MNIST-1D reference benchmark: every distinct architecture of
``src/archscout/reference/mnist1d_cells.space.yaml`` trained with the recipe in
``mnist1d_cells.recipe.yaml`` (beside it), once per seed, written in the generic tabular
format (docs/tabular-format.md) as ``mnist1d_cells.json``: one entry per (architecture, seed),
which the tabular loader averages per architecture.

Each run records valid_acc / valid_loss / train_loss (after the last epoch), test_acc /
test_loss (the generator's held-out 1,000 samples, for reporting only), train_s (wall seconds
of that run on the machine that made it), params and flops (one sample, forward pass).

Runs already finished are kept in ``<out>.runs.jsonl`` so an interrupted run resumes.

Usage: python benchmarks/make_reference.py [--workers 2] [--out PATH] [--limit N]
Last line: JSON {"n_archs", "n_runs", "wall_s", "cpu_s", "valid_acc_range", "seed_spearman", "seed_kendall"
(both means over seed pairs), "heldout_seed_kendall" (with >= 3 seeds: each seed against the mean of the
others, averaged)}.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "src" / "archscout" / "reference"
SPACE = REF / "mnist1d_cells.space.yaml"
RECIPE = REF / "mnist1d_cells.recipe.yaml"

_STATE: dict[str, Any] = {}


def _init(settings: dict[str, Any]) -> None:
    from archscout.space import load_space
    from archscout.training.data import load_dataset

    _STATE["space"] = load_space(SPACE)
    _STATE["data"] = load_dataset(settings["dataset"], seed=int(settings["split_seed"]))
    _STATE["settings"] = settings


def _run(task: tuple[str, int]) -> dict[str, Any]:
    from archscout.hardware import count_flops, count_params
    from archscout.training.evaluator import TrainingEvaluator

    values_json, seed = task
    space, data, settings = _STATE["space"], _STATE["data"], _STATE["settings"]
    arch = space.make(json.loads(values_json))
    ev = TrainingEvaluator(space, data, recipe=settings["recipe"], seed=seed, checkpoints=0)
    m = ev.evaluate(arch)
    model = ev.build(arch)
    metrics = {k: float(m[k]) for k in ("valid_acc", "valid_loss", "train_loss", "test_acc", "test_loss", "train_s")}
    metrics["params"] = float(count_params(model))
    metrics["flops"] = float(count_flops(model, data.input_shape))
    return {"arch": arch.to_dict(), "seed": seed, "metrics": metrics}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(REF / "mnist1d_cells.json"))
    p.add_argument("--limit", type=int, default=None, help="only the first N architectures (a quick check)")
    args = p.parse_args()

    from archscout.space import load_space

    settings = yaml.safe_load(RECIPE.read_text())
    space = load_space(SPACE)
    archs = list(space.enumerate())[: args.limit]
    log = Path(args.out + ".runs.jsonl")
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[(space.make(row["arch"]).to_json(), int(row["seed"]))] = row
    tasks = [(a.to_json(), int(s)) for a in archs for s in settings["seeds"] if (a.to_json(), int(s)) not in done]
    print(f"{len(archs)} architectures x {len(settings['seeds'])} seeds: {len(done)} runs done, {len(tasks)} to go",
          flush=True)
    start = time.perf_counter()
    with log.open("a") as out, mp.get_context("fork").Pool(args.workers, _init, (settings,)) as pool:
        for i, row in enumerate(pool.imap_unordered(_run, tasks, chunksize=1), 1):
            done[(space.make(row["arch"]).to_json(), row["seed"])] = row
            out.write(json.dumps(row) + "\n")
            out.flush()
            if i % 50 == 0 or i == len(tasks):
                print(f"  {i}/{len(tasks)} runs, {time.perf_counter() - start:.0f} s", flush=True)
    wall = time.perf_counter() - start

    entries = []
    for a in archs:
        for s in settings["seeds"]:
            row = done[(a.to_json(), int(s))]
            entries.append({"arch": row["arch"], "metrics": row["metrics"]})
    table = {
        "format": "archscout-tabular", "version": 1, "name": "mnist1d-cells",
        "description": ("archscout's MNIST-1D reference benchmark: every distinct architecture of "
                        "mnist1d_cells.space.yaml, trained with mnist1d_cells.recipe.yaml, one entry per seed "
                        f"(seeds {settings['seeds']}, in that order per architecture); regenerate with "
                        "benchmarks/make_reference.py. train_s is wall seconds on the machine that made it."),
        "space_file": "mnist1d_cells.space.yaml",
        "objectives": ["valid_acc:max"],
        "cheap_metrics": ["params", "flops"],
        "entries": entries,
    }
    Path(args.out).write_text(json.dumps(table, separators=(",", ":")) + "\n")

    from itertools import combinations

    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    per_seed = np.array([[done[(a.to_json(), int(s))]["metrics"]["valid_acc"] for a in archs]
                         for s in settings["seeds"]])
    means = per_seed.mean(axis=0)
    cpu = sum(r["metrics"]["train_s"] for r in done.values())
    pairs = list(combinations(range(len(per_seed)), 2))
    summary = {"n_archs": len(archs), "n_runs": len(entries), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "valid_acc_range": [round(float(means.min()), 4), round(float(means.max()), 4)],
               # agreement between seeds: mean over seed pairs
               "seed_spearman": round(float(np.mean([spearmanr(per_seed[i], per_seed[j])[0] for i, j in pairs])), 4)
               if pairs else None,
               "seed_kendall": round(float(np.mean([kendalltau(per_seed[i], per_seed[j])[0] for i, j in pairs])), 4)
               if pairs else None}
    if len(per_seed) >= 3:
        # how well one more stand-alone training ranks against the mean of the others: each seed
        # in turn against the mean of the rest (a yardstick for supernet and predictor rankings)
        held = [kendalltau(per_seed[i], np.delete(per_seed, i, axis=0).mean(axis=0))[0] for i in range(len(per_seed))]
        summary["heldout_seed_kendall"] = round(float(np.mean(held)), 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
