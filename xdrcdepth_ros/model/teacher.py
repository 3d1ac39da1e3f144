"""CaFNet-style teacher: ResNet-34 image encoder, two-stage radar branch, gated BTS decoder.

Paper: Huawei Sun et al., "CaFNet: A Confidence-Driven Framework for Radar Camera Depth
Estimation", IROS 2024 (arXiv 2407.00697); used as the teacher by LiRCDepth (arXiv 2412.16380)
and XD-RCDepth (arXiv 2510.13565). Clean-room and simplified where the original needs labels
we do not have:

* stage 1: a ResNet-18 radar encoder and a small U-Net decoder (image and radar skips) predict
  a coarse radar depth and a per-pixel confidence (both sigmoid). CaFNet supervises the
  confidence with 3D-box association; here it is learned end to end as a gate.
* stage 2: a second ResNet-18 encodes ``cat(radar, confidence · coarse depth)``.
* confidence-gated fusion at every scale: ``sigmoid(W_g r) ⊙ ReLU(W_p r) ⊙ avgpool(conf)`` is
  added to the ResNet-34 image feature.
* BTS-style decoder (Lee et al., arXiv 1907.10326) with ``num_features`` base filters, a dense
  ASPP (rates 3/6/12/18/24) at 1/8, 3x3 sigmoid depth heads at 1/8, 1/4, 1/2 fed forward (in
  place of BTS's local planar guidance), and a final 3x3 conv + ``max_depth · sigmoid``.

``image_layers``, ``radar_layers`` and ``num_features`` shrink it for CPU work
(``cafnet_teacher_small``). Full width is ~61 M parameters (CaFNet as built by LiRCDepth:
60.7 M used).
"""
from __future__ import annotations

from collections.abc import Sequence
import os

import torch
from torch import nn
import torch.nn.functional as F

from xdrcdepth_ros.model.blocks import (
    ConvBNAct, DEFAULT_DASPP_RATES, DenseASPP, DepthHead, ImageNormalize, UpConv)
from xdrcdepth_ros.model.decoder import decode
from xdrcdepth_ros.model.encoders import ResNetEncoder
from xdrcdepth_ros.model.output import check_inputs, ModelOutput

SCALES = (2, 4, 8, 16, 32)


class RadarConfidenceNet(nn.Module):
    """Stage 1: radar (and image skips) → coarse depth (m) and confidence in (0, 1), full res."""

    def __init__(self, radar_channels: int, layers: Sequence[int], image_channels: Sequence[int],
                 decoder_channels: Sequence[int], max_depth: float) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.encoder = ResNetEncoder(radar_channels, layers)
        rad = self.encoder.channels
        self.blocks = nn.ModuleList()
        channels = rad[4]
        for k in (3, 2, 1, 0):
            out = decoder_channels[3 - k]
            self.blocks.append(ConvBNAct(channels + rad[k] + image_channels[k], out, 3,
                                         act_layer=nn.ELU))
            channels = out
        self.out = nn.Conv2d(channels, 2, 3, padding=1)

    def forward(self, radar: torch.Tensor,
                image_feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """radar (B,C,H,W), five image taps → coarse depth (B,1,H,W) m, confidence (B,1,H,W)."""
        rad = self.encoder(radar)
        x = rad[4]
        for block, k in zip(self.blocks, (3, 2, 1, 0)):
            x = F.interpolate(x, scale_factor=2.0, mode='nearest')
            x = block(torch.cat([x, rad[k], image_feats[k]], dim=1))
        out = torch.sigmoid(self.out(F.interpolate(x, scale_factor=2.0, mode='nearest')))
        return self.max_depth * out[:, :1], out[:, 1:]


class ConfidenceGate(nn.Module):
    """``sigmoid(W_g r) ⊙ ReLU(W_p r) ⊙ conf`` with 1x1 convs; r (B,R,h,w) → (B,C,h,w)."""

    def __init__(self, radar_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(radar_channels, out_channels, 1)
        self.proj = nn.Conv2d(radar_channels, out_channels, 1)

    def forward(self, radar_feat: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """radar_feat (B,R,h,w), confidence (B,1,h,w) → gated radar feature (B,C,h,w)."""
        return torch.sigmoid(self.gate(radar_feat)) * F.relu(self.proj(radar_feat)) * confidence


class CaFNetTeacher(nn.Module):
    """The teacher network; ``forward(image, radar) -> ModelOutput`` (shared contract).

    Args:
        max_depth: output upper bound in metres.
        radar_channels: C of the radar map.
        image_layers: BasicBlocks per ResNet stage of the image encoder ((3,4,6,3) = ResNet-34).
        radar_layers: the same for both radar encoders ((2,2,2,2) = ResNet-18).
        num_features: BTS decoder base width (512 in BTS/CaFNet).
        daspp_rates: dense ASPP dilation rates.
        pretrained_path: optional local torchvision ResNet ImageNet weights for the image encoder.
    """

    def __init__(self, *, max_depth: float = 100.0, radar_channels: int = 4,
                 image_layers: Sequence[int] = (3, 4, 6, 3),
                 radar_layers: Sequence[int] = (2, 2, 2, 2), num_features: int = 512,
                 daspp_rates: Sequence[int] = DEFAULT_DASPP_RATES,
                 pretrained_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        if num_features < 32 or num_features % 16:
            raise ValueError(
                f'num_features must be a multiple of 16 and >= 32, got {num_features}')
        self.max_depth = float(max_depth)
        self.radar_channels = int(radar_channels)
        nf = num_features
        self.normalize = ImageNormalize()
        self.image_encoder = ResNetEncoder(3, image_layers, pretrained_path=pretrained_path)
        img = self.image_encoder.channels
        self.stage1 = RadarConfidenceNet(radar_channels, radar_layers, img,
                                         (nf // 2, nf // 4, nf // 8, nf // 16), self.max_depth)
        self.radar_encoder = ResNetEncoder(radar_channels + 1, radar_layers)
        rad = self.radar_encoder.channels
        self.gates = nn.ModuleList(ConfidenceGate(r, c) for r, c in zip(rad, img))

        self.up5 = UpConv(img[4], nf, act_layer=nn.ELU)
        self.iconv5 = ConvBNAct(nf + img[3], nf, 3, act_layer=nn.ELU)
        self.up4 = UpConv(nf, nf // 2, act_layer=nn.ELU)
        self.iconv4 = ConvBNAct(nf // 2 + img[2], nf // 2, 3, act_layer=nn.ELU)
        self.daspp = DenseASPP(nf // 2, nf // 4, nf // 4, daspp_rates)
        self.head8 = DepthHead(nf // 4, max_depth)
        self.up3 = UpConv(nf // 4, nf // 4, act_layer=nn.ELU)
        self.iconv3 = ConvBNAct(nf // 4 + img[1] + 1, nf // 4, 3, act_layer=nn.ELU)
        self.head4 = DepthHead(nf // 4, max_depth)
        self.up2 = UpConv(nf // 4, nf // 8, act_layer=nn.ELU)
        self.iconv2 = ConvBNAct(nf // 8 + img[0] + 1, nf // 8, 3, act_layer=nn.ELU)
        self.head2 = DepthHead(nf // 8, max_depth)
        self.up1 = UpConv(nf // 8, nf // 16, act_layer=nn.ELU)
        self.iconv1 = ConvBNAct(nf // 16 + 3, nf // 16, 3, act_layer=nn.ELU)
        self.head = DepthHead(nf // 16, max_depth)

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> ModelOutput:
        """image (B,3,H,W) in [0,1], radar (B,C,H,W) raw → ``ModelOutput`` (depth in metres)."""
        check_inputs(image, radar, self.radar_channels)
        img = self.image_encoder(self.normalize(image))
        coarse, confidence = self.stage1(radar, img)
        rad = self.radar_encoder(torch.cat([radar, confidence * coarse], dim=1))
        s2, s4, s8, s16, s32 = (
            i + gate(r, F.avg_pool2d(confidence, s))
            for i, gate, r, s in zip(img, self.gates, rad, SCALES))
        return decode(self, s2, s4, s8, s16, s32)
