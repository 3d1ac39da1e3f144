"""Simple non-learned depth baselines, evaluated with the same metrics as the networks.

numpy + OpenCV only. Used by ``xdrcdepth evaluate-model --baseline`` and the model card.
"""
from __future__ import annotations

import cv2
import numpy as np


def constant_depth(shape: tuple[int, int], value_m: float) -> np.ndarray:
    """An (H, W) float32 map filled with ``value_m`` metres."""
    if not np.isfinite(value_m) or value_m <= 0:
        raise ValueError(f'constant depth must be a positive finite number of metres, '
                         f'got {value_m}')
    return np.full(shape, value_m, dtype=np.float32)


def radar_nearest(radar_depth: np.ndarray, fallback_m: float) -> np.ndarray:
    """Fill every pixel with the depth of the nearest (image-plane, L2) radar pixel.

    Args:
        radar_depth: (H, W) projected radar depth, m, 0 = no point.
        fallback_m: depth used for a frame without any radar point, m.
    Returns:
        (H, W) float32 depth, m.
    """
    radar_depth = np.asarray(radar_depth, dtype=np.float32)
    if radar_depth.ndim != 2:
        raise ValueError(f'radar depth must be (H, W), got {radar_depth.shape}')
    has = radar_depth > 0
    if not has.any():
        return constant_depth(radar_depth.shape, fallback_m)
    # distanceTransform measures the distance to the nearest zero pixel, so radar pixels are 0;
    # the labels tell which zero pixel is nearest.
    _, labels = cv2.distanceTransformWithLabels((~has).astype(np.uint8), cv2.DIST_L2,
                                                cv2.DIST_MASK_PRECISE,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    rows, cols = np.nonzero(has)
    # Labels are numbered 1.. in row-major scan order of the zero pixels, as np.nonzero lists them.
    values = radar_depth[rows, cols]
    return values[labels - 1].astype(np.float32)
