"""``xdrcdepth replay``: run the node's processing over a bag offline and write its outputs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xdrcdepth_ros.bag.replay import ReplaySummary

EXAMPLES = """examples:
  xdrcdepth replay /tmp/nusc_bag --out /tmp/depth_bag
  xdrcdepth replay /tmp/nusc_bag --out /tmp/depth_bag --model models/xdrcdepth_student.onnx \\
      --params-file /tmp/nusc_bag/params/scene-0916.CAM_FRONT.yaml
then:
  xdrcdepth evaluate /tmp/depth_bag
  ros2 bag play /tmp/depth_bag     # and RViz with rviz/xdrcdepth.rviz

No ROS runtime needed: the same conversions, frame sync and pipeline as the node, with bag time
as the clock. Without --params-file a bag from nuscenes-to-bag uses its params/ files per scene;
other bags use the node defaults (config/xdrcdepth.yaml). The input topics are copied into the
output bag too (--no-passthrough to skip), so it is complete for RViz and evaluation.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        'replay', help='run the depth pipeline over a bag offline (no ROS runtime)',
        description='Replay a bag through the node\'s conversions, sync and pipeline and write '
                    'the node\'s output topics (/xdrcdepth/depth, ...) into a new bag.',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', type=Path, help='input rosbag2 folder (or .mcap file)')
    parser.add_argument('--out', type=Path, required=True, help='output bag folder to create')
    parser.add_argument('--model', type=Path, default=None,
                        help='ONNX model (default: the model_path parameter / shipped model)')
    parser.add_argument('--params-file', type=Path, default=None, metavar='YAML',
                        help='node parameter file (the format of config/xdrcdepth.yaml)')
    parser.add_argument('--storage', choices=('sqlite3', 'mcap'), default=None,
                        help='output storage (default: that of the input)')
    parser.add_argument('--no-passthrough', action='store_true',
                        help='write only the node outputs, not the input topics')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace --out if it exists (only once the new bag is complete)')
    parser.add_argument('--skip-corrupt', action='store_true',
                        help='go on past messages a corrupt bag cannot give (counted in the '
                             'summary as corrupt_messages_lost); default: an error')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(func=run)


def format_summary(s: 'ReplaySummary') -> str:
    """Human-readable replay summary (frames, drops, latency, where the bag is)."""
    lines = [f'replayed into {s.path}: {s.frames_out} depth frames from {s.frames_in} images '
             f'on {s.provider} ({s.wall_s:.1f} s)',
             f'  model: {s.model}',
             '  params: ' + ', '.join(s.params)]
    drops = ', '.join(f'{k} {v}' for k, v in s.drops.items()) or 'none'
    lines.append(f'  drops/skips: {drops}')
    if s.latency_ms:
        lat = s.latency_ms
        stages = ', '.join(f'{k[:-5]} {v:.1f}' for k, v in lat.items() if k.endswith('_mean'))
        lines.append(f'  latency per frame [ms]: mean {lat["mean"]:.1f}, p50 {lat["p50"]:.1f}, '
                     f'p95 {lat["p95"]:.1f}, max {lat["max"]:.1f} (stages: {stages})')
    if s.missing_topics:
        lines.append('  WARNING: radar topics not in the bag: ' + ', '.join(s.missing_topics))
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> int:
    """Replay and print the summary; returns 0."""
    from xdrcdepth_ros.bag.replay import replay_bag

    summary = replay_bag(args.bag, args.out, model=args.model, params_file=args.params_file,
                         storage=args.storage, passthrough=not args.no_passthrough,
                         overwrite=args.overwrite, progress=not args.no_progress,
                         skip_corrupt=args.skip_corrupt)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    return 0
