"""A small nuScenes reader for the table + ``samples/`` layout (numpy only, no devkit).

nuscenes-devkit's ``NuScenes`` class needs the map PNGs, which small extracts (such as the frames
bundled in ``test/data/nuscenes``) lack. This reader parses the JSON tables directly and reads the
sensor files with numpy; the devkit's ``RadarPointCloud`` / ``LidarPointCloud`` readers are the
reference it is tested against.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import nuscenes_cam_from_sensor

# Continental ARS408 fields in nuScenes radar PCDs, with their native types.
RADAR_FIELDS: tuple[tuple[str, str], ...] = (
    ('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('dyn_prop', 'i1'), ('id', '<i2'), ('rcs', '<f4'),
    ('vx', '<f4'), ('vy', '<f4'), ('vx_comp', '<f4'), ('vy_comp', '<f4'),
    ('is_quality_valid', 'i1'), ('ambig_state', 'i1'), ('x_rms', 'i1'), ('y_rms', 'i1'),
    ('invalid_state', 'i1'), ('pdh0', 'i1'), ('vx_rms', 'i1'), ('vy_rms', 'i1'),
)
LIDAR_FIELDS: tuple[str, ...] = ('x', 'y', 'z', 'intensity', 'ring')
_PCD_TYPES = {('F', 4): '<f4', ('F', 8): '<f8', ('I', 1): 'i1', ('I', 2): '<i2', ('I', 4): '<i4',
              ('U', 1): 'u1', ('U', 2): '<u2', ('U', 4): '<u4'}


def read_pcd(path: str | Path) -> np.ndarray:
    """Read a binary PCD v0.7 file (as nuScenes radar files are) into a structured array.

    Returns:
        (N,) structured array with one field per PCD field, in the file's native types.

    Raises:
        DatasetError: the file is missing, not binary PCD, or truncated.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f'cannot read PCD file {path}: {err}') from err
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = raw.find(b'\n', offset)
        if end < 0:
            raise DatasetError(f'{path}: PCD header has no DATA line')
        line = raw[offset:end].decode('ascii', errors='replace').strip()
        offset = end + 1
        if not line or line.startswith('#'):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == 'DATA':
            break
    if header['DATA'] != ['binary']:
        raise DatasetError(f'{path}: only binary PCD is supported, got DATA {header["DATA"]}')
    try:
        names = header['FIELDS']
        dtype = np.dtype([(name, _PCD_TYPES[(kind, int(size))]) for name, kind, size
                          in zip(names, header['TYPE'], header['SIZE'])])
        count = int(header['POINTS'][0])
    except (KeyError, ValueError) as err:
        raise DatasetError(f'{path}: malformed PCD header ({err})') from err
    if len(raw) - offset < count * dtype.itemsize:
        raise DatasetError(f'{path}: truncated, header says {count} points of {dtype.itemsize} '
                           f'bytes but {len(raw) - offset} bytes follow')
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).copy()


def read_lidar_bin(path: str | Path) -> np.ndarray:
    """Read a nuScenes LIDAR_TOP ``.pcd.bin`` file: (N, 5) float32 x, y, z, intensity, ring."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype='<f4')
    except OSError as err:
        raise DatasetError(f'cannot read LiDAR file {path}: {err}') from err
    if data.size % 5:
        raise DatasetError(f'{path}: size {data.size * 4} bytes is not a multiple of 5 float32')
    return data.reshape(-1, 5)


def radar_xyz(points: np.ndarray) -> np.ndarray:
    """(N, 3) float64 x, y, z of a structured radar array."""
    return np.stack([points['x'], points['y'], points['z']], axis=1).astype(np.float64)


@dataclass(frozen=True)
class SensorRecord:
    """One sample_data record resolved against its calibration and ego pose."""

    channel: str
    path: Path
    timestamp_us: int
    calibrated_sensor: dict
    ego_pose: dict
    is_key_frame: bool
    token: str


@dataclass(frozen=True)
class Keyframe:
    """A nuScenes sample: the camera with the sensors recorded around it."""

    sample_token: str
    scene_name: str
    camera: SensorRecord
    sensors: dict[str, SensorRecord]

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsics of the camera."""
        return np.asarray(self.camera.calibrated_sensor['camera_intrinsic'], dtype=np.float64)

    def T_cam_from(self, channel: str) -> np.ndarray:
        """(4, 4) camera ← sensor transform, ego motion between the timestamps compensated."""
        sensor = self.sensors[channel]
        return nuscenes_cam_from_sensor(sensor.calibrated_sensor, sensor.ego_pose,
                                        self.camera.ego_pose, self.camera.calibrated_sensor)

    def read_image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB camera image."""
        import cv2

        image = cv2.imread(str(self.camera.path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f'cannot read image {self.camera.path}')
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def read_radar(self, channel: str = 'RADAR_FRONT') -> np.ndarray:
        """(N,) structured radar points (all 18 ARS408 fields), radar frame."""
        return read_pcd(self.sensors[channel].path)

    def read_lidar(self, channel: str = 'LIDAR_TOP') -> np.ndarray:
        """(N, 5) float32 LiDAR points, LiDAR frame."""
        return read_lidar_bin(self.sensors[channel].path)


class NuScenesTables:
    """The JSON tables of a nuScenes version folder, indexed by token.

    Args:
        dataroot: folder holding ``samples/`` and the version folder.
        version: table folder name, e.g. ``v1.0-mini``.
    """

    _TABLES = ('sample', 'sample_data', 'calibrated_sensor', 'ego_pose', 'sensor', 'scene')

    def __init__(self, dataroot: str | Path, version: str = 'v1.0-mini') -> None:
        self.dataroot = Path(dataroot)
        table_dir = self.dataroot / version
        self.tables: dict[str, dict[str, dict]] = {}
        for name in self._TABLES:
            path = table_dir / f'{name}.json'
            try:
                records = json.loads(path.read_text())
            except OSError as err:
                raise DatasetError(f'missing nuScenes table {path}') from err
            except json.JSONDecodeError as err:
                raise DatasetError(f'corrupt nuScenes table {path}: {err}') from err
            self.tables[name] = {record['token']: record for record in records}
        #: calibrated_sensor token -> channel name (e.g. ``RADAR_FRONT``).
        self.channel_of: dict[str, str] = {
            token: self.tables['sensor'][cs['sensor_token']]['channel']
            for token, cs in self.tables['calibrated_sensor'].items()}
        self._by_sample: dict[str, dict[str, dict]] = {}
        for record in self.tables['sample_data'].values():
            channel = self.channel_of[record['calibrated_sensor_token']]
            self._by_sample.setdefault(record['sample_token'], {})
            if record.get('is_key_frame', True):
                self._by_sample[record['sample_token']][channel] = record

    def sensor_record(self, sample_data: dict) -> SensorRecord:
        """Resolve a sample_data record into a :class:`SensorRecord` (file must exist)."""
        path = self.dataroot / sample_data['filename']
        if not path.is_file():
            raise DatasetError(f'missing sensor file {path}')
        return SensorRecord(
            channel=self.channel_of[sample_data['calibrated_sensor_token']], path=path,
            timestamp_us=int(sample_data['timestamp']),
            calibrated_sensor=self.tables['calibrated_sensor'][sample_data['calibrated_sensor_token']],
            ego_pose=self.tables['ego_pose'][sample_data['ego_pose_token']],
            is_key_frame=bool(sample_data.get('is_key_frame', True)), token=sample_data['token'])

    def keyframes(self, camera: str = 'CAM_FRONT',
                  scenes: list[str] | None = None) -> Iterator[Keyframe]:
        """Yield keyframes that have ``camera``, sorted by scene name then time."""
        samples = sorted(self.tables['sample'].values(),
                         key=lambda s: (self.tables['scene'][s['scene_token']]['name'],
                                        s['timestamp']))
        for sample in samples:
            scene_name = self.tables['scene'][sample['scene_token']]['name']
            if scenes is not None and scene_name not in scenes:
                continue
            records = self._by_sample.get(sample['token'], {})
            if camera not in records:
                continue
            sensors = {channel: self.sensor_record(record) for channel, record in records.items()}
            yield Keyframe(sample['token'], scene_name, sensors[camera], sensors)
