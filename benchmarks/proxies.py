"""Issue-4 part 5: how well each training-free proxy ranks the MNIST-1D reference architectures.

Protocol: every architecture of ``src/archscout/reference/mnist1d_cells.json`` (the trained
table; its metrics are the mean of three training seeds), built untrained with weight seed 0;
every proxy of :mod:`archscout.proxies` computed on the same minibatch of 64 samples of the
training split (data split seed 0, the table's ``split_seed``; minibatch seed 0); Spearman ρ
of each proxy against the table's mean ``valid_acc`` (``spearman``) and mean ``test_acc``
(``spearman_test``). Also Kendall τ, and the share of the table's top 10% (by valid_acc)
among each proxy's top 10%. Target: best proxy ρ >= 0.6 (valid_acc).

The scores are saved to a cache (``--cache``, default
``benchmarks/results/proxy_scores_mnist1d_cells.json``, keyed by architecture key) that
``benchmarks/proxy_warmstart.py`` reads; a rerun with the same settings reuses it.

Proxies as predictor features (the NAS-Bench-Suite-Zero protocol, Krishnakumar et al. 2022):
a random forest (200 trees) fitted on ``n`` labelled architectures (``--train-sizes``, 20
random splits each) predicts the rest; features are the architecture encoding (``stats``),
every proxy's rank over the table (no labels needed), or both. Reported as the mean
held-out Spearman ρ (``predictor_features``); this is a predictor trained on labels, not a
training-free proxy, so it does not count towards the proxy target.

Usage: python benchmarks/proxies.py [--limit N] [--proxies synflow,naswot,...] [--table PATH]
       [--cache PATH] [--batch-size 64] [--seed 0] [--recompute] [--train-sizes 20,50,100]
Last line: JSON {"spearman": {proxy: rho}, "spearman_test": {...}, "n_archs", "ms_per_arch": {proxy: ms},
"predictor_features": {n: {"encoding", "proxies", "encoding+proxies": mean rho}}, ...}.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "archscout" / "reference" / "mnist1d_cells.json"
CACHE = ROOT / "benchmarks" / "results" / "proxy_scores_mnist1d_cells.json"


def load_cache(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The cached scores when they were computed with ``settings``; an empty cache otherwise."""
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("settings") == settings:
            return doc
    return {"settings": settings, "scores": {}, "ms": {}}


def predictor_features(space: Any, archs: list[Any], proxy_scores: np.ndarray, target: np.ndarray,
                       sizes: list[int], splits: int = 20) -> dict[str, dict[str, float]]:
    """Mean held-out Spearman ρ of a random forest on ``n`` labelled architectures, per feature set.

    ``proxy_scores``: (architectures, proxies) raw scores, rank-normalised here over all rows."""
    from scipy.stats import rankdata, spearmanr
    from sklearn.ensemble import RandomForestRegressor

    ranks = np.column_stack([rankdata(c) / len(c) for c in proxy_scores.T])
    encoding = np.array([space.encode(a, "stats") for a in archs])
    sets = {"encoding": encoding, "proxies": ranks, "encoding+proxies": np.hstack([encoding, ranks])}
    out: dict[str, dict[str, float]] = {}
    for n in sizes:
        rhos: dict[str, list[float]] = {k: [] for k in sets}
        for split in range(splits):
            order = np.random.default_rng(split).permutation(len(target))
            train, held = order[:n], order[n:]
            for name, x in sets.items():
                forest = RandomForestRegressor(n_estimators=200, random_state=split, n_jobs=1)
                forest.fit(x[train], target[train])
                rhos[name].append(float(spearmanr(forest.predict(x[held]), target[held])[0]))
        out[str(n)] = {k: round(float(np.mean(v)), 4) for k, v in rhos.items()}
    return out


def main() -> None:
    import torch
    from scipy.stats import kendalltau, spearmanr

    from archscout.build import build_model
    from archscout.evaluators.tabular import load_tabular
    from archscout.proxies import PROXIES
    from archscout.proxies.scores import compute_proxy
    from archscout.training.data import load_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=None, help="only the first N architectures of the table")
    p.add_argument("--proxies", default=",".join(PROXIES))
    p.add_argument("--table", default=str(TABLE))
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="weight-initialisation and minibatch seed")
    p.add_argument("--recompute", action="store_true", help="ignore the cache")
    p.add_argument("--train-sizes", default="20,50,100",
                   help="labelled architectures for the proxies-as-features predictor ('' skips it)")
    args = p.parse_args()
    torch.set_num_threads(1)

    proxies = args.proxies.split(",")
    table = load_tabular(args.table)
    space = table.space
    entries = list(table.entries())[: args.limit]
    data = load_dataset("mnist1d", seed=0)
    settings = {"batch_size": args.batch_size, "seed": args.seed, "dataset": "mnist1d", "split_seed": 0}
    cache_path = Path(args.cache)
    cache = {"settings": settings, "scores": {}, "ms": {}} if args.recompute else load_cache(cache_path, settings)
    scores: dict[str, dict[str, float]] = cache["scores"]
    ms: dict[str, dict[str, float]] = cache["ms"]

    start = time.perf_counter()
    computed = 0
    for i, (arch, _) in enumerate(entries, 1):
        row, row_ms = scores.setdefault(arch.key, {}), ms.setdefault(arch.key, {})
        todo = [q for q in proxies if q not in row]
        if todo:
            model = build_model(space, arch, data.input_shape, data.num_classes, seed=args.seed)
            for q in todo:
                t0 = time.perf_counter()
                row[q] = compute_proxy(q, model, data, batch_size=args.batch_size, seed=args.seed)
                row_ms[q] = (time.perf_counter() - t0) * 1000.0
            computed += 1
        if i % 100 == 0 or i == len(entries):
            print(f"  {i}/{len(entries)} architectures ({computed} computed), {time.perf_counter() - start:.0f} s",
                  flush=True)
    if args.limit is None:  # a partial run never replaces the full cache
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps({"settings": settings, "table_sha256": table.sha256,
                                          "proxies": sorted({q for r in scores.values() for q in r}),
                                          "scores": scores, "ms": ms}, separators=(",", ":")) + "\n")

    valid = np.array([m["valid_acc"] for _, m in entries])
    test = np.array([m["test_acc"] for _, m in entries])
    top = max(1, int(round(0.1 * len(entries))))
    best_valid = set(np.argsort(-valid, kind="stable")[:top])
    rho, rho_test, tau, top10, per_arch = {}, {}, {}, {}, {}
    print(f"{len(entries)} architectures, valid_acc {valid.min():.4f}..{valid.max():.4f}; "
          f"minibatch {args.batch_size}, seed {args.seed}")
    print(f"{'proxy':<10} {'rho(valid)':>10} {'rho(test)':>10} {'tau':>7} {'top10%':>7} {'ms/arch':>8}")
    for q in proxies:
        s = np.array([scores[a.key][q] for a, _ in entries])
        rho[q] = round(float(spearmanr(s, valid)[0]), 4)
        rho_test[q] = round(float(spearmanr(s, test)[0]), 4)
        tau[q] = round(float(kendalltau(s, valid)[0]), 4)
        top10[q] = round(len(best_valid & set(np.argsort(-s, kind="stable")[:top])) / top, 3)
        per_arch[q] = round(float(np.mean([ms[a.key][q] for a, _ in entries if q in ms.get(a.key, {})] or [0.0])), 2)
        print(f"{q:<10} {rho[q]:>10.4f} {rho_test[q]:>10.4f} {tau[q]:>7.4f} {top10[q]:>7.3f} {per_arch[q]:>8.2f}")
    best = max(rho, key=lambda k: rho[k])
    verdict = "met" if rho[best] >= 0.6 else "NOT met"
    print(f"best proxy by rho(valid): {best} ({rho[best]:.4f}); target >= 0.6: {verdict}")
    sizes = [int(v) for v in args.train_sizes.split(",") if v.strip()]
    features = predictor_features(space, [a for a, _ in entries],
                                  np.array([[scores[a.key][q] for q in proxies] for a, _ in entries]), valid, sizes)
    for n, row in features.items():
        print(f"random forest on {n} labelled archs, held-out rho(valid): "
              + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(json.dumps({"spearman": rho, "spearman_test": rho_test, "kendall": tau, "top10_overlap": top10,
                      "n_archs": len(entries), "ms_per_arch": per_arch, "best": best, "batch_size": args.batch_size,
                      "seed": args.seed, "threads": 1, "predictor_features": features,
                      "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
