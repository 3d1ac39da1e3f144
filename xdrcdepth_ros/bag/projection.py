"""Radar and LiDAR projected into the camera: the geometry check of ``xdrcdepth project``.

Each keyframe becomes one tile: the camera image with every LiDAR return (small dots) and every
radar point of the five radars (large dots, white rim), coloured by camera depth on the same
fixed 0-80 m scale as the depth output. Projection uses the package's own geometry
(``lidar_depth_map`` / ``radar_map`` with the ego-motion-compensated nuScenes chain), so a
misplaced dot here would be misplaced in training data and in the node as well.
numpy + OpenCV only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import cv2
import numpy as np

from xdrcdepth_ros.bag.convert import RADAR_CHANNELS
from xdrcdepth_ros.core import visualize
from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import InputTransform, lidar_depth_map, radar_map
from xdrcdepth_ros.core.nuscenes_io import Keyframe, NuScenesTables

TILE_WIDTH, TILE_HEIGHT = 800, 448  # model-size rules (multiples of 32) keep K exact
MAX_DEPTH_M = 80.0


class ProjectionPanel(NamedTuple):
    """What :func:`write_projection_panel` wrote."""

    path: Path
    width: int
    """Panel width, px."""
    height: int
    """Panel height, px."""
    tiles: int
    """Keyframes drawn."""


def projection_tile(keyframe: Keyframe,
                    radars: Sequence[str] = RADAR_CHANNELS) -> tuple[np.ndarray, str]:
    """One keyframe's tile, (448, 800, 3) uint8 RGB, and its title."""
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


def write_projection_panel(dataroot: str | Path, out: str | Path, *, version: str = 'v1.0-mini',
                           scenes: Sequence[str] | None = None, max_frames: int = 8,
                           progress: Callable[[Iterable[Keyframe]], Iterable[Keyframe]]
                           = lambda keyframes: keyframes) -> ProjectionPanel:
    """Draw the first ``max_frames`` CAM_FRONT keyframes into one PNG at ``out``.

    Args:
        dataroot: nuScenes folder (samples/ and the ``version`` table folder).
        out: PNG to write (folders are created).
        version: table folder.
        scenes: scene names (None: all).
        max_frames: keyframes to draw, at least 1.
        progress: wraps the keyframe iteration (e.g. ``tqdm``).

    Raises:
        ValueError: ``max_frames`` < 1.
        DatasetError: unreadable tables, or no keyframe in the chosen scenes.
    """
    if max_frames < 1:
        raise ValueError(f'max_frames must be at least 1, got {max_frames}')
    keyframes = list(NuScenesTables(dataroot, version).keyframes(scenes=scenes))[:max_frames]
    if not keyframes:
        raise DatasetError(f'no CAM_FRONT keyframes in {dataroot} for scenes {scenes}')
    tiles = [projection_tile(keyframe) for keyframe in progress(keyframes)]
    panel = visualize.make_panel([(title, tile) for tile, title in tiles],
                                 columns=2 if len(tiles) > 1 else 1)
    path = visualize.save_png(out, panel)
    return ProjectionPanel(Path(path), panel.shape[1], panel.shape[0], len(tiles))
