"""The training sample every dataset yields (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xdrcdepth_ros.core.geometry import DEFAULT_RADAR_CHANNELS

#: Radar map channel names of the default model input: depth, RCS, vx, vy.
DEFAULT_CHANNEL_NAMES: tuple[str, ...] = tuple(c.value for c in DEFAULT_RADAR_CHANNELS)

#: Channels that flip sign under a horizontal image flip. Radar frames are x forward, y left
#: (nuScenes RADAR_FRONT, the synthetic radar), so the y (lateral) velocity components mirror.
LATERAL_VELOCITY_CHANNELS: frozenset[str] = frozenset({'vy', 'vy_comp'})


@dataclass(frozen=True)
class Sample:
    """One model-sized training / evaluation sample.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        radar: (C, H, W) float32 radar map from :func:`xdrcdepth_ros.core.geometry.radar_map`:
            channel 0 camera-frame depth (m), then ``radar_channels[1:]``; 0 where empty.
        gt_sparse: (H, W) float32 single-scan LiDAR(-like) depth in metres, 0 = no return.
        gt_dense: (H, W) float32 denser supervision in metres, 0 = none (synthetic: exact depth
            with sky = 0; nuScenes: accumulated LiDAR sweeps or all zeros; ZJU: ``gt_interp``).
        K: (3, 3) float64 intrinsics of ``image`` (pixel centres at integer coordinates).
        meta: free-form provenance (source, ids, stamps, raw sensor data for checks).
        radar_channels: names of the radar map channels, ``'depth'`` first.
    """

    image: np.ndarray
    radar: np.ndarray
    gt_sparse: np.ndarray
    gt_dense: np.ndarray
    K: np.ndarray
    meta: dict = field(default_factory=dict)
    radar_channels: tuple[str, ...] = DEFAULT_CHANNEL_NAMES

    def __post_init__(self) -> None:
        height, width = self.image.shape[:2]
        if self.image.shape != (height, width, 3) or self.image.dtype != np.uint8:
            raise ValueError(f'image must be (H, W, 3) uint8, got {self.image.shape} '
                             f'{self.image.dtype}')
        if self.radar.ndim != 3 or self.radar.shape[1:] != (height, width):
            raise ValueError(f'radar must be (C, {height}, {width}), got {self.radar.shape}')
        if len(self.radar_channels) != self.radar.shape[0]:
            raise ValueError(f'radar has {self.radar.shape[0]} channels but radar_channels names '
                             f'{len(self.radar_channels)}: {self.radar_channels}')
        for name in ('gt_sparse', 'gt_dense'):
            if getattr(self, name).shape != (height, width):
                raise ValueError(f'{name} must be ({height}, {width}), got '
                                 f'{getattr(self, name).shape}')
        if np.asarray(self.K).shape != (3, 3):
            raise ValueError(f'K must be 3x3, got {np.asarray(self.K).shape}')

    @property
    def height(self) -> int:
        """Image height, pixels."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Image width, pixels."""
        return int(self.image.shape[1])
