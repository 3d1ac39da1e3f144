"""Multi-scan accumulated LiDAR ground truth for nuScenes keyframes (numpy only).

CaFNet's ``ground_truth`` accumulates +-80 LIDAR_TOP sweeps into the keyframe camera and drops
points on moving objects (found with a panoptic segmentation network). Here the neighbouring
scans of the same scene that the tables list (sweeps in a full dataset; the other keyframes in
small extracts) are chained through ego poses into the keyframe camera, and points inside the
annotated 3-D boxes of vehicles, people and animals are dropped from every scan but the reference
one (annotations exist at keyframes; for sweeps between two keyframes the box centre is
interpolated in time). Static scenery therefore accumulates, while objects stay where the
reference scan sees them; the ego car's own returns are dropped from the neighbour scans too.
Box-based removal replaces the paper's image segmentation, which this package does not ship.
"""
from __future__ import annotations

import json

import numpy as np

from xdrcdepth_ros.core.geometry import (nuscenes_cam_from_sensor, transform_from_record,
                                         transform_from_wxyz)
from xdrcdepth_ros.core.nuscenes_io import Keyframe, NuScenesTables, read_lidar_bin

#: Category prefixes whose boxes are removed from the non-reference scans.
DYNAMIC_PREFIXES: tuple[str, ...] = ('vehicle.', 'human.', 'animal')
#: The ego car in its own frame (x forward from the rear axle, y left), metres, with a margin.
#: LIDAR_TOP records ~10k returns off the car's own roof; from a later scan they would land a
#: few metres in front of the keyframe camera at eye height, so neighbour scans drop them.
EGO_BOX_X_M = (-1.2, 3.4)
EGO_BOX_Y_M = (-1.1, 1.1)


class LidarAccumulator:
    """Accumulate LiDAR scans around a keyframe.

    Args:
        tables: the parsed nuScenes tables.
        version: table folder name (where the annotation tables live).
        channel: LiDAR channel.
        box_margin_m: boxes are grown by this much on every side before removing points.
    """

    def __init__(self, tables: NuScenesTables, version: str, channel: str = 'LIDAR_TOP',
                 box_margin_m: float = 0.3) -> None:
        self.tables = tables
        self.version = version
        self.channel = channel
        self.margin = float(box_margin_m)
        samples = tables.tables['sample']
        sensor_of = {token: tables.tables['sensor'][cs['sensor_token']]['channel']
                     for token, cs in tables.tables['calibrated_sensor'].items()}
        self._scans: dict[str, list[dict]] = {}
        for record in tables.tables['sample_data'].values():
            if sensor_of[record['calibrated_sensor_token']] != channel:
                continue
            sample = samples.get(record['sample_token'])
            if sample is None or not (tables.dataroot / record['filename']).is_file():
                continue
            self._scans.setdefault(sample['scene_token'], []).append(record)
        for scans in self._scans.values():
            scans.sort(key=lambda r: r['timestamp'])
        self._boxes = self._load_boxes()

    def _load_boxes(self) -> dict[str, list[dict]]:
        """Dynamic-object annotations per sample token (empty if the tables are missing)."""
        table_dir = self.tables.dataroot / self.version
        try:
            annotations = json.loads((table_dir / 'sample_annotation.json').read_text())
            instances = json.loads((table_dir / 'instance.json').read_text())
            categories = json.loads((table_dir / 'category.json').read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        name_of = {c['token']: c['name'] for c in categories}
        dynamic = {i['token'] for i in instances
                   if name_of.get(i['category_token'], '').startswith(DYNAMIC_PREFIXES)}
        by_token = {a['token']: a for a in annotations}
        out: dict[str, list[dict]] = {}
        for ann in annotations:
            if ann['instance_token'] in dynamic:
                out.setdefault(ann['sample_token'], []).append(
                    dict(ann, prev_ann=by_token.get(ann.get('prev', ''))))
        return out

    def neighbours(self, keyframe: Keyframe, count: int) -> list[dict]:
        """The reference scan record and up to ``count`` scans before and after it (same scene)."""
        reference = self.tables.tables['sample_data'][keyframe.sensors[self.channel].token]
        scene = self.tables.tables['sample'][reference['sample_token']]['scene_token']
        scans = self._scans.get(scene, [reference])
        index = next(i for i, r in enumerate(scans) if r['token'] == reference['token'])
        return scans[max(0, index - count):index + count + 1]

    def _boxes_at(self, record: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(centre, rotation, half size) of dynamic boxes at the scan's time, global frame."""
        sample = self.tables.tables['sample'][record['sample_token']]
        boxes = []
        for ann in self._boxes.get(record['sample_token'], []):
            centre = np.asarray(ann['translation'], dtype=np.float64)
            prev = ann.get('prev_ann')
            if not record.get('is_key_frame', True) and prev is not None:
                prev_sample = self.tables.tables['sample'].get(prev['sample_token'])
                if prev_sample is not None:
                    t0, t1 = prev_sample['timestamp'], sample['timestamp']
                    alpha = np.clip((record['timestamp'] - t0) / max(t1 - t0, 1), 0.0, 1.0)
                    centre = (1 - alpha) * np.asarray(prev['translation']) + alpha * centre
            rotation = transform_from_wxyz(np.zeros(3), ann['rotation'])[:3, :3]
            width, length, height = ann['size']
            half = np.array([length, width, height]) / 2 + self.margin
            boxes.append((centre, rotation, half))
        return boxes

    def accumulate(self, keyframe: Keyframe, count: int) -> np.ndarray:
        """Points of the reference scan and its neighbours in the keyframe camera frame.

        Args:
            keyframe: the keyframe whose camera receives the points.
            count: scans taken on each side of the reference (0 = the reference scan only).

        Returns:
            (M, 3) float64 points in the camera optical frame, metres.
        """
        camera = keyframe.camera
        reference = keyframe.sensors[self.channel].token
        chunks = []
        for record in self.neighbours(keyframe, count):
            sensor = self.tables.sensor_record(record)
            points = read_lidar_bin(sensor.path)[:, :3].astype(np.float64)
            if record['token'] != reference:
                points = _drop_ego(points, sensor.calibrated_sensor)
                points = self._drop_boxes(points, sensor, record)
            T = nuscenes_cam_from_sensor(sensor.calibrated_sensor, sensor.ego_pose,
                                         camera.ego_pose, camera.calibrated_sensor)
            chunks.append(points @ T[:3, :3].T + T[:3, 3])
        return np.concatenate(chunks) if chunks else np.zeros((0, 3))

    def _drop_boxes(self, points: np.ndarray, sensor, record: dict) -> np.ndarray:
        boxes = self._boxes_at(record)
        if not boxes:
            return points
        T_global = (transform_from_record(sensor.ego_pose)
                    @ transform_from_record(sensor.calibrated_sensor))
        world = points @ T_global[:3, :3].T + T_global[:3, 3]
        keep = np.ones(len(points), dtype=bool)
        for centre, rotation, half in boxes:
            local = (world - centre) @ rotation  # R^T (p - c), row-vector form
            keep &= ~np.all(np.abs(local) <= half, axis=1)
        return points[keep]


def _drop_ego(points: np.ndarray, calibrated_sensor: dict) -> np.ndarray:
    """Remove (N, 3) sensor-frame points that fall on the ego car (see ``EGO_BOX_*``)."""
    T = transform_from_record(calibrated_sensor)
    ego = points @ T[:3, :3].T + T[:3, 3]
    on_car = ((ego[:, 0] >= EGO_BOX_X_M[0]) & (ego[:, 0] <= EGO_BOX_X_M[1])
              & (ego[:, 1] >= EGO_BOX_Y_M[0]) & (ego[:, 1] <= EGO_BOX_Y_M[1]))
    return points[~on_car]
