"""launch/xdrcdepth.launch.py and rviz/xdrcdepth.rviz: checked without ROS where possible, built
for real when launch_ros is importable (a full ROS 2 install)."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from xdrcdepth_ros.core.config import defaults

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'xdrcdepth.launch.py'
RVIZ_FILE = ROOT / 'rviz' / 'xdrcdepth.rviz'
ARGUMENTS = ('namespace', 'params_file', 'model_path', 'image_topic', 'image_transport',
             'camera_info_topic', 'radar_topics', 'use_sim_time', 'rviz')


def launch_arguments_from_source():
    """Names in the launch file's ARGUMENTS table, read with ast (no launch import)."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'ARGUMENTS'
                                                for t in node.targets):
            return tuple(element.elts[0].value for element in node.value.elts)
    raise AssertionError('no ARGUMENTS table in the launch file')


def test_launch_file_declares_the_documented_arguments():
    """namespace, params_file, model_path, topics and use_sim_time, as the README promises."""
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), 'exec')
    assert launch_arguments_from_source() == ARGUMENTS
    overridable = set(ARGUMENTS) - {'namespace', 'params_file', 'use_sim_time', 'rviz'}
    assert overridable <= set(defaults())  # launch overrides real node parameters only


def test_rviz_config_shows_the_node_outputs_and_the_inputs():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    displays = {display['Name']: display for display in
                config['Visualization Manager']['Displays']}
    topics = {name: display['Topic']['Value'] for name, display in displays.items()
              if 'Topic' in display}
    params = defaults()
    assert topics['Camera image'] == params['image_topic']
    assert topics['Depth colour'] == '/xdrcdepth/depth_color'
    assert topics['Saliency overlay'] == '/xdrcdepth/saliency_overlay'
    assert topics['Depth points'] == '/xdrcdepth/points'
    assert topics['Radar points'] == params['radar_topics'][0]
    assert displays['Depth points']['Class'] == 'rviz_default_plugins/PointCloud2'
    # The node publishes reliable; sensors may be best effort: RViz must match both.
    for name in ('Depth colour', 'Saliency overlay', 'Depth points'):
        assert displays[name]['Topic']['Reliability Policy'] == 'Reliable'
    for name in ('Camera image', 'Radar points'):
        assert displays[name]['Topic']['Reliability Policy'] == 'Best Effort'


def test_launch_description_builds_with_launch_ros():
    pytest.importorskip('launch_ros', reason='launch_ros ships only with a full ROS 2 install '
                        '(no PyPI wheel); the launch file was only parsed')
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location('xdrcdepth_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = [entity.name for entity in description.entities
                if isinstance(entity, DeclareLaunchArgument)]
    assert tuple(declared) == ARGUMENTS
    assert any(isinstance(entity, OpaqueFunction) for entity in description.entities)
    context = LaunchContext()
    context.launch_configurations.update({name: '' for name in ARGUMENTS})
    context.launch_configurations.update(
        use_sim_time='true', radar_topics="['/RADAR_FRONT', '/RADAR_FRONT_LEFT']",
        image_topic='/cam/image_raw')
    overrides = module._parameter_overrides(context)
    assert overrides == {'use_sim_time': True, 'image_topic': '/cam/image_raw',
                         'radar_topics': ['/RADAR_FRONT', '/RADAR_FRONT_LEFT']}
