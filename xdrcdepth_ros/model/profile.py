"""Parameter and MAC counts of the model variants, measured without running real arithmetic.

MACs come from ``torch.utils.flop_counter`` (FLOPs / 2; convolutions, matmuls and transposed
convs — elementwise ops and interpolation are not counted) on the ``meta`` device, so even the
~60 M-parameter teacher at 896x1600 costs no compute or memory.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from xdrcdepth_ros.model.output import SIZE_MULTIPLE
from xdrcdepth_ros.model.registry import create_model

#: Sizes reported by default: the paper's training crop and the nuScenes test size (H, W).
DEFAULT_SIZES = ((352, 704), (896, 1600))
#: Report key → variant name, as printed by ``xdrcdepth model-info``.
REPORT_MODELS = {'student': 'xdrcdepth', 'lircdepth': 'lircdepth', 'teacher': 'cafnet_teacher'}
EXTRA_MODELS = {'student_tiny': 'xdrcdepth_tiny', 'teacher_small': 'cafnet_teacher_small'}


def size_key(height: int, width: int) -> str:
    """'HxW' label of an input size in pixels."""
    return f'{height}x{width}'


def count_macs(model: torch.nn.Module, height: int, width: int, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass at (batch, H, W); runs on the ``meta`` device."""
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(f'size {height}x{width} is not a multiple of {SIZE_MULTIPLE}')
    channels = int(getattr(model, 'radar_channels', 4))
    image = torch.empty(batch, 3, height, width, device='meta')
    radar = torch.empty(batch, channels, height, width, device='meta')
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.to('meta')(image, radar)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def variant_profile(name: str, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
                    **kwargs: Any) -> dict[str, Any]:
    """``{'variant', 'params', 'macs': {'HxW': MACs}}`` of variant ``name`` at batch 1."""
    with torch.device('meta'):
        model = create_model(name, **kwargs)
    params = sum(p.numel() for p in model.parameters())
    macs = {size_key(h, w): count_macs(model, h, w) for h, w in sizes}
    return {'variant': name, 'params': int(params), 'macs': macs}


def model_report(sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
                 include_extra: bool = False) -> dict[str, Any]:
    """The ``model-info --json`` document: params/MACs per model, student/LiRCDepth ratio."""
    names = dict(REPORT_MODELS)
    if include_extra:
        names.update(EXTRA_MODELS)
    models = {key: variant_profile(name, sizes) for key, name in names.items()}
    ratio = models['student']['params'] / models['lircdepth']['params']
    return {'models': models, 'student_to_lircdepth_params': ratio}
