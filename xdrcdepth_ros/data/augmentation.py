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

