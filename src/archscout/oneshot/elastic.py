"""An elastic (OFA / BigNAS style) weight-sharing supernet generated from a macro-family space.

:class:`ElasticMacroSupernet` reads the same space file that ``build_model`` builds stand-alone
networks from (``model: {family: macro}``: a stem, a chain of stages, each with a ``width`` and
a ``layers`` repeat or a stage-level block, see :mod:`archscout.build.macro`) and holds, for
every layer slot of every stage up to the stage's largest depth, one elastic module per block
kind the slot may hold (``mbconv``, ``conv``, ``dwsep``), sized for the largest width, kernel
and expansion the space allows. ``set_active(arch)`` picks a subnet; ``forward`` then runs
exactly that subnet:

* elastic width: a layer uses the first ``width`` output channels of its max-sized weights,
  and its input channels follow the previous layer's active width;
* elastic kernel: the centre ``k`` (x ``k``) crop of the largest kernel. OFA also learns a
  small transform matrix from the large kernel to each smaller one; a plain centre crop is
  used here (BigNAS does the same);
* elastic expansion: the first ``c_in * expansion`` hidden channels of an MBConv (squeeze-excite
  keeps the stand-alone squeeze width ``max(1, c_in // 4)``: its first channels);
* elastic depth: the first ``d`` layer slots of each stage.

BatchNorm layers are sliced too: the active channels use the first entries of the running
statistics and affine parameters (training updates exactly that prefix). Shared statistics are
a mixture over the subnets trained, so evaluate a subnet after
:func:`archscout.oneshot.bignas.recalibrate_bn` (OFA's BN recalibration).

``extract(arch)`` builds the stand-alone network with ``build_model`` and copies the subnet's
weights into it, so that in eval mode it computes what the supernet computes for that subnet.
Residual connections follow the stand-alone rule (``c_in == c_out`` and stride 1, on the
*active* widths). The classifier head applies no dropout inside the supernet; values the
network does not read (``dropout``, recipe fields) only matter to the extracted model.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..build import build_model, model_family
from ..build.macro import STAGE_KEYS, _layers, _stages
from ..build.network import UnitNetwork
from ..errors import SpaceError
from ..ops import BLOCK_OPTIONS
from ..ops.basic import ACTIVATIONS, conv_layer, norm_layer
from ..ops.conv import ConvBNAct, DepthwiseSeparable, MBConv
from ..space import Architecture, Chain, Choice, FloatRange, IntRange, Param, Repeat, SearchSpace, key_of

ELASTIC_BLOCKS: tuple[str, ...] = ("mbconv", "conv", "dwsep")
# string choices: which option the largest / smallest architecture takes (first listed wins)
_BLOCK_RANK_LARGEST = ("mbconv", "conv", "dwsep")
_BLOCK_RANK_SMALLEST = ("dwsep", "conv", "mbconv")

_ACT_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu, "hswish": F.hardswish,
    "sigmoid": torch.sigmoid, "none": lambda x: x,
}


# -- elastic primitives ----------------------------------------------------------------------

class ElasticBatchNorm(nn.Module):
    """BatchNorm over the first ``c`` of ``c_max`` channels (c = the input's channel count).

    Normal use slices the running statistics and affine parameters (training updates that
    prefix in place). Between :meth:`start_calibration` and :meth:`finish_calibration` the
    layer normalises with batch statistics and accumulates them; finishing writes their
    sample-weighted mean into the active prefix of the running statistics (OFA's BN
    recalibration). Entries beyond the prefix are never touched.
    """

    def __init__(self, c_max: int, dim: int) -> None:
        super().__init__()
        self.bn = norm_layer(dim, c_max)
        self._calib: list[Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, bn = x.shape[1], self.bn
        weight, bias = bn.weight[:c], bn.bias[:c]
        if self._calib is not None:
            flat = x.detach().transpose(0, 1).reshape(c, -1)
            n = x.shape[0]
            mean, var = flat.mean(dim=1), flat.var(dim=1, unbiased=True)
            if self._calib[0] is None:
                self._calib = [mean * n, var * n, n]
            else:
                self._calib[0] = self._calib[0] + mean * n
                self._calib[1] = self._calib[1] + var * n
                self._calib[2] += n
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, bn.eps)
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], weight, bias,
                            bn.training, bn.momentum if bn.momentum is not None else 0.1, bn.eps)

    def start_calibration(self) -> None:
        self._calib = [None, None, 0]

    def finish_calibration(self) -> bool:
        """Write the accumulated statistics; False when the layer saw no batch (not in the subnet)."""
        calib, self._calib = self._calib, None
        if calib is None or calib[0] is None:
            return False
        c, n = calib[0].shape[0], calib[2]
        with torch.no_grad():
            self.bn.running_mean[:c].copy_(calib[0] / n)
            self.bn.running_var[:c].copy_(calib[1] / n)
        return True

    def export(self, target: nn.Module) -> None:
        """Copy the active slice into a stand-alone BatchNorm of ``target.num_features`` channels."""
        c = target.num_features
        target.weight.copy_(self.bn.weight[:c])
        target.bias.copy_(self.bn.bias[:c])
        target.running_mean.copy_(self.bn.running_mean[:c])
        target.running_var.copy_(self.bn.running_var[:c])
        target.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class ElasticConvBN(nn.Module):
    """Conv -> elastic BN -> activation, with max-sized weights (``c_in_max`` -> ``c_out_max``, ``k_max``).

    A call uses the first ``c_out`` filters over the input's ``c_in`` channels and the centre
    ``kernel`` crop; ``depthwise`` convs (``c_in_max == c_out_max``) use one filter per input channel.
    """

    def __init__(self, c_in_max: int, c_out_max: int, k_max: int, dim: int, depthwise: bool = False) -> None:
        super().__init__()
        self.conv = conv_layer(dim, c_in_max, c_out_max, k_max, groups=c_in_max if depthwise else 1)
        self.bn = ElasticBatchNorm(c_out_max, dim)
        self.dim, self.k_max, self.depthwise = dim, k_max, depthwise
        self.c_in_max, self.c_out_max = c_in_max, c_out_max

    def weight(self, c_in: int, c_out: int, kernel: int) -> torch.Tensor:
        """The active kernel: (c_out, c_in or 1, kernel[, kernel])."""
        w = self.conv.weight[:c_out] if self.depthwise else self.conv.weight[:c_out, :c_in]
        if kernel != self.k_max:
            s = (self.k_max - kernel) // 2
            w = w[..., s:s + kernel] if self.dim == 1 else w[..., s:s + kernel, s:s + kernel]
        return w.contiguous()

    def forward(self, x: torch.Tensor, c_out: int, kernel: int, stride: int, act: str) -> torch.Tensor:
        c_in = x.shape[1]
        if self.depthwise:
            c_out = c_in
        w = self.weight(c_in, c_out, kernel)
        conv = F.conv1d if self.dim == 1 else F.conv2d
        y = conv(x, w, None, stride, kernel // 2, 1, c_in if self.depthwise else 1)
        return _ACT_FNS[act](self.bn(y))

    def export(self, target: ConvBNAct, c_in: int, kernel: int) -> None:
        """Copy into a stand-alone :class:`ConvBNAct` (its conv fixes c_out)."""
        c_out = target.conv.weight.shape[0]
        target.conv.weight.copy_(self.weight(c_in, c_out, kernel))
        self.bn.export(target.bn)


class ElasticSqueezeExcite(nn.Module):
    """Squeeze-excite over the first ``c`` channels with the first ``squeeze`` bottleneck channels."""

    def __init__(self, c_max: int, squeeze_max: int, dim: int) -> None:
        super().__init__()
        self.reduce = conv_layer(dim, c_max, squeeze_max, 1, bias=True)
        self.expand = conv_layer(dim, squeeze_max, c_max, 1, bias=True)
        self.dim = dim

    def forward(self, x: torch.Tensor, squeeze: int, act: str) -> torch.Tensor:
        c = x.shape[1]
        conv = F.conv1d if self.dim == 1 else F.conv2d
        s = x.mean(dim=(2,) if self.dim == 1 else (2, 3), keepdim=True)
        s = _ACT_FNS[act](conv(s, self.reduce.weight[:squeeze, :c], self.reduce.bias[:squeeze]))
        s = conv(s, self.expand.weight[:c, :squeeze], self.expand.bias[:c])
        return x * torch.sigmoid(s)

    def export(self, target: nn.Module, c: int, squeeze: int) -> None:
        target.reduce.weight.copy_(self.reduce.weight[:squeeze, :c])
        target.reduce.bias.copy_(self.reduce.bias[:squeeze])
        target.expand.weight.copy_(self.expand.weight[:c, :squeeze])
        target.expand.bias.copy_(self.expand.bias[:c])


class _ElasticBlock(nn.Module):
    """Common part of the elastic blocks: the active configuration set by the supernet."""

    kind = ""

    def __init__(self, c_in_max: int, c_out_max: int, caps: Mapping[str, Any]) -> None:
        super().__init__()
        self.c_in_max, self.c_out_max = c_in_max, c_out_max
        self.caps = dict(caps)
        self.active: dict[str, Any] = {}

    def configure(self, c_in: int, c_out: int, stride: int, opts: Mapping[str, Any], where: str) -> None:
        """Set the active subnet block (SpaceError when it does not fit the max-sized weights)."""
        kernel = int(opts["kernel"])
        problems = []
        if not 1 <= c_in <= self.c_in_max or not 1 <= c_out <= self.c_out_max:
            problems.append(f"widths {c_in}->{c_out} exceed {self.c_in_max}->{self.c_out_max}")
        if kernel > self.caps["kernel"] or kernel % 2 == 0:
            problems.append(f"kernel {kernel} (largest {self.caps['kernel']}, odd)")
        if opts.get("act", "relu") not in _ACT_FNS:
            problems.append(f"activation {opts.get('act')!r}")
        if int(opts.get("groups", 1)) != 1 or int(opts.get("dilation", 1)) != 1 or opts.get("quant", "fp32") != "fp32":
            problems.append("groups/dilation/quant other than 1/1/fp32")
        if self.kind == "mbconv":
            if not 1 <= int(opts["expansion"]) <= self.caps["expansion"]:
                problems.append(f"expansion {opts['expansion']} (largest {self.caps['expansion']})")
            if int(opts["expansion"]) != 1 and not self.caps["expand"]:
                problems.append("an expansion the supernet has no expand conv for")
            if bool(opts["se"]) and not self.caps["se"]:
                problems.append("squeeze-excite the supernet has no weights for")
        if problems:
            raise SpaceError(f"elastic supernet cannot run {self.kind} at {where}: {'; '.join(problems)}")
        self.active = {"c_in": c_in, "c_out": c_out, "stride": int(stride), "kernel": kernel,
                       "act": str(opts.get("act", "relu")), "expansion": int(opts.get("expansion", 1)),
                       "se": bool(opts.get("se", False))}


class ElasticConvBlock(_ElasticBlock):
    """Elastic ``conv`` block: conv (k x k, stride) -> BN -> act."""

    kind = "conv"

    def __init__(self, c_in_max: int, c_out_max: int, caps: Mapping[str, Any], dim: int) -> None:
        super().__init__(c_in_max, c_out_max, caps)
        self.body = ElasticConvBN(c_in_max, c_out_max, caps["kernel"], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.active
        return self.body(x, a["c_out"], a["kernel"], a["stride"], a["act"])

    def export(self, target: nn.Module) -> None:
        if not isinstance(target, ConvBNAct):
            raise TypeError(f"expected ConvBNAct, got {type(target).__name__}")
        self.body.export(target, self.active["c_in"], self.active["kernel"])


class ElasticDWSep(_ElasticBlock):
    """Elastic ``dwsep`` block: depthwise k x k (stride) -> BN -> act -> pointwise -> BN -> act."""

    kind = "dwsep"

    def __init__(self, c_in_max: int, c_out_max: int, caps: Mapping[str, Any], dim: int) -> None:
        super().__init__(c_in_max, c_out_max, caps)
        self.depthwise = ElasticConvBN(c_in_max, c_in_max, caps["kernel"], dim, depthwise=True)
        self.pointwise = ElasticConvBN(c_in_max, c_out_max, 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.active
        h = self.depthwise(x, x.shape[1], a["kernel"], a["stride"], a["act"])
        return self.pointwise(h, a["c_out"], 1, 1, a["act"])

    def export(self, target: nn.Module) -> None:
        if not isinstance(target, DepthwiseSeparable):
            raise TypeError(f"expected DepthwiseSeparable, got {type(target).__name__}")
        a = self.active
        self.depthwise.export(target.depthwise, a["c_in"], a["kernel"])
        self.pointwise.export(target.pointwise, a["c_in"], 1)


class ElasticMBConv(_ElasticBlock):
    """Elastic MBConv: 1x1 expand (skipped at expansion 1) -> depthwise k x k (stride) -> optional
    squeeze-excite -> 1x1 project; residual when the active c_in == c_out and stride is 1."""

    kind = "mbconv"

    def __init__(self, c_in_max: int, c_out_max: int, caps: Mapping[str, Any], dim: int) -> None:
        super().__init__(c_in_max, c_out_max, caps)
        mid = c_in_max * caps["expansion"]
        self.expand = ElasticConvBN(c_in_max, mid, 1, dim) if caps["expand"] else None
        self.depthwise = ElasticConvBN(mid, mid, caps["kernel"], dim, depthwise=True)
        self.se = ElasticSqueezeExcite(mid, max(1, c_in_max // 4), dim) if caps["se"] else None
        self.project = ElasticConvBN(mid, c_out_max, 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.active
        c_in = x.shape[1]
        mid = c_in * a["expansion"]
        h = self.expand(x, mid, 1, 1, a["act"]) if a["expansion"] != 1 else x
        h = self.depthwise(h, mid, a["kernel"], a["stride"], a["act"])
        if a["se"]:
            h = self.se(h, max(1, c_in // 4), a["act"])
        y = self.project(h, a["c_out"], 1, 1, "none")
        return x + y if c_in == a["c_out"] and a["stride"] == 1 else y

    def export(self, target: nn.Module) -> None:
        if not isinstance(target, MBConv):
            raise TypeError(f"expected MBConv, got {type(target).__name__}")
        a = self.active
        c_in, mid = a["c_in"], a["c_in"] * a["expansion"]
        if a["expansion"] != 1:
            self.expand.export(target.expand, c_in, 1)
        self.depthwise.export(target.depthwise, mid, a["kernel"])
        if a["se"]:
            self.se.export(target.se, mid, max(1, c_in // 4))
        self.project.export(target.project, mid, 1)


_BLOCK_CLASSES: dict[str, type[_ElasticBlock]] = {
    "mbconv": ElasticMBConv, "conv": ElasticConvBlock, "dwsep": ElasticDWSep,
}


class ElasticHead(nn.Module):
    """Global average pooling, then a linear classifier reading the first ``c`` features."""

    def __init__(self, c_max: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c_max, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).mean(dim=2)
        return F.linear(x, self.fc.weight[:, :x.shape[1]], self.fc.bias)

    def export(self, target: nn.Module, c: int) -> None:
        target.fc.weight.copy_(self.fc.weight[:, :c])
        target.fc.bias.copy_(self.fc.bias)


# -- reading the space --------------------------------------------------------------------------

def _values_of(p: Param, where: str) -> list[Any]:
    if isinstance(p, Choice):
        return list(p.options)
    if isinstance(p, IntRange):
        return list(range(p.low, p.high + 1, p.step))
    raise SpaceError(f"elastic supernet: {where}: parameter {p.name!r} must be a choice or an int range, "
                     f"not a {type(p).__name__}")


def _collect(params: Sequence[Param], where: str) -> tuple[dict[str, list[Any]], set[str]]:
    """Every value each name may take under ``params`` (sub-choices included), and the names always written."""
    values: dict[str, list[Any]] = {}
    always: set[str] = set()
    for p in params:
        values.setdefault(p.name, []).extend(_values_of(p, where))
        always.add(p.name)
        if isinstance(p, Choice):
            for group in p.sub.values():
                sub, _ = _collect(group.params, where)
                for k, v in sub.items():
                    values.setdefault(k, []).extend(v)
    return values, always


def _positive_ints(values: Sequence[Any], what: str, where: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise SpaceError(f"elastic supernet: {where}: {what} {v!r} is not a positive integer")
        out.append(int(v))
    return out


def _block_caps(params: Sequence[Param], defaults: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Per block kind a layer may hold: the largest kernel / expansion and whether SE may be on."""
    block = next((p for p in params if p.name == "block"), None)
    if not isinstance(block, Choice):
        raise SpaceError(f"elastic supernet: {where} needs a 'block' choice")
    shared, shared_always = _collect([p for p in params if p is not block and p.name not in STAGE_KEYS], where)
    caps: dict[str, dict[str, Any]] = {}
    for i, kind in enumerate(block.options):
        if kind not in ELASTIC_BLOCKS:
            raise SpaceError(f"elastic supernets support mbconv/conv/dwsep blocks only; {where} offers block {kind!r}")
        vals = {k: list(v) for k, v in shared.items()}
        always = set(shared_always)
        if i in block.sub:
            sub, sub_always = _collect(block.sub[i].params, where)
            for k, v in sub.items():
                vals.setdefault(k, []).extend(v)
            always |= sub_always
        for key, value in {**BLOCK_OPTIONS[kind], "quant": "fp32", **defaults}.items():
            if key not in always:
                vals.setdefault(key, []).append(value)
        unknown = sorted(set(vals) - set(BLOCK_OPTIONS[kind]) - {"quant"})
        if unknown:
            raise SpaceError(f"elastic supernet: {where}: block {kind!r} does not take option {unknown[0]!r}")
        if any(int(v) != 1 for v in vals.get("groups", [1]) + vals.get("dilation", [1])):
            raise SpaceError(f"elastic supernet: {where}: block {kind!r} needs groups=1 and dilation=1")
        if any(v != "fp32" for v in vals["quant"]):
            raise SpaceError(f"elastic supernet: {where}: quantized blocks are not supported (quant must be fp32)")
        bad_act = [a for a in vals.get("act", []) if a not in ACTIVATIONS]
        if bad_act:
            raise SpaceError(f"elastic supernet: {where}: unknown activation {bad_act[0]!r}")
        kernels = _positive_ints(vals["kernel"], "kernel", where)
        if any(k % 2 == 0 for k in kernels):
            raise SpaceError(f"elastic supernet: {where}: kernels must be odd, got {sorted(set(kernels))}")
        cap: dict[str, Any] = {"kernel": max(kernels)}
        if kind == "mbconv":
            expansions = _positive_ints(vals["expansion"], "expansion", where)
            cap.update(expansion=max(expansions), expand=any(e != 1 for e in expansions),
                       se=any(bool(v) for v in vals["se"]))
        caps[str(kind)] = cap
    return caps


def _chain_param(space: SearchSpace) -> Chain:
    name = space.model.get("chain")
    for p in space.params:
        if isinstance(p, Chain) and (name is None or p.name == name):
            return p
    raise SpaceError(f"elastic supernet: space {space.name!r} has no chain parameter"
                     f"{' named ' + repr(name) if name else ''} (macro spaces need one)")


# -- the supernet ---------------------------------------------------------------------------------

class ElasticMacroSupernet(nn.Module):
    """One weight-sharing network holding every subnet of a macro-family ``space`` (module docstring).

    ``input_shape`` is one sample without the batch axis, (C, L) signals or (C, H, W) images;
    ``seed`` makes the initial weights reproducible (the global torch RNG is left as it was).
    The largest subnet is active after construction.
    """

    def __init__(self, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int, *, seed: int = 0) -> None:
        super().__init__()
        if model_family(space) != "macro":
            raise SpaceError(f"elastic supernets need a macro-family space; {space.name!r} is "
                             f"{space.model.get('family')!r}")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) not in (2, 3):
            raise SpaceError(f"elastic supernets need (C, L) or (C, H, W) inputs, not {input_shape}")
        self.space = space
        self.input_shape = input_shape
        self.num_classes = int(num_classes)
        self.dim = len(input_shape) - 1
        model = space.model
        self.chain = _chain_param(space)
        defaults = dict(model.get("block_defaults") or {})
        widths = model.get("widths")
        strides = list(model.get("stage_strides") or [1] + [2] * (len(self.chain.stages) - 1))

        stem_param = next((p for p in space.params if p.name == "stem"), None)
        stem_widths = (_positive_ints(_values_of(stem_param, "stem"), "stem width", "stem") if stem_param is not None
                       else [int(model.get("stem_width", 16))])
        self.stem_kernel = int(model.get("stem_kernel", 3))

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.stem = ElasticConvBN(input_shape[0], max(stem_widths), self.stem_kernel, self.dim)
            c_max = max(stem_widths)
            stages = []
            for si, group in enumerate(self.chain.stages):
                where = f"stage {si}"
                names = {p.name: p for p in group.params}
                if "width" in names:
                    w_opts = _positive_ints(_values_of(names["width"], where), "width", where)
                elif widths and si < len(widths):
                    w_opts = [int(widths[si])]
                else:
                    raise SpaceError(f"macro stage {si} has no width (add a 'width' parameter or model.widths)")
                if "stride" in names:
                    _positive_ints(_values_of(names["stride"], where), "stride", where)
                if "layers" in names:
                    rep = names["layers"]
                    if not isinstance(rep, Repeat):
                        raise SpaceError(f"elastic supernet: {where}: 'layers' must be a repeat")
                    min_depth, max_depth = rep.min_depth, rep.max_depth
                    caps = _block_caps(rep.body.params, defaults, f"{where} layers")
                else:
                    depths = (_positive_ints(_values_of(names["depth"], where), "depth", where)
                              if "depth" in names else [1])
                    min_depth, max_depth = min(depths), max(depths)
                    caps = _block_caps(group.params, defaults, where)
                w_max = max(w_opts)
                slots = []
                for li in range(max_depth):
                    c_in_max = c_max if li == 0 else w_max
                    slots.append(nn.ModuleDict({kind: _BLOCK_CLASSES[kind](c_in_max, w_max, cap, self.dim)
                                                for kind, cap in caps.items()}))
                stages.append(nn.ModuleList(slots))
                c_max = w_max if min_depth >= 1 else max(c_max, w_max)
            self.stages = nn.ModuleList(stages)
            self.head = ElasticHead(c_max, self.num_classes)
        self._defaults = defaults
        self._strides = strides
        self._path: list[_ElasticBlock] = []
        self._stem_width = max(stem_widths)
        self.active: Architecture = self.set_active(self.largest())

    # -- choosing a subnet ----------------------------------------------------------------------
    def set_active(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        """Make ``arch`` (an Architecture of the space, or values to ``space.make``) the subnet ``forward`` runs."""
        if not isinstance(arch, Architecture):
            arch = self.space.make(arch)
        values, model = arch.values, self.space.model
        c = int(values.get("stem", model.get("stem_width", 16)))
        if not 1 <= c <= self.stem.c_out_max:
            raise SpaceError(f"elastic supernet: stem width {c} exceeds the supernet's {self.stem.c_out_max}")
        stem_width = c
        widths = model.get("widths")
        path: list[_ElasticBlock] = []
        stages = _stages(values, model)
        if len(stages) != len(self.stages):
            raise SpaceError(f"elastic supernet: architecture has {len(stages)} stages, "
                             f"the supernet {len(self.stages)}")
        for si, stage in enumerate(stages):
            width = int(stage.get("width", widths[si] if widths and si < len(widths) else 0))
            layers = _layers(stage, si)
            if len(layers) > len(self.stages[si]):
                raise SpaceError(f"elastic supernet: stage {si} has {len(layers)} layers, at most "
                                 f"{len(self.stages[si])} in the supernet")
            for li, layer in enumerate(layers):
                kind = str(layer["block"])
                slot = self.stages[si][li]
                if kind not in slot:
                    raise SpaceError(f"elastic supernets support mbconv/conv/dwsep blocks only; "
                                     f"stage {si} layer {li} is {kind!r}")
                opts = {**BLOCK_OPTIONS[kind], **self._defaults, **{k: v for k, v in layer.items() if k != "block"}}
                stride = int(stage.get("stride", self._strides[si] if si < len(self._strides) else 2)) if li == 0 else 1
                block = slot[kind]
                block.configure(c, width, stride, opts, f"stage {si} layer {li}")
                path.append(block)
                c = width
        self._stem_width = stem_width
        self._path = path
        self.active = arch
        return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of the active subnet for inputs (B, *input_shape)."""
        x = self.stem(x, self._stem_width, self.stem_kernel, 1, "relu")
        for block in self._path:
            x = block(x)
        return self.head(x)

    # -- architectures of the space ------------------------------------------------------------
    def largest(self) -> Architecture:
        """The largest subnet: max width/kernel/expansion/depth (SE on, mbconv preferred) everywhere."""
        return self._extreme(big=True)

    def smallest(self) -> Architecture:
        """The smallest subnet: min width/kernel/expansion/depth (SE off, dwsep preferred) everywhere."""
        return self._extreme(big=False)

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A random architecture of the space (``space.sample``)."""
        return self.space.sample(rng)

    def _extreme(self, big: bool) -> Architecture:
        values: dict[str, Any] = {}
        fallback: Architecture | None = None
        for p in self.space.params:
            if p is self.chain or p.name == "stem":
                values.update(_fill(p, "max" if big else "min"))
            elif isinstance(p, (Choice, IntRange, FloatRange, Repeat, Chain)):
                values.update(_fill(p, "first"))
            else:  # a cell or another kind the network does not read: any valid value
                fallback = fallback or self.space.sample(np.random.default_rng(0))
                values[p.name] = fallback.values[p.name]
        try:
            return self.space.make(values)
        except SpaceError as exc:
            raise SpaceError(f"the {'largest' if big else 'smallest'} architecture of space {self.space.name!r} "
                             f"is not valid ({exc})") from None

    def subnet_key(self, arch: Architecture) -> str:
        """A key of what the supernet runs for ``arch``: its chain and stem values only. Architectures
        that differ only in values the network does not read (``dropout``, recipe fields) share it."""
        values = arch.values
        return key_of({"chain": values[self.chain.name], "stem": values.get("stem")})

    # -- stand-alone models ---------------------------------------------------------------------
    def extract(self, arch: Architecture | Mapping[str, Any] | None = None) -> UnitNetwork:
        """``build_model(space, arch)`` with the subnet's weights (and current BN statistics) copied in.

        ``arch`` defaults to the active subnet; it becomes the active one. Recalibrate BN first
        (:func:`~archscout.oneshot.bignas.recalibrate_bn`) for statistics of this subnet alone.
        The model is built on the CPU.
        """
        arch = self.set_active(arch if arch is not None else self.active)
        model = build_model(self.space, arch, self.input_shape, self.num_classes, seed=0)
        units = list(model.units)
        if len(units) != len(self._path) + 2:
            raise SpaceError(f"elastic supernet: built model has {len(units)} units, expected {len(self._path) + 2}")
        with torch.no_grad():
            self.stem.export(units[0], self.input_shape[0], self.stem_kernel)
            for block, unit in zip(self._path, units[1:-1]):
                block.export(unit)
            self.head.export(units[-1], self._path[-1].active["c_out"] if self._path else self._stem_width)
        return model

    def elastic_norms(self) -> list[ElasticBatchNorm]:
        """Every elastic BatchNorm of the supernet."""
        return [m for m in self.modules() if isinstance(m, ElasticBatchNorm)]


def _numeric(o: Any) -> bool:
    return isinstance(o, (bool, int, float, np.integer, np.floating))


def _fill(p: Param, mode: str) -> dict[str, Any]:
    """Values of ``p`` with every numeric choice at its max/min ("max"/"min") or first option ("first")."""
    if isinstance(p, Choice):
        opts = list(p.options)
        nums = [o for o in opts if _numeric(o)]
        if mode == "first" or (not nums and p.name != "block"):
            pick = opts[0]
        elif nums:
            # a larger stride makes a smaller network
            big = (mode == "max") != (p.name == "stride")
            pick = max(nums) if big else min(nums)
        else:
            rank = _BLOCK_RANK_LARGEST if mode == "max" else _BLOCK_RANK_SMALLEST
            pick = min(opts, key=lambda o: rank.index(o) if o in rank else len(rank))
        out = {p.name: pick}
        idx = next(i for i, o in enumerate(opts) if o is pick)
        if idx in p.sub:
            for q in p.sub[idx].params:
                out.update(_fill(q, mode))
        return out
    if isinstance(p, IntRange):
        return {p.name: p.low if mode != "max" else p.low + (p.n - 1) * p.step}
    if isinstance(p, FloatRange):
        return {p.name: p.high if mode == "max" else p.low}
    if isinstance(p, Repeat):
        depth = p.max_depth if mode == "max" else p.min_depth
        layer: dict[str, Any] = {}
        for q in p.body.params:
            layer.update(_fill(q, mode))
        return {p.name: [dict(layer) for _ in range(depth)]}
    if isinstance(p, Chain):
        stages = []
        for group in p.stages:
            stage: dict[str, Any] = {}
            for q in group.params:
                stage.update(_fill(q, mode))
            stages.append(stage)
        return {p.name: stages}
    raise SpaceError(f"elastic supernet: cannot pick an extreme value of parameter {p.name!r} ({type(p).__name__})")


__all__ = ["ELASTIC_BLOCKS", "ElasticBatchNorm", "ElasticConvBN", "ElasticConvBlock", "ElasticDWSep", "ElasticMBConv",
           "ElasticMacroSupernet", "ElasticSqueezeExcite"]
