"""Launch the xdrcdepth node, one per camera with ``cameras:=[...]``, and optionally RViz.

Examples:
    ros2 launch xdrcdepth_ros xdrcdepth.launch.py image_topic:=/CAM_FRONT/image_raw \
        image_transport:=compressed camera_info_topic:=/CAM_FRONT/camera_info \
        radar_topics:="['/RADAR_FRONT']" use_sim_time:=true rviz:=true
    ros2 launch xdrcdepth_ros xdrcdepth.launch.py cameras:="[CAM_FRONT, CAM_BACK]" \
        params_file:=nusc_bag/params/scene-0916.{camera}.yaml use_sim_time:=true

Arguments left empty keep the params file's values (see xdrcdepth_ros/ros/launch_setup.py,
which works out the nodes; this file only turns them into launch actions).
"""
from pathlib import Path
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from xdrcdepth_ros.ros.launch_setup import (fastdds_environment, LAUNCH_ARGUMENTS, node_setups,
                                             rviz_config)

PACKAGE = 'xdrcdepth_ros'


def _actions(context, *args, **kwargs):
    share = Path(FindPackageShare(PACKAGE).perform(context))
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    setups = node_setups(values, str(share / 'config' / 'xdrcdepth.yaml'))
    environment = fastdds_environment(values['fastdds_profile'], str(share))
    actions = [Node(package=PACKAGE, executable='xdrcdepth_node', name='xdrcdepth',
                    namespace=setup.namespace, remappings=list(setup.remappings),
                    parameters=[setup.params_file, setup.parameters],
                    additional_env=environment, output='screen', emulate_tty=True)
               for setup in setups]
    if values['rviz'].strip().lower() == 'true':
        layout = rviz_config((share / 'rviz' / 'xdrcdepth.rviz').read_text(), setups[0])
        with tempfile.NamedTemporaryFile('w', suffix='.rviz', delete=False) as rviz_file:
            rviz_file.write(layout)
        sim_time = setups[0].parameters.get('use_sim_time')
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                            arguments=['-d', rviz_file.name], additional_env=environment,
                            parameters=[] if sim_time is None else [{'use_sim_time': sim_time}]))
    return actions


def generate_launch_description() -> LaunchDescription:
    """The declared arguments, then the nodes they describe."""
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in LAUNCH_ARGUMENTS] + [OpaqueFunction(function=_actions)])
