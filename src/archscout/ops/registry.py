"""Factories the model builder calls: name + options -> nn.Module, with user errors as archscout errors.

Each block/mixer/FFN name has a table of accepted options and their defaults. An option the
block does not take raises :class:`EvaluationError` naming it (so a typo in a space file fails
loudly instead of being silently ignored); every factory also accepts ``quant`` and passes it to
:func:`quantize`. Invalid values (an even kernel, groups that do not divide the channels, a width
not divisible by the heads, ...) surface as one-line :class:`EvaluationError` messages, unknown
names as :class:`UnknownNameError` listing the valid ones.

This is the only ops module that imports archscout itself; the exporter does not copy it.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import EvaluationError, UnknownNameError
from .attention import MultiHeadSelfAttention, SpatialSelfAttention
from .basic import ACTIVATIONS, IdentityOp, PoolBlock, ZeroOp, shortcut
from .cell_ops import DilConv, FactorizedReduce, ReLUConvBN, SepConv
from .conv import ConvBNAct, DepthwiseSeparable, MBConv, ResNetBasic, ResNetBottleneck
from .fff import FastFeedForward
from .ffn import GLU_ACTS, DenseFFN, GatedFFN, LowRankFFN, ZeroFFN
from .mixer import PoolTokenMixer, TokenMixingMLP
from .moe import MoEFFN
from .quant import QUANT_MODES, quantize
from .ssm import SelectiveSSM

# name -> accepted options with defaults (``quant`` is accepted everywhere, default "fp32")
BLOCK_OPTIONS: dict[str, dict[str, Any]] = {
    "conv": {"kernel": 3, "groups": 1, "dilation": 1, "act": "relu"},
    "dwsep": {"kernel": 3, "act": "relu"},
    "mbconv": {"kernel": 3, "expansion": 6, "se": False, "act": "relu"},
    "resnet_basic": {"kernel": 3},
    "resnet_bottleneck": {"kernel": 3, "expansion": 4},
    "identity": {},
    "maxpool": {"kernel": 3},
    "avgpool": {"kernel": 3},
    "attention": {"heads": 2},
}
MIXER_OPTIONS: dict[str, dict[str, Any]] = {
    "attention": {"heads": 4, "causal": False},
    "mixer": {"expansion": 2},
    "ssm": {"state": 16, "chunk": 8},
    "pool": {"kernel": 3},
    "identity": {},
}
FFN_OPTIONS: dict[str, dict[str, Any]] = {
    "dense": {},
    "glu": {"act": "silu"},
    "lowrank": {"rank": None, "rank_ratio": 0.25},
    "moe": {"experts": 4, "top_k": 2, "balance_weight": 1.0},
    "fff": {"depth": 3, "leaf_width": None, "load_balancing": False, "balance_weight": 1.0,
            "master_leaf": False, "hardening": 0.0, "act": "gelu"},
    "none": {},
}

BLOCKS: tuple[str, ...] = tuple(BLOCK_OPTIONS)
MIXERS: tuple[str, ...] = tuple(MIXER_OPTIONS)
FFNS: tuple[str, ...] = tuple(FFN_OPTIONS)
CELL_OPS: tuple[str, ...] = (
    "none", "zero", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "max_pool_3x3",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
# kinds of option values, checked (and normalised to plain Python types) before any module is built
_INT_OPTS = {"kernel", "groups", "dilation", "expansion", "heads", "state", "chunk", "rank", "experts",
             "top_k", "depth", "leaf_width"}
_FLOAT_OPTS = {"rank_ratio", "balance_weight", "hardening"}
_BOOL_OPTS = {"se", "causal", "load_balancing", "master_leaf"}


def _normalise(kind: str, name: str, key: str, value: Any) -> Any:
    """``value`` as int/float/bool for typed options (numpy scalars from a space are fine)."""
    where = f"{kind} {name!r}: option {key!r}"
    if value is None:
        return None
    is_bool = isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"
    if key in _BOOL_OPTS:
        if not is_bool:
            raise EvaluationError(f"{where} must be true or false, got {value!r}")
        return bool(value)
    if key in _FLOAT_OPTS or (kind, key) == ("mixer", "expansion"):  # token-MLP expansion may be fractional
        if is_bool or not isinstance(value, numbers.Real) or value < 0:
            raise EvaluationError(f"{where} must be a non-negative number, got {value!r}")
        return float(value)
    if key in _INT_OPTS:
        if is_bool or not isinstance(value, numbers.Integral) or value < 0:
            raise EvaluationError(f"{where} must be a non-negative integer, got {value!r}")
        return int(value)
    return value


def _options(kind: str, name: str, table: Mapping[str, Mapping[str, Any]], given: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``given`` into ``name``'s defaults; unknown names/options and ill-typed values raise."""
    if name not in table:
        raise UnknownNameError(f"unknown {kind} {name!r}; known: {', '.join(table)}")
    allowed = dict(table[name])
    allowed["quant"] = "fp32"
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise EvaluationError(f"{kind} {name!r} got unknown option {unknown[0]!r}; "
                              f"accepted: {', '.join(sorted(allowed))}")
    opts = {key: _normalise(kind, name, key, value) for key, value in {**allowed, **given}.items()}
    if opts["quant"] not in QUANT_MODES:
        raise EvaluationError(f"{kind} {name!r}: unknown quant mode {opts['quant']!r}; known: {', '.join(QUANT_MODES)}")
    if "act" in opts:
        known = GLU_ACTS if (kind, name) == ("ffn", "glu") else ACTIVATIONS
        if opts["act"] not in known:
            raise EvaluationError(f"{kind} {name!r}: unknown activation {opts['act']!r}; known: {', '.join(known)}")
    return opts


def _build(kind: str, name: str, make: Callable[[], nn.Module], quant: str) -> nn.Module:
    """Run a constructor, turning its ValueErrors (bad sizes) into one-line EvaluationErrors."""
    try:
        return quantize(make(), quant)
    except ValueError as err:
        raise EvaluationError(f"{kind} {name!r}: {err}") from None


def _sizes(kind: str, name: str, **sizes: Any) -> tuple[int, ...]:
    """The given sizes as plain ints, each checked to be a positive integer."""
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise EvaluationError(f"{kind} {name!r}: {key} must be a positive integer, got {value!r}")
    return tuple(int(v) for v in sizes.values())


def make_block(name: str, c_in: int, c_out: int, stride: int = 1, dim: int = 2, **options: Any) -> nn.Module:
    """A spatial block (B, c_in, *S) -> (B, c_out, *ceil(S / stride)) on 1-d (``dim=1``) or 2-d maps.

    Names: :data:`BLOCKS`; options per name in :data:`BLOCK_OPTIONS`, plus ``quant``.
    """
    o = _options("block", name, BLOCK_OPTIONS, options)
    c_in, c_out, stride = _sizes("block", name, c_in=c_in, c_out=c_out, stride=stride)
    if dim not in (1, 2):
        raise EvaluationError(f"block {name!r}: dim must be 1 or 2, got {dim!r}")
    makers: dict[str, Callable[[], nn.Module]] = {
        "conv": lambda: ConvBNAct(c_in, c_out, o["kernel"], stride, o["groups"], o["dilation"], o["act"], dim),
        "dwsep": lambda: DepthwiseSeparable(c_in, c_out, o["kernel"], stride, o["act"], dim),
        "mbconv": lambda: MBConv(c_in, c_out, o["kernel"], stride, o["expansion"], o["se"], o["act"], dim),
        "resnet_basic": lambda: ResNetBasic(c_in, c_out, stride, o["kernel"], dim),
        "resnet_bottleneck": lambda: ResNetBottleneck(c_in, c_out, stride, o["expansion"], o["kernel"], dim),
        "identity": lambda: shortcut(c_in, c_out, stride, dim),
        "maxpool": lambda: PoolBlock(c_in, c_out, "max", o["kernel"], stride, dim),
        "avgpool": lambda: PoolBlock(c_in, c_out, "avg", o["kernel"], stride, dim),
        "attention": lambda: SpatialSelfAttention(c_in, c_out, stride, o["heads"], dim),
    }
    return _build("block", name, makers[name], o["quant"])


def make_cell_op(name: str, c: int, stride: int = 1, dim: int = 2, quant: str = "fp32") -> nn.Module:
    """A NAS-Bench-201/DARTS cell op (B, c, *S) -> (B, c, *ceil(S / stride)). Names: :data:`CELL_OPS`."""
    if name not in CELL_OPS:
        raise UnknownNameError(f"unknown cell op {name!r}; known: {', '.join(CELL_OPS)}")
    c, stride = _sizes("cell op", name, c=c, stride=stride)
    if dim not in (1, 2):
        raise EvaluationError(f"cell op {name!r}: dim must be 1 or 2, got {dim!r}")
    if quant not in QUANT_MODES:
        raise EvaluationError(f"cell op {name!r}: unknown quant mode {quant!r}; known: {', '.join(QUANT_MODES)}")

    def make() -> nn.Module:
        if name in ("none", "zero"):
            return ZeroOp(stride, dim)
        if name == "skip_connect":
            return IdentityOp() if stride == 1 else FactorizedReduce(c, c, stride, dim)
        if name in ("nor_conv_1x1", "nor_conv_3x3"):
            return ReLUConvBN(c, c, 1 if name.endswith("1x1") else 3, stride, dim=dim)
        if name in ("avg_pool_3x3", "max_pool_3x3"):
            return PoolBlock(c, c, name[:3], 3, stride, dim)
        kernel = int(name[-1])
        if name.startswith("sep_conv"):
            return SepConv(c, c, kernel, stride, dim)
        return DilConv(c, c, kernel, stride, 2, dim)

    return _build("cell op", name, make, quant)


def make_mixer(name: str, dim: int, seq_len: int, **options: Any) -> nn.Module:
    """A token mixer (B, L, D) -> (B, L, D), no norm or residual. Names: :data:`MIXERS`."""
    o = _options("mixer", name, MIXER_OPTIONS, options)
    dim, seq_len = _sizes("mixer", name, dim=dim, seq_len=seq_len)
    if name == "attention" and (o["heads"] < 1 or dim % o["heads"]):
        raise EvaluationError(f"mixer 'attention': width {dim} is not divisible by heads={o['heads']}")
    makers: dict[str, Callable[[], nn.Module]] = {
        "attention": lambda: MultiHeadSelfAttention(dim, o["heads"], o["causal"]),
        "mixer": lambda: TokenMixingMLP(seq_len, o["expansion"]),
        "ssm": lambda: SelectiveSSM(dim, o["state"], o["chunk"], seq_len),
        "pool": lambda: PoolTokenMixer(o["kernel"]),
        "identity": lambda: IdentityOp(),
    }
    return _build("mixer", name, makers[name], o["quant"])


def make_ffn(name: str, dim: int, hidden: int, **options: Any) -> nn.Module:
    """A position-wise feed-forward (..., D) -> (..., D) with hidden width ``hidden``. Names: :data:`FFNS`.

    For ``moe`` ``hidden`` is the width of each expert; for ``fff`` it is the total leaf width
    (leaf_width defaults to hidden // 2^depth).
    """
    o = _options("ffn", name, FFN_OPTIONS, options)
    dim, hidden = _sizes("ffn", name, dim=dim, hidden=hidden)
    makers: dict[str, Callable[[], nn.Module]] = {
        "dense": lambda: DenseFFN(dim, hidden),
        "glu": lambda: GatedFFN(dim, hidden, o["act"]),
        "lowrank": lambda: LowRankFFN(dim, hidden, o["rank"], o["rank_ratio"]),
        "moe": lambda: MoEFFN(dim, hidden, o["experts"], o["top_k"], o["balance_weight"]),
        "fff": lambda: FastFeedForward(dim, hidden, o["depth"], o["leaf_width"], o["load_balancing"],
                                       o["balance_weight"], o["master_leaf"], o["hardening"], o["act"]),
        "none": lambda: ZeroFFN(),
    }
    return _build("ffn", name, makers[name], o["quant"])


def total_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of every submodule's ``aux_loss`` (MoE/FFF balancing, FFF hardening), or None if none is set."""
    terms = [m.aux_loss for m in model.modules() if getattr(m, "aux_loss", None) is not None]
    return torch.stack([t.reshape(()) for t in terms]).sum() if terms else None
