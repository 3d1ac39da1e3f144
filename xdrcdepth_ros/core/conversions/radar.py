"""Radar PointCloud2 fields -> the model's radar points and feature channels."""
from __future__ import annotations

from dataclasses import dataclass
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


_warned_missing: set[str] = set()
_warned_lock = threading.Lock()


def missing_radar_fields(dtype: np.dtype, field_map: RadarFieldMap) -> tuple[str, ...]:
    """Feature fields of ``field_map`` that a cloud with ``dtype`` lacks (they read as zeros)."""
    names = set(dtype.names or ())
    return tuple(name for name in field_map.features if name not in names)


def radar_from_cloud(array: np.ndarray, field_map: RadarFieldMap = RadarFieldMap(),
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Radar points and model features from a structured cloud (e.g. from PointCloud2).

    Rows with a non-finite x, y or z are dropped; non-finite features become 0. A feature field
    the cloud lacks fills zeros and logs one warning per field name per process; use
    :func:`missing_radar_fields` to count such clouds.

    Returns:
        points (N, 3) float32 x, y, z in metres (radar frame) and features (N, F) float32 in
        ``field_map.features`` order.

    Raises:
        ConversionError: not structured, an x/y/z field missing, or a multi-element field.
    """
    cloud = np.asarray(array)
    if cloud.dtype.names is None:
        raise ConversionError(f'radar cloud must be a structured array, got dtype {cloud.dtype}')
    cloud = cloud.reshape(-1)
    fields = cloud.dtype.fields
    for name in (field_map.x, field_map.y, field_map.z, *field_map.features):
        if name in fields and fields[name][0].shape:
            raise ConversionError(f'radar field {name!r} has {fields[name][0].shape} elements '
                                  'per point; expected a scalar')
    for axis in (field_map.x, field_map.y, field_map.z):
        if axis not in fields:
            raise ConversionError(f'radar cloud has no {axis!r} field (it has '
                                  f'{list(cloud.dtype.names)}); set RadarFieldMap x/y/z')
    points = np.empty((cloud.size, 3), dtype=np.float32)
    for column, axis in enumerate((field_map.x, field_map.y, field_map.z)):
        points[:, column] = cloud[axis]
    features = np.zeros((cloud.size, len(field_map.features)), dtype=np.float32)
    for column, name in enumerate(field_map.features):
        if name in fields:
            features[:, column] = cloud[name]
    missing = missing_radar_fields(cloud.dtype, field_map)
    if missing:
        with _warned_lock:
            new = [name for name in missing if name not in _warned_missing]
            _warned_missing.update(new)
        for name in new:
            _LOG.warning('radar cloud has no %r field (fields: %s); that model channel is '
                         'filled with zeros', name, ', '.join(cloud.dtype.names))
    keep = np.isfinite(points).all(axis=1)
    if not keep.all():
        points, features = points[keep], features[keep]
    features[~np.isfinite(features)] = 0.0
    return points, features
