"""Token mixers without attention: MLP-Mixer token mixing and PoolFormer average pooling.

Both map (B, L, D) -> (B, L, D) and carry no norm or residual (the builder wraps them).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TokenMixingMLP(nn.Module):
    """MLP-Mixer token mixing: Linear(L, e*L) -> GELU -> Linear(e*L, L) across the token axis.

    Shared over channels, so it needs a fixed ``seq_len``. Parameters: 2 * e * L^2 + e * L + L.
    """

    def __init__(self, seq_len: int, expansion: float = 2) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if expansion <= 0:
            raise ValueError(f"expansion must be > 0, got {expansion}")
        hidden = max(1, int(round(expansion * seq_len)))
        self.seq_len = seq_len
        self.fc1 = nn.Linear(seq_len, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, seq_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[1] == self.seq_len, f"token mixing was built for {self.seq_len} tokens")
        y = self.fc2(self.act(self.fc1(x.transpose(1, 2))))
        return y.transpose(1, 2)


class PoolTokenMixer(nn.Module):
    """PoolFormer token mixer: avg_pool(x) - x over a window of ``kernel`` neighbouring tokens.

    Subtracting x makes it a pure mixing term (the residual around it adds x back). No parameters.
    """

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"pool kernel must be odd and >= 1, got {kernel}")
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.transpose(1, 2)
        pooled = F.avg_pool1d(t, self.kernel, 1, self.kernel // 2, count_include_pad=False)
        return (pooled - t).transpose(1, 2)
