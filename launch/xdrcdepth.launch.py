"""Launch the xdrcdepth node (and optionally RViz).

Example:
    ros2 launch xdrcdepth_ros xdrcdepth.launch.py image_topic:=/CAM_FRONT/image_raw \
        radar_topics:="['/RADAR_FRONT']" use_sim_time:=true rviz:=true

Topic and model arguments left empty keep the value from ``params_file``; given ones override it.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare
import yaml

PACKAGE = 'xdrcdepth_ros'
# (name, default, description); '' means "keep the params_file value".
ARGUMENTS = (
    ('namespace', '', 'namespace of the node; outputs go to <namespace>/xdrcdepth/...'),
    ('params_file', None, 'ROS parameter file (default: the package config/xdrcdepth.yaml)'),
    ('model_path', '', 'ONNX model file (empty: keep params_file / the shipped model)'),
    ('image_topic', '', 'camera image topic (empty: keep params_file)'),
    ('image_transport', '', 'raw or compressed (empty: keep params_file)'),
    ('camera_info_topic', '', 'CameraInfo topic (empty: keep params_file)'),
    ('radar_topics', '', "radar PointCloud2 topics as a YAML list, e.g. \"['/RADAR_FRONT']\""),
    ('use_sim_time', 'false', 'use /clock (true when playing a bag with --clock)'),
    ('rviz', 'false', 'also start RViz with rviz/xdrcdepth.rviz'),
)
_STRING_OVERRIDES = ('model_path', 'image_topic', 'image_transport', 'camera_info_topic')


def _parameter_overrides(context) -> dict:
    """Parameters given as launch arguments; empty ones are left to the params file."""
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    overrides = {'use_sim_time': value['use_sim_time'].strip().lower() in ('true', '1', 'yes')}
    for name in _STRING_OVERRIDES:
        if value[name]:
            overrides[name] = value[name]
    if value['radar_topics']:
        topics = yaml.safe_load(value['radar_topics'])
        topics = [topics] if isinstance(topics, str) else topics
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise ValueError('radar_topics must be a YAML list of topic names, got '
                             f"{value['radar_topics']!r}")
        overrides['radar_topics'] = topics
    return overrides


def _node(context, *args, **kwargs):
    return [Node(
        package=PACKAGE, executable='xdrcdepth_node', name='xdrcdepth',
        namespace=LaunchConfiguration('namespace').perform(context),
        parameters=[LaunchConfiguration('params_file').perform(context),
                    _parameter_overrides(context)],
        output='screen', emulate_tty=True)]


def generate_launch_description() -> LaunchDescription:
    """The node with its parameter file and overrides; RViz when ``rviz:=true``."""
    share = FindPackageShare(PACKAGE)
    defaults = {'params_file': PathJoinSubstitution([share, 'config', 'xdrcdepth.yaml'])}
    actions = [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                     description=description)
               for name, default, description in ARGUMENTS]
    actions.append(OpaqueFunction(function=_node))
    actions.append(Node(
        package='rviz2', executable='rviz2', name='rviz2', output='screen',
        arguments=['-d', PathJoinSubstitution([share, 'rviz', 'xdrcdepth.rviz'])],
        parameters=[{'use_sim_time': LaunchConfiguration('use_sim_time')}],
        condition=IfCondition(LaunchConfiguration('rviz'))))
    return LaunchDescription(actions)
