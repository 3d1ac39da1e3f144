"""The node's processing without ROS: messages → :class:`Frame`; a DepthResult → messages.

Shared by the rclpy node (:mod:`xdrcdepth_ros.ros.node`) and offline replay
(:mod:`xdrcdepth_ros.bag.replay`), so both use the same conversions, sync and skip rules, and
publish the same messages; a test keeps their depth bit-identical on one bag. Nothing here
imports rclpy: message *classes* are passed in (rclpy or ``rosbags`` ones, as for the builders
in :mod:`~xdrcdepth_ros.core.conversions`), and every message is read by duck typing.

Flow: :class:`FrameBuilder` buffers images and radar sweeps in a
:class:`~xdrcdepth_ros.core.sync.FrameAssembler`, keeps the newest valid CameraInfo, hands out
synced sets (:meth:`FrameBuilder.take`) and decodes them (:meth:`FrameBuilder.build`).
:class:`FrameStep` is the per-frame step both callers run: build, run the pipeline (made by
:func:`pipeline_from_config`), turn the result into output messages
(:func:`~xdrcdepth_ros.core.outputs.output_messages`); the node publishes them, replay writes
them.

Every input that is not used is reported once with a :class:`SkipReason`, whose value is the
counter name in ``/diagnostics`` and in replay's drops. A radar sweep that lacks a configured
``radar_fields`` entry is not used (``radar_unused_bad_cloud``): zeros in a channel the model
was trained on would be silently wrong input. The frame then runs without that sweep, or is
skipped when ``require_radar`` is set (``skipped_no_usable_radar``).

Input limits and stamp rules (docs/reliability.md) are applied before anything costly: a stamp
must be valid, not beyond ``max_future_stamp_s`` ahead of the caller's clock and, for images,
not before the last frame handed out (output stamps never go backwards; a confirmed clock jump
back restarts matching); image sizes are read from headers and checked against
``max_image_pixels`` and the CameraInfo before decoding, sweeps against ``max_radar_points``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
import enum
import time
from typing import Any, Callable, NamedTuple, Protocol, Sequence, TYPE_CHECKING

import numpy as np

from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.core.errors import XdrcDepthError
from xdrcdepth_ros.core.frame import Frame, RadarSweep
from xdrcdepth_ros.core.config import engine_providers, NodeConfig, resolve_model_path
from xdrcdepth_ros.core.outputs import MessageClasses, output_messages
from xdrcdepth_ros.core.input_health import GapCounter
from xdrcdepth_ros.core.sync import FrameAssembler, SyncedFrame

if TYPE_CHECKING:
    from xdrcdepth_ros.core.pipeline import DepthPipeline

__all__ = ['BuiltFrame', 'Count', 'Extrinsics', 'FrameBuilder', 'FrameStep',
           'NONFINITE_RADAR_POINTS', 'parameter_extrinsics', 'PIPELINE_PARAMETERS', 'pipeline_from_config', 'pipeline_key',
           'radar_field_map', 'Report', 'SkipReason', 'StepOutput']

NONFINITE_RADAR_POINTS = conversions.RadarPointDrop.NONFINITE.value
"""Counter of radar points dropped for a non-finite x, y or z (the sweep itself is used)."""
FRAMES_WITHOUT_RADAR = 'frames_without_radar'
"""Counter of frames built with radar topics configured but no usable sweep (degraded)."""
INPUT_GAPS = 'input_gaps'
"""Counter of image stamp steps longer than 1.5 median periods (frames lost in transport)."""
JUMP_CONFIRMATIONS = 3
"""Consecutive messages stamped a clock jump before the last output that make it a real jump
(bag loop, restarted driver): frame matching restarts there; fewer are late messages."""


class SkipReason(str, enum.Enum):
    """Why an input was not used; the value is its counter in diagnostics and replay drops."""

    NO_CAMERA_INFO = 'skipped_no_camera_info'
    """No valid CameraInfo arrived before the image's sync wait ended."""
    BAD_CAMERA_INFO = 'skipped_bad_camera_info'
    """A CameraInfo was rejected (zero K, bad size...); the previous valid one stays in use."""
    BAD_IMAGE_HEADER = 'skipped_bad_image_header'
    """An image whose header stamp cannot be read."""
    BAD_RADAR_HEADER = 'skipped_bad_radar_header'
    """A radar sweep whose header stamp cannot be read."""
    BAD_IMAGE = 'skipped_bad_image'
    """An image that does not decode (unsupported encoding, truncated data, bad JPEG)."""
    SIZE_MISMATCH = 'skipped_size_mismatch'
    """An image whose size differs from its CameraInfo's (read before decoding)."""
    IMAGE_TOO_LARGE = 'skipped_image_too_large'
    """An image with more than ``max_image_pixels`` pixels (read before decoding)."""
    LATE_STAMP = 'skipped_late_stamp'
    """An image stamped before the last output frame (output stamps never go backwards), or
    a message stamped a clock jump back that is not (yet) confirmed as one."""
    FUTURE_STAMP = 'skipped_future_stamp'
    """A message stamped more than ``max_future_stamp_s`` ahead of the node clock."""
    NO_USABLE_RADAR = 'skipped_no_usable_radar'
    """``require_radar`` is set and no sweep of the frame was usable."""
    PROCESSING_ERROR = 'skipped_processing_error'
    """The pipeline or the output building failed on the frame."""
    RADAR_BAD_CLOUD = 'radar_unused_bad_cloud'
    """A sweep that does not decode or lacks a configured field; the frame runs without it."""
    RADAR_NO_TRANSFORM = 'radar_unused_no_transform'
    """No ``T_cam<-radar`` for a sweep; the frame runs without it."""
    RADAR_TOO_MANY_POINTS = 'radar_unused_too_many_points'
    """A sweep with more than ``max_radar_points`` points (not decoded)."""


Report = Callable[[SkipReason, str], None]
"""``(reason, message)``: count one unused input and tell the user (the node throttles)."""
Count = Callable[[str, int], None]
"""``(counter, amount)``: add to a diagnostics counter that is not a skip."""
Extrinsics = Callable[[int, str, str, int], 'np.ndarray | None']
"""``(radar index, radar frame, camera frame, radar stamp ns) -> T_cam<-radar (4, 4) or None``."""

if TYPE_CHECKING:
    class ModelInfo(Protocol):
        """The model metadata fields read here (see ``engine.ModelMetadata``)."""

        radar_channels: Sequence[str]
        radar_fields: Sequence[str]


def radar_field_map(config: NodeConfig, metadata: ModelInfo) -> conversions.RadarFieldMap:
    """The PointCloud2 → radar channel mapping of ``radar_fields``, checked against the model.

    An empty ``radar_fields`` means the fields the model was trained with (its metadata).

    Raises:
        ValueError: ``radar_fields`` has a different count than the model's radar channels.
    """
    fields = tuple(config.radar_fields) or tuple(metadata.radar_fields)
    expected = len(metadata.radar_channels) - 1
    if len(fields) != expected:
        raise ValueError(f'radar_fields {list(fields)} has {len(fields)} names but the model '
                         f'takes {expected} radar channels after depth '
                         f'({list(metadata.radar_channels)}; trained with fields '
                         f'{list(metadata.radar_fields)})')
    return conversions.RadarFieldMap(fields)


def parameter_extrinsics(config: NodeConfig) -> Extrinsics:
    """Extrinsics from the ``radar_extrinsics`` parameter (``extrinsics_source: parameters``)."""
    transforms = config.radar_transforms()
    return lambda index, radar_frame, camera_frame, stamp_ns: transforms[index]


class BuiltFrame(NamedTuple):
    """A decoded frame with what its outputs need."""

    frame: Frame
    camera: conversions.CameraModel
    """The CameraInfo model the frame was built with."""
    header: Any
    """The image message's header (its stamp and frame_id go on every output)."""


class FrameBuilder:
    """Messages in, :class:`Frame` out: sync, CameraInfo state and decoding, ROS-free.

    An image that arrives before any valid CameraInfo is held (in the assembler) until one
    arrives or until its sync wait (``sync_wait_s``) ends, when it is reported as
    ``skipped_no_camera_info``; drivers publish CameraInfo and image at once and a subscriber
    (``ros2 bag play`` especially) may take the two in either order.

    Thread safety: the ``add_*`` methods may run in callbacks while one worker calls ``take``
    and ``build`` (the assembler locks; the camera is swapped atomically).

    Args:
        config: node configuration (topics, sync, ``image_transport``, ``require_radar``).
        metadata: the model metadata (radar channels), to check ``radar_fields`` against.
        extrinsics: the camera ← radar lookup.
        report: called once per unused input.
        count: called for counters that are not skips (dropped radar points,
            :data:`FRAMES_WITHOUT_RADAR`, :data:`INPUT_GAPS`).

    Raises:
        ValueError: ``radar_fields`` does not fit the model.
    """

    def __init__(self, config: NodeConfig, metadata: ModelInfo, extrinsics: Extrinsics, *,
                 report: Report, count: Count | None = None) -> None:
        self.config = config
        self.field_map = radar_field_map(config, metadata)
        self._extrinsics = extrinsics
        self.report = report
        """Where unused inputs are reported (:class:`FrameStep` reports failed frames too)."""
        self._count = count or (lambda key, amount: None)
        self.assembler = FrameAssembler(config.sync_config())
        self._retired: Counter[str] = Counter()  # counters of assemblers replaced by reconfigure
        self.camera: conversions.CameraModel | None = None
        """The newest valid CameraInfo, or None before the first one."""
        self._gaps = GapCounter()
        self._last_out_ns: int | None = None  # stamp of the last frame handed out by take()
        self._jump_votes = 0

    def reconfigure(self, config: NodeConfig) -> None:
        """Apply run-time parameter changes; a new sync config restarts the assembler."""
        if config.sync_config() != self.config.sync_config():
            self._retired.update(asdict(self.assembler.stats))
            self.assembler = FrameAssembler(config.sync_config())
        self.config = config

    # ------------------------------------------------------------------------- intake

    def add_camera_info(self, msg: Any) -> bool:
        """Keep ``msg`` as the camera model when valid; True when it was."""
        try:
            self.camera = conversions.camera_info_to_model(msg)
        except (XdrcDepthError, ValueError) as err:
            self.report(SkipReason.BAD_CAMERA_INFO, f'CameraInfo rejected: {err}')
            return False
        return True

    def add_image(self, msg: Any, now_ns: int, clock_ns: int | None = None) -> bool:
        """Buffer an image (Image or CompressedImage) received at ``now_ns``.

        Args:
            msg: the image message.
            now_ns: receive time (ns, any clock that ``take`` uses too).
            clock_ns: the time stamps are compared with (ns, the node's ROS clock) for the
                ``max_future_stamp_s`` check; None or 0 (sim time not started) skips it.

        Returns:
            True when buffered; False when dropped (reported: invalid, future or late stamp;
            counted by the assembler: duplicate, stale).
        """
        stamp_ns = self._admitted_stamp(msg, clock_ns, SkipReason.BAD_IMAGE_HEADER, 'image')
        if stamp_ns is None:
            return False
        if self._gaps.observe(stamp_ns):
            self._count(INPUT_GAPS, 1)
        return self.assembler.add_image(stamp_ns, msg, now_ns)

    def add_radar(self, index: int, msg: Any, now_ns: int, clock_ns: int | None = None) -> bool:
        """Buffer a PointCloud2 of radar topic ``index``; True when buffered.

        Stamps are checked as in :meth:`add_image`, except that a sweep a little older than the
        last output goes on (the assembler drops it if no image can use it).

        Raises:
            IndexError: ``index`` is not a configured radar topic.
        """
        stamp_ns = self._admitted_stamp(msg, clock_ns, SkipReason.BAD_RADAR_HEADER,
                                        f'radar sweep on {self.config.radar_topics[index]}')
        if stamp_ns is None:
            return False
        return self.assembler.add_radar(index, stamp_ns, msg, now_ns)

    def _admitted_stamp(self, msg: Any, clock_ns: int | None, bad: SkipReason,
                        what: str) -> int | None:
        """The message's stamp (ns) when it may enter the assembler, else None (reported)."""
        try:
            stamp_ns = conversions.checked_stamp_ns(msg.header.stamp)
        except (XdrcDepthError, ValueError, AttributeError, TypeError) as err:
            self.report(bad, f'{what} rejected: {err}')
            return None
        tolerance_ns = int(self.config.max_future_stamp_s * 1e9)
        if clock_ns and tolerance_ns and stamp_ns > clock_ns + tolerance_ns:
            self.report(SkipReason.FUTURE_STAMP,
                        f'{what} stamped {(stamp_ns - clock_ns) / 1e9:.3f} s ahead of the node '
                        f'clock (max_future_stamp_s={self.config.max_future_stamp_s}); dropped')
            return None
        last = self._last_out_ns
        jump_ns = self.assembler.config.clock_jump_ns
        is_image = bad is SkipReason.BAD_IMAGE_HEADER
        if last is None or stamp_ns >= last - (0 if is_image else jump_ns):
            self._jump_votes = 0
            return stamp_ns
        if stamp_ns < last - jump_ns:
            self._jump_votes += 1
            if self._jump_votes >= JUMP_CONFIRMATIONS:  # a real jump back: start afresh
                self._jump_votes, self._last_out_ns = 0, None
                return stamp_ns
        self.report(SkipReason.LATE_STAMP,
                    f'{what} stamped {(last - stamp_ns) / 1e9:.3f} s before the last output '
                    f'frame; dropped (output stamps never go backwards; {JUMP_CONFIRMATIONS} '
                    'messages in a row a clock jump back restart frame matching)')
        return None

    # ------------------------------------------------------------------------- output

    def take(self, now_ns: int) -> SyncedFrame | None:
        """The newest ready message set (see :meth:`FrameAssembler.take`), or None.

        Without a CameraInfo the images stay buffered until the oldest one's sync wait ends,
        so a CameraInfo that lands just after its image still serves it.
        """
        if self.camera is None:
            deadline = self.assembler.next_timeout_ns()
            if deadline is None or now_ns < deadline:
                return None
        synced = self.assembler.take(now_ns)
        if synced is not None:
            self._last_out_ns = synced.stamp_ns
        return synced

    def next_timeout_ns(self) -> int | None:
        """When ``take`` may next return a frame without new input (ns), or None."""
        return self.assembler.next_timeout_ns()

    def sync_stats(self) -> dict[str, int]:
        """The assembler's counters, including those of assemblers replaced at run time."""
        stats = asdict(self.assembler.stats)
        for key, retired in self._retired.items():
            if key != 'pending_images':  # a gauge, not a counter
                stats[key] += retired
        return stats

    def build(self, synced: SyncedFrame) -> BuiltFrame | None:
        """Decode a synced message set; None (reported) when the frame cannot be used.

        Reasons: no CameraInfo, undecodable image, image size different from the CameraInfo,
        or (with ``require_radar``) no usable radar sweep. Unusable sweeps are reported and
        left out of the frame.
        """
        msg, camera, config = synced.image, self.camera, self.config
        if camera is None:
            self.report(SkipReason.NO_CAMERA_INFO,
                        f'no valid CameraInfo on {config.camera_info_topic} within '
                        f'sync_wait_s={config.sync_wait_s} of the image; frame skipped')
            return None
        compressed = config.image_transport == 'compressed'
        try:
            # Sizes are checked before decoding: a compressed header may claim any size. A raw
            # image's encoding is checked first (its pixels are in memory already).
            if compressed:
                size = conversions.encoded_image_size(msg.data)
                if size is not None and not self._size_fits(size, camera):
                    return None
                image = conversions.compressed_to_rgb(msg)
            else:
                if not self._size_fits((int(msg.width), int(msg.height)), camera,
                                       mismatch=False):
                    return None
                image = conversions.image_to_rgb(msg)
        except (XdrcDepthError, ValueError) as err:
            self.report(SkipReason.BAD_IMAGE, f'image skipped: {err}')
            return None
        if not self._size_fits((image.shape[1], image.shape[0]), camera):
            return None
        sweeps = []
        for index, matches in enumerate(synced.radars):
            for radar in matches:
                sweep = self._radar_sweep(index, radar.item, msg.header.frame_id)
                if sweep is not None:
                    sweeps.append(sweep)
        if config.require_radar and not sweeps:
            self.report(SkipReason.NO_USABLE_RADAR, 'require_radar is set and no radar sweep '
                        'of this frame was usable; frame skipped')
            return None
        if config.radar_topics and not sweeps:
            self._count(FRAMES_WITHOUT_RADAR, 1)
        frame = Frame(image=image, K=camera.K, radar=tuple(sweeps), stamp_ns=synced.stamp_ns,
                      frame_id=msg.header.frame_id)
        return BuiltFrame(frame, camera, msg.header)

    def _size_fits(self, size: tuple[int, int], camera: conversions.CameraModel, *,
                   mismatch: bool = True) -> bool:
        """False (reported) when a ``(width, height)`` image is too large or (with
        ``mismatch``) not the camera's size."""
        width, height = size
        if width * height > self.config.max_image_pixels:
            self.report(SkipReason.IMAGE_TOO_LARGE,
                        f'image is {width}x{height} = {width * height} pixels, more than '
                        f'max_image_pixels={self.config.max_image_pixels}; frame skipped '
                        'undecoded')
            return False
        if mismatch and (width, height) != (camera.width, camera.height):
            self.report(SkipReason.SIZE_MISMATCH,
                        f'image is {width}x{height} but CameraInfo says '
                        f'{camera.width}x{camera.height}; frame skipped')
            return False
        return True

    def _radar_sweep(self, index: int, msg: Any, camera_frame: str) -> RadarSweep | None:
        topic = self.config.radar_topics[index]
        points_in = int(msg.width) * int(msg.height)
        if points_in > self.config.max_radar_points:
            self.report(SkipReason.RADAR_TOO_MANY_POINTS,
                        f'radar sweep on {topic} has {points_in} points, more than '
                        f'max_radar_points={self.config.max_radar_points}; not used')
            return None
        try:
            cloud = conversions.pointcloud2_to_array(msg)
            missing = conversions.missing_radar_fields(cloud.dtype, self.field_map)
            if missing:
                raise XdrcDepthError(f'no field(s) {list(missing)} (it has '
                                     f'{list(cloud.dtype.names or ())}); set radar_fields')
            points, features = conversions.radar_from_cloud(cloud, self.field_map)
        except (XdrcDepthError, ValueError) as err:
            self.report(SkipReason.RADAR_BAD_CLOUD, f'radar sweep on {topic} not used: {err}')
            return None
        if len(points) < cloud.size:
            for cause, dropped in conversions.radar_point_drops(cloud, self.field_map).items():
                self._count(cause.value, dropped)
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        transform = self._extrinsics(index, msg.header.frame_id, camera_frame, stamp_ns)
        if transform is None:
            self.report(SkipReason.RADAR_NO_TRANSFORM,
                        f'no transform {camera_frame!r} <- {msg.header.frame_id!r} at '
                        f'{stamp_ns} ns; radar on {topic} not used')
            return None
        return RadarSweep(points=points, features=features, T_cam_from_radar=transform,
                          stamp_ns=stamp_ns, frame_id=msg.header.frame_id)


# ----------------------------------------------------------------------------- the step

PIPELINE_PARAMETERS = ('model_path', 'providers', 'trt_cache_dir', 'intra_op_threads',
                       'output_size')
"""The parameters :func:`pipeline_from_config` reads: configs equal in these share a pipeline."""


def pipeline_key(config: NodeConfig) -> tuple[Any, ...]:
    """The values of :data:`PIPELINE_PARAMETERS` (``model_path`` resolved to its file)."""
    values = {name: getattr(config, name) for name in PIPELINE_PARAMETERS}
    values['model_path'] = str(resolve_model_path(config.model_path).resolve())
    return tuple(values[name] for name in PIPELINE_PARAMETERS)


def pipeline_from_config(config: NodeConfig) -> DepthPipeline:
    """The engine and pipeline the node runs for ``config`` (model, providers, output size).

    Raises:
        FileNotFoundError: the model file does not exist.
        XdrcDepthError: the model cannot be loaded.
    """
    from xdrcdepth_ros.core.engine import Engine  # onnxruntime loads only when a model does
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    engine = Engine(resolve_model_path(config.model_path),
                    providers=engine_providers(config.providers),
                    trt_cache_dir=config.trt_cache_dir or None,
                    intra_op_threads=config.intra_op_threads)
    return DepthPipeline(engine, output_size=config.output_size)


class StepOutput(NamedTuple):
    """What one :meth:`FrameStep.run` produced."""

    stamp_ns: int
    """The image stamp (ns): every message carries it."""
    messages: list[tuple[str, Any]]
    """``(suffix, message)`` in publishing order (see :func:`output_messages`)."""
    timings_ms: dict[str, float]
    """``decode``, the pipeline's stages, ``outputs`` (message building) and ``total``, ms."""


class FrameStep:
    """One synced message set → output messages: the per-frame work of the node and replay.

    Owns the :class:`FrameBuilder` (the callers feed it messages) and reads the current config
    from it, so run-time parameter changes (:meth:`FrameBuilder.reconfigure`) apply to the
    outputs too.

    Args:
        config: node configuration.
        pipeline: a :class:`~xdrcdepth_ros.core.pipeline.DepthPipeline` (or one with its
            ``engine.metadata``, ``run`` and ``max_depth``).
        classes: the output message classes.
        extrinsics, report, count: as for :class:`FrameBuilder`.

    Raises:
        ValueError: ``radar_fields`` does not fit the model.
    """

    def __init__(self, config: NodeConfig, pipeline: Any, classes: MessageClasses,
                 extrinsics: Extrinsics, *, report: Report, count: Count | None = None) -> None:
        self.pipeline = pipeline
        self.classes = classes
        self.frames = FrameBuilder(config, pipeline.engine.metadata, extrinsics, report=report,
                                   count=count)

    def run(self, synced: SyncedFrame,
            wanted: Callable[[str], bool] = lambda suffix: True) -> StepOutput | None:
        """Build, infer and render one frame; None when it was skipped (reported).

        A frame that raises anywhere on the way is reported as ``skipped_processing_error``
        (with the exception) and skipped: one bad frame must not stop the node or the replay.

        Args:
            synced: a message set from :meth:`FrameBuilder.take`.
            wanted: whether an optional output is rendered (see :func:`output_messages`).
        """
        start = time.perf_counter_ns()
        try:
            built = self.frames.build(synced)
            if built is None:
                return None
            decoded = time.perf_counter_ns()
            result = self.pipeline.run(built.frame)
            piped = time.perf_counter_ns()
            messages = output_messages(result, built.camera, built.header, self.frames.config,
                                       self.classes, self.pipeline.max_depth, wanted)
        except Exception as err:  # noqa: BLE001 - the frame is skipped and reported
            self.frames.report(SkipReason.PROCESSING_ERROR,
                               f'frame {synced.stamp_ns} failed: {type(err).__name__}: {err}')
            return None
        done = time.perf_counter_ns()
        timings = {**result.timings_ms, 'decode': (decoded - start) / 1e6,
                   'outputs': (done - piped) / 1e6, 'total': (done - start) / 1e6}
        return StepOutput(int(synced.stamp_ns), messages, timings)
