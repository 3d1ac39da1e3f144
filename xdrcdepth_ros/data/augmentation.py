"""Training augmentation on :class:`Sample` (numpy only): random crop, flip, colour jitter.

Every geometric change keeps the sample self-consistent: K follows the crop and the flip, and the
radar map stays what :func:`geometry.radar_map` would give for the mirrored / cropped view.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from xdrcdepth_ros.data.sample import LATERAL_VELOCITY_CHANNELS, Sample

#: Probability of a horizontal flip and of colour jitter (the CaFNet / LiRCDepth recipe).
FLIP_PROBABILITY = 0.5
COLOR_PROBABILITY = 0.5
#: Range of the gamma, brightness and per-channel colour factors.
JITTER_RANGE = (0.9, 1.1)


def crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Cut a ``height`` x ``width`` window at (top, left) pixels; K's principal point shifts."""
    if not (0 <= top and 0 <= left and height > 0 and width > 0
            and top + height <= sample.height and left + width <= sample.width):
        raise ValueError(f'crop {height}x{width} at (top={top}, left={left}) does not fit a '
                         f'{sample.height}x{sample.width} sample')
    rows, cols = slice(top, top + height), slice(left, left + width)
    K = np.array(sample.K, dtype=np.float64)
    K[0, 2] -= left
    K[1, 2] -= top
    return dataclasses.replace(
        sample, image=np.ascontiguousarray(sample.image[rows, cols]),
        radar=np.ascontiguousarray(sample.radar[:, rows, cols]),
        gt_sparse=np.ascontiguousarray(sample.gt_sparse[rows, cols]),
        gt_dense=np.ascontiguousarray(sample.gt_dense[rows, cols]), K=K)


def hflip(sample: Sample) -> Sample:
    """Mirror the sample left-right.

    The image, radar map and GT are mirrored; K's principal point becomes ``cx' = W - 1 - cx``
    (pixel centres at integer coordinates); the lateral radar velocity channels (``vy`` and
    ``vy_comp``: radar frame x forward, y left, so y is the image's horizontal direction) change
    sign, as they would for the mirrored world. Depth, RCS and ``vx`` are unchanged.
    """
    radar = np.ascontiguousarray(sample.radar[:, :, ::-1])
    for index, name in enumerate(sample.radar_channels):
        if name in LATERAL_VELOCITY_CHANNELS:
            radar[index] = -radar[index]
            radar[index][radar[index] == 0] = 0.0  # no -0.0 in empty pixels
    K = np.array(sample.K, dtype=np.float64)
    K[0, 2] = sample.width - 1 - K[0, 2]
    return dataclasses.replace(
        sample, image=np.ascontiguousarray(sample.image[:, ::-1]), radar=radar,
        gt_sparse=np.ascontiguousarray(sample.gt_sparse[:, ::-1]),
        gt_dense=np.ascontiguousarray(sample.gt_dense[:, ::-1]), K=K)


def jitter_colors(image: np.ndarray, gamma: float, brightness: float,
                 colors: np.ndarray) -> np.ndarray:
    """``((I / 255) ** gamma) * brightness * colors`` per channel, clipped; (H, W, 3) uint8."""
    lut = (np.arange(256, dtype=np.float32) / 255.0) ** np.float32(gamma)
    out = lut[image] * (np.float32(brightness) * np.asarray(colors, dtype=np.float32))
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def augment(sample: Sample, rng: np.random.Generator, crop_hw: tuple[int, int] | None = None,
            flip: bool = True, color_jitter: bool = True) -> Sample:
    """Random training augmentation, reproducible from ``rng``.

    Args:
        sample: input sample.
        rng: the only randomness used (seed it per (epoch, index) for determinism).
        crop_hw: (height, width) of a uniformly placed random crop, or None for no crop.
        flip: mirror with probability 0.5 (see :func:`hflip` for K and velocity signs).
        color_jitter: with probability 0.5 scale the image by gamma, brightness and per-channel
            colour factors, each uniform in [0.9, 1.1].

    Returns:
        A new :class:`Sample`; the input is not modified.
    """
    out = sample
    if crop_hw is not None:
        height, width = (int(v) for v in crop_hw)
        if height > sample.height or width > sample.width:
            raise ValueError(f'crop {height}x{width} is larger than the {sample.height}x'
                             f'{sample.width} sample')
        top = int(rng.integers(sample.height - height + 1))
        left = int(rng.integers(sample.width - width + 1))
        out = crop(out, top, left, height, width)
    if flip and rng.random() < FLIP_PROBABILITY:
        out = hflip(out)
    if color_jitter and rng.random() < COLOR_PROBABILITY:
        gamma, brightness = rng.uniform(*JITTER_RANGE, size=2)
        colors = rng.uniform(*JITTER_RANGE, size=3)
        out = dataclasses.replace(out, image=jitter_colors(out.image, gamma, brightness, colors))
    return out



def scatter_sparse(values: np.ndarray, valid: np.ndarray, window: tuple[int, int, int, int],
                   out_hw: tuple[int, int]) -> np.ndarray:
    """Move the valid pixels of a window of sparse maps to their pixels in an enlarged view.

    Sparse maps (radar, LiDAR GT) must not be interpolated: each valid pixel moves to the
    output pixel that holds its centre, so depths stay exact and density falls as a longer lens
    would make it fall.

    Args:
        values: (C, H, W) maps; all channels move with ``valid``.
        valid: (H, W) bool, the pixels that hold a measurement.
        window: (top, left, height, width) of the source window, pixels.
        out_hw: (height, width) of the output, each >= the window's.
    Returns:
        (C, out_h, out_w) float32, 0 where nothing landed.
    """
    top, left, height, width = window
    out_h, out_w = out_hw
    if out_h < height or out_w < width:
        raise ValueError(f'scatter_sparse only enlarges: window {height}x{width} -> '
                         f'{out_h}x{out_w}')
    rows, cols = np.nonzero(valid[top:top + height, left:left + width])
    out = np.zeros((values.shape[0], out_h, out_w), np.float32)
    new_rows = np.minimum(((rows + 0.5) * (out_h / height)).astype(np.int64), out_h - 1)
    new_cols = np.minimum(((cols + 0.5) * (out_w / width)).astype(np.int64), out_w - 1)
    out[:, new_rows, new_cols] = values[:, top + rows, left + cols]
    return out


def zoom_crop(image: np.ndarray, radar: np.ndarray, gt_sparse: np.ndarray,
              gt_dense: np.ndarray, window: tuple[int, int, int, int],
              out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``window`` = (top, left, height, width) and enlarge it to ``out_hw`` (scale aug).

    Enlarging is what a longer focal length does: depths are unchanged, the intrinsics scale
    by ``out / window`` (a caller that keeps K scales fx, fy and the shifted cx, cy by it).
    Inputs are channel-first: image (3, H, W) float, radar (C, H, W) with depth in channel 0,
    gt_sparse and gt_dense (1, H, W) metres. The image is resized bilinearly, the dense depth
    by nearest neighbour, the sparse maps by :func:`scatter_sparse`.
    """
    import cv2

    top, left, height, width = window
    out_h, out_w = out_hw
    rows, cols = slice(top, top + height), slice(left, left + width)
    img = cv2.resize(np.ascontiguousarray(image[:, rows, cols].transpose(1, 2, 0)),
                     (out_w, out_h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    dense = cv2.resize(np.ascontiguousarray(gt_dense[0, rows, cols]), (out_w, out_h),
                       interpolation=cv2.INTER_NEAREST)[None]
    radar_out = scatter_sparse(radar, radar[0] > 0, window, out_hw)
    sparse_out = scatter_sparse(gt_sparse, gt_sparse[0] > 0, window, out_hw)
    return img.astype(np.float32), radar_out, sparse_out, dense.astype(np.float32)
