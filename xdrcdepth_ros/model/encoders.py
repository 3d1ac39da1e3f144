"""Multi-scale feature encoders: torchvision MobileNetV2 and ResNet, five taps at 1/2 … 1/32.

ImageNet weights are only ever read from a local file (``pretrained_path``); nothing is
downloaded. The file may hold a full torchvision classifier ``state_dict`` (e.g.
``mobilenet_v2-b0353104.pth``) or just the feature layers; classifier/fc keys are ignored.
"""
from __future__ import annotations

from collections.abc import Sequence
import os

import torch
from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops.misc import Conv2dNormActivation

# Children of MobileNetV2.features after which the 1/2, 1/4, 1/8, 1/16, 1/32 features are taken.
MOBILENET_TAPS = (1, 3, 6, 10, 18)


def _read_state_dict(path: str | os.PathLike[str], drop_prefixes: Sequence[str],
                     strip_prefix: str = '') -> dict[str, torch.Tensor]:
    """Load a weights-only state dict, drop head keys, strip a leading module prefix."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'pretrained weight file not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and 'state_dict' in state:
        state = state['state_dict']
    if not isinstance(state, dict):
        raise ValueError(f'{path} does not hold a state_dict (got {type(state).__name__})')
    out = {}
    for key, value in state.items():
        key = key.removeprefix('module.')
        if any(key.startswith(p) for p in drop_prefixes):
            continue
        out[key.removeprefix(strip_prefix)] = value
    return out


class MobileNetV2Encoder(nn.Module):
    """torchvision MobileNetV2 ``features`` with five taps (strides 2, 4, 8, 16, 32).

    With ``in_channels != 3`` a 3x3 conv + ReLU stem maps the input to 3 channels first (as in
    LiRCDepth's radar branch), so ImageNet weights still fit the body.

    Args:
        in_channels: input channels (3 for RGB, C for a radar map).
        width_mult: MobileNetV2 width multiplier (1.0 for ImageNet weights).
        last_channels: channels of the final 1x1 conv (1280 in torchvision; smaller for tiny
            variants). ``None`` keeps torchvision's.
        pretrained_path: optional local ImageNet weight file (width 1.0, last 1280 only).

    Attributes:
        channels: output channels of the five taps, fine to coarse.
    """

    def __init__(self, in_channels: int = 3, *, width_mult: float = 1.0,
                 last_channels: int | None = None,
                 pretrained_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.stem: nn.Module
        if in_channels == 3:
            self.stem = nn.Identity()
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 3, 3, padding=1, bias=False),
                                      nn.ReLU(inplace=True))
        features = mobilenet_v2(weights=None, width_mult=width_mult).features
        if last_channels is not None:
            body_channels = features[17].out_channels
            features[18] = Conv2dNormActivation(body_channels, last_channels, kernel_size=1,
                                                norm_layer=nn.BatchNorm2d,
                                                activation_layer=nn.ReLU6)
        self.features = features
        self.channels = [self._out_channels(features[i]) for i in MOBILENET_TAPS]
        if pretrained_path is not None:
            self.load_imagenet(pretrained_path)

    @staticmethod
    def _out_channels(block: nn.Module) -> int:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        return int(convs[-1].out_channels)

    def load_imagenet(self, path: str | os.PathLike[str]) -> None:
        """Load torchvision MobileNetV2 ImageNet weights from a local file into the body."""
        state = _read_state_dict(path, drop_prefixes=('classifier.',), strip_prefix='features.')
        try:
            self.features.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f'{path} does not match MobileNetV2 (width 1.0, 1280 last '
                             f'channels): {err}') from err

    def freeze_blocks(self, count: int) -> None:
        """Stop training the first ``count`` of the 19 ``features`` blocks (weights and BN).

        A trainer should also keep their BatchNorm layers in eval mode (``frozen_batchnorms``)
        so that a frozen block stays exactly the block it was.
        """
        if not 0 <= count <= len(self.features):
            raise ValueError(f'can freeze 0..{len(self.features)} blocks, got {count}')
        for block in list(self.features)[:count]:
            block.requires_grad_(False)

    def frozen_batchnorms(self, *, all_layers: bool) -> list[nn.BatchNorm2d]:
        """BatchNorm layers to keep in eval mode: all of them, or those of frozen blocks."""
        norms = []
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and (
                    all_layers or not module.weight.requires_grad):
                norms.append(module)
        return norms

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in, H, W) → five maps (B, C_k, H/2^k, W/2^k), k = 1..5."""
        x = self.stem(x)
        taps = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in MOBILENET_TAPS:
                taps.append(x)
        return taps


class ResNetEncoder(nn.Module):
    """A torchvision BasicBlock ResNet (18 = (2,2,2,2), 34 = (3,4,6,3)) with five taps.

    Taps: ReLU after the stem conv (64 @ 1/2), ``layer1`` (64 @ 1/4), ``layer2`` (128 @ 1/8),
    ``layer3`` (256 @ 1/16), ``layer4`` (512 @ 1/32). The classifier is dropped.

    Args:
        in_channels: input channels; other than 3 replaces the first conv.
        layers: blocks per stage.
        pretrained_path: optional local ImageNet weight file (3-channel input only).
    """

    channels = [64, 64, 128, 256, 512]

    def __init__(self, in_channels: int = 3, layers: Sequence[int] = (3, 4, 6, 3), *,
                 pretrained_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f'ResNet layers must be four positive block counts, got {layers}')
        net = ResNet(BasicBlock, list(layers))
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        if pretrained_path is not None:
            if in_channels != 3:
                raise ValueError('ImageNet weights need a 3-channel ResNet input')
            state = _read_state_dict(pretrained_path, drop_prefixes=('fc.',))
            try:
                self.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(f'{pretrained_path} does not match ResNet{list(layers)}: '
                                 f'{err}') from err

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in, H, W) → five maps (B, C_k, H/2^k, W/2^k), k = 1..5."""
        x1 = self.relu(self.bn1(self.conv1(x)))
        x2 = self.layer1(self.maxpool(x1))
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        x5 = self.layer4(x4)
        return [x1, x2, x3, x4, x5]
