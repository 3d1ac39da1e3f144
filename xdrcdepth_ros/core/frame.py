"""Plain records passed between sync, pipeline, node and replay (numpy only).

Stamps are integer nanoseconds everywhere; conversion from ROS time happens at the edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RadarSweep:
    """One radar sweep, in the radar's own frame.

    Attributes:
        points: (N, 3) float32 x, y, z in metres, radar frame.
        features: (N, F) float32 per-point values for the model's radar channels after depth,
            in the model's channel order (default: RCS dBsm, vx m/s, vy m/s).
        T_cam_from_radar: (4, 4) float64 rigid transform mapping radar points into the camera
            optical frame (z forward, x right, y down).
        stamp_ns: header stamp in nanoseconds.
        frame_id: the radar's frame id.
    """

    points: np.ndarray
    features: np.ndarray
    T_cam_from_radar: np.ndarray
    stamp_ns: int = 0
    frame_id: str = ''


@dataclass(frozen=True)
class Frame:
    """A camera image with the radar sweeps assembled for it.

    Attributes:
        image: (H, W, 3) uint8 RGB camera image.
        K: (3, 3) float64 camera intrinsics of ``image`` (pixel centres at integer coordinates).
        radar: radar sweeps paired with the image (may be empty: the model then sees no radar).
        stamp_ns: image header stamp in nanoseconds.
        frame_id: camera optical frame id.
    """

    image: np.ndarray
    K: np.ndarray
    radar: tuple[RadarSweep, ...] = field(default_factory=tuple)
    stamp_ns: int = 0
    frame_id: str = ''
