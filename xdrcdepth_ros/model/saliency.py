"""Grad-CAM saliency for depth regression: autograd for any layer, closed form at the head.

Grad-CAM (Selvaraju et al., arXiv 1610.02391) adapted to dense depth as in XD-RCDepth's
explainability-aligned distillation (arXiv 2510.13565): the target scalar is the mean predicted
depth over a mask, y = Σ_p m_p D_p / Σ_p m_p (per image); for a layer A with channels A_c,
α_c = mean_q ∂y/∂A_c(q) and S = ReLU(Σ_c α_c A_c).

``closed_form_head_cam`` evaluates the same map at the input of a ``DepthHead`` without a
backward pass: with D = d_max·σ(z), z = w ⋆ A + b, the gradient is
∂y/∂A_c(q) = Σ_o w_{c,o} g(q − o), g = d_max σ(z)(1 − σ(z)) m / Σm, so α_c is a weighted sum of
k² window sums of g. It is ordinary tensor algebra and exports to ONNX inside the forward graph.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from xdrcdepth_ros.model.blocks import DepthHead
from xdrcdepth_ros.model.output import ModelOutput

HEAD_INPUT = 'head_input'


def _mask_like(depth: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Return a float (B, 1, H, W) mask broadcast from (H,W), (B,H,W) or (B,1,H,W)."""
    if mask is None:
        return torch.ones_like(depth)
    mask = mask.to(dtype=depth.dtype, device=depth.device)
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[-2:] != depth.shape[-2:]:
        raise ValueError(f'mask of shape {tuple(mask.shape)} does not fit depth of shape '
                         f'{tuple(depth.shape)}')
    return mask.expand_as(depth)


def saliency_target(depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image Grad-CAM target: mean of depth (B,1,H,W) over ``mask`` → (B,)."""
    m = _mask_like(depth, mask)
    return (depth * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)


def normalize_cam(cam: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each image's non-negative CAM (B,1,h,w) to [0, 1] by its maximum (differentiable).

    An all-zero map stays zero. ``eps`` only guards the division: Grad-CAM magnitudes scale
    with 1 / (h·w), so keep it far below the values (the default suits float32).
    """
    peak = cam.amax(dim=(1, 2, 3), keepdim=True)
    return cam / peak.clamp_min(eps)


def _layer_tensor(output: ModelOutput, layer: str) -> torch.Tensor:
    if layer == HEAD_INPUT:
        return output.head_input
    if layer not in output.features:
        raise ValueError(f'unknown Grad-CAM layer {layer!r}; choose one of '
                         f'{[*output.features, HEAD_INPUT]}')
    return output.features[layer]


def grad_cam(model: nn.Module, image: torch.Tensor, radar: torch.Tensor, layer: str,
             mask: torch.Tensor | None = None, create_graph: bool = False,
             output: ModelOutput | None = None) -> torch.Tensor:
    """Un-normalised Grad-CAM (B, 1, h, w) of ``layer`` for the mean-depth target.

    Args:
        model: any model of this package (``forward(image, radar) -> ModelOutput``).
        image: (B, 3, H, W) RGB in [0, 1].
        radar: (B, C, H, W) radar map.
        layer: a key of ``output.features`` ('1/16', '1/8', '1/4', '1/2', '1') or
            ``'head_input'``; h, w are that layer's size.
        mask: pixels the target averages over, (H, W), (B, H, W) or (B, 1, H, W); default all.
        create_graph: keep the graph of the gradient so the CAM is differentiable w.r.t. the
            model parameters (for a saliency-distillation loss).
        output: a ``ModelOutput`` already computed from (image, radar) with grad enabled, to
            reuse its graph instead of running the model again.

    Images are independent in eval mode; in train mode BatchNorm couples a batch, so α uses
    each image's own target but the batch statistics.
    """
    with torch.enable_grad():
        if output is None:
            # Inputs that require grad make sure a graph is recorded even when the model (or the
            # part before ``layer``) is frozen, as a KD teacher is; only ``layer`` gets gradients.
            if not image.requires_grad:
                image = image.detach().requires_grad_(True)
            if not radar.requires_grad:
                radar = radar.detach().requires_grad_(True)
            output = model(image, radar)
        activation = _layer_tensor(output, layer)
        if not activation.requires_grad:
            raise ValueError(f'layer {layer!r} has no autograd graph: run the model with '
                             'gradients enabled (not under no_grad/inference_mode)')
        target = saliency_target(output.depth, mask).sum()
        (grads,) = torch.autograd.grad(target, activation, create_graph=create_graph,
                                       retain_graph=True)
        if not create_graph:
            activation = activation.detach()
        alpha = grads.mean(dim=(2, 3), keepdim=True)
        return F.relu((alpha * activation).sum(dim=1, keepdim=True))


def closed_form_head_cam(head: DepthHead, head_input: torch.Tensor,
                         mask: torch.Tensor | None = None, *,
                         scale_free: bool = False,
                         prior: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM at the input of ``head`` (B, 1, H, W), analytic: no backward pass.

    Equals ``grad_cam(model, ..., layer='head_input', mask=mask)`` for the model owning
    ``head``. ``head`` must be a ``DepthHead`` (one k x k conv, stride 1, zero padding k // 2,
    then max_depth · sigmoid).

    With ``scale_free=True`` α_c is the spatial *sum* of the gradient instead of its mean: each
    image's map is multiplied by H·W, so ``normalize_cam`` gives the same result, but the values
    stay O(1) instead of O(1 / (H·W)) — safer in float16 engines. ``prior``: the logits the
    head adds before its sigmoid (``DepthHead.forward``), if any.
    """
    conv = head.conv
    k_h, k_w = conv.kernel_size
    if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
            or conv.padding != (k_h // 2, k_w // 2) or conv.padding_mode != 'zeros'):
        raise ValueError('closed_form_head_cam needs a stride-1, undilated, zero-padded '
                         '"same" convolution head')
    logits = conv(head_input) if prior is None else conv(head_input) + prior
    sig = torch.sigmoid(logits)
    m = _mask_like(logits, mask)
    # u·m ∝ ∂y/∂z per pixel (y = mean depth over the mask); averages only, so values stay O(1).
    um = (head.max_depth * sig * (1.0 - sig) * m)[:, 0]  # (B, H, W)
    mask_mean = m.mean(dim=(1, 2, 3)).clamp_min(1.0 / _pixels(um))  # Σm / (H·W)
    inv_h = 1.0 / torch.ones_like(um[:1, :, 0]).sum(dim=1)  # (1,) tensors: export stays dynamic
    inv_w = 1.0 / torch.ones_like(um[:1, 0, :]).sum(dim=1)
    pad_h, pad_w = k_h // 2, k_w // 2
    # window[b, i·k_w + j] = Σ_p u·m over p with p + (i - pad_h, j - pad_w) inside the image,
    # divided by H·W: a region mean times the region's share of the image.
    rows = []
    for i in range(k_h):
        dy = i - pad_h
        share = 1.0 - abs(dy) * inv_h
        rows.append(um[:, max(0, -dy):(-dy if dy > 0 else None), :].mean(dim=1) * share)
    windows = []
    for row in rows:
        for j in range(k_w):
            dx = j - pad_w
            share = 1.0 - abs(dx) * inv_w
            windows.append(row[:, max(0, -dx):(-dx if dx > 0 else None)].mean(dim=1) * share)
    window = torch.stack(windows, dim=1) / mask_mean[:, None]  # (B, k_h * k_w)
    weight = conv.weight[0].reshape(conv.weight.shape[1], k_h * k_w)  # (C, k_h * k_w)
    alpha = window @ weight.t()  # (B, C): H·W times Grad-CAM's α
    if not scale_free:
        alpha = alpha / _pixels(um)
    # Σ_c α_c A_c as one (1, C) @ (C, H·W) product per image: a single pass over A (a multiply
    # then a channel sum reads it, writes a same-size product and reads that again).
    cam = torch.matmul(alpha[:, None, :], head_input.flatten(2))
    return F.relu(cam.unflatten(2, head_input.shape[2:]))


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """H·W of a (B, H, W) tensor as a tensor (keeps exported graphs shape-dynamic)."""
    return torch.ones_like(x[:1]).sum()
