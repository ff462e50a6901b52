"""Multi-head self-attention: a token mixer on (B, L, D) and a spatial block on (B, C, *spatial).

Projections are plain ``nn.Linear`` layers so :func:`quantize` can wrap them. The attention
itself is ``F.scaled_dot_product_attention`` (fused kernel on CPU, exports to ONNX/torch.export).
No positional encoding is added here: the token builder adds one; the spatial block is
permutation-equivariant over positions by design (its convolutional neighbours give position).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .basic import ConvProjection, IdentityOp, check_dim, pool_layer


class MultiHeadSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention (B, L, D) -> (B, L, D), no norm or residual.

    Parameters: 4 * D^2 + 4 * D (fused QKV and output projections with biases).
    """

    def __init__(self, dim: int, heads: int = 4, causal: bool = False) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class SpatialSelfAttention(nn.Module):
    """Self-attention over the flattened positions of a (B, C, *spatial) map.

    Stride is applied first by a 3x3 average pool (so attention runs on the smaller map), then a
    1x1-conv+BN projection maps c_in -> c_out when they differ; then a pre-norm residual
    attention layer over positions: t = t + MHSA(LayerNorm(t)).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, heads: int = 2, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.pool = pool_layer(dim, "avg", 3, stride) if stride > 1 else IdentityOp()
        self.proj = ConvProjection(c_in, c_out, 1, dim) if c_in != c_out else IdentityOp()
        self.norm = nn.LayerNorm(c_out)
        self.attn = MultiHeadSelfAttention(c_out, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.pool(x))
        t = y.flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm(t))
        return t.transpose(1, 2).reshape(y.shape)
