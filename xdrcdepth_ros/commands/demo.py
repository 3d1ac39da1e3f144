"""``xdrcdepth demo`` (``make demo``): the whole chain on the bundled nuScenes frames."""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  make demo                              # venv + installs, then this command
  xdrcdepth demo
  xdrcdepth demo --out /tmp/demo --model models/xdrcdepth_student.onnx --backend replay

Steps: convert the bundled frames into a rosbag2; run the real node in-process fed by the bag
player over DDS (localhost, private ROS domain), recording its outputs into a bag (offline
replay where rclpy is missing); evaluate against LiDAR with panels; write summary.json and
report.txt. Everything lands in --out.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        'demo', help='run the whole chain on the bundled nuScenes frames (make demo)',
        description='Convert the bundled nuScenes frames to a bag, run the depth node on them '
                    '(or offline replay without rclpy), evaluate against LiDAR and write '
                    'panels, summary.json and report.txt.',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('demo_output'),
                        help='output folder (default %(default)s; its demo files are replaced)')
    parser.add_argument('--model', type=Path, default=None,
                        help='ONNX model (default models/xdrcdepth_student.onnx; a random tiny '
                             'model is exported, loudly, when that is missing)')
    parser.add_argument('--backend', choices=('auto', 'node', 'replay'), default='auto',
                        help='node: rclpy over DDS; replay: no ROS; auto: node when rclpy '
                             'imports (default)')
    parser.add_argument('--dataroot', type=Path, default=None,
                        help='nuScenes folder (default: the bundled test/data/nuscenes)')
    parser.add_argument('--fastdds-profile', action='store_true',
                        help='run DDS with config/fastdds_shm.xml (shared memory sized for raw '
                             'camera images; see docs/reliability.md)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where everything is plus the metrics; returns 0."""
    from xdrcdepth_ros.bag.demo import BUNDLED, report_text, run_demo
    from xdrcdepth_ros.bag.node_run import use_fastdds_profile

    if args.fastdds_profile:
        use_fastdds_profile()
    summary = run_demo(args.out, model=args.model, backend=args.backend,
                       dataroot=args.dataroot or BUNDLED, progress=not args.no_progress)
    mean = {float(cap): {k: (float('nan') if v is None else v) for k, v in values.items()}
            for cap, values in summary['metrics']['by_cap'].items()}
    print()
    print(report_text(summary, mean), end='')
    print(f'done in {summary["wall_s"]:.1f} s. Open {summary["paths"]["panels"]} for the '
          f'panels, or `ros2 bag play {summary["paths"]["depth_bag"]}` with RViz '
          '(rviz/xdrcdepth.rviz).')
    return 0
