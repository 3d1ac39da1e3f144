r"""Compute the numbers of ``models/MODEL_CARD.md`` for an exported model (ONNX on CPU).

    .venv/bin/python -m xdrcdepth_ros.train.model_card models/xdrcdepth_student.onnx \
        --cache-dir runs/cache --out models/model_card_metrics.json

It scores the model and two baselines (one constant = the split's median GT depth; nearest
radar point in the image plane) with the scoring of ``evaluate-model`` (``train.scoring``: per
image, 80 m cap, single-scan (LiDAR-like) GT) on: the synthetic test split, its first
``--small`` samples (re-checked by ``test/test_model_card.py``), and the bundled real nuScenes
frames against their LiDAR. It also times ``Engine.run`` on this CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xdrcdepth_ros.train import scoring
from xdrcdepth_ros.train.batches import sample_arrays

KEYS = ('mae_m', 'rmse_m', 'imae_per_km', 'irmse_per_km', 'abs_rel', 'delta1', 'n_images')


def score(samples: Sequence[dict], predict: Callable[[dict], np.ndarray],
          cap: float = 80.0) -> dict[str, float]:
    """The card's metrics (:data:`KEYS`) at ``cap`` m against ``gt_sparse``."""
    summary = scoring.score_samples(samples, predict, caps=(cap,))[cap]
    return {k: float(summary[k]) for k in KEYS if k in summary}


def score_all(samples: Sequence[dict], engine: Any) -> dict[str, dict[str, float]]:
    """The model and both baselines on the same samples."""
    median = scoring.median_gt_depth(samples)
    return {
        'model': score(samples, scoring.engine_predictor(engine)),
        'baseline_constant_median': {
            **score(samples, scoring.baseline_predictor('median', median)),
            'constant_m': median},
        'baseline_radar_nearest': score(samples, scoring.baseline_predictor('radar-nn', median)),
    }


def synthetic_samples(count: int, height: int, width: int, cache_dir: str = '',
                      test_size: int = 64) -> list[dict]:
    """The first ``count`` samples of the synthetic test split (identical with or without the
    cache: sample i depends only on split, i and the dataset seed)."""
    return scoring.load_samples(dataset='synthetic', split='test', height=height, width=width,
                                size=test_size, cache_dir=cache_dir, limit=count)


def nuscenes_samples(root: str, height: int, width: int) -> list[dict]:
    """The bundled real nuScenes keyframes at the model size (GT = single-scan LiDAR)."""
    from xdrcdepth_ros.data import NuScenesDataset

    dataset = NuScenesDataset(root, version='v1.0-mini', split='all', height=height,
                              width=width)
    return [sample_arrays(dataset[i]) for i in range(len(dataset))]


def latency_ms(engine: Any, sample: dict, runs: int = 30) -> dict[str, float]:
    """Median and 90th percentile of ``Engine.run`` wall time, ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(sample['image'], sample['radar'])
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {'median_ms': statistics.median(times), 'p90_ms': times[int(0.9 * (runs - 1))],
            'runs': runs}


def markdown(results: dict) -> str:
    """Markdown tables of a ``model_card_metrics.json`` (what MODEL_CARD.md quotes)."""
    names = {'model': 'XD-RCDepth student (this model)',
             'baseline_constant_median': 'constant = median GT depth of the split',
             'baseline_radar_nearest': 'nearest radar point (image plane)'}
    out = []
    for split, title in (('synthetic_test', 'synthetic test split'),
                         ('synthetic_test_small', 'synthetic test, first samples'),
                         ('nuscenes_bundled', 'bundled real nuScenes frames vs LiDAR')):
        table = results[split]
        n = int(table['model']['n_images'])
        out += [f'**{title}** ({n} images, 80 m cap, per image then averaged)', '',
                '| predictor | MAE (m) | RMSE (m) | iMAE (1/km) | iRMSE (1/km) | AbsRel | δ1 |',
                '|---|---|---|---|---|---|---|']
        for key, name in names.items():
            m = table[key]
            if key == 'baseline_constant_median':
                name += f" ({m['constant_m']:.2f} m)"
            out.append(f"| {name} | {m['mae_m']:.3f} | {m['rmse_m']:.3f} | "
                       f"{m['imae_per_km']:.2f} | {m['irmse_per_km']:.2f} | {m['abs_rel']:.3f} | "
                       f"{m['delta1']:.3f} |")
        out.append('')
    return '\n'.join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help='exported .onnx (with its .json)')
    parser.add_argument('--cache-dir', default='runs/cache')
    parser.add_argument('--nuscenes', default='test/data/nuscenes')
    parser.add_argument('--test-size', type=int, default=64)
    parser.add_argument('--small', type=int, default=8)
    parser.add_argument('--out', default='models/model_card_metrics.json')
    parser.add_argument('--markdown', action='store_true',
                        help='only print the tables of an existing --out file')
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0
    from xdrcdepth_ros.core.engine import Engine

    results: dict[str, Any] = {'model': Path(args.model).name}
    for threads in (1, 2):
        with Engine(args.model, providers=['cpu'], intra_op_threads=threads) as engine:
            meta = engine.metadata
            h, w = meta.input_height, meta.input_width
            if threads == 1:
                syn = synthetic_samples(args.test_size, h, w, args.cache_dir, args.test_size)
                results['synthetic_test'] = score_all(syn, engine)
                results['synthetic_test_small'] = {
                    'n_samples': args.small, **score_all(syn[:args.small], engine)}
                results['nuscenes_bundled'] = score_all(nuscenes_samples(args.nuscenes, h, w),
                                                        engine)
            results[f'latency_cpu_{threads}_threads'] = latency_ms(engine, syn[0])
    results['input_size'] = [h, w]
    results['machine'] = {'cpu_count': os.cpu_count(), 'platform': platform.platform(),
                          'load_average_1min': os.getloadavg()[0]}
    Path(args.out).write_text(json.dumps(results, indent=2) + '\n')
    print(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
