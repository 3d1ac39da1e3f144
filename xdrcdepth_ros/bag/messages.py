"""Small ``rosbags`` message helpers the bag tools need beyond ``conversions``.

Image, CompressedImage, CameraInfo and PointCloud2 building lives in
:mod:`xdrcdepth_ros.core.conversions` (shared with the node); this module adds headers, transforms
and reading a JPEG's size without decoding it.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

from xdrcdepth_ros.core.conversions import ns_to_stamp
from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import extrinsics_from_transform


def ros_time(store: Any, stamp_ns: int) -> Any:
    """``builtin_interfaces/Time`` of an int-ns stamp."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    return store.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)


def header(store: Any, stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` with an int-ns stamp."""
    return store.types['std_msgs/msg/Header'](stamp=ros_time(store, stamp_ns), frame_id=frame_id)


def transform_stamped(store: Any, stamp_ns: int, parent: str, child: str,
                      T_parent_from_child: np.ndarray) -> Any:
    """``geometry_msgs/TransformStamped`` parent ← child from a (4, 4) matrix.

    The quaternion is ROS order (x, y, z, w), computed from the rotation block.
    """
    types = store.types
    tx, ty, tz, x, y, z, w = extrinsics_from_transform(T_parent_from_child)
    return types['geometry_msgs/msg/TransformStamped'](
        header=header(store, stamp_ns, parent), child_frame_id=child,
        transform=types['geometry_msgs/msg/Transform'](
            translation=types['geometry_msgs/msg/Vector3'](x=tx, y=ty, z=tz),
            rotation=types['geometry_msgs/msg/Quaternion'](x=x, y=y, z=z, w=w)))


def tf_message(store: Any, transforms: list[Any]) -> Any:
    """``tf2_msgs/TFMessage`` holding ``transforms``."""
    return store.types['tf2_msgs/msg/TFMessage'](transforms=transforms)


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(jpeg: bytes, name: str = 'JPEG') -> tuple[int, int]:
    """(width, height) in pixels from a JPEG's start-of-frame header, without decoding it.

    Raises:
        DatasetError: not a JPEG, or no frame header before the data ends (names ``name``).
    """
    if jpeg[:2] != b'\xff\xd8':
        raise DatasetError(f'{name} is not a JPEG file (no SOI marker)')
    offset = 2
    while offset + 4 <= len(jpeg):
        if jpeg[offset] != 0xFF:
            break
        marker = jpeg[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        (length,) = struct.unpack('>H', jpeg[offset + 2:offset + 4])
        if marker in _SOF_MARKERS:
            if offset + 9 > len(jpeg):
                break
            height, width = struct.unpack('>HH', jpeg[offset + 5:offset + 9])
            return int(width), int(height)
        offset += 2 + length
    raise DatasetError(f'{name}: JPEG is truncated or has no frame header')
