"""Turn a traceable network into one plain-PyTorch source file.

``torch.fx`` traces the network down to standard ``torch.nn`` layers (Conv2d, Linear,
BatchNorm ...) and torch functions; every layer becomes a flat attribute built from its
constructor repr, every other tensor (parameters and buffers of archscout's own blocks,
traced constants) a registered parameter or buffer, and the traced ``forward`` is written
out as is. The result needs only ``torch`` to import and is readable and fine-tunable.
"""
from __future__ import annotations

import inspect
import math
import re
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

HEADER = '''"""Exported by archscout: a standalone PyTorch network (needs only torch).

    from model import Model       # with the folder holding model/ on sys.path
    net = Model().eval()          # loads weights.pt from beside this file
"""
import math
import os
import torch
from torch import nn
from torch.nn import *  # noqa: F401,F403 - the layer classes used below
'''


def _flat(name: str) -> str:
    out = re.sub(r"\W", "_", name)
    return out if not out[0].isdigit() else "m_" + out


def _global_line(name: str, obj: Any) -> str | None:
    """An import/assignment that defines ``name`` as fx's generated code expects."""
    if name in ("torch", "math", "os"):
        return None
    if isinstance(obj, types.ModuleType):
        return f"import {obj.__name__} as {name}"
    if isinstance(obj, float) and (math.isinf(obj) or math.isnan(obj)):
        return f"{name} = float({str(obj)!r})"
    if obj is type(None):
        return f"{name} = type(None)"
    if isinstance(obj, str):
        return f"{name} = {obj}"
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qual and "<" not in qual:
        if module == "builtins":
            return None if name == qual else f"{name} = {qual}"
        return f"import {module}\n{name} = {module}.{qual}"
    raise ValueError(f"cannot write the global {name!r} ({obj!r}) of the traced code")


def _layer_repr(module: nn.Module) -> str:
    """Constructor call for a ``torch.nn`` layer, from its signature and attributes.

    (``repr`` is not enough: it leaves out settings such as ``count_include_pad``.)
    """
    cls = type(module)
    if not cls.__module__.startswith("torch.nn") or list(module.children()):
        raise ValueError(f"layer {cls.__name__} is not a plain torch.nn layer")
    args = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "device", "dtype") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name == "bias" and hasattr(module, "bias"):
            args.append(f"bias={module.bias is not None}")
            continue
        if not hasattr(module, name):
            if param.default is inspect.Parameter.empty:
                raise ValueError(f"cannot read {cls.__name__}.{name} to rebuild the layer")
            continue
        value = getattr(module, name)
        if isinstance(value, torch.Tensor):
            raise ValueError(f"{cls.__name__}.{name} is a tensor; cannot rebuild the layer from settings")
        args.append(f"{name}={value!r}")
    return f"{cls.__name__}({', '.join(args)})"


def write_fx_source(model: nn.Module, folder: Path, class_name: str = "Model") -> Path:
    """Write ``folder/__init__.py``, ``folder/module.py`` and ``folder/weights.pt``; returns ``folder``.

    Raises when the network cannot be traced symbolically (data-dependent Python control
    flow, loops over tensor sizes) or uses a layer outside ``torch.nn``.
    """
    model = model.eval()
    traced = torch.fx.symbolic_trace(model)
    graph = traced.graph
    root = nn.Module()
    layer_lines: list[str] = []
    tensor_lines: list[str] = []
    renamed: dict[str, str] = {}
    for node in graph.nodes:
        if node.op not in ("call_module", "get_attr"):
            continue
        target = str(node.target)
        if target not in renamed:
            flat = _flat(target)
            while hasattr(root, flat) and renamed.get(target) != flat:
                flat += "_"
            renamed[target] = flat
            if node.op == "call_module":
                layer = traced.get_submodule(target)
                setattr(root, flat, layer)
                layer_lines.append(f"        self.{flat} = {_layer_repr(layer)}")
            else:
                value = _fetch(traced, target)
                if isinstance(value, nn.Parameter):
                    root.register_parameter(flat, value)
                    tensor_lines.append(f"        self.{flat} = nn.Parameter(torch.empty({list(value.shape)}, "
                                        f"dtype={value.dtype}), requires_grad={value.requires_grad})")
                elif isinstance(value, torch.Tensor):
                    root.register_buffer(flat, value)
                    tensor_lines.append(f"        self.register_buffer({flat!r}, torch.empty({list(value.shape)}, "
                                        f"dtype={value.dtype}))")
                else:
                    raise ValueError(f"attribute {target!r} is a {type(value).__name__}, not a tensor")
        node.target = renamed[target]
    flat_module = torch.fx.GraphModule(root, graph)
    code = graph.python_code(root_module="self")
    globals_text = [line for n, obj in sorted(code.globals.items()) if (line := _global_line(n, obj))]
    forward = "\n".join("    " + line if line.strip() else "" for line in code.src.strip("\n").splitlines())
    source = "\n".join([
        HEADER, *globals_text, "", "",
        f"class {class_name}(nn.Module):",
        "    def __init__(self, load_weights: bool = True):",
        "        super().__init__()",
        *layer_lines, *tensor_lines,
        "        if load_weights:",
        "            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights.pt')",
        "            self.load_state_dict(torch.load(path, weights_only=True))",
        "",
        forward, ""])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "module.py").write_text(source)
    (folder / "__init__.py").write_text(f"from .module import {class_name}\n")
    torch.save(flat_module.state_dict(), folder / "weights.pt")
    return folder


def _fetch(module: nn.Module, dotted: str) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
