"""HorNet (Rao et al., 2022): the backbone of the CropFormer release's best model (HorNet-L), which
neither timm nor transformers has. Written from the paper and the release's module structure
(``Entityv2/CropFormer/mask2former/modeling/backbone/hornet.py``), with the same attribute names so the
release's weights load key for key:

* a stem (4×4 conv, stride 4) and three downsamplings (LayerNorm, 2×2 conv, stride 2);
* stages of blocks: ``x + γ1·gnconv(norm1(x))``, then ``x + γ2·MLP(norm2(x))`` (MLP 4× wide, GELU);
* ``gnconv``, the recursive gated convolution of order n: a 1×1 projection into a gate (width C/2^(n−1))
  and n context maps of widths C/2^(n−1) … C, a depthwise 7×7 convolution (or a global-local filter:
  half the channels through a 3×3 depthwise convolution, half multiplied in the 2D Fourier domain by a
  learned filter resized to the map) scaled by ``s``, then the gate is multiplied by each map in turn,
  widened by 1×1 convolutions between, and projected out;
* a channels-first LayerNorm ``norm{s}`` on each stage's output: the features at strides 4 … 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) map (eps 1e-6, as the release's)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class GlobalLocalFilter(nn.Module):
    """Half the channels through a 3×3 depthwise convolution, half filtered in the 2D Fourier domain by
    a learned (h, w) complex filter (bilinearly resized to the map's spectrum when the sizes differ)."""

    def __init__(self, channels: int, h: int, w: int) -> None:
        super().__init__()
        half = channels // 2
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, bias=False, groups=half)
        self.complex_weight = nn.Parameter(torch.randn(half, h, w, 2) * 0.02)
        self.pre_norm = ChannelsFirstLayerNorm(channels)
        self.post_norm = ChannelsFirstLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        local, spectral = x.chunk(2, dim=1)
        local = self.dw(local)
        height, width = spectral.shape[-2:]
        spectrum = torch.fft.rfft2(spectral.float(), dim=(2, 3), norm="ortho")
        weight = self.complex_weight
        if weight.shape[1:3] != spectrum.shape[2:4]:
            weight = F.interpolate(weight.permute(3, 0, 1, 2), size=spectrum.shape[2:4], mode="bilinear",
                                   align_corners=True).permute(1, 2, 3, 0)
        spectral = torch.fft.irfft2(spectrum * torch.view_as_complex(weight.contiguous()), s=(height, width),
                                    dim=(2, 3), norm="ortho")
        # the two halves interleaved channel by channel (local 0, spectral 0, local 1, …), as the release
        mixed = torch.stack([local, spectral.to(local.dtype)], dim=2).flatten(1, 2)
        return self.post_norm(mixed)


class RecursiveGatedConv(nn.Module):
    """``gnconv`` of order ``order``; ``spectral`` (h, w) swaps the depthwise 7×7 for a GlobalLocalFilter."""

    def __init__(self, dim: int, order: int, scale: float, spectral: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.dims = [dim // 2**k for k in range(order)][::-1]  # C/2^(n−1), …, C/2, C
        self.scale = scale
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        total = sum(self.dims)
        self.dwconv: nn.Module = GlobalLocalFilter(total, *spectral) if spectral else \
            nn.Conv2d(total, total, kernel_size=7, padding=3, groups=total)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[k], self.dims[k + 1], 1) for k in range(order - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, context = self.proj_in(x).split((self.dims[0], sum(self.dims)), dim=1)
        maps = (self.dwconv(context) * self.scale).split(self.dims, dim=1)
        x = gate * maps[0]
        for k, widen in enumerate(self.pws):
            x = widen(x) * maps[k + 1]
        return self.proj_out(x)


class HorNetBlock(nn.Module):
    def __init__(self, dim: int, order: int, scale: float, spectral: tuple[int, int] | None) -> None:
        super().__init__()
        self.norm1 = ChannelsFirstLayerNorm(dim)
        self.gnconv = RecursiveGatedConv(dim, order, scale, spectral)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(1e-6 * torch.ones(dim))
        self.gamma2 = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1[:, None, None] * self.gnconv(self.norm1(x))
        y = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + (self.gamma2 * y).permute(0, 3, 1, 2)


@dataclass
class HorNetGeometry:
    base_dim: int
    depths: list[int]
    orders: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    spectral: list[tuple[int, int] | None] = field(default_factory=lambda: [None, None, (24, 13), (12, 7)])
    scale: float = 1 / 3


HORNET = {
    "d2_hornet_large": HorNetGeometry(base_dim=192, depths=[2, 3, 18, 2]),  # the CropFormer release (HorNet-L GF)
    "d2_hornet_test": HorNetGeometry(base_dim=16, depths=[1, 1, 1, 1], spectral=[None, None, (6, 4), (3, 2)]),
}


class HorNet(nn.Module):
    """forward(x) → the four normalised stage outputs (strides 4, 8, 16, 32; ``channels``)."""

    def __init__(self, geometry: HorNetGeometry) -> None:
        super().__init__()
        g = geometry
        dims = [g.base_dim * 2**k for k in range(4)]
        self.channels = dims
        self.downsample_layers = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4),
                                                              ChannelsFirstLayerNorm(dims[0]))])
        self.downsample_layers.extend(nn.Sequential(ChannelsFirstLayerNorm(dims[k]), nn.Conv2d(dims[k], dims[k + 1], 2,
                                                                                               stride=2))
                                      for k in range(3))
        self.stages = nn.ModuleList(nn.Sequential(*[HorNetBlock(dims[k], g.orders[k], g.scale, g.spectral[k])
                                                    for _ in range(g.depths[k])]) for k in range(4))
        for k in range(4):
            self.add_module(f"norm{k}", ChannelsFirstLayerNorm(dims[k]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for k in range(4):
            x = self.stages[k](self.downsample_layers[k](x))
            out.append(getattr(self, f"norm{k}")(x))
        return out


__all__ = ["HORNET", "ChannelsFirstLayerNorm", "GlobalLocalFilter", "HorNet", "HorNetBlock", "HorNetGeometry",
           "RecursiveGatedConv"]
