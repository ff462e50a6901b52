"""Macro chains: a stem, stages of per-layer block choices, a classifier head.

The ProxylessNAS / FBNet / OFA / NAS-Bench-Macro family. The architecture names a chain
parameter (default: the first ``chain`` in the space) whose stages each hold a ``width``
and either a ``layers`` list (a ``repeat``: searchable depth, one block choice per layer)
or stage-level block settings repeated ``depth`` times. Every layer dict holds ``block``
(a name from :data:`archscout.ops.BLOCKS`) and that block's options (``kernel``,
``expansion``, ``se``, ``groups``, ``dilation``, ``heads``, ``quant`` ...). The first layer
of a stage applies the stage's stride.

``model:`` settings (all optional): ``stem_width`` (default 16, or the architecture's
``stem`` value), ``stem_kernel`` (3), ``stage_strides`` (default ``[1, 2, 2, ...]``),
``widths`` (per-stage widths when stages have no ``width``), ``chain`` (parameter name),
``block_defaults`` (options applied to every layer unless it sets them), ``dropout``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import SpaceError
from ..ops import make_block
from .network import ClassifierHead, UnitNetwork, unit_key

STAGE_KEYS = {"width", "layers", "depth", "stride"}


def build_macro(values: Mapping[str, Any], model: Mapping[str, Any], input_shape: tuple[int, ...],
                num_classes: int, dropout: float) -> UnitNetwork:
    """Build a macro-chain network for inputs of ``input_shape`` = (C, L) or (C, H, W)."""
    if len(input_shape) not in (2, 3):
        raise SpaceError(f"macro networks need (C, L) or (C, H, W) inputs, not {tuple(input_shape)}")
    dim = len(input_shape) - 1
    stages = _stages(values, model)
    strides = list(model.get("stage_strides") or [1] + [2] * (len(stages) - 1))
    if len(strides) < len(stages):
        strides += [2] * (len(stages) - len(strides))
    widths = model.get("widths")
    defaults = dict(model.get("block_defaults") or {})

    c = int(values.get("stem", model.get("stem_width", 16)))
    stem_cfg = {"kernel": int(model.get("stem_kernel", 3))}
    units: list[tuple[str, nn.Module]] = [
        (unit_key("stem:conv", {"c_in": input_shape[0], "c_out": c, **stem_cfg}),
         make_block("conv", input_shape[0], c, stride=1, dim=dim, **stem_cfg))]
    for si, stage in enumerate(stages):
        width = stage.get("width", widths[si] if widths and si < len(widths) else None)
        if width is None:
            raise SpaceError(f"macro stage {si} has no width (add a 'width' parameter or model.widths)")
        width = int(width)
        for li, layer in enumerate(_layers(stage, si)):
            opts = {**defaults, **{k: v for k, v in layer.items() if k != "block"}}
            stride = int(stage.get("stride", strides[si])) if li == 0 else 1
            block = str(layer["block"])
            key = unit_key(block, {"c_in": c, "c_out": width, "stride": stride, **opts})
            units.append((key, make_block(block, c, width, stride=stride, dim=dim, **opts)))
            c = width
    units.append((unit_key("head", {"c": c, "classes": num_classes}), ClassifierHead(c, num_classes, dropout)))
    return UnitNetwork(units, input_shape, {"family": "macro", "dim": dim})


def _stages(values: Mapping[str, Any], model: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    name = model.get("chain")
    if name is None:
        chains = [k for k, v in values.items() if isinstance(v, (list, tuple)) and v and
                  all(isinstance(s, Mapping) and STAGE_KEYS & set(s) for s in v)]
        if not chains:
            raise SpaceError("a macro space needs a chain parameter whose stages have width/layers/depth")
        name = chains[0]
    stages = values.get(name)
    if not isinstance(stages, (list, tuple)) or not stages:
        raise SpaceError(f"macro model: architecture has no chain {name!r}")
    return list(stages)


def _layers(stage: Mapping[str, Any], index: int) -> list[Mapping[str, Any]]:
    if "layers" in stage:
        layers = list(stage["layers"])
        if not all(isinstance(layer, Mapping) and "block" in layer for layer in layers):
            raise SpaceError(f"macro stage {index}: every layer needs a 'block' choice")
        return layers
    shared = {k: v for k, v in stage.items() if k not in STAGE_KEYS}
    if "block" not in shared:
        raise SpaceError(f"macro stage {index} needs 'layers' (a repeat) or a stage-level 'block'")
    return [shared] * int(stage.get("depth", 1))
