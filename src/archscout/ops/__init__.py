"""PyTorch building blocks for searched models, and the factories the model builder calls.

    make_block(name, c_in, c_out, stride=1, dim=2, **options)   # (B, C, L) / (B, C, H, W) blocks
    make_cell_op(name, c, stride=1, dim=2, quant="fp32")        # NAS-Bench-201 / DARTS cell ops
    make_mixer(name, dim, seq_len, **options)                   # (B, L, D) -> (B, L, D) token mixers
    make_ffn(name, dim, hidden, **options)                      # (..., D) -> (..., D) feed-forwards
    quantize(module, mode)                                      # fp32 | int8 | int4 | binary

Names: :data:`BLOCKS`, :data:`CELL_OPS`, :data:`MIXERS`, :data:`FFNS`, :data:`QUANT_MODES`; accepted
options and defaults per name: :data:`BLOCK_OPTIONS`, :data:`MIXER_OPTIONS`, :data:`FFN_OPTIONS`.
Every factory accepts ``quant``; an option a block does not take raises EvaluationError.

Auxiliary-loss convention: a module with an auxiliary training objective (MoE load balancing,
FFF load balancing and hardening) sets ``self.aux_loss`` to a scalar tensor on every forward in
training mode, and to None in eval mode. The value already carries the module's *relative*
weights (``balance_weight`` default 1, ``hardening`` default 0); the trainer adds
``aux_weight * sum(m.aux_loss for m in model.modules() if m.aux_loss is not None)`` to the task
loss after each forward, with one global ``aux_weight`` (0.01 by default, the Switch Transformer's
alpha). :func:`total_aux_loss` computes that sum.

Layout rule (the exporter concatenates the module sources into one standalone .py): every file
here except ``registry.py`` and this one imports only ``__future__``, math, typing, torch,
torch.nn, torch.nn.functional and sibling ops modules (single-line ``from .x import ...``); class
and function names are unique across those files; they never import archscout itself and raise
plain ValueError, which the factories turn into EvaluationError.
"""
from __future__ import annotations

from .quant import QUANT_MODES, quantize
from .registry import (
    BLOCK_OPTIONS,
    BLOCKS,
    CELL_OPS,
    FFN_OPTIONS,
    FFNS,
    MIXER_OPTIONS,
    MIXERS,
    make_block,
    make_cell_op,
    make_ffn,
    make_mixer,
    total_aux_loss,
)

__all__ = [
    "BLOCKS", "BLOCK_OPTIONS", "CELL_OPS", "FFNS", "FFN_OPTIONS", "MIXERS", "MIXER_OPTIONS", "QUANT_MODES",
    "make_block", "make_cell_op", "make_ffn", "make_mixer", "quantize", "total_aux_loss",
]
