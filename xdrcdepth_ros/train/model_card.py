r"""Compute the numbers of ``models/MODEL_CARD.md`` for an exported model, and render the card.

    .venv/bin/python -m xdrcdepth_ros.train.model_card models/xdrcdepth_student.onnx \
        --cache-dir runs/cache --demo-summary demo_output/summary.json \
        --out models/model_card_metrics.json          # measure: writes the JSON
    .venv/bin/python -m xdrcdepth_ros.train.model_card --render   # JSON -> MODEL_CARD.md

Measuring scores the model and three trivial predictors (one constant = the split's median GT
depth; nearest radar point in the image plane; per-image-row median depth fitted on the synthetic
train split) with the scoring of ``evaluate-model`` (``train.scoring``: per image, 80 m cap,
single-scan (LiDAR-like) GT) on: the synthetic test split, its first ``--small`` samples
(re-checked by ``test/test_model_card.py``), and the bundled real nuScenes frames against their
LiDAR. It also times ``Engine.run`` on this CPU and records the file size (:func:`timing`;
``--refresh-timing`` re-measures only those) and, with ``--demo-summary``, the demo's scores
through the node. Rendering fills the ``{{key.path:fmt}}``
placeholders of ``models/MODEL_CARD.template.md`` from the JSON, so no number in the card is
typed by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xdrcdepth_ros.train import baselines, scoring
from xdrcdepth_ros.train.batches import fit_row_median_on, sample_arrays

KEYS = ('mae_m', 'rmse_m', 'imae_per_km', 'irmse_per_km', 'abs_rel', 'delta1', 'n_images')


def score(samples: Sequence[dict], predict: Callable[[dict], np.ndarray],
          cap: float = 80.0) -> dict[str, float]:
    """The card's metrics (:data:`KEYS`) at ``cap`` m against ``gt_sparse``."""
    summary = scoring.score_samples(samples, predict, caps=(cap,))[cap]
    return {k: float(summary[k]) for k in KEYS if k in summary}


def score_all(samples: Sequence[dict], engine: Any,
              row_profile: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """The model and the trivial predictors on the same samples (the row median only when
    its ``row_profile``, fitted on the synthetic train split, is given)."""
    median = scoring.median_gt_depth(samples)
    results = {
        'model': score(samples, scoring.engine_predictor(engine)),
        'baseline_constant_median': {
            **score(samples, scoring.baseline_predictor('median', median)),
            'constant_m': median},
        'baseline_radar_nearest': score(samples, scoring.baseline_predictor('radar-nn', median)),
    }
    if row_profile is not None:
        results['baseline_row_median'] = score(
            samples, lambda s: baselines.row_median_depth(row_profile, s['image'].shape[:2]))
    return results


def synthetic_samples(count: int, height: int, width: int, cache_dir: str = '',
                      test_size: int = 64) -> list[dict]:
    """The first ``count`` samples of the synthetic test split (identical with or without the
    cache: sample i depends only on split, i and the dataset seed)."""
    return scoring.load_samples(dataset='synthetic', split='test', height=height, width=width,
                                size=test_size, cache_dir=cache_dir, limit=count)


def fit_row_median_on_train(train_size: int, height: int, width: int,
                            cache_dir: str = '') -> np.ndarray:
    """The row-median predictor's (height,) profile, m, fitted on the synthetic train split of
    ``train_size`` scenes (the training runs' split and cache), one sample at a time."""
    return fit_row_median_on(_synthetic_split('train', train_size, height, width, cache_dir))


def _synthetic_split(split: str, size: int, height: int, width: int, cache_dir: str) -> Any:
    from xdrcdepth_ros.train.batches import build_dataset
    from xdrcdepth_ros.train.config import DataConfig

    cfg = DataConfig(height=height, width=width, train_size=size, test_size=size,
                     cache_dir=cache_dir)
    return build_dataset(cfg, split)


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


NAMES = {'model': 'XD-RCDepth student (this model)',
         'baseline_constant_median': 'constant = median GT depth of the split',
         'baseline_radar_nearest': 'nearest radar point (image plane)',
         'baseline_row_median': 'per-row median depth (synthetic train split)'}


def metric_tables(results: dict) -> str:
    """The metric tables of a ``model_card_metrics.json`` (one per split)."""
    out = []
    for split, title in (('synthetic_test', 'synthetic test split'),
                         ('synthetic_test_small', 'synthetic test, first samples'),
                         ('nuscenes_bundled', 'bundled real nuScenes frames vs LiDAR (test set)')):
        table = results[split]
        n = int(table['model']['n_images'])
        out += [f'**{title}** ({n} images, 80 m cap, per image then averaged)', '',
                '| predictor | MAE (m) | RMSE (m) | iMAE (1/km) | iRMSE (1/km) | AbsRel | δ1 |',
                '|---|---|---|---|---|---|---|']
        for key, name in NAMES.items():
            if key not in table:
                continue
            m = table[key]
            if key == 'baseline_constant_median':
                name += f" ({m['constant_m']:.2f} m)"
            out.append(f"| {name} | {m['mae_m']:.3f} | {m['rmse_m']:.3f} | "
                       f"{m['imae_per_km']:.2f} | {m['irmse_per_km']:.2f} | {m['abs_rel']:.3f} | "
                       f"{m['delta1']:.3f} |")
        out.append('')
    return '\n'.join(out)


def markdown(results: dict) -> str:
    """What the card quotes from a ``model_card_metrics.json``: metric tables, latency, file."""
    return '\n'.join([metric_tables(results), '**latency**', '', timing_markdown(results),
                      f'**file**: {file_text(results)}', ''])


_PLACEHOLDER = re.compile(r'\{\{\s*([\w.]+)\s*(?::([^}]*))?\}\}')


def lookup(results: dict, path: str) -> Any:
    """``results['a']['b']`` for ``path = 'a.b'`` (``'a.0'`` indexes a list); a missing key is
    a KeyError naming it."""
    value: Any = results
    for part in path.split('.'):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(f'the card asks for {path!r}, which the metrics JSON does not hold')
    return value


def render_card(template: str, results: dict) -> str:
    """Fill every ``{{key.path:fmt}}`` with the JSON value formatted by ``format(value, fmt)``
    (``,`` for thousands, ``.3f``...). Three leaf names render tables of the dict they sit in
    (the whole JSON when alone, e.g. ``{{candidate.tables}}`` for a candidate's): ``tables``
    (:func:`metric_tables`), ``latency`` (:func:`timing_markdown`), ``file`` (:func:`file_text`),
    ``selection_table`` and ``selection_dirs`` (its ``selection`` runs)."""
    renderers = {
        'tables': lambda d: metric_tables(d).rstrip('\n'),
        'latency': lambda d: timing_markdown(d).rstrip('\n'),
        'file': file_text,
        'selection_table': lambda d: selection_table(lookup(d, 'selection')),
        'selection_dirs': lambda d: ' '.join(row['dir'] for row in lookup(d, 'selection')),
    }

    def fill(match: re.Match) -> str:
        path, fmt = match.group(1), match.group(2) or ''
        parent, _, leaf = path.rpartition('.')
        if leaf in renderers:
            return renderers[leaf](lookup(results, parent) if parent else results)
        return format(lookup(results, path), fmt.strip())

    return _PLACEHOLDER.sub(fill, template)


def demo_scores(summary_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The numbers of a ``make demo`` run (its ``summary.json``) the card quotes: 80 m cap."""
    summary = json.loads(Path(summary_path).read_text())
    at_80 = summary['metrics']['by_cap']['80']
    return {'backend': summary['backend'], 'n_frames': summary['metrics']['n_frames'],
            **{k: at_80[k] for k in ('mae_m', 'rmse_m', 'delta1', 'abs_rel') if k in at_80},
            'wall_s': summary.get('wall_s')}


def selection_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """The candidate training runs the shipped settings were chosen among: for each run folder,
    its settings (from ``config.yaml``) and its synthetic *validation* scores at 80 m (from
    ``val_log.csv``): the last evaluation and the best one."""
    import csv

    import yaml

    rows = []
    for run in map(Path, run_dirs):
        cfg = yaml.safe_load((run / 'config.yaml').read_text())
        with (run / 'val_log.csv').open(newline='') as fh:
            log = [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(fh)]
        if not log:
            raise ValueError(f'{run}/val_log.csv has no validation rows')
        best = min(log, key=lambda row: row['cap80/mae_m'])
        done = run / 'metrics.json'
        train_s = json.loads(done.read_text()).get('train_time_s') if done.is_file() else None
        sky = best.get('sky/far_fraction')
        if sky is None:  # runs before the metric existed: measure their best.pt
            sky = _val_sky_far_fraction(run, cfg)
        rows.append({
            'run': run.name, 'dir': str(run), 'pretrained': cfg['model']['pretrained'],
            'crop': f"{cfg['data']['crop_height']}x{cfg['data']['crop_width']}",
            'row_prior': cfg['model'].get('row_prior', 'none'),
            'sky_weight': cfg['loss'].get('sky_weight', 0.0), 'val_sky_far_fraction': sky,
            'encoder_lr_ratio': cfg['optim']['encoder_lr_ratio'],
            'encoder_bn_eval': cfg['model']['encoder_bn_eval'],
            # Runs made before data.zoom_max existed had no zoom.
            'zoom_max': cfg['data'].get('zoom_max', 1.0), 'lr': cfg['optim']['lr'],
            'steps': cfg['optim']['steps'], 'last_step': int(log[-1]['step']),
            'val_mae_m': log[-1]['cap80/mae_m'], 'val_rmse_m': log[-1]['cap80/rmse_m'],
            'val_delta1': log[-1]['cap80/delta1'], 'best_step': int(best['step']),
            'best_val_mae_m': best['cap80/mae_m'], 'train_time_s': train_s})
    return rows


def _val_sky_far_fraction(run: Path, cfg: dict) -> float | None:
    """Share of the synthetic validation split's sky pixels that ``run/best.pt`` puts at or
    beyond ``loss.sky_far_m`` (80 m by default); None for other data or without a best.pt."""
    import torch

    from xdrcdepth_ros.model import load_checkpoint
    from xdrcdepth_ros.train.batches import build_dataset
    from xdrcdepth_ros.train.config import config_from_dict
    from xdrcdepth_ros.train.trainer import evaluate_model

    config = config_from_dict(cfg)
    if config.data.dataset != 'synthetic' or not (run / 'best.pt').is_file():
        return None
    model, _ = load_checkpoint(run / 'best.pt')
    summary = evaluate_model(model, build_dataset(config.data, config.data.val_split),
                             torch.device('cpu'), caps=(config.run.val_max_depth,),
                             sky_far_m=config.loss.sky_far_m)
    return summary['sky']['far_fraction']


def selection_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`selection_runs` rows (rows of older cards lack some columns)."""
    out = ['| run | init | lr | encoder lr × | encoder BN eval | crop | zoom | row prior | '
           'sky weight | steps | val MAE (m) | val RMSE (m) | val δ1 | val sky ≥ 80 m | '
           'best val MAE (step) | train time (min) |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        minutes = '-' if r['train_time_s'] is None else f"{r['train_time_s'] / 60:.0f}"
        sky = r.get('val_sky_far_fraction')
        out.append(f"| {r['run']} | {r['pretrained']} | {r['lr']:g} | {r['encoder_lr_ratio']:g} | "
                   f"{'yes' if r['encoder_bn_eval'] else 'no'} | {r.get('crop', '-')} | "
                   f"{r['zoom_max']:g} | {r.get('row_prior', 'none')} | "
                   f"{r.get('sky_weight', 0.0):g} | "
                   f"{r['last_step']} | {r['val_mae_m']:.3f} | {r['val_rmse_m']:.3f} | "
                   f"{r['val_delta1']:.3f} | {'-' if sky is None else f'{sky:.0%}'} | "
                   f"{r['best_val_mae_m']:.3f} ({r['best_step']}) | {minutes} |")
    return '\n'.join(out)


ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / 'models' / 'MODEL_CARD.template.md'
CARD = ROOT / 'models' / 'MODEL_CARD.md'


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every number of the card for ``args.model`` (see the module docstring)."""
    from xdrcdepth_ros.core.engine import Engine

    model = Path(args.model)
    sidecar = json.loads(model.with_suffix('.json').read_text())
    results: dict[str, Any] = {
        'model': model.name, 'file_mb': round(model.stat().st_size / 1e6, 1),
        'parameter_count': sidecar.get('parameter_count'),
        'checkpoint': sidecar.get('checkpoint'), 'model_name': sidecar.get('model_name')}
    with Engine(model, providers=['cpu'], intra_op_threads=1) as engine:
        h, w = engine.metadata.input_height, engine.metadata.input_width
        profile = fit_row_median_on_train(args.train_size, h, w, args.cache_dir)
        results['row_median_profile_m'] = [round(float(v), 4) for v in profile]
        profile = np.asarray(results['row_median_profile_m'], np.float32)
        syn = synthetic_samples(args.test_size, h, w, args.cache_dir, args.test_size)
        results['synthetic_test'] = score_all(syn, engine, profile)
        results['synthetic_test_small'] = {
            'n_samples': args.small, **score_all(syn[:args.small], engine, profile)}
        results['nuscenes_bundled'] = score_all(nuscenes_samples(args.nuscenes, h, w), engine,
                                                profile)
    results['input_size'] = [h, w]
    results.update(timing(model, syn[0]))
    run = Path(str(results['checkpoint'] or '')).parent
    if (run / 'metrics.json').is_file():  # the training run of the checkpoint, if it is here
        seconds = json.loads((run / 'metrics.json').read_text()).get('train_time_s')
        results['shipped_run'] = {'dir': str(run), 'train_minutes': round(seconds / 60)
                                  if seconds else None}
    if args.demo_summary:
        results['demo'] = demo_scores(args.demo_summary)
    if args.selection:
        results['selection'] = selection_runs(args.selection)
    if args.ablation:
        results['ablation'] = {'selection': selection_runs(args.ablation)}
    if args.candidate:
        results['candidate'] = json.loads(Path(args.candidate).read_text())
    if args.other_rig:
        results['other_rig'] = other_rig_scores(args.other_rig, model.name)
    if args.demo_baselines:
        data = bench_report(args.demo_baselines, model.name, 'bench/demo_baselines.py')
        results['demo_baselines'] = {'report': str(args.demo_baselines), **data['metrics']}
    return results


def bench_report(report: str | Path, model_name: str, script: str) -> dict[str, Any]:
    """A bench script's ``--json`` report, checked to be of the model the card is for."""
    data = json.loads(Path(report).read_text())
    if Path(data.get('model', '')).name != model_name:
        raise ValueError(f'{report} scores {data.get("model")!r}, not {model_name!r}: re-run '
                         f'{script} with this model')
    return data


def other_rig_scores(report: str | Path, model_name: str) -> dict[str, Any]:
    """The parts of a ``bench/other_rig.py --json`` report the card shows."""
    data = bench_report(report, model_name, 'bench/other_rig.py')
    return {'report': str(report), 'rig': data['rig'], 'frames': data['frames'],
            'frames_without_radar': data['frames_without_radar'], 'metrics': data['metrics']}


def main(argv: list[str] | None = None) -> int:
    """Measure (``model`` given) or render (``--render``) the card; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', nargs='?', help='exported .onnx (with its .json) to measure')
    parser.add_argument('--cache-dir', default='runs/cache')
    parser.add_argument('--nuscenes', default='test/data/nuscenes')
    parser.add_argument('--test-size', type=int, default=64)
    parser.add_argument('--train-size', type=int, default=512,
                        help='synthetic train scenes the row-median predictor is fitted on')
    parser.add_argument('--small', type=int, default=8)
    parser.add_argument('--demo-summary', default=None,
                        help="summary.json of a 'make demo' run with this model")
    parser.add_argument('--selection', nargs='*', default=[], metavar='RUN_DIR',
                        help='training runs the settings were chosen among (synthetic val)')
    parser.add_argument('--ablation', nargs='*', default=[], metavar='RUN_DIR',
                        help='runs measured after the choice (synthetic val), shown apart')
    parser.add_argument('--candidate', default=None, metavar='JSON',
                        help='metrics JSON of a candidate that was not shipped, kept in the card')
    parser.add_argument('--other-rig', default=None, metavar='JSON',
                        help='bench/other_rig.py --json report of this model, shown in the card')
    parser.add_argument('--demo-baselines', default=None, metavar='JSON',
                        help="bench/demo_baselines.py --json report: the trivial predictors on "
                             "the demo's grid")
    parser.add_argument('--out', default=str(ROOT / 'models' / 'model_card_metrics.json'))
    parser.add_argument('--render', action='store_true',
                        help='render MODEL_CARD.md from the --out JSON and the template')
    parser.add_argument('--markdown', action='store_true',
                        help='only print the tables of an existing --out file')
    parser.add_argument('--refresh-timing', action='store_true',
                        help='re-measure only latency, file size and machine into --out '
                             '(the scores stay: they depend on the weights, not the engine)')
    args = parser.parse_args(argv)
    if args.refresh_timing:
        if not args.model:
            parser.error('--refresh-timing needs the .onnx model')
        results = json.loads(Path(args.out).read_text())
        sample = synthetic_samples(1, *results['input_size'], args.cache_dir, args.test_size)[0]
        results.update(timing(args.model, sample))
        Path(args.out).write_text(json.dumps(results, indent=2) + '\n')
        print(markdown(results))
        return 0
    if args.render or args.markdown:
        results = json.loads(Path(args.out).read_text())
        if args.markdown:
            print(markdown(results))
        else:
            CARD.write_text(render_card(TEMPLATE.read_text(), results))
            print(f'wrote {CARD}')
        return 0
    if not args.model:
        parser.error('give the .onnx model to measure, or --render')
    results = measure(args)
    Path(args.out).write_text(json.dumps(results, indent=2) + '\n')
    print(json.dumps({k: v for k, v in results.items() if k != 'row_median_profile_m'},
                     indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
