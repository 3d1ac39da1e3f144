"""Seeded procedural driving scenes with exact depth, radar and LiDAR-like GT (numpy only).

Each seed gives one street scene (:mod:`synthetic_scene`), rendered analytically
(:mod:`synthetic_render`) from a camera randomised around nuScenes CAM_FRONT (1600 x 900, fx ~
1260 px, principal point near (816, 480), 1.35-1.75 m high, pitch within +-1.5 deg) with an
ARS408-like radar and an HDL-32E-like LiDAR (:mod:`synthetic_sensors`).

Pitch is applied as the principal-point shift it causes, ``cy += fy tan(pitch)``: the renderer
needs an upright camera, and for |pitch| <= 1.5 deg the two differ by under 1.5 px at 1600 x 900
except in the outer image rows (< 4 px). The scene, its depth and its sensors are then exactly
those of the shifted camera.

Two ways to reach a model input size (``out_width`` x ``out_height``):

* ``mode='direct'`` (default, fast): render straight at the model size with the intrinsics that
  :class:`geometry.InputTransform` gives for the 1600 x 900 camera, i.e. the exact view the node
  would feed the model after resizing and bottom-cropping a camera image.
* ``mode='resize'``: render at the camera size, then resize and crop with the same
  ``InputTransform`` (image: area filter; dense depth: nearest neighbour).

The radar map is always :func:`geometry.radar_map` of the returned radar points with the model K,
and the sparse GT :func:`geometry.lidar_depth_map` of the returned LiDAR points, so training sees
exactly what the node would compute from the same sensor data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from xdrcdepth_ros.data.cache import load_sample, save_sample
from xdrcdepth_ros.data.resample import resample_dense
from xdrcdepth_ros.data.sample import Sample
from xdrcdepth_ros.data.synthetic_render import render
from xdrcdepth_ros.data.synthetic_scene import generate_scene
from xdrcdepth_ros.data.synthetic_sensors import (
    RADAR_FIELD_NAMES, RadarModel, simulate_lidar, simulate_radar)
from xdrcdepth_ros.core.geometry import InputTransform, lidar_depth_map, radar_map
from xdrcdepth_ros.core.model_metadata import DEFAULT_RADAR_FIELDS

#: nuScenes CAM_FRONT-like intrinsics at 1600 x 900 (fx = fy, principal point off-centre).
NUSCENES_LIKE_K = np.array([[1266.417, 0.0, 816.267], [0.0, 1266.417, 491.507], [0.0, 0.0, 1.0]])

SPLITS: tuple[str, ...] = ('train', 'val', 'test')


@dataclass(frozen=True)
class SceneGenerator:
    """Renders synthetic samples; all settings that are not per-seed live here.

    Attributes:
        camera_width: native camera width, pixels (K scales with it).
        camera_height: native camera height, pixels.
        radar_fields: radar point fields that follow depth in the radar map, in order; any of
            ``rcs, vx, vy, vx_comp, vy_comp`` (default raw rcs, vx, vy as in the paper).
        mode: ``'direct'`` or ``'resize'`` (see the module docstring).
        radar: radar model parameters.
        focal_jitter: relative random change of the focal length per scene (uniform).
        principal_jitter_px: (cx, cy) half-ranges of a uniform principal-point shift, pixels at
            the native size (nuScenes cars differ by ~12 px in cx and ~24 px in cy).
        pitch_deg: half-range of a uniform camera pitch, degrees (see the module docstring).
        image_noise: standard deviation of additive pixel noise, in [0, 1] intensity units.
    """

    camera_width: int = 1600
    camera_height: int = 900
    radar_fields: tuple[str, ...] = DEFAULT_RADAR_FIELDS
    mode: str = 'direct'
    radar: RadarModel = field(default_factory=RadarModel)
    focal_jitter: float = 0.04
    principal_jitter_px: tuple[float, float] = (15.0, 15.0)
    pitch_deg: float = 1.5
    image_noise: float = 0.012

    def __post_init__(self) -> None:
        unknown = [name for name in self.radar_fields if name not in RADAR_FIELD_NAMES]
        if unknown:
            raise ValueError(f'unknown synthetic radar fields {unknown}; available: '
                             f'{list(RADAR_FIELD_NAMES)}')
        if self.mode not in ('direct', 'resize'):
            raise ValueError(f"mode must be 'direct' or 'resize', got {self.mode!r}")
        if self.camera_width <= 0 or self.camera_height <= 0:
            raise ValueError('camera size must be positive, got '
                             f'{self.camera_width}x{self.camera_height}')

    def camera_K(self, rng: np.random.Generator) -> np.ndarray:
        """(3, 3) camera intrinsics at the native size: focal, principal point and pitch
        (as a ``cy`` shift) drawn from ``rng`` around :data:`NUSCENES_LIKE_K`."""
        K = NUSCENES_LIKE_K.copy()
        K[0, 2] += rng.uniform(-1.0, 1.0) * self.principal_jitter_px[0]
        K[1, 2] += rng.uniform(-1.0, 1.0) * self.principal_jitter_px[1] - 11.5  # centre 480
        jitter = 1.0 + rng.uniform(-self.focal_jitter, self.focal_jitter)
        K[0, 0] *= jitter
        K[1, 1] *= jitter
        K[1, 2] += K[1, 1] * np.tan(np.radians(rng.uniform(-self.pitch_deg, self.pitch_deg)))
        K[0] *= self.camera_width / 1600.0
        K[1] *= self.camera_height / 900.0
        return K

    def __call__(self, seed: int, out_height: int | None = None,
                 out_width: int | None = None) -> Sample:
        """Render scene ``seed``; see :func:`render_scene`."""
        streams = np.random.SeedSequence(int(seed)).spawn(4)
        layout_rng, radar_rng, lidar_rng, image_rng = (np.random.default_rng(s) for s in streams)
        K_full = self.camera_K(layout_rng)
        scene = generate_scene(layout_rng)
        full = out_height is None and out_width is None
        if full:
            width, height = self.camera_width, self.camera_height
            transform = None
            K = K_full
        else:
            if out_height is None or out_width is None:
                raise ValueError('give both out_height and out_width, or neither')
            transform = InputTransform.fit(self.camera_width, self.camera_height,
                                           out_width, out_height, vertical='bottom')
            width, height = out_width, out_height
            K = transform.apply_to_K(K_full)
        direct = transform is None or self.mode == 'direct'
        if direct:
            rgb, depth = render(scene, K, width, height)
            lidar_points = simulate_lidar(depth, K, lidar_rng)
            image = _finish(rgb, scene.exposure, self.image_noise, image_rng)
            dense = depth
        else:
            rgb, depth = render(scene, K_full, self.camera_width, self.camera_height)
            lidar_points = simulate_lidar(depth, K_full, lidar_rng)
            image = transform.apply_to_image(
                _finish(rgb, scene.exposure, self.image_noise, image_rng))
            dense = resample_dense(depth, transform)
        radar_points, fields = simulate_radar(scene, radar_rng, self.radar)
        mount_height = float(radar_rng.uniform(*self.radar.mount_height_m))
        T_cam_from_radar = self.radar.T_cam_from_radar(scene.cam_height, mount_height)
        features = np.stack([fields[name] for name in self.radar_fields], 1) \
            if self.radar_fields else np.zeros((len(radar_points), 0), np.float32)
        radar = radar_map(radar_points, features, T_cam_from_radar, K, width, height)
        gt_sparse = lidar_depth_map(lidar_points, np.eye(4), K, width, height)
        meta = {
            'source': 'synthetic', 'seed': int(seed), 'mode': 'full' if full else self.mode,
            'K_full': K_full, 'camera_size': (self.camera_width, self.camera_height),
            'T_cam_from_radar': T_cam_from_radar, 'radar_points': radar_points,
            'radar_features': features, 'radar_kind': fields['kind'],
            'radar_all_fields': {name: fields[name] for name in RADAR_FIELD_NAMES},
            'lidar_points': lidar_points, 'ego_speed': scene.ego_speed,
            'cam_height': scene.cam_height, 'radar_mount_height': mount_height,
            'z_end': scene.z_end,
        }
        return Sample(image=image, radar=radar, gt_sparse=gt_sparse, gt_dense=dense, K=K,
                      meta=meta, radar_channels=('depth',) + tuple(self.radar_fields))


_NOISE_POOL: np.ndarray | None = None


def _noise_pool() -> np.ndarray:
    """4 M fixed standard-normal values; a random slice is much cheaper than fresh draws."""
    global _NOISE_POOL
    if _NOISE_POOL is None:
        _NOISE_POOL = np.random.default_rng(7).standard_normal(1 << 22, dtype=np.float32)
    return _NOISE_POOL


def _finish(rgb: np.ndarray, exposure: float, noise: float,
            rng: np.random.Generator) -> np.ndarray:
    """A camera's look, drawn per scene: optical blur, white balance, tone curve, vignetting,
    exposure and sensor noise; returns (H, W, 3) uint8."""
    import cv2

    out = cv2.GaussianBlur(rgb, (5, 5), float(rng.uniform(0.4, 1.2)))
    out *= rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance
    np.clip(out, 0.0, None, out=out)
    out **= np.float32(rng.uniform(0.8, 1.25))  # tone curve
    height, width = out.shape[:2]
    rows = (np.arange(height, dtype=np.float32) - height / 2) / (height / 2)
    cols = (np.arange(width, dtype=np.float32) - width / 2) / (width / 2)
    radius2 = rows[:, None] ** 2 * (height / width) ** 2 + cols[None, :] ** 2
    out *= (1.0 - np.float32(rng.uniform(0.0, 0.35)) * radius2 / 2.0)[..., None]  # vignetting
    out *= np.float32(exposure * 255.0)
    if noise > 0:
        pool = _noise_pool()
        size = out.size
        if size < pool.size:
            start = int(rng.integers(pool.size - size))
            out += pool[start:start + size].reshape(out.shape) * np.float32(noise * 255.0)
        else:
            out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise * 255.0)
    np.clip(out + np.float32(0.5), 0.0, 255.0, out=out)
    return out.astype(np.uint8)


def render_scene(seed: int, width: int = 1600, height: int = 900, out_height: int | None = None,
                 out_width: int | None = None, *, mode: str = 'direct',
                 radar_fields: Sequence[str] = DEFAULT_RADAR_FIELDS) -> Sample:
    """Render synthetic scene ``seed`` (deterministic).

    Args:
        seed: scene seed; the same seed always gives the same scene, radar sweep and LiDAR scan.
        width: native camera width in pixels (intrinsics scale with it).
        height: native camera height in pixels.
        out_height: model input height (multiple of 32), or None for the native size.
        out_width: model input width (multiple of 32), or None for the native size.
        mode: ``'direct'`` renders at the output size; ``'resize'`` renders at the camera size
            and resizes / crops with :class:`geometry.InputTransform`.
        radar_fields: radar features after depth in the radar map.

    Returns:
        A :class:`Sample`; ``meta`` also holds the raw sensor data: ``radar_points`` (N, 3)
        float32 radar frame (x fwd, y left, z = 0), ``radar_features`` (N, F) in
        ``radar_fields`` order, ``radar_all_fields``, ``T_cam_from_radar`` (4, 4), ``K_full``
        (3, 3) at the camera size, ``lidar_points`` (M, 3) camera frame, and scene facts.
    """
    generator = SceneGenerator(camera_width=width, camera_height=height, mode=mode,
                               radar_fields=tuple(radar_fields))
    return generator(seed, out_height, out_width)


def scene_seed(split: str, index: int, seed: int = 0) -> int:
    """The scene seed of ``index`` in ``split``; splits draw from disjoint seed streams."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    sequence = np.random.SeedSequence((int(seed), SPLITS.index(split) + 1, int(index)))
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


class SyntheticDataset:
    """A fixed-size, deterministic set of synthetic samples at the model size.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``; splits never share a scene.
        size: number of samples.
        height: model input height (multiple of 32).
        width: model input width (multiple of 32).
        seed: dataset seed; sample ``i`` depends only on (split, i, seed).
        radar_fields: radar features after depth (see :class:`SceneGenerator`).
        mode: ``'direct'`` (fast) or ``'resize'``.
        cache_dir: if given, samples are stored there as ``.npz`` on first use and read back
            afterwards (rendering is fast; caching helps many-epoch runs on slow CPUs).
    """

    def __init__(self, split: str, size: int, height: int, width: int, seed: int = 0, *,
                 radar_fields: Sequence[str] = DEFAULT_RADAR_FIELDS, mode: str = 'direct',
                 cache_dir: str | Path | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if int(size) < 0:
            raise ValueError(f'size must be >= 0, got {size}')
        InputTransform.fit(1600, 900, width, height)  # validates the model size
        self.split, self.size, self.height, self.width = split, int(size), int(height), int(width)
        self.seed = int(seed)
        self.generator = SceneGenerator(radar_fields=tuple(radar_fields), mode=mode)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def __len__(self) -> int:
        return self.size

    @property
    def radar_channels(self) -> tuple[str, ...]:
        """Names of the radar map channels (depth first)."""
        return ('depth',) + self.generator.radar_fields

    def scene_seed(self, index: int) -> int:
        """Scene seed of sample ``index``."""
        return scene_seed(self.split, index, self.seed)

    def prepare(self, cache_dir: str | Path) -> list[Path]:
        """Render every sample into ``cache_dir`` (progress bar); later reads come from there."""
        from tqdm import tqdm

        self.cache_dir = Path(cache_dir)
        paths = []
        for index in tqdm(range(self.size), desc=f'render synthetic {self.split}', unit='scene'):
            self[index]
            paths.append(self._cache_path(self.cache_dir, index))
        return paths

    def _cache_path(self, folder: Path, index: int) -> Path:
        fields = '-'.join(self.generator.radar_fields)
        return folder / (
            f'synthetic_{self.split}_{self.seed}_{self.height}x{self.width}_'
            f'{self.generator.mode}_{fields}_{index:06d}.npz')

    def __getitem__(self, index: int) -> Sample:
        if not -self.size <= index < self.size:
            raise IndexError(f'index {index} out of range for {self.size} samples')
        index %= self.size
        path = None
        if self.cache_dir is not None:
            path = self._cache_path(self.cache_dir, index)
            if path.is_file():
                return load_sample(path)
        sample = self.generator(self.scene_seed(index), self.height, self.width)
        sample.meta.update(split=self.split, index=index)
        if path is not None:
            save_sample(path, sample)
        return sample
