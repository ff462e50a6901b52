"""Architecture -> ``nn.Module`` for three families (needs the ``torch`` extra).

A space file says how its architectures become networks in a ``model:`` section::

    model: {family: macro}      # stem + stages of per-layer block choices (ProxylessNAS / OFA style)
    model: {family: cells}      # stacked NAS-Bench-201 / DARTS cells with reductions
    model: {family: tokens}     # per-layer token mixer + feed-forward stacks for sequences

Top-level architecture values named ``dropout`` set the classifier's dropout; values named
like training-recipe fields (``lr``, ``weight_decay``, ``batch_size``, ``optimizer``) are read by
the training evaluator, not the builder. Every family returns a
:class:`~archscout.build.network.UnitNetwork` (``profile_units()`` for cost models).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ArchscoutError, SpaceError
from ..space import Architecture, SearchSpace
from .network import UnitNetwork

FAMILIES = ("macro", "cells", "tokens")


def model_family(space: SearchSpace) -> str:
    """The family a space's ``model:`` section names (``family`` key)."""
    family = space.model.get("family")
    if family is None:
        raise SpaceError(f"space {space.name!r} has no 'model: {{family: ...}}' section "
                         f"(one of {', '.join(FAMILIES)}), so it cannot be built as a network")
    if family not in FAMILIES:
        raise SpaceError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    return str(family)


def build_model(space: SearchSpace, arch: Architecture | Mapping[str, Any], input_shape: tuple[int, ...],
                num_classes: int, vocab_size: int | None = None, seed: int | None = 0) -> UnitNetwork:
    """Build ``arch`` of ``space`` as an untrained network.

    ``input_shape`` is one sample without the batch axis: (C, H, W) images, (C, L) signals,
    or (L,) token ids with ``vocab_size``. With ``seed`` the initial weights are reproducible
    (the global torch RNG is left as it was).
    """
    if not isinstance(arch, Architecture):
        arch = space.make(arch)
    family = model_family(space)
    values = arch.values
    model = space.model
    dropout = float(values.get("dropout", model.get("dropout", 0.0)))
    input_shape = tuple(int(s) for s in input_shape)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        try:
            if family == "macro":
                from .macro import build_macro

                return build_macro(values, model, input_shape, num_classes, dropout)
            if family == "cells":
                from .cells import build_cells

                return build_cells(space, values, model, input_shape, num_classes, dropout)
            from .tokens import build_tokens

            return build_tokens(space, values, model, input_shape, num_classes, dropout, vocab_size)
        except ArchscoutError:
            raise
        except (ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise SpaceError(f"cannot build {family} network for {arch.key}: {type(exc).__name__}: {exc}") from None


__all__ = ["FAMILIES", "UnitNetwork", "build_model", "model_family"]
