"""Issue-3 target: exported models reproduce the in-process model — max |output difference| on
held-out inputs <= 1e-5 for the standalone PyTorch export and <= 1e-4 for ONNX (onnxruntime, CPU).

Trains (briefly) random architectures of each example space on a dataset with matching inputs,
exports each with archscout.export.export_model and compares outputs on 64 test samples plus
random inputs. The headline figures are the maxima over the macro space (the space the other
issue-3 benchmarks search); every family is reported too.

Usage: python benchmarks/export_check.py [--archs 5] [--epochs 2] [--quick]
Last line: JSON {"torch_max_abs_err", "onnx_max_abs_err", "per_space": {...}}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPACES = [("macro_net", "digits"), ("macro_quant", "digits"), ("nb201_net", "digits"),
          ("darts_net", "synthetic-images"), ("tokens_net", "mnist1d"), ("tokens_net", "synthetic-seq")]


def main() -> None:
    import torch

    from archscout.export import export_model, load_torch_export
    from archscout.export.standalone import onnx_outputs
    from archscout.space.spec import load_space
    from archscout.training import load_dataset
    from archscout.training.evaluator import TrainingEvaluator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=5, help="architectures per space")
    p.add_argument("--epochs", type=int, default=2, help="training epochs before export")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.archs, args.epochs = 1, 1
    torch.set_num_threads(1)
    per_space: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for space_name, dataset in SPACES:
        space = load_space(ROOT / "examples" / "spaces" / f"{space_name}.yaml")
        data = load_dataset(dataset)
        ev = TrainingEvaluator(space, data, {"epochs": args.epochs, "batch_size": 64})
        worst = {"torch": 0.0, "onnx": 0.0}
        for i in range(args.archs):
            arch = space.sample(np.random.default_rng(100 + i))
            model = ev.trained_model(arch)
            x = data.x_test[:64]
            with tempfile.TemporaryDirectory() as out:
                result = export_model(model, out, x[:1])
                with torch.no_grad():
                    ref = model(x)
                    got = load_torch_export(result.torch_path)(x)
                onnx = onnx_outputs(result.onnx_path, x)
            worst["torch"] = max(worst["torch"], result.torch_max_abs_err, float((got - ref).abs().max()))
            worst["onnx"] = max(worst["onnx"], result.onnx_max_abs_err, float((onnx - ref).abs().max()))
        key = f"{space_name}/{dataset}"
        per_space[key] = {"torch_max_abs_err": worst["torch"], "onnx_max_abs_err": worst["onnx"]}
        print(f"{key:32s} torch {worst['torch']:.2e}  onnx {worst['onnx']:.2e}  ({args.archs} architectures)",
              flush=True)
    head = per_space["macro_net/digits"]
    print(json.dumps({"torch_max_abs_err": head["torch_max_abs_err"], "onnx_max_abs_err": head["onnx_max_abs_err"],
                      "per_space": per_space, "archs_per_space": args.archs, "epochs": args.epochs,
                      "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
