"""Torch views of :class:`Sample` for training (the only ``data`` module that imports torch)."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from xdrcdepth_ros.data.augmentation import augment
from xdrcdepth_ros.data.sample import Sample


class SampleSource(Protocol):
    """Anything indexable that yields samples (SyntheticDataset, NuScenesDataset, ...)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def to_tensors(sample: Sample) -> dict[str, torch.Tensor]:
    """Convert a sample to float32 tensors.

    Returns:
        ``image`` (3, H, W) in [0, 1] (RGB, not mean/std normalised: the model does that),
        ``radar`` (C, H, W), ``gt_sparse`` (1, H, W) metres, ``gt_dense`` (1, H, W) metres,
        ``K`` (3, 3).
    """
    image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
    return {
        'image': image.to(torch.float32).div_(255.0),
        'radar': torch.from_numpy(np.ascontiguousarray(sample.radar, dtype=np.float32)),
        'gt_sparse': torch.from_numpy(
            np.ascontiguousarray(sample.gt_sparse, dtype=np.float32))[None],
        'gt_dense': torch.from_numpy(
            np.ascontiguousarray(sample.gt_dense, dtype=np.float32))[None],
        'K': torch.from_numpy(np.asarray(sample.K, dtype=np.float32).copy()),
    }


class TorchDataset(torch.utils.data.Dataset):
    """Wrap a sample source for a DataLoader, with deterministic augmentation.

    The augmentation of item ``i`` in epoch ``e`` uses ``np.random.default_rng((seed, e, i))``,
    so a run is reproducible whatever the worker count. Call :meth:`set_epoch` before each epoch
    (with ``persistent_workers=False`` workers pick up the new epoch when they are re-created).

    Args:
        source: the samples.
        augment: apply :func:`~xdrcdepth_ros.data.augmentation.augment` (training) or not.
        crop_hw: random crop size, or None.
        flip: random horizontal flip.
        color_jitter: random colour jitter.
        seed: augmentation seed.
    """

    def __init__(self, source: SampleSource, *, augment: bool = True,
                 crop_hw: tuple[int, int] | None = None, flip: bool = True,
                 color_jitter: bool = True, seed: int = 0) -> None:
        self.source = source
        self.augment = augment
        self.crop_hw = crop_hw
        self.flip = flip
        self.color_jitter = color_jitter
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.source[index]
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, int(index)))
            sample = augment(sample, rng, crop_hw=self.crop_hw, flip=self.flip,
                             color_jitter=self.color_jitter)
        return to_tensors(sample)
