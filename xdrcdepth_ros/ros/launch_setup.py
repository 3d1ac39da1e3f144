"""What ``launch/xdrcdepth.launch.py`` starts, worked out without launch_ros.

launch_ros has no PyPI wheel, so the launch file stays a thin shell: it declares
:data:`LAUNCH_ARGUMENTS`, hands their values to :func:`node_setups` and turns each
:class:`NodeSetup` into a ``launch_ros.actions.Node``; :func:`rviz_config` fills the RViz layout
in for the first node. Everything here is plain Python, tested directly (``test/test_launch.py``).

Rules:
- An empty argument keeps what the params file (or the node default) says; only given values
  become parameters or remappings. ``use_sim_time`` too: a params file's value is not overridden.
- ``image_topic`` / ``camera_info_topic`` are remappings of the node's relative ``image`` and
  ``camera_info`` (as image_pipeline nodes are remapped); the remapped ``image`` also moves
  ``image/compressed``.
- ``radar_topics`` is a YAML list; ``[]`` means camera only (``camera_only: true``).
- ``cameras`` (a YAML list) starts one node per camera in ``<namespace>/<camera>``; ``{camera}``
  in ``params_file``, ``image_topic`` and ``camera_info_topic`` is replaced by each name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from xdrcdepth_ros.core.config import (absolute_topic, check_value, load_params_file, NodeConfig,
                                       transport_topic)
from xdrcdepth_ros.core.outputs import NODE_NAME, output_topic

CAMERA_PLACEHOLDER = '{camera}'


@dataclass(frozen=True)
class LaunchArgument:
    """One ``DeclareLaunchArgument``: name, default ('' = keep the params file) and help."""

    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument('namespace', '', 'namespace of the node(s); outputs go to '
                   '<namespace>/xdrcdepth/..., relative inputs resolve there'),
    LaunchArgument('cameras', '', 'YAML list of camera names, e.g. "[CAM_FRONT, CAM_BACK]": one '
                   'node per camera in <namespace>/<camera>; {camera} in params_file, '
                   'image_topic and camera_info_topic becomes each name'),
    LaunchArgument('params_file', '', 'ROS parameter file (empty: the package '
                   'config/xdrcdepth.yaml)'),
    LaunchArgument('model_path', '', 'ONNX model file (empty: keep params_file / the shipped '
                   'model)'),
    LaunchArgument('image_topic', '', 'remap the image input to this topic (empty: keep '
                   'params_file, default <namespace>/image)'),
    LaunchArgument('image_transport', '', 'raw or compressed (empty: keep params_file); bags '
                   'from xdrcdepth nuscenes-to-bag need compressed'),
    LaunchArgument('camera_info_topic', '', 'remap the CameraInfo input to this topic (empty: '
                   'keep params_file, default <namespace>/camera_info)'),
    LaunchArgument('radar_topics', '', "radar PointCloud2 topics as a YAML list, e.g. "
                   "\"['/RADAR_FRONT']\"; \"[]\" = camera only (empty: keep params_file)"),
    LaunchArgument('use_sim_time', '', 'true when playing a bag with --clock (empty: keep '
                   'params_file)'),
    LaunchArgument('rviz', 'false', 'also start RViz with rviz/xdrcdepth.rviz, its topics '
                   'filled in for the (first) node'),
    LaunchArgument('fastdds_profile', 'false', 'true: the started processes use '
                   'config/fastdds_shm.xml (shared memory with room for raw camera images; '
                   'give it to the camera driver too, docs/reliability.md)'),
)
ARGUMENT_NAMES: tuple[str, ...] = tuple(argument.name for argument in LAUNCH_ARGUMENTS)
_BOOLEANS = {'true': True, 'false': False}


FASTDDS_PROFILE_VARIABLE = 'FASTRTPS_DEFAULT_PROFILES_FILE'
"""The environment variable Fast DDS reads its XML profile from."""


def fastdds_environment(value: str, share: str) -> dict[str, str]:
    """Extra environment of the started processes for the ``fastdds_profile`` argument.

    Raises:
        ValueError: the value is neither true nor false.
    """
    choice = _BOOLEANS.get(value.strip().lower())
    if choice is None:
        raise ValueError(f'fastdds_profile must be true or false, got {value!r}')
    return {FASTDDS_PROFILE_VARIABLE: f'{share}/config/fastdds_shm.xml'} if choice else {}


@dataclass(frozen=True)
class NodeSetup:
    """One xdrcdepth node as the launch file starts it."""

    namespace: str
    """Absolute namespace (``/`` for the root)."""
    params_file: str
    parameters: dict[str, Any] = field(default_factory=dict)
    """Overrides applied after ``params_file``."""
    remappings: tuple[tuple[str, str], ...] = ()
    config: NodeConfig | None = None
    """The node's configuration as it will start (params file + overrides), input names
    resolved in ``namespace`` with the remappings applied."""


def parse_topic_list(text: str, name: str) -> list[str]:
    """A YAML list of topic names (one bare name is a list of one).

    Raises:
        ValueError: not a list of non-empty strings; the message quotes the value.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f'{name} must be a YAML list, got {text!r}: {err}') from err
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'{name} must be a YAML list of names, e.g. "[\'/RADAR_FRONT\']", '
                         f'got {text!r}')
    return value


def _parameters(values: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name in ('model_path', 'image_transport'):
        if values.get(name):
            reason = check_value(name, values[name])
            if reason:
                raise ValueError(f'launch argument {reason}')
            overrides[name] = values[name]
    if values.get('radar_topics'):
        topics = parse_topic_list(values['radar_topics'], 'radar_topics')
        # rcl drops an empty list from the parameters launch_ros hands over: say it explicitly.
        overrides.update({'camera_only': True} if not topics
                         else {'camera_only': False, 'radar_topics': topics})
    sim_time = values.get('use_sim_time', '').strip().lower()
    if sim_time:
        if sim_time not in _BOOLEANS:
            raise ValueError(f"use_sim_time must be true or false, got {values['use_sim_time']!r}")
        overrides['use_sim_time'] = _BOOLEANS[sim_time]
    return overrides


def _resolved_config(params_file: str, parameters: Mapping[str, Any], namespace: str,
                     remappings: Mapping[str, str]) -> NodeConfig:
    values = {**load_params_file(params_file, NODE_NAME, namespace=namespace), **parameters}
    values.pop('use_sim_time', None)  # rclpy's, not in the node's table
    values.update({f'{name}_topic': target for name, target in remappings.items()})
    return NodeConfig.from_values(values).with_absolute_topics(namespace)


def node_setups(values: Mapping[str, str], default_params_file: str) -> list[NodeSetup]:
    """The nodes to start for the launch argument ``values`` (strings, as launch gives them).

    Raises:
        ValueError: a malformed argument or an invalid resulting configuration (the node would
            refuse it; the message names every problem).
        FileNotFoundError: the params file does not exist.
    """
    unknown = sorted(set(values) - set(ARGUMENT_NAMES))
    if unknown:
        raise ValueError(f'unknown launch arguments {unknown}; known: {list(ARGUMENT_NAMES)}')
    parameters = _parameters(values)
    cameras = parse_topic_list(values['cameras'], 'cameras') if values.get('cameras') else ['']
    base = '/' + values.get('namespace', '').strip('/')
    setups = []
    for camera in cameras:
        def fill(text: str, camera: str = camera) -> str:
            return text.replace(CAMERA_PLACEHOLDER, camera)

        namespace = absolute_topic(camera, base) if camera else base
        params_file = fill(values.get('params_file') or default_params_file)
        remap = {name: fill(values[f'{name}_topic']) for name in ('image', 'camera_info')
                 if values.get(f'{name}_topic')}
        # A remap acts on the relative name only: pin it, whatever the params file says.
        node_parameters = {**parameters, **{f'{name}_topic': name for name in remap}}
        config = _resolved_config(params_file, node_parameters, namespace, remap)
        setups.append(NodeSetup(namespace, params_file, node_parameters,
                                tuple(remap.items()), config))
    return setups


def rviz_config(template: str, setup: NodeSetup) -> str:
    """``rviz/xdrcdepth.rviz`` with its topics set for the node of ``setup``: the camera image it
    subscribes (the transport's topic, which RViz's image display understands), its first radar
    and its outputs under its namespace."""
    layout = yaml.safe_load(template)
    config = setup.config
    topics = {'Camera image': transport_topic(config.image_topic, config.image_transport),
              'Depth colour': output_topic('depth_color', NODE_NAME, setup.namespace),
              'Saliency overlay': output_topic('saliency_overlay', NODE_NAME, setup.namespace),
              'Depth points': output_topic('points', NODE_NAME, setup.namespace)}
    if config.radar_topics:
        topics['Radar points'] = config.radar_topics[0]
    for display in layout['Visualization Manager']['Displays']:
        if display.get('Name') in topics:
            display['Topic']['Value'] = topics[display['Name']]
        elif display.get('Name') == 'Radar points':
            display['Enabled'] = False  # camera only
    return yaml.safe_dump(layout, sort_keys=False)
