"""Offline replay on the bundled nuScenes frames: same depth as the pipeline and as the node."""
from __future__ import annotations

from pathlib import Path
import shutil

import numpy as np
import pytest
import yaml

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.bag.convert import convert_nuscenes, RADAR_CHANNELS
from xdrcdepth_ros.bag.io import BagReader, BagWriter
from xdrcdepth_ros.core.outputs import output_topic
from xdrcdepth_ros.bag.nuscenes_source import static_cam_from_sensor
from xdrcdepth_ros.bag.replay import replay_bag, resolve_params
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.frame import Frame, RadarSweep
from xdrcdepth_ros.core.config import defaults, load_params_file
from xdrcdepth_ros.core.geometry import (extrinsics_from_transform, InputTransform,
                                         transform_from_xyzw)
from xdrcdepth_ros.core.model_metadata import DEFAULT_RADAR_FIELDS
from xdrcdepth_ros.core.nuscenes_io import read_pcd


@pytest.fixture(scope='module')
def input_bag(nuscenes_root, tmp_path_factory):
    """All 8 bundled keyframes (two scenes, two vehicles) as a sqlite3 bag."""
    out = tmp_path_factory.mktemp('replay_in') / 'nusc'
    convert_nuscenes(nuscenes_root, out, progress=False)
    return out


@pytest.fixture(scope='module')
def replayed(input_bag, tiny_model, tmp_path_factory):
    """Replay of ``input_bag`` with the per-scene parameter files the converter wrote."""
    out = tmp_path_factory.mktemp('replay_out') / 'depth'
    summary = replay_bag(input_bag, out, model=tiny_model, providers=['cpu'], progress=False)
    return summary


def _depth_by_stamp(bag: Path) -> dict[int, np.ndarray]:
    with BagReader(bag) as reader:
        return {m.stamp_ns: np.array(conversions.image_to_array(reader.deserialize(m)))
                for m in reader.messages([output_topic('depth')])}


class _Compressed:
    def __init__(self, data: bytes) -> None:
        self.format, self.data = 'jpeg', data


def _expected_frame(keyframe, config) -> Frame:
    """The frame the node should build for a keyframe, derived from the dataset directly."""
    camera = keyframe.camera
    slop_ns = int(round(config.sync_slop * 1e9))
    # An empty radar_fields means the model's own fields (the tiny model is exported with the
    # default ones).
    field_map = conversions.RadarFieldMap(config.radar_fields or DEFAULT_RADAR_FIELDS)
    sweeps = []
    for radar in RADAR_CHANNELS:
        record = keyframe.sensors[radar]
        if abs(record.timestamp_us - camera.timestamp_us) * 1000 > slop_ns:
            continue
        points, features = conversions.radar_from_cloud(read_pcd(record.path), field_map)
        # The node gets the transform through the radar_extrinsics parameter layout.
        values = extrinsics_from_transform(static_cam_from_sensor(
            camera.calibrated_sensor, record.calibrated_sensor))
        sweeps.append(RadarSweep(points, features, transform_from_xyzw(values[:3], values[3:]),
                                 record.timestamp_us * 1000, radar.lower()))
    image = conversions.compressed_to_rgb(_Compressed(camera.path.read_bytes()))
    return Frame(image=image, K=keyframe.K, radar=tuple(sweeps),
                 stamp_ns=camera.timestamp_us * 1000, frame_id='cam_front_optical')


def test_replay_depth_equals_the_pipeline_on_every_frame(replayed, input_bag, keyframes,
                                                         tiny_model):
    """Each depth image equals DepthPipeline.run on a frame built straight from the dataset:
    sync pairing, JPEG decoding, per-scene extrinsics and K all agree, bit for bit."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    assert replayed.frames_in == replayed.frames_out == len(keyframes)
    assert not replayed.drops
    depth = _depth_by_stamp(replayed.path)
    pipeline = DepthPipeline(Engine(tiny_model, providers=['cpu']))
    windows = resolve_params(input_bag)
    assert len(windows) == 2  # one parameter file per scene (vehicle)
    with_radar = 0
    for keyframe in keyframes:
        window = [w for w in windows if w.start_ns <= keyframe.camera.timestamp_us * 1000][-1]
        frame = _expected_frame(keyframe, window.config)
        with_radar += bool(frame.radar)
        expected = pipeline.run(frame)
        got = depth[frame.stamp_ns]
        assert got.dtype == np.float32 and got.shape == expected.depth.shape
        np.testing.assert_array_equal(got, expected.depth)
    assert with_radar == len(keyframes)


def test_replay_bag_carries_node_outputs_and_inputs(replayed, input_bag, keyframes):
    """Output topics use the node's names, stamps and frame; camera_info matches the model
    crop; every input message is copied so RViz and evaluation need only this bag."""
    transform = InputTransform.fit(1600, 900, 192, 96)
    with BagReader(replayed.path) as reader, BagReader(input_bag) as source:
        for topic in source.topics:
            assert reader.topic_count(topic) == source.topic_count(topic)
        assert reader.qos('/tf_static').durability.name == 'TRANSIENT_LOCAL'
        infos = [reader.deserialize(m) for m in reader.messages([output_topic('camera_info')])]
        colors = [reader.deserialize(m) for m in reader.messages([output_topic('depth_color')])]
    assert len(infos) == len(colors) == len(keyframes)
    for keyframe, info in zip(keyframes, infos):
        assert conversions.stamp_to_ns(info.header.stamp) == keyframe.camera.timestamp_us * 1000
        assert info.header.frame_id == 'cam_front_optical'
        assert (info.width, info.height) == (192, 96)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), transform.apply_to_K(keyframe.K))
    assert colors[0].encoding == 'rgb8'


def test_params_file_applies_to_the_whole_bag(input_bag, tiny_model, tmp_path):
    """--params-file wins over the bag's per-scene files (the node has one file too)."""
    params = tmp_path / 'p.yaml'
    values = load_params_file(input_bag / 'params' / 'scene-0916.CAM_FRONT.yaml')
    values.update(publish_color=False, output_size='camera')
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}}))
    summary = replay_bag(input_bag, tmp_path / 'out', model=tiny_model, params_file=params,
                         providers=['cpu'], passthrough=False, progress=False)
    assert summary.params == [str(params)]
    with BagReader(tmp_path / 'out') as reader:
        assert set(reader.topics) == {output_topic('depth'), output_topic('camera_info')}
        first = reader.deserialize(next(reader.messages([output_topic('depth')])))
    assert (first.width, first.height) == (1600, 900)


def test_each_scene_runs_with_its_own_model_and_output_size(input_bag, tiny_model, tmp_path):
    """Per-scene parameters that change the engine or the pipeline apply to their scene only,
    as a node restarted per scene with that scene's file would: scene-0523 keeps the model
    size and its model, scene-0916 gets the camera size and another model file."""
    bag = tmp_path / 'bag'
    shutil.copytree(input_bag, bag)
    other = tmp_path / 'other' / 'tiny.onnx'
    other.parent.mkdir()
    for suffix in ('.onnx', '.json'):
        shutil.copy(tiny_model.with_suffix(suffix), other.with_suffix(suffix))
    per_scene = {'scene-0523': {'model_path': str(tiny_model)},
                 'scene-0916': {'model_path': str(other), 'output_size': 'camera'}}
    for scene, changes in per_scene.items():
        path = bag / 'params' / f'{scene}.CAM_FRONT.yaml'
        values = {**load_params_file(path), 'providers': ['cpu'], **changes}
        path.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}}))
    summary = replay_bag(bag, tmp_path / 'out', passthrough=False, progress=False)
    assert summary.frames_out == 8
    assert summary.model == f'{tiny_model}, {other}'
    starts = {w.source.split('/')[-1].split('.')[0]: w.start_ns for w in resolve_params(bag)}
    sizes = {stamp: depth.shape for stamp, depth in _depth_by_stamp(tmp_path / 'out').items()}
    for stamp, shape in sizes.items():
        in_second = stamp >= starts['scene-0916']
        assert shape == ((900, 1600) if in_second else (96, 192)), (stamp, shape)
    assert {stamp >= starts['scene-0916'] for stamp in sizes} == {True, False}


def _raw_by_stamp(bag: Path, topic: str) -> dict[int, bytes]:
    with BagReader(bag) as reader:
        return {m.stamp_ns: bytes(m.raw) for m in reader.messages([topic])}


def test_replay_matches_the_node_over_dds(nuscenes_root, tiny_model, tmp_path):
    """The real node, fed by the bag player over DDS, publishes the same messages as replay
    writes, byte for byte (depth and camera_info: one frame step, two sinks)."""
    pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros])')
    from ros_helpers import Harness

    from xdrcdepth_ros.bag.player import BagPlayer, pause_before_first
    from xdrcdepth_ros.bag.recorder import TopicRecorder
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    bag = tmp_path / 'scene'
    convert_nuscenes(nuscenes_root, bag, scenes=['scene-0916'], lidar=False, progress=False)
    params = tmp_path / 'params.yaml'
    values = load_params_file(bag / 'params' / 'scene-0916.CAM_FRONT.yaml')
    # The node waits for radar in wall time: a generous wait keeps a loaded test machine from
    # releasing a frame before a sweep within the slop has been delivered.
    values.update(model_path=str(tiny_model), providers=['cpu'], sync_wait_s=1.0)
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}}))
    summary = replay_bag(bag, tmp_path / 'replayed', params_file=params, passthrough=False,
                         progress=False)
    expected = _depth_by_stamp(tmp_path / 'replayed')
    assert len(expected) == 4
    with Harness() as harness:
        node = harness.add(XdrcDepthNode(context=harness.context,
                                         cli_args=['--ros-args', '--params-file', str(params)]))
        recorder = TopicRecorder(harness.node, None,
                                 {output_topic('depth'): 'sensor_msgs/msg/Image',
                                  output_topic('camera_info'): 'sensor_msgs/msg/CameraInfo'},
                                 keep_raw=True)
        inputs = ['/CAM_FRONT/camera_info', '/CAM_FRONT/image_raw/compressed',
                  *(f'/{radar}' for radar in RADAR_CHANNELS)]
        player = BagPlayer(harness.node, bag, topics=inputs, rate=1.0)
        player.wait_for_subscribers(inputs)
        harness.wait_subscribed(node, [output_topic('depth')])
        stats = player.play(before_publish=pause_before_first(
            '/CAM_FRONT/image_raw/compressed', 0.3))
        assert stats.published['/CAM_FRONT/image_raw/compressed'] == 4
        for topic in (output_topic('depth'), output_topic('camera_info')):
            assert recorder.wait_for_count(topic, 4, timeout_s=30.0), node.diagnostics()[2]
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        received = {}
        for raw in recorder.raw[output_topic('depth')]:
            msg = deserialize_message(raw, Image)
            received[conversions.stamp_to_ns(msg.header.stamp)] = np.array(
                conversions.image_to_array(msg))
        published = {topic: sorted(bytes(payload) for payload in recorder.raw[topic])
                     for topic in (output_topic('depth'), output_topic('camera_info'))}
    assert sorted(received) == sorted(expected) == summary.stamps_ns
    for stamp, depth in expected.items():
        np.testing.assert_array_equal(received[stamp], depth)
    for topic, payloads in published.items():
        assert payloads == sorted(_raw_by_stamp(tmp_path / 'replayed', topic).values()), topic


def _copy_without(source: Path, out: Path, skip: str) -> None:
    with BagReader(source) as reader, BagWriter(out) as writer:
        for message in reader.messages():
            if message.topic != skip:
                writer.write_raw(message.topic, message.msgtype, message.stamp_ns, message.raw,
                                 qos=message.qos)


def test_an_image_before_its_camera_info_is_held_not_dropped(input_bag, tiny_model, tmp_path):
    """Each CameraInfo moved 1 ms after its image (as ``ros2 bag play`` may deliver them): the
    first image waits for its CameraInfo, as in the node, and every frame comes out."""
    late = tmp_path / 'late_info'
    with BagReader(input_bag) as reader, BagWriter(late) as writer:
        for message in reader.messages():
            delay = 1_000_000 if message.topic == '/CAM_FRONT/camera_info' else 0
            writer.write_raw(message.topic, message.msgtype, message.stamp_ns + delay,
                             message.raw, qos=message.qos)
    params = tmp_path / 'p.yaml'
    values = load_params_file(input_bag / 'params' / 'scene-0916.CAM_FRONT.yaml')
    # Without radar topics an image is ready at once: only the CameraInfo can hold it.
    values.update(radar_topics=[], radar_extrinsics=[])
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}}))
    summary = replay_bag(late, tmp_path / 'out', model=tiny_model, params_file=params,
                         providers=['cpu'], passthrough=False, progress=False)
    assert summary.frames_in == summary.frames_out == 8
    assert 'skipped_no_camera_info' not in summary.drops


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name == name or p.name.startswith(f'.{name}.')]


def test_bag_without_camera_info_names_the_topic_and_writes_nothing(input_bag, tiny_model,
                                                                    tmp_path):
    """No CameraInfo means no metric depth: a clear error, no output bag."""
    broken = tmp_path / 'no_info'
    _copy_without(input_bag, broken, '/CAM_FRONT/camera_info')
    with pytest.raises(BagError, match='camera_info topic /CAM_FRONT/camera_info'):
        replay_bag(broken, tmp_path / 'out', model=tiny_model, progress=False,
                   params_file=input_bag / 'params' / 'scene-0916.CAM_FRONT.yaml')
    assert not _leftovers(tmp_path, 'out')


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_corrupt_or_truncated_bag_names_the_bag_and_writes_nothing(nuscenes_root, tiny_model,
                                                                   tmp_path, storage, damage):
    """A damaged storage file fails with the bag's path; the output folder never appears."""
    bag = tmp_path / 'in'
    convert_nuscenes(nuscenes_root, bag, scenes=['scene-0916'], radars=['RADAR_FRONT'],
                     storage=storage, progress=False)
    data_file = next(p for p in bag.iterdir() if p.suffix in ('.db3', '.mcap'))
    data = data_file.read_bytes()
    data_file.write_bytes(b'\x00' * len(data) if damage == 'garbage' else data[:len(data) // 2])
    with pytest.raises(BagError, match=str(bag)):
        replay_bag(bag, tmp_path / 'out', model=tiny_model, progress=False)
    assert not _leftovers(tmp_path, 'out')


def test_missing_model_and_bag_are_named(input_bag, tmp_path):
    """FileNotFoundError names what is missing; nothing is written."""
    with pytest.raises(FileNotFoundError, match='nope.onnx'):
        replay_bag(input_bag, tmp_path / 'out', model=tmp_path / 'nope.onnx', progress=False)
    with pytest.raises(FileNotFoundError, match='absent'):
        replay_bag(tmp_path / 'absent', tmp_path / 'out', progress=False)
    assert not _leftovers(tmp_path, 'out')


def test_default_params_are_the_node_defaults(tmp_path):
    """A bag without parameter files gets config/xdrcdepth.yaml's values, relative input
    names resolved as for a node in the root namespace (bag topics are absolute)."""
    (tmp_path / 'bag').mkdir()
    windows = resolve_params(tmp_path / 'bag')
    assert len(windows) == 1
    assert windows[0].config.image_topic == '/' + defaults()['image_topic'] == '/image'
    assert windows[0].config.extrinsics_source == 'tf'


def test_tf_extrinsics_come_from_the_bags_tf_static(input_bag, tiny_model, tmp_path):
    """extrinsics_source: tf (the node default) is served from each scene's /tf_static."""
    params = tmp_path / 'p.yaml'
    values = load_params_file(input_bag / 'params' / 'scene-0916.CAM_FRONT.yaml')
    values.update(extrinsics_source='tf', radar_extrinsics=[])
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}}))
    summary = replay_bag(input_bag, tmp_path / 'out', model=tiny_model, params_file=params,
                         providers=['cpu'], passthrough=False, progress=False)
    assert summary.frames_out == 8
    assert 'radar_unused_no_transform' not in summary.drops


def test_one_undecodable_message_is_skipped_and_counted(input_bag, tiny_model, tmp_path):
    """Like the node, replay survives a single bad message: it is counted, the rest goes on."""
    damaged = tmp_path / 'damaged'
    with BagReader(input_bag) as reader, BagWriter(damaged) as writer:
        first_radar = True
        for message in reader.messages():
            raw = message.raw
            if message.topic == '/RADAR_FRONT' and first_radar:
                raw, first_radar = raw[:40], False  # cut inside the PointCloud2 header
            writer.write_raw(message.topic, message.msgtype, message.stamp_ns, raw,
                             qos=message.qos)
    summary = replay_bag(damaged, tmp_path / 'out', model=tiny_model, providers=['cpu'],
                         params_file=input_bag / 'params' / 'scene-0523.CAM_FRONT.yaml',
                         passthrough=False, progress=False)
    assert summary.drops == {'skipped_bad_message /RADAR_FRONT': 1}
    assert summary.frames_out == 8


def test_frame_step_reports_a_failing_frame_once_and_goes_on(input_bag, tiny_model):
    """The step shared by node and replay: a pipeline that raises on one frame costs that frame
    only (counted as skipped_processing_error with the exception), the next one comes out."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.frame_step import FrameStep, SkipReason
    from xdrcdepth_ros.core.outputs import MessageClasses
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    class FailsOnce(DepthPipeline):
        failed = False

        def run(self, frame):
            if not self.failed:
                self.failed = True
                raise RuntimeError('boom')
            return super().run(frame)

    config = resolve_params(input_bag)[0].config
    reports = []
    with BagReader(input_bag) as reader:
        classes = MessageClasses.from_typestore(reader.store)
        step = FrameStep(config, FailsOnce(Engine(tiny_model, providers=['cpu'])), classes,
                         lambda *args: None, report=lambda *report: reports.append(report))
        step.frames.add_camera_info(reader.deserialize(
            next(reader.messages([config.camera_info_topic]))))
        images = reader.messages([config.subscribed_image_topic])
        outputs = []
        for message in (next(images), next(images)):
            step.frames.add_image(reader.deserialize(message), message.stamp_ns)
            synced = step.frames.take(message.stamp_ns + config.sync_config().wait_ns)
            outputs.append(step.run(synced))
    assert outputs[0] is None and outputs[1] is not None
    assert [(reason, 'RuntimeError: boom' in text) for reason, text in reports] == [
        (SkipReason.PROCESSING_ERROR, True)]
    assert [suffix for suffix, _ in outputs[1].messages][:2] == ['depth', 'camera_info']
    assert {'decode', 'engine', 'outputs', 'total'} <= set(outputs[1].timings_ms)
