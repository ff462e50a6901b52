"""Write a network as plain-PyTorch source + weights, and as ONNX; verify both round trips."""
from __future__ import annotations

import importlib.util
import contextlib
import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ArchscoutError
from .fx_source import write_fx_source

PACKAGE = "model"      # folder name of the exported Python package
CLASS_NAME = "Model"   # class defined in its module.py


class ExportError(ArchscoutError):
    """An exported model could not be written or does not reproduce the original."""


@dataclass
class ExportResult:
    """Where an export went and how closely it reproduces the in-process model (max |diff|)."""

    torch_path: Path | None = None
    torch_format: str | None = None          # "fx-source" or "torch.export"
    torch_max_abs_err: float | None = None
    onnx_path: Path | None = None
    onnx_max_abs_err: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"torch_path": str(self.torch_path) if self.torch_path else None, "torch_format": self.torch_format,
                "torch_max_abs_err": self.torch_max_abs_err,
                "onnx_path": str(self.onnx_path) if self.onnx_path else None,
                "onnx_max_abs_err": self.onnx_max_abs_err, "notes": list(self.notes)}


def export_torch(model: nn.Module, out_dir: str | Path, example: torch.Tensor) -> tuple[Path, str]:
    """Write ``model`` (in eval mode) as a standalone package ``out_dir/model`` (or ``model.pt2``).

    Returns (path, format). The fx route gives readable source; ``torch.export`` is the
    fallback for code that symbolic tracing cannot follow.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = _export_example(example)
    try:
        return write_fx_source(model, out / PACKAGE, CLASS_NAME), "fx-source"
    except Exception as exc:  # noqa: BLE001 - tracing limits vary by block; fall back below
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        except Exception:  # noqa: BLE001 - some blocks specialise on the batch size
            program = torch.export.export(model, (example,))
        path = out / "model.pt2"
        torch.export.save(program, str(path))
        return path, "torch.export"
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot export the network as PyTorch (fx: {reason}; torch.export: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def load_torch_export(path: str | Path) -> nn.Module:
    """Load what :func:`export_torch` wrote, using nothing but PyTorch."""
    path = Path(path)
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
    spec = importlib.util.spec_from_file_location(f"_archscout_export_{abs(hash(str(path)))}", path / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise ExportError(f"{path} is not an exported model package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, CLASS_NAME)().eval()


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = 18) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = _export_example(example)
    errors = []
    for dynamo in (True, False):
        try:
            kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"], "opset_version": opset}
            if dynamo:
                kwargs.update(dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                              external_data=False, verbose=False)
            else:
                kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
            with _quiet():
                torch.onnx.export(model, (example,), str(path), dynamo=dynamo, **kwargs)
            return path
        except Exception as exc:  # noqa: BLE001 - try the other exporter
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}")
    raise ExportError("cannot export the network as ONNX (" + "; ".join(errors) + ")")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, warnings and log lines (errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def onnx_outputs(path: str | Path, inputs: torch.Tensor) -> torch.Tensor:
    """Run an exported ONNX model with onnxruntime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: inputs.numpy()})[0])


def export_model(model: nn.Module, out_dir: str | Path, example: torch.Tensor, formats: tuple[str, ...] = ("torch", "onnx"),
                 check_batch: int = 8, metadata: dict[str, Any] | None = None) -> ExportResult:
    """Export ``model`` in ``formats`` to ``out_dir`` and measure each export's max |output difference|.

    The check runs the original and the export on ``check_batch`` inputs shaped like
    ``example``. ``metadata`` (architecture, metrics ...) is written to ``out_dir/model.json``.
    """
    unknown = set(formats) - {"torch", "onnx"}
    if unknown:
        raise ExportError(f"unknown export format {sorted(unknown)[0]!r}; use torch and/or onnx")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    batch = _check_inputs(example, check_batch)
    with torch.no_grad():
        reference = model(batch)
    result = ExportResult()
    if "torch" in formats:
        result.torch_path, result.torch_format = export_torch(model, out, example)
        with torch.no_grad():
            got = load_torch_export(result.torch_path)(batch)
        result.torch_max_abs_err = float((got - reference).abs().max())
    if "onnx" in formats:
        result.onnx_path = export_onnx(model, out / "model.onnx", example)
        result.onnx_max_abs_err = float((onnx_outputs(result.onnx_path, batch) - reference).abs().max())
    info = dict(metadata or {})
    info.update(input_shape=list(example.shape[1:]), input_dtype=str(example.dtype).replace("torch.", ""),
                export=result.to_dict())
    (out / "model.json").write_text(json.dumps(info, indent=2, default=str))
    return result


def _export_example(example: torch.Tensor) -> torch.Tensor:
    """An example batch of at least 2: torch.export specialises a batch of 1 to a constant."""
    if example.shape[0] >= 2:
        return example
    return example.expand(2, *example.shape[1:]).clone()


def _check_inputs(example: torch.Tensor, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    shape = (n, *example.shape[1:])
    if example.dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=example.dtype)
    high = int(example.max().item()) + 1 if example.numel() else 2
    return torch.randint(0, max(high, 2), shape, generator=gen, dtype=example.dtype)
