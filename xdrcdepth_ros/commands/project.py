"""``xdrcdepth project``: draw radar and LiDAR projected into the camera, a geometry check.

Each keyframe becomes one tile: the camera image with every LiDAR return (small dots) and every
radar point of the five radars (large dots, white rim), coloured by camera depth on the same
fixed 0-80 m scale as the depth output. Projection uses the package's own geometry
(``lidar_depth_map`` / ``radar_map`` with the ego-motion-compensated nuScenes chain), so a
misplaced dot here would be misplaced in training data and in the node as well.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from xdrcdepth_ros.core.nuscenes_io import Keyframe

EXAMPLES = """examples:
  xdrcdepth project
  xdrcdepth project --dataroot /data/nuscenes --version v1.0-mini --scene scene-0061 \\
      --out /tmp/projection.png
"""
# Bundled frames in a source checkout (the package is installed in editable mode there).
BUNDLED = Path(__file__).resolve().parents[2] / 'test' / 'data' / 'nuscenes'
TILE_WIDTH, TILE_HEIGHT = 800, 448  # model-size rules (multiples of 32) keep K exact
MAX_DEPTH_M = 80.0


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


def projection_tile(keyframe: 'Keyframe', radars: tuple[str, ...]) -> tuple['np.ndarray', str]:
    """One keyframe's tile, (448, 800, 3) uint8 RGB, and its title."""
    import cv2
    import numpy as np

    from xdrcdepth_ros.core import visualize
    from xdrcdepth_ros.core.geometry import InputTransform, lidar_depth_map, radar_map

    image = keyframe.read_image()
    fit = InputTransform.fit(image.shape[1], image.shape[0], TILE_WIDTH, TILE_HEIGHT,
                             vertical='center')
    K = fit.apply_to_K(keyframe.K)
    tile = np.ascontiguousarray(fit.apply_to_image(image))
    lidar = lidar_depth_map(keyframe.read_lidar()[:, :3], keyframe.T_cam_from('LIDAR_TOP'), K,
                            TILE_WIDTH, TILE_HEIGHT)
    tile = visualize.radar_overlay(tile, lidar, MAX_DEPTH_M, radius=1)
    radar_depth = np.zeros((TILE_HEIGHT, TILE_WIDTH), dtype=np.float32)
    for channel in radars:
        if channel not in keyframe.sensors:
            continue
        cloud = keyframe.read_radar(channel)
        points = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=1)
        sweep = radar_map(points, np.zeros((len(points), 0)), keyframe.T_cam_from(channel), K,
                          TILE_WIDTH, TILE_HEIGHT)[0]
        radar_depth = np.where((sweep > 0) & ((radar_depth == 0) | (sweep < radar_depth)),
                               sweep, radar_depth)
    rows, cols = np.nonzero(radar_depth > 0)
    for row, col in zip(rows, cols):
        cv2.circle(tile, (int(col), int(row)), 6, (255, 255, 255), -1, cv2.LINE_AA)
    tile = visualize.radar_overlay(tile, radar_depth, MAX_DEPTH_M, radius=4)
    title = (f'{keyframe.scene_name} {keyframe.camera.timestamp_us} us: '
             f'{int((lidar > 0).sum())} lidar px, {len(rows)} radar pts')
    return tile, title


def run(args: argparse.Namespace) -> int:
    """Write the projection panel; returns 0."""
    from tqdm import tqdm

    from xdrcdepth_ros.core import visualize
    from xdrcdepth_ros.bag.convert import RADAR_CHANNELS
    from xdrcdepth_ros.core.errors import DatasetError
    from xdrcdepth_ros.core.nuscenes_io import NuScenesTables

    if args.max_frames < 1:
        raise ValueError(f'--max-frames must be at least 1, got {args.max_frames}')
    keyframes = list(NuScenesTables(args.dataroot, args.version).keyframes(
        scenes=args.scene))[:args.max_frames]
    if not keyframes:
        raise DatasetError(f'no CAM_FRONT keyframes in {args.dataroot} for scenes {args.scene}')
    tiles = [projection_tile(keyframe, RADAR_CHANNELS)
             for keyframe in tqdm(keyframes, desc='project', unit='frame')]
    panel = visualize.make_panel([(title, tile) for tile, title in tiles],
                                 columns=2 if len(tiles) > 1 else 1)
    path = visualize.save_png(args.out, panel)
    print(f'wrote {path} ({panel.shape[1]}x{panel.shape[0]}): {len(tiles)} keyframes, LiDAR '
          'small dots, radar large white-rimmed dots, colour = camera depth 0-80 m (red near)')
    return 0
