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
from xdrcdepth_ros.core.outputs import output_topic, OUTPUT_TYPES
from xdrcdepth_ros.core.config import load_params_file, NodeConfig


FASTDDS_PROFILE = 'fastdds_shm.xml'
"""The Fast DDS profile shipped in ``config/`` (docs/reliability.md)."""


def fastdds_profile_path() -> Path:
    """``config/fastdds_shm.xml``: the installed package share, else the source tree.

    Raises:
        FileNotFoundError: neither has it.
    """
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory('xdrcdepth_ros')) / 'config')
    except (ImportError, LookupError, OSError, ValueError):
        pass  # not installed through colcon/ament
    candidates.append(Path(__file__).resolve().parents[2] / 'config')
    for folder in candidates:
        if (folder / FASTDDS_PROFILE).is_file():
            return folder / FASTDDS_PROFILE
    raise FileNotFoundError(f'{FASTDDS_PROFILE} not found in {[str(c) for c in candidates]}')


def use_fastdds_profile() -> Path:
    """Make DDS participants created from now on in this process use the shipped profile."""
    path = fastdds_profile_path()
    os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(path)
    return path


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

        import xdrcdepth_ros.ros.node  # noqa: F401
    except ImportError:
        return False
    return True


def run_node_on_bag(bag: Path, writer: BagWriter, scenes: list[dict[str, Any]],
                    params_dir: Path, overrides: dict[str, Any], *,
                    domain_id: int | None = None, rate: float = 1.0,
                    output_timeout_s: float = 20.0, reliable_inputs: bool = True,
                    lockstep: bool = True) -> NodeRunSummary:
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
        reliable_inputs: subscribe to the inputs reliably (QoS overrides in the parameter
            file), so that a loaded machine delays messages instead of losing them; False keeps
            the node's sensor-data (best-effort) default.
        lockstep: hold each image back until the node has finished the previous one (the
            playback clock pauses meanwhile), so a slow or loaded machine processes every frame
            instead of dropping superseded ones; False plays on the bag's clock regardless.
    """
    import rclpy
    from rclpy.context import Context

    from xdrcdepth_ros.bag.recorder import TopicRecorder
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    started = time.perf_counter()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    domain = 100 + os.getpid() % 100 if domain_id is None else int(domain_id)
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    driver = rclpy.create_node('xdrcdepth_demo_player', context=context)
    executor, thread = _spin_in_thread(driver, context, threads=3)
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
            if reliable_inputs:
                values.update(reliable_input_overrides(
                    NodeConfig.from_values(values).with_absolute_topics()))
            params = params_dir / f'{scene["name"]}.yaml'
            params.write_text(yaml.safe_dump({'/**': {'ros__parameters': values}},
                                             sort_keys=False))
            node = XdrcDepthNode(context=context,
                                 cli_args=['--ros-args', '--params-file', str(params)])
            # Its own executor: stopping that before destroying the node avoids destroying
            # handles that a spinning executor is still waiting on.
            node_executor, node_thread = _spin_in_thread(node, context, threads=2)
            try:
                summary.provider = node.stats.provider
                images, sent = _play_scene(node, context, recorder, bag, topics, scene, rate,
                                           output_timeout_s, lockstep)
                summary.frames_in += images
                published_at.update(sent)
                summary.diagnostics[scene['name']] = node.diagnostics()[2]
            finally:
                node_executor.shutdown(timeout_sec=5.0)
                node_thread.join(timeout=5.0)
                node.destroy_node()
        depth = output_topic('depth')
        summary.frames_out = recorder.count(depth)
        summary.latency_ms = latency_summary([
            (arrival - published_at[stamp]) / 1e6
            for stamp, arrival in zip(recorder.stamps[depth], recorder.arrivals_ns[depth])
            if stamp in published_at])
    finally:
        executor.shutdown(timeout_sec=5.0)  # stop spinning before destroying what it waits on
        thread.join(timeout=5.0)
        recorder.destroy()
        driver.destroy_node()
        context.try_shutdown()
    summary.wall_s = time.perf_counter() - started
    return summary


def _spin_in_thread(node: Any, context: Any, threads: int) -> tuple[Any, threading.Thread]:
    """A multi-threaded executor spinning ``node`` in a daemon thread until shut down."""
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    executor = MultiThreadedExecutor(num_threads=threads, context=context)
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return executor, thread


def reliable_input_overrides(config: NodeConfig) -> dict[str, Any]:
    """``qos_overrides`` parameters that make the node's input subscriptions reliable (and
    deep enough to hold a few seconds of radar sweeps while the executor is busy)."""
    topics = [config.subscribed_image_topic, config.camera_info_topic, *config.radar_topics]
    values: dict[str, Any] = {}
    for topic in topics:
        values[f'qos_overrides.{topic}.subscription.reliability'] = 'reliable'
        values[f'qos_overrides.{topic}.subscription.depth'] = 50
    return values


def _play_scene(node: Any, context: Any, recorder: Any, bag: Path, topics: dict[str, str],
                scene: dict[str, Any], rate: float, output_timeout_s: float,
                lockstep: bool) -> tuple[int, dict[int, int]]:
    """Play one scene into ``node``; returns (images published, stamp → publish time ns)."""
    import rclpy

    from xdrcdepth_ros.bag.player import BagPlayer, pause_before_first

    config = node.config
    image_topic = config.subscribed_image_topic
    inputs = [config.camera_info_topic, image_topic,
              *(t for t in config.radar_topics if t in topics)]
    # Publishing needs no executor: the player's node is never spun, so destroying its
    # publishers cannot race a wait set.
    player_node = rclpy.create_node('xdrcdepth_bag_player', context=context)
    player = BagPlayer(player_node, bag, topics=inputs, rate=rate,
                       start_ns=int(scene['start_ns']), stop_ns=int(scene['end_ns']) + 1)
    try:
        player.wait_for_subscribers(inputs)
        recorded = [topic for topic in map(output_topic, node.output_suffixes)
                    if topic in recorder.stamps]
        _wait(lambda: all(node.count_subscribers(topic) > 0 for topic in recorded), 10.0)
        before = {topic: recorder.count(topic) for topic in recorded}
        sent: dict[int, int] = {}
        pause = pause_before_first(image_topic, 0.3)

        def before_publish(message: Any) -> None:
            recorder.flush()  # write from this thread: SQLite objects are per thread
            pause(message)
            if message.topic == image_topic:
                if lockstep and sent:
                    _wait(lambda: _all_accounted(node, len(sent)), output_timeout_s)
                sent[message.stamp_ns] = time.monotonic_ns()

        images = player.play(before_publish=before_publish).published.get(image_topic, 0)
        # Frames still in the node's sync or worker are published shortly after playback (the
        # node counts a frame once all its outputs are out); then every output the node
        # published must reach the recorder (reliable QoS) before the node goes away.
        _wait(lambda: _all_accounted(node, images), output_timeout_s)
        published = int(node.diagnostics()[2].get('published', 0))
        _wait(lambda: all(recorder.count(topic) >= before[topic] + published
                          for topic in recorded), output_timeout_s)
        recorder.flush()
        return images, sent
    finally:
        player.destroy()
        player_node.destroy_node()


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
