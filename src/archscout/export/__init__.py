"""Standalone exports of built networks (needs the ``torch`` extra; ONNX needs onnx + onnxruntime).

:func:`export_torch` writes a Python package folder whose ``module.py`` defines the network
in plain PyTorch (traced with ``torch.fx``, so archscout's own blocks are inlined as torch
operations) and loads ``state_dict.pt`` beside it::

    import sys; sys.path.insert(0, "out")      # the folder that holds model/
    from model import Model
    net = Model().eval()

When a block cannot be traced symbolically, the network is written with ``torch.export``
instead (``model.pt2``, loaded with ``torch.export.load(path).module()``).
:func:`export_onnx` writes ``model.onnx`` and checks it with onnxruntime.
"""
from __future__ import annotations

from .standalone import ExportResult, export_model, export_onnx, export_torch, load_torch_export

__all__ = ["ExportResult", "export_model", "export_onnx", "export_torch", "load_torch_export"]
