"""The output record every model returns, and the input checks every model runs."""
from __future__ import annotations

from typing import NamedTuple

import torch

#: Keys of ``ModelOutput.features``, coarse to fine; the same for every model so that saliency
#: distillation can pair teacher and student scales.
FEATURE_KEYS = ('1/16', '1/8', '1/4', '1/2', '1')
#: Stride of each key relative to the input.
FEATURE_STRIDES = {'1/16': 16, '1/8': 8, '1/4': 4, '1/2': 2, '1': 1}
#: Input height and width must be multiples of this (five stride-2 stages).
SIZE_MULTIPLE = 32


class ModelOutput(NamedTuple):
    """What ``forward(image, radar)`` returns.

    Attributes:
        depth: (B, 1, H, W) metres in (0, max_depth].
        intermediate: three (B, 1, H, W) metre maps from the 1/8, 1/4 and 1/2 decoder stages,
            upsampled to full resolution, in that order.
        features: decoder features keyed ``'1/16', '1/8', '1/4', '1/2', '1'`` (B, C_k, H/s, W/s).
        head_input: (B, C, H, W) tensor entering the final depth head (same as features['1']).
    """

    depth: torch.Tensor
    intermediate: list[torch.Tensor]
    features: dict[str, torch.Tensor]
    head_input: torch.Tensor


def check_inputs(image: torch.Tensor, radar: torch.Tensor, radar_channels: int) -> None:
    """Raise ``ValueError`` unless image (B,3,H,W) and radar (B,C,H,W) fit a model.

    H and W must be equal for both and multiples of 32. Skipped while tracing for export,
    where shapes are symbolic.
    """
    if torch.jit.is_tracing():
        return
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f'image must be (B, 3, H, W) RGB, got shape {tuple(image.shape)}')
    if radar.ndim != 4 or radar.shape[1] != radar_channels:
        raise ValueError(f'radar must be (B, {radar_channels}, H, W), got shape '
                         f'{tuple(radar.shape)}')
    if image.shape[0] != radar.shape[0] or image.shape[2:] != radar.shape[2:]:
        raise ValueError(f'image {tuple(image.shape)} and radar {tuple(radar.shape)} differ in '
                         'batch size or spatial size')
    height, width = int(image.shape[2]), int(image.shape[3])
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or height == 0 or width == 0:
        raise ValueError(f'input size {height}x{width} (HxW) is not a positive multiple of '
                         f'{SIZE_MULTIPLE}; resize or crop, e.g. 900x1600 -> 896x1600')
