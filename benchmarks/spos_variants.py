"""Issue-4 follow-up: can a variant of SPOS rank the MNIST-1D reference architectures better?

``benchmarks/oneshot.py`` reports plain SPOS (uniform single-path sampling, 30 epochs, AdamW
lr 3e-3, batch 64, BatchNorm recalibrated per path) at Kendall tau 0.34 against the table's
stand-alone valid_acc, short of the 0.5 target. This script measures, with the same protocol
(every one of the 692 architectures scored on the validation split with inherited weights):

* ``plain``: SPOS as above, supernet seed 0 and seed 1 (the seed-to-seed spread of tau);
* ``ensemble``: the two supernets' inherited accuracies summed;
* ``short``: the supernet trained with the stand-alone recipe's budget (4 epochs, lr 0.01,
  batch 128), in case a supernet trained as briefly as the table's networks ranks like them;
* ``distinct``: training paths drawn uniformly over the 692 *distinct* architectures instead of
  the 1,000 encodings (cells with a dead edge have up to 10 encodings each, so plain sampling
  trains them up to 10x as often);
* ``fewshot_rowR``: few-shot NAS (Zhao et al. 2021): the seed-0 supernet is copied once per
  candidate of edge R, each copy fine-tuned 10 epochs (AdamW lr 1e-3) on paths with edge R
  fixed to that candidate, and every architecture scored on the copy of its own candidate.

Validation accuracy is the only signal; the test split is not read.

Usage: python benchmarks/spos_variants.py [--variants plain,ensemble,short,distinct,fewshot]
Last line: JSON {"kendall": {variant: tau}, "spearman": {...}, "cpu_s": {...}, "n_archs"}.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

FEWSHOT_EPOCHS = 10
FEWSHOT_LR = 1e-3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="plain,ensemble,short,distinct,fewshot")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    wanted = set(args.variants.split(","))

    import torch
    from scipy.stats import kendalltau, spearmanr

    from archscout.evaluators.tabular import load_tabular
    from archscout.oneshot.spos import path_accuracy, train_spos
    from archscout.oneshot.supernet import build_supernet
    from archscout.reference import reference_data, reference_recipe, reference_table

    torch.set_num_threads(1)
    table = load_tabular(reference_table())
    space = table.space
    data = reference_data()
    recipe = reference_recipe()
    entries = list(table.entries())
    keys = [a.key for a, _ in entries]
    acc = np.array([m["valid_acc"] for _, m in entries])
    kendall: dict[str, float] = {}
    spearman: dict[str, float] = {}
    cpu_s: dict[str, float] = {}

    def supernet(seed: int, **train: object) -> tuple[object, float]:
        start = time.perf_counter()
        net = build_supernet(space, data.input_shape, data.num_classes, seed=seed)
        train_spos(net, data, seed=seed, **{"epochs": args.epochs, **train})
        return net, time.perf_counter() - start

    def inherited(net: object, archs: list) -> np.ndarray:
        return np.array([path_accuracy(net, net.path_of(a), data, seed=0) for a in archs])

    def report(name: str, scores: np.ndarray, seconds: float) -> None:
        kendall[name] = round(float(kendalltau(scores, acc)[0]), 4)
        spearman[name] = round(float(spearmanr(scores, acc)[0]), 4)
        cpu_s[name] = round(seconds, 1)
        print(f"{name:<14} tau {kendall[name]:.4f}  rho {spearman[name]:.4f}  ({seconds:.0f} s)", flush=True)

    archs = [a for a, _ in entries]
    base, base_s = supernet(0)
    t0 = time.perf_counter()
    s0 = inherited(base, archs)
    score_s = time.perf_counter() - t0
    report("plain_seed0", s0, base_s + score_s)
    if wanted & {"plain", "ensemble"}:
        net1, s = supernet(1)
        s1 = inherited(net1, archs)
        report("plain_seed1", s1, s + score_s)
        if "ensemble" in wanted:
            report("ensemble", s0 + s1, base_s + s + 2 * score_s)
    if "short" in wanted:
        net, s = supernet(0, epochs=int(recipe["recipe"]["epochs"]), lr=float(recipe["recipe"]["lr"]),
                          batch_size=int(recipe["recipe"]["batch_size"]))
        report("short", inherited(net, archs), s + score_s)
    if "distinct" in wanted:
        start = time.perf_counter()
        net = build_supernet(space, data.input_shape, data.num_classes, seed=0)
        paths = [net.path_of(a) for a in space.enumerate()]
        train_spos(net, data, epochs=args.epochs, seed=0, sampler=lambda rng: paths[int(rng.integers(len(paths)))])
        report("distinct", inherited(net, archs), time.perf_counter() - start + score_s)
    if "fewshot" in wanted:
        group = base.groups[0]
        for row in range(group.rows):
            start = time.perf_counter()
            scores = np.zeros(len(archs))
            for cand in range(len(group.candidates)):
                idx = [i for i, a in enumerate(archs) if base.path_of(a)[group.name][row] == cand]
                if not idx:
                    continue
                sub = copy.deepcopy(base)

                def fixed(rng: np.random.Generator, sub: object = sub, cand: int = cand) -> dict:
                    path = {k: list(v) for k, v in sub.sample_path(rng).items()}
                    path[group.name][row] = cand
                    return path

                train_spos(sub, data, epochs=FEWSHOT_EPOCHS, lr=FEWSHOT_LR, seed=cand, sampler=fixed)
                scores[idx] = inherited(sub, [archs[i] for i in idx])
            report(f"fewshot_row{row}", scores, base_s + time.perf_counter() - start)
    print(json.dumps({"kendall": kendall, "spearman": spearman, "cpu_s": cpu_s, "n_archs": len(keys),
                      "epochs": args.epochs, "threads": 1}))


if __name__ == "__main__":
    main()
