"""FFF inference speed: hard-routed fast feed-forward vs a dense FFN of the same total width.

Model width 768, hidden width 4096 (BERT-base-sized layer). The headline FFF is depth 12 with leaf
width 1 (4096 one-neuron leaves + 4095 routing neurons): leaf size 1 is the setting of the
UltraFastBERT speed comparison (4095-neuron trees, 12 neurons used per token). A second FFF,
depth 8 with leaf width 16 (256 leaves), is timed alongside; at batch 256 it gathers 256 x 768 x 16
floats per weight matrix (as many bytes as the dense layer's weights), so it is memory-bound and its
time there swings with allocator page faults from run to run. Both FFFs and the dense
Linear(768, 4096) -> GELU -> Linear(4096, 768) run in eval mode under torch.inference_mode;
each measurement is the median of ``--repeat`` timed calls after ``--warmup`` untimed ones, in ms.

Target: FFF >= 5x faster than dense at batch 1.
Usage: python benchmarks/fff_speed.py [--threads 1] [--repeat 50] [--quick]
Last line: JSON with speedup_b1, speedup_b256 (headline FFF) and the raw milliseconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from archscout.ops import make_ffn

DIM = 768
HIDDEN = 4096


def median_ms(module: torch.nn.Module, x: torch.Tensor, warmup: int, repeat: int) -> float:
    """Median wall time of ``module(x)`` in milliseconds."""
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before timing")
    parser.add_argument("--batches", default="1,256", help="comma-separated batch sizes")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 timed calls, 2 warm-up")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup = 5, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "dense": make_ffn("dense", DIM, HIDDEN).eval(),
        "fff_d12_w1": make_ffn("fff", DIM, HIDDEN, depth=12, leaf_width=1).eval(),
        "fff_d8_w16": make_ffn("fff", DIM, HIDDEN, depth=8, leaf_width=16).eval(),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), D={DIM}, hidden={HIDDEN}, "
          f"median of {args.repeat} after {args.warmup} warm-up calls", flush=True)
    ms: dict[str, dict[str, float]] = {name: {} for name in models}
    for batch in [int(b) for b in args.batches.split(",")]:
        x = torch.randn(batch, DIM)
        for name, model in models.items():
            ms[name][f"b{batch}"] = round(median_ms(model, x, args.warmup, args.repeat), 4)
        dense = ms["dense"][f"b{batch}"]
        line = "  ".join(f"{name} {ms[name][f'b{batch}']:.3f} ms" for name in models)
        ratios = "  ".join(f"{name} {dense / ms[name][f'b{batch}']:.1f}x" for name in models if name != "dense")
        print(f"batch {batch:>4}: {line}  | speedup vs dense: {ratios}", flush=True)
    out: dict[str, object] = {}
    for batch in (1, 256):
        key = f"b{batch}"
        if key in ms["dense"]:
            out[f"speedup_{key}"] = round(ms["dense"][key] / ms["fff_d12_w1"][key], 2)
            out[f"speedup_{key}_d8_w16"] = round(ms["dense"][key] / ms["fff_d8_w16"][key], 2)
    out.update({"ms": ms, "threads": args.threads, "repeat": args.repeat, "dim": DIM, "hidden": HIDDEN,
                "headline": "fff_d12_w1"})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
