"""Fast feed-forward (FFF) layer: a differentiable binary tree that routes each token to one leaf FFN.

After Belcak & Wattenhofer, "Fast Feedforward Networks" (2023) and "Exponentially Faster Language
Modelling" (UltraFastBERT, 2023), with the load-balancing loss and master leaf of Charalampopoulos
et al., "Enhancing Fast Feed Forward Networks with Load Balancing and a Master Leaf Node" (2024).

Tree of depth d in heap order: node i has children 2i+1 and 2i+2; the 2^d - 1 nodes are single
neurons, logit_i = w_i . x + b_i. A token goes to child 2i+1 with probability sigmoid(logit_i) and to
2i+2 otherwise; hard routing takes 2i+1 when the logit's sign bit is clear (logit >= 0) and 2i+2 when
it is negative, i.e. the more probable child. The 2^d leaves (heap nodes 2^d - 1 ...) are GELU FFNs
D -> leaf_width -> D.

* Training (soft): every leaf is computed (as one dense matmul of width 2^d * leaf_width) and mixed
  with weights = product of the branch probabilities along its path — the layer is a plain
  differentiable FFN whose hidden units are gated by the tree.
* Inference (``eval()``, hard): each token descends the tree by the sign of its node logits
  (d gathers of one node row each: O(d * D) work), then only its leaf runs, with that leaf's
  weights gathered per token (W1[leaf] -> (N, D, w), batched matmul). Cost O((d + 2w) * D) per token
  instead of O(2^d * w * D). All shapes are static (index_select by computed index, no masks,
  no loops over tokens), so torch.export / ONNX export work.

Auxiliary losses, summed into ``self.aux_loss`` on every training forward (None in eval). Their
weights are relative: the trainer multiplies the summed ``aux_loss`` of all modules by its own
global weight (``aux_weight``, 0.01 by default — the Switch Transformer's alpha), so
``balance_weight=1`` means "the standard Switch-strength balancing".

* ``hardening`` h: h * mean binary entropy of the node decisions over batch and nodes (FFF paper),
  pushing routing towards hard 0/1 decisions so that the hard inference matches training.
* ``load_balancing`` with weight ``balance_weight`` a: a * 2^d * sum_l f_l * P_l (the Switch-style
  loss that "Enhancing FFF" carries over to leaves): f_l = fraction of tokens whose hard path
  ends in leaf l, P_l = mean soft mixture weight of leaf l. Minimal when the batch spreads evenly,
  i.e. it pushes every node's decisions towards 50/50 over the batch.

``master_leaf``: an always-active GELU FFN of width leaf_width, blended with the routed output by a
trainable coefficient, y = s * routed + (1 - s) * master with s = sigmoid(k), k initialised to 0
(the "Enhancing FFF" formulation). It adds 2 * D * w + w + D + 1 parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .basic import activation_layer
from .quant import fake_quant_weight


class MasterLeaf(nn.Module):
    """The shared always-on leaf: Linear(D, w) -> act -> Linear(w, D)."""

    def __init__(self, dim: int, width: int, act: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, width)
        self.act = activation_layer(act)
        self.fc2 = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FastFeedForward(nn.Module):
    """FFF of ``depth`` with 2^depth leaves of width ``leaf_width`` (default max(1, hidden // 2^depth)).

    Parameters: (2^d - 1) * (D + 1) routing (weights + bias) + 2^d * (2 * D * w + w + D) leaves (+ master leaf).
    """

    def __init__(self, dim: int, hidden: int, depth: int = 3, leaf_width: int | None = None,
                 load_balancing: bool = False, balance_weight: float = 1.0, master_leaf: bool = False,
                 hardening: float = 0.0, act: str = "gelu") -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if leaf_width is None:
            leaf_width = max(1, hidden // 2 ** depth)
        if leaf_width < 1:
            raise ValueError(f"leaf_width must be >= 1, got {leaf_width}")
        if hardening < 0 or balance_weight < 0:
            raise ValueError("hardening and balance_weight must be >= 0")
        self.depth = depth
        self.leaf_width = leaf_width
        self.n_nodes = 2 ** depth - 1
        self.n_leaves = 2 ** depth
        self.load_balancing = load_balancing
        self.balance_weight = balance_weight
        self.hardening = hardening
        self.weight_quant = "fp32"
        self.aux_loss: torch.Tensor | None = None
        self.act = activation_layer(act)
        b_in, b_leaf = 1 / math.sqrt(dim), 1 / math.sqrt(leaf_width)  # nn.Linear's init ranges
        # routing neuron i: weights node_w[i, :D], bias node_w[i, D] (one table: one gather per level)
        self.node_w = nn.Parameter(torch.empty(self.n_nodes, dim + 1).uniform_(-b_in, b_in))
        self.w1 = nn.Parameter(torch.empty(self.n_leaves, dim, leaf_width).uniform_(-b_in, b_in))
        self.b1 = nn.Parameter(torch.empty(self.n_leaves, leaf_width).uniform_(-b_in, b_in))
        self.w2 = nn.Parameter(torch.empty(self.n_leaves, leaf_width, dim).uniform_(-b_leaf, b_leaf))
        self.b2 = nn.Parameter(torch.empty(self.n_leaves, dim).uniform_(-b_leaf, b_leaf))
        self.master = MasterLeaf(dim, leaf_width, act) if master_leaf else None
        self.master_mix = nn.Parameter(torch.zeros(())) if master_leaf else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        if self.training:
            y = self.soft_forward(tokens)
        else:
            self.aux_loss = None
            y = self.hard_forward(tokens)
        if self.master is not None:
            s = torch.sigmoid(self.master_mix)
            y = s * y + (1 - s) * self.master(tokens)
        return y.reshape(shape)

    def leaf_mixture(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft leaf weights (N, 2^d) from all node logits (N, 2^d - 1): products of path probabilities."""
        p_first = torch.sigmoid(logits)  # probability of child 2i+1
        mix = logits.new_ones(logits.shape[0], 1)
        for level in range(self.depth):
            p = p_first[:, 2 ** level - 1: 2 ** (level + 1) - 1]
            mix = torch.stack([mix * p, mix * (1 - p)], dim=-1).reshape(logits.shape[0], 2 ** (level + 1))
        return mix

    def hard_leaf(self, logits: torch.Tensor) -> torch.Tensor:
        """Leaf index (N,) reached by following the sign of each visited node's logit."""
        node = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        for _ in range(self.depth):
            negative = torch.signbit(logits.gather(1, node.unsqueeze(1)).squeeze(1))
            node = torch.add(negative, node, alpha=2).add_(1)
        return node - self.n_nodes

    def node_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of every routing node, (N, D) -> (N, 2^d - 1)."""
        dim = tokens.shape[1]
        return tokens @ self.node_w[:, :dim].t() + self.node_w[:, dim]

    def soft_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, dim = tokens.shape
        logits = self.node_logits(tokens)
        mix = self.leaf_mixture(logits)  # (N, L)
        w1 = fake_quant_weight(self.w1, self.weight_quant, 1)
        w2 = fake_quant_weight(self.w2, self.weight_quant, 1)
        width = self.n_leaves * self.leaf_width
        h = tokens @ w1.permute(1, 0, 2).reshape(dim, width) + self.b1.reshape(width)
        h = self.act(h).view(n, self.n_leaves, self.leaf_width) * mix.unsqueeze(-1)
        y = h.reshape(n, width) @ w2.reshape(width, dim) + mix @ self.b2
        aux = tokens.new_zeros(())
        if self.hardening > 0 and self.n_nodes > 0:
            p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
            entropy = -(p * torch.log(p) + (1 - p) * torch.log(1 - p))
            aux = aux + self.hardening * entropy.mean()
        if self.load_balancing:
            f = F.one_hot(self.hard_leaf(logits.detach()), self.n_leaves).to(mix.dtype).mean(dim=0)
            aux = aux + self.balance_weight * self.n_leaves * (f * mix.mean(dim=0)).sum()
        self.aux_loss = aux
        return y

    def hard_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # Per-token dot products are written as multiply + sum: on CPU, bmm over N separate 1 x D by
        # D x 1 products costs ~7x more than the elementwise form at N = 256 (and ~1 us less at N = 1).
        # signbit + add-with-alpha is the cheapest eager form of "node <- 2 node + 1 + [logit < 0]".
        n, dim = tokens.shape
        augmented = torch.cat([tokens, tokens.new_ones(n, 1)], dim=1)  # (N, D + 1): bias column
        node = torch.zeros(n, dtype=torch.long, device=tokens.device)
        node_w = self.node_w  # one nn.Module attribute lookup, not one per level
        for _ in range(self.depth):  # node <- child 2i + 1 (logit >= 0) or 2i + 2 (logit < 0)
            logit = (augmented * node_w.index_select(0, node)).sum(dim=1)
            node = torch.add(torch.signbit(logit), node, alpha=2).add_(1)
        leaf = node - self.n_nodes
        b1, b2 = self.b1.index_select(0, leaf), self.b2.index_select(0, leaf)
        # gathered per-token leaf weights: W1[leaf] (N, D, w), W2[leaf] (N, w, D). Each is consumed
        # inside one expression so the first (up to N * D * w floats) is freed before the second is
        # gathered: the allocator then reuses the block instead of faulting in fresh pages.
        if self.leaf_width == 1:
            h = self.act((tokens * self.gathered(self.w1, leaf).view(n, dim)).sum(dim=1, keepdim=True) + b1)
            return h * self.gathered(self.w2, leaf).view(n, dim) + b2  # (N, 1) x (N, D)
        h = self.act(torch.bmm(tokens.unsqueeze(1), self.gathered(self.w1, leaf)).view(n, -1) + b1)
        return torch.bmm(h.unsqueeze(1), self.gathered(self.w2, leaf)).view(n, dim) + b2

    def gathered(self, stacked: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
        """Rows ``stacked[leaf]`` of a stacked leaf weight (L, in, out), fake-quantized if enabled."""
        return fake_quant_weight(stacked.index_select(0, leaf), self.weight_quant, 1)

    def hard_macs_per_token(self) -> int:
        """Multiply-adds per token of the eval (hard) path: depth routing dots + one leaf (+ master).

        Cost models need this because that path is written with index_select / multiply / sum (and
        bmm only for leaf_width > 1), which FLOP counters that only see matmuls under-count.
        """
        dim = self.node_w.shape[1] - 1
        macs = self.depth * (dim + 1) + 2 * dim * self.leaf_width
        return macs + (2 * dim * self.leaf_width if self.master is not None else 0)

    def leaf_index(self, x: torch.Tensor) -> torch.Tensor:
        """The hard leaf of each token of ``x`` (..., D) -> (...,): what eval mode computes."""
        tokens = x.reshape(-1, x.shape[-1])
        return self.hard_leaf(self.node_logits(tokens)).reshape(x.shape[:-1])
