"""The one builder: :class:`ArchSpec` -> ``nn.Module`` (:class:`SpecNet`).

Every block comes from :func:`rnnpool_nas.arch.spec.expand`, the same expansion the cost model
scores, so shapes and counts agree by construction. Convolutions are followed by batch norm (no
conv bias) unless the stage says ``batch_norm: false``; MBConv projections are linear; an RNNPool
stage is ``Sequential(RNNPoolLayer[, BatchNorm2d])``. A
classifier returns logits ``(N, classes)``; a detector returns ``(loc, conf)`` with ``loc``
``(N, anchors, 4)`` box offsets and ``conf`` ``(N, anchors, 2)`` background/face scores, anchors
ordered source by source, row-major over each prediction map (S3FD's layout; max-out sources
predict three background scores and keep their max).
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import RNNPoolLayer
from .spec import ArchSpec, Layer, expand, source_shapes


def _act(name: str) -> nn.Module:
    return {"relu6": nn.ReLU6, "relu": nn.ReLU}.get(name, nn.Identity)() if name != "none" else nn.Identity()


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "relu6",
            batch_norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(_act(act))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MBConv: [1x1 expand, BN, act] (t > 1), kxk depthwise, BN, act, 1x1 project, BN; + input."""

    def __init__(self, cin: int, cout: int, t: int, kernel: int, stride: int, act: str, residual: bool) -> None:
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1, act=act)] if t != 1 else []
        layers += [conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act), conv_bn(hidden, cout, 1, act="none")]
        self.body = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class L2Norm(nn.Module):
    """S3FD's L2Norm: unit L2 norm over channels per pixel, times a learnable per-channel scale."""

    def __init__(self, channels: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return x / norm * self.weight[None, :, None, None]


class Head(nn.Module):
    """One S3FD head: [L2Norm], [extra conv + ReLU], 3x3 conv -> 4 offsets, 3x3 conv -> scores."""

    def __init__(self, channels: int, l2norm: bool, extra_conv: dict | None, max_out: bool) -> None:
        super().__init__()
        self.norm = L2Norm(channels) if l2norm else nn.Identity()
        self.extra = nn.Identity()
        if extra_conv is not None:
            k, s = extra_conv.get("kernel", 3), extra_conv.get("stride", 1)
            self.extra = nn.Sequential(nn.Conv2d(channels, extra_conv["c"], k, s, k // 2), nn.ReLU(inplace=True))
            channels = extra_conv["c"]
        self.loc = nn.Conv2d(channels, 4, 3, 1, 1)
        self.conf = nn.Conv2d(channels, 4 if max_out else 2, 3, 1, 1)
        self.max_out = max_out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.extra(self.norm(x))
        loc, conf = self.loc(x), self.conf(x)
        if self.max_out:
            conf = torch.cat((conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]), dim=1)
        n = x.shape[0]
        return loc.permute(0, 2, 3, 1).reshape(n, -1, 4), conf.permute(0, 2, 3, 1).reshape(n, -1, 2)


def rnnpool_norm(channels: int) -> nn.BatchNorm2d:
    """The batch norm after an RNNPool. With the reference initialisation RNNPool's outputs
    vary by as little as 1e-3 (variance ~1e-6) around ~0.5, so the usual eps = 1e-5 would
    swamp them; 1e-10 lets the norm see them."""
    return nn.BatchNorm2d(channels, eps=1e-10)


def build_layer(layer: Layer) -> nn.Module:
    a = layer.args
    cin, cout = layer.in_shape[2], layer.out_shape[2]
    if layer.kind == "conv":
        return conv_bn(cin, cout, a["kernel"], a["stride"], a["groups"], a["activation"], a["batch_norm"])
    if layer.kind == "bottleneck":
        return InvertedResidual(cin, cout, a["t"], a["kernel"], a["stride"], a["activation"], a["residual"])
    if layer.kind == "dwsep":
        return nn.Sequential(
            conv_bn(cin, cin, a["kernel"], a["stride"], groups=cin, act=a["activation"]),
            conv_bn(cin, cout, 1, act=a["activation"]),
        )
    if layer.kind == "rnnpool":
        pool = RNNPoolLayer(
            cin, a["patch"], a["stride"], a["h1"], a["h2"], padding=a["padding"],
            gate_nonlinearity=a["gate_nonlinearity"], update_nonlinearity=a["update_nonlinearity"],
            w_rank=a["w_rank"], u_rank=a["u_rank"],
        )
        return nn.Sequential(pool, rnnpool_norm(cout)) if a["batch_norm"] else nn.Sequential(pool)
    if layer.kind == "pool":
        if layer.is_rnnpool:
            return nn.Sequential(RNNPoolLayer(cin, a["kernel"], a["stride"], a["h1"], a["h2"], padding=0),
                                 rnnpool_norm(cout))
        if a["global_pool"]:
            return nn.AdaptiveAvgPool2d(1) if a["kind"] == "avg" else nn.AdaptiveMaxPool2d(1)
        return (nn.AvgPool2d if a["kind"] == "avg" else nn.MaxPool2d)(a["kernel"], a["stride"])
    if layer.kind == "linear":
        fan_in = layer.in_elems
        return nn.Sequential(nn.Flatten(), nn.Dropout(a["dropout"]), nn.Linear(fan_in, cout))
    raise ValueError(f"unknown layer kind {layer.kind!r}")


class SpecNet(nn.Module):
    """The network of a spec. ``spec`` and the expanded ``layers`` stay attached."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = expand(spec)
        self.blocks = nn.ModuleList(build_layer(layer) for layer in self.layers)
        self.heads = nn.ModuleList()
        self.taps: dict[int, list[int]] = {}  # block index -> heads fed by its output
        if spec.detection is not None:
            last_block = {layer.stage: i for i, layer in enumerate(self.layers)}
            for j, (src, (shape, _, _)) in enumerate(zip(spec.detection.sources, source_shapes(spec, self.layers))):
                self.heads.append(Head(shape[2], src.l2norm, src.extra_conv, src.max_out))
                self.taps.setdefault(last_block[src.stage], []).append(j)

    def forward(self, x: torch.Tensor):
        if self.spec.detection is None:
            for block in self.blocks:
                x = block(x)
            return x
        outputs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.heads)
        for i, block in enumerate(self.blocks):
            x = block(x)
            for j in self.taps.get(i, ()):
                outputs[j] = self.heads[j](x)
        loc = torch.cat([o[0] for o in outputs if o is not None], dim=1)
        conf = torch.cat([o[1] for o in outputs if o is not None], dim=1)
        return loc, conf


def build(spec: ArchSpec) -> SpecNet:
    """Turn a spec into a module (validates it first). Callers that take a user's spec check
    ``cost.memory.check_fits_memory`` before (the trainer and export do)."""
    return SpecNet(spec)
