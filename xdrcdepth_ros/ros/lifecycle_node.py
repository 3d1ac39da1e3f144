"""The managed (lifecycle) variant of the xdrcdepth node: ``xdrcdepth_lifecycle_node``.

Same parameters, topics and processing as :class:`~xdrcdepth_ros.ros.node.XdrcDepthNode`, whose
set-up phases it calls from the lifecycle transitions instead of the constructor:

- ``configure``: read the parameters, load the model and build the engine (with
  ``trt_cache_dir`` TensorRT builds or loads its engine here, before the vehicle drives);
- ``activate``: subscribe, advertise the outputs, start the worker;
- ``deactivate``: stop the worker, drop subscriptions and outputs;
- ``cleanup``: free the engine; ``shutdown`` from any state does what is needed of both.

A failed configure (missing model, bad parameters) is logged with its reason and leaves the node
unconfigured.
"""
from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from xdrcdepth_ros.ros.node import main as node_main, XdrcDepthNode

__all__ = ['main', 'XdrcDepthLifecycleNode']


class XdrcDepthLifecycleNode(XdrcDepthNode, LifecycleNode):
    """The depth node driven by ``/<node>/change_state`` (see the module docstring).

    Args: as :class:`XdrcDepthNode`; an injected ``pipeline`` is used at every configure.
    """

    def _setup(self, pipeline: Any) -> None:
        self._injected_pipeline = pipeline
        self._declare_parameters()
        self.config = self.pipeline = None

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure(self._injected_pipeline)
        except Exception as err:  # noqa: BLE001 - rclpy would swallow it without a word
            self.get_logger().error(f'configure failed: {type(err).__name__}: {err}')
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    @property
    def configured(self) -> bool:
        """True between a successful configure and cleanup/shutdown."""
        return self.pipeline is not None


def main(args: list[str] | None = None) -> int:
    """Entry point of ``xdrcdepth_lifecycle_node``; returns the exit code."""
    return node_main(args, node_class=XdrcDepthLifecycleNode)
