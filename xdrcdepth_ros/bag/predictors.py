"""Trivial predictors on exactly the frames, output grid and GT of a node's depth bag.

:func:`predictor_bag` copies a depth bag (the node's outputs plus its inputs, LiDAR and TF, as
the demo records it) into a new bag in which each depth image is replaced by a predictor's
depth on the same grid (the depth's own CameraInfo) with the same header. Scoring that bag with
:func:`~xdrcdepth_ros.bag.evaluate.evaluate_bag` then uses the same frames, LiDAR sweeps and
transforms as the node's score: only the depth differs.

The predictor gets the radar depth the node saw, rasterised into the output grid
(:func:`~xdrcdepth_ros.core.geometry.radar_map`, nearest point wins): for each radar topic the
sweep nearest in time to the depth stamp (within ``radar_slop_ms``, by default the node's
default ``sync_slop``, so a frame the node ran without radar gets no radar here either), mapped
into the camera through the static mounts on ``/tf_static`` (camera optical ← radar through ``base_link``, not
ego-motion compensated), which is what the converter's ``radar_extrinsics`` parameters hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xdrcdepth_ros.bag.evaluate import _depth_meters, _nearest, _xyz
from xdrcdepth_ros.bag.io import BagReader, BagWriter
from xdrcdepth_ros.bag.tf import TfBuffer
from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.geometry import radar_map
from xdrcdepth_ros.core.outputs import output_topic
from xdrcdepth_ros.core.sync import DEFAULT_SLOP_NS

Predict = Callable[[np.ndarray], np.ndarray]
"""(H, W) radar depth, m, 0 = no point → (H, W) depth, m."""


@dataclass(frozen=True)
class PredictorBagSummary:
    """What :func:`predictor_bag` wrote: depth images, and how many had no radar sweep within
    the slop (their radar depth is empty, as the node ran them without radar)."""

    frames: int
    frames_without_radar: int


def predictor_bag(depth_bag: str | Path, out: str | Path, predict: Predict, *,
                  depth_topic: str = output_topic('depth'),
                  radar_topics: Sequence[str] | None = None,
                  radar_slop_ms: float = DEFAULT_SLOP_NS / 1e6,
                  overwrite: bool = False) -> PredictorBagSummary:
    """Write ``out``: ``depth_bag`` with every depth image replaced by ``predict``'s.

    Other output topics of the node (colour depth, saliency, ...) are left out; everything
    else (inputs, LiDAR, TF, the depth's CameraInfo) is copied unchanged.

    Args:
        depth_bag: a bag with the node's depth, its CameraInfo, the radar inputs and TF.
        out: the bag to create (atomically).
        predict: the predictor.
        depth_topic: the depth topic; its CameraInfo is the sibling ``camera_info`` topic.
        radar_topics: radar PointCloud2 topics; default those containing ``RADAR``.
        radar_slop_ms: a sweep farther than this from the depth stamp is not used; default
            the node's ``sync_slop`` default, so the predictor sees the sweeps the node paired.
        overwrite: replace an existing ``out``.

    Returns:
        The number of depth images written and of those without radar.

    Raises:
        FileNotFoundError, BagError: the bag lacks depth or its CameraInfo, a predictor's
            depth has another shape than the grid, ``out`` exists.
    """
    depth_bag = Path(depth_bag)
    prefix = depth_topic.rsplit('/', 1)[0] + '/'
    info_topic = prefix + 'camera_info'
    slop = int(radar_slop_ms * 1e6)
    with BagReader(depth_bag) as reader:
        reader.require_topic(depth_topic, 'depth')
        reader.require_topic(info_topic, 'depth camera_info')
        topics = reader.topics
        if radar_topics is None:
            radar_topics = [t for t in sorted(topics) if 'RADAR' in t.upper()
                            and topics[t] == 'sensor_msgs/msg/PointCloud2']
        # Pass 1: static mounts, radar stamps, depth CameraInfo.
        tf = TfBuffer()
        radar_stamps: dict[str, list[int]] = {t: [] for t in radar_topics}
        infos: dict[int, conversions.CameraModel] = {}
        for message in reader.messages(['/tf_static', info_topic, *radar_topics]):
            if message.topic == '/tf_static':
                tf.add_static(reader.deserialize(message), message.stamp_ns)
            elif message.topic == info_topic:
                infos[message.stamp_ns] = conversions.camera_info_to_model(
                    reader.deserialize(message))
            else:
                radar_stamps[message.topic].append(message.stamp_ns)
        for values in radar_stamps.values():
            values.sort()
        depth_stamps = [m.stamp_ns for m in reader.messages([depth_topic])]
        wanted = {(t, s) for stamp in depth_stamps for t in radar_topics
                  if (s := _nearest(radar_stamps[t], stamp, slop)) is not None}
        # Pass 2: the sweeps those frames use.
        clouds: dict[tuple[str, int], tuple[str, np.ndarray]] = {}
        for message in reader.messages(radar_topics):
            if (message.topic, message.stamp_ns) in wanted:
                msg = reader.deserialize(message)
                clouds[(message.topic, message.stamp_ns)] = (msg.header.frame_id, _xyz(msg))
        # Pass 3: copy, replacing the depth.
        written = without_radar = 0
        with BagWriter(out, overwrite=overwrite) as writer:
            image_cls = writer.store.types['sensor_msgs/msg/Image']
            for message in reader.messages():
                if message.topic.startswith(prefix) and message.topic not in (depth_topic,
                                                                               info_topic):
                    continue
                if message.topic != depth_topic:
                    writer.write_raw(message.topic, message.msgtype, message.stamp_ns,
                                     message.raw, qos=message.qos)
                    continue
                msg = reader.deserialize(message)
                stamp = message.stamp_ns
                model = infos.get(stamp)
                if model is None:
                    raise BagError(f'{depth_topic} at {stamp} ns has no {info_topic}')
                height, width = _depth_meters(msg).shape
                radar = _radar_depth(tf, clouds, radar_topics, radar_stamps, stamp, slop,
                                     msg.header.frame_id, model.K, width, height)
                without_radar += int(not (radar > 0).any())
                depth = np.asarray(predict(radar), dtype=np.float32)
                if depth.shape != (height, width):
                    raise BagError(f'predictor gave {depth.shape}, the grid is '
                                   f'{(height, width)}')
                writer.write(depth_topic, stamp, conversions.make_image(
                    image_cls, msg.header, depth, '32FC1'))
                written += 1
    return PredictorBagSummary(written, without_radar)


def _radar_depth(tf: TfBuffer, clouds: dict[tuple[str, int], tuple[str, np.ndarray]],
                 radar_topics: Sequence[str], radar_stamps: dict[str, list[int]], stamp: int,
                 slop: int, camera_frame: str, K: np.ndarray, width: int,
                 height: int) -> np.ndarray:
    """(H, W) radar depth of the sweeps nearest ``stamp`` (all topics, nearest point wins)."""
    in_camera = [np.zeros((0, 3))]
    for topic in radar_topics:
        near = _nearest(radar_stamps[topic], stamp, slop)
        if near is None or (topic, near) not in clouds:
            continue
        frame, points = clouds[(topic, near)]
        T = tf.lookup_static(camera_frame, frame, stamp)
        if T is None:
            raise BagError(f'no /tf_static chain {camera_frame} <- {frame} at {stamp} ns')
        in_camera.append(points @ T[:3, :3].T + T[:3, 3])
    points = np.concatenate(in_camera)
    return radar_map(points, np.zeros((len(points), 0)), np.eye(4), K, width, height)[0]


SCORE_KEYS = ('mae_m', 'rmse_m', 'delta1', 'abs_rel', 'n_images')


@dataclass(frozen=True)
class NodeAndPredictorScores:
    """What :func:`score_node_and_predictors` measured: ``metrics['node']`` and one entry per
    predictor (``SCORE_KEYS`` at the cap), on the same frames."""

    metrics: dict[str, dict[str, float]]
    frames: list[int]
    frames_without_radar: int
    gt_median_m: float
    node: Any  # the node's BagEvaluation (skipped frames, panels)


def score_node_and_predictors(depth_bag: str | Path, predictors: Callable[[float],
                                                                          dict[str, Predict]],
                              work_dir: str | Path, *, cap: float = 80.0,
                              radar_topics: Sequence[str] | None = None,
                              radar_slop_ms: float = DEFAULT_SLOP_NS / 1e6,
                              panels_dir: str | Path | None = None,
                              progress: bool = False) -> NodeAndPredictorScores:
    """Score a node's depth bag against LiDAR, then each predictor on the same frames and grid.

    Args:
        depth_bag: the node's depth bag (as :func:`predictor_bag` takes it).
        predictors: called with the median LiDAR depth of the scored frames, m (for constant
            and fallback predictors); returns ``{name: predictor}``.
        work_dir: where each predictor's bag ``<name>_bag`` is written (replaced).
        cap: depth cap of the reported metrics, m (one of ``evaluate_bag``'s caps).
        radar_topics, radar_slop_ms: as for :func:`predictor_bag`.
        panels_dir: the node's panels go here (replaced), if given.
        progress: progress bars.

    Raises:
        BagError: a predictor was scored on other frames than the node.
    """
    from xdrcdepth_ros.bag.evaluate import evaluate_bag

    def at_cap(evaluation: Any) -> dict[str, float]:
        values = evaluation.to_dict()['mean'][f'{cap:g}']
        return {k: values[k] for k in SCORE_KEYS if k in values}

    gt_values: list[np.ndarray] = []
    node = evaluate_bag(depth_bag, panels_dir=panels_dir, progress=progress,
                        on_frame=lambda _s, _d, gt: gt_values.append(gt[gt > 0]))
    gt_median = float(np.median(np.concatenate(gt_values)))
    metrics = {'node': at_cap(node)}
    frames = [f.stamp_ns for f in node.frames]
    without_radar = 0
    for name, predict in predictors(gt_median).items():
        bag = Path(work_dir) / f'{name}_bag'
        written = predictor_bag(depth_bag, bag, predict, radar_topics=radar_topics,
                                radar_slop_ms=radar_slop_ms, overwrite=True)
        without_radar = written.frames_without_radar  # the same sweeps for every predictor
        evaluation = evaluate_bag(bag, progress=progress)
        scored = [f.stamp_ns for f in evaluation.frames]
        if scored != frames:
            raise BagError(f'predictor {name} was scored on frames {scored}, the node on '
                           f'{frames}')
        metrics[name] = at_cap(evaluation)
    return NodeAndPredictorScores(metrics, frames, without_radar, gt_median, node)
