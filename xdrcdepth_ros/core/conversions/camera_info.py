"""sensor_msgs/CameraInfo <-> :class:`CameraModel`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TYPE_CHECKING

import numpy as np

from xdrcdepth_ros.core.conversions._common import _construct, _float_sequence, _readonly
from xdrcdepth_ros.core.errors import ConversionError
from xdrcdepth_ros.core.geometry import check_intrinsics

if TYPE_CHECKING:
    class CameraInfoMsg(Protocol):
        """The sensor_msgs/CameraInfo fields read here (binning/roi are read if present)."""

        height: int
        width: int
        distortion_model: str
        d: Any
        k: Any
        r: Any
        p: Any


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A pinhole camera as carried by sensor_msgs/CameraInfo (arrays are read-only float64).

    Compared by identity (``eq=False``): array fields have no single truth value.

    Attributes:
        K: (3, 3) intrinsics of the raw image, pixels.
        P: (3, 4) projection of the rectified image (``[K | 0]`` for undistorted cameras).
        D: (n,) distortion coefficients of ``distortion_model``.
        width: image width, pixels.
        height: image height, pixels.
        distortion_model: e.g. ``'plumb_bob'``.
        R: (3, 3) rectification rotation (identity when omitted).
    """

    K: np.ndarray
    P: np.ndarray
    D: np.ndarray
    width: int
    height: int
    distortion_model: str = 'plumb_bob'
    R: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        for name, shape in (('K', (3, 3)), ('P', (3, 4)), ('R', (3, 3))):
            value = np.array(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ConversionError(f'CameraModel.{name} must have shape {shape}, '
                                      f'got {value.shape}')
            object.__setattr__(self, name, _readonly(value))
        object.__setattr__(self, 'D', _readonly(np.array(self.D, dtype=np.float64).reshape(-1)))
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'height', int(self.height))
        if self.width <= 0 or self.height <= 0:
            raise ConversionError(f'camera size must be positive, got {self.width}x{self.height}')

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> CameraModel:
        """An undistorted camera: ``P = [K | 0]``, five zero plumb_bob coefficients."""
        K = np.asarray(K, dtype=np.float64)
        return cls(K=K, P=np.hstack([K, np.zeros((3, 1))]), D=np.zeros(5), width=int(width),
                   height=int(height))


MAX_PRINCIPAL_POINT_OFFSET = 0.2
"""How far (fraction of the width / height) the principal point may lie from the image centre.

Lenses are centred to a few percent; a K calibrated at another resolution (a 2x binned
800x450 K on a 1600x900 image puts cx at a quarter of the width) or a garbage cx fails this.
"""


def _matrix(values: Any, size: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size != size:
        raise ConversionError(f'CameraInfo {name} must have {size} values, got {array.size}')
    if not np.all(np.isfinite(array)):
        raise ConversionError(f'CameraInfo {name} has non-finite values: {array.tolist()}')
    return array


def _unit_scale(matrix: np.ndarray, name: str) -> np.ndarray:
    """``matrix`` (K, or P) divided by its [2][2], after checking its last row starts
    ``[0, 0, s]`` with s > 0 (a homogeneous matrix may be scaled; s = 0 is singular)."""
    if matrix[2, 2] <= 0 or matrix[2, 0] != 0 or matrix[2, 1] != 0:
        raise ConversionError(f'CameraInfo {name} must have the last row [0, 0, 1, ...], got '
                              f'{matrix[2].tolist()} (singular or not a pinhole camera)')
    return matrix / matrix[2, 2]


def _check_principal_point(K: np.ndarray, width: int, height: int, name: str) -> None:
    cx, cy = float(K[0, 2]), float(K[1, 2])
    if (abs(cx - width / 2) > MAX_PRINCIPAL_POINT_OFFSET * width
            or abs(cy - height / 2) > MAX_PRINCIPAL_POINT_OFFSET * height):
        raise ConversionError(
            f'CameraInfo {name} principal point (cx, cy) = ({cx:g}, {cy:g}) is more than '
            f'{MAX_PRINCIPAL_POINT_OFFSET:.0%} of the size away from the centre of the '
            f'{width}x{height} image: a K for another image size?')


def camera_info_to_model(msg: CameraInfoMsg) -> CameraModel:
    """Validate a sensor_msgs/CameraInfo and return its :class:`CameraModel`.

    An all-zero ``p`` (drivers that publish no rectification) becomes ``[K | 0]``, an all-zero
    ``r`` the identity. ``k`` (and ``p``) are normalised to ``[2][2] = 1``.

    Raises:
        ConversionError: naming the field: ``k`` all zero (uncalibrated); non-finite ``k``,
            ``p``, ``r`` or ``d``; a last row of ``k``/``p`` other than ``[0, 0, s]`` with s > 0
            (``k[2][2] = 0`` is singular); non-positive focal lengths; a principal point far
            from the image centre (:data:`MAX_PRINCIPAL_POINT_OFFSET`: a K for another image
            size); zero size; or binning / a region of interest (not supported).
    """
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise ConversionError(f'CameraInfo size must be positive, got {width}x{height}')
    binning = (int(getattr(msg, 'binning_x', 0)), int(getattr(msg, 'binning_y', 0)))
    if max(binning) > 1:
        raise ConversionError(f'CameraInfo binning {binning} is not supported')
    roi = getattr(msg, 'roi', None)
    if roi is not None and (int(roi.x_offset) or int(roi.y_offset)):
        raise ConversionError('CameraInfo with a region of interest offset is not supported')
    K = _matrix(msg.k, 9, 'k').reshape(3, 3)
    if not np.any(K):
        raise ConversionError('CameraInfo k is all zero: the camera is not calibrated')
    K = _unit_scale(K, 'k')
    try:
        check_intrinsics(K)
    except ValueError as err:
        raise ConversionError(f'CameraInfo k is invalid: {err}') from err
    _check_principal_point(K, width, height, 'k')
    P = _matrix(msg.p, 12, 'p').reshape(3, 4)
    if np.any(P):
        P = _unit_scale(P, 'p')
        if P[0, 0] <= 0 or P[1, 1] <= 0:
            raise ConversionError(f'CameraInfo p must have positive focal lengths, got '
                                  f'fx={P[0, 0]:g}, fy={P[1, 1]:g}')
        _check_principal_point(P, width, height, 'p')
    else:
        P = np.hstack([K, np.zeros((3, 1))])
    R = _matrix(msg.r, 9, 'r').reshape(3, 3)
    D = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(D)):
        raise ConversionError(f'CameraInfo d has non-finite values: {D.tolist()}')
    return CameraModel(K=K, P=P, D=D, width=width, height=height,
                       distortion_model=str(msg.distortion_model),
                       R=R if np.any(R) else np.eye(3))


def make_camera_info(info_cls: type, header: Any, model: CameraModel,
                     roi_cls: type | None = None) -> Any:
    """Build a sensor_msgs/CameraInfo of class ``info_cls`` (rclpy or rosbags) from ``model``.

    ``roi_cls`` (``sensor_msgs/RegionOfInterest``) is required for rosbags classes, whose fields
    are all keyword-required; rclpy fills an empty ROI by itself. Binning is 0 (none).
    """
    kwargs: dict[str, Any] = dict(
        header=header, height=int(model.height), width=int(model.width),
        distortion_model=model.distortion_model, d=_float_sequence(info_cls, model.D),
        k=model.K.reshape(-1).copy(), r=model.R.reshape(-1).copy(),
        p=model.P.reshape(-1).copy(), binning_x=0, binning_y=0)
    if roi_cls is not None:
        kwargs['roi'] = roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    try:
        return _construct(info_cls, **kwargs)
    except TypeError as err:
        raise ConversionError(f'cannot build {getattr(info_cls, "__name__", info_cls)}: {err} '
                              '(rosbags classes need roi_cls)') from err
