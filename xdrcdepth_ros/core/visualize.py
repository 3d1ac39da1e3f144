"""Preview images: colour-mapped depth, saliency and radar overlays, error maps, panels.

numpy + OpenCV only. Every function takes and returns RGB uint8 images (H, W, 3). Depth colours
use a FIXED metric range (0..max_depth m), never a per-frame min–max stretch, so a colour means
the same distance in every frame; invalid pixels (NaN, <= 0) are black.
"""
from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


class Colormap(enum.Enum):
    """OpenCV colour maps used for previews."""

    TURBO = cv2.COLORMAP_TURBO
    """Perceptually smooth rainbow; the depth default (near = red, far = blue)."""
    MAGMA = cv2.COLORMAP_MAGMA
    """Dark-to-bright; good for error magnitudes."""
    JET = cv2.COLORMAP_JET
    """Classic Grad-CAM heat map colours."""
    INFERNO = cv2.COLORMAP_INFERNO
    """Dark-to-bright, higher contrast than magma."""


def _check_rgb(image: np.ndarray, name: str = 'image') -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'{name} must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}')
    return image


def _check_2d(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f'{name} must be (H, W), got shape {array.shape}')
    return array


def colorize_values(values: np.ndarray, low: float, high: float,
                    colormap: Colormap = Colormap.TURBO, *, reverse: bool = False) -> np.ndarray:
    """Map (H, W) values linearly from [low, high] onto a colour map; NaN/inf are black.

    Values outside the range are clipped. ``reverse`` flips the map (high values get the first
    colour). Returns (H, W, 3) uint8 RGB.
    """
    values = _check_2d(values, 'values')
    return _colorize(values, np.isfinite(values), low, high, colormap, reverse)


def _colorize(values: np.ndarray, valid: np.ndarray, low: float, high: float,
              colormap: Colormap, reverse: bool) -> np.ndarray:
    if not high > low:
        raise ValueError(f'colour range must have high > low, got [{low}, {high}]')
    if values.size == 0:  # OpenCV's kernels fault (SIGFPE) on empty arrays
        return np.zeros((*values.shape, 3), dtype=np.uint8)
    # OpenCV's scale + saturate, colour map and masked copy run several times faster than numpy
    # fancy indexing, which matters for a 900x1600 preview published every frame. Invalid
    # pixels get an arbitrary index here and are blacked out below.
    gain = 255.0 / (high - low)
    clipped = np.clip(values, low, high)
    if reverse:
        index = cv2.convertScaleAbs(clipped, alpha=-gain, beta=high * gain)
    else:
        index = cv2.convertScaleAbs(clipped, alpha=gain, beta=-low * gain)
    coloured = cv2.applyColorMap(index, colormap.value)
    cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB, dst=coloured)
    return cv2.bitwise_and(coloured, coloured, mask=valid.view(np.uint8))


def colorize_depth(depth: np.ndarray, max_depth: float,
                   colormap: Colormap = Colormap.TURBO) -> np.ndarray:
    """Colour a metric depth image over the fixed range (0, max_depth] metres.

    Near is red, far is blue (TURBO); depth beyond ``max_depth`` saturates. NaN, inf and
    depth <= 0 (REP 118 invalid / no return) are black.

    Args:
        depth: (H, W) float metres.
        max_depth: metres mapped to the far end of the colour map.
        colormap: colour map.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if not max_depth > 0:
        raise ValueError(f'max_depth must be > 0 m, got {max_depth}')
    depth = _check_2d(depth, 'depth')
    valid = np.isfinite(depth) & (depth > 0)
    return _colorize(depth, valid, 0.0, float(max_depth), colormap, reverse=True)


def _resize_to(array: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=interpolation)


def saliency_overlay(image_rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5,
                     colormap: Colormap = Colormap.JET) -> np.ndarray:
    """Blend a [0, 1] saliency map (resized to the image if needed) over an RGB image.

    Args:
        image_rgb: (H, W, 3) uint8.
        saliency: (h, w) float in [0, 1]; NaN counts as 0.
        alpha: weight of the heat map, in [0, 1].
        colormap: heat map colours.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = _check_rgb(image_rgb, 'image_rgb')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    saliency = np.nan_to_num(_check_2d(saliency, 'saliency'), nan=0.0)
    saliency = _resize_to(saliency, image.shape[0], image.shape[1], cv2.INTER_LINEAR)
    heat = colorize_values(saliency, 0.0, 1.0, colormap)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def radar_overlay(image_rgb: np.ndarray, radar_map: np.ndarray, max_depth: float = 80.0, *,
                  radius: int = 3, colormap: Colormap = Colormap.TURBO) -> np.ndarray:
    """Draw each radar pixel of a radar map as a dot coloured by its depth (same scale as depth).

    Args:
        image_rgb: (H, W, 3) uint8, the image the radar map belongs to.
        radar_map: (C, H, W) (channel 0 depth, m, 0 = empty) or (H, W) depth.
        max_depth: far end of the colour scale, metres.
        radius: dot radius in pixels.
        colormap: colour map.

    Returns:
        (H, W, 3) uint8 RGB copy of the image with dots.
    """
    image = _check_rgb(image_rgb, 'image_rgb').copy()
    radar = np.asarray(radar_map, dtype=np.float32)
    depth = radar[0] if radar.ndim == 3 else radar
    if depth.shape != image.shape[:2]:
        raise ValueError(f'radar map is {depth.shape[1]}x{depth.shape[0]}, image is '
                         f'{image.shape[1]}x{image.shape[0]}')
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    colours = colorize_depth(depth[rows, cols][None, :], max_depth, colormap)[0]
    # Far points first, so nearer dots are drawn on top.
    for index in np.argsort(-depth[rows, cols], kind='stable'):
        colour = tuple(int(c) for c in colours[index])
        cv2.circle(image, (int(cols[index]), int(rows[index])), int(radius), colour, -1,
                   cv2.LINE_AA)
    return image


def error_map(pred: np.ndarray, gt: np.ndarray, max_error: float = 5.0,
              colormap: Colormap = Colormap.MAGMA) -> np.ndarray:
    """Colour |pred − gt| in metres over [0, max_error] where gt is valid (> 0, finite).

    Pixels without ground truth or with an invalid prediction are black. Returns (H, W, 3)
    uint8 RGB; ``gt`` is typically sparse LiDAR, so dilate it yourself for a denser look.
    """
    pred = _check_2d(pred, 'pred')
    gt = _check_2d(gt, 'gt')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ in shape')
    if not max_error > 0:
        raise ValueError(f'max_error must be > 0 m, got {max_error}')
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    error = np.where(valid, np.abs(pred - gt), np.nan)
    return colorize_values(error, 0.0, float(max_error), colormap)


def make_panel(tiles: Sequence[tuple[str, np.ndarray]], *, columns: int | None = None,
               title_height: int = 24) -> np.ndarray:
    """Arrange titled RGB tiles in a grid; every tile is resized to the first tile's size.

    Args:
        tiles: (title, (H, W, 3) uint8 RGB) pairs.
        columns: tiles per row (default: all in one row up to 3, then 2 or 3 per row).
        title_height: pixels of the title bar above each tile.

    Returns:
        (rows * (H + title_height), columns * W, 3) uint8 RGB; empty grid cells are black.
    """
    if not tiles:
        raise ValueError('make_panel needs at least one tile')
    images = [_check_rgb(image, f'tile {title!r}') for title, image in tiles]
    height, width = images[0].shape[:2]
    if columns is None:
        columns = len(tiles) if len(tiles) <= 3 else (2 if len(tiles) == 4 else 3)
    if columns <= 0:
        raise ValueError(f'columns must be positive, got {columns}')
    rows = -(-len(tiles) // columns)
    cell_h = height + title_height
    panel = np.zeros((rows * cell_h, columns * width, 3), dtype=np.uint8)
    scale = max(0.35, min(0.8, title_height / 32))
    for index, ((title, _), image) in enumerate(zip(tiles, images)):
        top, left = (index // columns) * cell_h, (index % columns) * width
        panel[top + title_height:top + cell_h, left:left + width] = _resize_to(
            image, height, width, cv2.INTER_AREA)
        # Drawn into the tile's own bar so a long title is clipped, not spilled on a neighbour.
        bar = panel[top:top + title_height, left:left + width]
        cv2.putText(bar, str(title), (4, title_height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG atomically (temporary file + rename); returns the path.

    Raises:
        ValueError: not (H, W, 3) uint8, or the suffix is not .png.
        OSError: the file cannot be written.
    """
    image = _check_rgb(rgb, 'rgb')
    path = Path(path)
    if path.suffix.lower() != '.png':
        raise ValueError(f'save_png writes .png files, got {path}')
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise OSError(f'PNG encoding failed for {path}')
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
