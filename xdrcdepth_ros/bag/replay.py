"""Offline replay: the node's conversions → sync → pipeline → outputs on a bag, without ROS.

Messages are read in bag-time order and fed to the same
:class:`~xdrcdepth_ros.core.sync.FrameAssembler` the node uses, with bag time as the clock: before
each message whose bag time is later than the previous one, every frame that is ready at that time
is processed (the node's worker polls continuously, so it sees the same state). Each frame goes
through the node's own per-frame step, :class:`~xdrcdepth_ros.core.frame_step.FrameStep` (pairing,
decoding and skip rules, the pipeline, the output messages), and its outputs are written to a new
bag under the node's topic names (``/xdrcdepth/depth``, ...) with the input topics copied
alongside, so the result opens in RViz (``ros2 bag play``) and ``xdrcdepth evaluate`` finds its
LiDAR and TF there.

Parameters: ``--params-file`` (the node's YAML format) applies to the whole bag. Without it, a bag
written by ``nuscenes-to-bag`` supplies ``params/<scene>.<camera>.yaml`` per scene (each scene may
be another vehicle); the assembler and camera state restart at each scene, like a node restarted
per scene, and every parameter of the scene applies, including ``model_path``, ``providers`` and
``output_size`` (one engine per distinct set, see
:func:`~xdrcdepth_ros.core.frame_step.pipeline_from_config`). Otherwise the node defaults apply.
``extrinsics_source: tf`` is served from the bag's ``/tf_static`` (static camera ← radar, as tf2
gives for static sensors).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import json
from pathlib import Path
import time
from typing import Any

import numpy as np

from xdrcdepth_ros.bag.io import BagReader, BagWriter, read_metadata, Storage
from xdrcdepth_ros.bag.tf import TfBuffer
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.config import defaults, load_params_file, NodeConfig
from xdrcdepth_ros.core.frame_step import (Extrinsics, FrameStep, parameter_extrinsics,
                                           pipeline_from_config, pipeline_key, SkipReason)
from xdrcdepth_ros.core.outputs import MessageClasses, output_topic

SCENES_KEY = 'xdrcdepth.scenes'
LOST_TO_CORRUPTION = 'corrupt_messages_lost'
"""Drops key of messages a corrupt bag lists but cannot give (``skip_corrupt``)."""


@dataclass(frozen=True)
class ParamsWindow:
    """Node parameters in force from bag time ``start_ns`` on (until the next window)."""

    start_ns: int
    config: NodeConfig
    source: str


@dataclass
class ReplaySummary:
    """What :func:`replay_bag` did.

    Attributes:
        path: output bag.
        model: model file used (comma-separated when scenes use different ones).
        provider: ONNX Runtime execution provider (likewise).
        frames_in: images read on the image topic.
        frames_out: depth images written.
        drops: reason → count (sync drops and skipped frames).
        latency_ms: per processed frame, decode + pipeline + output building: mean, p50, p95, max;
            plus the mean of each stage (decode, the pipeline's, outputs).
        params: where the parameters came from, per window.
        missing_topics: configured radar topics the bag does not have.
        stamps_ns: stamps of the written depth images.
        wall_s: total seconds.
    """

    path: Path
    model: str
    provider: str
    frames_in: int = 0
    frames_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)
    stamps_ns: list[int] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {'path': str(self.path), 'model': self.model, 'provider': self.provider,
                'frames_in': self.frames_in, 'frames_out': self.frames_out,
                'drops': dict(self.drops), 'latency_ms': dict(self.latency_ms),
                'params': list(self.params), 'missing_topics': list(self.missing_topics),
                'wall_s': self.wall_s}


def bag_scenes(bag: Path) -> list[dict[str, Any]]:
    """Scenes recorded by ``nuscenes-to-bag`` in metadata.yaml ``custom_data`` ([] if none).

    Raises:
        BagError: metadata.yaml or its scene list is not readable.
    """
    text = (read_metadata(bag).get('custom_data') or {}).get(SCENES_KEY)
    try:
        return json.loads(text) if text else []
    except ValueError as err:
        raise BagError(f'{bag}/metadata.yaml custom_data {SCENES_KEY} is not JSON: {err}'
                       ) from err


def resolve_params(bag: str | Path, *, params_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None,
                   camera: str = 'CAM_FRONT') -> list[ParamsWindow]:
    """The parameter windows replay uses for ``bag`` (see the module docstring).

    Args:
        bag: input bag folder.
        params_file: node parameter YAML applied to the whole bag.
        overrides: values that win over the file(s), e.g. ``{'model_path': ...}``.
        camera: which ``params/<scene>.<camera>.yaml`` to use in converter bags.

    Raises:
        FileNotFoundError, ValueError: unreadable or invalid parameters (every problem listed).
    """
    bag, overrides = Path(bag), dict(overrides or {})
    if params_file is not None:
        values = {**load_params_file(params_file), **overrides}
        return [ParamsWindow(0, _bag_config(values), str(params_file))]
    windows = []
    for scene in bag_scenes(bag):
        path = bag / 'params' / f'{scene["name"]}.{camera}.yaml'
        if path.is_file():
            values = {**load_params_file(path), **overrides}
            windows.append(ParamsWindow(int(scene['start_ns']), _bag_config(values), str(path)))
    if windows:
        return sorted(windows, key=lambda w: w.start_ns)
    return [ParamsWindow(0, _bag_config({**defaults(), **overrides}),
                         'node defaults (config/xdrcdepth.yaml)')]


def _bag_config(values: dict[str, Any]) -> NodeConfig:
    """The node configuration of ``values`` with relative input names resolved as for a node in
    the root namespace: bag topics are absolute."""
    return NodeConfig.from_values(values).with_absolute_topics()


class _Scene:
    """Per-window state: what a node started with that window's parameters holds.

    Skips are counted in ``drops`` under the node's diagnostic counter names.
    """

    def __init__(self, window: ParamsWindow, pipeline: Any, classes: MessageClasses,
                 tf: TfBuffer, drops: Counter[str]) -> None:
        config = self.config = window.config
        self.radar_index = {topic: i for i, topic in enumerate(config.radar_topics)}

        def static_tf(index: int, radar_frame: str, camera_frame: str,
                      stamp_ns: int) -> np.ndarray | None:
            return tf.lookup_static(camera_frame, radar_frame)

        def report(reason: SkipReason, message: str) -> None:
            drops[reason.value] += 1

        extrinsics: Extrinsics = (parameter_extrinsics(config)
                                  if config.extrinsics_source == 'parameters' else static_tf)
        self.step = FrameStep(config, pipeline, classes, extrinsics, report=report)
        self.frames = self.step.frames


def _pipelines(windows: list[ParamsWindow]) -> list[Any]:
    """One pipeline per window, built once per distinct :data:`PIPELINE_PARAMETERS` values
    (scenes of one vehicle share an engine; a scene with another model or size gets its own)."""
    built: dict[tuple[Any, ...], Any] = {}
    for window in windows:
        key = pipeline_key(window.config)
        if key not in built:
            built[key] = pipeline_from_config(window.config)
    return [built[pipeline_key(window.config)] for window in windows]


def replay_bag(bag: str | Path, out: str | Path, *, model: str | Path | None = None,
               params_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
               storage: Storage | str | None = None,
               passthrough: bool = True, overwrite: bool = False, providers: Any = None,
               progress: bool = True, skip_corrupt: bool = False) -> ReplaySummary:
    """Run the node's processing over ``bag`` and write its outputs to a new bag ``out``.

    Args:
        bag: input rosbag2 folder (or ``.mcap``).
        out: output bag folder (written atomically: nothing is left on failure).
        model: ONNX model; default the ``model_path`` parameter (empty: the shipped model).
        params_file: node parameter YAML (see :func:`resolve_params`).
        overrides: parameter values that win over the file(s), e.g. ``{'publish_saliency':
            True}``.
        storage: output storage; default that of the input (sqlite3 for a bare .mcap: mcap).
        passthrough: also copy every input message into the output bag.
        overwrite: replace an existing ``out`` once the new bag is complete.
        providers: ONNX Runtime providers; default the ``providers`` parameter.
        progress: show a tqdm progress bar.
        skip_corrupt: go on past messages a corrupt bag cannot give, counting them in
            ``drops['corrupt_messages_lost']``; otherwise they are an error.

    Raises:
        FileNotFoundError: bag or model missing.
        BagError: unreadable or corrupt bag, it lacks the image or camera_info topic (named),
            or the output cannot be written (nothing is left behind).
        ValueError: invalid parameters.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f'bag {bag} does not exist')
    if Path(out).exists() and not overwrite:
        raise BagError(f'output bag {out} exists already; remove it or choose another path')
    overrides = dict(overrides or {})
    if model is not None:
        overrides['model_path'] = str(model)
    if providers is not None:
        overrides['providers'] = list(providers)
    windows = resolve_params(bag, params_file=params_file, overrides=overrides)
    drops: Counter[str] = Counter()
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    with BagReader(bag, skip_corrupt=skip_corrupt) as reader:
        missing_topics: list[str] = []
        for window in windows:
            reader.require_topic(window.config.subscribed_image_topic, 'image')
            reader.require_topic(window.config.camera_info_topic, 'camera_info')
            missing_topics += [t for t in window.config.radar_topics
                               if t not in reader.topics and t not in missing_topics]
        # Models load only once the bag is known to be usable (a TensorRT build takes long).
        pipelines = _pipelines(windows)
        engines = list(dict.fromkeys(p.engine for p in pipelines))
        summary = ReplaySummary(
            Path(out), ', '.join(dict.fromkeys(str(e.path) for e in engines)),
            ', '.join(dict.fromkeys(str(e.provider.value) for e in engines)),
            params=[w.source for w in windows], missing_topics=missing_topics)
        if storage is None:
            storage = _storage_of(bag)
        with BagWriter(out, storage=storage, overwrite=overwrite) as writer:
            classes = MessageClasses.from_typestore(writer.store)
            tf = TfBuffer()
            state: _Scene | None = None
            next_window = 0
            previous_ns: int | None = None

            def drain(now_ns: int) -> None:
                assert state is not None
                while (synced := state.frames.take(now_ns)) is not None:
                    output = state.step.run(synced)
                    if output is None:
                        continue
                    latencies.append(output.timings_ms['total'])
                    for stage, value in output.timings_ms.items():
                        if stage != 'total':
                            stages.setdefault(stage, []).append(value)
                    for suffix, msg in output.messages:
                        writer.write(output_topic(suffix), output.stamp_ns, msg)
                    summary.frames_out += 1
                    summary.stamps_ns.append(output.stamp_ns)

            def finish_scene() -> None:
                if state is None or previous_ns is None:
                    return
                drain(previous_ns + state.config.sync_config().wait_ns + 1)
                for name, value in state.frames.sync_stats().items():
                    if name.startswith('dropped_') or name == 'duplicates':
                        drops[name] += int(value)

            bar = tqdm(total=reader.reader.message_count, desc='replay', unit='msg',
                       disable=not progress)
            with bar:
                for message in reader.messages():
                    bar.update(1)
                    stamp = message.stamp_ns
                    if next_window < len(windows) and stamp >= windows[next_window].start_ns:
                        finish_scene()
                        state = _Scene(windows[next_window], pipelines[next_window], classes,
                                       tf, drops)
                        next_window += 1
                    elif previous_ns is not None and stamp > previous_ns and state is not None:
                        drain(stamp)
                    previous_ns = stamp
                    if passthrough:
                        writer.write_raw(message.topic, message.msgtype, stamp, message.raw,
                                         qos=message.qos)
                    if state is not None:
                        _ingest(reader, message, state, tf, summary, drops)
                finish_scene()
            drops[LOST_TO_CORRUPTION] += sum(reader.lost.values())
    summary.drops = {k: v for k, v in sorted(drops.items()) if v}
    summary.latency_ms = latency_summary(latencies, stages)
    summary.wall_s = time.perf_counter() - started
    return summary


def _ingest(reader: BagReader, message: Any, state: _Scene, tf: TfBuffer,
            summary: ReplaySummary, drops: Counter[str]) -> None:
    """Hand one bag message to the scene's state, as the node's subscriptions would.

    A message that does not deserialize is counted and skipped (the node never dies on one bad
    message either); the scene's frame builder counts bad headers and CameraInfo as the node
    does.
    """
    try:
        _deliver(reader, message, state, tf, summary)
    except (BagError, ValueError, IndexError):
        drops[f'skipped_bad_message {message.topic}'] += 1


def _deliver(reader: BagReader, message: Any, state: _Scene, tf: TfBuffer,
             summary: ReplaySummary) -> None:
    config, topic = state.config, message.topic
    if topic == '/tf_static':
        tf.add_static(reader.deserialize(message), message.stamp_ns)
    elif topic == config.camera_info_topic:
        state.frames.add_camera_info(reader.deserialize(message))
    elif topic == config.subscribed_image_topic:
        msg = reader.deserialize(message)
        summary.frames_in += 1
        # Bag time is the clock: a stamp far ahead of its record time is a future stamp.
        state.frames.add_image(msg, message.stamp_ns, clock_ns=message.stamp_ns)
    elif topic in state.radar_index:
        state.frames.add_radar(state.radar_index[topic], reader.deserialize(message),
                               message.stamp_ns, clock_ns=message.stamp_ns)


def _storage_of(bag: Path) -> Storage:
    if bag.suffix == '.mcap' or read_metadata(bag).get('storage_identifier') == 'mcap':
        return Storage.MCAP
    return Storage.SQLITE3


def latency_summary(latencies: list[float],
                    stages: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Mean, p50, p95 and max of per-frame latencies (ms), plus each stage's mean."""
    if not latencies:
        return {}
    values = np.asarray(latencies)
    out = {'mean': float(values.mean()), 'p50': float(np.percentile(values, 50)),
           'p95': float(np.percentile(values, 95)), 'max': float(values.max())}
    out.update({f'{stage}_mean': float(np.mean(v)) for stage, v in (stages or {}).items()})
    return out

