"""The table + sensor-file reader, including its errors on damaged inputs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.nuscenes_io import RADAR_FIELDS, NuScenesTables, read_lidar_bin, read_pcd

devkit = pytest.importorskip('nuscenes.utils.data_classes', reason='nuscenes-devkit not installed')


def test_bundled_keyframes_are_found_in_scene_and_time_order(keyframes):
    assert [kf.scene_name for kf in keyframes] == ['scene-0523'] * 4 + ['scene-0916'] * 4
    stamps = [kf.camera.timestamp_us for kf in keyframes]
    assert stamps[:4] == sorted(stamps[:4]) and stamps[4:] == sorted(stamps[4:])
    for keyframe in keyframes:
        assert {'RADAR_FRONT', 'LIDAR_TOP', 'CAM_FRONT'} <= set(keyframe.sensors)
        assert keyframe.read_image().shape == (900, 1600, 3)


def test_radar_pcd_reader_matches_devkit_field_for_field(keyframes):
    """All 18 ARS408 fields, native types, same values as RadarPointCloud with filters off."""
    for keyframe in keyframes:
        path = keyframe.sensors['RADAR_FRONT'].path
        ours = read_pcd(path)
        assert [(name, ours.dtype[name].str.lstrip('|')) for name in ours.dtype.names] == [
            (name, kind.lstrip('|')) for name, kind in RADAR_FIELDS]
        reference = devkit.RadarPointCloud.from_file(
            str(path), invalid_states=list(range(18)), dynprop_states=list(range(8)),
            ambig_states=list(range(5))).points
        stacked = np.stack([ours[name].astype(np.float32) for name in ours.dtype.names])
        np.testing.assert_array_equal(stacked, reference.astype(np.float32))


def test_truncated_pcd_names_the_file(tmp_path, keyframes):
    source = keyframes[0].sensors['RADAR_FRONT'].path
    damaged = tmp_path / 'radar.pcd'
    raw = source.read_bytes()
    points_start = raw.find(b'DATA binary\n') + len(b'DATA binary\n')
    damaged.write_bytes(raw[:points_start + 40 * 43])  # 40 of the header's 125 points
    with pytest.raises(DatasetError, match='radar.pcd: truncated'):
        read_pcd(damaged)


def test_lidar_file_of_wrong_size_is_rejected(tmp_path):
    path = tmp_path / 'lidar.pcd.bin'
    path.write_bytes(b'\0' * 24)
    with pytest.raises(DatasetError, match='multiple of 5'):
        read_lidar_bin(path)


def test_missing_table_and_missing_sensor_file_are_named(tmp_path, nuscenes_root):
    root = tmp_path / 'nusc'
    shutil.copytree(nuscenes_root, root)
    (root / 'v1.0-mini' / 'ego_pose.json').unlink()
    with pytest.raises(DatasetError, match='ego_pose.json'):
        NuScenesTables(root)
    shutil.copy(nuscenes_root / 'v1.0-mini' / 'ego_pose.json', root / 'v1.0-mini')
    victim = next((root / 'samples' / 'RADAR_FRONT').iterdir())
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        list(NuScenesTables(root).keyframes())
