"""The BTS-style decoder pass shared by the XD-RCDepth student and the CaFNet-style teacher.

Both models own the same decoder attributes (``up5``…``up1``, ``iconv5``…``iconv1``, ``daspp``,
``head8``/``head4``/``head2``, ``head``) with different widths and layers, so one function runs
the pass for both and the KD feature keys stay identical by construction.
"""
from __future__ import annotations

import torch
from torch import nn

from xdrcdepth_ros.model.blocks import upsample_to
from xdrcdepth_ros.model.output import ModelOutput


def decode(model: nn.Module, s2: torch.Tensor, s4: torch.Tensor, s8: torch.Tensor,
           s16: torch.Tensor, s32: torch.Tensor) -> ModelOutput:
    """Decode fused skips at 1/2 … 1/32 into depth, intermediate depths and named features.

    Intermediate depth heads at 1/8, 1/4 and 1/2 feed (as depth / max_depth) the next stage,
    as BTS's LPG outputs do; they are returned upsampled to full resolution, in metres. A
    model with a ``row_prior`` (``RowPrior``) adds its logits to every depth head.
    """
    inv = 1.0 / model.max_depth
    row_prior = getattr(model, 'row_prior', None)
    full_h = s2.shape[2] * 2

    def prior(scale: int) -> torch.Tensor | None:
        return None if row_prior is None else row_prior(full_h // scale)

    f16 = model.iconv5(torch.cat([model.up5(s32), s16], dim=1))
    f8 = model.daspp(model.iconv4(torch.cat([model.up4(f16), s8], dim=1)))
    d8 = model.head8(f8, prior(8))
    f4 = model.iconv3(torch.cat([model.up3(f8), s4, upsample_to(d8, 2) * inv], dim=1))
    d4 = model.head4(f4, prior(4))
    f2 = model.iconv2(torch.cat([model.up2(f4), s2, upsample_to(d4, 2) * inv], dim=1))
    d2 = model.head2(f2, prior(2))
    d8_full, d4_full, d2_full = upsample_to(d8, 8), upsample_to(d4, 4), upsample_to(d2, 2)
    f1 = model.iconv1(torch.cat(
        [model.up1(f2), d8_full * inv, d4_full * inv, d2_full * inv], dim=1))
    depth = model.head(f1, prior(1))
    features = {'1/16': f16, '1/8': f8, '1/4': f4, '1/2': f2, '1': f1}
    return ModelOutput(depth, [d8_full, d4_full, d2_full], features, f1)
