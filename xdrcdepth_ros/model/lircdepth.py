"""LiRCDepth reference: the released lightweight radar-camera depth student, rebuilt clean-room.

Paper: Huawei Sun et al., "LiRCDepth: Lightweight Radar-Camera Depth Estimation via Knowledge
Distillation and Uncertainty Guidance", arXiv 2412.16380 (ICASSP 2025). This is the baseline
XD-RCDepth (arXiv 2510.13565) reports "−29.7 % parameters" against. The structure follows the
released configuration (both feature-distillation weights > 0) and has exactly 12,645,228
parameters:

* two MobileNetV2 ``features`` encoders (radar behind a 3x3 conv C → 3 + ReLU stem); every tap
  goes through a bias-free 1x1 + ReLU "affinity" projection, image to [64, 64, 128, 256, 512],
  radar to [64, 128, 128, 512, 512] (the teacher's channels);
* radar taps are aligned to the image channels (1x1 + ReLU) and fused by addition;
* a decoder of "inverted residual transpose" (IRT) blocks, intermediate 1x1 + ReLU depth heads
  at 1/8, 1/4, 1/2 (in units of max_depth, nearest-upsampled), a 3x3 refine over
  [features, 4 depth maps], and a 3x3 conv + ``max_depth · sigmoid`` output.

Differences from the original, none of which change the parameter count: ``intermediate`` is
reported in metres (the original keeps max_depth-normalised maps), and the ImageNet
normalisation lives inside the model.
"""
from __future__ import annotations

from collections.abc import Sequence
import os

import torch
from torch import nn

from xdrcdepth_ros.model.blocks import DepthHead, ImageNormalize, upsample_to
from xdrcdepth_ros.model.encoders import MobileNetV2Encoder
from xdrcdepth_ros.model.output import check_inputs, ModelOutput

IMAGE_PROJ = (64, 64, 128, 256, 512)
RADAR_PROJ = (64, 128, 128, 512, 512)


def _proj(in_channels: int, out_channels: int) -> nn.Sequential:
    """Bias-free 1x1 conv + ReLU (the 'affinity' projection)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.ReLU(inplace=True))


class InvertedResidualTranspose(nn.Sequential):
    """IRT block (no residual): 1x1 expand ×6 → depthwise 3x3 ConvTranspose (stride s) → 1x1.

    (B, in, h, w) → (B, out, s·h, s·w). BatchNorm after each step; ReLU6 after the first two.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 expansion: int = 6) -> None:
        hidden = in_channels * expansion
        super().__init__(
            nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.ConvTranspose2d(hidden, hidden, 3, stride=stride, padding=1,
                               output_padding=stride - 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.ConvTranspose2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))


def _stage(channels: Sequence[int]) -> nn.Sequential:
    """IRT chain through ``channels``; the last block upsamples ×2."""
    pairs = list(zip(channels[:-1], channels[1:]))
    return nn.Sequential(*(InvertedResidualTranspose(a, b, 2 if i == len(pairs) - 1 else 1)
                           for i, (a, b) in enumerate(pairs)))


class _IntermediateHead(nn.Sequential):
    """Bias-free 1x1 conv + ReLU to one channel, in units of max_depth."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, 1, 1, bias=False), nn.ReLU(inplace=True))


class LiRCDepth(nn.Module):
    """The LiRCDepth student (12,645,228 parameters at the defaults).

    ``forward(image, radar) -> ModelOutput`` with the shared contract (see ``ModelOutput``).

    Args:
        max_depth: output upper bound in metres.
        radar_channels: C of the radar map.
        pretrained_path: local torchvision MobileNetV2 ImageNet weights for both encoders.
    """

    def __init__(self, *, max_depth: float = 100.0, radar_channels: int = 4,
                 pretrained_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.max_depth = float(max_depth)
        self.radar_channels = int(radar_channels)
        self.normalize = ImageNormalize()
        self.image_encoder = MobileNetV2Encoder(3, pretrained_path=pretrained_path)
        self.radar_encoder = MobileNetV2Encoder(radar_channels, pretrained_path=pretrained_path)
        enc = self.image_encoder.channels
        self.image_proj = nn.ModuleList(_proj(e, c) for e, c in zip(enc, IMAGE_PROJ))
        self.radar_proj = nn.ModuleList(_proj(e, c) for e, c in zip(enc, RADAR_PROJ))
        self.radar_align = nn.ModuleList(_proj(r, c) for r, c in zip(RADAR_PROJ, IMAGE_PROJ))

        self.up5 = _stage((512, 32, 32, 512))
        self.up4 = _stage((512 + 256, 16, 16, 16, 16, 16, 16, 16, 128))
        self.up3 = _stage((128 + 128, 32, 32, 128))
        self.up2 = _stage((128 + 64, 32, 64))
        self.up1 = nn.ConvTranspose2d(64 + 64, 32, 3, stride=2, padding=1, output_padding=1,
                                      bias=False)
        self.head8, self.head4, self.head2 = (
            _IntermediateHead(128), _IntermediateHead(128), _IntermediateHead(64))
        self.head1 = _IntermediateHead(32)
        self.refine = nn.Sequential(nn.Conv2d(32 + 4, 32, 3, padding=1, bias=False),
                                    nn.ReLU(inplace=True))
        self.head = DepthHead(32, max_depth, kernel_size=3, bias=False)
        for module in self._decoder_modules():
            for conv in module.modules():
                if type(conv) is nn.Conv2d:
                    nn.init.xavier_uniform_(conv.weight)

    def _decoder_modules(self) -> list[nn.Module]:
        return [self.radar_align, self.up5, self.up4, self.up3, self.up2, self.up1, self.head8,
                self.head4, self.head2, self.head1, self.refine, self.head]

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> ModelOutput:
        """image (B,3,H,W) in [0,1], radar (B,C,H,W) raw → ``ModelOutput`` (depth in metres)."""
        check_inputs(image, radar, self.radar_channels)
        img = [p(f) for p, f in zip(self.image_proj, self.image_encoder(self.normalize(image)))]
        rad = [p(f) for p, f in zip(self.radar_proj, self.radar_encoder(radar))]
        f1, f2, f3, f4, f5 = (i + a(r) for i, a, r in zip(img, self.radar_align, rad))

        x16 = self.up5(f5)
        x8 = self.up4(torch.cat([x16, f4], dim=1))
        x4 = self.up3(torch.cat([x8, f3], dim=1))
        x2 = self.up2(torch.cat([x4, f2], dim=1))
        x1 = self.up1(torch.cat([x2, f1], dim=1))
        d8 = upsample_to(self.head8(x8), 8, mode='nearest')
        d4 = upsample_to(self.head4(x4), 4, mode='nearest')
        d2 = upsample_to(self.head2(x2), 2, mode='nearest')
        refined = self.refine(torch.cat([x1, d8, d4, d2, self.head1(x1)], dim=1))
        depth = self.head(refined)
        features = {'1/16': x16, '1/8': x8, '1/4': x4, '1/2': x2, '1': refined}
        scale = self.max_depth
        return ModelOutput(depth, [d8 * scale, d4 * scale, d2 * scale], features, refined)
