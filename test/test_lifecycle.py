"""The lifecycle variant driven through its real lifecycle services over DDS: a test node calls
``/xdrcdepth/change_state`` and ``/xdrcdepth/get_state`` as ``ros2 lifecycle set`` does."""
from __future__ import annotations

import pytest

pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS 2 install)')

from ros_helpers import (extrinsics, frames, Harness, node_model, node_params,  # noqa: E402
                         Rig, TIMEOUT)

pytestmark = pytest.mark.ros
__all__ = ['node_model', 'frames', 'extrinsics']  # fixtures, used by name


class LifecycleClient:
    """``ros2 lifecycle`` in a test: the node's change_state and get_state services."""

    def __init__(self, harness: Harness, node_name: str = '/xdrcdepth') -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.harness = harness
        self._change = harness.node.create_client(ChangeState, f'{node_name}/change_state')
        self._get = harness.node.create_client(GetState, f'{node_name}/get_state')
        for client in (self._change, self._get):
            assert client.wait_for_service(timeout_sec=TIMEOUT), client.srv_name

    def _call(self, client, request):
        future = client.call_async(request)
        self.harness.wait_until(future.done, TIMEOUT, f'a reply from {client.srv_name}')
        return future.result()

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(self._get, GetState.Request()).current_state.label

    def change(self, transition: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition = Transition(id=getattr(Transition, f'TRANSITION_{transition.upper()}'))
        return self._call(self._change, request).success


def subscribed(harness, topic):
    return harness.node.count_subscribers(topic) > 0


def test_configure_activate_deactivate_cleanup_over_the_lifecycle_services(
        node_model, frames, extrinsics):
    """configure loads the model without subscribing; activate brings depth (and diagnostics
    naming the camera); deactivate stops subscribing and publishing; cleanup frees the engine;
    configure + activate work again."""
    from diagnostic_msgs.msg import DiagnosticArray

    from xdrcdepth_ros.ros.lifecycle_node import XdrcDepthLifecycleNode

    image, K, cloud, stamp, radar_stamp, _ = frames[0]
    with Harness() as harness:
        node = harness.add(XdrcDepthLifecycleNode(
            context=harness.context, parameter_overrides=node_params(node_model, extrinsics)))
        client = LifecycleClient(harness)
        assert client.state() == 'unconfigured'
        assert not node.configured and not subscribed(harness, '/image')

        assert client.change('configure') and client.state() == 'inactive'
        assert node.configured and node.pipeline.engine.metadata.input_height == 96
        assert not subscribed(harness, '/image')  # inactive: no inputs taken yet

        assert client.change('activate') and client.state() == 'active'
        diagnostics = harness.subscribe(DiagnosticArray, '/diagnostics')
        rig = Rig(harness, node)
        depth = rig.deliver(image, K, cloud, stamp, radar_stamp)
        assert depth.encoding == '32FC1' and depth.header.frame_id == 'CAM_FRONT'
        # /diagnostics names the camera (its frame id) as the hardware; the provider is a value.
        status = None
        while status is None or status.hardware_id != 'CAM_FRONT':
            [status] = harness.get(diagnostics, TIMEOUT, 'a diagnostics report naming the '
                                   'camera').status
        assert {v.key: v.value for v in status.values}['provider'] == 'CPUExecutionProvider'

        assert client.change('deactivate') and client.state() == 'inactive'
        harness.wait_until(lambda: not subscribed(harness, '/image'), TIMEOUT,
                           'the inputs to be dropped')
        assert harness.node.count_publishers('/xdrcdepth/depth') == 0

        assert client.change('cleanup') and client.state() == 'unconfigured'
        assert not node.configured
        assert client.change('configure') and client.change('activate')
        harness.wait_until(lambda: subscribed(harness, '/image'), TIMEOUT, 'inputs again')


def test_a_configure_that_fails_leaves_the_node_unconfigured(tmp_path, extrinsics):
    """A missing model fails configure (logged), and the node can be configured later."""
    from xdrcdepth_ros.ros.lifecycle_node import XdrcDepthLifecycleNode

    with Harness() as harness:
        node = harness.add(XdrcDepthLifecycleNode(
            context=harness.context,
            parameter_overrides=node_params(tmp_path / 'absent.onnx', extrinsics)))
        client = LifecycleClient(harness)
        assert not client.change('configure')
        assert client.state() == 'unconfigured' and not node.configured
