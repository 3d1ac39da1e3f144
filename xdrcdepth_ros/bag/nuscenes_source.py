"""Which nuScenes sensor files go into a bag, in time order, and what ROS frames they get.

Works from the JSON tables alone (:class:`~xdrcdepth_ros.core.nuscenes_io.NuScenesTables`), so the
bundled extract (no map PNGs, which nuscenes-devkit's ``NuScenes`` class requires) and full
v1.0-mini/trainval downloads go through the same code. Every ``sample_data`` record of the chosen
scenes and channels is used: keyframes and, when the dataset has them, the sweeps between them
(``is_key_frame`` false).

Frame names (REP 103/105): ``odom`` → ``base_link`` from the ego poses; ``base_link`` → one frame
per sensor, the lower-case channel name, with ``_optical`` appended for cameras because a nuScenes
camera calibration already is the optical frame (z forward, x right, y down).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import invert_transform, transform_from_record
from xdrcdepth_ros.core.nuscenes_io import NuScenesTables, SensorRecord

ODOM_FRAME = 'odom'
BASE_FRAME = 'base_link'


def sensor_frame(channel: str) -> str:
    """ROS frame id of a nuScenes channel: ``CAM_FRONT`` → ``cam_front_optical``."""
    frame = channel.lower()
    return frame + '_optical' if channel.startswith('CAM') else frame


def raw_image_topic(camera: str) -> str:
    """Base image topic of a camera, e.g. ``/CAM_FRONT/image_raw`` (image_transport style)."""
    return f'/{camera}/image_raw'


def image_topic(camera: str) -> str:
    """Compressed image topic of a camera, e.g. ``/CAM_FRONT/image_raw/compressed``."""
    return raw_image_topic(camera) + '/compressed'


def camera_info_topic(camera: str) -> str:
    """CameraInfo topic of a camera, e.g. ``/CAM_FRONT/camera_info``."""
    return f'/{camera}/camera_info'


def cloud_topic(channel: str) -> str:
    """PointCloud2 topic of a radar or LiDAR, e.g. ``/RADAR_FRONT``."""
    return f'/{channel}'


def static_cam_from_sensor(cam_calibration: dict, sensor_calibration: dict) -> np.ndarray:
    """(4, 4) ``T_cam_from_sensor`` through ``base_link`` only (no ego-motion compensation).

    This is what a static TF lookup gives, and what the node's ``radar_extrinsics`` parameter
    holds. It differs from the motion-compensated chain by the ego motion between the two
    stamps (about v * dt: 0.5 m at 10 m/s and 50 ms).
    """
    return (invert_transform(transform_from_record(cam_calibration))
            @ transform_from_record(sensor_calibration))


@dataclass(frozen=True)
class SceneRecords:
    """The sensor files of one scene.

    Attributes:
        name: scene name, e.g. ``scene-0916``.
        records: sample_data records resolved to files, sorted by timestamp (µs) then channel.
        calibrations: channel → ``calibrated_sensor`` record (one vehicle per scene).
    """

    name: str
    records: tuple[SensorRecord, ...]
    calibrations: dict[str, dict]

    @property
    def start_ns(self) -> int:
        """Stamp of the first record, ns."""
        return self.records[0].timestamp_us * 1000

    @property
    def end_ns(self) -> int:
        """Stamp of the last record, ns."""
        return self.records[-1].timestamp_us * 1000


def collect_scenes(dataroot: str | Path, *, version: str = 'v1.0-mini',
                   scenes: list[str] | None = None, channels: list[str]) -> list[SceneRecords]:
    """Resolve the sensor files of ``scenes`` (default: all) for ``channels``.

    Every file is checked to exist before anything is written, so a dataroot with missing files
    fails early with the missing path.

    Raises:
        DatasetError: missing tables or files, unknown scene or channel names (the message lists
            the available ones), or a scene without data on a requested channel.
    """
    tables = NuScenesTables(dataroot, version)
    scene_by_name = {scene['name']: token for token, scene in tables.tables['scene'].items()}
    wanted = sorted(scene_by_name) if scenes is None else list(scenes)
    unknown = [name for name in wanted if name not in scene_by_name]
    if unknown:
        raise DatasetError(f'unknown scene(s) {", ".join(unknown)} in {tables.dataroot}/{version}'
                           f'; available: {", ".join(sorted(scene_by_name))}')
    channel_of = tables.channel_of
    known_channels = set(channel_of.values())
    missing = [channel for channel in channels if channel not in known_channels]
    if missing:
        raise DatasetError(f'unknown channel(s) {", ".join(missing)}; the dataset has '
                           f'{", ".join(sorted(known_channels))}')
    scene_of_sample = {token: sample['scene_token']
                       for token, sample in tables.tables['sample'].items()}
    by_scene: dict[str, list[dict]] = {scene_by_name[name]: [] for name in wanted}
    for record in tables.tables['sample_data'].values():
        scene_token = scene_of_sample.get(record['sample_token'])
        if scene_token in by_scene and channel_of[record['calibrated_sensor_token']] in channels:
            by_scene[scene_token].append(record)
    result = []
    for name in wanted:
        raw = by_scene[scene_by_name[name]]
        resolved = sorted((tables.sensor_record(record) for record in raw),
                          key=lambda r: (r.timestamp_us, r.channel))
        present = {r.channel for r in resolved}
        absent = [channel for channel in channels if channel not in present]
        if absent:
            raise DatasetError(f'scene {name} has no data for channel(s) {", ".join(absent)}')
        calibrations: dict[str, dict] = {}
        for record in resolved:
            calibrations.setdefault(record.channel, record.calibrated_sensor)
        result.append(SceneRecords(name, tuple(resolved), calibrations))
    return result
