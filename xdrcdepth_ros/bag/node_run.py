"""Run the real node in-process on a bag: player → DDS → node → DDS → recorder → bag.

What the demo does where rclpy is installed. Each scene of a ``nuscenes-to-bag`` bag gets a fresh
node with that scene's parameter file (each scene may be another vehicle), as a user would start
``xdrcdepth_node --params-file params/<scene>.CAM_FRONT.yaml`` next to ``ros2 bag play``. Traffic
stays on a private ROS domain restricted to localhost. rclpy is imported inside functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path
import threading
import time
from typing import Any

import yaml

from xdrcdepth_ros.bag.io import BagReader, BagWriter
from xdrcdepth_ros.bag.replay import latency_summary
from xdrcdepth_ros.node_core import output_topic, OUTPUT_TYPES
from xdrcdepth_ros.node_params import load_params_file


@dataclass
class NodeRunSummary:
    """What :func:`run_node_on_bag` did.

    Attributes:
        frames_in: images the player published.
        frames_out: depth images recorded from the node.
        provider: the node's ONNX Runtime provider.
        latency_ms: image published → depth received (includes the sync's radar wait): mean,
            p50, p95, max.
        diagnostics: the node's diagnostic values after each scene (scene name → values).
        wall_s: seconds.
    """

    frames_in: int = 0
    frames_out: int = 0
    provider: str = ''
    latency_ms: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, str]] = field(default_factory=dict)
    wall_s: float = 0.0


def rclpy_available() -> bool:
    """True when rclpy, the ROS message packages and the node module import."""
    try:
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401

        import xdrcdepth_ros.node  # noqa: F401
    except ImportError:
        return False
    return True


def run_node_on_bag(bag: Path, writer: BagWriter, scenes: list[dict[str, Any]],
                    params_dir: Path, overrides: dict[str, Any], *,
                    domain_id: int | None = None, rate: float = 1.0,
                    output_timeout_s: float = 20.0) -> NodeRunSummary:
    """Play ``bag`` scene by scene into a fresh node and record its outputs into ``writer``.

    Args:
        bag: a ``nuscenes-to-bag`` bag (its ``params/<scene>.CAM_FRONT.yaml`` files are used).
        writer: open output bag; the node's output topics are written with their header stamps.
        scenes: ``[{'name', 'start_ns', 'end_ns'}]`` windows to play.
        params_dir: where the merged per-scene parameter files are written (kept for the user).
        overrides: parameter values added to each scene's file (model_path, ...).
        domain_id: ROS domain; default derived from the process id (100..199).
        rate: playback speed (1.0 = recorded timing; the node's sync waits in real time).
        output_timeout_s: how long to wait for the last outputs of a scene.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from xdrcdepth_ros.bag.recorder import TopicRecorder
    from xdrcdepth_ros.node import XdrcDepthNode

    started = time.perf_counter()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    domain = 100 + os.getpid() % 100 if domain_id is None else int(domain_id)
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    driver = rclpy.create_node('xdrcdepth_demo_player', context=context)
    executor.add_node(driver)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    summary = NodeRunSummary()
    outputs = {output_topic(suffix): msgtype for suffix, msgtype in OUTPUT_TYPES.items()
               if suffix != 'points'}
    recorder = TopicRecorder(driver, writer, outputs)
    published_at: dict[int, int] = {}
    try:
        with BagReader(bag) as reader:
            topics = reader.topics
        params_dir.mkdir(parents=True, exist_ok=True)
        for scene in scenes:
            values = {**load_params_file(bag / 'params' / f'{scene["name"]}.CAM_FRONT.yaml'),
                      **overrides}
            params = params_dir / f'{scene["name"]}.yaml'
            params.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}},
                                             sort_keys=False))
            node = XdrcDepthNode(context=context,
                                 cli_args=['--ros-args', '--params-file', str(params)])
            executor.add_node(node)
            try:
                summary.provider = node.stats.provider
                images, sent = _play_scene(node, driver, recorder, bag, topics, scene, rate,
                                           output_timeout_s)
                summary.frames_in += images
                published_at.update(sent)
                summary.diagnostics[scene['name']] = node.diagnostics()[2]
            finally:
                executor.remove_node(node)
                node.destroy_node()
        depth = output_topic('depth')
        summary.frames_out = recorder.count(depth)
        summary.latency_ms = latency_summary([
            (arrival - published_at[stamp]) / 1e6
            for stamp, arrival in zip(recorder.stamps[depth], recorder.arrivals_ns[depth])
            if stamp in published_at])
    finally:
        recorder.destroy()
        executor.shutdown(timeout_sec=5.0)
        driver.destroy_node()
        context.try_shutdown()
        thread.join(timeout=5.0)
    summary.wall_s = time.perf_counter() - started
    return summary


def _play_scene(node: Any, driver: Any, recorder: Any, bag: Path, topics: dict[str, str],
                scene: dict[str, Any], rate: float,
                output_timeout_s: float) -> tuple[int, dict[int, int]]:
    """Play one scene into ``node``; returns (images published, stamp → publish time ns)."""
    from xdrcdepth_ros.bag.player import BagPlayer, pause_before_first

    config = node.config
    image_topic = config.subscribed_image_topic
    inputs = [config.camera_info_topic, image_topic,
              *(t for t in config.radar_topics if t in topics)]
    player = BagPlayer(driver, bag, topics=inputs, rate=rate, start_ns=int(scene['start_ns']),
                       stop_ns=int(scene['end_ns']) + 1)
    try:
        player.wait_for_subscribers(inputs)
        depth = output_topic('depth')
        _wait(lambda: node.count_subscribers(depth) > 0, 10.0)
        before = recorder.count(depth)
        sent: dict[int, int] = {}
        pause = pause_before_first(image_topic, 0.3)

        def before_publish(message: Any) -> None:
            recorder.flush()  # write from this thread: SQLite objects are per thread
            pause(message)
            if message.topic == image_topic:
                sent[message.stamp_ns] = time.monotonic_ns()

        images = player.play(before_publish=before_publish).published.get(image_topic, 0)
        # Frames still in the node's sync or worker arrive shortly after playback.
        _wait(lambda: recorder.count(depth) >= before + images or _all_accounted(node, images),
              output_timeout_s)
        time.sleep(0.2)  # the optional outputs of the last frame follow its depth
        recorder.flush()
        return images, sent
    finally:
        player.destroy()


def _all_accounted(node: Any, images: int) -> bool:
    """True when the node has received ``images`` images and finished with each of them."""
    values = node.diagnostics()[2]
    done = int(values.get('published', 0)) + sum(
        int(v) for k, v in values.items() if k.startswith(('skipped_', 'dropped_')))
    return (int(values.get('image_received', 0)) >= images
            and values.get('pending_images') == '0' and done >= images)


def _wait(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
