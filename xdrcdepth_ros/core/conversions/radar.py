"""Radar PointCloud2 fields -> the model's radar points and feature channels."""
from __future__ import annotations

from dataclasses import dataclass
import enum
import logging
import threading

import numpy as np

from xdrcdepth_ros.core.errors import ConversionError
from xdrcdepth_ros.core.model_metadata import DEFAULT_RADAR_FIELDS

# The package's name, not this module's: log records keep the name they had before the split.
_LOG = logging.getLogger('xdrcdepth_ros.core.conversions')


@dataclass(frozen=True)
class RadarFieldMap:
    """Which PointCloud2 fields feed the model's radar channels.

    Attributes:
        features: field names for the channels after depth, in model order. The default is
            :data:`~xdrcdepth_ros.core.model_metadata.DEFAULT_RADAR_FIELDS` (nuScenes ARS408
            naming: RCS dBsm, raw vx, vy in m/s); other radars name theirs here, e.g.
            ``('intensity', 'vx', 'vy')``.
        x, y, z: coordinate field names, metres in the radar frame.
    """

    features: tuple[str, ...] = DEFAULT_RADAR_FIELDS
    x: str = 'x'
    y: str = 'y'
    z: str = 'z'

    def __post_init__(self) -> None:
        object.__setattr__(self, 'features', tuple(self.features))
        names = (self.x, self.y, self.z, *self.features)
        if not all(isinstance(name, str) and name for name in names):
            raise ConversionError(f'radar field names must be non-empty strings, got {names}')
        if len(set(names)) != len(names):
            raise ConversionError(f'radar field names must be distinct, got {names}')


MAX_RADAR_RANGE_M = 1000.0
"""Largest plausible |x|, |y| or |z| of a radar point (m); beyond it the value is garbage (a
wrong byte order or field type), not a target."""


class RadarPointDrop(str, enum.Enum):
    """Why a radar point was left out; the value is its counter in diagnostics."""

    NONFINITE = 'radar_points_nonfinite'
    """x, y or z is NaN or infinite."""
    OUT_OF_RANGE = 'radar_points_out_of_range'
    """|x|, |y| or |z| beyond :data:`MAX_RADAR_RANGE_M`."""
    BAD_FEATURE = 'radar_points_bad_feature'
    """A feature (RCS, velocity, ...) is NaN or infinite."""


_warned_missing: set[str] = set()
_warned_lock = threading.Lock()


def missing_radar_fields(dtype: np.dtype, field_map: RadarFieldMap) -> tuple[str, ...]:
    """Feature fields of ``field_map`` that a cloud with ``dtype`` lacks (they read as zeros)."""
    names = set(dtype.names or ())
    return tuple(name for name in field_map.features if name not in names)


def _checked_cloud(array: np.ndarray, field_map: RadarFieldMap) -> np.ndarray:
    cloud = np.asarray(array)
    if cloud.dtype.names is None:
        raise ConversionError(f'radar cloud must be a structured array, got dtype {cloud.dtype}')
    cloud = cloud.reshape(-1)
    fields = cloud.dtype.fields
    for name in (field_map.x, field_map.y, field_map.z, *field_map.features):
        if name in fields and fields[name][0].shape:
            raise ConversionError(f'radar field {name!r} has {fields[name][0].shape} elements '
                                  'per point; expected a scalar')
        if name in fields and fields[name][0].kind not in 'iuf':
            raise ConversionError(f'radar field {name!r} has type {fields[name][0]}; expected '
                                  'a number')
    for axis in (field_map.x, field_map.y, field_map.z):
        if axis not in fields:
            raise ConversionError(f'radar cloud has no {axis!r} field (it has '
                                  f'{list(cloud.dtype.names)}); set RadarFieldMap x/y/z')
        if fields[axis][0].kind != 'f':
            raise ConversionError(f'radar field {axis!r} has type {fields[axis][0]}; x, y and z '
                                  'must be float32 or float64 metres')
    return cloud


def _columns(cloud: np.ndarray, field_map: RadarFieldMap) -> tuple[np.ndarray, np.ndarray]:
    points = np.empty((cloud.size, 3), dtype=np.float32)
    for column, axis in enumerate((field_map.x, field_map.y, field_map.z)):
        with np.errstate(over='ignore'):  # float64 beyond float32 becomes inf, then dropped
            points[:, column] = cloud[axis]
    features = np.zeros((cloud.size, len(field_map.features)), dtype=np.float32)
    for column, name in enumerate(field_map.features):
        if name in cloud.dtype.fields:
            with np.errstate(over='ignore'):
                features[:, column] = cloud[name]
    return points, features


def _drop_masks(points: np.ndarray,
                features: np.ndarray) -> dict[RadarPointDrop, np.ndarray]:
    """Per cause, the points it removes (a point counts under its first failing cause)."""
    nonfinite = ~np.isfinite(points).all(axis=1)
    with np.errstate(invalid='ignore'):
        out_of_range = ~nonfinite & (np.abs(points) > MAX_RADAR_RANGE_M).any(axis=1)
    bad_feature = ~nonfinite & ~out_of_range & ~np.isfinite(features).all(axis=1)
    return {RadarPointDrop.NONFINITE: nonfinite, RadarPointDrop.OUT_OF_RANGE: out_of_range,
            RadarPointDrop.BAD_FEATURE: bad_feature}


def radar_point_drops(array: np.ndarray, field_map: RadarFieldMap = RadarFieldMap(),
                      ) -> dict[RadarPointDrop, int]:
    """How many points of a cloud :func:`radar_from_cloud` leaves out, per cause (> 0 only).

    Raises:
        ConversionError: as :func:`radar_from_cloud`.
    """
    cloud = _checked_cloud(array, field_map)
    masks = _drop_masks(*_columns(cloud, field_map))
    return {cause: int(mask.sum()) for cause, mask in masks.items() if mask.any()}


def radar_from_cloud(array: np.ndarray, field_map: RadarFieldMap = RadarFieldMap(),
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Radar points and model features from a structured cloud (e.g. from PointCloud2).

    x, y, z must be float fields; features may be any numeric type (converted to float32).
    Points that are not physical are dropped (see :class:`RadarPointDrop`; count them with
    :func:`radar_point_drops`): a non-finite x, y or z, a coordinate beyond
    :data:`MAX_RADAR_RANGE_M`, or a non-finite feature. A feature field the cloud lacks fills
    zeros and logs one warning per field name per process; use :func:`missing_radar_fields` to
    count such clouds.

    Returns:
        points (N, 3) float32 x, y, z in metres (radar frame) and features (N, F) float32 in
        ``field_map.features`` order.

    Raises:
        ConversionError: not structured, an x/y/z field missing or not a float, a non-numeric
            or multi-element field.
    """
    cloud = _checked_cloud(array, field_map)
    points, features = _columns(cloud, field_map)
    missing = missing_radar_fields(cloud.dtype, field_map)
    if missing:
        with _warned_lock:
            new = [name for name in missing if name not in _warned_missing]
            _warned_missing.update(new)
        for name in new:
            _LOG.warning('radar cloud has no %r field (fields: %s); that model channel is '
                         'filled with zeros', name, ', '.join(cloud.dtype.names))
    masks = _drop_masks(points, features)
    drop = masks[RadarPointDrop.NONFINITE] | masks[RadarPointDrop.OUT_OF_RANGE] | masks[
        RadarPointDrop.BAD_FEATURE]
    if drop.any():
        points, features = points[~drop], features[~drop]
    return points, features
