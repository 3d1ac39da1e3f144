"""``xdrcdepth project``: draw radar and LiDAR projected into the camera, a geometry check.

The drawing is :func:`xdrcdepth_ros.bag.projection.write_projection_panel`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  xdrcdepth project
  xdrcdepth project --dataroot /data/nuscenes --version v1.0-mini --scene scene-0061 \\
      --out /tmp/projection.png
"""
# Bundled frames in a source checkout (the package is installed in editable mode there).
BUNDLED = Path(__file__).resolve().parents[2] / 'test' / 'data' / 'nuscenes'


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``project`` subcommand."""
    parser = subparsers.add_parser(
        'project', help='draw radar + LiDAR projected into the camera (geometry check)',
        description='Project every LiDAR and radar point of nuScenes keyframes into CAM_FRONT '
                    'and write one PNG with a tile per keyframe.',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataroot', type=Path, default=BUNDLED,
                        help='nuScenes folder (default: the bundled frames, test/data/nuscenes)')
    parser.add_argument('--version', default='v1.0-mini',
                        help='table folder (default %(default)s)')
    parser.add_argument('--scene', nargs='+', default=None, metavar='NAME',
                        help='scene names (default: all)')
    parser.add_argument('--max-frames', type=int, default=8,
                        help='keyframes to draw (default %(default)s)')
    parser.add_argument('--out', type=Path, default=Path('demo_output') / 'projection.png',
                        help='PNG to write (default %(default)s)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the projection panel; returns 0."""
    from tqdm import tqdm

    from xdrcdepth_ros.bag.projection import write_projection_panel

    panel = write_projection_panel(
        args.dataroot, args.out, version=args.version, scenes=args.scene,
        max_frames=args.max_frames,
        progress=lambda keyframes: tqdm(keyframes, desc='project', unit='frame'))
    print(f'wrote {panel.path} ({panel.width}x{panel.height}): {panel.tiles} keyframes, LiDAR '
          'small dots, radar large white-rimmed dots, colour = camera depth 0-80 m (red near)')
    return 0
