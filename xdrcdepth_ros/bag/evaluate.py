"""Evaluate a depth bag against LiDAR: the paper metrics per frame and their mean.

For each depth image (``/xdrcdepth/depth`` by default) the LiDAR sweep nearest in time is
projected into the depth image with :func:`geometry.lidar_depth_map`, using the depth's own
CameraInfo (``/xdrcdepth/camera_info``) and the bag's TF: ``/tf_static`` for the sensor mounts and
``odom → base_link`` on ``/tf`` at both stamps, so ego motion between the LiDAR and camera
stamps is compensated exactly as nuScenes' own projection does. Metrics come from
:mod:`xdrcdepth_ros.core.evaluate` (per image, then averaged; caps 50 / 70 / 80 m).

The bag is read twice: once for TF and stamps, once for the payloads a frame needs, so memory
stays bounded by the few frames in flight.
"""
from __future__ import annotations

import bisect
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.bag.io import BagReader, staged_folder
from xdrcdepth_ros.core.outputs import output_topic
from xdrcdepth_ros.bag.panels import image_in_depth_grid, render_panel
from xdrcdepth_ros.bag.tf import TfBuffer
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.evaluate import DEFAULT_CAPS, MetricAccumulator
from xdrcdepth_ros.core.geometry import lidar_depth_map, radar_map

_IMAGE_TYPES = ('sensor_msgs/msg/CompressedImage', 'sensor_msgs/msg/Image')


@dataclass
class FrameEvaluation:
    """One depth frame: stamp, the LiDAR sweep used, metrics per cap (None: no valid GT)."""

    stamp_ns: int
    lidar_stamp_ns: int
    metrics: dict[float, dict[str, float] | None]
    ego_motion_compensated: bool
    panel: str | None = None


@dataclass
class BagEvaluation:
    """Result of :func:`evaluate_bag`: per-frame rows, the mean per cap and skipped frames."""

    frames: list[FrameEvaluation] = field(default_factory=list)
    mean: dict[float, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    panels_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (caps as strings, e.g. ``'80'``)."""
        def clean(value: Any) -> Any:  # NaN is not JSON: a cap without frames gives None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return None if isinstance(value, float) and not np.isfinite(value) else value

        def caps(values: dict[float, Any]) -> dict[str, Any]:
            return {f'{cap:g}': clean(value) for cap, value in values.items()}
        return {'frames': [{'stamp_ns': f.stamp_ns, 'lidar_stamp_ns': f.lidar_stamp_ns,
                            'lidar_offset_ms': (f.lidar_stamp_ns - f.stamp_ns) / 1e6,
                            'ego_motion_compensated': f.ego_motion_compensated,
                            'metrics': caps(f.metrics), 'panel': f.panel}
                           for f in self.frames],
                'mean': caps(self.mean), 'skipped': dict(self.skipped),
                'panels_dir': self.panels_dir}


def _nearest(stamps: list[int], stamp: int, tolerance_ns: int) -> int | None:
    position = bisect.bisect_left(stamps, stamp)
    best = None
    for i in (position - 1, position):
        if 0 <= i < len(stamps) and abs(stamps[i] - stamp) <= tolerance_ns:
            if best is None or abs(stamps[i] - stamp) < abs(best - stamp):
                best = stamps[i]
    return best


def _camera_info_topic(image_topic: str) -> str:
    """image_transport convention: ``/ns/image_raw[/compressed]`` → ``/ns/camera_info``."""
    base = image_topic.removesuffix('/compressed')
    return base.rsplit('/', 1)[0] + '/camera_info'


def _depth_meters(msg: Any) -> np.ndarray:
    pixels = conversions.image_to_array(msg)
    if msg.encoding == '16UC1':  # REP 118 millimetres, 0 = invalid
        return np.where(pixels > 0, pixels.astype(np.float32) / 1000.0, np.float32(np.nan))
    if msg.encoding != '32FC1':
        raise BagError(f'depth image encoding {msg.encoding!r} is not 32FC1 or 16UC1')
    return np.asarray(pixels, dtype=np.float32)


def _xyz(cloud_msg: Any) -> np.ndarray:
    cloud = conversions.pointcloud2_to_array(cloud_msg)
    return np.stack([cloud['x'], cloud['y'], cloud['z']], axis=1).astype(np.float64)


def evaluate_bag(bag: str | Path, *, depth_topic: str = output_topic('depth'),
                 lidar_topic: str = '/LIDAR_TOP', image_topic: str | None = None,
                 radar_topics: Sequence[str] | None = None, caps: Sequence[float] = DEFAULT_CAPS,
                 max_lidar_offset_ms: float = 60.0, radar_slop_ms: float = 60.0,
                 panels_dir: str | Path | None = None, panel_max_depth: float = 80.0,
                 progress: bool = True, skip_corrupt: bool = False,
                 on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None = None
                 ) -> BagEvaluation:
    """Score every depth image of ``bag`` against the LiDAR sweep nearest in time.

    Args:
        bag: a bag with depth output, its CameraInfo, LiDAR and TF (``xdrcdepth replay`` and
            the demo write such bags).
        depth_topic: the depth topic; its CameraInfo is the sibling ``camera_info`` topic.
        lidar_topic: LiDAR PointCloud2 topic (ground truth).
        image_topic: camera image for panels; default the first (Compressed)Image input topic.
        radar_topics: radar PointCloud2 topics for panels; default topics containing ``RADAR``.
        caps: evaluation caps, metres.
        max_lidar_offset_ms: a depth frame without a LiDAR sweep this close is skipped.
        radar_slop_ms: radar sweeps this close to the image are drawn in the panel.
        panels_dir: folder for one PNG panel per frame, replaced as a whole once every panel
            is written (nothing is left on an error); None writes none.
        panel_max_depth: far end of the panels' depth colour scale, metres.
        progress: show a tqdm progress bar.
        skip_corrupt: go on past messages a corrupt bag cannot give (their frames are
            skipped, counted as ``corrupt_messages_lost``); otherwise they are an error.

    Raises:
        FileNotFoundError, BagError: unreadable or corrupt bag; no depth, camera_info or
            LiDAR topic; the panels cannot be written.
    """
    from tqdm import tqdm

    info_topic = depth_topic.rsplit('/', 1)[0] + '/camera_info'
    saliency_topic = depth_topic.rsplit('/', 1)[0] + '/saliency_overlay'
    tolerance = int(max_lidar_offset_ms * 1e6)
    with BagReader(bag, skip_corrupt=skip_corrupt) as reader:
        reader.require_topic(depth_topic, 'depth')
        reader.require_topic(info_topic, 'depth camera_info')
        reader.require_topic(lidar_topic, 'LiDAR')
        topics = reader.topics
        outputs = depth_topic.rsplit('/', 1)[0] + '/'
        if image_topic is None:
            image_topic = next((t for t in sorted(topics) if topics[t] in _IMAGE_TYPES
                                and not t.startswith(outputs)), None)
        if radar_topics is None:
            radar_topics = [t for t in sorted(topics) if 'RADAR' in t.upper()
                            and topics[t] == 'sensor_msgs/msg/PointCloud2']
        camera_info_in = _camera_info_topic(image_topic) if image_topic else None
        # Pass 1: TF and stamps.
        tf = TfBuffer()
        stamps: dict[str, list[int]] = {}
        for message in reader.messages([depth_topic, lidar_topic, '/tf', '/tf_static',
                                        *radar_topics]):
            if message.topic == '/tf_static':
                tf.add_static(reader.deserialize(message), message.stamp_ns)
            elif message.topic == '/tf':
                tf.add_dynamic(reader.deserialize(message))
            else:
                stamps.setdefault(message.topic, []).append(message.stamp_ns)
        for values in stamps.values():
            values.sort()
        result = BagEvaluation(panels_dir=str(panels_dir) if panels_dir is not None else None)
        skipped: dict[str, int] = {}
        # Which (topic, stamp) each depth frame needs.
        plan: dict[int, dict[str, int]] = {}
        for stamp in stamps.get(depth_topic, []):
            lidar = _nearest(stamps.get(lidar_topic, []), stamp, tolerance)
            if lidar is None:
                skipped['no_lidar_within_offset'] = skipped.get('no_lidar_within_offset', 0) + 1
                continue
            needs = {depth_topic: stamp, info_topic: stamp, lidar_topic: lidar}
            if panels_dir is not None:
                for topic in (image_topic, camera_info_in, saliency_topic):
                    if topic and topic in topics:
                        needs[topic] = stamp
                for topic in radar_topics:
                    near = _nearest(stamps.get(topic, []), stamp, int(radar_slop_ms * 1e6))
                    if near is not None:
                        needs[topic] = near
            plan[stamp] = needs
        wanted: dict[tuple[str, int], list[int]] = {}
        for stamp, needs in plan.items():
            for topic, need in needs.items():
                wanted.setdefault((topic, need), []).append(stamp)
        # Pass 2: collect payloads; score a frame as soon as it is complete.
        parts: dict[int, dict[str, Any]] = {stamp: {} for stamp in plan}
        order = {stamp: index for index, stamp in enumerate(sorted(plan))}
        # Panels go to a staging folder that replaces panels_dir only once all are written.
        stage = (staged_folder(panels_dir, 'panels') if panels_dir is not None
                 else nullcontext(None))
        with stage as staging:
            scorer = _Scorer(_Topics(depth_topic, info_topic, lidar_topic, image_topic,
                                     camera_info_in, saliency_topic, tuple(radar_topics)),
                             tf, MetricAccumulator(caps), skipped, staging, panel_max_depth,
                             panels_dir, on_frame)
            bar = tqdm(total=len(plan), desc='evaluate', unit='frame', disable=not progress)
            with bar:
                for message in reader.messages({topic for topic, _ in wanted}):
                    for stamp in wanted.get((message.topic, message.stamp_ns), []):
                        if stamp not in parts or message.topic in parts[stamp]:
                            continue
                        parts[stamp][message.topic] = reader.deserialize(message)
                        if len(parts[stamp]) == len(plan[stamp]):
                            frame = scorer.score(parts.pop(stamp), plan[stamp], order[stamp])
                            if frame is not None:
                                result.frames.append(frame)
                            bar.update(1)
            if parts:  # a payload never arrived (e.g. two frames share one stamp)
                skipped['incomplete'] = len(parts)
        if reader.lost:
            skipped['corrupt_messages_lost'] = sum(reader.lost.values())
    result.frames.sort(key=lambda f: f.stamp_ns)
    result.mean = scorer.accumulator.summary()
    result.skipped = skipped
    return result


@dataclass(frozen=True)
class _Topics:
    depth: str
    info: str
    lidar: str
    image: str | None
    image_info: str | None
    saliency: str
    radars: tuple[str, ...]


@dataclass
class _Scorer:
    topics: _Topics
    tf: TfBuffer
    accumulator: MetricAccumulator
    skipped: dict[str, int]
    panels_dir: str | Path | None
    """Where panels are written (the staging folder)."""
    panel_max_depth: float
    panels_final: str | Path | None = None
    """Where they end up (the paths reported per frame)."""
    on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None = None

    def score(self, parts: dict[str, Any], needs: dict[str, int],
              index: int) -> FrameEvaluation | None:
        """Metrics (and the panel) of one frame whose payloads are all in ``parts``."""
        topics = self.topics
        depth_msg = parts[topics.depth]
        stamp = needs[topics.depth]
        depth = _depth_meters(depth_msg)
        model = conversions.camera_info_to_model(parts[topics.info])
        if depth.shape != (model.height, model.width):
            raise BagError(f'{topics.depth} at {stamp} ns is {depth.shape[1]}x{depth.shape[0]} '
                           f'but {topics.info} says {model.width}x{model.height}')
        camera_frame = depth_msg.header.frame_id
        lidar_msg = parts[topics.lidar]
        T, compensated = _camera_from_sensor(self.tf, camera_frame, stamp,
                                             lidar_msg.header.frame_id, needs[topics.lidar])
        if T is None:
            self.skipped['no_transform'] = self.skipped.get('no_transform', 0) + 1
            return None
        height, width = depth.shape
        gt = lidar_depth_map(_xyz(lidar_msg), T, model.K, width, height)
        frame = FrameEvaluation(stamp, needs[topics.lidar], self.accumulator.add(depth, gt),
                                compensated)
        if self.on_frame is not None:
            self.on_frame(stamp, depth, gt)
        if self.panels_dir is not None:
            frame.panel = str(self._panel(parts, needs, index, depth, gt, model.K))
        return frame

    def _panel(self, parts: dict[str, Any], needs: dict[str, int], index: int,
               depth: np.ndarray, gt: np.ndarray, K: np.ndarray) -> Path:
        topics = self.topics
        stamp = needs[topics.depth]
        camera_frame = parts[topics.depth].header.frame_id
        height, width = depth.shape
        image = None
        if topics.image in parts and topics.image_info in parts:
            message = parts[topics.image]
            rgb = (conversions.compressed_to_rgb(message) if hasattr(message, 'format')
                   else conversions.image_to_rgb(message))
            K_image = conversions.camera_info_to_model(parts[topics.image_info]).K
            image = image_in_depth_grid(rgb, K_image, K, width, height)
        # All sweeps in the camera frame, rasterised once: nearest wins across sweeps too.
        in_camera = [np.zeros((0, 3))]
        for topic in topics.radars:
            if topic not in parts:
                continue
            msg = parts[topic]
            T, _ = _camera_from_sensor(self.tf, camera_frame, stamp, msg.header.frame_id,
                                       needs[topic])
            if T is not None:
                points = _xyz(msg)
                in_camera.append(points @ T[:3, :3].T + T[:3, 3])
        points = np.concatenate(in_camera)
        radar_depth = radar_map(points, np.zeros((len(points), 0)), np.eye(4), K, width,
                                height)[0]
        saliency = None
        if topics.saliency in parts:
            saliency = conversions.image_to_rgb(parts[topics.saliency])
        name = f'frame_{index:04d}_{stamp}.png'
        render_panel(Path(self.panels_dir) / name, image=image, radar_depth=radar_depth,
                     depth=depth, gt=gt, saliency=saliency, max_depth=self.panel_max_depth,
                     title=f'#{index}')
        return Path(self.panels_final or self.panels_dir) / name


def _camera_from_sensor(tf: TfBuffer, camera_frame: str, camera_ns: int, sensor_frame: str,
                        sensor_ns: int) -> tuple[np.ndarray | None, bool]:
    """Motion-compensated ``T_cam<-sensor`` when /tf has both poses, else the static chain."""
    T = tf.lookup_compensated(camera_frame, camera_ns, sensor_frame, sensor_ns)
    if T is not None:
        return T, True
    return tf.lookup_static(camera_frame, sensor_frame, camera_ns), False
