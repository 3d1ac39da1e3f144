"""Teacher -> student distillation terms for one batch: Grad-CAM saliency KD and bin-KL KD."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from xdrcdepth_ros.train import losses
from xdrcdepth_ros.train.config import KDConfig


def _target(depth: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Grad-CAM target: the mean predicted depth (over ``mask``) summed over images, so each
    image's gradient is that of its own mean."""
    if mask is None:
        return depth.flatten(1).mean(1).sum()
    m = mask.to(depth.dtype)
    return ((depth * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1.0)).sum()


def grad_cams(output: Any, layers: Sequence[str], *, mask: torch.Tensor | None = None,
              create_graph: bool = False) -> list[torch.Tensor]:
    """Grad-CAM maps of a model output at several feature scales, in one backward pass.

    ``S = ReLU(sum_c alpha_c A_c)`` with ``alpha_c`` the spatial mean of d(target)/dA_c, where
    the target is each image's mean predicted depth. With ``create_graph=False`` alpha is a
    constant and the map is differentiable through A only (first-order, about half the cost of
    the exact ``create_graph=True`` second-order version).

    Args:
        output: a ``ModelOutput`` computed with grad enabled (``.depth``, ``.features``).
        layers: keys of ``output.features`` such as '1/8', '1/4'.
        mask: optional (B, 1, H, W) pixels whose depth defines the target.
    Returns:
        One (B, 1, h, w) non-negative map per layer (not normalised).
    """
    feats = [output.features[name] for name in layers]
    grads = torch.autograd.grad(_target(output.depth, mask), feats, retain_graph=True,
                                create_graph=create_graph)
    cams = []
    for a, g in zip(feats, grads):
        alpha = g.mean(dim=(2, 3), keepdim=True)
        cams.append(torch.relu((alpha * a).sum(1, keepdim=True)))
    return cams


class Distiller:
    """Holds a frozen teacher and computes the enabled KD terms for a student output."""

    def __init__(self, teacher: torch.nn.Module, cfg: KDConfig) -> None:
        self.teacher = teacher.eval()
        # Parameters keep requires_grad so Grad-CAM can differentiate through the teacher's
        # features; autograd.grad never accumulates into them and no optimiser holds them.
        self.cfg = cfg
        self.centers = losses.depth_bin_centers(cfg.num_bins, cfg.min_depth, cfg.max_depth,
                                                cfg.bin_spacing)

    def teacher_forward(self, image: torch.Tensor, radar: torch.Tensor,
                        want_saliency: bool) -> tuple[Any, list[torch.Tensor] | None]:
        """Teacher output (detached depths) and, when asked, its Grad-CAM maps (detached)."""
        if not want_saliency:
            with torch.no_grad():
                return self.teacher(image, radar), None
        with torch.enable_grad():
            out = self.teacher(image, radar)
            cams = grad_cams(out, self.cfg.saliency_layers)
        return out, [c.detach() for c in cams]

    def __call__(self, student_out: Any, batch: dict[str, torch.Tensor],
                 step: int) -> dict[str, torch.Tensor]:
        """KD losses (already weighted) for this step, keyed 'saliency_kd', 'distribution_kd'."""
        cfg = self.cfg
        want_sal = cfg.saliency_weight > 0 and step % cfg.saliency_every == 0
        t_out, t_cams = self.teacher_forward(batch['image'], batch['radar'], want_sal)
        terms: dict[str, torch.Tensor] = {}
        if want_sal:
            s_cams = grad_cams(student_out, cfg.saliency_layers,
                               create_graph=cfg.saliency_second_order)
            terms['saliency_kd'] = cfg.saliency_weight * losses.saliency_distillation_loss(
                s_cams, t_cams, mode=cfg.saliency_mode)
        if cfg.distribution_weight > 0:
            t_depth = t_out.depth.detach().float()
            mask = None
            if cfg.distribution_mask == 'all':
                mask = torch.ones_like(t_depth, dtype=torch.bool)
            elif cfg.distribution_mask == 'no_gt':
                has_gt = (batch['gt_sparse'] > losses.VALID_DEPTH_M) \
                    | (batch['gt_dense'] > losses.VALID_DEPTH_M)
                mask = ~has_gt
            term = losses.distribution_distillation_loss(
                student_out.depth.float(), t_depth, self.centers, tau=cfg.tau, mask=mask,
                tau_squared=cfg.tau_squared)
            if cfg.intermediate_distribution and student_out.intermediate:
                term = term + losses.intermediate_distribution_loss(
                    [d.float() for d in student_out.intermediate],
                    [d.detach().float() for d in t_out.intermediate], self.centers,
                    tau=cfg.tau, tau_squared=cfg.tau_squared)
            terms['distribution_kd'] = cfg.distribution_weight * term
        return terms
