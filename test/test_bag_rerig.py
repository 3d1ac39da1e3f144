"""bag.rerig and bag.predictors on the bundled frames: the "other rig" check's library code."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from xdrcdepth_ros.bag.convert import convert_nuscenes
from xdrcdepth_ros.bag.demo import BUNDLED
from xdrcdepth_ros.bag.evaluate import evaluate_bag
from xdrcdepth_ros.bag.io import BagReader
from xdrcdepth_ros.bag.node_run import rclpy_available
from xdrcdepth_ros.bag.predictors import predictor_bag
from xdrcdepth_ros.bag.replay import replay_bag
from xdrcdepth_ros.bag.rerig import crop_transform, renamed_fields, rerig_bag, RigSpec
from xdrcdepth_ros.bag.tf import TfBuffer
from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.core.config import load_params_file
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.geometry import project_points
from xdrcdepth_ros.core.model_metadata import ModelMetadata, sidecar_path
from xdrcdepth_ros.train import baselines

IMAGE = '/CAM_FRONT/image_raw/compressed'
INFO = '/CAM_FRONT/camera_info'


@pytest.fixture(scope='module')
def source_bag(tmp_path_factory):
    return convert_nuscenes(BUNDLED, tmp_path_factory.mktemp('rerig') / 'source',
                            progress=False).path


@pytest.fixture(scope='module')
def spec(tiny_model):
    """The other rig for the test model: its radar_fields renamed."""
    meta = ModelMetadata.from_json(sidecar_path(tiny_model).read_text())
    return RigSpec(field_map=renamed_fields(meta.radar_fields))


@pytest.fixture(scope='module')
def rigged(source_bag, spec):
    return rerig_bag(source_bag, source_bag.parent / 'rigged', spec, progress=False)


def _messages(bag, topics):
    with BagReader(bag) as reader:
        return [(m, reader.deserialize(m)) for m in reader.messages(topics)]


def test_images_and_camera_info_have_the_new_size(rigged):
    images = _messages(rigged.path, [IMAGE, INFO])
    assert len(images) == 16
    for message, msg in images:
        if message.topic == INFO:
            assert (msg.width, msg.height) == (960, 720)
            assert np.array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3],
                                  np.asarray(msg.k).reshape(3, 3))
        else:
            assert msg.format == 'jpeg'
            assert conversions.compressed_to_rgb(msg).shape == (720, 960, 3)


def test_lidar_projects_to_the_same_place_both_ways(source_bag, rigged):
    """A LiDAR point projected with the source K, carried through the 4:3 crop (x0 = 200) and
    the 0.8 scale, lands where the new K projects it; the re-rigged image shows there what
    a plain OpenCV crop + resize of the source image shows."""
    def first(bag, topics):
        found = {}
        for m, msg in _messages(bag, topics):
            found.setdefault(m.topic, (m.stamp_ns, msg))
        return {topic: msg for topic, (_, msg) in found.items()}, found

    before, stamps = first(source_bag, [IMAGE, INFO, '/LIDAR_TOP'])
    after, _ = first(rigged.path, [IMAGE, INFO])
    tf = TfBuffer()
    for m, msg in _messages(source_bag, ['/tf_static']):
        tf.add_static(msg, m.stamp_ns)
    lidar = before['/LIDAR_TOP']
    cloud = conversions.pointcloud2_to_array(lidar)
    points = np.stack([cloud['x'], cloud['y'], cloud['z']], 1).astype(np.float64)
    T = tf.lookup_static(before[IMAGE].header.frame_id, lidar.header.frame_id,
                         stamps[IMAGE][0])
    assert T is not None
    K0 = conversions.camera_info_to_model(before[INFO]).K
    K1 = conversions.camera_info_to_model(after[INFO]).K
    uv0, _, index0 = project_points(points, T, K0, 1600, 900)
    uv1, _, index1 = project_points(points, T, K1, 960, 720)
    carried = 0.8 * (uv0 + 0.5) - 0.5 - np.array([160.0, 0.0])
    inside = (carried[:, 0] >= -0.5) & (carried[:, 0] < 959.5)
    assert inside.sum() > 1000 and np.array_equal(index0[inside], index1)
    np.testing.assert_allclose(uv1, carried[inside], atol=1e-9)
    source = conversions.compressed_to_rgb(before[IMAGE]).astype(np.float32)
    expected = cv2.resize(source[:, 200:1400], (960, 720), interpolation=cv2.INTER_LINEAR)
    got = conversions.compressed_to_rgb(after[IMAGE]).astype(np.float32)
    aligned = np.abs(got - expected).mean()
    shifted = np.abs(got[:, 2:] - expected[:, :-2]).mean()
    assert aligned < 4.0 and aligned < 0.6 * shifted, (aligned, shifted)


def test_one_radar_with_renamed_fields_and_the_rest_unchanged(source_bag, rigged, spec):
    assert rigged.radar_fields == tuple(spec.field_map.values())
    assert sorted(rigged.dropped) == ['/RADAR_BACK_LEFT', '/RADAR_BACK_RIGHT',
                                      '/RADAR_FRONT_LEFT', '/RADAR_FRONT_RIGHT']
    with BagReader(rigged.path) as reader:
        assert sorted(reader.topics) == sorted([IMAGE, INFO, '/RADAR_FRONT', '/LIDAR_TOP', '/tf',
                                                '/tf_static'])
    old = [conversions.pointcloud2_to_array(msg) for _, msg in
           _messages(source_bag, ['/RADAR_FRONT'])]
    new = [conversions.pointcloud2_to_array(msg) for _, msg in
           _messages(rigged.path, ['/RADAR_FRONT'])]
    assert len(new) == 8
    for a, b in zip(old, new):
        assert b.dtype.names == ('x', 'y', 'z', *spec.field_map.values())
        for source, target in [('x', 'x'), ('y', 'y'), ('z', 'z'), *spec.field_map.items()]:
            np.testing.assert_array_equal(b[target], a[source])
    for topic in ('/LIDAR_TOP', '/tf', '/tf_static'):
        assert ([m.raw for m, _ in _messages(source_bag, [topic])]
                == [m.raw for m, _ in _messages(rigged.path, [topic])])
    for path in rigged.params_files:
        values = load_params_file(path)
        source = load_params_file(source_bag / 'params' / path.name)
        assert values['radar_topics'] == ['/RADAR_FRONT']
        assert values['radar_fields'] == list(spec.field_map.values())
        assert values['radar_extrinsics'] == source['radar_extrinsics'][:7]  # RADAR_FRONT first
    metadata = (rigged.path / 'metadata.yaml').read_text()
    assert 'xdrcdepth.scenes' in metadata


def test_bad_input_is_one_clear_error_and_leaves_nothing(source_bag, tmp_path):
    out = tmp_path / 'bad'
    with pytest.raises(BagError, match=r"no fields \['power'\]"):
        rerig_bag(source_bag, out, RigSpec(field_map={'power': 'P'}), progress=False)
    with pytest.raises(BagError, match='no radar topic /RADAR_TOP'):
        rerig_bag(source_bag, out, RigSpec(radar_topic='/RADAR_TOP'), progress=False)
    with pytest.raises(ValueError, match='is not 4:3'):
        rerig_bag(source_bag, out, RigSpec(width=1000, height=720), progress=False)
    with pytest.raises(FileNotFoundError):
        rerig_bag(tmp_path / 'missing', out, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match='no distinct new name'):
        renamed_fields(['RCS'])
    assert crop_transform(1600, 900, RigSpec()).crop_x == 160


def test_replay_reads_the_renamed_fields_and_predictors_share_its_frames(rigged, tiny_model,
                                                                        tmp_path):
    """Offline replay (the node's frame step) with the bag's radar_fields uses every sweep; told
    the default fields it cannot read them. The nearest-radar predictor bag is scored on the
    same frames and grid, from the same RADAR_FRONT sweeps: 7 of the 8 keyframes have one
    within the node's 50 ms sync slop (one is 65.6 ms from its image)."""
    overrides = {'model_path': str(tiny_model), 'output_size': 'camera'}
    told = replay_bag(rigged.path, tmp_path / 'told', overrides=overrides, progress=False)
    assert told.frames_out == 8 and not any(k.startswith('radar_unused') for k in told.drops)
    untold = replay_bag(rigged.path, tmp_path / 'untold', progress=False,
                        overrides={**overrides, 'radar_fields': []})
    assert untold.drops.get('radar_unused_bad_cloud') == 7, untold.drops
    node = evaluate_bag(tmp_path / 'told', progress=False)
    seen = []
    written = predictor_bag(tmp_path / 'told', tmp_path / 'nn',
                      lambda r: (seen.append(int((r > 0).sum())),
                                 baselines.radar_nearest(r, 10.0))[1],
                      radar_topics=['/RADAR_FRONT'])
    assert (written.frames, written.frames_without_radar) == (8, 1)
    assert sorted(seen)[0] == 0 and sorted(seen)[1] > 5
    nearest = evaluate_bag(tmp_path / 'nn', progress=False)
    assert [f.stamp_ns for f in nearest.frames] == [f.stamp_ns for f in node.frames]
    assert [f.lidar_stamp_ns for f in nearest.frames] == [f.lidar_stamp_ns for f in node.frames]
    with BagReader(tmp_path / 'nn') as reader:
        depth = [msg for m in reader.messages(['/xdrcdepth/depth'])
                 if (msg := reader.deserialize(m))]
        assert '/xdrcdepth/depth_color' not in reader.topics
    assert (depth[0].width, depth[0].height) == (960, 720)
    # The scripts' one call: the node, then each predictor, on the same frames; the constant
    # gets the median LiDAR depth of those frames.
    from xdrcdepth_ros.bag.predictors import score_node_and_predictors

    medians = []
    scores = score_node_and_predictors(
        tmp_path / 'told', lambda m: medians.append(m) or {
            'constant': lambda r: baselines.constant_depth(r.shape, m)},
        tmp_path / 'work', radar_topics=['/RADAR_FRONT'])
    assert scores.frames == [f.stamp_ns for f in node.frames]
    assert medians == [scores.gt_median_m] and 1.0 < scores.gt_median_m < 80.0
    assert set(scores.metrics) == {'node', 'constant'} and scores.frames_without_radar == 1
    assert scores.metrics['node']['mae_m'] == node.to_dict()['mean']['80']['mae_m']


@pytest.mark.ros
@pytest.mark.skipif(not rclpy_available(), reason='needs rclpy (pip install -e .[ros])')
def test_node_over_dds_runs_on_the_other_rig(rigged, tiny_model, tmp_path):
    """The real node, fed over DDS as the demo does, told radar_fields, publishes 960x720 depth
    for every frame and uses the RADAR_FRONT sweep of each."""
    from xdrcdepth_ros.bag.demo import DEMO_OVERRIDES, node_backend

    run = node_backend(rigged.path, tmp_path / 'depth', tmp_path / 'params',
                       {**DEMO_OVERRIDES, 'model_path': str(tiny_model),
                        'output_size': 'camera'})
    assert run['frames_in'] == run['frames_out'] == 8, run['node_diagnostics']
    for values in run['node_diagnostics'].values():
        assert not any(k.startswith('radar_unused') and v != '0' for k, v in values.items()), \
            values
    params = json.dumps(load_params_file(next((tmp_path / 'params').glob('*.yaml'))))
    assert all(name in params for name in rigged.radar_fields)
    evaluation = evaluate_bag(tmp_path / 'depth', progress=False)
    assert len(evaluation.frames) == 8
