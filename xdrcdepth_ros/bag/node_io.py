"""The node's message → frame and result → message steps, ROS-free, for offline replay.

These mirror ``XdrcDepthNode.build_frame`` and ``XdrcDepthNode._publish`` step for step (same
conversions, same skip reasons, same output messages) but take the message classes and the
extrinsics as arguments, so they run on ``rosbags`` messages without rclpy. A test keeps replay
and the real node bit-identical on the same bag. (Once node.py calls helpers like these itself,
replay should import those instead.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from xdrcdepth_ros import conversions, visualize
from xdrcdepth_ros.errors import XdrcDepthError
from xdrcdepth_ros.frame import Frame, RadarSweep
from xdrcdepth_ros.node_params import NodeConfig

NODE_NAME = 'xdrcdepth'
OUTPUT_SUFFIXES = ('depth', 'camera_info', 'depth_color', 'saliency_overlay', 'points')
"""Private output topics of the node (``~/<suffix>``)."""
OUTPUT_TYPES = {
    'depth': 'sensor_msgs/msg/Image', 'camera_info': 'sensor_msgs/msg/CameraInfo',
    'depth_color': 'sensor_msgs/msg/Image', 'saliency_overlay': 'sensor_msgs/msg/Image',
    'points': 'sensor_msgs/msg/PointCloud2',
}

Extrinsics = Callable[[int, str, str, int], 'np.ndarray | None']
"""``(radar index, radar frame, camera frame, radar stamp ns) -> T_cam<-radar (4, 4) or None``."""
Skip = Callable[[str, str], None]
"""``(reason, message)``: count and report a skipped frame or sweep."""


def output_topic(suffix: str, node_name: str = NODE_NAME, namespace: str = '') -> str:
    """Absolute name of a private output, e.g. ``/xdrcdepth/depth``."""
    prefix = f'/{namespace.strip("/")}' if namespace.strip('/') else ''
    return f'{prefix}/{node_name}/{suffix}'


def load_params_file(path: str | Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """Parameter values for ``node_name`` from a ROS 2 parameter YAML file.

    Reads the ``ros__parameters`` of the ``/**`` entry, then of ``node_name`` / ``/node_name``
    (later entries win, as with ``--params-file``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not YAML, or no ``ros__parameters`` for this node.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'parameter file {str(path)!r} not found')
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f'parameter file {path} is not valid YAML: {err}') from err
    values: dict[str, Any] = {}
    found = False
    for key in ('/**', node_name, f'/{node_name}'):
        entry = document.get(key) if isinstance(document, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get('ros__parameters'), dict):
            values.update(entry['ros__parameters'])
            found = True
    if not found:
        raise ValueError(f'parameter file {path} has no ros__parameters for /** or {node_name}')
    return values


def radar_field_map(config: NodeConfig, metadata: Any) -> conversions.RadarFieldMap:
    """The PointCloud2 → radar channel mapping, checked against the model like the node does.

    Raises:
        ValueError: ``radar_fields`` has a different count than the model's radar channels.
    """
    fields = config.radar_fields
    expected = len(metadata.radar_channels) - 1
    if len(fields) != expected:
        raise ValueError(f'radar_fields has {len(fields)} names {list(fields)} but the model '
                         f'takes {expected} radar channels after depth '
                         f'({list(metadata.radar_channels)})')
    return conversions.RadarFieldMap(fields)


def frame_from_messages(synced: Any, camera: conversions.CameraModel | None, config: NodeConfig,
                        field_map: conversions.RadarFieldMap, extrinsics: Extrinsics,
                        skip: Skip) -> Frame | None:
    """Decode a synced image + radar set into a :class:`Frame` (None when skipped).

    Skip reasons are the node's diagnostic counter names (``skipped_no_camera_info``,
    ``skipped_bad_image``, ``skipped_size_mismatch``, ``skipped_no_usable_radar``,
    ``radar_unused_bad_cloud``, ``radar_unused_no_transform``).

    Args:
        synced: :class:`~xdrcdepth_ros.sync.SyncedFrame` whose items are image / PointCloud2
            messages (rclpy or rosbags).
        camera: the latest valid CameraInfo model, or None.
        config: node configuration (image transport, radar topics, require_radar).
        field_map: radar field mapping (:func:`radar_field_map`).
        extrinsics: camera ← radar lookup.
        skip: called with (reason, message) for every skipped frame or unused radar sweep.
    """
    msg = synced.image
    if camera is None:
        skip('skipped_no_camera_info', f'no valid CameraInfo on {config.camera_info_topic} yet; '
             'frames wait for one')
        return None
    try:
        image = (conversions.compressed_to_rgb(msg) if config.image_transport == 'compressed'
                 else conversions.image_to_rgb(msg))
    except (XdrcDepthError, ValueError) as err:
        skip('skipped_bad_image', f'image skipped: {err}')
        return None
    if image.shape[:2] != (camera.height, camera.width):
        skip('skipped_size_mismatch', f'image is {image.shape[1]}x{image.shape[0]} but '
             f'CameraInfo says {camera.width}x{camera.height}; frame skipped')
        return None
    sweeps = []
    for index, matches in enumerate(synced.radars):
        for radar in matches:
            sweep = _radar_sweep(index, radar.item, msg.header.frame_id, config, field_map,
                                 extrinsics, skip)
            if sweep is not None:
                sweeps.append(sweep)
    if config.require_radar and not sweeps:
        skip('skipped_no_usable_radar', 'require_radar is set and no radar sweep of this frame '
             'was usable; frame skipped')
        return None
    return Frame(image=image, K=camera.K, radar=tuple(sweeps), stamp_ns=synced.stamp_ns,
                 frame_id=msg.header.frame_id)


def _radar_sweep(index: int, msg: Any, camera_frame: str, config: NodeConfig,
                 field_map: conversions.RadarFieldMap, extrinsics: Extrinsics,
                 skip: Skip) -> RadarSweep | None:
    topic = config.radar_topics[index]
    try:
        cloud = conversions.pointcloud2_to_array(msg)
        missing = conversions.missing_radar_fields(cloud.dtype, field_map)
        if missing:
            raise XdrcDepthError(f'no field(s) {list(missing)} (it has '
                                 f'{list(cloud.dtype.names or ())}); set radar_fields')
        points, features = conversions.radar_from_cloud(cloud, field_map)
    except (XdrcDepthError, ValueError) as err:
        skip('radar_unused_bad_cloud', f'radar sweep on {topic} not used: {err}')
        return None
    stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
    transform = extrinsics(index, msg.header.frame_id, camera_frame, stamp_ns)
    if transform is None:
        skip('radar_unused_no_transform', f'no transform {camera_frame!r} <- '
             f'{msg.header.frame_id!r} at {stamp_ns} ns; radar on {topic} not used')
        return None
    return RadarSweep(points=points, features=features, T_cam_from_radar=transform,
                      stamp_ns=stamp_ns, frame_id=msg.header.frame_id)


@dataclass(frozen=True)
class MessageClasses:
    """Output message classes of one flavour (rclpy or rosbags)."""

    image: type
    camera_info: type
    cloud: type
    point_field: type
    roi: type | None = None

    @classmethod
    def from_typestore(cls, store: Any) -> 'MessageClasses':
        """The ``rosbags`` classes of a type store."""
        types = store.types
        return cls(types['sensor_msgs/msg/Image'], types['sensor_msgs/msg/CameraInfo'],
                   types['sensor_msgs/msg/PointCloud2'], types['sensor_msgs/msg/PointField'],
                   types['sensor_msgs/msg/RegionOfInterest'])


def output_messages(result: Any, camera: conversions.CameraModel, header: Any,
                    config: NodeConfig, classes: MessageClasses, max_depth: float,
                    wanted: Callable[[str], bool] = lambda suffix: True) -> list[tuple[str, Any]]:
    """The node's output messages for one :class:`~xdrcdepth_ros.pipeline.DepthResult`.

    Args:
        result: the pipeline result.
        camera: CameraInfo model of the input image.
        header: the input image's header (stamp and frame_id are reused).
        config: node configuration (encoding, optional outputs, colour range, stride).
        classes: message classes to build.
        max_depth: the model's max depth (colour range when ``color_max_depth_m`` is 0), m.
        wanted: whether an optional output is rendered (the node: has a subscriber).

    Returns:
        ``(suffix, message)`` pairs, ``suffix`` in :data:`OUTPUT_SUFFIXES`.
    """
    height, width = result.depth.shape
    depth = conversions.depth_to_image_array(result.depth, config.depth_encoding)
    out = [('depth', conversions.make_image(classes.image, header, depth,
                                            config.depth_encoding))]
    # The pixel affine the pipeline applied (scale + crop) maps P as it maps K.
    affine = result.K @ np.linalg.inv(camera.K)
    model = conversions.CameraModel(K=result.K, P=affine @ camera.P, D=camera.D, width=width,
                                    height=height, distortion_model=camera.distortion_model,
                                    R=camera.R)
    out.append(('camera_info', conversions.make_camera_info(classes.camera_info, header, model,
                                                            roi_cls=classes.roi)))
    if config.publish_color and wanted('depth_color'):
        color = visualize.colorize_depth(result.depth, config.color_max_depth_m or max_depth)
        out.append(('depth_color', conversions.make_image(classes.image, header, color, 'rgb8')))
    if config.publish_saliency and result.saliency is not None and wanted('saliency_overlay'):
        overlay = visualize.saliency_overlay(result.image, result.saliency)
        out.append(('saliency_overlay', conversions.make_image(classes.image, header, overlay,
                                                               'rgb8')))
    if config.publish_points and wanted('points'):
        points = conversions.depth_to_points(result.depth, result.K, config.points_stride)
        out.append(('points', conversions.make_pointcloud2(
            classes.cloud, classes.point_field, header,
            conversions.xyz_cloud_array(points))))
    return out
