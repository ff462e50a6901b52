"""Convolutional blocks: conv-BN-act, depthwise-separable, MBConv (+ squeeze-excite), ResNet blocks.

All blocks take (B, c_in, *spatial) and return (B, c_out, *ceil(spatial / stride)). Convs feeding
a BatchNorm carry no bias (BN's shift makes it redundant), so a k x k conv c_in -> c_out with BN
holds c_in * c_out * k^dim / groups + 2 * c_out parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .basic import activation_layer, check_dim, conv_layer, norm_layer, shortcut


class ConvBNAct(nn.Module):
    """Conv (odd ``kernel``, ``stride``, ``groups``, ``dilation``) -> BatchNorm -> activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: str = "relu", dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.conv = conv_layer(dim, c_in, c_out, kernel, stride, groups, dilation)
        self.bn = norm_layer(dim, c_out)
        self.act = activation_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """MobileNet-v1 unit: depthwise k x k (stride) -> BN -> act -> pointwise 1x1 -> BN -> act.

    Parameters: c_in * k^dim + 2 * c_in + c_in * c_out + 2 * c_out.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, act: str = "relu",
                 dim: int = 2) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(c_in, c_in, kernel, stride, groups=c_in, act=act, dim=dim)
        self.pointwise = ConvBNAct(c_in, c_out, 1, 1, act=act, dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SqueezeExcite(nn.Module):
    """Channel attention: global average -> 1x1 reduce -> act -> 1x1 expand -> sigmoid gate."""

    def __init__(self, c: int, c_squeeze: int, act: str = "relu", dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.dim = dim
        self.reduce = conv_layer(dim, c, c_squeeze, 1, bias=True)
        self.act = activation_layer(act)
        self.expand = conv_layer(dim, c_squeeze, c, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = (2,) if self.dim == 1 else (2, 3)
        s = x.mean(dim=axes, keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """MobileNet-v2/EfficientNet inverted residual.

    1x1 expand (skipped when ``expansion == 1``) -> depthwise k x k (stride) -> optional
    squeeze-excite (squeeze width max(1, c_in // 4), as in EfficientNet) -> 1x1 linear project;
    residual when ``c_in == c_out`` and ``stride == 1``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, expansion: int = 6,
                 se: bool = False, act: str = "relu", dim: int = 2) -> None:
        super().__init__()
        if expansion < 1:
            raise ValueError(f"expansion must be >= 1, got {expansion}")
        mid = c_in * expansion
        self.expand = ConvBNAct(c_in, mid, 1, act=act, dim=dim) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act, dim=dim)
        self.se = SqueezeExcite(mid, max(1, c_in // 4), act, dim) if se else nn.Identity()
        self.project = ConvBNAct(mid, c_out, 1, act="none", dim=dim)
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class ResNetBasic(nn.Module):
    """ResNet basic block: 3x3 (stride) -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU.

    The shortcut is the identity, or a 1x1-conv+BN projection when the shape changes.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3, dim: int = 2) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_out, kernel, stride, act="relu", dim=dim)
        self.conv2 = ConvBNAct(c_out, c_out, kernel, 1, act="none", dim=dim)
        self.shortcut = shortcut(c_in, c_out, stride, dim)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetBottleneck(nn.Module):
    """ResNet bottleneck (v1.5: the stride sits on the 3x3).

    Inner width = max(1, c_out // expansion) (so c_out is the block's *output* width, as in
    torchvision where a 256-wide output has a 64-wide inner): 1x1 c_in -> inner, 3x3 inner -> inner
    (stride), 1x1 inner -> c_out, + shortcut, ReLU.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expansion: int = 4, kernel: int = 3,
                 dim: int = 2) -> None:
        super().__init__()
        if expansion < 1:
            raise ValueError(f"expansion must be >= 1, got {expansion}")
        inner = max(1, c_out // expansion)
        self.reduce = ConvBNAct(c_in, inner, 1, act="relu", dim=dim)
        self.conv = ConvBNAct(inner, inner, kernel, stride, act="relu", dim=dim)
        self.expand = ConvBNAct(inner, c_out, 1, act="none", dim=dim)
        self.shortcut = shortcut(c_in, c_out, stride, dim)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))
