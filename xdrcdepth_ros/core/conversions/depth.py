"""Depth outputs: REP 118 depth image pixels and the back-projected ``~/points`` cloud."""
from __future__ import annotations

import struct

import cv2
import numpy as np

from xdrcdepth_ros.core.errors import ConversionError
from xdrcdepth_ros.core.geometry import check_intrinsics

_UINT16_MAX = np.float32(65535.0)
DEPTH_QUANTIZATION = 100.0
"""The compressedDepth transport's default ``depth_quantization``."""
_INV_DEPTH_FORMAT = 0  # compressed_depth_image_transport's ConfigHeader format (INV_DEPTH)


def depth_to_image_array(depth_m: np.ndarray, encoding: str = '32FC1') -> np.ndarray:
    """REP 118 pixels of a depth map in metres (NaN = invalid).

    Args:
        depth_m: (H, W) depth along the optical axis, metres; NaN invalid, +inf too far.
        encoding: ``'32FC1'``: contiguous float32 metres, values unchanged (NaN/inf kept).
            ``'16UC1'``: uint16 millimetres rounded to nearest; NaN, +-inf, depths that round
            to <= 0 mm and depths beyond 65.535 m become 0 (invalid, REP 118): a clamped 65535
            would read as a valid 65.5 m.

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
    np.rint(millimetres, out=millimetres)
    with np.errstate(invalid='ignore'):
        representable = (millimetres > 0) & (millimetres <= _UINT16_MAX)  # False for NaN
    return np.where(representable, millimetres, np.float32(0.0)).astype(np.uint16)


def compressed_depth_payload(pixels: np.ndarray, encoding: str, depth_max_m: float, *,
                             depth_quantization: float = DEPTH_QUANTIZATION) -> tuple[str, bytes]:
    """``(format, data)`` of a ``sensor_msgs/CompressedImage`` in the ``compressedDepth``
    transport's PNG layout, which its standard decoder (compressed_depth_image_transport) reads.

    ``data`` is a 12-byte little-endian header (int32 format = 0, two float32 quantisation
    parameters a, b) followed by a 16-bit PNG. 16UC1 millimetres go into the PNG as they are
    (a and b are 0). 32FC1 metres are stored as quantised inverse depth ``a / z + b`` with
    ``a = q (q + 1)``, ``b = 1 - a / depth_max_m``; 0 marks invalid pixels (NaN, <= 0, >=
    ``depth_max_m``), which the decoder turns back into NaN.

    Args:
        pixels: (H, W) depth image pixels as published (:func:`depth_to_image_array`).
        encoding: their encoding, ``'32FC1'`` or ``'16UC1'``.
        depth_max_m: largest depth stored (the model's max depth), metres.
        depth_quantization: the transport's ``depth_quantization`` (default 100); one stored
            step is ``z**2 / a`` metres at depth z (0.6 m at 80 m: publish 16UC1 for mm steps).

    Raises:
        ConversionError: not 2-D, a wrong dtype for ``encoding``, another encoding, or
            ``depth_max_m`` not positive.
    """
    pixels = np.asarray(pixels)
    expected = {'32FC1': np.float32, '16UC1': np.uint16}.get(encoding)
    if expected is None:
        raise ConversionError(f'compressedDepth needs 32FC1 or 16UC1 depth, got {encoding!r}')
    if pixels.ndim != 2 or pixels.dtype != expected:
        raise ConversionError(f'{encoding} depth must be (H, W) {np.dtype(expected)}, got '
                              f'{pixels.dtype} {pixels.shape}')
    if not depth_max_m > 0:
        raise ConversionError(f'depth_max_m must be > 0, got {depth_max_m!r}')
    a = b = np.float32(0.0)
    plane = pixels
    if encoding == '32FC1':
        a = np.float32(depth_quantization * (depth_quantization + 1.0))
        b = np.float32(1.0 - a / np.float32(depth_max_m))
        with np.errstate(invalid='ignore', divide='ignore'):
            valid = (pixels > 0) & (pixels < np.float32(depth_max_m))
            inverse = np.where(valid, a / pixels + b, np.float32(0.0))
        plane = np.clip(inverse, 0, _UINT16_MAX).astype(np.uint16)  # truncates, as the encoder
    ok, png = cv2.imencode('.png', np.ascontiguousarray(plane), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ConversionError(f'PNG encoding of a {plane.shape} depth image failed')
    header = struct.pack('<iff', _INV_DEPTH_FORMAT, a, b)
    return f'{encoding}; compressedDepth png', header + png.tobytes()


def depth_to_points(depth: np.ndarray, K: np.ndarray, stride: int = 1, *,
                    organized: bool = False) -> np.ndarray:
    """Back-project a depth map into 3-D points for ``~/points``.

    Args:
        depth: (H, W) depth along the optical axis z, metres; NaN, inf and <= 0 are invalid.
        K: (3, 3) intrinsics of ``depth`` (pixel centres at integer coordinates).
        stride: keep every ``stride``-th row and column (1 = all pixels).
        organized: keep the image layout: invalid pixels become NaN points.

    Returns:
        x, y, z float32 in metres, camera optical frame (x right, y down, z forward): (N, 3)
        valid points in row-major pixel order, or with ``organized`` (h, w, 3) for the
        ``h x w`` sampled pixels.
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
        valid = np.isfinite(sampled) & (sampled > 0)
    if organized:
        rows, cols = np.indices(sampled.shape)
        z = np.where(valid, sampled, np.float32(np.nan))
    else:
        rows, cols = np.nonzero(valid)
        z = sampled[rows, cols]
    points = np.empty(z.shape + (3,), dtype=np.float32)
    points[..., 0] = (cols * stride - cx) / fx * z
    points[..., 1] = (rows * stride - cy) / fy * z
    points[..., 2] = z
    return points
