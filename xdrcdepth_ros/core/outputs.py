"""The node's output messages for one pipeline result (ROS-free; message classes passed in).

Used by :class:`~xdrcdepth_ros.core.frame_step.FrameStep`, i.e. by the node and by replay alike:
the private topic names (``~/depth``, ...), the message classes of one flavour (rclpy or
``rosbags``) and the messages themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TYPE_CHECKING

import numpy as np

from xdrcdepth_ros.core import conversions, visualize
from xdrcdepth_ros.core.config import NodeConfig

if TYPE_CHECKING:
    from xdrcdepth_ros.core.pipeline import DepthResult

NODE_NAME = 'xdrcdepth'
OUTPUT_TYPES = {
    'depth': 'sensor_msgs/msg/Image', 'camera_info': 'sensor_msgs/msg/CameraInfo',
    'depth_color': 'sensor_msgs/msg/Image', 'saliency_overlay': 'sensor_msgs/msg/Image',
    'points': 'sensor_msgs/msg/PointCloud2',
    'depth/compressedDepth': 'sensor_msgs/msg/CompressedImage',
    'depth_color/compressed': 'sensor_msgs/msg/CompressedImage',
}
"""Private output topics of the node (``~/<suffix>``) and their message types; the last two
are the image_transport names of ``depth`` and ``depth_color`` (``publish_compressed``)."""
JPEG_QUALITY = 95
"""Quality of ``~/depth_color/compressed``: compressed_image_transport's default."""
OUTPUT_SUFFIXES = tuple(OUTPUT_TYPES)


def output_topic(suffix: str, node_name: str = NODE_NAME, namespace: str = '') -> str:
    """Absolute name of a private output, e.g. ``/xdrcdepth/depth``."""
    prefix = f'/{namespace.strip("/")}' if namespace.strip('/') else ''
    return f'{prefix}/{node_name}/{suffix}'


@dataclass(frozen=True)
class MessageClasses:
    """Output message classes of one flavour (rclpy or rosbags).

    ``roi`` (``sensor_msgs/RegionOfInterest``) is needed for rosbags classes only, whose
    fields have no defaults.
    """

    image: type
    camera_info: type
    cloud: type
    point_field: type
    roi: type | None = None
    compressed: type | None = None
    """``sensor_msgs/CompressedImage``, needed only with ``publish_compressed``."""

    @classmethod
    def from_typestore(cls, store: Any) -> MessageClasses:
        """The ``rosbags`` classes of a type store."""
        types = store.types
        return cls(types['sensor_msgs/msg/Image'], types['sensor_msgs/msg/CameraInfo'],
                   types['sensor_msgs/msg/PointCloud2'], types['sensor_msgs/msg/PointField'],
                   types['sensor_msgs/msg/RegionOfInterest'],
                   types['sensor_msgs/msg/CompressedImage'])


def output_camera(result: DepthResult, camera: conversions.CameraModel) -> conversions.CameraModel:
    """The CameraInfo model of ``result.depth``: its size and K, P mapped like K.

    The pipeline's pixel mapping (scale + crop) is ``K_out K_in^-1``; it maps P the same way.
    """
    height, width = result.depth.shape
    affine = result.K @ np.linalg.inv(camera.K)
    return conversions.CameraModel(K=result.K, P=affine @ camera.P, D=camera.D, width=width,
                                   height=height, distortion_model=camera.distortion_model,
                                   R=camera.R)


def output_messages(result: DepthResult, camera: conversions.CameraModel, header: Any,
                    config: NodeConfig, classes: MessageClasses, max_depth: float,
                    wanted: Callable[[str], bool] = lambda suffix: True) -> list[tuple[str, Any]]:
    """The node's output messages for one pipeline result, in publishing order.

    ``depth`` (``depth_encoding``: 32FC1 m with NaN invalid, or 16UC1 mm with 0 invalid) and
    ``camera_info`` always; ``depth_color``, ``saliency_overlay`` (both rgb8) and ``points``
    (x, y, z float32 in the camera optical frame; organised with ``points_organized``) when
    enabled in ``config`` and ``wanted``; with ``publish_compressed`` also
    ``depth/compressedDepth`` (the compressedDepth transport's PNG) and
    ``depth_color/compressed`` (JPEG, when ``publish_color``).

    Args:
        result: the pipeline result.
        camera: CameraInfo model of the input image.
        header: the input image's header (stamp and frame_id are reused).
        config: node configuration (encoding, optional outputs, colour range, stride).
        classes: message classes to build.
        max_depth: the model's max depth (colour range when ``color_max_depth_m`` is 0), m.
        wanted: whether an optional output is rendered (the node: it has a subscriber; they
            cost milliseconds).

    Returns:
        ``(suffix, message)`` pairs, ``suffix`` in :data:`OUTPUT_SUFFIXES`.
    """
    depth = conversions.depth_to_image_array(result.depth, config.depth_encoding)
    out = [('depth', conversions.make_image(classes.image, header, depth,
                                            config.depth_encoding)),
           ('camera_info', conversions.make_camera_info(
               classes.camera_info, header, output_camera(result, camera), roi_cls=classes.roi))]
    if config.publish_compressed and wanted('depth/compressedDepth'):
        fmt, data = conversions.compressed_depth_payload(depth, config.depth_encoding, max_depth)
        out.append(('depth/compressedDepth', conversions.make_compressed_image(
            classes.compressed, header, data, fmt)))
    raw_color = config.publish_color and wanted('depth_color')
    jpeg_color = (config.publish_color and config.publish_compressed
                  and wanted('depth_color/compressed'))
    if raw_color or jpeg_color:  # one colour map for both
        color = visualize.colorize_depth(result.depth, config.color_max_depth_m or max_depth)
    if raw_color:
        out.append(('depth_color', conversions.make_image(classes.image, header, color, 'rgb8')))
    if jpeg_color:
        out.append(('depth_color/compressed', conversions.make_compressed_image(
            classes.compressed, header, conversions.encode_jpeg(color, JPEG_QUALITY),
            'rgb8; jpeg compressed bgr8')))
    if config.publish_saliency and result.saliency is not None and wanted('saliency_overlay'):
        overlay = visualize.saliency_overlay(result.image, result.saliency)
        out.append(('saliency_overlay', conversions.make_image(classes.image, header, overlay,
                                                               'rgb8')))
    if config.publish_points and wanted('points'):
        points = conversions.depth_to_points(result.depth, result.K, config.points_stride,
                                             organized=config.points_organized)
        out.append(('points', conversions.make_pointcloud2(
            classes.cloud, classes.point_field, header, conversions.xyz_cloud_array(points))))
    return out
