"""The ``xdrcdepth`` ROS 2 node: camera + radar messages in, dense metric depth out.

Thin on purpose: :mod:`conversions` turns messages into arrays, :class:`FrameAssembler` pairs
them, :class:`DepthPipeline` computes depth and :mod:`visualize` draws it; this module wires them
to rclpy. Subscription callbacks only stamp and buffer the raw messages. One worker thread takes
the newest complete frame, decodes it, runs inference (ONNX Runtime releases the GIL) and
publishes, so a model slower than the camera drops frames (counted) instead of adding latency.

Outputs (reliable QoS, private names): ``~/depth`` (REP 118, stamp and frame_id of the image),
``~/camera_info`` (matching the depth size), and when enabled ``~/depth_color``,
``~/saliency_overlay`` and ``~/points``; ``/diagnostics`` every ``diagnostics_period_s``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
import threading
import time
from typing import Any, Callable, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from xdrcdepth_ros import conversions, visualize
from xdrcdepth_ros.errors import XdrcDepthError
from xdrcdepth_ros.frame import Frame, RadarSweep
from xdrcdepth_ros.geometry import transform_from_xyzw
from xdrcdepth_ros.node_params import (check_value, NodeConfig, PARAMETERS, ParamSpec, ParamType,
                                       PROVIDERS, resolve_model_path)
from xdrcdepth_ros.sync import FrameAssembler, SyncedFrame

NODE_NAME = 'xdrcdepth'
_ROS_TYPES = {
    ParamType.BOOL: Parameter.Type.BOOL, ParamType.INTEGER: Parameter.Type.INTEGER,
    ParamType.DOUBLE: Parameter.Type.DOUBLE, ParamType.STRING: Parameter.Type.STRING,
    ParamType.STRING_ARRAY: Parameter.Type.STRING_ARRAY,
    ParamType.DOUBLE_ARRAY: Parameter.Type.DOUBLE_ARRAY,
}
_OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
_WARN_PERIOD_NS = 5_000_000_000
_MIN_WAIT_S = 0.001  # never spin: a due-but-unreleased image is re-checked at most at 1 kHz
_STAGES = ('decode', 'preprocess', 'engine', 'postprocess', 'publish', 'total', 'age')


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, type=_ROS_TYPES[spec.type].value,
                                     description=spec.description, read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.type is ParamType.DOUBLE and spec.minimum is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)]
    elif spec.type is ParamType.INTEGER and spec.minimum is not None:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.minimum), to_value=int(spec.maximum), step=0)]
    return descriptor


class NodeStats:
    """Counters since start plus per-period rates and stage latencies (ms); thread-safe."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._period: Counter[str] = Counter()
        self._samples: dict[str, list[float]] = {stage: [] for stage in _STAGES}
        self._period_start_ns = time.monotonic_ns()

    def count(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to counter ``key``; returns its new total."""
        with self._lock:
            self._totals[key] += amount
            self._period[key] += amount
            return self._totals[key]

    def frame_done(self, timings_ms: Mapping[str, float]) -> None:
        """Record one published frame with its stage times (ms; keys from ``_STAGES``)."""
        with self._lock:
            self._totals['published'] += 1
            self._period['published'] += 1
            for stage, value in timings_ms.items():
                if stage in self._samples:
                    self._samples[stage].append(float(value))

    def report(self, sync: Mapping[str, int], *,
               new_period: bool) -> tuple[int, str, dict[str, str]]:
        """(DiagnosticStatus level, message, key/values) of the period so far.

        Keys: ``provider``, ``rate_hz`` (published), ``input_rate_hz`` (images), per stage
        ``<stage>_ms`` (mean) and ``<stage>_ms_max`` (``age`` = receive clock - image stamp at
        publish), every node counter (``published``, ``skipped_*``, ``radar_*``) and the frame
        assembler's counters (``dropped_superseded``, ...). ``new_period`` starts a new window.
        """
        with self._lock:
            now = time.monotonic_ns()
            seconds = max((now - self._period_start_ns) / 1e9, 1e-9)
            values = {'provider': self.provider,
                      'rate_hz': f'{self._period["published"] / seconds:.2f}',
                      'input_rate_hz': f'{self._period["image_received"] / seconds:.2f}'}
            for stage, samples in self._samples.items():
                values[f'{stage}_ms'] = f'{np.mean(samples):.2f}' if samples else 'nan'
                values[f'{stage}_ms_max'] = f'{max(samples):.2f}' if samples else 'nan'
            values.update({key: str(total) for key, total in sorted(self._totals.items())})
            values.update({key: str(value) for key, value in sync.items()})
            problems = sorted(key for key, amount in self._period.items()
                              if amount and key.startswith(('skipped_', 'radar_unused_')))
            published = self._period['published']
            images = self._period['image_received']
            if new_period:
                self._period.clear()
                self._samples = {stage: [] for stage in _STAGES}
                self._period_start_ns = now
        if not images:
            return DiagnosticStatus.WARN, 'no input images', values
        if not published:
            if problems:
                return DiagnosticStatus.ERROR, 'no depth output: ' + ', '.join(problems), values
            return DiagnosticStatus.WARN, 'no depth output yet (waiting for radar or inference)', \
                values
        if problems:
            return DiagnosticStatus.WARN, 'degraded: ' + ', '.join(problems), values
        return DiagnosticStatus.OK, f'publishing at {values["rate_hz"]} Hz', values


class TfExtrinsics:
    """``T_cam<-radar`` from tf2 without blocking: at the radar stamp, else the latest known.

    The fallback keeps static (rigid) mounts working when the exact-time lookup would need to
    wait for TF data; a lookup never waits, so the worker is never stalled by TF.
    """

    def __init__(self, node: Node, tf2_ros: Any) -> None:
        self._tf2_ros = tf2_ros
        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)

    def __call__(self, index: int, radar_frame: str, camera_frame: str,
                 stamp_ns: int) -> np.ndarray | None:
        """(4, 4) float64 transform camera_frame <- radar_frame, or None when unknown."""
        for when in (Time(nanoseconds=stamp_ns), Time()):
            try:
                found = self._buffer.lookup_transform(camera_frame, radar_frame, when)
            except self._tf2_ros.TransformException:
                continue
            t, q = found.transform.translation, found.transform.rotation
            return transform_from_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
        return None


class XdrcDepthNode(Node):
    """Camera + radar dense depth node (see the module docstring for topics).

    Args:
        pipeline: a ready :class:`~xdrcdepth_ros.pipeline.DepthPipeline` (tests inject one);
            default: built from ``model_path``, ``providers`` and ``output_size``.
        node_name: ROS node name.
        **kwargs: passed to :class:`rclpy.node.Node` (``namespace``, ``context``,
            ``parameter_overrides``, ...).

    Raises:
        ValueError: invalid parameters (every problem listed).
        FileNotFoundError: the model file does not exist.
        XdrcDepthError: the model cannot be loaded, or tf2_ros is needed but missing.
    """

    def __init__(self, *, pipeline: Any = None, node_name: str = NODE_NAME, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        try:
            self._setup(pipeline)
        except (ParameterException, NameValidationException) as err:
            super().destroy_node()
            raise ValueError(f'invalid node parameters: {err}') from err
        except BaseException:
            super().destroy_node()  # no half-built node left in the graph
            raise

    def _setup(self, pipeline: Any) -> None:
        values = {}
        for spec in PARAMETERS:
            # ROS cannot type an empty array default: declare those by type (unset = empty).
            default = spec.default if spec.default != [] else _ROS_TYPES[spec.type]
            values[spec.name] = self.declare_parameter(spec.name, default,
                                                       _descriptor(spec)).value
        self.config = NodeConfig.from_values(values)
        self.pipeline = pipeline if pipeline is not None else self._load_pipeline()
        metadata = self.pipeline.engine.metadata
        self._field_map = self._radar_field_map(metadata)
        self._extrinsics = self._make_extrinsics()
        self._assembler = FrameAssembler(self.config.sync_config())
        self._retired_sync: Counter[str] = Counter()  # counters of assemblers replaced at run time
        self._camera: conversions.CameraModel | None = None
        provider = getattr(self.pipeline.engine, 'provider', 'unknown')
        self.stats = NodeStats(str(getattr(provider, 'value', provider)))
        self._last_warning: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._create_io()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._run_worker, name='xdrcdepth-worker',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'{self.config.subscribed_image_topic} + {list(self.config.radar_topics)} -> '
            f'{self.resolve_topic_name("~/depth")} ({metadata.model_name} '
            f'{metadata.input_width}x{metadata.input_height} on {self.stats.provider})')

    # ------------------------------------------------------------------------- set-up

    def _load_pipeline(self) -> Any:
        from xdrcdepth_ros.engine import Engine
        from xdrcdepth_ros.pipeline import DepthPipeline

        config = self.config
        # The default list means "whatever is available", which the engine picks silently.
        providers = None if config.providers == PROVIDERS else list(config.providers)
        engine = Engine(resolve_model_path(config.model_path), providers=providers,
                        trt_cache_dir=config.trt_cache_dir or None,
                        intra_op_threads=config.intra_op_threads)
        return DepthPipeline(engine, output_size=config.output_size)

    def _radar_field_map(self, metadata: Any) -> conversions.RadarFieldMap:
        fields = self.config.radar_fields
        expected = len(metadata.radar_channels) - 1
        if len(fields) != expected:
            raise ValueError(f'radar_fields {list(fields)} has {len(fields)} names but the model '
                             f'takes {expected} radar channels after depth '
                             f'({list(metadata.radar_channels)}; trained with fields '
                             f'{list(metadata.radar_fields)})')
        if tuple(fields) != tuple(metadata.radar_fields):
            self.get_logger().warning(
                f'radar_fields {list(fields)} differ from the model metadata '
                f'{list(metadata.radar_fields)}; make sure they carry the same quantities')
        return conversions.RadarFieldMap(fields)

    def _make_extrinsics(self) -> Callable[[int, str, str, int], np.ndarray | None]:
        if self.config.extrinsics_source == 'parameters':
            transforms = self.config.radar_transforms()
            return lambda index, radar_frame, camera_frame, stamp_ns: transforms[index]
        try:
            import tf2_ros
        except ImportError as err:
            raise XdrcDepthError(
                'extrinsics_source is tf but tf2_ros cannot be imported (it comes with a full '
                'ROS 2 install, not with the PyPI wheels); set extrinsics_source:=parameters and '
                'radar_extrinsics (x, y, z, qx, qy, qz, qw per radar topic)') from err
        return TfExtrinsics(self, tf2_ros)

    def _create_io(self) -> None:
        config = self.config
        inputs = MutuallyExclusiveCallbackGroup()
        image_type = CompressedImage if config.image_transport == 'compressed' else Image
        self.create_subscription(image_type, config.subscribed_image_topic, self._on_image,
                                 qos_profile_sensor_data, callback_group=inputs)
        self.create_subscription(CameraInfo, config.camera_info_topic, self._on_camera_info,
                                 qos_profile_sensor_data, callback_group=inputs)
        for index, topic in enumerate(config.radar_topics):
            self.create_subscription(
                PointCloud2, topic, lambda msg, index=index: self._on_radar(index, msg),
                qos_profile_sensor_data, callback_group=inputs)
        self._pub_depth = self.create_publisher(Image, '~/depth', _OUTPUT_QOS)
        self._pub_info = self.create_publisher(CameraInfo, '~/camera_info', _OUTPUT_QOS)
        self._pub_color = self._pub_saliency = self._pub_points = None
        if config.publish_color:
            self._pub_color = self.create_publisher(Image, '~/depth_color', _OUTPUT_QOS)
        if config.publish_saliency:
            self._pub_saliency = self.create_publisher(Image, '~/saliency_overlay', _OUTPUT_QOS)
        if config.publish_points:
            self._pub_points = self.create_publisher(PointCloud2, '~/points', _OUTPUT_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(config.diagnostics_period_s, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Check run-time changes against the table; apply them when all are valid."""
        values = {spec.name: getattr(self.config, spec.name) for spec in PARAMETERS}
        for param in params:
            if param.name in values:  # others (use_sim_time, qos overrides) belong to rclpy
                reason = check_value(param.name, param.value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
                values[param.name] = param.value
        try:
            config = NodeConfig.from_values(values)
        except ValueError as err:
            return SetParametersResult(successful=False, reason=str(err))
        if config.sync_config() != self.config.sync_config():
            self._retired_sync.update(asdict(self._assembler.stats))
            self._assembler = FrameAssembler(config.sync_config())
        self.config = config
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------- callbacks

    def _on_image(self, msg: Any) -> None:
        self.stats.count('image_received')
        self._buffer('image', lambda: self._assembler.add_image(
            conversions.stamp_to_ns(msg.header.stamp), msg, time.monotonic_ns()))

    def _on_radar(self, index: int, msg: PointCloud2) -> None:
        self.stats.count('radar_received')
        self._buffer('radar', lambda: self._assembler.add_radar(
            index, conversions.stamp_to_ns(msg.header.stamp), msg, time.monotonic_ns()))

    def _buffer(self, kind: str, add: Callable[[], bool]) -> None:
        try:
            add()
        except (XdrcDepthError, ValueError, IndexError) as err:
            self._warn(f'skipped_bad_{kind}_header', f'{kind} message rejected: {err}')
            return
        self._wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera = conversions.camera_info_to_model(msg)
        except (XdrcDepthError, ValueError) as err:
            self._warn('skipped_bad_camera_info', f'CameraInfo rejected: {err}')

    # ------------------------------------------------------------------------- worker

    def _run_worker(self) -> None:
        timeout: float | None = None
        while not self._stop.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            assembler = self._assembler
            synced = assembler.take(time.monotonic_ns())
            # Sleep until new data or until a buffered image stops waiting for its radar.
            deadline = assembler.next_timeout_ns()
            timeout = None if deadline is None else max(
                (deadline - time.monotonic_ns()) / 1e9, _MIN_WAIT_S)
            if synced is None or self._stop.is_set():
                continue
            try:
                self._process(synced)
            except Exception as err:  # noqa: BLE001 - one bad frame must not stop the node
                self._warn('skipped_processing_error',
                           f'frame {synced.stamp_ns} failed: {type(err).__name__}: {err}')

    def _process(self, synced: SyncedFrame) -> None:
        start = time.perf_counter_ns()
        built = self.build_frame(synced)
        if built is None:
            return
        frame, camera, header = built
        decoded = time.perf_counter_ns()
        result = self.pipeline.run(frame)
        piped = time.perf_counter_ns()
        self.publish_result(result, camera, header)
        done = time.perf_counter_ns()
        self.stats.frame_done({
            **result.timings_ms, 'decode': (decoded - start) / 1e6,
            'publish': (done - piped) / 1e6, 'total': (done - start) / 1e6,
            'age': (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e6})

    def build_frame(self, synced: SyncedFrame) -> tuple[Frame, Any, Any] | None:
        """Decode a synced message set into ``(Frame, CameraModel, image header)``.

        Returns None (counted under ``skipped_<reason>``, warned at most every 5 s) when the
        frame cannot be used: no CameraInfo yet, undecodable image, image size different from
        CameraInfo, or (with ``require_radar``) no usable radar sweep.
        """
        msg = synced.image
        camera = self._camera
        if camera is None:
            self._warn('skipped_no_camera_info', 'no valid CameraInfo on '
                       f'{self.config.camera_info_topic} yet; frames are skipped until one '
                       'arrives')
            return None
        try:
            compressed = self.config.image_transport == 'compressed'
            image = (conversions.compressed_to_rgb(msg) if compressed
                     else conversions.image_to_rgb(msg))
        except (XdrcDepthError, ValueError) as err:
            self._warn('skipped_bad_image', f'image skipped: {err}')
            return None
        if image.shape[:2] != (camera.height, camera.width):
            self._warn('skipped_size_mismatch', f'image is {image.shape[1]}x{image.shape[0]} '
                       f'but CameraInfo says {camera.width}x{camera.height}; frame skipped')
            return None
        sweeps = []
        for index, matches in enumerate(synced.radars):
            for radar in matches:
                sweep = self._radar_sweep(index, radar.item, msg.header.frame_id)
                if sweep is not None:
                    sweeps.append(sweep)
        if self.config.require_radar and not sweeps:
            self._warn('skipped_no_usable_radar', 'require_radar is set and no radar sweep of '
                       'this frame was usable; frame skipped')
            return None
        frame = Frame(image=image, K=camera.K, radar=tuple(sweeps), stamp_ns=synced.stamp_ns,
                      frame_id=msg.header.frame_id)
        return frame, camera, msg.header

    def _radar_sweep(self, index: int, msg: Any, camera_frame: str) -> RadarSweep | None:
        topic = self.config.radar_topics[index]
        try:
            cloud = conversions.pointcloud2_to_array(msg)
            missing = conversions.missing_radar_fields(cloud.dtype, self._field_map)
            if missing:
                raise XdrcDepthError(f'no field(s) {list(missing)} (it has '
                                     f'{list(cloud.dtype.names or ())}); set radar_fields')
            points, features = conversions.radar_from_cloud(cloud, self._field_map)
        except (XdrcDepthError, ValueError) as err:
            self._warn('radar_unused_bad_cloud', f'radar sweep on {topic} not used: {err}')
            return None
        if len(points) < cloud.size:
            self.stats.count('radar_points_nonfinite', int(cloud.size - len(points)))
        stamp_ns = conversions.stamp_to_ns(msg.header.stamp)
        transform = self._extrinsics(index, msg.header.frame_id, camera_frame, stamp_ns)
        if transform is None:
            self._warn('radar_unused_no_transform', f'no transform {camera_frame!r} <- '
                       f'{msg.header.frame_id!r} at {stamp_ns} ns; radar on {topic} not used')
            return None
        return RadarSweep(points=points, features=features, T_cam_from_radar=transform,
                          stamp_ns=stamp_ns, frame_id=msg.header.frame_id)

    def publish_result(self, result: Any, camera: conversions.CameraModel, header: Any) -> None:
        """Publish a :class:`DepthResult` with the input image's ``header`` on every output."""
        config = self.config
        depth = conversions.depth_to_image_array(result.depth, config.depth_encoding)
        self._pub_depth.publish(conversions.make_image(Image, header, depth,
                                                       config.depth_encoding))
        # The pipeline's pixel mapping (scale + crop) is K_out K_in^-1; it maps P the same way.
        affine = result.K @ np.linalg.inv(camera.K)
        model = conversions.CameraModel(
            K=result.K, P=affine @ camera.P, D=camera.D, width=depth.shape[1],
            height=depth.shape[0], distortion_model=camera.distortion_model, R=camera.R)
        self._pub_info.publish(conversions.make_camera_info(CameraInfo, header, model))
        if self._listened(self._pub_color):
            max_depth = config.color_max_depth_m or self.pipeline.max_depth
            color = visualize.colorize_depth(result.depth, max_depth)
            self._pub_color.publish(conversions.make_image(Image, header, color, 'rgb8'))
        if self._listened(self._pub_saliency) and result.saliency is not None:
            overlay = visualize.saliency_overlay(result.image, result.saliency)
            self._pub_saliency.publish(conversions.make_image(Image, header, overlay, 'rgb8'))
        if self._listened(self._pub_points):
            points = conversions.depth_to_points(result.depth, result.K, config.points_stride)
            self._pub_points.publish(conversions.make_pointcloud2(
                PointCloud2, PointField, header, conversions.xyz_cloud_array(points)))

    @staticmethod
    def _listened(publisher: Any) -> bool:
        """Render optional outputs only while someone subscribes (they cost milliseconds)."""
        return publisher is not None and publisher.get_subscription_count() > 0

    # ------------------------------------------------------------------------- diagnostics

    def _warn(self, counter: str, message: str) -> None:
        """Count under ``counter`` and log a warning at most every 5 s per counter."""
        total = self.stats.count(counter)
        now = time.monotonic_ns()
        if now - self._last_warning.get(counter, -_WARN_PERIOD_NS) >= _WARN_PERIOD_NS:
            self._last_warning[counter] = now
            self.get_logger().warning(f'{message} [{counter}: {total} so far]')

    def diagnostics(self, *, new_period: bool = False) -> tuple[int, str, dict[str, str]]:
        """(level, message, key/values) as published on /diagnostics (see NodeStats.report)."""
        sync = asdict(self._assembler.stats)
        for key, retired in self._retired_sync.items():
            if key != 'pending_images':  # a gauge, not a counter
                sync[key] += retired
        return self.stats.report(sync, new_period=new_period)

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics(new_period=True)
        status = DiagnosticStatus(
            level=level, name=f'{self.get_name()}: depth', message=message,
            hardware_id=self.stats.provider,
            values=[KeyValue(key=key, value=value) for key, value in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)

    def destroy_node(self) -> None:
        """Stop the worker (after the frame in flight) and release the node."""
        self._stop.set()
        self._wake.set()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``xdrcdepth_node`` and ``xdrcdepth node``; returns the exit code.

    Runs on Humble and Jazzy (Jazzy's ``rclpy.init`` returns None, so no ``with``).
    """
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        node = XdrcDepthNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (XdrcDepthError, ValueError, FileNotFoundError) as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {err}')
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
