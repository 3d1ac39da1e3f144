"""nuScenes → rosbag2 (sqlite3 or mcap) with ``rosbags``: no ROS install needed.

Topics per bag (all stamps are the nuScenes µs timestamps × 1000, header stamp = bag time):

====================================  ==============================  ========================
topic                                 type                            frame
====================================  ==============================  ========================
``/CAM_X/image_raw/compressed``       sensor_msgs/CompressedImage     ``cam_x_optical``
``/CAM_X/camera_info``                sensor_msgs/CameraInfo          ``cam_x_optical``
``/RADAR_X``                          sensor_msgs/PointCloud2         ``radar_x``
``/LIDAR_TOP``                        sensor_msgs/PointCloud2         ``lidar_top``
``/tf``                               tf2_msgs/TFMessage              ``odom`` → ``base_link``
``/tf_static`` (transient local)      tf2_msgs/TFMessage              ``base_link`` → sensors
====================================  ==============================  ========================

* Images are the original JPEG bytes (no re-encoding); CameraInfo has ``k``, ``p = [K | 0]``,
  ``d = 0`` with ``plumb_bob`` (nuScenes images are undistorted).
* Radar clouds carry all 18 ARS408 fields in their native types (int8 / int16 / float32).
* ``/tf_static`` is written at the start of every scene because each scene may come from a
  different vehicle; its QoS (reliable, transient local, depth 1) is recorded in metadata.yaml so
  ``ros2 bag play`` re-latches it.
* For nodes without tf2 the bag folder also gets ``params/<scene>.<camera>.yaml``: node parameters
  with ``radar_extrinsics`` (camera optical ← radar through ``base_link``, i.e. static, not
  ego-motion compensated) and the topic names. ``custom_data`` in metadata.yaml lists the scenes
  with their time windows (key ``xdrcdepth.scenes``, JSON).
"""
from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.bag.io import BagWriter, QOS_LATCHED, Storage
from xdrcdepth_ros.bag.messages import header, jpeg_size, tf_message, transform_stamped
from xdrcdepth_ros.bag.nuscenes_source import (
    BASE_FRAME, camera_info_topic, cloud_topic, collect_scenes,
    image_topic, ODOM_FRAME, raw_image_topic, SceneRecords, sensor_frame, static_cam_from_sensor)
from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import extrinsics_from_transform, transform_from_record
from xdrcdepth_ros.core.nuscenes_io import read_lidar_bin, read_pcd, SensorRecord

RADAR_CHANNELS = ('RADAR_FRONT', 'RADAR_FRONT_LEFT', 'RADAR_FRONT_RIGHT', 'RADAR_BACK_LEFT',
                  'RADAR_BACK_RIGHT')
LIDAR_CHANNEL = 'LIDAR_TOP'
LIDAR_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'),
                        ('ring', '<f4')])
SCENES_KEY = 'xdrcdepth.scenes'


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_nuscenes` wrote.

    Attributes:
        path: the bag folder.
        storage: storage plugin used.
        scenes: scene names, in bag order.
        counts: topic → number of messages.
        params_files: node parameter files written into the bag folder.
    """

    path: Path
    storage: Storage
    scenes: tuple[str, ...]
    counts: dict[str, int]
    params_files: tuple[Path, ...]


def _is_camera(channel: str) -> bool:
    return channel.startswith('CAM')


def _is_radar(channel: str) -> bool:
    return channel.startswith('RADAR')


def convert_nuscenes(dataroot: str | Path, out: str | Path, *, version: str = 'v1.0-mini',
                     scenes: Sequence[str] | None = None,
                     cameras: Sequence[str] = ('CAM_FRONT',),
                     radars: Sequence[str] = RADAR_CHANNELS, lidar: bool = True,
                     storage: Storage | str = Storage.SQLITE3, overwrite: bool = False,
                     progress: bool = True) -> ConversionSummary:
    """Write the chosen nuScenes scenes and channels into a new rosbag2 folder ``out``.

    Args:
        dataroot: folder with ``samples/`` (``sweeps/``) and the ``version`` table folder.
        out: bag folder to create (written atomically; nothing is left on failure).
        version: table folder name (``v1.0-mini``, ``v1.0-trainval``, ...).
        scenes: scene names; default all scenes in the tables.
        cameras: camera channels, at least one.
        radars: radar channels (may be empty).
        lidar: include ``LIDAR_TOP`` (needed by ``xdrcdepth evaluate``).
        storage: ``sqlite3`` or ``mcap``.
        overwrite: replace an existing ``out`` once the new bag is complete.
        progress: show a tqdm progress bar.

    Raises:
        DatasetError: missing or corrupt tables or sensor files (names the file), unknown scenes
            or channels.
        BagError: ``out`` exists (and not ``overwrite``) or cannot be written.
    """
    from tqdm import tqdm

    cameras, radars = list(cameras), list(radars)
    if not cameras:
        raise ValueError('at least one camera channel is needed (e.g. CAM_FRONT)')
    for channel in cameras:
        if not _is_camera(channel):
            raise ValueError(f'{channel} is not a camera channel (expected CAM_*)')
    for channel in radars:
        if not _is_radar(channel):
            raise ValueError(f'{channel} is not a radar channel (expected RADAR_*)')
    channels = cameras + radars + ([LIDAR_CHANNEL] if lidar else [])
    scene_records = collect_scenes(dataroot, version=version,
                                   scenes=None if scenes is None else list(scenes),
                                   channels=channels)
    total = sum(len(scene.records) for scene in scene_records)
    params_files = []
    with BagWriter(out, storage=storage, overwrite=overwrite) as writer:
        bar = tqdm(total=total, desc='nuscenes-to-bag', unit='file', disable=not progress)
        with bar:
            for scene in scene_records:
                _write_scene(writer, scene, bar)
                for camera in cameras:
                    name = f'params/{scene.name}.{camera}.yaml'
                    writer.add_file(name, node_params_yaml(scene, camera, radars))
                    params_files.append(Path(out) / name)
        writer.set_custom_data(SCENES_KEY, json.dumps(
            [{'name': s.name, 'start_ns': s.start_ns, 'end_ns': s.end_ns}
             for s in scene_records]))
        counts = dict(writer.counts)
    return ConversionSummary(Path(out), Storage(storage),
                             tuple(s.name for s in scene_records), counts, tuple(params_files))


def _write_scene(writer: BagWriter, scene: SceneRecords, bar: Any) -> None:
    store = writer.store
    static = [transform_stamped(store, scene.start_ns, BASE_FRAME, sensor_frame(channel),
                                transform_from_record(calibration))
              for channel, calibration in sorted(scene.calibrations.items())]
    writer.write('/tf_static', scene.start_ns, tf_message(store, static), qos=QOS_LATCHED)
    posed: set[int] = set()
    for record in scene.records:
        stamp_ns = record.timestamp_us * 1000
        if stamp_ns not in posed:
            posed.add(stamp_ns)
            pose = transform_from_record(record.ego_pose)
            writer.write('/tf', stamp_ns, tf_message(store, [transform_stamped(
                store, stamp_ns, ODOM_FRAME, BASE_FRAME, pose)]))
        if _is_camera(record.channel):
            _write_camera(writer, record, stamp_ns)
        else:
            _write_cloud(writer, record, stamp_ns)
        bar.update(1)


def _write_camera(writer: BagWriter, record: SensorRecord, stamp_ns: int) -> None:
    store = writer.store
    frame_id = sensor_frame(record.channel)
    try:
        jpeg = record.path.read_bytes()
    except OSError as err:
        raise DatasetError(f'cannot read image {record.path}: {err}') from err
    width, height = jpeg_size(jpeg, str(record.path))
    K = np.asarray(record.calibrated_sensor['camera_intrinsic'], dtype=np.float64)
    if K.shape != (3, 3):
        raise DatasetError(f'calibrated_sensor of {record.path} has no 3x3 camera_intrinsic')
    types = store.types
    # CameraInfo first: a node that sees the image before any CameraInfo skips that frame.
    writer.write(camera_info_topic(record.channel), stamp_ns, conversions.make_camera_info(
        types['sensor_msgs/msg/CameraInfo'], header(store, stamp_ns, frame_id),
        conversions.CameraModel.from_K(K, width, height),
        roi_cls=types['sensor_msgs/msg/RegionOfInterest']))
    writer.write(image_topic(record.channel), stamp_ns, conversions.make_compressed_image(
        types['sensor_msgs/msg/CompressedImage'], header(store, stamp_ns, frame_id), jpeg))


def _write_cloud(writer: BagWriter, record: SensorRecord, stamp_ns: int) -> None:
    store = writer.store
    if _is_radar(record.channel):
        points = read_pcd(record.path)
    else:
        points = np.ascontiguousarray(read_lidar_bin(record.path)).view(LIDAR_DTYPE)[:, 0]
    msg = conversions.make_pointcloud2(
        store.types['sensor_msgs/msg/PointCloud2'], store.types['sensor_msgs/msg/PointField'],
        header(store, stamp_ns, sensor_frame(record.channel)), points)
    writer.write(cloud_topic(record.channel), stamp_ns, msg)


def radar_extrinsics(scene: SceneRecords, camera: str, radars: Sequence[str]) -> list[float]:
    """Flat ``radar_extrinsics`` parameter: 7 doubles (x, y, z, qx, qy, qz, qw) per radar.

    Each block is camera optical ← radar through ``base_link`` (static; see
    :func:`~xdrcdepth_ros.bag.nuscenes_source.static_cam_from_sensor`).
    """
    values: list[float] = []
    for radar in radars:
        values += extrinsics_from_transform(
            static_cam_from_sensor(scene.calibrations[camera], scene.calibrations[radar]))
    return values


def node_params_yaml(scene: SceneRecords, camera: str, radars: Sequence[str]) -> str:
    """Node parameter file (``ros__parameters`` YAML) for one scene and camera of this bag."""
    params = {
        'image_topic': raw_image_topic(camera),
        'image_transport': 'compressed',
        'camera_info_topic': camera_info_topic(camera),
        'radar_topics': [cloud_topic(radar) for radar in radars],
        'extrinsics_source': 'parameters',
        'radar_extrinsics': radar_extrinsics(scene, camera, radars),
    }
    note = (f'# xdrcdepth node parameters for {scene.name}, {camera} (nuscenes-to-bag).\n'
            '# radar_extrinsics: per radar x, y, z, qx, qy, qz, qw of camera optical <- radar,\n'
            '# chained through base_link from the calibrations (static; no ego-motion\n'
            '# compensation). They are valid for this scene\'s vehicle only.\n')
    return note + yaml.safe_dump({'/**': {'ros__parameters': params}}, sort_keys=False)
