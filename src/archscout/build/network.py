"""The network shape every builder family produces: a chain of keyed units.

A built model is a :class:`UnitNetwork`: consecutive modules ("units": stem, each layer or
cell, head) applied in order. Each unit carries a ``unit_key`` describing its type,
configuration and input shape, so latency lookup tables can profile a unit once and reuse
the figure wherever the same block sits at the same input shape (ProxylessNAS / FBNet /
OFA style). ``profile_units()`` is the protocol the hardware cost models read.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def unit_key(kind: str, config: Mapping[str, Any]) -> str:
    """A stable text key: ``kind|a=1|b=2`` with keys sorted (the input shape is appended later)."""
    parts = [kind] + [f"{k}={config[k]}" for k in sorted(config)]
    return "|".join(parts)


class ClassifierHead(nn.Module):
    """Global average pooling over every non-channel axis, dropout, then a linear classifier.

    Works on (B, C, *spatial) feature maps (``tokens=False``) and on (B, L, D) token
    sequences (``tokens=True``, pools over L after a final LayerNorm).
    """

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0, tokens: bool = False) -> None:
        super().__init__()
        self.tokens = tokens
        self.norm = nn.LayerNorm(channels) if tokens else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            x = self.norm(x).mean(dim=1)
        else:
            x = x.flatten(2).mean(dim=2)
        return self.fc(self.dropout(x))


class UnitNetwork(nn.Module):
    """A model that is the composition of its units, in order.

    ``describe`` holds the family and the settings used, for reports and export.
    """

    def __init__(self, units: Sequence[tuple[str, nn.Module]], input_shape: tuple[int, ...],
                 describe: Mapping[str, Any] | None = None, input_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.units = nn.ModuleList([m for _, m in units])
        self._base_keys = [k for k, _ in units]
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_dtype = input_dtype
        self.describe = dict(describe or {})
        self._shapes = self._probe_shapes()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
        return x

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A valid input batch (zeros for token ids, standard normal otherwise)."""
        if self.input_dtype.is_floating_point:
            return torch.randn(batch_size, *self.input_shape, generator=torch.Generator().manual_seed(0))
        return torch.zeros(batch_size, *self.input_shape, dtype=self.input_dtype)

    def _probe_shapes(self) -> list[tuple[int, ...]]:
        """Input shape (without batch) of every unit, found by one eval-mode forward of a batch of 2."""
        was_training = self.training
        self.eval()
        shapes = []
        try:
            with torch.no_grad():
                x = self.example_input(2)
                for unit in self.units:
                    shapes.append(tuple(x.shape[1:]))
                    x = unit(x)
        finally:
            self.train(was_training)
        self.output_shape = tuple(x.shape[1:])
        return shapes

    def profile_units(self) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        """(key, module, input shape without batch) for each unit, in forward order."""
        return [(f"{k}|in={s}", m, s) for k, m, s in zip(self._base_keys, self.units, self._shapes)]

    def unit_dtypes(self) -> list[torch.dtype]:
        """The input dtype of each unit (only the first unit of a token model reads integer ids)."""
        return [self.input_dtype] + [torch.float32] * (len(self.units) - 1)
