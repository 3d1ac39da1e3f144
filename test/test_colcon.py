"""The package as colcon installs it: the workspace ``make colcon`` builds under build/colcon_ws.

The installed ``lib/xdrcdepth_ros/xdrcdepth_node`` is started the way ``ros2 run`` does (a shell
that sources the workspace's ``setup.bash``, nothing else of this checkout on the path) and a
test node gets depth from it over DDS. ``make test`` always builds the workspace first, and
``colcon test`` runs this file; without a workspace (a plain ``pytest``) it is skipped.
"""
from __future__ import annotations

import os
from pathlib import Path
import queue
import signal
import subprocess
import time

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = Path(os.environ.get('XDRCDEPTH_COLCON_WS', ROOT / 'build' / 'colcon_ws'))
INSTALL = WORKSPACE / 'install'
PREFIX = INSTALL / 'xdrcdepth_ros'
SHARE = PREFIX / 'share' / 'xdrcdepth_ros'
NODE = PREFIX / 'lib' / 'xdrcdepth_ros' / 'xdrcdepth_node'
NAMESPACE = '/front'
START_TIMEOUT_S = 120.0  # ONNX Runtime loads the 42 MB shipped model; CI machines are busy

pytestmark = pytest.mark.skipif(not (PREFIX / 'share').is_dir(),
                                reason=f'no colcon workspace at {WORKSPACE} (make colcon builds it)')


def workspace_env() -> dict[str, str]:
    """This process's environment without any Python or ament path: the workspace's setup
    script alone decides what the installed node imports."""
    env = dict(os.environ)
    for name in ('PYTHONPATH', 'AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'PYTHONSAFEPATH'):
        env.pop(name, None)
    return env


def in_workspace(command: str, **kwargs) -> subprocess.Popen:
    """Run ``command`` in bash after ``source install/setup.bash``, outside the checkout."""
    return subprocess.Popen(['bash', '-c', f'source {INSTALL}/setup.bash && {command}'],
                            env=workspace_env(), cwd=WORKSPACE, **kwargs)


def test_install_puts_the_node_in_lib_and_the_data_in_share():
    """``ros2 run`` looks for executables in lib/<package>/, launch files and configs in share."""
    for executable in (NODE, NODE.with_name('xdrcdepth_lifecycle_node')):
        assert executable.is_file() and os.access(executable, os.X_OK), executable
    assert not (PREFIX / 'bin' / 'xdrcdepth_node').exists()
    for relative in ('package.xml', 'launch/xdrcdepth.launch.py', 'config/xdrcdepth.yaml',
                     'rviz/xdrcdepth.rviz', 'models/xdrcdepth_student.onnx',
                     'models/xdrcdepth_student.json'):
        assert (SHARE / relative).is_file(), relative
    assert (PREFIX / 'share' / 'ament_index' / 'resource_index' / 'packages'
            / 'xdrcdepth_ros').is_file()


def test_sourced_workspace_imports_the_installed_package():
    """After sourcing, ``import xdrcdepth_ros`` and the default model come from install/."""
    interpreter = NODE.read_text().splitlines()[0][2:].strip()  # the node's shebang
    probe = in_workspace(
        f'{interpreter} -c "import xdrcdepth_ros; from xdrcdepth_ros.core.config import '
        'default_model_path; print(xdrcdepth_ros.__file__); print(default_model_path())"',
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = probe.communicate(timeout=60)
    assert probe.returncode == 0, err
    module, model = out.split()
    assert Path(module).resolve().is_relative_to(PREFIX.resolve())
    assert Path(model) == SHARE / 'models' / 'xdrcdepth_student.onnx'


@pytest.fixture
def installed_node(tmp_path):
    """The installed node in namespace /front, camera only, the shipped model; its log path."""
    log = tmp_path / 'node.log'
    from ros_helpers import isolate_ros

    isolate_ros()  # the node inherits this test's private domain
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    camera_only: true\n'
                      '    providers: [cpu]\n    publish_color: false\n')
    with log.open('w') as sink:
        process = in_workspace(
            f'exec {NODE} --ros-args -r __ns:={NAMESPACE} --params-file {params}',
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.ros
@pytest.mark.slow
def test_installed_node_publishes_depth_over_dds(installed_node):
    """Image + CameraInfo on the namespace's relative input names give one REP 118 depth image
    on /front/xdrcdepth/depth, with the image's stamp and frame."""
    pytest.importorskip('rclpy', reason='needs rclpy')
    from sensor_msgs.msg import CameraInfo, Image

    from ros_helpers import camera_info_msg, Harness, image_msg
    from xdrcdepth_ros.core import conversions

    process, log = installed_node
    height, width = 192, 352
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    K = np.array([[300.0, 0, width / 2], [0, 300.0, height / 2], [0, 0, 1]])
    with Harness() as harness:
        images = harness.publisher(Image, f'{NAMESPACE}/image')
        infos = harness.publisher(CameraInfo, f'{NAMESPACE}/camera_info')
        depth = harness.subscribe(Image, f'{NAMESPACE}/xdrcdepth/depth')
        deadline = time.monotonic() + START_TIMEOUT_S
        received, sent = None, []
        # Inputs are best effort: publish a new frame every half second until depth comes back.
        while received is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f'no depth from the installed node (exit code {process.poll()}); '
                            f'its log:\n{log.read_text()}')
            stamp = time.time_ns()
            sent.append(stamp)
            infos.publish(camera_info_msg(K, width, height, stamp, frame_id='front_optical'))
            images.publish(image_msg(image, stamp, frame_id='front_optical'))
            try:
                received = depth.get(timeout=0.5)
            except queue.Empty:
                pass
    assert received.encoding == '32FC1'
    assert received.header.frame_id == 'front_optical'
    assert conversions.stamp_to_ns(received.header.stamp) in sent
    pixels = np.array(conversions.image_to_array(received))
    assert pixels.shape == (received.height, received.width)
    assert np.isfinite(pixels).any()
