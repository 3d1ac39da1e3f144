"""Training losses: supervised depth, edge-aware smoothness, saliency KD and depth-distribution KD.

Every function works on batched tensors in metres, ``(B, 1, H, W)`` unless stated otherwise, and
reduces *per image first, then over the images of the batch*, so one image with many valid pixels
does not outweigh the others (the paper family's code summed weights across the batch; see
paper_spec.md section 8.4). Images without a single valid pixel contribute nothing; a batch where
no image has one returns a zero that is still connected to the graph.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

VALID_DEPTH_M = 0.01  # GT below this is "no return" (GT maps store 0 for missing pixels)


def _zero_like(tensor: torch.Tensor) -> torch.Tensor:
    """A zero that keeps ``tensor`` in the graph, so ``backward`` works on empty batches."""
    return tensor.sum() * 0.0


def _check_depth(name: str, tensor: torch.Tensor) -> None:
    if tensor.dim() != 4 or tensor.shape[1] != 1:
        raise ValueError(f'{name} must have shape (B, 1, H, W), got {tuple(tensor.shape)}')


def _per_image_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``values`` per image, averaged over images whose weight sum is > 0.

    Args:
        values: (B, ...) per-pixel values.
        weights: (B, ...) non-negative weights (0 outside the mask), same shape as ``values``.
    """
    num = (values * weights).flatten(1).sum(1)
    den = weights.flatten(1).sum(1)
    has = den > 0
    if not bool(has.any()):
        return _zero_like(values)
    return (num[has] / den[has]).mean()


def masked_l1(pred: torch.Tensor, gt: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error per image over ``mask`` (default ``gt > 0.01``), then over images.

    Args:
        pred: (B, 1, H, W) predicted depth, m.
        gt: (B, 1, H, W) ground-truth depth, m, 0 = none.
        mask: optional (B, 1, H, W) bool mask of pixels to use.
    """
    _check_depth('pred', pred)
    if gt.shape != pred.shape:
        raise ValueError(f'gt shape {tuple(gt.shape)} != pred shape {tuple(pred.shape)}')
    if mask is None:
        mask = gt > VALID_DEPTH_M
    return _per_image_mean((pred - gt).abs(), mask.to(pred.dtype))


def _relative_error_weight(pred: torch.Tensor, gt: torch.Tensor,
                           mask: torch.Tensor) -> torch.Tensor:
    """u = 1 - exp(-5 |gt - pred| / (gt + pred)) inside ``mask``, 1 outside (grows with error)."""
    rel = (gt - pred).abs() / (gt + pred + 1e-7)
    return 1.0 - torch.exp(-5.0 * rel) * mask.to(pred.dtype)


def depth_loss(pred: torch.Tensor, gt_dense: torch.Tensor | None, gt_sparse: torch.Tensor | None,
               *, rectified: bool = True, dense_weight: float = 1.0,
               sparse_weight: float = 1.0) -> torch.Tensor:
    """Supervised L1 against dense (interpolated) and single-scan LiDAR GT.

    The sparse mask is ``gt_sparse > 0.01``; the dense mask is ``gt_dense > 0.01`` *minus* the
    sparse pixels, so each pixel is supervised once. With ``rectified`` the pixels are weighted
    as in LiRCDepth's uncertainty-rectified loss: per pixel, ``[w_d, w_s] = softmax([u_d, u_s])``
    with ``u = 1 - exp(-5 |gt - pred| / (gt + pred))`` (1 outside its mask), so a pixel with a
    larger relative error weighs more. The weights are detached (they re-weight, they are not a
    target) and normalised per image: each term is ``sum(w M |pred - gt|) / sum(w M)`` per image,
    averaged over the images that have pixels of that kind.

    Args:
        pred: (B, 1, H, W) predicted depth, m.
        gt_dense: (B, 1, H, W) dense GT, m, 0 = none; or None.
        gt_sparse: (B, 1, H, W) single-scan LiDAR GT, m, 0 = none; or None.
        rectified: use the relative-error weights (else plain masked L1 per image).
        dense_weight: multiplier of the dense term.
        sparse_weight: multiplier of the sparse term.
    Returns:
        Scalar loss, m.
    """
    _check_depth('pred', pred)
    if gt_dense is None and gt_sparse is None:
        raise ValueError('depth_loss needs at least one of gt_dense and gt_sparse')
    zeros = torch.zeros_like(pred)
    gt_s = zeros if gt_sparse is None else gt_sparse
    gt_d = zeros if gt_dense is None else gt_dense
    for name, gt in (('gt_sparse', gt_s), ('gt_dense', gt_d)):
        if gt.shape != pred.shape:
            raise ValueError(f'{name} shape {tuple(gt.shape)} != pred shape {tuple(pred.shape)}')
    m_s = gt_s > VALID_DEPTH_M
    m_d = (gt_d > VALID_DEPTH_M) & ~m_s
    if rectified:
        with torch.no_grad():
            u = torch.stack([_relative_error_weight(pred, gt_d, m_d),
                             _relative_error_weight(pred, gt_s, m_s)], dim=0)
            w = torch.softmax(u, dim=0)
        w_d, w_s = w[0] * m_d, w[1] * m_s
    else:
        w_d, w_s = m_d.to(pred.dtype), m_s.to(pred.dtype)
    loss = _zero_like(pred)
    if gt_dense is not None:
        loss = loss + dense_weight * _per_image_mean((pred - gt_d).abs(), w_d)
    if gt_sparse is not None:
        loss = loss + sparse_weight * _per_image_mean((pred - gt_s).abs(), w_s)
    return loss


def sky_loss(pred: torch.Tensor, gt_dense: torch.Tensor, far_m: float) -> torch.Tensor:
    """Hinge that pushes sky pixels to at least ``far_m``: mean of ``relu(far_m - pred)``, m.

    LiDAR has no returns from the sky, so sparse supervision leaves it free and a model may
    paint it near. A renderer knows where the sky is: for synthetic samples, whose dense GT
    covers every surface, the sky is where ``gt_dense`` is 0. Only for such data (the trainer
    checks the dataset). Averaged per image over its sky pixels, then over images with sky.

    Args:
        pred: (B, 1, H, W) predicted depth, m.
        gt_dense: (B, 1, H, W) dense GT covering every surface, m, 0 = sky.
        far_m: the depth the sky must reach, m.
    """
    _check_depth('pred', pred)
    if gt_dense.shape != pred.shape:
        raise ValueError(f'gt_dense shape {tuple(gt_dense.shape)} != pred shape '
                         f'{tuple(pred.shape)}')
    if not far_m > 0:
        raise ValueError(f'far_m must be positive, got {far_m}')
    sky = (gt_dense <= VALID_DEPTH_M).to(pred.dtype)
    return _per_image_mean(F.relu(far_m - pred), sky)


def smoothness_loss(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness: mean(exp(-mean_c|dI/dx|) |dD/dx|) + the same along y.

    Args:
        depth: (B, 1, H, W) depth, m.
        image: (B, 3, H, W) image (any fixed scale, e.g. RGB in [0, 1]).
    """
    _check_depth('depth', depth)
    if image.dim() != 4 or image.shape[0] != depth.shape[0] or image.shape[2:] != depth.shape[2:]:
        raise ValueError(f'image shape {tuple(image.shape)} does not match depth '
                         f'{tuple(depth.shape)}')
    dx_d = (depth[..., :, 1:] - depth[..., :, :-1]).abs()
    dy_d = (depth[..., 1:, :] - depth[..., :-1, :]).abs()
    dx_i = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    dy_i = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (torch.exp(-dx_i) * dx_d).mean() + (torch.exp(-dy_i) * dy_d).mean()


def normalize_saliency(cam: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min-max normalise each map of a (B, 1, h, w) saliency batch to [0, 1] (flat map -> 0)."""
    flat = cam.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo + eps)).view_as(cam)


def saliency_distillation_loss(student_cams: Sequence[torch.Tensor] | torch.Tensor,
                               teacher_cams: Sequence[torch.Tensor] | torch.Tensor,
                               *, mode: str = 'l1',
                               scale_weights: Sequence[float] | None = None) -> torch.Tensor:
    """Explainability-aligned distillation: pull the student's Grad-CAM toward the teacher's.

    Each pair of maps comes from corresponding decoder scales. Both maps are min-max normalised
    per image (the teacher map is detached); the student map is bilinearly resized to the
    teacher's size when they differ. The distance is the per-image mean L1 (``mode='l1'``) or
    ``1 - cosine`` between the flattened maps (``mode='cosine'``), averaged over images, then
    summed over scales with ``scale_weights`` (default 1 each) and divided by their sum.

    Args:
        student_cams: (B, 1, h, w) map or a sequence of them (one per scale).
        teacher_cams: the teacher's maps at the same scales.
        mode: 'l1' or 'cosine'.
        scale_weights: one non-negative weight per scale.
    """
    if isinstance(student_cams, torch.Tensor):
        student_cams = [student_cams]
    if isinstance(teacher_cams, torch.Tensor):
        teacher_cams = [teacher_cams]
    if len(student_cams) != len(teacher_cams) or not student_cams:
        raise ValueError(f'need the same non-zero number of student and teacher maps, got '
                         f'{len(student_cams)} and {len(teacher_cams)}')
    if mode not in ('l1', 'cosine'):
        raise ValueError(f"saliency mode must be 'l1' or 'cosine', got {mode!r}")
    weights = list(scale_weights) if scale_weights is not None else [1.0] * len(student_cams)
    if len(weights) != len(student_cams) or sum(weights) <= 0:
        raise ValueError(f'scale_weights {weights} must have one positive-sum weight per scale')
    total = _zero_like(student_cams[0])
    for w, s, t in zip(weights, student_cams, teacher_cams):
        _check_depth('student cam', s)
        _check_depth('teacher cam', t)
        if s.shape[2:] != t.shape[2:]:
            s = F.interpolate(s, size=t.shape[2:], mode='bilinear', align_corners=False)
        s = normalize_saliency(s).flatten(1)
        t = normalize_saliency(t.detach()).flatten(1)
        if mode == 'l1':
            per_image = (s - t).abs().mean(1)
        else:
            per_image = 1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)
        total = total + w * per_image.mean()
    return total / sum(weights)


def depth_bin_centers(num_bins: int, min_depth: float, max_depth: float,
                      spacing: str = 'uniform') -> torch.Tensor:
    """Centres of ``num_bins`` depth bins covering [min_depth, max_depth] m.

    ``'uniform'``: equal widths. ``'sid'`` (spacing-increasing discretisation, DORN): edges
    ``exp(log(a) + i/K log(b/a))``, so bins widen with depth as the sensors' errors do.

    Returns:
        (K,) float32 centres, m, increasing.
    """
    if num_bins < 2:
        raise ValueError(f'num_bins must be >= 2, got {num_bins}')
    if not 0 < min_depth < max_depth:
        raise ValueError(f'need 0 < min_depth < max_depth, got {min_depth}, {max_depth}')
    i = torch.arange(num_bins + 1, dtype=torch.float64)
    if spacing == 'uniform':
        edges = min_depth + (max_depth - min_depth) * i / num_bins
    elif spacing == 'sid':
        edges = torch.exp(math.log(min_depth) + i / num_bins * math.log(max_depth / min_depth))
    else:
        raise ValueError(f"bin spacing must be 'uniform' or 'sid', got {spacing!r}")
    return (0.5 * (edges[:-1] + edges[1:])).float()


def depth_log_distribution(depth: torch.Tensor, centers: torch.Tensor,
                           tau: float) -> torch.Tensor:
    """Log of the soft bin distribution p_k = softmax_k(-|d - c_k| / tau) of each pixel.

    Args:
        depth: (B, 1, H, W) depth, m.
        centers: (K,) bin centres, m.
        tau: temperature, m (smaller = sharper).
    Returns:
        (B, K, H, W) log-probabilities.
    """
    if tau <= 0:
        raise ValueError(f'tau must be > 0, got {tau}')
    logits = -(depth - centers.to(depth).view(1, -1, 1, 1)).abs() / tau
    return torch.log_softmax(logits, dim=1)


def distribution_distillation_loss(student_depth: torch.Tensor, teacher_depth: torch.Tensor,
                                   centers: torch.Tensor, *, tau: float = 1.0,
                                   mask: torch.Tensor | None = None,
                                   tau_squared: bool = True) -> torch.Tensor:
    """Depth-distribution distillation: KL(p_teacher || p_student) per pixel.

    The KL is averaged per image over ``mask`` (default: every pixel where the teacher predicts
    more than 0.01 m), then over images, and multiplied by ``tau**2`` when ``tau_squared`` (the
    usual KD scaling that keeps gradient size independent of tau).

    Args:
        student_depth: (B, 1, H, W) student depth, m.
        teacher_depth: (B, 1, H, W) teacher depth, m (detached here).
        centers: (K,) bin centres, m (see ``depth_bin_centers``).
        tau: temperature, m.
        mask: optional (B, 1, H, W) bool mask.
        tau_squared: multiply by tau**2.
    """
    _check_depth('student_depth', student_depth)
    if teacher_depth.shape != student_depth.shape:
        raise ValueError(f'teacher depth shape {tuple(teacher_depth.shape)} != student '
                         f'{tuple(student_depth.shape)}')
    teacher_depth = teacher_depth.detach()
    if mask is None:
        mask = teacher_depth > VALID_DEPTH_M
    log_p_t = depth_log_distribution(teacher_depth, centers, tau)
    log_p_s = depth_log_distribution(student_depth, centers, tau)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1, keepdim=True)
    loss = _per_image_mean(kl, mask.to(kl.dtype))
    return loss * (tau * tau) if tau_squared else loss


def intermediate_distribution_loss(student_depths: Sequence[torch.Tensor],
                                   teacher_depths: Sequence[torch.Tensor],
                                   centers: torch.Tensor, *, tau: float = 1.0,
                                   tau_squared: bool = True) -> torch.Tensor:
    """Distribution KD on intermediate depth maps, pairwise, averaged over the pairs.

    Maps of different sizes are compared at the teacher's size (student resized bilinearly).
    """
    if len(student_depths) != len(teacher_depths) or not student_depths:
        raise ValueError('need the same non-zero number of student and teacher intermediate maps')
    total = _zero_like(student_depths[0])
    for s, t in zip(student_depths, teacher_depths):
        if s.shape[2:] != t.shape[2:]:
            s = F.interpolate(s, size=t.shape[2:], mode='bilinear', align_corners=False)
        total = total + distribution_distillation_loss(s, t, centers, tau=tau,
                                                       tau_squared=tau_squared)
    return total / len(student_depths)
