"""Position-wise feed-forward layers, (..., D) -> (..., D): dense, gated (GLU/SwiGLU), low-rank, none.

``hidden`` is the width of the hidden layer as given (no 2/3 rescaling for the gated variant, so a
GLU of the same ``hidden`` holds 1.5x the dense FFN's weights; the search sees that in its cost).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .basic import activation_layer

GLU_ACTS = ("silu", "gelu", "sigmoid")


class DenseFFN(nn.Module):
    """Linear(D, H) -> GELU -> Linear(H, D). Parameters: 2 * D * H + H + D."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GatedFFN(nn.Module):
    """GLU family: Linear_down(act(Linear_gate(x)) * Linear_up(x)); ``act="silu"`` is SwiGLU.

    Bias-free like LLaMA/PaLM: 3 * D * H parameters. ``sigmoid`` is the original GLU, ``gelu`` GEGLU.
    """

    def __init__(self, dim: int, hidden: int, act: str = "silu") -> None:
        super().__init__()
        if act not in GLU_ACTS:
            raise ValueError(f"unknown GLU activation {act!r}; known: {', '.join(GLU_ACTS)}")
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.act = activation_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))


def low_rank(dim_in: int, dim_out: int, rank: int) -> nn.Sequential:
    """W = U V as Linear(dim_in, rank, no bias) -> Linear(rank, dim_out): rank * (dim_in + dim_out) + dim_out."""
    return nn.Sequential(nn.Linear(dim_in, rank, bias=False), nn.Linear(rank, dim_out))


class LowRankFFN(nn.Module):
    """Dense FFN with both projections factorised through ``rank`` units.

    ``rank`` defaults to max(1, round(rank_ratio * min(D, H))). Parameters:
    2 * rank * (D + H) + H + D.
    """

    def __init__(self, dim: int, hidden: int, rank: int | None = None, rank_ratio: float = 0.25) -> None:
        super().__init__()
        if rank is None:
            if not 0 < rank_ratio <= 1:
                raise ValueError(f"rank_ratio must be in (0, 1], got {rank_ratio}")
            rank = max(1, int(round(rank_ratio * min(dim, hidden))))
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.rank = rank
        self.fc1 = low_rank(dim, hidden, rank)
        self.act = nn.GELU()
        self.fc2 = low_rank(hidden, dim, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ZeroFFN(nn.Module):
    """No feed-forward: returns zeros, so the surrounding residual path is the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)
