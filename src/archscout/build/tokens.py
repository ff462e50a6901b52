"""Token-mixer stacks for sequences: per-layer mixer and feed-forward choices.

Inputs become tokens first: integer ids (``(L,)`` with a vocabulary) through an
embedding, 1-D signals ``(C, L)`` through a patch convolution of ``patch`` samples per token,
images ``(C, H, W)`` through ``patch x patch`` patches. Each layer is pre-norm residual:
``x + mixer(norm(x))`` then ``x + ffn(norm(x))``.

The space holds a ``repeat`` (default: the first one) whose layer dicts choose ``mixer``
(:data:`archscout.ops.MIXERS`), ``ffn`` (:data:`archscout.ops.FFNS`) and ``ratio`` (FFN hidden
width = ratio x model width), plus ``quant`` for the layer's feed-forward. Options of a
mixer or feed-forward (``heads``, ``experts``, ``top_k``, ``depth``, ``rank_ratio`` ...) are
the sub-parameters of the chosen option in the space file; the builder routes each to its
owner. ``model:`` settings: ``dim`` (64, or the architecture's ``dim``), ``patch`` (4),
``layers`` (the repeat's name), ``mixer_defaults`` / ``ffn_defaults`` (options for all layers),
``ratio`` (default 2).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import SpaceError
from ..ops import make_ffn, make_mixer, quantize
from ..space import Choice, Repeat, SearchSpace
from .network import ClassifierHead, UnitNetwork, unit_key


class TokenEmbed(nn.Module):
    """Ids, signals or images to (B, L, D) tokens plus a learned position embedding."""

    def __init__(self, input_shape: tuple[int, ...], dim: int, patch: int, vocab_size: int | None) -> None:
        super().__init__()
        self.kind = "ids" if vocab_size else ("signal" if len(input_shape) == 2 else "image")
        if self.kind == "ids":
            if len(input_shape) != 1:
                raise SpaceError(f"token ids must have shape (L,), not {input_shape}")
            self.proj: nn.Module = nn.Embedding(int(vocab_size), dim)
            length = input_shape[0]
        elif self.kind == "signal":
            self.proj = nn.Conv1d(input_shape[0], dim, kernel_size=patch, stride=patch)
            length = input_shape[1] // patch
        elif len(input_shape) == 3:
            self.proj = nn.Conv2d(input_shape[0], dim, kernel_size=patch, stride=patch)
            length = (input_shape[1] // patch) * (input_shape[2] // patch)
        else:
            raise SpaceError(f"token models need (L,) ids, (C, L) signals or (C, H, W) images, not {input_shape}")
        if length < 1:
            raise SpaceError(f"patch size {patch} is larger than the input {input_shape}")
        self.length = length
        self.pos = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "ids":
            t = self.proj(x)
        else:
            t = self.proj(x).flatten(2).transpose(1, 2)
        return t + self.pos


class TokenLayer(nn.Module):
    """Pre-norm residual mixer + feed-forward."""

    def __init__(self, mixer: nn.Module, ffn: nn.Module, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def build_tokens(space: SearchSpace, values: Mapping[str, Any], model: Mapping[str, Any],
                 input_shape: tuple[int, ...], num_classes: int, dropout: float,
                 vocab_size: int | None) -> UnitNetwork:
    """Build a token-mixer stack."""
    repeat = _layers_param(space, model.get("layers"))
    dim = int(values.get("dim", model.get("dim", 64)))
    patch = int(values.get("patch", model.get("patch", 4)))
    embed = TokenEmbed(tuple(input_shape), dim, patch, vocab_size)
    owners = _owners(repeat)
    units: list[tuple[str, nn.Module]] = [
        (unit_key("embed", {"kind": embed.kind, "dim": dim, "patch": patch, "vocab": vocab_size}), embed)]
    mixer_defaults = dict(model.get("mixer_defaults") or {})
    ffn_defaults = dict(model.get("ffn_defaults") or {})
    for i, layer in enumerate(values.get(repeat.name, ())):
        mixer_name = str(layer.get("mixer", model.get("mixer", "attention")))
        ffn_name = str(layer.get("ffn", model.get("ffn", "dense")))
        ratio = float(layer.get("ratio", model.get("ratio", 2)))
        m_opts = {**mixer_defaults, **{k: layer[k] for k in owners.get(("mixer", mixer_name), ()) if k in layer}}
        f_opts = {**ffn_defaults, **{k: layer[k] for k in owners.get(("ffn", ffn_name), ()) if k in layer}}
        quant = str(layer.get("quant", model.get("quant", "fp32")))
        hidden = max(1, int(round(ratio * dim)))
        mixer = make_mixer(mixer_name, dim, embed.length, **m_opts)
        ffn = quantize(make_ffn(ffn_name, dim, hidden, **f_opts), quant)
        key = unit_key("token_layer", {"dim": dim, "len": embed.length, "mixer": mixer_name, "mixer_opts": m_opts,
                                       "ffn": ffn_name, "hidden": hidden, "ffn_opts": f_opts, "quant": quant})
        units.append((key, TokenLayer(mixer, ffn, dim)))
    units.append((unit_key("head:tokens", {"dim": dim, "classes": num_classes}),
                  ClassifierHead(dim, num_classes, dropout, tokens=True)))
    dtype = torch.long if vocab_size else torch.float32
    return UnitNetwork(units, tuple(input_shape), {"family": "tokens", "dim": dim}, input_dtype=dtype)


def _layers_param(space: SearchSpace, name: str | None) -> Repeat:
    repeats = [p for p in space.params if isinstance(p, Repeat)]
    for p in repeats:
        if name is None or p.name == name:
            return p
    raise SpaceError(f"a tokens model needs a repeat parameter{' named ' + repr(name) if name else ''} of layers")


def _owners(repeat: Repeat) -> dict[tuple[str, str], set[str]]:
    """(choice name, option) -> names of the sub-parameters that option owns."""
    out: dict[tuple[str, str], set[str]] = {}
    for p in repeat.body.params:
        if isinstance(p, Choice):
            for idx, group in p.sub.items():
                out[(p.name, str(p.options[idx]))] = set(group.keys())
    return out
