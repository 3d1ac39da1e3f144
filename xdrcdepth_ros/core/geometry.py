"""Sensor geometry shared by training and the node (numpy only, vectorised).

Conventions:
    * Transforms are (4, 4) float64 homogeneous matrices named ``T_target_from_source``: a point
      ``p`` in the source frame maps to ``T @ [p, 1]`` in the target frame.
    * nuScenes quaternions are (w, x, y, z); ROS quaternions are (x, y, z, w).
    * Pixel centres sit at integer coordinates (the OpenCV / ROS CameraInfo convention), so the
      pixel that holds a projected point (u, v) is (round(u), round(v)), computed as
      ``floor(u + 0.5)``. A point is inside a W x H image when -0.5 <= u < W - 0.5 and
      -0.5 <= v < H - 0.5, which is exactly when its pixel index is valid.
    * The radar map is C x H x W float32; channel 0 is the camera-frame depth z in metres and the
      other channels are per-point features (default RCS dBsm, vx m/s, vy m/s). Empty pixels are 0.
      When several points fall into one pixel the *nearest* (smallest depth) wins; exact depth ties
      go to the point that comes first in the input.

Both the training datasets and the ROS node build their radar maps with :func:`radar_map`, so the
model sees bit-identical inputs in both places.
"""
from __future__ import annotations

from dataclasses import dataclass
import enum
import math
from typing import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float]


class RadarChannel(str, enum.Enum):
    """Channels a radar map can carry; DEPTH is always channel 0."""

    DEPTH = 'depth'
    """Camera-frame depth z of the point, metres."""
    RCS = 'rcs'
    """Radar cross section, dBsm."""
    VX = 'vx'
    """Radial velocity x component (radar frame), m/s."""
    VY = 'vy'
    """Radial velocity y component (radar frame), m/s."""


DEFAULT_RADAR_CHANNELS: tuple[RadarChannel, ...] = (
    RadarChannel.DEPTH, RadarChannel.RCS, RadarChannel.VX, RadarChannel.VY)


# ----------------------------------------------------------------------------- transforms


def _check_vector(value: ArrayLike, size: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f'{name} must have shape ({size},), got {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name} must be finite, got {array.tolist()}')
    return array


def _rotation_from_unit_quaternion(w: float, x: float, y: float, z: float) -> np.ndarray:
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _transform(translation: np.ndarray, wxyz: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(wxyz))
    if norm < 1e-9:
        raise ValueError(f'quaternion must be non-zero, got {wxyz.tolist()}')
    transform = np.eye(4)
    transform[:3, :3] = _rotation_from_unit_quaternion(*(wxyz / norm))
    transform[:3, 3] = translation
    return transform


def transform_from_wxyz(translation: ArrayLike, rotation_wxyz: ArrayLike) -> np.ndarray:
    """Build ``T`` from a translation (m) and a (w, x, y, z) quaternion, as nuScenes stores them.

    Args:
        translation: (3,) metres.
        rotation_wxyz: (4,) quaternion, normalised here.

    Returns:
        (4, 4) float64 transform.

    Raises:
        ValueError: wrong shapes, non-finite values or a zero quaternion.
    """
    return _transform(_check_vector(translation, 3, 'translation'),
                      _check_vector(rotation_wxyz, 4, 'rotation (w, x, y, z)'))


def transform_from_xyzw(translation: ArrayLike, rotation_xyzw: ArrayLike) -> np.ndarray:
    """Build ``T`` from a translation (m) and a ROS (x, y, z, w) quaternion.

    Raises:
        ValueError: wrong shapes, non-finite values or a zero quaternion.
    """
    xyzw = _check_vector(rotation_xyzw, 4, 'rotation (x, y, z, w)')
    return _transform(_check_vector(translation, 3, 'translation'), np.roll(xyzw, 1))


def extrinsics_from_transform(transform: np.ndarray) -> list[float]:
    """Inverse of :func:`transform_from_xyzw`: (4, 4) ``T`` -> [x, y, z, qx, qy, qz, qw].

    That is the node's ``radar_extrinsics`` layout per radar: useful to write the parameter
    from a calibration matrix (e.g. nuScenes ``T_cam<-radar``). The quaternion has w >= 0.

    Raises:
        ValueError: not a finite (4, 4) matrix.
    """
    matrix = np.asarray(transform, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f'transform must be a finite (4, 4) matrix, got shape {matrix.shape}')
    r = matrix[:3, :3]
    # Shepperd's method: pick the largest diagonal term for numerical stability.
    trace = float(np.trace(r))
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 1e-300))
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i] = s / 4
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
    quat = np.asarray(q) / np.linalg.norm(q)
    if quat[3] < 0:
        quat = -quat
    return [float(v) for v in matrix[:3, 3]] + [float(v) for v in quat]


def transform_from_record(record: dict) -> np.ndarray:
    """``T`` of a nuScenes ``calibrated_sensor`` (ego ← sensor) or ``ego_pose`` (global ← ego)
    record: its ``translation`` (m) and ``rotation`` (w, x, y, z)."""
    return transform_from_wxyz(record['translation'], record['rotation'])


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Invert a rigid (4, 4) transform using R^T, cheaper and exact compared with a general inverse."""
    transform = check_transform(transform)
    inverse = np.eye(4)
    rotation_t = transform[:3, :3].T
    inverse[:3, :3] = rotation_t
    inverse[:3, 3] = -rotation_t @ transform[:3, 3]
    return inverse


def check_transform(transform: np.ndarray, name: str = 'transform') -> np.ndarray:
    """Return ``transform`` as (4, 4) float64, or raise ValueError naming what is wrong."""
    array = np.asarray(transform, dtype=np.float64)
    if array.shape != (4, 4):
        raise ValueError(f'{name} must be a (4, 4) matrix, got shape {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name} contains non-finite values')
    return array


def nuscenes_cam_from_sensor(sensor_calib: dict, sensor_pose: dict,
                             cam_pose: dict, cam_calib: dict) -> np.ndarray:
    """Chain sensor → ego(t_sensor) → global → ego(t_cam) → camera from nuScenes records.

    Args:
        sensor_calib: ``calibrated_sensor`` record of the radar or LiDAR (ego ← sensor).
        sensor_pose: ``ego_pose`` record at the sensor timestamp (global ← ego).
        cam_pose: ``ego_pose`` record at the camera timestamp.
        cam_calib: ``calibrated_sensor`` record of the camera (ego ← camera optical frame).

    Returns:
        (4, 4) ``T_cam_from_sensor``; it compensates ego motion between the two timestamps.
    """
    return (invert_transform(transform_from_record(cam_calib))
            @ invert_transform(transform_from_record(cam_pose))
            @ transform_from_record(sensor_pose)
            @ transform_from_record(sensor_calib))


# ----------------------------------------------------------------------------- projection


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    """Return a (3, 4) projection matrix from a 3x3 K or a 3x4 P; raise ValueError otherwise."""
    array = np.asarray(K, dtype=np.float64)
    if array.shape == (3, 3):
        array = np.hstack([array, np.zeros((3, 1))])
    elif array.shape != (3, 4):
        raise ValueError(f'K must be 3x3 (intrinsics) or 3x4 (projection), got shape {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ValueError('K contains non-finite values')
    if array[0, 0] <= 0 or array[1, 1] <= 0:
        raise ValueError(f'K must have positive focal lengths, got fx={array[0, 0]}, fy={array[1, 1]}')
    return array


def _check_points(points: np.ndarray) -> np.ndarray:
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] < 3:
        raise ValueError(f'points must have shape (N, 3) (x, y, z columns first), got {array.shape}')
    return array[:, :3]


def _check_size(width: int, height: int) -> None:
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f'image size must be positive, got width={width}, height={height}')


def project_points(points: np.ndarray, T_cam_from_sensor: np.ndarray, K: np.ndarray,
                   width: int, height: int,
                   min_depth: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project sensor-frame points into the image, keeping those in front and inside.

    Args:
        points: (N, 3) (or (N, >=3), first three columns used) x, y, z in the sensor frame,
            metres. Rows with NaN or inf are dropped.
        T_cam_from_sensor: (4, 4) transform into the camera optical frame.
        K: (3, 3) intrinsics or (3, 4) projection matrix P.
        width: image width in pixels.
        height: image height in pixels.
        min_depth: keep points with camera-frame z strictly greater than this, metres.

    Returns:
        ``(uv, depth, index)``: (M, 2) float64 pixel x, y; (M,) float64 camera-frame z in metres;
        (M,) int64 indices of the kept rows of ``points``, in input order.

    Raises:
        ValueError: bad shapes, non-finite transform or intrinsics, non-positive size.
    """
    xyz = _check_points(points)
    transform = check_transform(T_cam_from_sensor, 'T_cam_from_sensor')
    projection = check_intrinsics(K)
    _check_size(width, height)
    xyz = xyz.astype(np.float64, copy=False)
    # NaN/inf rows are expected input (dropped below); silence their arithmetic warnings.
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        cam = xyz @ transform[:3, :3].T + transform[:3, 3]
        homogeneous = cam @ projection[:, :3].T + projection[:, 3]
        depth = homogeneous[:, 2]
        u = homogeneous[:, 0] / depth
        v = homogeneous[:, 1] / depth
    # NaN compares false, so non-finite points drop out here too.
    keep = ((cam[:, 2] > min_depth) & (u >= -0.5) & (u < width - 0.5)
            & (v >= -0.5) & (v < height - 0.5))
    index = np.flatnonzero(keep)
    return np.stack([u[index], v[index]], axis=1), cam[index, 2], index


def pixel_indices(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return integer (column, row) pixel indices of projected points: round half up."""
    pixels = np.floor(np.asarray(uv) + 0.5).astype(np.int64)
    return pixels[:, 0], pixels[:, 1]


def rasterize_nearest(uv: np.ndarray, depth: np.ndarray, values: np.ndarray,
                      width: int, height: int) -> np.ndarray:
    """Scatter per-point values into a C x H x W map, the nearest point winning each pixel.

    Args:
        uv: (M, 2) pixel coordinates from :func:`project_points`.
        depth: (M,) depths used to pick the winner (smallest wins; ties: first in input order).
        values: (M, C) values to write for each point.
        width: map width.
        height: map height.

    Returns:
        (C, H, W) float32, zeros where no point landed.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != len(depth):
        raise ValueError(f'values must have shape ({len(depth)}, C), got {values.shape}')
    out = np.zeros((values.shape[1], int(height), int(width)), dtype=np.float32)
    if len(depth) == 0:
        return out
    cols, rows = pixel_indices(uv)
    flat = rows * int(width) + cols
    # Sort by pixel, then depth, then input order; the first row of each pixel group wins.
    order = np.lexsort((np.arange(len(depth)), depth, flat))
    flat_sorted = flat[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = flat_sorted[1:] != flat_sorted[:-1]
    winners = order[first]
    out.reshape(values.shape[1], -1)[:, flat[winners]] = values[winners].T
    return out


def radar_map(points: np.ndarray, features: np.ndarray, T_cam_from_radar: np.ndarray,
              K: np.ndarray, width: int, height: int, min_depth: float = 1.0) -> np.ndarray:
    """Rasterise radar points into the model's radar map.

    Args:
        points: (N, 3) x, y, z in the radar frame, metres. NaN/inf rows are dropped.
        features: (N, F) per-point channel values after depth (default RCS, vx, vy).
        T_cam_from_radar: (4, 4) transform into the camera optical frame.
        K: (3, 3) intrinsics of the *model-sized* image (or a 3x4 P).
        width: map width (model input width).
        height: map height (model input height).
        min_depth: minimum camera-frame depth, metres.

    Returns:
        (1 + F, H, W) float32: channel 0 depth (m), then the features; zeros where empty.
        The nearest point wins a shared pixel.
    """
    points = np.asarray(points)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != points.shape[0]:
        raise ValueError(f'features must have shape ({points.shape[0]}, F), got {features.shape}')
    uv, depth, index = project_points(points, T_cam_from_radar, K, width, height, min_depth)
    # A non-finite feature becomes 0; the point still carries its depth.
    kept_features = np.nan_to_num(features[index], nan=0.0, posinf=0.0, neginf=0.0)
    values = np.concatenate([depth[:, None].astype(np.float32), kept_features], axis=1)
    return rasterize_nearest(uv, depth, values, width, height)


def lidar_depth_map(points: np.ndarray, T_cam_from_lidar: np.ndarray, K: np.ndarray,
                    width: int, height: int, min_depth: float = 1.0) -> np.ndarray:
    """Sparse LiDAR depth image with a z-buffer (nearest return wins each pixel).

    Returns:
        (H, W) float32 depth in metres, 0 where there is no return.
    """
    uv, depth, _ = project_points(points, T_cam_from_lidar, K, width, height, min_depth)
    return rasterize_nearest(uv, depth, depth[:, None], width, height)[0]


# ----------------------------------------------------------------------------- model input size


def check_model_size(height: int, width: int) -> None:
    """Raise ValueError unless both sides are positive multiples of 32 (the encoders' stride)."""
    for name, value in (('height', height), ('width', width)):
        if int(value) != value or value <= 0 or value % 32:
            raise ValueError(f'model input {name} must be a positive multiple of 32, got {value} '
                             '(e.g. 352x704, 448x800, 896x1600)')


@dataclass(frozen=True)
class InputTransform:
    """Resize by ``scale`` then crop a ``width`` x ``height`` window at (crop_x, crop_y).

    Maps a camera image to the model input and updates K to match. With pixel centres at integer
    coordinates a pixel coordinate maps as ``u' = scale * (u + 0.5) - 0.5 - crop_x``.
    """

    scale: float
    crop_x: int
    crop_y: int
    width: int
    height: int
    source_width: int
    source_height: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, width: int, height: int,
            vertical: str = 'bottom') -> 'InputTransform':
        """Scale the camera image to cover the model size, then crop.

        The crop is centred horizontally; vertically it keeps the ``bottom`` (drops sky, the
        default for driving), ``center`` or ``top``.
        """
        check_model_size(height, width)
        _check_size(source_width, source_height)
        if vertical not in ('bottom', 'center', 'top'):
            raise ValueError(f"vertical must be 'bottom', 'center' or 'top', got {vertical!r}")
        scale = max(width / source_width, height / source_height)
        scaled_w = int(round(source_width * scale))
        scaled_h = int(round(source_height * scale))
        crop_x = (scaled_w - width) // 2
        crop_y = {'bottom': scaled_h - height, 'center': (scaled_h - height) // 2, 'top': 0}[vertical]
        return cls(scale, crop_x, crop_y, width, height, int(source_width), int(source_height))

    @property
    def scaled_size(self) -> tuple[int, int]:
        """(width, height) of the resized image before the crop."""
        return (int(round(self.source_width * self.scale)),
                int(round(self.source_height * self.scale)))

    def apply_to_K(self, K: np.ndarray) -> np.ndarray:
        """Return the 3x3 intrinsics of the model-sized image."""
        projection = check_intrinsics(K)
        out = projection[:, :3].copy()
        out[0, :] *= self.scale
        out[1, :] *= self.scale
        out[0, 2] += 0.5 * self.scale - 0.5 - self.crop_x
        out[1, 2] += 0.5 * self.scale - 0.5 - self.crop_y
        return out

    def apply_to_image(self, image: np.ndarray) -> np.ndarray:
        """Resize and crop an (H, W[, C]) camera image to the model size.

        Shrinking halves with ``cv2.pyrDown`` (a Gaussian anti-alias filter) while the remaining
        factor is at most 1/2, then one bilinear affine warp maps straight into the crop window.
        The warp carries the pixel-centre convention exactly, so the image agrees with
        :meth:`apply_to_K` to a small fraction of a pixel; it costs ~1 ms at 1600x900 where
        ``INTER_AREA`` costs ~8 ms.
        """
        import cv2  # OpenCV is a core dependency; imported here to keep geometry light to load

        if image.shape[:2] != (self.source_height, self.source_width):
            raise ValueError(f'image is {image.shape[1]}x{image.shape[0]}, transform expects '
                             f'{self.source_width}x{self.source_height}')
        halvings = 0
        while self.scale * 2 ** (halvings + 1) <= 1.0 and min(image.shape[:2]) >= 2:
            image = cv2.pyrDown(image)  # output pixel i is centred on input pixel 2i
            halvings += 1
        gain = self.scale * 2 ** halvings
        warp = np.array([[gain, 0.0, 0.5 * self.scale - 0.5 - self.crop_x],
                         [0.0, gain, 0.5 * self.scale - 0.5 - self.crop_y]])
        return cv2.warpAffine(image, warp, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def depth_to_source(self, depth: np.ndarray) -> np.ndarray:
        """Map an (H, W) model-size depth back to the camera size (NaN outside the crop).

        Nearest-neighbour resampling, so no depth is invented across object boundaries.
        """
        import cv2

        scaled_w, scaled_h = self.scaled_size
        canvas = np.full((scaled_h, scaled_w), np.nan, dtype=np.float32)
        canvas[self.crop_y:self.crop_y + self.height, self.crop_x:self.crop_x + self.width] = depth
        return cv2.resize(canvas, (self.source_width, self.source_height),
                          interpolation=cv2.INTER_NEAREST)
