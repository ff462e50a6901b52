"""Batch-norm recalibration for subnets of a weight-sharing supernet (SPOS, OFA/BigNAS).

A supernet's running statistics mix every path it was trained on; a sampled subnet needs
statistics of its own before it is evaluated. :func:`recalibrate_bn` resets every
BatchNorm's running mean and variance and re-estimates them as a plain (cumulative) average
over a few training batches, in train mode and without gradients; weights are untouched.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` (1-D, 2-D, 3-D)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor],
                   forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """Re-estimate BN running statistics of ``model`` from ``batches`` of inputs.

    ``forward`` runs one batch (default ``model(x)``; a supernet passes its path-bound call).
    Returns the number of samples seen. The model is left in eval mode.
    """
    bns = batchnorms(model)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts the same
    model.train()
    seen = 0
    try:
        for x in batches:
            (forward or model)(x)
            seen += int(x.shape[0])
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m
        model.eval()
    return seen
