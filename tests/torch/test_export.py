"""Exports load with plain PyTorch (archscout blocked) and ONNX Runtime, and reproduce the model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
pytestmark = pytest.mark.torch

from archscout.build import build_model  # noqa: E402
from archscout.export import export_model, load_torch_export  # noqa: E402
from archscout.export.standalone import ExportError  # noqa: E402
from archscout.space.spec import load_space  # noqa: E402

SPACES = Path(__file__).resolve().parents[2] / "examples" / "spaces"
CASES = [("macro_net", (1, 8, 8), None, 0), ("macro_quant", (1, 8, 8), None, 1), ("nb201_net", (1, 8, 8), None, 0),
         ("darts_net", (1, 16, 16), None, 0), ("tokens_net", (1, 40), None, 2), ("tokens_net", (12,), 10, 3)]


@pytest.mark.parametrize("name,shape,vocab,seed", CASES, ids=[f"{c[0]}-{len(c[1])}d" for c in CASES])
def test_export_round_trips(tmp_path: Path, name: str, shape: tuple[int, ...], vocab: int | None, seed: int) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    model = build_model(space, space.sample(np.random.default_rng(seed)), shape, 10, vocab_size=vocab).eval()
    result = export_model(model, tmp_path, model.example_input(1), metadata={"name": name})
    assert result.torch_format == "fx-source"
    assert result.torch_max_abs_err is not None and result.torch_max_abs_err <= 1e-5
    assert result.onnx_max_abs_err is not None and result.onnx_max_abs_err <= 1e-4
    assert (tmp_path / "model.json").exists() and (tmp_path / "model.onnx").exists()


def test_the_torch_export_needs_nothing_but_torch(tmp_path: Path) -> None:
    space = load_space(SPACES / "macro_net.yaml")
    model = build_model(space, space.sample(np.random.default_rng(4)), (1, 8, 8), 10).eval()
    export_model(model, tmp_path, model.example_input(1), formats=("torch",))
    x = model.example_input(5)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(x), tmp_path / "y.pt")
    script = (
        "import sys, torch\n"
        "sys.modules['archscout'] = None  # any import of archscout now fails\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from model import Model\n"
        "net = Model().eval()\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}); y = torch.load({str(tmp_path / 'y.pt')!r})\n"
        "print(float((net(x) - y).abs().max()))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) <= 1e-5
    text = (tmp_path / "model" / "module.py").read_text()
    assert "archscout" not in text.replace("Exported by archscout", "")


def test_loaded_export_is_trainable(tmp_path: Path) -> None:
    space = load_space(SPACES / "nb201_net.yaml")
    model = build_model(space, space.sample(np.random.default_rng(0)), (1, 8, 8), 10).eval()
    result = export_model(model, tmp_path, model.example_input(1), formats=("torch",))
    net = load_torch_export(result.torch_path).train()
    loss = net(torch.randn(4, 1, 8, 8)).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ExportError, match="tflite"):
        export_model(model, tmp_path, torch.randn(1, 3), formats=("tflite",))
