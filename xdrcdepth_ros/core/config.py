"""The node's parameters: one table, its checks and the typed configuration built from it.

ROS-free on purpose: ``node.py`` turns :data:`PARAMETERS` into ``ParameterDescriptor`` s, the
tests compare the table with ``config/xdrcdepth.yaml`` and ``config/xdrcdepth.schema.json``, and
:func:`xdrcdepth_ros.ros.param_docs.json_schema` renders the schema, so the three cannot drift apart unnoticed.

Units are in the names where they are not obvious: ``*_s`` is seconds, ``*_m`` is metres.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import enum
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from xdrcdepth_ros.core.geometry import transform_from_xyzw
from xdrcdepth_ros.core.sync import (DEFAULT_BUFFER_SIZE, DEFAULT_MAX_AGE_NS, DEFAULT_SLOP_NS,
                                     DEFAULT_WAIT_NS, SyncConfig)

__all__ = ['check_value', 'default_model_path', 'defaults', 'engine_providers',
           'load_params_file', 'NodeConfig', 'PARAMETERS',
           'ParamSpec', 'ParamType', 'resolve_model_path', 'spec']

DEFAULT_MODEL_NAME = 'xdrcdepth_student.onnx'
EXTRINSICS_PER_RADAR = 7
"""x, y, z, qx, qy, qz, qw of ``T_camera_optical<-radar`` for each radar topic."""


class ParamType(enum.Enum):
    """ROS parameter types used by the node (names as in ``rcl_interfaces/ParameterType``)."""

    BOOL = 'bool'
    INTEGER = 'integer'
    DOUBLE = 'double'
    STRING = 'string'
    STRING_ARRAY = 'string_array'
    DOUBLE_ARRAY = 'double_array'


@dataclass(frozen=True)
class ParamSpec:
    """One row of the parameter table.

    Attributes:
        name: parameter name (no namespace).
        type: ROS parameter type.
        default: default value; ``[]`` for an empty array (ROS cannot type an empty array, so the
            node declares it by type and reads "not set" as empty).
        description: one line, with units.
        read_only: True when the value is used only at start-up (topics, model, publishers).
        minimum: inclusive lower bound of a number (None: unbounded).
        maximum: inclusive upper bound of a number (None: unbounded).
        choices: allowed values of a string, or of each item of a string array.
    """

    name: str
    type: ParamType
    default: Any
    description: str
    read_only: bool = True
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


PROVIDERS = ('tensorrt', 'cuda', 'openvino', 'cpu')
"""Execution providers a user may list, in the order the node prefers them."""


def engine_providers(providers: Sequence[str]) -> list[str] | None:
    """What to hand ``Engine(providers=...)`` for a configured provider list.

    The default list means "whatever is available", which the engine picks silently (None); any
    other list is an explicit request, and the engine warns about members it cannot use.
    """
    return None if tuple(providers) == PROVIDERS else list(providers)

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec('model_path', ParamType.STRING, '',
              'ONNX model file (its metadata JSON sits beside it); empty = the shipped '
              f'models/{DEFAULT_MODEL_NAME}'),
    ParamSpec('providers', ParamType.STRING_ARRAY, list(PROVIDERS),
              'ONNX Runtime execution providers to try, in order; unavailable ones are skipped',
              choices=PROVIDERS),
    ParamSpec('trt_cache_dir', ParamType.STRING, '',
              'folder for TensorRT engine and timing caches; empty = none (TensorRT then '
              'rebuilds its engine, which takes minutes, at every start)'),
    ParamSpec('intra_op_threads', ParamType.INTEGER, 0,
              'CPU threads of the ONNX Runtime CPU kernels or of OpenVINO; 0 = the runtime default '
              '(one per physical core)',
              minimum=0, maximum=64),
    ParamSpec('image_topic', ParamType.STRING, 'image',
              'camera image topic, relative names resolve in the node namespace (remap image:=...); '
              'sensor_msgs/Image, the compressed transport adds /compressed'),
    ParamSpec('image_transport', ParamType.STRING, 'raw',
              'raw: sensor_msgs/Image on image_topic; compressed: CompressedImage on '
              '<image_topic>/compressed', choices=('raw', 'compressed')),
    ParamSpec('camera_info_topic', ParamType.STRING, 'camera_info',
              'sensor_msgs/CameraInfo of the camera (k and the image size are used); relative '
              'names resolve in the node namespace'),
    ParamSpec('radar_topics', ParamType.STRING_ARRAY, ['radar_0'],
              'sensor_msgs/PointCloud2 radar topics (relative: in the node namespace); each sweep '
              'is projected into the image'),
    ParamSpec('camera_only', ParamType.BOOL, False,
              'true: subscribe to no radar (radar_topics, radar_time_offsets_s and '
              'radar_extrinsics are not used); the way to say "no radar", as ROS drops an empty '
              'radar_topics list'),
    ParamSpec('radar_fields', ParamType.STRING_ARRAY, [],
              "PointCloud2 fields feeding the model's radar channels after depth, in order; "
              "empty: the fields the model was trained with (its metadata's radar_fields)"),
    ParamSpec('radar_time_offsets_s', ParamType.DOUBLE_ARRAY, [],
              'per radar topic, seconds added to its stamps before matching (empty: all 0)',
              minimum=-1.0, maximum=1.0),
    ParamSpec('sync_slop', ParamType.DOUBLE, DEFAULT_SLOP_NS / 1e9,
              'largest |image stamp - radar stamp| (s) for a sweep to pair with an image',
              read_only=False, minimum=0.0, maximum=1.0),
    ParamSpec('sync_wait_s', ParamType.DOUBLE, DEFAULT_WAIT_NS / 1e9,
              'how long (s, receive time) an image waits for its radar sweeps before it is used '
              'without them or dropped (require_radar)', read_only=False, minimum=0.0,
              maximum=2.0),
    ParamSpec('sync_max_age_s', ParamType.DOUBLE, DEFAULT_MAX_AGE_NS / 1e9,
              'messages whose stamp is this much (s) older than the newest stamp are discarded; '
              'stale images are counted as drops', read_only=False, minimum=0.01, maximum=10.0),
    ParamSpec('sync_buffer_size', ParamType.INTEGER, DEFAULT_BUFFER_SIZE,
              'messages kept per input topic while waiting for a match', minimum=1, maximum=100),
    ParamSpec('require_radar', ParamType.BOOL, False,
              'true: skip a frame whose radar is missing, unreadable or has no transform; '
              'false: run it without that radar (degraded, counted in diagnostics)',
              read_only=False),
    ParamSpec('radar_timeout_s', ParamType.DOUBLE, 1.0,
              'a radar topic silent (receive time) for longer than this (s) turns /diagnostics '
              'to WARN, naming the topic', minimum=0.05, maximum=60.0),
    ParamSpec('max_radar_points', ParamType.INTEGER, 50_000,
              'radar sweeps with more points are not used (warned, radar_unused_too_many_points);'
              ' decoding one costs about 2.4 us per point', read_only=False, minimum=1,
              maximum=100_000_000),
    ParamSpec('max_image_pixels', ParamType.INTEGER, 16_777_216,
              'images (raw, or compressed by their header) with more pixels are skipped undecoded'
              ' (skipped_image_too_large)', read_only=False, minimum=1,
              maximum=1_000_000_000),
    ParamSpec('max_future_stamp_s', ParamType.DOUBLE, 1.0,
              'images and radar sweeps stamped more than this (s) ahead of the node clock are '
              'dropped (skipped_future_stamp); 0 = no check', read_only=False, minimum=0.0,
              maximum=3600.0),
    ParamSpec('extrinsics_source', ParamType.STRING, 'tf',
              'tf: look up camera<-radar with tf2_ros at the radar stamp; parameters: use '
              'radar_extrinsics', choices=('tf', 'parameters')),
    ParamSpec('radar_extrinsics', ParamType.DOUBLE_ARRAY, [],
              'with extrinsics_source=parameters: 7 values per radar topic (x, y, z in m, qx, qy, '
              'qz, qw) of the transform camera optical frame <- radar'),
    ParamSpec('depth_encoding', ParamType.STRING, '32FC1',
              '~/depth encoding (REP 118): 32FC1 metres with NaN invalid, or 16UC1 millimetres '
              'with 0 invalid', read_only=False, choices=('32FC1', '16UC1')),
    ParamSpec('output_size', ParamType.STRING, 'model',
              'model: publish at the model input size (K scaled and cropped); camera: resample '
              'to the camera size', choices=('model', 'camera')),
    ParamSpec('publish_color', ParamType.BOOL, True,
              'publish ~/depth_color (rgb8, fixed metric colour range)'),
    ParamSpec('publish_saliency', ParamType.BOOL, False,
              'publish ~/saliency_overlay (rgb8) when the model has a saliency output'),
    ParamSpec('publish_points', ParamType.BOOL, False,
              'publish ~/points (PointCloud2 x, y, z in the camera optical frame)'),
    ParamSpec('points_organized', ParamType.BOOL, False,
              'true: ~/points is an organised cloud (height x width of the sampled pixels, NaN '
              'points where depth is invalid); false: valid points only (height 1)'),
    ParamSpec('publish_compressed', ParamType.BOOL, False,
              'also publish the image_transport forms ~/depth/compressedDepth (16-bit PNG, '
              'readable by compressed_depth_image_transport) and, with publish_color, '
              '~/depth_color/compressed (JPEG); for recording and remote viewing'),
    ParamSpec('points_stride', ParamType.INTEGER, 4,
              'keep every n-th pixel in both directions for ~/points', read_only=False,
              minimum=1, maximum=64),
    ParamSpec('color_max_depth_m', ParamType.DOUBLE, 0.0,
              'depth (m) at the end of the colour map; 0 = the model max_depth',
              read_only=False, minimum=0.0, maximum=1000.0),
    ParamSpec('diagnostics_period_s', ParamType.DOUBLE, 1.0,
              'period (s) of the /diagnostics message and of its rate and latency window',
              minimum=0.1, maximum=60.0),
)

PARAMETER_NAMES: tuple[str, ...] = tuple(spec.name for spec in PARAMETERS)
_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


def spec(name: str) -> ParamSpec:
    """Return the table row of ``name``; KeyError names the known parameters."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ', '.join(PARAMETER_NAMES)
        raise KeyError(f'unknown parameter {name!r}; known: {known}') from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _type_error(param: ParamSpec, value: Any) -> str | None:
    kind = param.type
    if kind is ParamType.BOOL:
        ok = isinstance(value, (bool, np.bool_))
    elif kind is ParamType.INTEGER:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    elif kind is ParamType.DOUBLE:
        ok = _is_number(value)
    elif kind is ParamType.STRING:
        ok = isinstance(value, str)
    elif kind is ParamType.STRING_ARRAY:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    else:
        ok = (isinstance(value, (list, tuple, np.ndarray))
              and all(_is_number(v) for v in value))
    return None if ok else f'{param.name} must be of type {kind.value}, got {value!r}'


def check_value(name: str, value: Any) -> str | None:
    """Check one value against its table row.

    Returns:
        None when the value is acceptable, otherwise the reason, quoting the value and what is
        expected (this is the text a rejected ``ros2 param set`` shows).
    """
    param = spec(name)
    reason = _type_error(param, value)
    if reason:
        return reason
    numbers = [value] if param.type in (ParamType.INTEGER, ParamType.DOUBLE) else (
        list(value) if param.type is ParamType.DOUBLE_ARRAY else [])
    for number in numbers:
        if not math.isfinite(float(number)):
            return f'{name} must be finite, got {number!r}'
        if param.minimum is not None and number < param.minimum:
            return f'{name} must be >= {param.minimum}, got {number!r}'
        if param.maximum is not None and number > param.maximum:
            return f'{name} must be <= {param.maximum}, got {number!r}'
    if param.choices:
        items = [value] if param.type is ParamType.STRING else list(value)
        for item in items:
            if item not in param.choices:
                return f'{name} must be one of {list(param.choices)}, got {item!r}'
    if param.type is ParamType.STRING_ARRAY and len(set(value)) != len(value):
        return f'{name} must not repeat items, got {list(value)!r}'
    return None


@dataclass(frozen=True)
class NodeConfig:
    """The node's checked configuration (see :data:`PARAMETERS` for meanings and units)."""

    model_path: str
    providers: tuple[str, ...]
    trt_cache_dir: str
    intra_op_threads: int
    image_topic: str
    image_transport: str
    camera_info_topic: str
    radar_topics: tuple[str, ...]
    camera_only: bool
    radar_fields: tuple[str, ...]
    radar_time_offsets_s: tuple[float, ...]
    sync_slop: float
    sync_wait_s: float
    sync_max_age_s: float
    sync_buffer_size: int
    require_radar: bool
    radar_timeout_s: float
    max_radar_points: int
    max_image_pixels: int
    max_future_stamp_s: float
    extrinsics_source: str
    radar_extrinsics: tuple[float, ...]
    depth_encoding: str
    output_size: str
    publish_color: bool
    publish_saliency: bool
    publish_points: bool
    points_organized: bool
    publish_compressed: bool
    points_stride: int
    color_max_depth_m: float
    diagnostics_period_s: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> 'NodeConfig':
        """Build the configuration from parameter values (missing ones take their defaults).

        ``None`` stands for an array parameter that was declared but never set (empty).

        Raises:
            ValueError: every problem found, one per line: unknown names, wrong types, values out
                of range or not among the choices, and inconsistent combinations (extrinsics or
                offsets whose length does not match ``radar_topics``).
        """
        unknown = sorted(set(values) - set(PARAMETER_NAMES))
        problems = [f'unknown parameter {name!r}' for name in unknown]
        merged: dict[str, Any] = {}
        for param in PARAMETERS:
            value = values.get(param.name, param.default)
            if value is None and param.type in (ParamType.STRING_ARRAY, ParamType.DOUBLE_ARRAY):
                value = []
            reason = check_value(param.name, value)
            if reason:
                problems.append(reason)
            merged[param.name] = value
        if merged['camera_only'] is True:
            merged.update(radar_topics=[], radar_time_offsets_s=[], radar_extrinsics=[])
        if not problems:
            problems += _cross_check(merged)
        if problems:
            raise ValueError('invalid node parameters:\n  ' + '\n  '.join(problems))
        for param in PARAMETERS:
            value = merged[param.name]
            if param.type is ParamType.DOUBLE:
                merged[param.name] = float(value)
            elif param.type is ParamType.INTEGER:
                merged[param.name] = int(value)
            elif param.type is ParamType.BOOL:
                merged[param.name] = bool(value)
            elif param.type is ParamType.DOUBLE_ARRAY:
                merged[param.name] = tuple(float(v) for v in value)
            elif param.type is ParamType.STRING_ARRAY:
                merged[param.name] = tuple(str(v) for v in value)
        return cls(**merged)

    def radar_transforms(self) -> tuple[np.ndarray, ...]:
        """(4, 4) float64 ``T_cam<-radar`` per radar topic, from ``radar_extrinsics``.

        Raises:
            ValueError: extrinsics_source is not 'parameters'.
        """
        if self.extrinsics_source != 'parameters':
            raise ValueError("radar_transforms() needs extrinsics_source='parameters'")
        values = np.asarray(self.radar_extrinsics, dtype=np.float64)
        return tuple(transform_from_xyzw(row[:3], row[3:])
                     for row in values.reshape(-1, EXTRINSICS_PER_RADAR))

    def radar_offsets_ns(self) -> tuple[int, ...]:
        """Per radar topic offset added to its stamps, int nanoseconds (zeros when unset)."""
        if not self.radar_time_offsets_s:
            return (0,) * len(self.radar_topics)
        return tuple(int(round(s * 1e9)) for s in self.radar_time_offsets_s)

    def sync_config(self) -> SyncConfig:
        """The :class:`FrameAssembler` settings these parameters describe (durations in ns)."""
        max_age_ns = int(round(self.sync_max_age_s * 1e9))
        return SyncConfig(
            slop_ns=int(round(self.sync_slop * 1e9)), radar_offsets_ns=self.radar_offsets_ns(),
            buffer_size=self.sync_buffer_size, max_age_ns=max_age_ns,
            wait_ns=int(round(self.sync_wait_s * 1e9)), require_radar=self.require_radar,
            # A stamp this far back is a bag loop or a restarted driver, not a late message.
            clock_jump_ns=max(2_000_000_000, max_age_ns + 1_000_000_000))

    @property
    def subscribed_image_topic(self) -> str:
        """The topic actually subscribed: ``image_topic`` or ``<image_topic>/compressed``."""
        return transport_topic(self.image_topic, self.image_transport)

    def with_absolute_topics(self, namespace: str = '/') -> NodeConfig:
        """This configuration with every relative input name resolved in ``namespace`` (as
        without remapping), for tools that match topics by name (bag replay)."""
        return replace(self, image_topic=absolute_topic(self.image_topic, namespace),
                       camera_info_topic=absolute_topic(self.camera_info_topic, namespace),
                       radar_topics=tuple(absolute_topic(t, namespace) for t in self.radar_topics))


def transport_topic(image_topic: str, transport: str) -> str:
    """The topic of ``image_topic`` in an image_transport (``raw`` is the base topic)."""
    return image_topic if transport == 'raw' else f'{image_topic.rstrip("/")}/{transport}'


def absolute_topic(name: str, namespace: str = '/') -> str:
    """``name`` resolved in ``namespace`` the way ROS does without remapping rules
    (``image`` in ``/front`` -> ``/front/image``; absolute names unchanged)."""
    if name.startswith('/'):
        return name
    prefix = namespace.strip('/')
    return f'/{prefix}/{name}' if prefix else f'/{name}'


def _cross_check(values: Mapping[str, Any]) -> list[str]:
    problems = []
    topics = list(values['radar_topics'])
    if any(not topic for topic in topics) or not values['image_topic'] \
            or not values['camera_info_topic']:
        problems.append('topic names must not be empty')
    if values['sync_max_age_s'] < values['sync_slop']:
        problems.append(f"sync_max_age_s ({values['sync_max_age_s']}) must be >= sync_slop "
                        f"({values['sync_slop']}), or matching sweeps would be discarded as stale")
    if values['require_radar'] and not topics:
        problems.append('require_radar is true but no radar is subscribed (camera_only or an '
                        'empty radar_topics)')
    offsets = list(values['radar_time_offsets_s'])
    if offsets and len(offsets) != len(topics):
        problems.append(f'radar_time_offsets_s has {len(offsets)} values for {len(topics)} '
                        'radar topics (give one per topic, or none)')
    if values['extrinsics_source'] == 'parameters':
        extrinsics = np.asarray(values['radar_extrinsics'], dtype=np.float64)
        expected = EXTRINSICS_PER_RADAR * len(topics)
        if extrinsics.size != expected:
            problems.append(
                f'radar_extrinsics has {extrinsics.size} values; extrinsics_source=parameters '
                f'needs {EXTRINSICS_PER_RADAR} (x, y, z, qx, qy, qz, qw) per radar topic = '
                f'{expected} for {topics}')
        else:
            for topic, row in zip(topics, extrinsics.reshape(-1, EXTRINSICS_PER_RADAR)):
                norm = float(np.linalg.norm(row[3:]))
                if abs(norm - 1.0) > 1e-3:
                    problems.append(f'radar_extrinsics quaternion of {topic} has norm {norm:.6f}; '
                                    'expected a unit quaternion (qx, qy, qz, qw)')
    return problems


def load_params_file(path: str | Path, node_name: str = 'xdrcdepth', *,
                     namespace: str = '') -> dict[str, Any]:
    """Parameter values for ``node_name`` from a ROS 2 parameter YAML file (``--params-file``).

    Reads the ``ros__parameters`` of the ``/**`` entry, then of ``node_name`` / ``/node_name``,
    then of the fully qualified ``<namespace>/<node_name>`` when the node has a ``namespace``
    (later entries win, as with ``--params-file``). Values are not checked here; pass them to
    :meth:`NodeConfig.from_values`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not YAML, or no ``ros__parameters`` for this node.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'parameter file {str(path)!r} not found')
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f'parameter file {path} is not valid YAML: {err}') from err
    values: dict[str, Any] = {}
    found = False
    qualified = f'{namespace.strip("/")}/{node_name}' if namespace.strip('/') else None
    keys = ['/**', node_name, f'/{node_name}'] + ([qualified, f'/{qualified}'] if qualified else [])
    for key in keys:
        entry = document.get(key) if isinstance(document, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get('ros__parameters'), dict):
            values.update(entry['ros__parameters'])
            found = True
    if not found:
        raise ValueError(f'parameter file {path} has no ros__parameters for /** or {node_name}')
    return values


def default_model_path() -> Path:
    """Where the shipped model lives: the installed package share, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory('xdrcdepth_ros')) / 'models' / DEFAULT_MODEL_NAME
        if share.is_file():
            return share
    except (ImportError, LookupError, OSError, ValueError):
        pass  # not installed through colcon/ament: fall back to the source checkout
    return Path(__file__).resolve().parents[2] / 'models' / DEFAULT_MODEL_NAME


def resolve_model_path(model_path: str) -> Path:
    """Return the model file to load for the ``model_path`` parameter.

    Raises:
        FileNotFoundError: the file does not exist; the message names the path and how to get
            a model.
    """
    path = Path(model_path).expanduser() if model_path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(
            f'model file {str(path)!r} not found. Set the model_path parameter to an exported '
            'model, or create one with `xdrcdepth export --checkpoint CKPT --out '
            f'models/{DEFAULT_MODEL_NAME}` (see models/MODEL_CARD.md)')
    return path


def defaults() -> dict[str, Any]:
    """Parameter name -> default value, as ``config/xdrcdepth.yaml`` lists them."""
    return {param.name: param.default for param in PARAMETERS}
