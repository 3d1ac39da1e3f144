"""``xdrcdepth nuscenes-to-bag``: nuScenes scenes into a rosbag2 that ``ros2 bag play`` reads."""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  xdrcdepth nuscenes-to-bag --dataroot test/data/nuscenes --out /tmp/nusc_bag
  xdrcdepth nuscenes-to-bag --dataroot /data/nuscenes --version v1.0-mini \\
      --scene scene-0061 --storage mcap --radars RADAR_FRONT --out /tmp/scene-0061
  xdrcdepth nuscenes-to-bag --dataroot /data/nuscenes --scene scene-0061 --cameras all \
      --out /tmp/six_cameras
then:
  ros2 bag play /tmp/nusc_bag
  ros2 run xdrcdepth_ros xdrcdepth_node --ros-args \\
      --params-file /tmp/nusc_bag/params/<scene>.CAM_FRONT.yaml
  ros2 launch xdrcdepth_ros xdrcdepth.launch.py cameras:="[CAM_FRONT, CAM_BACK]" \
      params_file:=/tmp/six_cameras/params/scene-0061.{camera}.yaml use_sim_time:=true

Each scene may come from another vehicle, so params/ holds one node parameter file per scene
and camera (radar_extrinsics: camera optical <- radar through base_link, static). Scenes are
recorded weeks apart: `ros2 bag play` waits through such gaps, so convert one scene per bag
when you play with it.
"""


# Kept here (not imported from bag/) so that --help needs neither rosbags nor OpenCV.
STORAGES = ('sqlite3', 'mcap')


CAMERA_CHANNELS = ('CAM_FRONT', 'CAM_FRONT_LEFT', 'CAM_FRONT_RIGHT', 'CAM_BACK', 'CAM_BACK_LEFT',
                   'CAM_BACK_RIGHT')


def _channels(text: str) -> list[str]:
    return [item.strip() for item in text.split(',') if item.strip()]


def _cameras(text: str) -> list[str]:
    """Camera channels of ``--cameras``: a comma-separated list, or ``all`` for the six."""
    return list(CAMERA_CHANNELS) if text.strip() == 'all' else _channels(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``nuscenes-to-bag`` subcommand."""
    parser = subparsers.add_parser(
        'nuscenes-to-bag', help='convert nuScenes scenes into a rosbag2 (sqlite3 or mcap)',
        description='Convert nuScenes scenes into a ROS 2 bag: original JPEGs as '
                    'CompressedImage, CameraInfo, radar and LiDAR PointCloud2, /tf and a '
                    'latched /tf_static. Needs no ROS install (uses rosbags).',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataroot', type=Path, required=True,
                        help='folder with samples/ (sweeps/) and the table folder')
    parser.add_argument('--version', default='v1.0-mini',
                        help='table folder (default %(default)s)')
    parser.add_argument('--scene', nargs='+', default=None, metavar='NAME',
                        help='scene names (default: all scenes in the tables)')
    parser.add_argument('--out', type=Path, required=True, help='bag folder to create')
    parser.add_argument('--storage', choices=STORAGES, default='sqlite3',
                        help='rosbag2 storage plugin (default %(default)s)')
    parser.add_argument('--cameras', type=_cameras, default=['CAM_FRONT'], metavar='LIST',
                        help='comma-separated camera channels, or all (the six; one params '
                             'file each, for a multi-camera launch; default CAM_FRONT)')
    parser.add_argument('--radars', type=_channels, default=None, metavar='LIST',
                        help='comma-separated radar channels (default: all five)')
    parser.add_argument('--lidar', action=argparse.BooleanOptionalAction, default=True,
                        help='include LIDAR_TOP (needed by `xdrcdepth evaluate`; default on)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace --out if it exists (only once the new bag is complete)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print what was written; returns 0."""
    from xdrcdepth_ros.bag.convert import convert_nuscenes, RADAR_CHANNELS

    summary = convert_nuscenes(
        args.dataroot, args.out, version=args.version, scenes=args.scene, cameras=args.cameras,
        radars=RADAR_CHANNELS if args.radars is None else args.radars, lidar=args.lidar,
        storage=args.storage, overwrite=args.overwrite,
        progress=not args.no_progress)
    print(f'wrote {summary.storage.value} bag {summary.path} with scenes '
          f'{", ".join(summary.scenes)}')
    width = max(len(topic) for topic in summary.counts)
    for topic, count in sorted(summary.counts.items()):
        print(f'  {topic:<{width}}  {count:6d} messages')
    print('node parameter files (use one with --params-file):')
    for path in summary.params_files:
        print(f'  {path}')
    return 0
