"""Issue-4 part 4: BigNAS / OFA on an elastic macro space, end to end, measured.

Protocol: ``examples/spaces/ofa_net.yaml`` (elastic width, depth, kernel and expansion) on
MNIST-1D (split seed 0); :func:`archscout.oneshot.bignas.run_bignas` trains the elastic
supernet with the sandwich rule and in-place distillation (``--epochs``), then runs
constrained evolution on inherited validation accuracy (BN recalibrated per subnet) under
``flops <= --flops`` per sample. Reported:

* the largest and smallest subnets' inherited validation accuracy and FLOPs;
* the best subnet found under the budget: inherited valid accuracy, FLOPs, and the test
  accuracy of its ``extract()``-ed stand-alone network with the inherited weights (no
  retraining; test read for reporting only);
* ``extract_max_abs_diff``: the largest |logit difference| between the supernet running that
  subnet and the extracted network on 256 validation samples (exactness of extraction);
* the same architecture trained from scratch with archscout's training evaluator for
  ``--epochs`` epochs (AdamW lr 3e-3, batch 64, as the supernet): valid / test accuracy and
  seconds, i.e. whether inheriting from the supernet beats training alone on the same budget.

Usage: python benchmarks/bignas.py [--epochs 3] [--flops 1.5e6] [--seed 0]
Last line: JSON {"largest", "smallest", "best", "extract_max_abs_diff", "scratch", "train_s", "evolve_s", ...}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--flops", type=float, default=1.5e6)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch

    from archscout.hardware import count_flops
    from archscout.oneshot.bignas import recalibrate_bn, run_bignas, subnet_accuracy
    from archscout.space import load_space
    from archscout.training.data import load_dataset
    from archscout.training.evaluator import TrainingEvaluator

    torch.set_num_threads(1)
    space = load_space(ROOT / "examples" / "spaces" / "ofa_net.yaml")
    data = load_dataset("mnist1d", seed=0)
    start = time.perf_counter()
    result = run_bignas(space, data, epochs=args.epochs, constraints=[f"flops<={args.flops:g}"], seed=args.seed,
                        keep_supernet=True)
    total_s = time.perf_counter() - start
    net = result.info["supernet"]

    def flops_of(arch) -> float:
        return float(count_flops(net.extract(arch), data.input_shape))

    out: dict = {"epochs": args.epochs, "flops_budget": args.flops, "seed": args.seed,
                 "train_s": round(result.info["train_s"], 1), "evolve_s": round(result.info["evolve_s"], 1),
                 "total_s": round(total_s, 1), "evaluated": result.info["evaluated"], "threads": 1}
    for end in ("largest", "smallest"):
        arch = space.make(result.info[end]["arch"])
        out[end] = {"valid_acc": round(subnet_accuracy(net, arch, data, seed=args.seed), 4),
                    "flops": flops_of(arch)}

    best = result.archs[0]
    recalibrate_bn(net, best, data, seed=args.seed)
    model = net.extract(best).eval()
    best_flops = float(count_flops(model, data.input_shape))
    x_valid = data.x_valid[:256]
    net.eval()
    with torch.no_grad():
        diff = float((net(x_valid) - model(x_valid)).abs().max())
        test_acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    out["best"] = {"arch": best.to_dict(), "valid_acc": round(result.scores[0]["supernet_acc"], 4),
                   "flops": best_flops, "test_acc_inherited": round(test_acc, 4)}
    out["extract_max_abs_diff"] = diff

    scratch = TrainingEvaluator(space, data, recipe={"epochs": args.epochs, "lr": 3e-3, "batch_size": 64,
                                                     "optimizer": "adamw", "threads": 1},
                                seed=args.seed, checkpoints=0)
    m = scratch.evaluate(best)
    out["scratch"] = {"valid_acc": round(float(m["valid_acc"]), 4), "test_acc": round(float(m["test_acc"]), 4),
                      "train_s": round(float(m["train_s"]), 1)}
    print(f"largest {out['largest']}, smallest {out['smallest']}")
    print(f"best under flops <= {args.flops:g}: valid {out['best']['valid_acc']} (inherited), "
          f"{out['best']['flops']:.0f} FLOPs, test {out['best']['test_acc_inherited']}; "
          f"trained from scratch for {args.epochs} epochs: {out['scratch']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
