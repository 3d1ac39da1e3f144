"""One way to score a depth predictor: ``evaluate-model``, the model card and the experiments.

A predictor maps sample arrays (:func:`~xdrcdepth_ros.train.batches.sample_arrays`: image
(H, W, 3) uint8, radar (C, H, W) float32, gt_sparse / gt_dense (H, W) m) to an (H, W) float32
depth in metres. :func:`score_samples` runs it over the samples with
:class:`~xdrcdepth_ros.core.evaluate.MetricAccumulator` (per image against single-scan GT, then
averaged, at each cap). The predictors themselves: a trained checkpoint (torch), an exported
ONNX model (onnxruntime) and the two non-learned baselines of
:mod:`~xdrcdepth_ros.train.baselines`. ``bench/run_experiment.py`` scores its runs through
``xdrcdepth evaluate-model``, i.e. through this module too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from xdrcdepth_ros.core.evaluate import MetricAccumulator

Predict = Callable[[dict], np.ndarray]
"""Sample arrays -> (H, W) float32 depth, m."""
CAPS = (50.0, 70.0, 80.0)
"""Depth caps of the paper's tables, m."""
BASELINES = ('median', 'radar-nn')
"""``median``: one constant, the median GT depth of the scored samples; ``radar-nn``: the
nearest radar point in the image plane (that constant where a frame has no radar)."""
GT_KEYS = {'sparse': 'gt_sparse', 'dense': 'gt_dense'}
"""Ground truth name -> sample key."""


def score_samples(samples: Iterable[dict], predict: Predict, *, gt_key: str = 'gt_sparse',
                  caps: Sequence[float] = CAPS, progress: bool = False) -> dict[float, dict]:
    """``MetricAccumulator.summary()`` of ``predict`` over ``samples`` against ``gt_key``.

    Returns:
        cap (m) -> metric name -> value (``mae_m``, ``rmse_m``, ..., ``n_images``).
    """
    from tqdm import tqdm

    acc = MetricAccumulator(caps=tuple(caps))
    for sample in tqdm(list(samples), desc='evaluate', leave=False, disable=not progress):
        acc.add(predict(sample), sample[gt_key])
    return acc.summary()


def median_gt_depth(samples: Sequence[dict], gt_key: str = 'gt_sparse') -> float:
    """Median of every valid (> 0) GT pixel of ``samples``, m.

    Raises:
        ValueError: the samples hold no valid GT pixel.
    """
    valid = [s[gt_key][s[gt_key] > 0] for s in samples]
    values = np.concatenate(valid) if valid else np.zeros(0)
    if not values.size:
        raise ValueError(f'no valid {gt_key} pixel in {len(samples)} samples: nothing to score')
    return float(np.median(values))


def baseline_predictor(name: str, median_m: float) -> Predict:
    """The :data:`BASELINES` predictor ``name``, with ``median_m`` as its constant/fallback.

    Raises:
        ValueError: unknown name.
    """
    from xdrcdepth_ros.train import baselines  # OpenCV: only once a baseline is scored

    if name == 'median':
        return lambda s: baselines.constant_depth(s['image'].shape[:2], median_m)
    if name == 'radar-nn':
        return lambda s: baselines.radar_nearest(s['radar'][0], median_m)
    raise ValueError(f'baseline must be one of {list(BASELINES)}, got {name!r}')


def engine_predictor(engine: Any) -> Predict:
    """An onnxruntime :class:`~xdrcdepth_ros.core.engine.Engine`'s depth output."""
    return lambda s: engine.run(s['image'], s['radar'])[0]


def checkpoint_predictor(checkpoint: str | Path, device: str = 'cpu') -> Predict:
    """A torch checkpoint (``xdrcdepth train``) run in eval mode on ``device``.

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    import torch

    from xdrcdepth_ros.model import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    model = model.to(device).eval()

    def predict(s: dict) -> np.ndarray:
        image = torch.from_numpy(s['image'].transpose(2, 0, 1).astype(np.float32) / 255.0)
        radar = torch.from_numpy(s['radar'])
        with torch.no_grad():
            out = model(image[None].to(device), radar[None].to(device))
        return out.depth[0, 0].float().cpu().numpy()

    return predict


def load_samples(*, dataset: str, split: str, height: int, width: int, root: str = '',
                 version: str = 'v1.0-mini', size: int = 64, cache_dir: str = '',
                 limit: int = 0) -> list[dict]:
    """Sample arrays of a dataset split at ``height`` x ``width`` (the first ``limit`` if > 0).

    Raises:
        ValueError: the split has no samples; dataset errors as ``build_dataset`` raises them.
    """
    from xdrcdepth_ros.train.batches import build_dataset, sample_arrays
    from xdrcdepth_ros.train.config import DataConfig

    cfg = DataConfig(dataset=dataset, root=root, version=version, height=height, width=width,
                     train_size=size, val_size=size, test_size=size, cache_dir=cache_dir)
    items = build_dataset(cfg, split)
    count = len(items) if not limit else min(limit, len(items))
    if count == 0:
        raise ValueError(f'split {split!r} of {dataset} has no samples')
    return [sample_arrays(items[i]) for i in range(count)]
