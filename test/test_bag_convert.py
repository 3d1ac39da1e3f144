"""nuScenes → rosbag2 converter on the bundled real frames, read back with rosbags and rclpy."""
from __future__ import annotations

from pathlib import Path
import re
import shutil

import numpy as np
import pytest
import yaml

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.bag.convert import convert_nuscenes, RADAR_CHANNELS
from xdrcdepth_ros.bag.io import BagReader
from xdrcdepth_ros.bag.nuscenes_source import sensor_frame, static_cam_from_sensor
from xdrcdepth_ros.core.errors import BagError, DatasetError
from xdrcdepth_ros.core.geometry import transform_from_xyzw
from xdrcdepth_ros.core.config import NodeConfig
from xdrcdepth_ros.core.nuscenes_io import read_pcd

STORAGES = ('sqlite3', 'mcap')


@pytest.fixture(scope='module', params=STORAGES)
def converted(request, nuscenes_root, tmp_path_factory):
    """The 8 bundled keyframes converted with every camera/radar/LiDAR topic, per storage."""
    out = tmp_path_factory.mktemp(f'bag_{request.param}') / 'nusc'
    summary = convert_nuscenes(nuscenes_root, out, storage=request.param, progress=False)
    return summary


def _messages(path: Path, topic: str):
    with BagReader(path) as reader:
        return [(m, reader.deserialize(m)) for m in reader.messages([topic])]


def _all_keyframe_records(keyframes, channel):
    return sorted((kf.sensors[channel] for kf in keyframes), key=lambda r: r.timestamp_us)


def test_bag_holds_every_file_once_per_topic(converted, keyframes):
    """8 keyframes, no sweeps in the bundle: 8 messages per sensor topic, one pose per file."""
    expected_sensor = {'/CAM_FRONT/image_raw/compressed', '/CAM_FRONT/camera_info', '/LIDAR_TOP',
                       *(f'/{radar}' for radar in RADAR_CHANNELS)}
    for topic in expected_sensor:
        assert converted.counts[topic] == len(keyframes), topic
    assert converted.counts['/tf'] == 7 * len(keyframes)
    assert converted.counts['/tf_static'] == 2  # one per scene (two vehicles)
    assert converted.scenes == ('scene-0523', 'scene-0916')


def test_images_are_the_original_jpeg_bytes(converted, keyframes):
    """No re-encoding: each CompressedImage payload equals its JPEG file, stamp = µs * 1000."""
    records = _all_keyframe_records(keyframes, 'CAM_FRONT')
    messages = _messages(converted.path, '/CAM_FRONT/image_raw/compressed')
    assert len(messages) == len(records)
    for record, (raw, msg) in zip(records, messages):
        assert msg.format == 'jpeg'
        assert bytes(msg.data) == record.path.read_bytes()
        assert raw.stamp_ns == record.timestamp_us * 1000
        assert conversions.stamp_to_ns(msg.header.stamp) == raw.stamp_ns
        assert msg.header.frame_id == 'cam_front_optical'


def test_camera_info_is_undistorted_pinhole(converted, keyframes):
    """k = K, p = [K | 0], d = 0 (plumb_bob), size 1600x900 read from the JPEG header."""
    records = _all_keyframe_records(keyframes, 'CAM_FRONT')
    for record, (_, msg) in zip(records, _messages(converted.path, '/CAM_FRONT/camera_info')):
        K = np.asarray(record.calibrated_sensor['camera_intrinsic'])
        model = conversions.camera_info_to_model(msg)
        np.testing.assert_array_equal(model.K, K)
        np.testing.assert_array_equal(model.P, np.hstack([K, np.zeros((3, 1))]))
        assert msg.distortion_model == 'plumb_bob' and not np.any(msg.d)
        assert (msg.width, msg.height) == (1600, 900)


def test_radar_clouds_keep_all_18_fields_in_native_types(converted, keyframes):
    """Radar PointCloud2 bytes equal the PCD's point records; int8/int16/float32 preserved."""
    datatype = {'f4': 7, 'i1': 1, 'i2': 3}
    for radar in RADAR_CHANNELS:
        records = _all_keyframe_records(keyframes, radar)
        for record, (_, msg) in zip(records, _messages(converted.path, f'/{radar}')):
            points = read_pcd(record.path)
            assert [f.name for f in msg.fields] == list(points.dtype.names)
            assert len(msg.fields) == 18
            for field in msg.fields:
                assert field.datatype == datatype[points.dtype[field.name].str[1:]], field.name
            assert bytes(msg.data) == points.tobytes()
            np.testing.assert_array_equal(conversions.pointcloud2_to_array(msg), points)
            assert msg.header.frame_id == sensor_frame(radar)


def test_lidar_cloud_bytes_equal_the_bin_file(converted, keyframes):
    """LIDAR_TOP: x, y, z, intensity, ring float32, the .pcd.bin bytes unchanged."""
    records = _all_keyframe_records(keyframes, 'LIDAR_TOP')
    for record, (_, msg) in zip(records, _messages(converted.path, '/LIDAR_TOP')):
        assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity', 'ring']
        assert bytes(msg.data) == record.path.read_bytes()
        assert msg.header.frame_id == 'lidar_top'


def test_payloads_survive_a_rosbags_round_trip(converted):
    """Every payload re-serialises to the same bytes (nothing lost in decode/encode)."""
    with BagReader(converted.path) as reader:
        for message in reader.messages():
            msg = reader.deserialize(message)
            assert bytes(reader.store.serialize_cdr(msg, message.msgtype)) == message.raw


def test_every_message_deserialises_with_rclpy(converted):
    """Real rclpy reads each payload as its recorded type.

    tf2_msgs has no PyPI wheel, so TFMessage payloads are checked through their elements: each
    TransformStamped re-serialised by rosbags must deserialise in rclpy to the same values.
    """
    serialization = pytest.importorskip('rclpy.serialization')
    from xdrcdepth_ros.bag.player import ros_message_class

    checked = set()
    with BagReader(converted.path) as reader:
        for message in reader.messages():
            cls = ros_message_class(message.msgtype)
            if cls is None:
                assert message.msgtype == 'tf2_msgs/msg/TFMessage'
                element_cls = ros_message_class('geometry_msgs/msg/TransformStamped')
                for transform in reader.deserialize(message).transforms:
                    raw = bytes(reader.store.serialize_cdr(
                        transform, 'geometry_msgs/msg/TransformStamped'))
                    ros = serialization.deserialize_message(raw, element_cls)
                    assert ros.child_frame_id == transform.child_frame_id
                    assert ros.transform.rotation.w == transform.transform.rotation.w
                checked.add(message.topic)
                continue
            ros = serialization.deserialize_message(message.raw, cls)
            assert type(ros).__name__ == message.msgtype.rsplit('/', 1)[1]
            # Padding bytes are unspecified in CDR, so compare after a rosbags normalisation.
            again = reader.store.deserialize_cdr(serialization.serialize_message(ros),
                                                 message.msgtype)
            assert bytes(reader.store.serialize_cdr(again, message.msgtype)) == message.raw
            checked.add(message.topic)
    assert '/tf_static' in checked and '/LIDAR_TOP' in checked


def test_metadata_records_tf_static_as_transient_local(converted):
    """ros2 bag play re-latches /tf_static only if metadata.yaml says transient local."""
    info = yaml.safe_load((converted.path / 'metadata.yaml').read_text())
    topics = {t['topic_metadata']['name']: t['topic_metadata']
              for t in info['rosbag2_bagfile_information']['topics_with_message_count']}
    latched = topics['/tf_static']['offered_qos_profiles'][0]
    assert latched['durability'] == 'transient_local'
    assert latched['reliability'] == 'reliable'
    assert latched['depth'] == 1
    assert topics['/tf']['offered_qos_profiles'][0]['durability'] == 'volatile'
    assert info['rosbag2_bagfile_information']['storage_identifier'] == converted.storage.value


def _tf(msg, parent, child):
    for transform in msg.transforms:
        if transform.header.frame_id == parent and transform.child_frame_id == child:
            t, q = transform.transform.translation, transform.transform.rotation
            return transform_from_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
    raise AssertionError(f'no {parent} -> {child} in {msg}')


def test_tf_chain_reproduces_the_motion_compensated_calibration(converted, keyframes):
    """camera <- radar from /tf_static + /tf at both stamps equals nuScenes' own chain."""
    statics = _messages(converted.path, '/tf_static')
    poses = {raw.stamp_ns: msg for raw, msg in _messages(converted.path, '/tf')}
    for keyframe in keyframes:
        static = statics[0 if keyframe.scene_name == 'scene-0523' else 1][1]
        radar = keyframe.sensors['RADAR_FRONT']
        odom_base_cam = _tf(poses[keyframe.camera.timestamp_us * 1000], 'odom', 'base_link')
        odom_base_radar = _tf(poses[radar.timestamp_us * 1000], 'odom', 'base_link')
        chain = (np.linalg.inv(odom_base_cam @ _tf(static, 'base_link', 'cam_front_optical'))
                 @ odom_base_radar @ _tf(static, 'base_link', 'radar_front'))
        np.testing.assert_allclose(chain, keyframe.T_cam_from('RADAR_FRONT'), atol=1e-6)


def test_params_files_give_the_static_radar_extrinsics(converted, keyframes):
    """params/<scene>.CAM_FRONT.yaml is valid node config whose transforms are the calibration."""
    for keyframe in (keyframes[0], keyframes[-1]):
        path = converted.path / 'params' / f'{keyframe.scene_name}.CAM_FRONT.yaml'
        values = yaml.safe_load(path.read_text())['/**']['ros__parameters']
        config = NodeConfig.from_values(values)
        assert config.subscribed_image_topic == '/CAM_FRONT/image_raw/compressed'
        assert config.radar_topics == tuple(f'/{radar}' for radar in RADAR_CHANNELS)
        for radar, transform in zip(RADAR_CHANNELS, config.radar_transforms()):
            expected = static_cam_from_sensor(keyframe.camera.calibrated_sensor,
                                              keyframe.sensors[radar].calibrated_sensor)
            np.testing.assert_allclose(transform, expected, atol=1e-9)


def test_channel_and_scene_selection(nuscenes_root, tmp_path):
    """--scene/--radars/--no-lidar limit what is written."""
    summary = convert_nuscenes(nuscenes_root, tmp_path / 'one', scenes=['scene-0916'],
                               radars=['RADAR_FRONT'], lidar=False, progress=False)
    assert set(summary.counts) == {'/CAM_FRONT/image_raw/compressed', '/CAM_FRONT/camera_info',
                                   '/RADAR_FRONT', '/tf', '/tf_static'}
    assert summary.counts['/RADAR_FRONT'] == 4


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f'.{name}.')]


def test_missing_sensor_file_names_the_file_and_leaves_no_bag(nuscenes_root, tmp_path):
    """A dataroot with a deleted radar file fails with that path; no (partial) bag remains."""
    root = tmp_path / 'nusc'
    shutil.copytree(nuscenes_root, root)
    victim = sorted((root / 'samples' / 'RADAR_FRONT').iterdir())[5]
    victim.unlink()
    with pytest.raises(DatasetError, match=re.escape(victim.name)):
        convert_nuscenes(root, tmp_path / 'out', progress=False)
    _no_leftovers(tmp_path, 'out')


def test_truncated_sensor_file_leaves_no_bag(nuscenes_root, tmp_path):
    """A radar PCD cut short fails while writing; the staging folder is removed."""
    root = tmp_path / 'nusc'
    shutil.copytree(nuscenes_root, root)
    victim = sorted((root / 'samples' / 'RADAR_FRONT').iterdir())[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[:data.index(b'DATA binary\n') + 100])  # header + 2 of 63+ points
    with pytest.raises(DatasetError, match='truncated'):
        convert_nuscenes(root, tmp_path / 'out', progress=False)
    _no_leftovers(tmp_path, 'out')


def test_missing_table_is_named(nuscenes_root, tmp_path):
    """A table folder without ego_pose.json names that file."""
    root = tmp_path / 'nusc'
    shutil.copytree(nuscenes_root, root)
    (root / 'v1.0-mini' / 'ego_pose.json').unlink()
    with pytest.raises(DatasetError, match='ego_pose.json'):
        convert_nuscenes(root, tmp_path / 'out', progress=False)
    _no_leftovers(tmp_path, 'out')


def test_unknown_scene_and_channel_list_the_choices(nuscenes_root, tmp_path):
    """Typos get the list of what exists."""
    with pytest.raises(DatasetError, match='available: scene-0523, scene-0916'):
        convert_nuscenes(nuscenes_root, tmp_path / 'a', scenes=['scene-9999'], progress=False)
    with pytest.raises(DatasetError, match='CAM_BACK'):
        convert_nuscenes(nuscenes_root, tmp_path / 'b', cameras=['CAM_BACK'], progress=False)


def test_cameras_all_asks_for_the_six_nuscenes_cameras(nuscenes_root, tmp_path, capsys):
    """``--cameras all`` = the six CAM_* channels; the bundled frames carry CAM_FRONT only, so
    the conversion stops with the five missing ones named and leaves no bag behind."""
    from xdrcdepth_ros import cli
    from xdrcdepth_ros.commands.nuscenes_to_bag import _cameras, CAMERA_CHANNELS

    assert _cameras('all') == list(CAMERA_CHANNELS) and len(CAMERA_CHANNELS) == 6
    assert _cameras('CAM_FRONT, CAM_BACK') == ['CAM_FRONT', 'CAM_BACK']
    assert cli.main(['nuscenes-to-bag', '--dataroot', str(nuscenes_root), '--scene',
                     'scene-0916', '--cameras', 'all', '--out', str(tmp_path / 'six'),
                     '--no-progress']) == 1
    error = capsys.readouterr().err
    assert all(camera in error for camera in CAMERA_CHANNELS[1:]), error
    _no_leftovers(tmp_path, 'six')


def test_existing_output_is_not_overwritten_unless_asked(nuscenes_root, tmp_path):
    """An existing bag stays untouched; --overwrite replaces it only after success."""
    out = tmp_path / 'bag'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    with pytest.raises(BagError, match='exists already'):
        convert_nuscenes(nuscenes_root, out, scenes=['scene-0916'], progress=False)
    assert (out / 'keep.txt').read_text() == 'mine'
    convert_nuscenes(nuscenes_root, out, scenes=['scene-0916'], overwrite=True, progress=False)
    assert not (out / 'keep.txt').exists() and (out / 'metadata.yaml').is_file()


def test_sweeps_between_keyframes_are_included(nuscenes_root, tmp_path):
    """Full datasets have non-keyframe sweeps (is_key_frame false, under sweeps/): they are
    written too, in time order, with their own ego pose on /tf."""
    import json

    root = tmp_path / 'nusc'
    shutil.copytree(nuscenes_root, root)
    tables = root / 'v1.0-mini'
    records = json.loads((tables / 'sample_data.json').read_text())
    poses = json.loads((tables / 'ego_pose.json').read_text())
    keyframe = next(r for r in records if 'RADAR_FRONT/' in r['filename']
                    and r['filename'].startswith('samples/RADAR_FRONT/n015'))
    sweep_file = root / 'sweeps' / 'RADAR_FRONT' / 'sweep.pcd'
    sweep_file.parent.mkdir(parents=True)
    shutil.copy(root / keyframe['filename'], sweep_file)
    pose = dict(next(p for p in poses if p['token'] == keyframe['ego_pose_token']),
                token='sweep-pose', timestamp=keyframe['timestamp'] + 77_000)
    records.append(dict(keyframe, token='sweep', ego_pose_token='sweep-pose',
                        timestamp=keyframe['timestamp'] + 77_000, is_key_frame=False,
                        filename='sweeps/RADAR_FRONT/sweep.pcd'))
    (tables / 'sample_data.json').write_text(json.dumps(records))
    (tables / 'ego_pose.json').write_text(json.dumps(poses + [pose]))
    summary = convert_nuscenes(root, tmp_path / 'out', scenes=['scene-0916'],
                               radars=['RADAR_FRONT'], lidar=False, progress=False)
    assert summary.counts['/RADAR_FRONT'] == 5
    with BagReader(summary.path) as reader:
        stamps = [m.stamp_ns for m in reader.messages(['/RADAR_FRONT'])]
        tf_stamps = {m.stamp_ns for m in reader.messages(['/tf'])}
    sweep_ns = (keyframe['timestamp'] + 77_000) * 1000
    assert sweep_ns in stamps and stamps == sorted(stamps)
    assert sweep_ns in tf_stamps
