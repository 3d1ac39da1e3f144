"""Bring per-pixel data (sparse depth, pixel-space radar points, dense depth) to the model size.

Sparse maps are resampled as *points*: each valid pixel centre is mapped through the
:class:`geometry.InputTransform` and re-rasterised with :func:`geometry.rasterize_nearest`, so no
return is lost to interpolation and the nearest one wins a shared pixel, exactly as
:func:`geometry.lidar_depth_map` does for 3-D points.
"""
from __future__ import annotations

import numpy as np

from xdrcdepth_ros.core.geometry import InputTransform, rasterize_nearest


def transform_pixels(uv: np.ndarray, transform: InputTransform) -> np.ndarray:
    """Map (N, 2) source pixel coordinates (u, v) to model-input pixel coordinates."""
    uv = np.asarray(uv, dtype=np.float64)
    out = transform.scale * (uv + 0.5) - 0.5
    out[:, 0] -= transform.crop_x
    out[:, 1] -= transform.crop_y
    return out


def inside(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N,) mask of pixel coordinates whose rounded pixel lies in a width x height image."""
    return ((uv[:, 0] >= -0.5) & (uv[:, 0] < width - 0.5)
            & (uv[:, 1] >= -0.5) & (uv[:, 1] < height - 0.5))


def rasterize_pixels(uv: np.ndarray, depth: np.ndarray, values: np.ndarray,
                     transform: InputTransform) -> np.ndarray:
    """Rasterise source-pixel points into a (C, H, W) model-size map (nearest depth wins).

    Args:
        uv: (N, 2) source-image pixel coordinates (column, row).
        depth: (N,) depth in metres used to resolve shared pixels; must be > 0.
        values: (N, C) values to write.
        transform: source -> model input mapping.
    """
    target = transform_pixels(uv, transform)
    keep = inside(target, transform.width, transform.height) & (np.asarray(depth) > 0)
    return rasterize_nearest(target[keep], np.asarray(depth)[keep], np.asarray(values)[keep],
                             transform.width, transform.height)


def resample_sparse(depth: np.ndarray, transform: InputTransform) -> np.ndarray:
    """Resample an (H, W) sparse depth map (0 = none) to the model size as points."""
    rows, cols = np.nonzero(np.asarray(depth) > 0)
    values = np.asarray(depth, dtype=np.float32)[rows, cols]
    uv = np.stack([cols, rows], 1).astype(np.float64)
    return rasterize_pixels(uv, values, values[:, None], transform)[0]


def resample_dense(depth: np.ndarray, transform: InputTransform) -> np.ndarray:
    """Nearest-neighbour resize + crop of an (H, W) dense depth map (no mixing across edges)."""
    import cv2

    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (transform.source_height, transform.source_width):
        raise ValueError(f'depth is {depth.shape[1]}x{depth.shape[0]}, transform expects '
                         f'{transform.source_width}x{transform.source_height}')
    scaled_w, scaled_h = transform.scaled_size
    resized = cv2.resize(depth, (scaled_w, scaled_h), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(resized[transform.crop_y:transform.crop_y + transform.height,
                                        transform.crop_x:transform.crop_x + transform.width])


def densify(depth: np.ndarray) -> np.ndarray:
    """Linear (barycentric) interpolation of a sparse (H, W) depth map inside its convex hull.

    The way CaFNet builds ``ground_truth_interp``; pixels outside the hull stay 0. Needs scipy.
    """
    try:
        from scipy.interpolate import LinearNDInterpolator
    except ImportError as err:  # pragma: no cover - scipy ships with scikit-learn here
        raise ImportError('densifying depth needs scipy (pip install scipy)') from err
    rows, cols = np.nonzero(depth > 0)
    if len(rows) < 3:
        return np.zeros_like(depth, dtype=np.float32)
    interpolator = LinearNDInterpolator(np.stack([rows, cols], 1), depth[rows, cols],
                                        fill_value=0.0)
    grid_r, grid_c = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    return interpolator(grid_r, grid_c).astype(np.float32)
