"""How many raw camera images reach a subscriber in another process on this host (issue 16).

Two processes over real rclpy + Fast DDS: a publisher sends ``sensor_msgs/Image`` rgb8 of
``--width`` x ``--height`` at ``--rate`` Hz for ``--seconds``, a subscriber with the node's input
QoS (sensor data: best effort, keep last 5) counts what arrives. Run it once with the default
transports and once with ``--profile config/fastdds_shm.xml``:

    python bench/transport.py --seconds 20
    python bench/transport.py --seconds 20 --profile config/fastdds_shm.xml

Prints one JSON line: sent, received, delivered %, the achieved send rate, and the profile.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
TOPIC = '/bench_transport/image'


def _publish(args: argparse.Namespace) -> dict:
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_transport_pub')
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    publisher = node.create_publisher(Image, TOPIC, qos)
    deadline = time.monotonic() + 30
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let discovery settle on both sides
    msg = Image(height=args.height, width=args.width, encoding='rgb8',
                step=3 * args.width)
    msg.data = np.random.default_rng(0).integers(0, 255, args.height * args.width * 3,
                                                 dtype=np.uint8).tobytes()
    period, sent = 1.0 / args.rate, 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent + 1, 1_000_000_000)
        publisher.publish(msg)
        sent += 1
        pause = start + sent * period - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # let the last messages land
    node.destroy_node()
    rclpy.try_shutdown()
    return {'sent': sent, 'send_rate_hz': round(sent / elapsed, 2)}


def _subscribe(args: argparse.Namespace) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_transport_sub')
    stamps: set[int] = set()
    node.create_subscription(Image, TOPIC, lambda msg: stamps.add(msg.header.stamp.nanosec),
                             qos_profile_sensor_data)
    end = time.monotonic() + args.seconds + 40
    while time.monotonic() < end and not Path(args.done).exists():
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({'received': len(stamps)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=1600)
    parser.add_argument('--height', type=int, default=900)
    parser.add_argument('--profile', type=Path, default=None,
                        help='Fast DDS XML profile for both processes (default: none)')
    parser.add_argument('--domain', type=int, default=36)
    parser.add_argument('--role', choices=('pub', 'sub'), default=None, help=argparse.SUPPRESS)
    parser.add_argument('--done', default='', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == 'sub':
        _subscribe(args)
        return 0
    if args.role == 'pub':
        print(json.dumps(_publish(args)), flush=True)
        return 0
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', RMW_IMPLEMENTATION='rmw_fastrtps_cpp')
    env.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
    if args.profile is not None:
        env['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(args.profile.resolve())
    done = Path(f'/tmp/bench_transport_{os.getpid()}.done')
    done.unlink(missing_ok=True)
    common = [sys.executable, __file__, '--seconds', str(args.seconds), '--rate', str(args.rate),
              '--width', str(args.width), '--height', str(args.height), '--done', str(done)]
    subscriber = subprocess.Popen(common + ['--role', 'sub'], env=env, stdout=subprocess.PIPE,
                                  text=True)
    publisher = subprocess.run(common + ['--role', 'pub'], env=env, stdout=subprocess.PIPE,
                               text=True, check=True)
    done.touch()
    received = json.loads(subscriber.communicate(timeout=60)[0].strip().splitlines()[-1])
    done.unlink(missing_ok=True)
    sent = json.loads(publisher.stdout.strip().splitlines()[-1])
    result = {**sent, **received,
              'delivered_pct': round(100.0 * received['received'] / max(sent['sent'], 1), 1),
              'image': f'{args.width}x{args.height} rgb8', 'rate_hz': args.rate,
              'profile': str(args.profile) if args.profile else 'none (Fast DDS defaults)'}
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
