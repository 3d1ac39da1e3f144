"""``xdrcdepth evaluate``: score a depth bag against projected LiDAR, with preview panels."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """examples:
  xdrcdepth evaluate /tmp/depth_bag
  xdrcdepth evaluate /tmp/depth_bag --json --panels /tmp/panels
  xdrcdepth evaluate /tmp/depth_bag --no-panels --max-lidar-offset-ms 30

Metrics as in the papers (per image, then averaged; caps 50/70/80 m): MAE/RMSE in mm, iMAE/iRMSE
in 1/km, AbsRel, SqRel, delta thresholds. Ground truth is the nearest LiDAR sweep projected into
the depth image with the bag's /tf_static and /tf (ego motion compensated).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        'evaluate', help='score a depth bag against LiDAR (paper metrics, panels)',
        description='Evaluate the depth images of a bag (xdrcdepth replay output, or a recording '
                    'of the node with the input topics) against LiDAR projected into the camera.',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', type=Path, help='bag with depth, its camera_info, LiDAR and TF')
    parser.add_argument('--json', action='store_true',
                        help='print per-frame and mean metrics as JSON (nothing else on stdout)')
    parser.add_argument('--panels', type=Path, default=None, metavar='DIR',
                        help='folder for one PNG panel per frame (default: <bag>_panels)')
    parser.add_argument('--no-panels', action='store_true', help='write no panels')
    parser.add_argument('--depth-topic', default='/xdrcdepth/depth',
                        help='depth topic (default %(default)s)')
    parser.add_argument('--lidar-topic', default='/LIDAR_TOP',
                        help='LiDAR PointCloud2 topic (default %(default)s)')
    parser.add_argument('--max-lidar-offset-ms', type=float, default=60.0,
                        help='skip frames without a LiDAR sweep this close (default %(default)s)')
    parser.add_argument('--skip-corrupt', action='store_true',
                        help='go on past messages a corrupt bag cannot give (counted in the '
                             'summary); default: an error')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table (or JSON); returns 0."""
    from xdrcdepth_ros.bag.evaluate import evaluate_bag
    from xdrcdepth_ros.core.evaluate import format_table

    panels = None
    if not args.no_panels:
        bag = args.bag.resolve()
        panels = args.panels or bag.with_name(bag.name + '_panels')
    result = evaluate_bag(args.bag, depth_topic=args.depth_topic, lidar_topic=args.lidar_topic,
                          max_lidar_offset_ms=args.max_lidar_offset_ms, panels_dir=panels,
                          progress=not args.no_progress and not args.json,
                          skip_corrupt=args.skip_corrupt)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f'{len(result.frames)} frames evaluated against {args.lidar_topic}'
          + (f'; skipped: {result.skipped}' if result.skipped else ''))
    print(format_table(result.mean))
    if panels is not None:
        print(f'panels: {panels}')
    return 0
