"""ROS message <-> numpy conversions (ROS-free, duck-typed).

Every reader takes any object with the message's attributes: rclpy messages (``data`` is an
``array.array('B')``) and rosbags dataclass messages (``data`` is a numpy uint8 array) alike, plus
``bytes``/``bytearray``/lists for hand-made objects. Builders take the message *classes* as
arguments, so this package never imports a ROS package: rclpy classes get ``array.array`` data,
adopted without a second copy (see ``_common._construct``) and fast under Humble's always-on
field checks too; rosbags classes, recognised as dataclasses, get the numpy arrays their
serializer requires.

Readers return views into ``msg.data`` where no conversion is needed; such views are marked
read-only so the message cannot be modified by accident (``.copy()`` when you need to write).

Modules: :mod:`.image` (Image, CompressedImage), :mod:`.depth` (REP 118 depth pixels, the
``~/points`` back-projection), :mod:`.camera_info` (CameraInfo, :class:`CameraModel`),
:mod:`.pointcloud` (PointCloud2), :mod:`.radar` (radar fields -> model channels) and
:mod:`._common` (stamps, buffers, building for either message library). Import from this
package; the module layout is not part of the API.
"""
from __future__ import annotations

from xdrcdepth_ros.core.conversions._common import checked_stamp_ns, ns_to_stamp, stamp_to_ns
from xdrcdepth_ros.core.conversions.camera_info import (
    camera_info_to_model,
    CameraModel,
    make_camera_info,
)
from xdrcdepth_ros.core.conversions.depth import (
    compressed_depth_payload,
    depth_to_image_array,
    depth_to_points,
)
from xdrcdepth_ros.core.conversions.image import (
    compressed_to_rgb,
    encode_jpeg,
    encoded_image_size,
    encoding_layout,
    image_to_array,
    image_to_rgb,
    make_compressed_image,
    make_image,
)
from xdrcdepth_ros.core.conversions.pointcloud import (
    array_to_pointcloud2_fields,
    make_pointcloud2,
    POINT_FIELD_DTYPES,
    pointcloud2_dtype,
    pointcloud2_to_array,
    xyz_cloud_array,
)
from xdrcdepth_ros.core.conversions.radar import (
    MAX_RADAR_RANGE_M,
    missing_radar_fields,
    radar_from_cloud,
    radar_point_drops,
    RadarFieldMap,
    RadarPointDrop,
)

__all__ = [
    'CameraModel',
    'MAX_RADAR_RANGE_M',
    'POINT_FIELD_DTYPES',
    'RadarFieldMap',
    'RadarPointDrop',
    'array_to_pointcloud2_fields',
    'camera_info_to_model',
    'checked_stamp_ns',
    'compressed_depth_payload',
    'compressed_to_rgb',
    'depth_to_image_array',
    'depth_to_points',
    'encode_jpeg',
    'encoded_image_size',
    'encoding_layout',
    'image_to_array',
    'image_to_rgb',
    'make_camera_info',
    'make_compressed_image',
    'make_image',
    'make_pointcloud2',
    'missing_radar_fields',
    'ns_to_stamp',
    'pointcloud2_dtype',
    'pointcloud2_to_array',
    'radar_from_cloud',
    'radar_point_drops',
    'stamp_to_ns',
    'xyz_cloud_array',
]
