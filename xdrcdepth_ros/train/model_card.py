r"""Compute the numbers of ``models/MODEL_CARD.md`` for an exported model (ONNX on CPU).

    .venv/bin/python -m xdrcdepth_ros.train.model_card models/xdrcdepth_student.onnx \
        --cache-dir runs/cache --out models/model_card_metrics.json

It scores the model and two baselines (one constant = the split's median GT depth; nearest
radar point in the image plane) with the scoring of ``evaluate-model`` (``train.scoring``: per
image, 80 m cap, single-scan (LiDAR-like) GT) on: the synthetic test split, its first
``--small`` samples (re-checked by ``test/test_model_card.py``), and the bundled real nuScenes
frames against their LiDAR. It also times ``Engine.run`` on this CPU and records the file size
(:func:`timing`; ``--refresh-timing`` re-measures only those). ``--markdown`` renders what the
card quotes.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import textwrap
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


def timing(model: str | Path, sample: dict) -> dict[str, Any]:
    """Engine latency with 1 and 2 intra-op threads, the file size and the machine (CPU model,
    load): the card's data that change with the engine and the file, not with the weights."""
    from xdrcdepth_ros.benchmark import machine_info
    from xdrcdepth_ros.core.engine import Engine

    out: dict[str, Any] = {}
    for threads in (1, 2):
        with Engine(model, providers=['cpu'], intra_op_threads=threads) as engine:
            out[f'latency_cpu_{threads}_threads'] = latency_ms(engine, sample)
    out['file_bytes'] = Path(model).stat().st_size
    out['machine'] = {**machine_info(), 'platform': platform.platform()}
    return out


def file_text(results: dict) -> str:
    """The card's file size, e.g. ``41.9 MB (41,930,627 bytes)``."""
    size = int(results['file_bytes'])
    return f'{size / 1e6:.1f} MB ({size:,} bytes)'


def timing_markdown(results: dict) -> str:
    """The card's latency paragraph and table, from ``model_card_metrics.json``."""
    one, two = results['latency_cpu_1_threads'], results['latency_cpu_2_threads']
    machine = results['machine']
    height, width = results['input_size']
    intro = (f'`Engine.run` (ONNX Runtime CPU provider, batch 1, {height}×{width}, preprocessing '
             f'excluded), {one["runs"]} runs after warm-up, on {machine.get("cpu", "?")} '
             f'({machine["cpu_count"]} logical CPUs, shared with other jobs; 1-minute load '
             f'average {machine["load_average_1min"]:.1f} when measured), from '
             '`model_card_metrics.json`:')
    outro = (f'That is {1000 / one["median_ms"]:.1f} frames per second on one thread. '
             '`xdrcdepth bench` measures the whole pipeline (docs/performance.md).')
    return '\n'.join([
        textwrap.fill(intro, 99), '', '| intra-op threads | median (ms) | p90 (ms) |',
        '|---|---|---|', f'| 1 | {one["median_ms"]:.1f} | {one["p90_ms"]:.1f} |',
        f'| 2 | {two["median_ms"]:.1f} | {two["p90_ms"]:.1f} |', '', textwrap.fill(outro, 99),
        ''])


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
    out += ['**latency**', '', timing_markdown(results), f'**file**: {file_text(results)}', '']
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
    parser.add_argument('--refresh-timing', action='store_true',
                        help='re-measure only latency, file size and machine into --out '
                             '(the scores stay: they depend on the weights, not the engine)')
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0
    from xdrcdepth_ros.core.engine import Engine

    if args.refresh_timing:
        results = json.loads(Path(args.out).read_text())
        sample = synthetic_samples(1, *results['input_size'], args.cache_dir, args.test_size)[0]
        results.update(timing(args.model, sample))
        Path(args.out).write_text(json.dumps(results, indent=2) + '\n')
        print(markdown(results))
        return 0

    results: dict[str, Any] = {'model': Path(args.model).name}
    with Engine(args.model, providers=['cpu'], intra_op_threads=1) as engine:
        h, w = engine.metadata.input_height, engine.metadata.input_width
        syn = synthetic_samples(args.test_size, h, w, args.cache_dir, args.test_size)
        results['synthetic_test'] = score_all(syn, engine)
        results['synthetic_test_small'] = {
            'n_samples': args.small, **score_all(syn[:args.small], engine)}
        results['nuscenes_bundled'] = score_all(nuscenes_samples(args.nuscenes, h, w), engine)
    results['input_size'] = [h, w]
    results.update(timing(args.model, syn[0]))
    Path(args.out).write_text(json.dumps(results, indent=2) + '\n')
    print(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
