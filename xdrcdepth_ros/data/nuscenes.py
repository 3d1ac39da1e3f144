"""nuScenes CAM_FRONT + RADAR_FRONT samples, the CaFNet / LiRCDepth / XD-RCDepth setup (numpy).

Per keyframe:

* image: the camera JPEG resized and cropped to the model size by
  :class:`geometry.InputTransform` (default: cover, centred horizontally, bottom kept), with K
  updated the same way;
* radar: ONE RADAR_FRONT sweep with **no filtering** (every point of the PCD, like the devkit's
  ``RadarPointCloud.disable_filters()``), features raw ``rcs, vx, vy`` by default (not
  ego-motion compensated, as in the paper; any PCD field can be chosen), rasterised with
  :func:`geometry.radar_map` and the *model-size* K, bit-identical to what the node builds;
* ``gt_sparse``: the keyframe's single LIDAR_TOP scan through :func:`geometry.lidar_depth_map`;
* ``gt_dense``: optionally ``lidar_scans`` neighbouring scans accumulated
  (:mod:`nuscenes_gt`) and optionally densified by linear interpolation; zeros otherwise.

Files are read with :mod:`xdrcdepth_ros.core.nuscenes_io`, which works for any table version
(v1.0-mini, -trainval, -test and small extracts such as ``test/data/nuscenes``). The official
scene splits come from nuscenes-devkit (``nuscenes.utils.splits``) when it is installed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from xdrcdepth_ros.data.cache import load_sample, save_sample
from xdrcdepth_ros.data.nuscenes_gt import LidarAccumulator
from xdrcdepth_ros.data.resample import densify as densify_depth
from xdrcdepth_ros.data.sample import Sample
from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import InputTransform, lidar_depth_map, radar_map
from xdrcdepth_ros.core.model_metadata import DEFAULT_RADAR_FIELDS
from xdrcdepth_ros.core.nuscenes_io import Keyframe, NuScenesTables, radar_xyz, RADAR_FIELDS

_RADAR_FIELD_NAMES = tuple(name for name, _ in RADAR_FIELDS)
#: Split names of a mini version, by the generic name.
_MINI_SPLITS = {'train': 'mini_train', 'val': 'mini_val'}


def official_split_scenes(split: str, version: str) -> list[str]:
    """Scene names of an official nuScenes split (needs nuscenes-devkit).

    ``train`` / ``val`` map to ``mini_train`` / ``mini_val`` for a ``*-mini`` version.

    Raises:
        DatasetError: nuscenes-devkit is missing or the split name is unknown.
    """
    try:
        from nuscenes.utils.splits import create_splits_scenes
    except ImportError as err:
        raise DatasetError(f'split {split!r} needs nuscenes-devkit (pip install '
                           'nuscenes-devkit), or pass scenes=[...] or split="all"') from err
    name = _MINI_SPLITS.get(split, split) if version.endswith('mini') else split
    splits = create_splits_scenes(verbose=False)
    if name not in splits:
        raise DatasetError(f'unknown nuScenes split {split!r}; choose one of '
                           f'{sorted(splits)} or "all"')
    return list(splits[name])


class NuScenesDataset:
    """Keyframes of a nuScenes table folder as model-size :class:`Sample` objects.

    Args:
        dataroot: folder holding ``samples/`` and the version folder.
        version: table folder, e.g. ``v1.0-trainval`` or ``v1.0-mini``.
        split: ``'all'`` / None (every keyframe), or an official split name (``train``, ``val``,
            ``test``, ``mini_train``, ``mini_val``; needs nuscenes-devkit).
        height: model input height (multiple of 32).
        width: model input width (multiple of 32).
        scenes: explicit scene names (overrides ``split``).
        camera: camera channel.
        radar: radar channel (one sweep).
        radar_fields: PCD fields after depth in the radar map (default raw ``rcs, vx, vy``).
        vertical: which part of the resized image the crop keeps (``bottom``, ``center``, ``top``).
        lidar_scans: neighbouring LiDAR scans accumulated on each side into ``gt_dense``
            (0: ``gt_dense`` is all zeros).
        densify: linearly interpolate the accumulated ``gt_dense`` (scipy; slow, use ``prepare``).
        cache_dir: read samples cached by :meth:`prepare` from here (written on first use).

    Raises:
        DatasetError: missing tables/files, or no keyframe in the selection.
    """

    def __init__(self, dataroot: str | Path, version: str = 'v1.0-trainval',
                 split: str | None = 'all', height: int = 352, width: int = 704, *,
                 scenes: Sequence[str] | None = None, camera: str = 'CAM_FRONT',
                 radar: str = 'RADAR_FRONT', radar_fields: Sequence[str] = DEFAULT_RADAR_FIELDS,
                 vertical: str = 'bottom', lidar_scans: int = 0, densify: bool = False,
                 cache_dir: str | Path | None = None) -> None:
        unknown = [f for f in radar_fields if f not in _RADAR_FIELD_NAMES]
        if unknown:
            raise ValueError(f'unknown radar fields {unknown}; nuScenes radar PCDs have '
                             f'{list(_RADAR_FIELD_NAMES)}')
        InputTransform.fit(1600, 900, width, height, vertical)  # validates size and vertical
        self.dataroot = Path(dataroot)
        self.version = version
        self.height, self.width = int(height), int(width)
        self.camera, self.radar = camera, radar
        self.radar_fields = tuple(radar_fields)
        self.vertical = vertical
        self.lidar_scans = int(lidar_scans)
        self.densify = bool(densify)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.tables = NuScenesTables(self.dataroot, version)
        if scenes is None and split not in (None, 'all'):
            scenes = official_split_scenes(split, version)
        selected = set(scenes) if scenes is not None else None
        self.keyframes: list[Keyframe] = list(self.tables.keyframes(camera))
        present = sorted({kf.scene_name for kf in self.keyframes})
        if selected is not None:
            self.keyframes = [kf for kf in self.keyframes if kf.scene_name in selected]
        if not self.keyframes:
            raise DatasetError(f'no {camera} keyframe of split={split!r} scenes={scenes} in '
                               f'{self.dataroot / version}; scenes present: {present}')
        for kf in self.keyframes:
            missing = [c for c in (radar, 'LIDAR_TOP') if c not in kf.sensors]
            if missing:
                raise DatasetError(f'keyframe {kf.sample_token} has no {missing} sample_data')
        self.split = split if scenes is None or split not in (None, 'all') else 'custom'
        self._accumulator: LidarAccumulator | None = None

    def __len__(self) -> int:
        return len(self.keyframes)

    @property
    def radar_channels(self) -> tuple[str, ...]:
        """Names of the radar map channels (depth first)."""
        return ('depth',) + self.radar_fields

    def config_key(self) -> str:
        """Short hash of every setting that changes a sample (part of cache file names)."""
        settings = [self.version, self.height, self.width, self.camera, self.radar,
                    self.radar_fields, self.vertical, self.lidar_scans, self.densify, 1]
        return hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:10]

    def cache_path(self, index: int, cache_dir: str | Path | None = None) -> Path:
        """Where :meth:`prepare` stores sample ``index``."""
        folder = Path(cache_dir) if cache_dir is not None else self.cache_dir
        if folder is None:
            raise ValueError('no cache_dir given')
        token = self.keyframes[index].sample_token
        return folder / f'nuscenes_{token}_{self.config_key()}.npz'

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} keyframes')
        index %= len(self)
        if self.cache_dir is not None:
            path = self.cache_path(index)
            if path.is_file():
                return load_sample(path)
            sample = self.load(index)
            save_sample(path, sample)
            return sample
        return self.load(index)

    def load(self, index: int) -> Sample:
        """Build sample ``index`` from the raw files (no cache)."""
        kf = self.keyframes[index]
        image = kf.read_image()
        transform = InputTransform.fit(image.shape[1], image.shape[0], self.width, self.height,
                                       self.vertical)
        K = transform.apply_to_K(kf.K)
        raw = kf.read_radar(self.radar)
        points = radar_xyz(raw)
        features = np.stack([raw[name].astype(np.float32) for name in self.radar_fields], 1) \
            if self.radar_fields else np.zeros((len(raw), 0), np.float32)
        T_cam_from_radar = kf.T_cam_from(self.radar)
        radar = radar_map(points, features, T_cam_from_radar, K, self.width, self.height)
        lidar = kf.read_lidar()[:, :3]
        gt_sparse = lidar_depth_map(lidar, kf.T_cam_from('LIDAR_TOP'), K, self.width,
                                    self.height)
        if self.lidar_scans > 0:
            if self._accumulator is None:
                self._accumulator = LidarAccumulator(self.tables, self.version)
            merged = self._accumulator.accumulate(kf, self.lidar_scans)
            gt_dense = lidar_depth_map(merged, np.eye(4), K, self.width, self.height)
            if self.densify:
                gt_dense = densify_depth(gt_dense)
        else:
            gt_dense = np.zeros((self.height, self.width), np.float32)
        meta = {
            'source': 'nuscenes', 'sample_token': kf.sample_token, 'scene': kf.scene_name,
            'stamp_ns': kf.camera.timestamp_us * 1000, 'image_path': str(kf.camera.path),
            'K_full': kf.K, 'camera_size': (image.shape[1], image.shape[0]),
            'T_cam_from_radar': T_cam_from_radar, 'radar_points': points.astype(np.float32),
            'radar_features': features, 'index': index,
        }
        return Sample(image=np.ascontiguousarray(transform.apply_to_image(image)), radar=radar,
                      gt_sparse=gt_sparse, gt_dense=gt_dense.astype(np.float32), K=K, meta=meta,
                      radar_channels=self.radar_channels)

    def prepare(self, cache_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """Cache every sample as ``.npz`` in ``cache_dir`` (atomic writes, progress bar).

        Afterwards this dataset reads from the cache. Existing files are kept unless
        ``overwrite``; the file name includes :meth:`config_key`, so changed settings never
        read stale samples.
        """
        from tqdm import tqdm

        paths = []
        for index in tqdm(range(len(self)), desc='prepare nuScenes', unit='sample'):
            path = self.cache_path(index, cache_dir)
            if overwrite or not path.is_file():
                save_sample(path, self.load(index))
            paths.append(path)
        self.cache_dir = Path(cache_dir)
        return paths

