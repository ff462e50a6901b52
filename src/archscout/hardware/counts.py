"""Static cost counts of a model: parameters, FLOPs and MACs.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts only the
matrix-multiply-like operators (linear/matmul, convolution, attention) and counts one
multiply-add as **2 FLOPs**. Element-wise work (activations, normalisation, pooling,
additions) is not counted; on small models that work is a visible part of latency, which is
why latency has its own measured and table-based models. MACs are FLOPs // 2.

The CPU attention kernels and PyTorch's fused inference fast paths (``nn.MultiheadAttention``
and ``nn.TransformerEncoderLayer`` in eval mode) are invisible to the stock counter, so
formulas for them are added here (matmul work only, 2 FLOPs per multiply-add).
"""
from __future__ import annotations

from math import prod
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .runner import check_positive, eval_mode, example_input, input_dtype, model_device

aten = torch.ops.aten


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable and frozen alike (shared tensors once; buffers such as
    BatchNorm running statistics are not parameters and are not counted)."""
    return sum(p.numel() for p in model.parameters())


def _sdpa_flops(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """softmax(Q K^T) V for q (..., L, E), k (..., S, E), v (..., S, Ev): two batched matmuls."""
    batch = prod(q[:-2])
    length, embed = q[-2], q[-1]
    source = k[-2]
    return 2 * batch * length * source * embed + 2 * batch * length * source * v[-1]


def _native_mha_flops(q: Any, k: Any, v: Any, embed_dim: int, num_heads: int, *args: Any,
                      out_shape: Any = None, **kwargs: Any) -> int:
    """Fused eval-mode nn.MultiheadAttention: q/k/v projections, attention, output projection."""
    batch = prod(q[:-2]) if len(q) > 2 else 1
    length, source, e = q[-2], k[-2], embed_dim
    projections = 2 * batch * (length + 2 * source) * e * e + 2 * batch * length * e * e
    return projections + 4 * batch * length * source * e


def _encoder_layer_flops(src: Any, embed_dim: int, num_heads: int, *args: Any, out_shape: Any = None,
                         **kwargs: Any) -> int:
    """Fused eval-mode nn.TransformerEncoderLayer: self-attention block plus the two FFN linears."""
    ffn_weight_1 = args[11] if len(args) > 11 else kwargs.get("ffn_weight_1")
    hidden = ffn_weight_1[0]
    batch = prod(src[:-2]) if len(src) > 2 else 1
    length, e = src[-2], embed_dim
    attention = 2 * batch * 3 * length * e * e + 4 * batch * length * length * e + 2 * batch * length * e * e
    return attention + 2 * 2 * batch * length * e * hidden


def _extra_formulas() -> dict[Any, Any]:
    table: dict[Any, Any] = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_flops),
                          ("scaled_dot_product_attention", _sdpa_flops),
                          ("_native_multi_head_attention", _native_mha_flops),
                          ("_transformer_encoder_layer_fwd", _encoder_layer_flops)):
        op = getattr(aten, name, None)
        if op is not None:
            table[op] = formula
    return table


_EXTRA_FORMULAS = _extra_formulas()


def count_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Forward FLOPs for ONE sample (2 FLOPs per multiply-add; matmul/conv/attention only).

    Runs one eval-mode forward of ``batch_size`` samples of ``input_shape`` (no batch axis)
    on the model's own device and divides by the batch size; the model is left as it was.
    """
    check_positive("batch_size", batch_size)
    x = example_input(input_shape, batch_size, model_device(model), input_dtype(model))
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with eval_mode([model]), torch.inference_mode(), counter:
        model(x)
    return int(round(counter.get_total_flops() / batch_size))


def count_macs(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Multiply-accumulates for one sample: :func:`count_flops` // 2."""
    return count_flops(model, input_shape, batch_size) // 2
