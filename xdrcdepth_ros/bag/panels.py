"""Per-frame preview panels for bag evaluation: image | radar | depth | saliency | error.

Every tile is drawn in the depth image's pixel grid (the model crop for ``output_size: model``),
so the tiles line up pixel for pixel. numpy + OpenCV only.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xdrcdepth_ros.core import visualize

MAX_TILE_WIDTH = 640
"""Tiles wider than this are shrunk (a camera-size panel would be 8000 px wide)."""
MIN_TILE_WIDTH = 384
"""Narrower tiles (small models) are enlarged, nearest neighbour, so titles and pixels read."""


def image_in_depth_grid(image_rgb: np.ndarray, K_image: np.ndarray, K_depth: np.ndarray,
                        width: int, height: int) -> np.ndarray:
    """Resample a camera image into the depth image's pixel grid.

    The depth K is ``A @ K_image`` for the pipeline's scale-and-crop affine ``A``; the image is
    shrunk with an area filter first (no aliasing), then shifted by the remaining offset.

    Args:
        image_rgb: (H, W, 3) uint8 camera image.
        K_image: (3, 3) intrinsics of ``image_rgb``.
        K_depth: (3, 3) intrinsics of the depth image.
        width: depth width, pixels.
        height: depth height, pixels.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    affine = np.asarray(K_depth, dtype=np.float64) @ np.linalg.inv(np.asarray(K_image, float))
    scale = float(affine[0, 0])
    source = image_rgb
    offset_x, offset_y = float(affine[0, 2]), float(affine[1, 2])
    if 0 < scale < 1:
        scaled_w = max(1, int(round(image_rgb.shape[1] * scale)))
        scaled_h = max(1, int(round(image_rgb.shape[0] * scale)))
        source = cv2.resize(image_rgb, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
        # cv2.resize maps pixel centres as u' = s (u + 0.5) - 0.5; keep only what remains.
        offset_x -= 0.5 * scale - 0.5
        offset_y -= 0.5 * scale - 0.5
        matrix = np.array([[1.0, 0.0, offset_x], [0.0, 1.0, offset_y]])
    else:
        matrix = affine[:2]
    return cv2.warpAffine(source, matrix, (int(width), int(height)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _fit_width(tile: np.ndarray) -> np.ndarray:
    width = min(max(tile.shape[1], MIN_TILE_WIDTH), MAX_TILE_WIDTH)
    if width == tile.shape[1]:
        return tile
    size = (width, max(1, int(round(tile.shape[0] * width / tile.shape[1]))))
    shrinking = width < tile.shape[1]
    return cv2.resize(tile, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST)


def render_panel(path: str | Path, *, image: np.ndarray | None, radar_depth: np.ndarray | None,
                 depth: np.ndarray, gt: np.ndarray, saliency: np.ndarray | None,
                 max_depth: float, title: str = '') -> Path:
    """Write one frame's panel PNG: image | radar overlay | depth | saliency | |error|.

    Args:
        path: PNG file to write (atomically).
        image: (h, w, 3) uint8 camera image in the depth grid, or None (black tile).
        radar_depth: (h, w) radar depth map in metres (0 = no point), or None.
        depth: (h, w) predicted depth, metres (NaN invalid).
        gt: (h, w) LiDAR depth, metres (0 = none).
        saliency: (h, w, 3) uint8 saliency overlay, or None.
        max_depth: far end of the depth colour scale, metres.
        title: prefix of the first tile's title (e.g. the stamp).
    """
    height, width = depth.shape
    black = np.zeros((height, width, 3), dtype=np.uint8)
    camera = image if image is not None else black
    radar = black if radar_depth is None else visualize.radar_overlay(
        camera, radar_depth, max_depth, radius=max(2, width // 100))
    # Sparse LiDAR errors are single pixels; grow them so they are visible in a preview.
    error = cv2.dilate(visualize.error_map(depth, gt), np.ones((3, 3), np.uint8))
    if saliency is not None and saliency.shape[:2] != (height, width):
        saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    tiles = [(f'{title} image'.strip(), camera), ('radar', radar),
             (f'depth 0-{max_depth:g} m', visualize.colorize_depth(depth, max_depth)),
             ('saliency' if saliency is not None else 'saliency: none',
              saliency if saliency is not None else black),
             ('|depth - lidar| 0-5 m', error)]
    panel = visualize.make_panel([(name, _fit_width(tile)) for name, tile in tiles], columns=5)
    return visualize.save_png(path, panel)
