"""The ``xdrcdepth`` ROS 2 node: camera + radar messages in, dense metric depth out.

Thin on purpose: :class:`~xdrcdepth_ros.core.frame_step.FrameStep` pairs, caches and decodes the
messages, runs the :class:`DepthPipeline` and builds the output messages; offline replay runs the
same step. This module wires them to rclpy.
Subscription callbacks only stamp and buffer the raw messages. One worker thread takes the newest
complete frame, decodes it, runs inference (ONNX Runtime releases the GIL) and publishes, so a
model slower than the camera drops frames (counted) instead of adding latency. An image that
arrives before the first CameraInfo waits for one up to ``sync_wait_s``.

Outputs (reliable QoS, private names): ``~/depth`` (REP 118, stamp and frame_id of the image),
``~/camera_info`` (matching the depth size), and when enabled ``~/depth_color``,
``~/saliency_overlay``, ``~/points``, ``~/depth/compressedDepth`` and
``~/depth_color/compressed``; ``/diagnostics`` every ``diagnostics_period_s`` (its
``hardware_id`` is the camera's frame id). Inputs default to relative names (``image``,
``camera_info``, ``radar_0``), resolved in the node's namespace and remappable.
"""
from __future__ import annotations

import copy
import signal
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import (NameValidationException, ParameterException,
                               ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.time import Time
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from xdrcdepth_ros.core.errors import XdrcDepthError
from xdrcdepth_ros.core.geometry import transform_from_xyzw
from xdrcdepth_ros.core.frame_step import (Extrinsics, FrameStep, parameter_extrinsics,
                                           pipeline_from_config, SkipReason, StepOutput)
from xdrcdepth_ros.core.outputs import MessageClasses, NODE_NAME
from xdrcdepth_ros.core.config import (check_value, NodeConfig, PARAMETERS, ParamSpec, ParamType,
                                       resolve_model_path, transport_topic)
from xdrcdepth_ros.ros.stats import DiagnosticLevel, NodeStats
from xdrcdepth_ros.core.sync import SyncedFrame

__all__ = ['DiagnosticLevel', 'main', 'NODE_NAME', 'NodeStats', 'TfExtrinsics', 'XdrcDepthNode']
_ROS_TYPES = {
    ParamType.BOOL: Parameter.Type.BOOL, ParamType.INTEGER: Parameter.Type.INTEGER,
    ParamType.DOUBLE: Parameter.Type.DOUBLE, ParamType.STRING: Parameter.Type.STRING,
    ParamType.STRING_ARRAY: Parameter.Type.STRING_ARRAY,
    ParamType.DOUBLE_ARRAY: Parameter.Type.DOUBLE_ARRAY,
}
_OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
_MESSAGES = MessageClasses(Image, CameraInfo, PointCloud2, PointField,
                           compressed=CompressedImage)
_WARN_PERIOD_NS = 5_000_000_000
_STOP_WAIT_S = 1.2  # the frame in flight at shutdown; all of it must end within 2 s
_CALLBACK_WAIT_S = 0.3  # callbacks in flight when the executor stops (docs/reliability.md)
_STOP_POLL_S = 0.1  # main() looks at the signal flag at least this often while spinning
_MIN_WAIT_S = 0.001  # never spin: a due-but-unreleased image is re-checked at most at 1 kHz


def _sensor_qos() -> QoSProfile:
    """A fresh copy of rclpy's sensor-data profile (best effort, keep last 5)."""
    return copy.copy(qos_profile_sensor_data)


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
        pipeline: a ready :class:`~xdrcdepth_ros.core.pipeline.DepthPipeline` (tests inject one);
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
        """Declare, configure and activate at once (the lifecycle variant splits these).

        A SIGINT/SIGTERM caught by :func:`main` meanwhile ends start-up at the next step
        (:class:`StartUpInterrupted`); the model load itself cannot be cut short.
        """
        self._declare_parameters()
        _STOP.check()
        self._configure(pipeline)
        _STOP.check()
        self._activate()

    def _declare_parameters(self) -> None:
        for spec in PARAMETERS:
            # ROS cannot type an empty array default: declare those by type (unset = empty).
            default = spec.default if spec.default != [] else _ROS_TYPES[spec.type]
            self.declare_parameter(spec.name, default, _descriptor(spec))
        self.step = self.frames = None  # set by _configure
        self._worker: threading.Thread | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _parameter_values(self) -> dict[str, Any]:
        """Current values of the table's parameters; None for an array declared by type and
        never set (read as empty)."""
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                values[spec.name] = self.get_parameter(spec.name).value
            except ParameterUninitializedException:
                values[spec.name] = None
        return values

    def _configure(self, pipeline: Any) -> None:
        """Read the parameters, load the model (engine build) and set up the frame builder."""
        self.config = NodeConfig.from_values(self._parameter_values())
        for topic in (self.config.image_topic, self.config.camera_info_topic,
                      *self.config.radar_topics):
            validate_topic_name(topic)  # names the bad one (resolving it later would not)
        if pipeline is None:
            # Loading can take long (a TensorRT engine build: minutes); say so before it starts.
            self.get_logger().info(f'loading model {resolve_model_path(self.config.model_path)}')
            pipeline = pipeline_from_config(self.config)
        self.pipeline = pipeline
        metadata = self.pipeline.engine.metadata
        if self.config.radar_fields and (tuple(self.config.radar_fields)
                                         != tuple(metadata.radar_fields)):
            self.get_logger().warning(
                f'radar_fields {list(self.config.radar_fields)} differ from the model metadata '
                f'{list(metadata.radar_fields)}; make sure they carry the same quantities')
        provider = getattr(self.pipeline.engine, 'provider', 'unknown')
        self.stats = NodeStats(str(getattr(provider, 'value', provider)),
                               self.input_topics['radars'], self.config.radar_timeout_s)
        self._last_warning: dict[str, int] = {}
        self._camera_frame = ''  # the newest image's frame_id: /diagnostics' hardware_id
        self._extrinsics = self._make_extrinsics()
        self.step = FrameStep(self.config, self.pipeline, _MESSAGES, self._extrinsics,
                              report=self._warn, count=self.stats.count)
        self.frames = self.step.frames

    def _activate(self) -> None:
        """Subscribe, advertise the outputs and start the worker."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._create_io()
        self._worker = threading.Thread(target=self._run_worker, name='xdrcdepth-worker',
                                        daemon=True)
        self._worker.start()
        metadata = self.pipeline.engine.metadata
        self.get_logger().info(
            f'{self.input_topics["image"]} + {list(self.input_topics["radars"])} -> '
            f'{self.resolve_topic_name("~/depth")} ({metadata.model_name} '
            f'{metadata.input_width}x{metadata.input_height} on {self.stats.provider})')

    def _deactivate(self) -> None:
        """Stop the worker (after the frame in flight, waiting at most 1.2 s: it is a daemon
        thread, so a longer inference cannot hold the exit) and drop subscriptions and
        outputs."""
        if self._worker is None:
            return
        self._stop.set()
        self._wake.set()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout=_STOP_WAIT_S)
        self._worker = None
        for subscription in self._io_subscriptions:
            self.destroy_subscription(subscription)
        for publisher in [*self._outputs.values(), self._pub_diag]:
            self.destroy_publisher(publisher)
        self.destroy_timer(self._io_timer)
        self._io_subscriptions, self._outputs = [], {}

    def _cleanup(self) -> None:
        """Free the engine and the frame state (a new configure loads them again)."""
        self.pipeline = self.step = self.frames = self._extrinsics = None

    # ------------------------------------------------------------------------- set-up

    def _make_extrinsics(self) -> Extrinsics:
        if not self.config.radar_topics:
            return lambda index, radar_frame, camera_frame, stamp_ns: None  # never asked
        if self.config.extrinsics_source == 'parameters':
            return parameter_extrinsics(self.config)
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
        # Reentrant: the input callbacks only hand messages to the thread-safe assembler, and a
        # busy mutually exclusive group drops out of a multi-threaded executor's wait set,
        # which can hold the next image back until an unrelated event wakes the executor.
        inputs = ReentrantCallbackGroup()
        # Sensor-data QoS (best effort) by default; the standard ``qos_overrides.<topic>.
        # subscription.{reliability,history,depth}`` parameters change it (e.g. reliable for a
        # lossless bag replay). rclpy applies overrides to the profile object it is given, so
        # each subscription gets its own copy, never the shared qos_profile_sensor_data.
        overridable = QoSOverridingOptions.with_default_policies()
        image_type = CompressedImage if config.image_transport == 'compressed' else Image
        topics = self.input_topics
        self._io_subscriptions = [
            self.create_subscription(image_type, topics['image'], self._on_image,
                                     _sensor_qos(), callback_group=inputs,
                                     qos_overriding_options=overridable),
            self.create_subscription(CameraInfo, topics['camera_info'], self._on_camera_info,
                                     _sensor_qos(), callback_group=inputs,
                                     qos_overriding_options=overridable)]
        for index, topic in enumerate(topics['radars']):
            self._io_subscriptions.append(self.create_subscription(
                PointCloud2, topic, lambda msg, index=index: self._on_radar(index, msg),
                _sensor_qos(), callback_group=inputs, qos_overriding_options=overridable))
        outputs = {'depth': Image, 'camera_info': CameraInfo}
        enabled = {'depth_color': (config.publish_color, Image),
                   'saliency_overlay': (config.publish_saliency, Image),
                   'points': (config.publish_points, PointCloud2),
                   'depth/compressedDepth': (config.publish_compressed, CompressedImage),
                   'depth_color/compressed': (config.publish_compressed and config.publish_color,
                                              CompressedImage)}
        outputs.update({suffix: kind for suffix, (on, kind) in enabled.items() if on})
        self._outputs = {suffix: self.create_publisher(kind, f'~/{suffix}', _OUTPUT_QOS)
                            for suffix, kind in outputs.items()}
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._io_timer = self.create_timer(config.diagnostics_period_s,
                                           self._publish_diagnostics,
                                           callback_group=MutuallyExclusiveCallbackGroup())

    @property
    def input_topics(self) -> dict[str, Any]:
        """Resolved input names: ``image`` (with its transport suffix), ``camera_info`` and
        ``radars`` (a tuple). Remapping applies to the base image name, as image_transport
        does: ``image:=/cam/image_raw`` moves ``image/compressed`` too."""
        config = self.config
        return {'image': transport_topic(self.resolve_topic_name(config.image_topic),
                                         config.image_transport),
                'camera_info': self.resolve_topic_name(config.camera_info_topic),
                'radars': tuple(self.resolve_topic_name(t) for t in config.radar_topics)}

    @property
    def output_suffixes(self) -> tuple[str, ...]:
        """Suffixes of the outputs this node publishes: ``depth``, ``camera_info`` and the
        enabled optional ones."""
        return tuple(self._outputs)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Check run-time changes against the table; apply them when all are valid."""
        values = self._parameter_values()
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
        if self.frames is not None:  # configured (the lifecycle variant may not be yet)
            self.frames.reconfigure(config)
            self.config = config
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------- callbacks

    def _on_image(self, msg: Any) -> None:
        self.stats.count('image_received')
        if self.frames.add_image(msg, time.monotonic_ns(), self.get_clock().now().nanoseconds):
            self._wake.set()

    def _on_radar(self, index: int, msg: PointCloud2) -> None:
        self.stats.count('radar_received')
        self.stats.radar_received(index)
        if self.frames.add_radar(index, msg, time.monotonic_ns(),
                                 self.get_clock().now().nanoseconds):
            self._wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        first = self.frames.camera is None
        if self.frames.add_camera_info(msg) and first:
            self._wake.set()  # images held for a CameraInfo can go now

    # ------------------------------------------------------------------------- worker

    def _run_worker(self) -> None:
        timeout: float | None = None
        while not self._stop.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            synced = self.frames.take(time.monotonic_ns())
            # Sleep until new data or until a buffered image stops waiting for its radar.
            deadline = self.frames.next_timeout_ns()
            timeout = None if deadline is None else max(
                (deadline - time.monotonic_ns()) / 1e9, _MIN_WAIT_S)
            if synced is None or self._stop.is_set():
                continue
            try:
                self._process(synced)
            except Exception as err:  # noqa: BLE001 - a failed publish must not stop the node
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: publishing into a closed context is no frame fault
                self._warn(SkipReason.PROCESSING_ERROR,
                           f'frame {synced.stamp_ns} failed: {type(err).__name__}: {err}')

    def _process(self, synced: SyncedFrame) -> None:
        output = self.step.run(synced, wanted=self.wanted)
        if output is None:
            return
        self._camera_frame = dict(output.messages)['depth'].header.frame_id
        publish_ms = self.publish(output)
        timings = output.timings_ms
        self.stats.frame_done({
            **timings, 'publish': timings['outputs'] + publish_ms,
            'total': timings['total'] + publish_ms,
            'age': (self.get_clock().now().nanoseconds - output.stamp_ns) / 1e6})

    def wanted(self, suffix: str) -> bool:
        """Whether output ``suffix`` is published and has a subscriber: optional outputs cost
        milliseconds to render, so they are rendered only while someone listens."""
        publisher = self._outputs.get(suffix)
        return publisher is not None and publisher.get_subscription_count() > 0

    def publish(self, output: StepOutput) -> float:
        """Publish a frame step's messages; returns the time it took, ms."""
        start = time.perf_counter_ns()
        for suffix, msg in output.messages:
            self._outputs[suffix].publish(msg)
        return (time.perf_counter_ns() - start) / 1e6

    # ------------------------------------------------------------------------- diagnostics

    def _warn(self, reason: SkipReason | str, message: str) -> None:
        """Count under ``reason`` and log a warning at most every 5 s per counter."""
        counter = reason.value if isinstance(reason, SkipReason) else reason
        total = self.stats.count(counter)
        now = time.monotonic_ns()
        if now - self._last_warning.get(counter, -_WARN_PERIOD_NS) >= _WARN_PERIOD_NS:
            self._last_warning[counter] = now
            self.get_logger().warning(f'{message} [{counter}: {total} so far]')

    def diagnostics(self, *,
                    new_period: bool = False) -> tuple[DiagnosticLevel, str, dict[str, str]]:
        """(level, message, key/values) as published on /diagnostics (see NodeStats.report)."""
        return self.stats.report(self.frames.sync_stats(), new_period=new_period)

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics(new_period=True)
        status = DiagnosticStatus(
            level=bytes([int(level)]), name=f'{self.get_name()}: depth', message=message,
            hardware_id=self._camera_frame or self.input_topics['image'],
            values=[KeyValue(key=key, value=value) for key, value in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)

    def destroy_node(self) -> None:
        """Stop the worker (after the frame in flight) and release the node."""
        self._deactivate()
        super().destroy_node()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartUpInterrupted(Exception):
    """A SIGINT/SIGTERM arrived while the node was starting: start-up stops at the next step."""


class _StopRequest:
    """What :func:`main`'s signal handler records: the signal, nothing else.

    The handler runs between two bytecodes of whatever the main thread is doing, which while
    spinning is rclpy's executor and concurrent.futures code holding threading locks. Raising
    there (KeyboardInterrupt) can leave one of those locks held or released twice: the node
    then exits 1 with "RuntimeError: release unlocked lock", or the executor's pool threads
    block on the lock and the interpreter's exit waits for them forever (issue 16). So the
    handler only stores the signal (no lock, no exception) and the main thread acts on it
    where it chooses: :func:`main`'s spin loop and the start-up steps.
    """

    signum: int | None = None

    def handler(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`StartUpInterrupted` once a signal has been recorded."""
        if self.signum is not None:
            raise StartUpInterrupted(signal.Signals(self.signum).name)


_STOP = _StopRequest()


def _set_handlers(handlers: dict[int, Any]) -> None:
    """Install signal handlers where Python allows it (the main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def main(args: list[str] | None = None, node_class: type | None = None) -> int:
    """Entry point of ``xdrcdepth_node`` and ``xdrcdepth node``; returns the exit code.

    ``node_class`` (default :class:`XdrcDepthNode`) is what is spun, e.g. the lifecycle
    variant. Runs on Humble and Jazzy (Jazzy's ``rclpy.init`` returns None, so no ``with``).
    SIGINT or SIGTERM at any point (start-up, idle, inferring, twice) ends it with 0 within
    2 s: the handler only records the signal (see :class:`_StopRequest`); start-up stops at
    its next step, spinning stops within ``_STOP_POLL_S`` (rclpy's own handler, chained
    behind ours, wakes the executor at once), then the executor, the node (the frame in flight
    finishes) and the context are shut down in that order.
    """
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    _STOP.signum = None
    # Before rclpy.init: rclpy's handlers chain to the ones found installed, i.e. to this one.
    _set_handlers(dict.fromkeys(_SIGNALS, _STOP.handler))
    node, executor, initialised = None, None, False
    try:
        rclpy.init(args=args)
        initialised = True
        _STOP.check()
        node = (node_class or XdrcDepthNode)()
        _STOP.check()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        while rclpy.ok() and not _STOP.requested:
            executor.spin_once(timeout_sec=_STOP_POLL_S)
    except (StartUpInterrupted, ExternalShutdownException):
        pass
    except Exception as err:  # noqa: BLE001 - sorted below: shutdown, start-up error, or bug
        if _STOP.requested or (initialised and not rclpy.ok()):
            pass  # the context went down under start-up or a callback: a shutdown
        elif isinstance(err, (XdrcDepthError, ValueError, FileNotFoundError)):
            rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {err}')
            return 1
        else:
            raise
    finally:
        stopped_by_signal = _STOP.requested
        if stopped_by_signal:
            # The process is ending: further signals are ignored while it is torn down.
            _set_handlers(dict.fromkeys(_SIGNALS, signal.SIG_IGN))
            rclpy.logging.get_logger(NODE_NAME).info(
                f'{signal.Signals(_STOP.signum).name}: shutting down')
        if executor is not None:
            # No callback starts after this; its sigint guard condition leaves rclpy's list.
            executor.shutdown(timeout_sec=_CALLBACK_WAIT_S)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        _STOP.signum = None
        if not stopped_by_signal:
            _set_handlers(previous)  # an error or an in-process caller: theirs come back
    return 0
