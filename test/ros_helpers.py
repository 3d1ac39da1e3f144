"""Helpers for tests that run the node with real rclpy over DDS on localhost.

Each test process talks on its own ROS domain (derived from the pid) restricted to localhost,
set before any context is initialised, so parallel runs and other machines cannot interfere.
Every harness owns its rclpy Context: tests never touch the default context.
"""
from __future__ import annotations

import os
from pathlib import Path
import queue
import threading
import time
from typing import Any, Callable, Iterable

import numpy as np
import pytest

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.core.frame import Frame, RadarSweep
from xdrcdepth_ros.core.geometry import extrinsics_from_transform

DOMAIN_ID = 1 + os.getpid() % 101
RADAR_FIELDS = ('rcs', 'vx_comp', 'vy_comp')
_MODEL_CACHE: dict[str, Path] = {}


def export_tiny_model(folder: Path) -> Path:
    """A randomly initialised 'xdrcdepth_tiny' student exported at 96x192 (needs torch).

    Used when the shared ``tiny_model`` fixture is not available; cached per process.
    """
    if 'model' not in _MODEL_CACHE:
        import torch

        from xdrcdepth_ros.export import export_model
        from xdrcdepth_ros.model.registry import create_model

        torch.manual_seed(0)
        # A random network's saliency is numerically noisy; depth parity is what matters here.
        export_model(create_model('xdrcdepth_tiny'), folder / 'node_tiny.onnx', height=96,
                     width=192, model_name='xdrcdepth_tiny',
                     radar_channels=('depth', 'rcs', 'vx', 'vy'), radar_fields=RADAR_FIELDS,
                     rtol=1e-2)
        _MODEL_CACHE['model'] = folder / 'node_tiny.onnx'
    return _MODEL_CACHE['model']


@pytest.fixture(scope='session')
def node_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a small exported model: the shared ``tiny_model`` if conftest has it."""
    try:
        return Path(request.getfixturevalue('tiny_model'))
    except pytest.FixtureLookupError:
        return export_tiny_model(tmp_path_factory.mktemp('node_model'))


def isolate_ros() -> None:
    """Pin this process to a private ROS domain on localhost (call before rclpy.init)."""
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN_ID)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')


def header(stamp_ns: int, frame_id: str) -> Any:
    """A std_msgs/Header with an integer-nanosecond stamp."""
    from std_msgs.msg import Header

    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def image_msg(image: np.ndarray, stamp_ns: int, frame_id: str = 'CAM_FRONT') -> Any:
    """sensor_msgs/Image rgb8 of an (H, W, 3) uint8 RGB image."""
    from sensor_msgs.msg import Image

    return conversions.make_image(Image, header(stamp_ns, frame_id), image, 'rgb8')


def compressed_msg(jpeg: bytes, stamp_ns: int, frame_id: str = 'CAM_FRONT') -> Any:
    """sensor_msgs/CompressedImage carrying the JPEG file bytes as they are."""
    from sensor_msgs.msg import CompressedImage

    return conversions.make_compressed_image(CompressedImage, header(stamp_ns, frame_id), jpeg)


def camera_info_msg(K: np.ndarray, width: int, height: int, stamp_ns: int,
                    frame_id: str = 'CAM_FRONT') -> Any:
    """sensor_msgs/CameraInfo of an undistorted camera: k = K, p = [K | 0]."""
    from sensor_msgs.msg import CameraInfo

    model = conversions.CameraModel.from_K(K, width, height)
    return conversions.make_camera_info(CameraInfo, header(stamp_ns, frame_id), model)


def cloud_msg(points: np.ndarray, stamp_ns: int, frame_id: str = 'RADAR_FRONT') -> Any:
    """sensor_msgs/PointCloud2 of a structured array (every field in its native type)."""
    from sensor_msgs.msg import PointCloud2, PointField

    return conversions.make_pointcloud2(PointCloud2, PointField, header(stamp_ns, frame_id),
                                        points)


def keyframe_stamp_ns(keyframe: Any, channel: str | None = None) -> int:
    """Header stamp (ns) of a keyframe's camera image or of one of its sensors."""
    record = keyframe.camera if channel is None else keyframe.sensors[channel]
    return int(record.timestamp_us) * 1000


class Harness:
    """An rclpy context + executor spinning in a thread, and a test node with pubs/subs.

    Use as a context manager; ``add(node)`` puts the node under test on the same executor.
    Received messages land in per-topic queues; every wait has a deadline.
    """

    def __init__(self) -> None:
        import rclpy
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        isolate_ros()
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.node = rclpy.create_node('xdrcdepth_test_driver', context=self.context)
        # Queue.put is thread-safe; a reentrant group never drops out of the wait set.
        self._receivers = ReentrantCallbackGroup()
        self.executor.add_node(self.node)
        self._nodes: list[Any] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def __enter__(self) -> 'Harness':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, node: Any) -> Any:
        """Spin ``node`` too; it is destroyed by :meth:`close`."""
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def publisher(self, msg_type: type, topic: str, *, reliable: bool = True) -> Any:
        """A test publisher (reliable by default: the node's best-effort subs match it)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        policy = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        return self.node.create_publisher(msg_type, topic, QoSProfile(depth=10,
                                                                      reliability=policy))

    def subscribe(self, msg_type: type, topic: str, *, timed: bool = False) -> queue.Queue:
        """Collect messages of ``topic`` (reliable) into a queue, returned.

        With ``timed`` the queue holds ``(receive time ns, message)``, the time on the test
        node's clock (system time, like the stamps the tests give).
        """
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        received: queue.Queue = queue.Queue()
        clock = self.node.get_clock()
        callback = ((lambda msg: received.put((clock.now().nanoseconds, msg))) if timed
                    else received.put)
        self.node.create_subscription(msg_type, topic, callback,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
                                      callback_group=self._receivers)
        return received

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout} s waiting for {what}')
            time.sleep(0.01)

    def wait_connected(self, publishers: Iterable[Any], timeout: float = 10.0) -> None:
        """Wait until every publisher has at least one matched subscription."""
        publishers = list(publishers)
        names = ', '.join(p.topic_name for p in publishers)
        self.wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers),
                        timeout, f'the node to subscribe to {names}')

    def wait_subscribed(self, node: Any, topics: Iterable[str], timeout: float = 10.0) -> None:
        """Wait until ``node`` sees a subscriber on each of ``topics`` (optional outputs render
        only while someone listens)."""
        topics = list(topics)
        self.wait_until(lambda: all(node.count_subscribers(t) > 0 for t in topics), timeout,
                        'subscribers on ' + ', '.join(topics))

    @staticmethod
    def get(received: queue.Queue, timeout: float, what: str) -> Any:
        """Next message from a queue, or AssertionError naming ``what`` after ``timeout`` s."""
        try:
            return received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f'no {what} within {timeout} s') from None

    def close(self) -> None:
        """Destroy every node, stop the executor and shut the context down."""
        for node in self._nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)


# ----------------------------------------------------------------------------- node rigs

TIMEOUT = 30.0
ATTEMPTS = 3
# nuScenes keyframe radar sweeps lag the camera by up to 66 ms in the bundled frames.
SLOP = 0.08


def node_params(model, extrinsics, **extra):
    """Parameter overrides for a node on the bundled frames (static extrinsics, CPU)."""
    from rclpy.parameter import Parameter

    values = {'model_path': str(model), 'providers': ['cpu'], 'extrinsics_source': 'parameters',
              'radar_extrinsics': list(extrinsics), 'sync_slop': SLOP, 'publish_color': False,
              **extra}
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture(scope='module')
def frames(keyframes):
    """(image, K, radar cloud, image stamp, radar stamp, jpeg bytes) of the bundled keyframes."""
    return [(kf.read_image(), np.asarray(kf.K), kf.read_radar('RADAR_FRONT'),
             keyframe_stamp_ns(kf), keyframe_stamp_ns(kf, 'RADAR_FRONT'),
             kf.camera.path.read_bytes()) for kf in keyframes]


@pytest.fixture(scope='module')
def extrinsics(keyframes):
    """camera <- RADAR_FRONT of the first keyframe, as radar_extrinsics (x y z qx qy qz qw)."""
    return extrinsics_from_transform(keyframes[0].T_cam_from('RADAR_FRONT'))


@pytest.fixture(scope='module')
def reference(node_model):
    """A separate Engine + DepthPipeline factory: what the node must reproduce."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    engine = Engine(node_model, providers=['cpu'])
    return lambda output_size='model': DepthPipeline(engine, output_size=output_size)


def reference_frame(image, K, cloud, stamp_ns, radar_stamp_ns, extrinsics):
    """The Frame the node should assemble: radar via the same conversions, T from parameters."""
    from xdrcdepth_ros.core.geometry import transform_from_xyzw

    sweeps = ()
    if cloud is not None:
        points, features = conversions.radar_from_cloud(
            cloud, conversions.RadarFieldMap(RADAR_FIELDS))
        transform = transform_from_xyzw(extrinsics[:3], extrinsics[3:])
        sweeps = (RadarSweep(points, features, transform, radar_stamp_ns, 'RADAR_FRONT'),)
    return Frame(image=image, K=K, radar=sweeps, stamp_ns=stamp_ns, frame_id='CAM_FRONT')


def depth_array(msg):
    """Depth pixels of a received Image (32FC1 metres or 16UC1 millimetres)."""
    return np.array(conversions.image_to_array(msg))


class Rig:
    """The node under test plus the test publishers/subscribers on one harness."""

    def __init__(self, harness, node, *, compressed=False, outputs=('depth', 'camera_info')):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.harness, self.node = harness, node
        image_type = CompressedImage if compressed else Image
        topics = node.input_topics  # the node's defaults: relative names in its namespace
        self.image = harness.publisher(image_type, topics['image'])
        self.info = harness.publisher(CameraInfo, topics['camera_info'])
        self.radar = harness.publisher(PointCloud2, topics['radars'][0])
        types = {'depth': Image, 'camera_info': CameraInfo, 'depth_color': Image,
                 'saliency_overlay': Image, 'points': PointCloud2,
                 'depth/compressedDepth': CompressedImage,
                 'depth_color/compressed': CompressedImage}
        self.out = {name: harness.subscribe(types[name], f'/xdrcdepth/{name}')
                    for name in outputs}
        harness.wait_connected([self.image, self.info, self.radar])
        harness.wait_subscribed(node, [f'/xdrcdepth/{name}' for name in outputs])

    def counter(self, key):
        """A diagnostic counter of the node (0 when it has not been counted yet)."""
        return int(self.node.diagnostics()[2].get(key, 0))

    def wait_counter(self, key, before):
        """Wait until counter ``key`` exceeds ``before``."""
        self.harness.wait_until(lambda: self.counter(key) > before, TIMEOUT, f'{key} to grow')

    def send(self, image, K, cloud, stamp_ns, radar_stamp_ns, *, info=True):
        """Publish CameraInfo, the radar sweep, then the image (radar first: no sync wait)."""
        height, width = image.shape[:2] if isinstance(image, np.ndarray) else (900, 1600)
        if info:
            self.info.publish(camera_info_msg(K, width, height, stamp_ns))
        if cloud is not None:
            self.radar.publish(cloud_msg(cloud, radar_stamp_ns))
        time.sleep(0.02)  # let the radar land before the image, as it does on a vehicle
        self.image.publish(image_msg(image, stamp_ns) if isinstance(image, np.ndarray)
                           else image)

    def deliver(self, *args, until=None, **kwargs):
        """:meth:`send`, then wait for the next ~/depth (returned) or for ``until()``.

        Sends again (same stamps) up to twice when nothing comes: the node's inputs are best
        effort (sensor-data QoS), so DDS may drop a 4 MB image on a loaded machine. A copy of an
        image that did arrive is dropped by the node as a duplicate stamp.
        """
        for _ in range(ATTEMPTS):
            self.send(*args, **kwargs)
            deadline = time.monotonic() + TIMEOUT / ATTEMPTS
            while time.monotonic() < deadline:
                if until is not None:
                    if until():
                        return None
                    time.sleep(0.01)
                    continue
                try:
                    return self.out['depth'].get(timeout=0.05)
                except queue.Empty:
                    pass
        raise AssertionError(f'no {"depth" if until is None else "effect"} after '
                             f'{ATTEMPTS} sends in {TIMEOUT} s')

    def get(self, name='depth'):
        """The next message on output ``name``."""
        return self.harness.get(self.out[name], TIMEOUT, f'/xdrcdepth/{name}')
