"""Building blocks shared by the student, the teacher and the LiRCDepth reference.

* ``FiLM``: feature-wise linear modulation of image features by radar features, as used for
  camera-radar fusion in XD-RCDepth (Sun et al., arXiv 2510.13565): γ = Conv1x1(f_r),
  β = Conv1x1(f_r), f = (1 + γ) ⊙ f_i + β.
* ``PointwiseDASPP``: a parameter-light dense ASPP (DenseASPP / BTS, Lee et al. arXiv 1907.10326)
  where each branch is a 1x1 (point-wise) reduction followed by a depthwise dilated 3x3.
* ``DenseASPP``: the BTS-style dense ASPP with full 3x3 dilated convolutions (teacher).
* ``UpConv``, ``ConvBNAct``, ``DepthHead``, ``ImageNormalize``: small decoder pieces.
* ``RowPrior``: a per-row depth profile the depth heads refine (geometry that transfers).

All tensors are NCHW float. Depth maps are in metres.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
from torch import nn
import torch.nn.functional as F

# torchvision's ImageNet statistics (RGB, inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DASPP_RATES = (3, 6, 12, 18, 24)


class FiLMMode(str, Enum):
    """Where the FiLM coefficients live."""

    CHANNEL = 'channel'  #: γ, β of shape (B, C, 1, 1) from globally pooled radar features (paper)
    SPATIAL = 'spatial'  #: γ, β of shape (B, C, h, w): radar keeps its pixel positions


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) → BatchNorm2d → activation; ``padding`` keeps the size at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *,
                 stride: int = 1, dilation: int = 1, groups: int = 1,
                 act_layer: type[nn.Module] | None = nn.ReLU) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels)]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)


class ImageNormalize(nn.Module):
    """Maps an RGB image in [0, 1] to ImageNet-normalised values.

    The statistics are non-persistent buffers, so checkpoints do not carry them and an exported
    ONNX graph takes raw ``(B, 3, H, W)`` RGB in [0, 1].
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] → (B, 3, H, W) normalised."""
        return (image - self.mean) / self.std


class FiLM(nn.Module):
    """Radar-conditioned FiLM: ``f = (1 + γ) ⊙ f_image + β`` with γ, β = Conv1x1(f_radar).

    In ``FiLMMode.CHANNEL`` (the paper's form) the radar features are average-pooled first, so
    γ, β are (B, C, 1, 1); in ``FiLMMode.SPATIAL`` they are full (B, C, h, w) maps. Both convs
    start at zero, so an untrained block passes the image features through unchanged.

    Args:
        image_channels: C of the image features (and of γ, β).
        radar_channels: channels of the radar features at the same scale.
        mode: ``'channel'`` or ``'spatial'``.
    """

    def __init__(self, image_channels: int, radar_channels: int,
                 mode: FiLMMode | str = FiLMMode.CHANNEL) -> None:
        super().__init__()
        try:
            self.mode = FiLMMode(mode)
        except ValueError:
            raise ValueError(f'unknown FiLM mode {mode!r}; choose one of '
                             f'{[m.value for m in FiLMMode]}') from None
        self.gamma = nn.Conv2d(radar_channels, image_channels, 1)
        self.beta = nn.Conv2d(radar_channels, image_channels, 1)
        for conv in (self.gamma, self.beta):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, image_feat: torch.Tensor, radar_feat: torch.Tensor) -> torch.Tensor:
        """image_feat (B, C, h, w), radar_feat (B, R, h, w) → fused (B, C, h, w)."""
        if self.mode is FiLMMode.CHANNEL:
            radar_feat = radar_feat.mean(dim=(2, 3), keepdim=True)
        return (1.0 + self.gamma(radar_feat)) * image_feat + self.beta(radar_feat)


class PointwiseDASPP(nn.Module):
    """Dense ASPP whose branches are point-wise 1x1 reductions + depthwise dilated 3x3 convs.

    Branch i sees the block input concatenated with the outputs of branches 0..i-1 (dense
    connections), so the receptive field grows with the sum of the rates: with the default
    rates 3/6/12/18/24 an output pixel sees ±63 pixels. A final 1x1 fuses the input and all
    branch outputs to ``out_channels``.

    Args:
        in_channels: input channels.
        branch_channels: channels each branch adds.
        out_channels: output channels.
        rates: dilation rates, in branch order.
    """

    def __init__(self, in_channels: int, branch_channels: int, out_channels: int,
                 rates: Sequence[int] = DEFAULT_DASPP_RATES) -> None:
        super().__init__()
        if not rates:
            raise ValueError('PointwiseDASPP needs at least one dilation rate')
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList()
        channels = in_channels
        for rate in self.rates:
            self.branches.append(nn.Sequential(
                ConvBNAct(channels, branch_channels, 1),
                ConvBNAct(branch_channels, branch_channels, 3, dilation=rate,
                          groups=branch_channels)))
            channels += branch_channels
        self.fuse = ConvBNAct(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → (B, out, h, w)."""
        feats = [x]
        for branch in self.branches:
            feats.append(branch(torch.cat(feats, dim=1)))
        return self.fuse(torch.cat(feats, dim=1))


class DenseASPP(nn.Module):
    """BTS-style dense ASPP with full dilated 3x3 convolutions (used by the teacher).

    Same dense wiring as ``PointwiseDASPP``; each branch is a full 3x3 dilated conv with ELU.
    """

    def __init__(self, in_channels: int, branch_channels: int, out_channels: int,
                 rates: Sequence[int] = DEFAULT_DASPP_RATES) -> None:
        super().__init__()
        if not rates:
            raise ValueError('DenseASPP needs at least one dilation rate')
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList()
        channels = in_channels
        for rate in self.rates:
            self.branches.append(ConvBNAct(channels, branch_channels, 3, dilation=rate,
                                           act_layer=nn.ELU))
            channels += branch_channels
        self.fuse = ConvBNAct(channels, out_channels, 3, act_layer=nn.ELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → (B, out, h, w)."""
        feats = [x]
        for branch in self.branches:
            feats.append(branch(torch.cat(feats, dim=1)))
        return self.fuse(torch.cat(feats, dim=1))


class UpConv(nn.Module):
    """×2 nearest upsampling followed by a 3x3 ConvBNAct (BTS 'upconv')."""

    def __init__(self, in_channels: int, out_channels: int,
                 act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_channels, out_channels, 3, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) → (B, out, 2h, 2w)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class DepthHead(nn.Module):
    """``depth = max_depth · sigmoid(conv(x))``: a single k x k convolution to one channel.

    Kept this simple on purpose: the gradient of the depth w.r.t. the head input is analytic,
    which is what ``saliency.closed_form_head_cam`` relies on (stride 1, zero padding k // 2).

    Args:
        in_channels: channels of the head input.
        max_depth: upper bound of the output in metres.
        kernel_size: odd kernel size of the convolution.
        bias: whether the convolution has a bias.
    """

    def __init__(self, in_channels: int, max_depth: float, kernel_size: int = 3,
                 bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f'DepthHead kernel_size must be odd, got {kernel_size}')
        if not max_depth > 0:
            raise ValueError(f'max_depth must be positive (metres), got {max_depth}')
        self.max_depth = float(max_depth)
        self.conv = nn.Conv2d(in_channels, 1, kernel_size, padding=kernel_size // 2, bias=bias)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → pre-sigmoid logits (B, 1, h, w)."""
        return self.conv(x)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, h, w) → depth (B, 1, h, w) in metres, in (0, max_depth).

        ``prior``: logits added before the sigmoid (broadcast to (B, 1, h, w)), e.g. a
        :class:`RowPrior`, so the convolution learns a correction to it.
        """
        logits = self.conv(x)
        return self.max_depth * torch.sigmoid(logits if prior is None else logits + prior)

    def zero_(self) -> None:
        """Zero the convolution: the head then outputs exactly its prior until trained."""
        nn.init.zeros_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)


class RowPrior(nn.Module):
    """A per-image-row depth profile, as pre-sigmoid logits of a ``DepthHead``.

    In a forward-looking camera the row alone says much of the depth (the road below the
    horizon, far above it), and that geometry is what carries from synthetic scenes to real
    roads. Heads that add these logits learn a correction to the profile instead of the whole
    depth. The profile (``depth``, metres, one value per row of the training frame) is a
    persistent buffer, fitted by the trainer on the training split; for another input height
    it is resampled linearly over the normalised row.

    Args:
        rows: number of rows of the stored profile.
        max_depth: the heads' max_depth, m.
    """

    def __init__(self, rows: int, max_depth: float) -> None:
        super().__init__()
        if rows < 2:
            raise ValueError(f'a row prior needs at least 2 rows, got {rows}')
        self.max_depth = float(max_depth)
        self.register_buffer('depth', torch.full((rows,), self.max_depth / 2))

    def set_profile(self, depth_m: Sequence[float] | torch.Tensor) -> None:
        """Store a (rows,) profile in metres; values are clamped into (0, max_depth)."""
        depth = torch.as_tensor(depth_m, dtype=torch.float32).flatten()
        if depth.shape != self.depth.shape:
            raise ValueError(f'row prior has {self.depth.numel()} rows, got a profile of '
                             f'{depth.numel()}')
        if not bool(torch.isfinite(depth).all()):
            raise ValueError('row prior profile holds non-finite depths')
        self.depth.copy_(depth.clamp(1e-3 * self.max_depth, 0.999 * self.max_depth))

    def forward(self, height: int) -> torch.Tensor:
        """(1, 1, height, 1) logits of the profile resampled to ``height`` rows."""
        p = (self.depth / self.max_depth).clamp(1e-4, 1 - 1e-4)
        logits = torch.log(p) - torch.log1p(-p)
        if height != logits.numel():
            logits = F.interpolate(logits[None, None], size=height, mode='linear',
                                   align_corners=False)[0, 0]
        return logits.view(1, 1, height, 1)


def upsample_to(x: torch.Tensor, factor: int, mode: str = 'bilinear') -> torch.Tensor:
    """Upsample (B, C, h, w) by an integer ``factor`` (bilinear, align_corners=False)."""
    if factor == 1:
        return x
    if mode == 'nearest':
        return F.interpolate(x, scale_factor=float(factor), mode='nearest')
    return F.interpolate(x, scale_factor=float(factor), mode=mode, align_corners=False)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())
