"""Depth networks (torch): XD-RCDepth student, CaFNet-style teacher, LiRCDepth reference.

Papers: XD-RCDepth arXiv 2510.13565, LiRCDepth arXiv 2412.16380, CaFNet (Sun et al., IROS 2024,
arXiv 2407.00697). Every model maps ``(image (B,3,H,W) RGB in [0,1], radar (B,C,H,W))`` to a
``ModelOutput`` with depth in metres; H and W must be multiples of 32.
"""
from xdrcdepth_ros.model.output import FEATURE_KEYS, ModelOutput
from xdrcdepth_ros.model.registry import (
    create_model, load_checkpoint, MODEL_NAMES, save_checkpoint, variant_kwargs)
from xdrcdepth_ros.model.saliency import closed_form_head_cam, grad_cam, normalize_cam

__all__ = [
    'FEATURE_KEYS', 'MODEL_NAMES', 'ModelOutput', 'closed_form_head_cam', 'create_model',
    'grad_cam', 'load_checkpoint', 'normalize_cam', 'save_checkpoint', 'variant_kwargs',
]
