"""Depth outputs: REP 118 depth image pixels and the back-projected ``~/points`` cloud."""
from __future__ import annotations

import numpy as np

from xdrcdepth_ros.core.errors import ConversionError
from xdrcdepth_ros.core.geometry import check_intrinsics


def depth_to_image_array(depth_m: np.ndarray, encoding: str = '32FC1') -> np.ndarray:
    """REP 118 pixels of a depth map in metres (NaN = invalid).

    Args:
        depth_m: (H, W) depth along the optical axis, metres; NaN invalid, +inf too far.
        encoding: ``'32FC1'``: contiguous float32 metres, values unchanged (NaN/inf kept).
            ``'16UC1'``: uint16 millimetres rounded to nearest; NaN, -inf and depths that round
            to <= 0 mm become 0 (invalid, the OpenNI convention); depths beyond 65.535 m and +inf
            saturate at 65535 ("at least 65.535 m").

    Raises:
        ConversionError: not 2-D, or an encoding other than 32FC1/16UC1.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ConversionError(f'depth must be (H, W), got shape {depth.shape}')
    if encoding == '32FC1':
        return np.ascontiguousarray(depth, dtype=np.float32)
    if encoding != '16UC1':
        raise ConversionError(f'depth encoding must be 32FC1 or 16UC1, got {encoding!r}')
    millimetres = np.multiply(depth, np.float32(1000.0), dtype=np.float32)
    np.fmax(millimetres, np.float32(0.0), out=millimetres)  # fmax maps NaN to 0 as well
    np.fmin(millimetres, np.float32(65535.0), out=millimetres)
    np.rint(millimetres, out=millimetres)
    return millimetres.astype(np.uint16)


def depth_to_points(depth: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
    """Back-project a depth map into 3-D points for ``~/points``.

    Args:
        depth: (H, W) depth along the optical axis z, metres; NaN, inf and <= 0 are skipped.
        K: (3, 3) intrinsics of ``depth`` (pixel centres at integer coordinates).
        stride: keep every ``stride``-th row and column (1 = all pixels).

    Returns:
        (N, 3) float32 x, y, z in metres, camera optical frame (x right, y down, z forward), in
        row-major pixel order.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ConversionError(f'depth must be (H, W), got shape {depth.shape}')
    if isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise ConversionError(f'stride must be a positive integer, got {stride!r}')
    projection = check_intrinsics(K)
    fx, fy, cx, cy = projection[0, 0], projection[1, 1], projection[0, 2], projection[1, 2]
    sampled = depth[::stride, ::stride].astype(np.float32, copy=False)
    with np.errstate(invalid='ignore'):
        rows, cols = np.nonzero(np.isfinite(sampled) & (sampled > 0))
    z = sampled[rows, cols]
    points = np.empty((z.size, 3), dtype=np.float32)
    points[:, 0] = (cols * stride - cx) / fx * z
    points[:, 1] = (rows * stride - cy) / fy * z
    points[:, 2] = z
    return points
