"""Latency-model accuracy: lookup table and learned predictor vs measured latency, in MAPE.

Random architectures of a macro space are built with archscout.build.build_model (10
classes, input (1, 8, 8) digits-like by default, or --input 1,40 mnist1d-like) and measured
whole on this machine (batch 1, 1 thread, medians over interleaved rounds). Then:

- LUT: ``profile_space`` (as ``archscout profile`` runs it) times the units of --lut-samples
  other random architectures and calibrates the per-forward overhead; each held-out model's
  latency is looked up (a unit key the table lacks is profiled on the spot, and counted);
- predictor: ``LatencyPredictor`` fitted on --train other measured architectures, evaluated
  on the --eval held-out ones (also reported: with the table's sum as a feature, and a
  FLOPs-only linear fit for context).

Target: lut_mape <= 0.10 and predictor_mape <= 0.10 over >= 50 held-out architectures.
The ground-truth measurement is split around the profiling (half the rounds before, half
after), so slow drift in machine load hits both sides alike.

Usage: python benchmarks/latency_model.py [--quick] [--space PATH] [--input 1,8,8] [--eval 50] [--train 100]
Last line: JSON {"lut_mape", "predictor_mape", "n_archs", ...}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from archscout.hardware import LatencyPredictor, count_flops, profile_space, units_of  # noqa: E402
from archscout.hardware.profiling import measure_models  # noqa: E402
from archscout.space.spec import load_space  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = "examples/spaces/macro_net.yaml"


def mape(estimates: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error as a fraction (0.05 = 5%)."""
    return float(np.mean(np.abs(estimates - measured) / measured))


def distinct_architectures(space, count: int, seed: int, exclude: set[str]) -> list:
    """``count`` random architectures with keys not in ``exclude`` (which grows)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(100 * count):
        arch = space.sample(rng)
        if arch.key not in exclude:
            exclude.add(arch.key)
            out.append(arch)
            if len(out) == count:
                return out
    raise SystemExit(f"space has fewer than {count} new distinct architectures")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=None, help="macro space file (default: examples/spaces/macro_net.yaml)")
    parser.add_argument("--input", default="1,8,8", help="input shape without batch, e.g. 1,8,8 or 1,40")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--eval", type=int, default=50, help="held-out architectures (MAPE is over these)")
    parser.add_argument("--train", type=int, default=100, help="architectures the predictor is fitted on")
    parser.add_argument("--lut-samples", type=int, default=200, help="architectures profile_space samples")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved measurement rounds per model")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per model per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few architectures)")
    parser.add_argument("--worst", type=int, default=3, help="print the held-out models the LUT misses most")
    args = parser.parse_args()
    if args.quick:
        args.eval, args.train, args.lut_samples, args.rounds = 10, 20, 30, 2

    try:
        from archscout.build import build_model
    except ImportError as exc:
        raise SystemExit(f"archscout.build.build_model is not available ({exc}); this benchmark needs the builder")
    torch.set_num_threads(1)
    space_path = Path(args.space) if args.space else ROOT / DEFAULT_SPACE
    space = load_space(space_path)
    shape = tuple(int(s) for s in args.input.split(","))
    print(f"space {space_path.name}, input {shape}, {args.classes} classes, batch 1, 1 thread, "
          f"torch {torch.__version__}", flush=True)

    seen: set[str] = set()
    eval_archs = distinct_architectures(space, args.eval, args.seed + 1, seen)
    train_archs = distinct_architectures(space, args.train, args.seed + 2, seen)
    models = [build_model(space, a, shape, args.classes) for a in eval_archs + train_archs]
    shapes = [shape] * len(models)
    n_eval = len(eval_archs)

    half = max(1, args.rounds // 2)
    t0 = time.perf_counter()
    before = measure_models(models, shapes, repeats=args.repeats, rounds=half, seed=args.seed)
    t1 = time.perf_counter()
    table = profile_space(space, shape, args.classes, samples=args.lut_samples, seed=args.seed)
    t2 = time.perf_counter()
    after = measure_models(models, shapes, repeats=args.repeats, rounds=max(1, args.rounds - half),
                           seed=args.seed + 1)
    t3 = time.perf_counter()
    # one figure per model: the mean of the two halves' medians (symmetric around the profiling)
    measured = (np.asarray(before) + np.asarray(after)) / 2.0
    drift = float(np.median(np.asarray(after) / np.asarray(before)))
    print(f"measured {len(models)} models in {t1 - t0 + t3 - t2:.1f} s; median latency "
          f"{np.median(measured):.3f} ms (range {measured.min():.3f}-{measured.max():.3f}); "
          f"after/before drift x{drift:.3f}", flush=True)
    print(f"profile_space: {args.lut_samples} sampled architectures -> {len(table)} unit keys in {t2 - t1:.1f} s, "
          f"overhead {table.overhead_ms:.4f} ms", flush=True)

    eval_models, y_eval = models[:n_eval], measured[:n_eval]
    train_models, y_train = models[n_eval:], measured[n_eval:]
    eval_keys = [u.key for m in eval_models for u in units_of(m)]
    missing = {k for k in eval_keys if k not in table.entries}
    covered = sum(k in table.entries for k in eval_keys) / len(eval_keys)
    # models whose every unit was already in the table (no unit timed inside the model itself)
    full = np.array([all(u.key in table.entries for u in units_of(m)) for m in eval_models])
    table.autoprofile = True
    lut = np.array([table.lookup(m) for m in eval_models])
    lut_mape = mape(lut, y_eval)
    lut_mape_full = mape(lut[full], y_eval[full]) if full.any() else float("nan")
    ape = np.abs(lut - y_eval) / y_eval
    print(f"LUT: {covered:.1%} of held-out units found in the table ({len(missing)} keys profiled on lookup); "
          f"MAPE {lut_mape:.2%} ({lut_mape_full:.2%} over the {int(full.sum())} models found whole in the table), "
          f"max APE {ape.max():.1%}, mean bias {np.mean((lut - y_eval) / y_eval):+.2%}", flush=True)
    for i in np.argsort(-ape)[:args.worst]:
        units = [u.key.split("|", 1)[0] for u in units_of(eval_models[i])]
        print(f"  worst: measured {y_eval[i]:.3f} ms (halves {before[i]:.3f}/{after[i]:.3f}), LUT {lut[i]:.3f} ms; "
              f"units {' '.join(units)}", flush=True)

    predictor = LatencyPredictor().fit(train_models, y_train)
    pred = np.array(predictor.predict_many(eval_models))
    predictor_mape = mape(pred, y_eval)
    with_table = LatencyPredictor(table=table).fit(train_models, y_train)
    pred_lut = np.array(with_table.predict_many(eval_models))
    predictor_lut_mape = mape(pred_lut, y_eval)
    flops = np.array([count_flops(m, shape) for m in models], dtype=float)
    coef = np.polyfit(flops[n_eval:], y_train, 1)
    flops_mape = mape(np.polyval(coef, flops[:n_eval]), y_eval)
    print(f"predictor (fitted on {len(train_models)} measured models): MAPE {predictor_mape:.2%}; "
          f"with the LUT sum as a feature {predictor_lut_mape:.2%}; FLOPs-only linear fit {flops_mape:.2%}",
          flush=True)
    print(json.dumps({"lut_mape": round(lut_mape, 4), "predictor_mape": round(predictor_mape, 4),
                      "n_archs": n_eval, "n_train": len(train_models), "lut_samples": args.lut_samples,
                      "lut_keys": len(table), "lut_coverage": round(covered, 4),
                      "lut_mape_fully_covered": round(lut_mape_full, 4), "n_fully_covered": int(full.sum()),
                      "overhead_ms": round(table.overhead_ms, 5),
                      "predictor_lut_mape": round(predictor_lut_mape, 4), "flops_linear_mape": round(flops_mape, 4),
                      "median_latency_ms": round(float(np.median(measured)), 4), "drift": round(drift, 4),
                      "space": space_path.name, "input_shape": list(shape), "device": "cpu", "threads": 1,
                      "quick": args.quick}))


if __name__ == "__main__":
    sys.exit(main())
