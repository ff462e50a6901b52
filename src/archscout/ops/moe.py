"""Mixture-of-experts feed-forward with a top-k softmax router and a Switch/GShard balancing loss.

Routing: p = softmax(router(x)) over E experts; each token keeps its top-k experts. For k > 1 the
kept probabilities are renormalised to sum to 1 (GShard/Mixtral); for k = 1 the raw probability is
kept (Switch), so the router still receives gradient from the task loss.

Dispatch trade-off: every expert is computed for every token and the outputs are combined with the
sparse (N, E) gate matrix (zeros outside the top-k). That costs E/k times the FLOPs of true sparse
dispatch, but has no data-dependent shapes (no boolean masks, no per-expert token lists), so it
exports through torch.export/ONNX unchanged and runs as a few large batched matmuls — the better
deal for the small expert counts (2-8) this toolkit searches over. The gate matrix still has
exactly k non-zeros per token, so the *function* is the sparse MoE's.

Quantization: the router is an ``nn.Linear`` and is wrapped like any other layer; the stacked expert
weights are fake-quantized per (expert, output unit) through ``weight_quant`` (set by ``quantize``).

Load balancing (Switch Transformer): aux = w * E * sum_e f_e * P_e, where f_e is the fraction of
the N*k routing slots assigned to expert e and P_e the mean router probability of e. It equals w
for a perfectly uniform router and grows as routing concentrates. Set as ``self.aux_loss`` on every
training forward (None in eval). w (``balance_weight``, default 1) is relative: the trainer scales
the sum of all modules' aux losses by its global ``aux_weight`` (0.01 by default, Switch's alpha).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quant import fake_quant_weight


class MoEFFN(nn.Module):
    """``experts`` GELU FFNs of width ``hidden`` each, top-``top_k`` routed.

    Parameters: D * E (router, no bias) + E * (2 * D * H + H + D).
    """

    def __init__(self, dim: int, hidden: int, experts: int = 4, top_k: int = 2, balance_weight: float = 1.0) -> None:
        super().__init__()
        if experts < 1:
            raise ValueError(f"experts must be >= 1, got {experts}")
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, experts={experts}], got {top_k}")
        if balance_weight < 0:
            raise ValueError(f"balance_weight must be >= 0, got {balance_weight}")
        self.experts = experts
        self.top_k = top_k
        self.balance_weight = balance_weight
        self.weight_quant = "fp32"
        self.aux_loss: torch.Tensor | None = None
        self.router = nn.Linear(dim, experts, bias=False)
        b1, b2 = 1 / math.sqrt(dim), 1 / math.sqrt(hidden)  # nn.Linear's default init range
        self.w1 = nn.Parameter(torch.empty(experts, dim, hidden).uniform_(-b1, b1))
        self.b1 = nn.Parameter(torch.empty(experts, hidden).uniform_(-b1, b1))
        self.w2 = nn.Parameter(torch.empty(experts, hidden, dim).uniform_(-b2, b2))
        self.b2 = nn.Parameter(torch.empty(experts, dim).uniform_(-b2, b2))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For tokens (N, D): sparse gates (N, E) with top_k non-zeros, router probs (N, E), top indices (N, k)."""
        probs = F.softmax(self.router(x), dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        if self.top_k > 1:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True)
        gates = torch.zeros_like(probs).scatter(1, top_i, top_p)
        return gates, probs, top_i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        gates, probs, top_i = self.route(tokens)
        w1 = fake_quant_weight(self.w1, self.weight_quant, 1)
        w2 = fake_quant_weight(self.w2, self.weight_quant, 1)
        h = F.gelu(torch.einsum("nd,edh->neh", tokens, w1) + self.b1)
        y = torch.einsum("neh,ehd->nd", h * gates.unsqueeze(-1), w2) + gates @ self.b2
        if self.training:
            assigned = F.one_hot(top_i, self.experts).to(probs.dtype).sum(dim=1).mean(dim=0) / self.top_k
            self.aux_loss = self.balance_weight * self.experts * (assigned * probs.mean(dim=0)).sum()
        else:
            self.aux_loss = None
        return y.reshape(shape)
