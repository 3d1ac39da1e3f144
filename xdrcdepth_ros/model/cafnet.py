"""CaFNet as released: the network the official nuScenes checkpoints were trained as.

Paper: Huawei Sun et al., "CaFNet: A Confidence-Driven Framework for Radar Camera Depth
Estimation", IROS 2024 (arXiv 2407.00697); origin code ``harborsarah/CaFNet`` (GPL-3.0, read to
understand and rebuilt here, never copied). Unlike ``teacher.CaFNetTeacher`` (our simplified
CaFNet-style teacher), this module reproduces the released architecture so that the published
weights load onto it (``model.official``) and give the official outputs:

* stage 1: four normalised sparse convolutions (7, 5, 3, 3; ELU) turn the radar map into 3
  channels for a ResNet-18; a U-Net decoder over [image, radar, upsampled] skips predicts a
  radar depth (``max_depth · sigmoid``) and a confidence (sigmoid), both at full resolution;
* stage 2: ``[confidence > 0.4 ? radar depth : 0, radar]`` (C + 1 channels) → 3x3 conv + ELU →
  a second ResNet-18;
* image: a ResNet-34 (taps after the stem ReLU and after each stage);
* the BTS decoder (Lee et al., arXiv 1907.10326) at ``num_features`` = 512, with dense ASPP at
  1/8 and local planar guidance (LPG) heads at 1/8, 1/4, 1/2; at each scale the radar feature
  ``sigmoid(W_g r) ⊙ ReLU(W_p r) ⊙ avgpool(confidence)`` is added.

``focal`` is the constructor constant the official forward takes (567 for nuScenes); its LPG
layers do not use it, so neither do ours. The image is normalised inside (ImageNet mean/std),
so ``forward`` takes RGB in [0, 1] like every model of this package.
"""
from __future__ import annotations

from collections.abc import Sequence
import math
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

from xdrcdepth_ros.model.blocks import ImageNormalize
from xdrcdepth_ros.model.encoders import ResNetEncoder
from xdrcdepth_ros.model.output import check_inputs, ModelOutput

#: BatchNorm epsilon of the BTS decoders (the TensorFlow default BTS was ported from).
BTS_BN_EPS = 1.1e-5
DASPP_RATES = (3, 6, 12, 18, 24)
CONFIDENCE_THRESHOLD = 0.4
NUSCENES_FOCAL = 567.0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BTS_BN_EPS, momentum=0.01)


def _conv3_elu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Bias-free 3x3 conv + ELU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.ELU())


class UpConvELU(nn.Module):
    """×2 nearest upsampling → bias-free 3x3 conv → ELU (BTS 'upconv'; no norm inside)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → (B, out, 2h, 2w)."""
        return F.elu(self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest')))


class SparseConv(nn.Module):
    """Normalised sparse convolution (Uhrig et al., 3DV 2017), ELU, and the grown mask.

    ``y = ELU(conv(x ⊙ m) / (count(m) + 1e-8) + b)`` with ``count`` a one-channel k x k
    convolution (all ones at construction, frozen, but stored: the checkpoint carries it),
    and the new mask is the k x k max-pool of ``m``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                              bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.count = nn.Conv2d(1, 1, kernel_size, padding=padding, bias=False)
        nn.init.ones_(self.count.weight)
        self.count.weight.requires_grad_(False)
        self.grow = nn.MaxPool2d(kernel_size, stride=1, padding=padding)

    def forward(self, x: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, in, H, W), mask (B, 1, H, W) in {0, 1} → (B, out, H, W), grown mask."""
        normalizer = 1.0 / (self.count(mask) + 1e-8)
        x = self.conv(x * mask) * normalizer + self.bias.view(1, -1, 1, 1)
        return F.elu(x), self.grow(mask)


class RadarConfidenceDecoder(nn.Module):
    """Stage-1 U-Net decoder: five ×2 stages over [image skip, radar skip, previous].

    Each stage is ``UpConvELU → BatchNorm → 3x3 conv + ELU``; the output 3x3 conv gives two
    sigmoid maps, radar depth (× max_depth) and confidence.
    """

    def __init__(self, image_channels: Sequence[int], radar_channels: Sequence[int],
                 max_depth: float) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.stages = nn.ModuleList()
        previous = 0
        for level in (4, 3, 2, 1, 0):
            width = radar_channels[level] // 2
            self.stages.append(nn.ModuleDict({
                'up': UpConvELU(image_channels[level] + radar_channels[level] + previous, width),
                'norm': _bn(width), 'conv': _conv3_elu(width, width)}))
            previous = width
        self.head = nn.Conv2d(previous, 2, 3, padding=1, bias=False)

    def forward(self, image_feats: Sequence[torch.Tensor],
                radar_feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Five taps each → confidence (B,1,H,W) in (0,1), radar depth (B,1,H,W) metres."""
        x = None
        for stage, level in zip(self.stages, (4, 3, 2, 1, 0)):
            parts = [image_feats[level], radar_feats[level]] + ([] if x is None else [x])
            x = stage['conv'](stage['norm'](stage['up'](torch.cat(parts, dim=1))))
        out = torch.sigmoid(self.head(x))
        return out[:, 1:2], self.max_depth * out[:, 0:1]


class RadarGate(nn.Module):
    """``sigmoid(W_g r) ⊙ ReLU(W_p r) ⊙ confidence`` with bias-free 1x1 convs."""

    def __init__(self, radar_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(radar_channels, out_channels, 1, bias=False)
        self.proj = nn.Conv2d(radar_channels, out_channels, 1, bias=False)

    def forward(self, radar_feat: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """(B, R, h, w), (B, 1, h, w) → (B, out, h, w)."""
        return torch.sigmoid(self.gate(radar_feat)) * F.relu(self.proj(radar_feat)) * confidence


class AtrousBranch(nn.Module):
    """Dense-ASPP branch: [BN] → ReLU → 1x1 (2·out) → BN → ReLU → dilated 3x3 (out)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, *,
                 norm_first: bool) -> None:
        super().__init__()
        self.norm_in = (nn.BatchNorm2d(in_channels, eps=BTS_BN_EPS, momentum=0.01)
                        if norm_first else nn.Identity())
        self.reduce = nn.Conv2d(in_channels, 2 * out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(2 * out_channels, momentum=0.01)
        self.conv = nn.Conv2d(2 * out_channels, out_channels, 3, padding=dilation,
                              dilation=dilation, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → (B, out, h, w)."""
        x = self.reduce(F.relu(self.norm_in(x)))
        return self.conv(F.relu(self.norm(x)))


class ReductionHead(nn.Module):
    """BTS 'reduction 1x1': halving 1x1 convs + ELU down to 8 channels, then the output conv.

    With ``planes=True`` the output is 3 plane parameters turned into a unit normal and a
    distance (B, 4, h, w); otherwise one sigmoid channel (B, 1, h, w).
    """

    def __init__(self, in_channels: int, first_width: int, max_depth: float, *,
                 planes: bool) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.planes = planes
        self.reduce = nn.ModuleDict()
        width = first_width
        while width >= 8:
            self.reduce[f'c{width}'] = nn.Conv2d(in_channels, width, 1, bias=False)
            in_channels, width = width, width // 2
        self.params = nn.Conv2d(in_channels, 3 if planes else 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → plane (B, 4, h, w) [n1, n2, n3, distance m] or (B, 1, h, w)."""
        for conv in self.reduce.values():
            x = F.elu(conv(x))
        x = self.params(x)
        if not self.planes:
            return torch.sigmoid(x)
        theta = torch.sigmoid(x[:, 0:1]) * (math.pi / 3)
        phi = torch.sigmoid(x[:, 1:2]) * (math.pi * 2)
        distance = torch.sigmoid(x[:, 2:3]) * self.max_depth
        normal = torch.cat([torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi),
                            torch.cos(theta)], dim=1)
        return torch.cat([F.normalize(normal, p=2.0, dim=1), distance], dim=1)


def local_planar_guidance(plane: torch.Tensor, ratio: int) -> torch.Tensor:
    """BTS LPG: each coarse pixel's plane gives depth over its ratio x ratio block.

    ``depth = n4 / (n1 u + n2 v + n3)`` with (u, v) the pixel offset inside its block,
    normalised to (−0.5, 0.5) by ``(i − (ratio − 1)/2) / ratio``.

    Args:
        plane: (B, 4, h, w) unit normal n1..n3 and distance n4 (metres).
        ratio: upsampling factor.

    Returns:
        (B, 1, ratio·h, ratio·w) depth in metres.
    """
    up = F.interpolate(plane, scale_factor=float(ratio), mode='nearest')
    height, width = int(up.shape[2]), int(up.shape[3])
    offsets = (torch.arange(ratio, dtype=up.dtype, device=up.device) - (ratio - 1) * 0.5) / ratio
    u = offsets.repeat(width // ratio).view(1, 1, 1, width)
    v = offsets.repeat(height // ratio).view(1, 1, height, 1)
    return up[:, 3:4] / (up[:, 0:1] * u + up[:, 1:2] * v + up[:, 2:3])


class CaFNetOutput(NamedTuple):
    """Everything the CaFNet forward computes (``ModelOutput`` plus the stage-1 maps).

    Attributes:
        output: the shared ``ModelOutput`` (depth and intermediate maps in metres).
        confidence: (B, 1, H, W) stage-1 radar confidence in (0, 1).
        radar_depth: (B, 1, H, W) stage-1 radar depth, metres.
    """

    output: ModelOutput
    confidence: torch.Tensor
    radar_depth: torch.Tensor


class CaFNet(nn.Module):
    """The released CaFNet (60.7 M parameters used); ``forward(image, radar) -> ModelOutput``.

    Args:
        max_depth: output upper bound in metres (100 for the nuScenes release).
        radar_channels: C of the radar map ([depth, RCS, vx, vy] for the release).
        num_features: BTS decoder width (``bts_size``, 512 in the release).
        confidence_threshold: stage-1 confidence above which its radar depth feeds stage 2.
        focal: focal length in pixels the official forward receives (unused by LPG).
    """

    def __init__(self, *, max_depth: float = 100.0, radar_channels: int = 4,
                 num_features: int = 512, confidence_threshold: float = CONFIDENCE_THRESHOLD,
                 focal: float = NUSCENES_FOCAL) -> None:
        super().__init__()
        if num_features < 256 or num_features % 32:
            raise ValueError(f'num_features must be a multiple of 32 and >= 256, got '
                             f'{num_features}')
        self.max_depth = float(max_depth)
        self.radar_channels = int(radar_channels)
        self.confidence_threshold = float(confidence_threshold)
        self.focal = float(focal)
        nf = num_features
        self.normalize = ImageNormalize()
        self.image_encoder = ResNetEncoder(3, (3, 4, 6, 3))
        img = self.image_encoder.channels
        self.sparse = nn.ModuleList(SparseConv(a, b, k) for a, b, k in (
            (radar_channels, 16, 7), (16, 16, 5), (16, 16, 3), (16, 3, 3)))
        self.stage1_encoder = ResNetEncoder(3, (2, 2, 2, 2))
        rad = self.stage1_encoder.channels
        self.confidence_decoder = RadarConfidenceDecoder(img, rad, self.max_depth)
        self.stage2_stem = nn.Sequential(
            nn.Conv2d(radar_channels + 1, 3, 3, padding=1, bias=False), nn.ELU())
        self.radar_encoder = ResNetEncoder(3, (2, 2, 2, 2))
        widths = (nf // 8, nf // 4, nf // 4, nf, img[4])  # what each gate adds to, fine first
        self.gates = nn.ModuleList(RadarGate(r, w) for r, w in zip(rad, widths))

        self.up16, self.norm16 = UpConvELU(img[4], nf), _bn(nf)
        self.fuse16 = _conv3_elu(nf + img[3], nf)
        self.up8, self.norm8 = UpConvELU(nf, nf // 2), _bn(nf // 2)
        self.fuse8, self.fuse8_norm = _conv3_elu(nf // 2 + img[2], nf // 2), _bn(nf // 2)
        concat8 = nf // 2 + img[2]
        self.daspp = nn.ModuleList(
            AtrousBranch(nf // 2 if i == 0 else concat8 + i * (nf // 4), nf // 4, rate,
                         norm_first=i > 0) for i, rate in enumerate(DASPP_RATES))
        self.daspp_fuse = _conv3_elu(nf // 2 + len(DASPP_RATES) * (nf // 4), nf // 4)
        self.plane8 = ReductionHead(nf // 4, nf // 4, self.max_depth, planes=True)
        self.up4, self.norm4 = UpConvELU(nf // 4, nf // 4), _bn(nf // 4)
        self.fuse4 = _conv3_elu(nf // 4 + img[1] + 1, nf // 4)
        self.plane4 = ReductionHead(nf // 4, nf // 8, self.max_depth, planes=True)
        self.up2, self.norm2 = UpConvELU(nf // 4, nf // 8), _bn(nf // 8)
        self.fuse2 = _conv3_elu(nf // 8 + img[0] + 1, nf // 8)
        self.plane2 = ReductionHead(nf // 8, nf // 16, self.max_depth, planes=True)
        self.up1 = UpConvELU(nf // 8, nf // 16)
        self.head1 = ReductionHead(nf // 16, nf // 32, self.max_depth, planes=False)
        self.fuse1 = _conv3_elu(nf // 16 + 4, nf // 16)
        self.head = nn.Conv2d(nf // 16, 1, 3, padding=1, bias=False)

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> ModelOutput:
        """image (B,3,H,W) in [0,1], radar (B,C,H,W) raw → ``ModelOutput`` (depth in metres)."""
        return self.forward_all(image, radar).output

    def forward_all(self, image: torch.Tensor, radar: torch.Tensor) -> CaFNetOutput:
        """Like ``forward``, also returning the stage-1 confidence and radar depth."""
        check_inputs(image, radar, self.radar_channels)
        img = self.image_encoder(self.normalize(image))
        x, mask = radar, (radar[:, 0:1] > 0).to(radar.dtype)
        for layer in self.sparse:
            x, mask = layer(x, mask)
        confidence, radar_depth = self.confidence_decoder(img, self.stage1_encoder(x))
        keep = (confidence > self.confidence_threshold).to(radar.dtype)
        rad = self.radar_encoder(self.stage2_stem(torch.cat([keep * radar_depth, radar], dim=1)))
        added = [gate(r, F.avg_pool2d(confidence, 2 ** (k + 1)))
                 for k, (gate, r) in enumerate(zip(self.gates, rad))]
        return CaFNetOutput(self._decode(img, added), confidence, radar_depth)

    def _decode(self, img: Sequence[torch.Tensor], added: Sequence[torch.Tensor]) -> ModelOutput:
        f16 = self.fuse16(torch.cat([self.norm16(self.up16(F.relu(img[4]) + added[4])), img[3]],
                                    dim=1))
        concat8 = torch.cat([self.norm8(self.up8(f16 + added[3])), img[2]], dim=1)
        x8 = self.fuse8_norm(self.fuse8(concat8))
        branches, dense = [], concat8
        for index, branch in enumerate(self.daspp):
            out = branch(x8 if index == 0 else dense)
            branches.append(out)
            dense = torch.cat([dense, out], dim=1)
        f8 = self.daspp_fuse(torch.cat([x8, *branches], dim=1)) + added[2]
        d8 = local_planar_guidance(self.plane8(f8), 8) / self.max_depth
        f4 = self.fuse4(torch.cat([self.norm4(self.up4(f8)), img[1],
                                   F.interpolate(d8, scale_factor=0.25, mode='nearest')], dim=1))
        f4 = f4 + added[1]
        d4 = local_planar_guidance(self.plane4(f4), 4) / self.max_depth
        f2 = self.fuse2(torch.cat([self.norm2(self.up2(f4)), img[0],
                                   F.interpolate(d4, scale_factor=0.5, mode='nearest')], dim=1))
        f2 = f2 + added[0]
        d2 = local_planar_guidance(self.plane2(f2), 2) / self.max_depth
        up1 = self.up1(f2)
        f1 = self.fuse1(torch.cat([up1, self.head1(up1), d2, d4, d8], dim=1))
        depth = self.max_depth * torch.sigmoid(self.head(f1))
        features = {'1/16': f16, '1/8': f8, '1/4': f4, '1/2': f2, '1': f1}
        scale = self.max_depth
        return ModelOutput(depth, [d8 * scale, d4 * scale, d2 * scale], features, f1)
