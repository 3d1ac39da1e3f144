"""Bad input caught in the ROS-free core before it costs time or corrupts depth (issue 16).

Each test is one finding of the fault probe, driven through the node's own
:class:`~xdrcdepth_ros.core.frame_step.FrameBuilder` (or the conversion it calls) with real
nuScenes frames and real rosbags message classes; ``test_node_faults.py`` repeats the cases over
DDS against the running node.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
import time

import cv2
import numpy as np
import pytest

from test_node_core import cloud_msg, messages, METADATA, store  # noqa: F401 - fixtures
from xdrcdepth_ros.bag.messages import header
from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.core.config import NodeConfig
from xdrcdepth_ros.core.errors import ConversionError
from xdrcdepth_ros.core.frame_step import (FrameBuilder, FRAMES_WITHOUT_RADAR, INPUT_GAPS,
                                           JUMP_CONFIRMATIONS, parameter_extrinsics, SkipReason)
from xdrcdepth_ros.core.input_health import GapCounter
from xdrcdepth_ros.core.model_metadata import DEFAULT_RADAR_FIELDS
from xdrcdepth_ros.ros.stats import DiagnosticLevel, NodeStats

SECOND = 1_000_000_000
NUSCENES_K = np.array([[1266.42, 0.0, 816.27], [0.0, 1266.42, 491.51], [0.0, 0.0, 1.0]])


class Builder:
    """A FrameBuilder with its reports and counters collected."""

    def __init__(self, messages, **values):
        self.reports: list[SkipReason] = []
        self.texts: list[str] = []
        self.counts: Counter[str] = Counter()
        config = NodeConfig.from_values({
            'extrinsics_source': 'parameters', 'radar_extrinsics': messages['extrinsics'],
            'sync_slop': 0.08, 'sync_wait_s': 0.1, **values})
        self.frames = FrameBuilder(config, METADATA, parameter_extrinsics(config),
                                   report=self._report, count=self._count)

    def _report(self, reason, text):
        self.reports.append(reason)
        self.texts.append(text)

    def _count(self, key, amount):
        self.counts[key] += amount


def image_at(store, messages, stamp_ns, **changes):
    """The keyframe image message restamped (and with fields replaced)."""
    return replace(messages['image'], header=header(store, stamp_ns, 'CAM_FRONT'), **changes)


def run_frame(builder, store, messages, stamp_ns, now_ns=0):
    """Feed CameraInfo, radar and image at ``stamp_ns``; the built frame (or None)."""
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_radar(0, cloud_msg(store, messages['cloud'], stamp_ns + 10_000_000),
                             now_ns)
    builder.frames.add_image(image_at(store, messages, stamp_ns), now_ns)
    synced = builder.frames.take(now_ns)
    return None if synced is None else builder.frames.build(synced)


# ----------------------------------------------------------------------------- finding 1

def camera_info(store, K, P=None, width=1600, height=900):
    types = store.types
    msg = conversions.make_camera_info(
        types['sensor_msgs/msg/CameraInfo'], header(store, 1, 'CAM_FRONT'),
        conversions.CameraModel.from_K(NUSCENES_K, width, height),
        roi_cls=types['sensor_msgs/msg/RegionOfInterest'])
    msg.k[:] = np.asarray(K, dtype=np.float64).reshape(-1)
    msg.p[:] = (np.hstack([K, np.zeros((3, 1))]) if P is None else P).reshape(-1)
    return msg


def _with(matrix, index, value):
    out = np.array(matrix, dtype=np.float64)
    out[index] = value
    return out


@pytest.mark.parametrize('k,p,match', [
    (_with(NUSCENES_K, (2, 2), 0.0), None, r'k must have the last row \[0, 0, 1'),
    (NUSCENES_K, _with(np.hstack([NUSCENES_K, np.zeros((3, 1))]), (0, 0), np.nan),
     'p has non-finite'),
    (_with(NUSCENES_K, (0, 2), 1e6), None, r'k principal point .*1e\+06'),
    (NUSCENES_K * [[0.5], [0.5], [1.0]], None, 'k principal point .*another image size'),
], ids=['k22_zero', 'nan_p', 'cx_1e6', 'k_of_800x450'])
def test_a_camera_info_that_would_corrupt_depth_is_rejected_naming_the_field(store, k, p, match):
    """Finding 1: K[2][2] = 0 made every later frame fail (singular matrix); a NaN P, cx = 1e6
    or the K of a 2x binned image were used silently."""
    with pytest.raises(ConversionError, match=match):
        conversions.camera_info_to_model(camera_info(store, k, p))


def test_a_scaled_homogeneous_k_is_normalised(store):
    model = conversions.camera_info_to_model(camera_info(store, 2.0 * NUSCENES_K))
    np.testing.assert_allclose(model.K, NUSCENES_K)
    np.testing.assert_allclose(model.P[:, :3], NUSCENES_K)


def test_after_a_singular_camera_info_the_last_good_one_keeps_frames_flowing(store, messages):
    builder = Builder(messages)
    assert run_frame(builder, store, messages, messages['stamp']) is not None
    assert not builder.frames.add_camera_info(camera_info(store, _with(NUSCENES_K, (2, 2), 0)))
    assert builder.reports == [SkipReason.BAD_CAMERA_INFO] and 'k must have' in builder.texts[0]
    builder.frames.add_radar(0, cloud_msg(store, messages['cloud'],
                                          messages['stamp'] + SECOND // 10 + 10_000_000), 0)
    builder.frames.add_image(image_at(store, messages, messages['stamp'] + SECOND // 10), 0)
    assert builder.frames.build(builder.frames.take(0)) is not None


# ----------------------------------------------------------------------------- finding 2

def jpeg_claiming(width, height, *, source=None):
    """A small real JPEG whose frame header is patched to claim ``width`` x ``height``."""
    image = np.zeros((16, 16, 3), np.uint8) if source is None else source
    ok, encoded = cv2.imencode('.jpg', image)
    data = bytearray(encoded.tobytes())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


def test_header_sizes_are_read_without_decoding(keyframes):
    jpeg = keyframes[0].camera.path.read_bytes()
    assert conversions.encoded_image_size(jpeg) == (1600, 900)
    ok, png = cv2.imencode('.png', np.zeros((7, 5, 3), np.uint8))
    assert conversions.encoded_image_size(png) == (5, 7)
    assert conversions.encoded_image_size(jpeg_claiming(30000, 30000)) == (30000, 30000)
    assert conversions.encoded_image_size(b'GIF89a' + bytes(40)) is None
    assert conversions.encoded_image_size(jpeg[:3]) is None


def compressed_at(store, stamp_ns, payload):
    return conversions.make_compressed_image(store.types['sensor_msgs/msg/CompressedImage'],
                                             header(store, stamp_ns, 'CAM_FRONT'), payload)


@pytest.mark.parametrize('width,height,reason', [
    (30000, 30000, SkipReason.IMAGE_TOO_LARGE), (800, 450, SkipReason.SIZE_MISMATCH)])
def test_a_compressed_image_claiming_another_size_is_skipped_undecoded(
        store, messages, width, height, reason):
    """Finding 2: an 87 kB JPEG claiming 30000x30000 was decoded first (17.5 s, +5 GB)."""
    builder = Builder(messages, image_transport='compressed')
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_image(compressed_at(store, messages['stamp'],
                                           jpeg_claiming(width, height)), 0)
    assert builder.frames.build(builder.frames.take(SECOND)) is None
    assert builder.reports == [reason]  # reported from the header: nothing was decoded


def test_a_raw_image_over_max_image_pixels_is_skipped(store, messages):
    builder = Builder(messages, max_image_pixels=1600 * 900 - 1)
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_image(messages['image'], 0)
    assert builder.frames.build(builder.frames.take(SECOND)) is None
    assert builder.reports == [SkipReason.IMAGE_TOO_LARGE]
    assert 'max_image_pixels=1439999' in builder.texts[0]


def test_compressed_to_rgb_refuses_unknown_formats_and_big_claims():
    with pytest.raises(ConversionError, match='no PNG or JPEG header'):
        conversions.compressed_to_rgb(type('M', (), {'format': 'gif', 'data': b'GIF89a'})())
    big = type('M', (), {'format': 'jpeg', 'data': jpeg_claiming(30000, 30000)})()
    with pytest.raises(ConversionError, match='more than max_pixels'):
        conversions.compressed_to_rgb(big, max_pixels=10_000_000)


# ----------------------------------------------------------------------------- finding 4

def test_an_image_older_than_the_last_output_is_dropped_as_late(store, messages):
    """Finding 4: an image 2 s late reset frame matching and went out: stamps went back."""
    builder = Builder(messages)
    stamp = messages['stamp']
    assert run_frame(builder, store, messages, stamp) is not None
    for late in (stamp - SECOND // 2, stamp - 5 * SECOND // 2):
        assert not builder.frames.add_image(image_at(store, messages, late), 0)
    assert builder.reports == [SkipReason.LATE_STAMP] * 2
    assert builder.frames.take(SECOND) is None
    assert builder.frames.sync_stats()['clock_resets'] == 0


def test_a_confirmed_clock_jump_back_restarts_matching(store, messages):
    """A bag loop is no late message: JUMP_CONFIRMATIONS messages in a row accept it."""
    builder = Builder(messages)
    stamp = messages['stamp']
    assert run_frame(builder, store, messages, stamp) is not None
    back = stamp - 60 * SECOND
    added = [builder.frames.add_image(image_at(store, messages, back + i * SECOND // 10), 0)
             for i in range(JUMP_CONFIRMATIONS)]
    assert added == [False] * (JUMP_CONFIRMATIONS - 1) + [True]
    assert builder.frames.sync_stats()['clock_resets'] == 1


def test_future_and_invalid_stamps_are_dropped(store, messages):
    """Finding 4: an image 1.5 s in the future blanked output for 1.5 s; stamps of 0,
    negative seconds or nanosec >= 1e9 were published as they were."""
    builder = Builder(messages)
    stamp = messages['stamp']
    assert not builder.frames.add_image(image_at(store, messages, stamp), 0,
                                        clock_ns=stamp - 3 * SECOND // 2)
    assert builder.reports == [SkipReason.FUTURE_STAMP]
    assert builder.frames.add_image(image_at(store, messages, stamp), 0, clock_ns=stamp)
    Time = store.types['builtin_interfaces/msg/Time']
    for sec, nanosec in ((0, 0), (-5, 0), (5, 1_000_000_000)):
        bad = replace(messages['image'], header=replace(messages['image'].header,
                                                        stamp=Time(sec=sec, nanosec=nanosec)))
        assert not builder.frames.add_image(bad, 0)
    assert builder.reports[1:] == [SkipReason.BAD_IMAGE_HEADER] * 3
    assert 'nanosec=1000000000' in builder.texts[-1]


# ----------------------------------------------------------------------------- finding 5

def test_gaps_are_steps_longer_than_one_and_a_half_median_periods():
    gaps = GapCounter()
    stamps = [i * 33_000_000 for i in range(10)] + [12 * 33_000_000, 13 * 33_000_000]
    assert [gaps.observe(s) for s in stamps].count(True) == 1 and gaps.gaps == 1
    assert not gaps.observe(0)  # a stamp going back is not a gap


def test_a_reordered_image_is_no_gap_but_a_clock_jump_back_restarts_the_stream():
    """Two images swapped in transport leave the stream whole; after a jump back the steps
    are measured from the new timeline."""
    gaps = GapCounter()
    period = 50_000_000
    for stamp in [0, 1, 2, 3, 4, 5, 7, 6, 8, 9]:
        gaps.observe(stamp * period)
    assert gaps.gaps == 1  # 5 -> 7 looks like a gap until 6 arrives; 6 and 7 -> 8 do not
    for stamp in [-100, -99, -98]:
        assert not gaps.observe(stamp * period)
    assert gaps.gaps == 1


def test_the_builder_counts_input_gaps(store, messages):
    builder = Builder(messages)
    for i in [*range(8), 10]:
        builder.frames.add_image(image_at(store, messages, messages['stamp'] + i * SECOND // 10),
                                 0)
    assert builder.counts[INPUT_GAPS] == 1


# ----------------------------------------------------------------------------- findings 3, 6

def test_frames_without_radar_are_counted(store, messages):
    builder = Builder(messages)
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_image(messages['image'], 0)
    assert builder.frames.build(builder.frames.take(SECOND)).frame.radar == ()
    assert builder.counts[FRAMES_WITHOUT_RADAR] == 1


def test_a_silent_radar_topic_turns_diagnostics_to_warn_naming_it():
    """Finding 3: a radar that stopped left /diagnostics at OK ('publishing at N Hz')."""
    stats = NodeStats('cpu', ('/RADAR_FRONT', '/RADAR_LEFT'), radar_timeout_s=0.5)
    stats.radar_received(0)
    time.sleep(0.6)  # past the timeout for sure; the next report follows at once
    stats.radar_received(0)
    stats.count('image_received')
    stats.frame_done({'engine': 1.0})
    level, message, values = stats.report({}, new_period=True)
    assert level == DiagnosticLevel.WARN
    assert 'radar /RADAR_LEFT silent' in message and '/RADAR_FRONT' not in message
    assert values['/RADAR_LEFT age_s'] == 'never' and float(values['/RADAR_FRONT age_s']) < 0.5
    assert float(values['/RADAR_FRONT rate_hz']) > 0


def test_frames_without_radar_make_the_period_degraded():
    stats = NodeStats('cpu')
    stats.count('image_received')
    stats.count(FRAMES_WITHOUT_RADAR)
    stats.frame_done({'engine': 1.0})
    assert stats.report({}, new_period=True)[:2] == (DiagnosticLevel.WARN,
                                                     'degraded: frames_without_radar')


def typed_cloud(x_type='<f4', n=4):
    """A cloud with the model's default radar fields, ``x`` of type ``x_type``."""
    cloud = np.zeros(n, [('x', x_type), ('y', '<f4'), ('z', '<f4')]
                     + [(name, '<f4') for name in DEFAULT_RADAR_FIELDS])
    cloud['x'], cloud['z'] = 10, 1
    return cloud


def test_radar_xyz_must_be_floats(store, messages):
    """Finding 6: an INT8 x was read as metres."""
    builder = Builder(messages)
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_radar(0, cloud_msg(store, typed_cloud('i1'),
                                          messages['stamp'] + 10_000_000), 0)
    builder.frames.add_image(messages['image'], 0)
    assert builder.frames.build(builder.frames.take(0)).frame.radar == ()
    assert builder.reports == [SkipReason.RADAR_BAD_CLOUD]
    assert "'x' has type int8" in builder.texts[0]


def test_non_physical_radar_points_are_dropped_and_counted(store, messages):
    """Finding 6: x = 1e30 (or a wrong is_bigendian) and RCS = inf were used as targets."""
    cloud = typed_cloud()
    cloud['x'][0] = 1e30
    cloud['y'][1] = -1500.0
    cloud[DEFAULT_RADAR_FIELDS[0]][2] = np.inf
    builder = Builder(messages)
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_radar(0, cloud_msg(store, cloud, messages['stamp'] + 10_000_000), 0)
    builder.frames.add_image(messages['image'], 0)
    sweep, = builder.frames.build(builder.frames.take(0)).frame.radar
    assert len(sweep.points) == 1 and builder.reports == []
    assert builder.counts == {'radar_points_out_of_range': 2, 'radar_points_bad_feature': 1}


def test_a_big_endian_cloud_is_byte_swapped():
    cloud = typed_cloud('>f4')
    cloud['x'] = [1.5, 2.5, 3.5, 4.5]
    fields = conversions.array_to_pointcloud2_fields(cloud.astype(cloud.dtype.newbyteorder('>')))
    assert fields['is_bigendian']
    msg = type('Cloud', (), {**fields, 'fields': [
        type('F', (), dict(zip(('name', 'offset', 'datatype', 'count'), f)))()
        for f in fields['fields']]})()
    points, _ = conversions.radar_from_cloud(conversions.pointcloud2_to_array(msg))
    np.testing.assert_array_equal(points[:, 0], [1.5, 2.5, 3.5, 4.5])


def test_a_sweep_over_max_radar_points_is_not_decoded(store, messages):
    """Finding 6: a 1M-point cloud cost 2.4 s and 152 MB without a warning."""
    builder = Builder(messages, max_radar_points=100)
    builder.frames.add_camera_info(messages['info'])
    builder.frames.add_radar(0, cloud_msg(store, typed_cloud(n=101),
                                          messages['stamp'] + 10_000_000), 0)
    builder.frames.add_image(messages['image'], 0)
    assert builder.frames.build(builder.frames.take(0)).frame.radar == ()
    assert builder.reports == [SkipReason.RADAR_TOO_MANY_POINTS]
    assert '101 points' in builder.texts[0]
