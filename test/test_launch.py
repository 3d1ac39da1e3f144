"""launch/xdrcdepth.launch.py, its logic (xdrcdepth_ros.ros.launch_setup) and rviz/xdrcdepth.rviz.

launch_ros has no PyPI wheel: the launch file is parsed here, the nodes it would start are worked
out by launch_setup (plain Python, tested fully), and the description is built for real only
where launch_ros is importable (a full ROS 2 install).
"""
from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
import re
import shlex

import pytest
import yaml

from xdrcdepth_ros.bag.nuscenes_source import camera_info_topic, cloud_topic, image_topic
from xdrcdepth_ros.core.config import defaults, PARAMETER_NAMES
from xdrcdepth_ros.ros.launch_setup import (ARGUMENT_NAMES, fastdds_environment,
                                            LAUNCH_ARGUMENTS, node_setups,
                                            parse_topic_list, rviz_config)

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'xdrcdepth.launch.py'
RVIZ_FILE = ROOT / 'rviz' / 'xdrcdepth.rviz'
PARAMS = str(ROOT / 'config' / 'xdrcdepth.yaml')
README = ROOT / 'README.md'
IDENTITY = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def setups(**values):
    return node_setups({name: '' for name in ARGUMENT_NAMES} | values, PARAMS)


def test_launch_file_parses_and_declares_the_table_of_launch_setup():
    tree = ast.parse(LAUNCH_FILE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == 'xdrcdepth_ros.ros.launch_setup' for alias in node.names}
    assert {'LAUNCH_ARGUMENTS', 'node_setups', 'rviz_config'} <= imported
    assert 'generate_launch_description' in {node.name for node in tree.body
                                            if isinstance(node, ast.FunctionDef)}


def test_launch_arguments_and_defaults_match_the_parameter_table():
    """Arguments that set a parameter carry its name; every one defaults to '' (keep the params
    file); the topic arguments remap the node's relative default input names."""
    assert ARGUMENT_NAMES == ('namespace', 'cameras', 'params_file', 'model_path', 'image_topic',
                              'image_transport', 'camera_info_topic', 'radar_topics',
                              'use_sim_time', 'rviz', 'fastdds_profile')
    for name in ('model_path', 'image_topic', 'image_transport', 'camera_info_topic',
                 'radar_topics'):
        assert name in PARAMETER_NAMES
    assert (defaults()['image_topic'], defaults()['camera_info_topic']) == ('image',
                                                                            'camera_info')
    declared = {argument.name: argument.default for argument in LAUNCH_ARGUMENTS}
    assert declared.pop('rviz') == declared.pop('fastdds_profile') == 'false'
    assert set(declared.values()) == {''}


def test_fastdds_profile_sets_the_profile_variable_for_the_started_processes():
    share = str(ROOT)  # the source tree has the share layout: config/fastdds_shm.xml
    [(name, path)] = fastdds_environment('true', share).items()
    assert name == 'FASTRTPS_DEFAULT_PROFILES_FILE' and Path(path).is_file()
    assert fastdds_environment('false', share) == {}
    with pytest.raises(ValueError, match='fastdds_profile must be true or false'):
        fastdds_environment('shm', share)


def test_defaults_start_one_node_with_its_params_file_untouched():
    [setup] = setups()
    assert (setup.namespace, setup.params_file, setup.parameters, setup.remappings) == (
        '/', PARAMS, {}, ())
    assert setup.config.subscribed_image_topic == '/image'
    assert (setup.config.camera_info_topic, setup.config.radar_topics) == ('/camera_info',
                                                                           ('/radar_0',))


def test_use_sim_time_is_passed_only_when_given(tmp_path):
    """A params file's use_sim_time: true must survive a launch without the argument."""
    assert 'use_sim_time' not in setups()[0].parameters
    assert setups(use_sim_time='true')[0].parameters == {'use_sim_time': True}
    assert setups(use_sim_time='False')[0].parameters == {'use_sim_time': False}
    with pytest.raises(ValueError, match="use_sim_time must be true or false, got 'yes please'"):
        setups(use_sim_time='yes please')


def test_empty_radar_list_means_camera_only():
    [setup] = setups(radar_topics='[]')
    assert setup.parameters == {'camera_only': True}
    assert setup.config.radar_topics == ()
    [setup] = setups(radar_topics="['/RADAR_FRONT', 'radar_1']", namespace='front')
    assert setup.parameters == {'camera_only': False,
                                'radar_topics': ['/RADAR_FRONT', 'radar_1']}
    assert setup.config.radar_topics == ('/RADAR_FRONT', '/front/radar_1')
    assert parse_topic_list('/RADAR_FRONT', 'radar_topics') == ['/RADAR_FRONT']
    with pytest.raises(ValueError, match='radar_topics must be a YAML list'):
        setups(radar_topics='{a: 1}')


def test_topic_arguments_are_remappings_of_the_relative_inputs():
    """Like image_pipeline nodes: image:=..., camera_info:=...; the transport applies to the
    remapped image topic; the namespace moves inputs and outputs alike."""
    [setup] = setups(namespace='front', image_topic='/CAM_FRONT/image_raw',
                     image_transport='compressed', camera_info_topic='/CAM_FRONT/camera_info')
    assert setup.namespace == '/front'
    assert setup.remappings == (('image', '/CAM_FRONT/image_raw'),
                                ('camera_info', '/CAM_FRONT/camera_info'))
    assert setup.parameters == {'image_transport': 'compressed', 'image_topic': 'image',
                                'camera_info_topic': 'camera_info'}
    assert setup.config.subscribed_image_topic == '/CAM_FRONT/image_raw/compressed'
    [moved] = setups(namespace='/rear/')
    assert moved.config.subscribed_image_topic == '/rear/image'
    with pytest.raises(ValueError, match="image_transport must be one of"):
        setups(image_transport='theora')
    with pytest.raises(ValueError, match='unknown launch arguments'):
        node_setups({'image_topics': '/x'}, PARAMS)


def test_cameras_start_one_node_per_camera_in_its_own_namespace(tmp_path):
    """cameras:=[...] with {camera} in the params file: each node gets its camera's file
    (the converter writes one per camera) and its own namespace."""
    for camera in ('CAM_FRONT', 'CAM_BACK'):
        values = {'image_topic': f'/{camera}/image_raw', 'image_transport': 'compressed',
                  'camera_info_topic': f'/{camera}/camera_info', 'radar_topics': ['/RADAR_FRONT'],
                  'extrinsics_source': 'parameters', 'radar_extrinsics': IDENTITY}
        (tmp_path / f'scene.{camera}.yaml').write_text(
            yaml.safe_dump({'/**': {'ros__parameters': values}}))
    front, back = setups(cameras='[CAM_FRONT, CAM_BACK]', namespace='car',
                         params_file=str(tmp_path / 'scene.{camera}.yaml'))
    assert (front.namespace, back.namespace) == ('/car/CAM_FRONT', '/car/CAM_BACK')
    assert back.params_file == str(tmp_path / 'scene.CAM_BACK.yaml')
    assert back.config.subscribed_image_topic == '/CAM_BACK/image_raw/compressed'
    [renamed, _] = setups(cameras='[CAM_FRONT, CAM_BACK]', params_file=back.params_file,
                          image_topic='/{camera}/image_rect')
    assert renamed.remappings == (('image', '/CAM_FRONT/image_rect'),)
    with pytest.raises(FileNotFoundError, match='scene.CAM_LEFT.yaml'):
        setups(cameras='[CAM_LEFT]', params_file=str(tmp_path / 'scene.{camera}.yaml'))


def test_cameras_use_the_params_files_the_converter_writes(nuscenes_root, tmp_path):
    """A real converted bag: params_file:=<bag>/params/<scene>.{camera}.yaml gives each node
    its camera's topics (the JPEG transport) and radar extrinsics."""
    from xdrcdepth_ros.bag.convert import convert_nuscenes

    bag = tmp_path / 'bag'
    convert_nuscenes(nuscenes_root, bag, scenes=['scene-0916'], radars=['RADAR_FRONT'],
                     lidar=False, progress=False)
    [setup] = setups(cameras='[CAM_FRONT]', use_sim_time='true',
                     params_file=str(bag / 'params' / 'scene-0916.{camera}.yaml'))
    assert setup.namespace == '/CAM_FRONT'
    assert setup.config.subscribed_image_topic == image_topic('CAM_FRONT')
    assert setup.config.radar_topics == (cloud_topic('RADAR_FRONT'),)
    assert len(setup.config.radar_extrinsics) == 7


def test_a_params_file_may_name_the_node_by_its_namespaced_name(tmp_path):
    """ROS applies ``/front/xdrcdepth:`` entries to the node in /front; so does the launch's
    view of the configuration (after ``/**``)."""
    params = tmp_path / 'front.yaml'
    params.write_text(yaml.safe_dump({
        '/**': {'ros__parameters': {'image_transport': 'compressed'}},
        '/front/xdrcdepth': {'ros__parameters': {'image_topic': '/cam/image_raw'}}}))
    [setup] = setups(namespace='front', params_file=str(params))
    assert setup.config.subscribed_image_topic == '/cam/image_raw/compressed'
    rear = tmp_path / 'rear.yaml'
    rear.write_text(yaml.safe_dump({'/front/xdrcdepth': {'ros__parameters': {}}}))
    with pytest.raises(ValueError, match='no ros__parameters'):
        setups(namespace='rear', params_file=str(rear))


def readme_launch_arguments() -> dict[str, str]:
    """The arguments of the README's first ``ros2 launch`` command."""
    text = README.read_text()
    command = re.search(r'ros2 launch xdrcdepth_ros xdrcdepth\.launch\.py(.*?)\n(?!\s)',
                        text, re.S)
    assert command, 'no ros2 launch example in the README'
    words = shlex.split(command.group(1).replace('\\\n', ' '))
    return dict(word.split(':=', 1) for word in words)


def test_readme_bag_example_subscribes_to_what_the_converter_writes():
    """The README's launch + ``ros2 bag play`` example must reach the topics a
    ``xdrcdepth nuscenes-to-bag`` bag carries (JPEGs on <camera>/image_raw/compressed)."""
    arguments = readme_launch_arguments()
    [setup] = setups(**arguments)
    assert setup.config.subscribed_image_topic == image_topic('CAM_FRONT')
    assert setup.config.camera_info_topic == camera_info_topic('CAM_FRONT')
    assert set(setup.config.radar_topics) <= {cloud_topic(r) for r in (
        'RADAR_FRONT', 'RADAR_FRONT_LEFT', 'RADAR_FRONT_RIGHT', 'RADAR_BACK_LEFT',
        'RADAR_BACK_RIGHT')}
    assert setup.parameters.get('use_sim_time') is True


def rviz_topics(text):
    displays = yaml.safe_load(text)['Visualization Manager']['Displays']
    return {display['Name']: display for display in displays if 'Topic' in display}


def test_rviz_file_shows_a_root_namespace_node_with_default_names():
    displays = rviz_topics(RVIZ_FILE.read_text())
    topics = {name: display['Topic']['Value'] for name, display in displays.items()}
    assert topics == {'Camera image': '/image', 'Depth colour': '/xdrcdepth/depth_color',
                      'Saliency overlay': '/xdrcdepth/saliency_overlay',
                      'Depth points': '/xdrcdepth/points', 'Radar points': '/radar_0'}
    assert displays['Depth points']['Class'] == 'rviz_default_plugins/PointCloud2'
    # The node publishes reliable; sensors may be best effort: RViz must match both.
    for name in ('Depth colour', 'Saliency overlay', 'Depth points'):
        assert displays[name]['Topic']['Reliability Policy'] == 'Reliable'
    for name in ('Camera image', 'Radar points'):
        assert displays[name]['Topic']['Reliability Policy'] == 'Best Effort'


def test_rviz_layout_is_filled_in_for_a_namespaced_remapped_node():
    [setup] = setups(namespace='front', image_topic='/CAM_FRONT/image_raw',
                     image_transport='compressed', radar_topics="['/RADAR_FRONT']")
    displays = rviz_topics(rviz_config(RVIZ_FILE.read_text(), setup))
    topics = {name: display['Topic']['Value'] for name, display in displays.items()}
    assert topics == {'Camera image': '/CAM_FRONT/image_raw/compressed',
                      'Depth colour': '/front/xdrcdepth/depth_color',
                      'Saliency overlay': '/front/xdrcdepth/saliency_overlay',
                      'Depth points': '/front/xdrcdepth/points', 'Radar points': '/RADAR_FRONT'}
    [camera_only] = setups(radar_topics='[]')
    displays = rviz_topics(rviz_config(RVIZ_FILE.read_text(), camera_only))
    assert displays['Radar points']['Enabled'] is False


def test_launch_description_builds_with_launch_ros():
    pytest.importorskip('launch_ros', reason='launch_ros ships only with a full ROS 2 install '
                        '(no PyPI wheel); the launch file was only parsed')
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location('xdrcdepth_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = [entity.name for entity in description.entities
                if isinstance(entity, DeclareLaunchArgument)]
    assert tuple(declared) == ARGUMENT_NAMES
    assert any(isinstance(entity, OpaqueFunction) for entity in description.entities)


def test_the_demo_option_points_fast_dds_at_the_shipped_profile(monkeypatch):
    """``xdrcdepth demo --fastdds-profile`` sets the variable before any participant exists."""
    from xdrcdepth_ros.bag.node_run import use_fastdds_profile

    # setenv records the original value, so the test leaves the environment as it found it.
    monkeypatch.setenv('FASTRTPS_DEFAULT_PROFILES_FILE', 'before')
    path = use_fastdds_profile()
    # The installed share's copy under colcon, the source tree's otherwise: the same file.
    assert path.name == 'fastdds_shm.xml'
    assert path.read_bytes() == (ROOT / 'config' / 'fastdds_shm.xml').read_bytes()
    assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] == str(path)
