"""Training data plumbing: dataset construction, the synthetic cache, crops/augmentation, sampler.

Augmentation is decided by the *sampler*, not by dataset state: every item is requested as
``(index, aug_seed)``, and the seed comes from ``(run seed, epoch, position)``. That makes a run
reproducible with any number of loader workers and lets a resumed run continue exactly where it
stopped, on one process or under ``torchrun`` (each rank takes a disjoint stride of the same
permutation).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from xdrcdepth_ros.data.augmentation import zoom_crop
from xdrcdepth_ros.train.config import DataConfig

ARRAY_KEYS = ('image', 'radar', 'gt_sparse', 'gt_dense', 'K')


def build_dataset(cfg: DataConfig, split: str) -> Sequence[Any]:
    """The dataset of ``Sample`` objects for ``split`` at the full model size (height x width).

    Synthetic data is rendered once and cached as npz (see ``SampleCache``), so experiments do
    not pay for rendering on every run.
    """
    if cfg.dataset == 'synthetic':
        from xdrcdepth_ros.data import SyntheticDataset

        size = {'train': cfg.train_size, 'val': cfg.val_size}.get(split, cfg.test_size)
        make = lambda: SyntheticDataset(split, size=size, height=cfg.height,  # noqa: E731
                                        width=cfg.width, seed=0)
        if not cfg.cache_dir:
            return make()
        key = f'synthetic_{split}_{size}_{cfg.height}x{cfg.width}_{generator_fingerprint()}'
        return SampleCache.load_or_build(Path(cfg.cache_dir) / f'{key}.npz', make)
    if cfg.dataset == 'nuscenes':
        from xdrcdepth_ros.data import NuScenesDataset

        return NuScenesDataset(cfg.root, version=cfg.version, split=split, height=cfg.height,
                               width=cfg.width, lidar_scans=cfg.lidar_scans,
                               densify=cfg.densify, cache_dir=cfg.cache_dir or None)
    from xdrcdepth_ros.data import ZJU4DRadarCamDataset

    return ZJU4DRadarCamDataset(cfg.root, split=split, height=cfg.height, width=cfg.width)


def generator_fingerprint() -> str:
    """8 hex digits of a hash of the synthetic generator's source, so a cache rendered by an
    older generator is never reused silently."""
    import xdrcdepth_ros.data as data_pkg

    digest = hashlib.blake2b(digest_size=4)
    for path in sorted(Path(data_pkg.__file__).parent.glob('synthetic*.py')):
        digest.update(path.read_bytes())
    return digest.hexdigest()


class SampleCache:
    """All samples of one split held as stacked numpy arrays (indexable like a dataset).

    Items are dicts with the ``ARRAY_KEYS`` arrays of one sample.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f'cached arrays have different lengths: {lengths}')
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays['image'])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self.arrays.items()}

    @classmethod
    def load_or_build(cls, path: Path, make) -> 'SampleCache':
        """Load ``path`` or render every sample of ``make()`` into it (atomic write)."""
        if path.is_file():
            with np.load(path) as data:
                return cls({k: data[k] for k in ARRAY_KEYS})
        dataset = make()
        items = [sample_arrays(dataset[i])
                 for i in tqdm(range(len(dataset)), desc=f'render {path.stem}', leave=False)]
        arrays = {k: np.stack([it[k] for it in items]) for k in ARRAY_KEYS}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp.npz')
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return cls(arrays)


def sample_arrays(sample: Any) -> dict[str, np.ndarray]:
    """The arrays of a ``Sample`` (or of a cached dict): image (H,W,3) u8, radar (C,H,W) f32,
    gt_sparse/gt_dense (H,W) f32 m (0 = none), K (3,3) f32."""
    get = sample.get if isinstance(sample, dict) else lambda k: getattr(sample, k)
    out = {'image': np.asarray(get('image'), dtype=np.uint8),
           'radar': np.asarray(get('radar'), dtype=np.float32),
           'K': np.asarray(get('K'), dtype=np.float32)}
    height, width = out['image'].shape[:2]
    for key in ('gt_sparse', 'gt_dense'):
        value = get(key)
        out[key] = (np.zeros((height, width), np.float32) if value is None
                    else np.asarray(value, dtype=np.float32).reshape(height, width))
    return out


def fit_row_median_on(dataset: Sequence[Any]) -> np.ndarray:
    """The row-median predictor's (H,) profile, m, over the sparse GT of every sample of
    ``dataset`` (one sample at a time): the model card's baseline and the trainer's row prior."""
    from xdrcdepth_ros.train.baselines import fit_row_median

    return fit_row_median(sample_arrays(dataset[i])['gt_sparse'] for i in range(len(dataset)))


def _jitter_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, brightness and per-channel colour, each x U[0.9, 1.1], clipped to [0, 1]."""
    image = image ** rng.uniform(0.9, 1.1)
    image = image * rng.uniform(0.9, 1.1)
    image = image * rng.uniform(0.9, 1.1, size=(3, 1, 1)).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


class CropDataset(Dataset):
    """Tensors for training/validation: random crop (optionally zoomed: a window up to
    ``zoom_max`` times smaller, enlarged to the crop size, see ``augmentation.zoom_crop``),
    horizontal flip and colour jitter.

    Items are requested as ``(index, aug_seed)``. ``aug_seed < 0`` means no augmentation and no
    crop (validation). Output dict: image (3,h,w) float RGB in [0, 1], radar (C,h,w) raw,
    gt_sparse/gt_dense (1,h,w) m. A flip mirrors the radar map and negates its lateral velocity
    channels (``data.sample.LATERAL_VELOCITY_CHANNELS``; radar frames are x forward, y left).
    """

    def __init__(self, base: Sequence[Any], crop: tuple[int, int] | None,
                 augment: bool = True,
                 radar_channels: Sequence[str] = ('depth', 'rcs', 'vx', 'vy'), *,
                 zoom_max: float = 1.0) -> None:
        from xdrcdepth_ros.data.sample import LATERAL_VELOCITY_CHANNELS

        if zoom_max < 1.0:
            raise ValueError(f'zoom_max must be >= 1 (1 = no scale augmentation), got {zoom_max}')
        self.base = base
        self.crop = crop if crop and all(crop) else None
        self.augment = augment
        self.zoom_max = float(zoom_max)
        self.lateral = [i for i, name in enumerate(radar_channels)
                        if name in LATERAL_VELOCITY_CHANNELS]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        index, seed = item if isinstance(item, tuple) else (item, -1)
        arrays = sample_arrays(self.base[index])
        image = arrays['image'].transpose(2, 0, 1).astype(np.float32) / 255.0
        radar, gt_s, gt_d = arrays['radar'], arrays['gt_sparse'][None], arrays['gt_dense'][None]
        if seed >= 0:
            rng = np.random.default_rng(seed)
            if self.crop is not None and self.zoom_max > 1.0 and self.augment:
                h, w = self.crop
                scale = rng.uniform(1.0, self.zoom_max)
                wh, ww = max(1, round(h / scale)), max(1, round(w / scale))
                top = int(rng.integers(0, image.shape[1] - wh + 1))
                left = int(rng.integers(0, image.shape[2] - ww + 1))
                image, radar, gt_s, gt_d = zoom_crop(image, radar, gt_s, gt_d,
                                                     (top, left, wh, ww), (h, w))
            elif self.crop is not None:
                h, w = self.crop
                top = int(rng.integers(0, image.shape[1] - h + 1))
                left = int(rng.integers(0, image.shape[2] - w + 1))
                win = (slice(None), slice(top, top + h), slice(left, left + w))
                image, radar, gt_s, gt_d = image[win], radar[win], gt_s[win], gt_d[win]
            if self.augment:
                if rng.random() < 0.5:
                    image, radar = image[..., ::-1], radar[..., ::-1].copy()
                    radar[self.lateral] *= -1.0
                    gt_s, gt_d = gt_s[..., ::-1], gt_d[..., ::-1]
                if rng.random() < 0.5:
                    image = _jitter_colour(image, rng)
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return {'image': to(image), 'radar': to(radar), 'gt_sparse': to(gt_s),
                'gt_dense': to(gt_d)}


def item_seed(seed: int, epoch: int, position: int) -> int:
    """A stable 63-bit augmentation seed for one item of one epoch."""
    digest = hashlib.blake2b(f'{seed}/{epoch}/{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') >> 1


class StepSampler(Sampler):
    """Yields ``(index, aug_seed)`` for one rank, epoch after epoch, from a given global step.

    Epoch ``e`` is a permutation seeded by ``(seed, e)``; rank ``r`` of ``world`` takes the
    positions ``r, r + world, ...``. The sampler starts at ``start_step`` (resume) and is
    endless; the trainer stops it after ``steps`` batches.
    """

    def __init__(self, length: int, batch_size: int, *, seed: int, rank: int = 0,
                 world: int = 1, start_step: int = 0) -> None:
        if length < batch_size * world:
            raise ValueError(f'dataset has {length} samples; need >= batch_size x world = '
                             f'{batch_size * world}')
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world, self.start_step = rank, world, start_step
        self.steps_per_epoch = length // (batch_size * world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
            per_step = self.batch_size * self.world
            for s in range(in_epoch, self.steps_per_epoch):
                base = s * per_step
                for j in range(self.batch_size):
                    pos = base + j * self.world + self.rank
                    yield int(order[pos]), item_seed(self.seed, epoch, pos)
            step = (epoch + 1) * self.steps_per_epoch
