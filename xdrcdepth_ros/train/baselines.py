"""Simple non-learned depth baselines, evaluated with the same metrics as the networks.

numpy + OpenCV only. Used by ``xdrcdepth evaluate-model --baseline`` and the model card.
"""
from __future__ import annotations

from collections.abc import Iterable

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


def fit_row_median(depth_maps: Iterable[np.ndarray]) -> np.ndarray:
    """Per-image-row median of the valid (> 0) depths over a set of (H, W) GT maps.

    The 'depth from the row alone' predictor: in a forward camera the row says most of the
    depth of the road below the horizon. Rows without any valid depth take the value of the
    nearest row that has one.

    Args:
        depth_maps: (H, W) GT depth maps, m, 0 = no measurement; all of one size.
    Returns:
        (H,) float32 metres.
    Raises:
        ValueError: maps of different sizes, or no valid depth at all.
    """
    rows: list[list[np.ndarray]] | None = None
    for depth in depth_maps:
        depth = np.asarray(depth, dtype=np.float32)
        if depth.ndim != 2:
            raise ValueError(f'depth maps must be (H, W), got {depth.shape}')
        if rows is None:
            rows = [[] for _ in range(depth.shape[0])]
        elif len(rows) != depth.shape[0]:
            raise ValueError(f'depth maps have different heights: {len(rows)} and '
                             f'{depth.shape[0]}')
        for row, values in zip(rows, depth):
            row.append(values[values > 0])
    if rows is None:
        raise ValueError('no depth maps to fit the row median on')
    profile = np.array([np.median(np.concatenate(r)) if sum(map(len, r)) else np.nan
                        for r in rows], dtype=np.float32)
    have = np.flatnonzero(np.isfinite(profile))
    if not len(have):
        raise ValueError('the depth maps hold no valid depth')
    nearest = have[np.abs(np.arange(len(profile))[:, None] - have[None, :]).argmin(axis=1)]
    return profile[nearest]


def row_median_depth(profile: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) float32 map whose row v holds ``profile[v]`` metres (H = len(profile))."""
    profile = np.asarray(profile, dtype=np.float32)
    if profile.ndim != 1 or profile.shape[0] != shape[0]:
        raise ValueError(f'row profile of {profile.shape} does not fit a {shape} image')
    return np.repeat(profile[:, None], shape[1], axis=1)
