"""XD-RCDepth student: two MobileNetV2 encoders, FiLM fusion, point-wise DASPP decoder.

Paper: Huawei Sun et al., "XD-RCDepth: Lightweight Radar-Camera Depth Estimation with
Explainability-Aligned and Distribution-Aware Distillation", arXiv 2510.13565. It builds on
LiRCDepth (arXiv 2412.16380; see ``lircdepth.py``) and is distilled from a CaFNet-style teacher
(``teacher.py``). Only the abstract-level design is public, so this is a clean-room design:

* image and radar encoders: torchvision MobileNetV2 ``features``, taps at 1/2 … 1/32 (the
  radar branch has a 3x3 stem C → 3 so ImageNet weights fit both);
* each tap is projected (1x1 conv-BN-ReLU) to ``fused_channels`` and fused by FiLM
  (γ, β = Conv1x1(radar), zero-initialised, per channel by default);
* a BTS-like decoder (×2 upconv + skip concat + 3x3 conv) with a point-wise DASPP at 1/8,
  1x1 depth heads at 1/8, 1/4, 1/2 whose outputs are fed forward, and a final 3x3 conv +
  ``max_depth · sigmoid`` head — simple enough for an analytic Grad-CAM (``saliency.py``).

The default width lands at 0.70x the LiRCDepth parameter count (paper: −29.7 %).
"""
from __future__ import annotations

from collections.abc import Sequence
import os

import torch
from torch import nn

from xdrcdepth_ros.model.blocks import (
    ConvBNAct, DEFAULT_DASPP_RATES, DepthHead, FiLM, FiLMMode, ImageNormalize, PointwiseDASPP,
    RowPrior, UpConv)
from xdrcdepth_ros.model.decoder import decode
from xdrcdepth_ros.model.encoders import MobileNetV2Encoder
from xdrcdepth_ros.model.output import check_inputs, ModelOutput


class XDRCDepth(nn.Module):
    """The XD-RCDepth student network.

    ``forward(image, radar) -> ModelOutput``: image (B, 3, H, W) RGB in [0, 1]; radar (B, C, H, W)
    raw radar map (channel 0 depth in metres, then RCS, vx, vy; zeros where empty). H and W
    must be multiples of 32.

    Args:
        max_depth: output upper bound in metres.
        radar_channels: C of the radar map.
        pretrained_path: local torchvision MobileNetV2 ImageNet weights for both encoders.
        width_mult: MobileNetV2 width multiplier of both encoders.
        last_channels: channels of the encoders' final 1x1 conv (None: torchvision's 1280).
        fused_channels: channels of the fused features at 1/2, 1/4, 1/8, 1/16, 1/32.
        decoder_channels: decoder channels at 1/16, 1/8, 1/4, 1/2, 1.
        daspp_branch: channels each DASPP branch adds.
        daspp_rates: DASPP dilation rates.
        film_mode: ``'channel'`` (paper, γ/β per channel) or ``'spatial'``.
        head_kernel: kernel size of the final depth head.
        row_prior_rows: > 0 adds a :class:`RowPrior` of that many rows to every depth head
            and zeroes the heads, so the untrained model outputs the profile (fitted by the
            trainer: ``model.row_prior: train_split``); 0 (the paper's model) has none.
    """

    def __init__(self, *, max_depth: float = 100.0, radar_channels: int = 4,
                 pretrained_path: str | os.PathLike[str] | None = None,
                 width_mult: float = 1.0, last_channels: int | None = None,
                 fused_channels: Sequence[int] = (32, 48, 64, 160, 320),
                 decoder_channels: Sequence[int] = (320, 128, 64, 32, 16),
                 daspp_branch: int = 96, daspp_rates: Sequence[int] = DEFAULT_DASPP_RATES,
                 film_mode: str = FiLMMode.CHANNEL.value, head_kernel: int = 3,
                 row_prior_rows: int = 0) -> None:
        super().__init__()
        if len(fused_channels) != 5 or len(decoder_channels) != 5:
            raise ValueError('fused_channels and decoder_channels need five entries each')
        if radar_channels < 1:
            raise ValueError(f'radar_channels must be >= 1, got {radar_channels}')
        self.max_depth = float(max_depth)
        self.radar_channels = int(radar_channels)
        self.normalize = ImageNormalize()
        self.image_encoder = MobileNetV2Encoder(3, width_mult=width_mult,
                                                last_channels=last_channels,
                                                pretrained_path=pretrained_path)
        self.radar_encoder = MobileNetV2Encoder(radar_channels, width_mult=width_mult,
                                                last_channels=last_channels,
                                                pretrained_path=pretrained_path)
        enc = self.image_encoder.channels
        fc = list(fused_channels)
        self.image_proj = nn.ModuleList(ConvBNAct(e, f, 1) for e, f in zip(enc, fc))
        self.radar_proj = nn.ModuleList(ConvBNAct(e, f, 1) for e, f in zip(enc, fc))
        self.film = nn.ModuleList(FiLM(f, f, film_mode) for f in fc)

        d16, d8, d4, d2, d1 = decoder_channels
        self.up5 = UpConv(fc[4], d16)
        self.iconv5 = ConvBNAct(d16 + fc[3], d16, 3)
        self.up4 = UpConv(d16, d8)
        self.iconv4 = ConvBNAct(d8 + fc[2], d8, 3)
        self.daspp = PointwiseDASPP(d8, daspp_branch, d8, daspp_rates)
        self.head8 = DepthHead(d8, max_depth, kernel_size=1)
        self.up3 = UpConv(d8, d4)
        self.iconv3 = ConvBNAct(d4 + fc[1] + 1, d4, 3)
        self.head4 = DepthHead(d4, max_depth, kernel_size=1)
        self.up2 = UpConv(d4, d2)
        self.iconv2 = ConvBNAct(d2 + fc[0] + 1, d2, 3)
        self.head2 = DepthHead(d2, max_depth, kernel_size=1)
        self.up1 = UpConv(d2, d1)
        self.iconv1 = ConvBNAct(d1 + 3, d1, 3)
        self.head = DepthHead(d1, max_depth, kernel_size=head_kernel)
        self.row_prior = RowPrior(row_prior_rows, max_depth) if row_prior_rows > 0 else None
        if self.row_prior is not None:
            for head in (self.head8, self.head4, self.head2, self.head):
                head.zero_()

    def encode(self, image: torch.Tensor, radar: torch.Tensor) -> list[torch.Tensor]:
        """Fused multi-scale features (B, fused_channels[k], H/2^(k+1), W/2^(k+1)), fine first."""
        img_feats = self.image_encoder(self.normalize(image))
        rad_feats = self.radar_encoder(radar)
        return [film(pi(fi), pr(fr)) for film, pi, pr, fi, fr in zip(
            self.film, self.image_proj, self.radar_proj, img_feats, rad_feats)]

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> ModelOutput:
        """image (B,3,H,W) in [0,1], radar (B,C,H,W) raw → ``ModelOutput`` (depth in metres)."""
        check_inputs(image, radar, self.radar_channels)
        s2, s4, s8, s16, s32 = self.encode(image, radar)
        return decode(self, s2, s4, s8, s16, s32)

    def forward_with_saliency(self, image: torch.Tensor,
                              radar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth (B,1,H,W) metres and closed-form Grad-CAM saliency (B,1,H,W) in [0, 1].

        The saliency is Grad-CAM at the depth head input for the target "mean predicted depth
        over all pixels", computed analytically (no backward pass), so one exported graph
        yields both outputs. Equals ``normalize_cam(grad_cam(self, image, radar,
        'head_input'))`` up to float rounding.
        """
        from xdrcdepth_ros.model.saliency import closed_form_head_cam, normalize_cam

        out = self.forward(image, radar)
        prior = None if self.row_prior is None else self.row_prior(image.shape[2])
        cam = closed_form_head_cam(self.head, out.head_input, scale_free=True, prior=prior)
        return out.depth, normalize_cam(cam, eps=1e-6)
