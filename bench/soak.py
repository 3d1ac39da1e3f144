"""Soak: the node process under N minutes of lockstep and overload traffic over real DDS.

The node runs as ``python -m xdrcdepth_ros node`` (its own process, so its memory is measured
alone); this script publishes the bundled nuScenes frames, resized to ``--width`` x
``--height`` (K scaled alike), with their RADAR_FRONT sweeps, in alternating phases:

* lockstep: one frame, wait for its depth (latency = depth received - image sent), at most
  ``--lockstep-hz``;
* overload: bursts of ``--burst`` frames back to back, ``--overload-hz`` bursts a second,
  regardless of the node (latest frame wins: the rest must show up as drops, not as growing
  latency or memory).

Both processes use ``config/fastdds_shm.xml``. Printed at the end (and as JSON with
``--json``): node RSS at start and end and its least-squares slope (MB/min, after the first
minute), latency p50/p95/max per phase, frames sent/received, and the node's drop counters
from ``/diagnostics``. Not part of CI: it takes minutes and a CPU core; the figures of record
are in docs/reliability.md.

    nice -n 10 python bench/soak.py --minutes 10 --model /tmp/tiny.onnx
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import queue
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))

from timing import write_report  # noqa: E402 - bench/ is on sys.path when a script runs

DROP_KEYS = ('dropped_superseded', 'dropped_stale', 'dropped_overflow', 'duplicates',
             'dropped_reset', 'frames_incomplete', 'input_gaps', 'frames_without_radar',
             'skipped_late_stamp', 'skipped_processing_error', 'image_received', 'published')


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB (from /proc)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no VmRSS for pid {pid}')


def slope_mb_per_min(samples: list[tuple[float, float]], skip_s: float = 60.0) -> float:
    """Least-squares slope of (seconds, MB) samples after ``skip_s`` (start-up), MB/min."""
    points = np.array([s for s in samples if s[0] >= skip_s] or samples)
    if len(points) < 2:
        return float('nan')
    return float(np.polyfit(points[:, 0] / 60.0, points[:, 1], 1)[0])


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {'p50': round(float(np.percentile(array, 50)), 1),
            'p95': round(float(np.percentile(array, 95)), 1), 'max': round(float(array.max()), 1),
            'n': int(array.size)}


def load_frames(width: int, height: int) -> list[tuple]:
    """(rgb, K, radar cloud, image stamp, radar stamp) of the bundled keyframes, resized."""
    import cv2

    from xdrcdepth_ros.core.nuscenes_io import NuScenesTables

    tables = NuScenesTables(ROOT / 'test' / 'data' / 'nuscenes')
    frames = []
    for keyframe in tables.keyframes():
        image = keyframe.read_image()
        scale = np.diag([width / image.shape[1], height / image.shape[0], 1.0])
        frames.append((cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                       scale @ np.asarray(keyframe.K), keyframe.read_radar('RADAR_FRONT')))
    return frames, tables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--model', type=Path, required=True, help='ONNX model for the node')
    parser.add_argument('--width', type=int, default=800)
    parser.add_argument('--height', type=int, default=450)
    parser.add_argument('--phase-s', type=float, default=30.0, help='length of each phase')
    parser.add_argument('--lockstep-hz', type=float, default=10.0)
    parser.add_argument('--overload-hz', type=float, default=8.0, help='bursts per second')
    parser.add_argument('--burst', type=int, default=4, help='frames per overload burst')
    parser.add_argument('--domain', type=int, default=36)
    parser.add_argument('--json', type=Path, default=None, help='also write the result here')
    args = parser.parse_args()

    profile = ROOT / 'config' / 'fastdds_shm.xml'
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               FASTRTPS_DEFAULT_PROFILES_FILE=str(profile), PYTHONUNBUFFERED='1',
               PYTHONPATH=f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE',
                                           'FASTRTPS_DEFAULT_PROFILES_FILE')})
    frames, tables = load_frames(args.width, args.height)

    from xdrcdepth_ros.core.geometry import extrinsics_from_transform

    first = next(iter(tables.keyframes()))
    extrinsics = extrinsics_from_transform(first.T_cam_from('RADAR_FRONT'))
    log = Path(f'/tmp/soak_node_{os.getpid()}.log')
    node = subprocess.Popen(
        [sys.executable, '-m', 'xdrcdepth_ros', 'node', '--ros-args',
         '-p', f'model_path:={args.model}', '-p', 'providers:=[cpu]', '-p', 'intra_op_threads:=1',
         '-p', 'extrinsics_source:=parameters',
         '-p', f'radar_extrinsics:=[{", ".join(map(str, extrinsics))}]',
         '-p', 'sync_slop:=0.08', '-p', 'publish_color:=false', '-p', 'radar_timeout_s:=5.0',
         '-p', 'image_topic:=/CAM_FRONT/image_raw',
         '-p', 'camera_info_topic:=/CAM_FRONT/camera_info',
         '-p', 'radar_topics:=[/RADAR_FRONT]'],
        cwd=ROOT, env=env, stdout=log.open('wb'), stderr=subprocess.STDOUT)
    try:
        result = _drive(args, node, frames)
    finally:
        node.terminate()
        try:
            result_rc = node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
            result_rc = node.wait()
    result['node_exit_code'] = result_rc
    result['node_log_tail'] = log.read_text(errors='replace').splitlines()[-3:]
    print(json.dumps(result, indent=2))
    write_report(args.json, result)  # with the machine, as docs/bench/ reports carry it
    return 0


def _drive(args: argparse.Namespace, node: subprocess.Popen, frames: list[tuple]) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from ros_helpers import camera_info_msg, cloud_msg, image_msg

    rclpy.init()
    driver = rclpy.create_node('xdrcdepth_soak')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_image = driver.create_publisher(Image, '/CAM_FRONT/image_raw', reliable)
    pub_info = driver.create_publisher(CameraInfo, '/CAM_FRONT/camera_info', reliable)
    pub_radar = driver.create_publisher(PointCloud2, '/RADAR_FRONT', reliable)
    depth: queue.Queue = queue.Queue()
    driver.create_subscription(Image, '/xdrcdepth/depth', lambda msg: depth.put(
        (time.monotonic(), msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)),
        QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    diagnostics: dict[str, str] = {}
    driver.create_subscription(DiagnosticArray, '/diagnostics', lambda msg: diagnostics.update(
        {kv.key: kv.value for status in msg.status for kv in status.values}), 10)
    spin = threading.Thread(target=rclpy.spin, args=(driver,), daemon=True)
    spin.start()
    deadline = time.monotonic() + 120
    while (pub_image.get_subscription_count() == 0 or driver.count_publishers('/xdrcdepth/depth')
           == 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)

    start = time.monotonic()
    rss = [(0.0, rss_mb(node.pid))]
    sent_at: dict[int, float] = {}
    latency: dict[str, list[float]] = {'lockstep': [], 'overload': []}
    counts = {'sent': 0, 'received': 0, 'lockstep_timeouts': 0}
    stamp = 1_700_000_000 * 10**9
    next_rss = 5.0
    messages = [(image_msg(rgb, 0), camera_info_msg(K, rgb.shape[1], rgb.shape[0], 0),
                 cloud_msg(cloud, 0)) for rgb, K, cloud in frames]

    def send(index: int) -> int:
        nonlocal stamp
        stamp += 50_000_000
        image, info, radar = messages[index % len(messages)]
        for msg, offset in ((info, 0), (radar, 10_000_000), (image, 0)):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp + offset, 10**9)
        pub_info.publish(info)
        pub_radar.publish(radar)
        sent_at[stamp] = time.monotonic()
        pub_image.publish(image)
        counts['sent'] += 1
        return stamp

    def collect(phase: str, timeout: float) -> int | None:
        try:
            received, out_stamp = depth.get(timeout=timeout)
        except queue.Empty:
            return None
        counts['received'] += 1
        if out_stamp in sent_at:
            latency[phase].append((received - sent_at.pop(out_stamp)) * 1000)
        return out_stamp

    index = 0
    while (elapsed := time.monotonic() - start) < args.minutes * 60:
        phase = 'lockstep' if int(elapsed // args.phase_s) % 2 == 0 else 'overload'
        begin = time.monotonic()
        if phase == 'lockstep':
            wanted = send(index)
            got = None
            until = begin + 5.0
            while got != wanted and time.monotonic() < until:
                got = collect(phase, max(until - time.monotonic(), 0.01))
            counts['lockstep_timeouts'] += int(got != wanted)
            pause_until = begin + 1.0 / args.lockstep_hz
        else:
            for offset in range(args.burst):
                send(index + offset)
            index += args.burst - 1
            pause_until = begin + 1.0 / args.overload_hz
        while (left := pause_until - time.monotonic()) > 0:
            collect(phase, left)
        index += 1
        for old in [s for s, t in sent_at.items() if time.monotonic() - t > 10]:
            del sent_at[old]
        if elapsed >= next_rss:
            rss.append((elapsed, rss_mb(node.pid)))
            next_rss += 5.0
    time.sleep(2.0)
    while collect('overload', 0.1) is not None:
        pass
    rss.append((time.monotonic() - start, rss_mb(node.pid)))
    driver.destroy_node()
    rclpy.try_shutdown()
    return {
        'minutes': round((time.monotonic() - start) / 60, 2),
        'image': f'{args.width}x{args.height} rgb8 + RADAR_FRONT', 'model': str(args.model),
        'rss_mb': {'start': round(rss[0][1], 1), 'after_1_min': round(
            next((m for t, m in rss if t >= 60), rss[-1][1]), 1), 'end': round(rss[-1][1], 1),
            'max': round(max(m for _, m in rss), 1),
            'slope_mb_per_min_after_1_min': round(slope_mb_per_min(rss), 3)},
        'latency_ms': {phase: percentiles(values) for phase, values in latency.items()},
        'frames': counts,
        'node_counters': {key: diagnostics.get(key, '0') for key in DROP_KEYS},
    }


if __name__ == '__main__':
    sys.exit(main())
