"""Starting the node: ``xdrcdepth node``, ``main()`` exit codes and start-up errors that name
their cause (missing model, bad parameters, tf2 unavailable)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ros_helpers import node_model
from xdrcdepth_ros import cli
from xdrcdepth_ros.commands.node import ros_arguments

__all__ = ['node_model']  # fixture, used by name
ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / 'config' / 'xdrcdepth.yaml'
IDENTITY = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_ros_arguments_put_the_params_file_before_user_ros_args():
    assert ros_arguments(None, []) == ['xdrcdepth_node']
    assert ros_arguments(YAML_PATH, ['--ros-args', '-p', 'publish_points:=true']) == [
        'xdrcdepth_node', '--ros-args', '--params-file', str(YAML_PATH),
        '-p', 'publish_points:=true']


def test_ros_arguments_reject_a_missing_file_and_stray_words(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.yaml'):
        ros_arguments(tmp_path / 'missing.yaml', [])
    with pytest.raises(ValueError, match='after --ros-args'):
        ros_arguments(None, ['-p', 'x:=1'])


def test_cli_node_help_lists_the_params_file_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['node', '--help'])
    assert info.value.code == 0
    assert '--params-file' in capsys.readouterr().out


def test_cli_node_with_a_missing_params_file_exits_1(tmp_path, capsys):
    assert cli.main(['node', '--params-file', str(tmp_path / 'none.yaml')]) == 1
    assert 'ERROR: parameter file' in capsys.readouterr().err


# ----------------------------------------------------------------------------- real rclpy


@pytest.fixture
def harness():
    pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS install)')
    from ros_helpers import Harness

    with Harness() as running:
        yield running


def start(harness, **values):
    from rclpy.parameter import Parameter

    from xdrcdepth_ros.ros.node import XdrcDepthNode

    overrides = [Parameter(name, value=value) for name, value in values.items()]
    return harness.add(XdrcDepthNode(context=harness.context, parameter_overrides=overrides))


@pytest.mark.ros
def test_missing_model_names_the_path_and_how_to_get_one(harness, tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.onnx') as info:
        start(harness, model_path=str(tmp_path / 'absent.onnx'),
              extrinsics_source='parameters', radar_extrinsics=IDENTITY)
    assert 'xdrcdepth export' in str(info.value)
    assert 'xdrcdepth' not in harness.node.get_node_names()  # nothing half-built left behind


@pytest.mark.ros
@pytest.mark.parametrize('values, reason', [
    ({'depth_encoding': 'mono16'}, "depth_encoding must be one of ['32FC1', '16UC1']"),
    ({'sync_slop': 3.0}, 'sync_slop'),
    ({'radar_fields': ['rcs', 'vx_comp']}, 'the model takes 3 radar channels after depth'),
    ({'radar_extrinsics': IDENTITY * 2}, 'needs 7 (x, y, z, qx, qy, qz, qw) per radar topic'),
    ({'image_topic': 'not a topic'}, 'invalid node parameters'),
])
def test_invalid_parameters_stop_start_up_with_the_reason(harness, node_model, values, reason):
    base = {'model_path': str(node_model), 'extrinsics_source': 'parameters',
            'radar_extrinsics': IDENTITY}
    with pytest.raises(ValueError) as info:
        start(harness, **{**base, **values})
    assert reason in str(info.value)


@pytest.mark.ros
def test_tf_extrinsics_without_tf2_ros_explain_the_alternative(harness, node_model):
    import importlib.util

    if importlib.util.find_spec('tf2_ros') is not None:
        pytest.skip('tf2_ros is installed here; the no-tf2 message cannot be shown')
    from xdrcdepth_ros.core.errors import XdrcDepthError

    with pytest.raises(XdrcDepthError, match='extrinsics_source:=parameters'):
        start(harness, model_path=str(node_model))


@pytest.mark.ros
def test_main_returns_1_and_shuts_down_when_start_up_fails(tmp_path):
    """The console script's exit code: 1 with a logged reason, and rclpy is shut down."""
    pytest.importorskip('rclpy', reason='needs rclpy')
    import rclpy

    from ros_helpers import isolate_ros
    from xdrcdepth_ros.ros.node import main

    isolate_ros()
    code = main(['xdrcdepth_node', '--ros-args', '--params-file', str(YAML_PATH),
                 '-p', f'model_path:={tmp_path / "absent.onnx"}'])
    assert code == 1
    assert not rclpy.ok()


@pytest.mark.ros
def test_tf_extrinsics_are_looked_up_at_the_radar_stamp(harness, node_model):
    """With tf2_ros (a full ROS install) the camera <- radar transform comes from /tf_static."""
    tf2_ros = pytest.importorskip('tf2_ros', reason='tf2_ros ships only with a full ROS 2 '
                                  'install (no PyPI wheel); extrinsics from TF untested here')
    import numpy as np
    from geometry_msgs.msg import TransformStamped

    from ros_helpers import header

    node = start(harness, model_path=str(node_model))
    transform = TransformStamped(header=header(0, 'CAM_FRONT'), child_frame_id='RADAR_FRONT')
    transform.transform.translation.x = 1.5
    transform.transform.rotation.w = 1.0
    broadcaster = tf2_ros.StaticTransformBroadcaster(harness.node)
    broadcaster.sendTransform(transform)
    lookup = node._extrinsics
    harness.wait_until(lambda: lookup(0, 'RADAR_FRONT', 'CAM_FRONT', 123) is not None, 10.0,
                       'the static transform')
    expected = np.eye(4)
    expected[0, 3] = 1.5
    np.testing.assert_allclose(lookup(0, 'RADAR_FRONT', 'CAM_FRONT', 123), expected)
    assert lookup(0, 'NO_SUCH_FRAME', 'CAM_FRONT', 123) is None


def installed_node_script() -> Path | None:
    """``xdrcdepth_node`` where ``ros2 run`` finds it (``lib/xdrcdepth_ros/`` of a sourced
    colcon install), else beside the interpreter (a pip install's ``bin/``)."""
    import os
    import sys

    prefixes = [Path(p) / 'lib' / 'xdrcdepth_ros'
                for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    for folder in [*prefixes, Path(sys.executable).parent]:
        if (folder / 'xdrcdepth_node').is_file():
            return folder / 'xdrcdepth_node'
    return None


@pytest.mark.ros
@pytest.mark.parametrize('command', ['xdrcdepth node', 'xdrcdepth_node'])
def test_the_installed_commands_run_the_node_until_ctrl_c(node_model, tmp_path, command):
    """`xdrcdepth node --params-file` and the `xdrcdepth_node` console script start the node
    from config/xdrcdepth.yaml and exit 0 on SIGINT (Ctrl-C), as `ros2 run` would."""
    pytest.importorskip('rclpy', reason='needs rclpy')
    import os
    import signal
    import subprocess
    import sys
    import time

    from ros_helpers import DOMAIN_ID

    ros_args = ['--ros-args', '-p', f'model_path:={node_model}',
                '-p', 'extrinsics_source:=parameters',
                '-p', 'radar_extrinsics:=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]']
    if command == 'xdrcdepth node':
        argv = [sys.executable, '-m', 'xdrcdepth_ros', 'node', '--params-file', str(YAML_PATH)]
    else:
        script = installed_node_script()
        if script is None:
            pytest.skip('the package is not installed with its console scripts here')
        argv = [str(script), '--ros-args', '--params-file', str(YAML_PATH)]
    log = tmp_path / 'node.log'
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    with log.open('wb') as out:
        process = subprocess.Popen(argv + ros_args, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while '/xdrcdepth/depth' not in log.read_text() and process.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            assert process.poll() is None, log.read_text()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.ros
def test_input_qos_is_sensor_data_unless_overridden_with_qos_overrides(harness, node_model):
    """Best-effort inputs by default; the standard ``qos_overrides`` parameters make them
    reliable (what the bag runner uses so that a loaded machine delays instead of dropping)."""
    from rclpy.qos import qos_profile_sensor_data, ReliabilityPolicy

    from xdrcdepth_ros.bag.node_run import reliable_input_overrides

    base = {'model_path': str(node_model), 'extrinsics_source': 'parameters',
            'radar_extrinsics': IDENTITY}

    def reliability(node, topic):
        [subscription] = [s for s in node.subscriptions if s.topic_name == topic]
        return subscription.qos_profile.reliability

    default = start(harness, **base)
    topics = [default.input_topics['image'], default.input_topics['camera_info'],
              *default.input_topics['radars']]
    assert {reliability(default, t) for t in topics} == {ReliabilityPolicy.BEST_EFFORT}
    overrides = reliable_input_overrides(default.config.with_absolute_topics())
    harness.executor.remove_node(default)
    default.destroy_node()
    reliable = start(harness, **base, **overrides)
    assert {reliability(reliable, t) for t in topics} == {ReliabilityPolicy.RELIABLE}
    assert qos_profile_sensor_data.reliability == ReliabilityPolicy.BEST_EFFORT  # not mutated
    assert reliable.get_parameter(f'qos_overrides.{topics[0]}.subscription.depth').value == 50
