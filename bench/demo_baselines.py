#!/usr/bin/env python3
"""The model card's three trivial predictors on exactly the frames, grid and GT of a demo run.

``xdrcdepth demo`` scores the node's published depth (the camera's full 1600x900 grid) against
LiDAR. The card's trivial predictors are scored elsewhere at the model size on the dataset
code's maps, so to compare like with like this script replays each predictor through the demo's
own depth bag (``bag.predictors.predictor_bag``: same frames, same CameraInfo grid, same LiDAR
sweeps and transforms; only the depth differs) and scores it with the demo's evaluator:

- ``constant_median``: the median LiDAR depth of these frames (an oracle constant);
- ``radar_nearest``: each pixel takes the nearest projected radar point of the sweeps the node
  paired (within the node's sync window);
- ``row_median``: the per-row median depth of the synthetic training split
  (``model_card_metrics.json`` ``row_median_profile_m``, one value per model row), mapped to the
  camera rows through the model's input transform (rows above the model's crop take the top
  value).

    PYTHONPATH=$PWD python bench/demo_baselines.py --demo demo_output \\
        --json docs/bench/demo_baselines.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import write_report  # noqa: E402 - bench/ helper

from xdrcdepth_ros.bag.predictors import score_node_and_predictors  # noqa: E402
from xdrcdepth_ros.core.geometry import InputTransform  # noqa: E402
from xdrcdepth_ros.core.model_metadata import ModelMetadata, sidecar_path  # noqa: E402
from xdrcdepth_ros.train import baselines  # noqa: E402

CAP = 80.0


def camera_row_profile(profile: np.ndarray, transform: InputTransform,
                       height: int) -> np.ndarray:
    """The (model rows,) ``profile`` for a depth grid of ``height`` rows: the model's own grid
    (``output_size: model``) is the crop the profile was fitted on, so it is returned as is; a
    camera-shaped grid's row v centre maps to model row ``scale * (v + 0.5) - 0.5 - crop_y``
    (scale taken to that grid's height), linear between model rows, clamped at the ends."""
    if height == transform.height:
        return np.asarray(profile, np.float32)
    scale = transform.scale * transform.source_height / height
    model_rows = scale * (np.arange(height) + 0.5) - 0.5 - transform.crop_y
    return np.interp(model_rows, np.arange(len(profile)), profile).astype(np.float32)


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when inside it (reports are committed)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    demo = Path(args.demo)
    summary = json.loads((demo / 'summary.json').read_text())
    model = Path(summary['model'])
    meta = ModelMetadata.from_json(sidecar_path(model).read_text(), str(sidecar_path(model)))
    profile = np.asarray(json.loads(Path(args.card_json).read_text())['row_median_profile_m'],
                         np.float32)
    if len(profile) != meta.input_height:
        raise SystemExit(f'row profile has {len(profile)} rows, the model {meta.input_height}')
    transform = InputTransform.fit(args.camera_width, args.camera_height, meta.input_width,
                                   meta.input_height, vertical=meta.vertical_crop)
    def row_median(radar: np.ndarray) -> np.ndarray:
        rows = camera_row_profile(profile, transform, radar.shape[0])
        return baselines.row_median_depth(rows, radar.shape)

    scores = score_node_and_predictors(
        demo / 'depth_bag', lambda constant_m: {
            'constant_median': lambda radar: baselines.constant_depth(radar.shape, constant_m),
            'radar_nearest': lambda radar: baselines.radar_nearest(radar, constant_m),
            'row_median': row_median,
        }, args.work, cap=CAP)
    results = scores.metrics
    results['constant_median']['constant_m'] = scores.gt_median_m
    node = results['node']
    report = {
        'what': "the model card's trivial predictors on the demo's frames, grid and LiDAR GT "
                '(bench/demo_baselines.py)',
        'model': str(_relative(model)), 'demo': str(demo), 'cap_m': CAP, 'frames': len(scores.frames),
        'metrics': results,
        'node_beats': {name: {'mae': node['mae_m'] < r['mae_m'],
                              'rmse': node['rmse_m'] < r['rmse_m']}
                       for name, r in results.items() if name != 'node'},
        'wall_s': round(time.perf_counter() - started, 1),
    }
    print(f'{"predictor":16s} {"MAE m":>8s} {"RMSE m":>8s} {"delta1":>7s}   '
          f'({report["frames"]} frames, 0-{CAP:g} m, the demo\'s grid)')
    for name, values in results.items():
        print(f'{name:16s} {values["mae_m"]:8.3f} {values["rmse_m"]:8.3f} '
              f'{values["delta1"]:7.3f}')
    print(f'node beats: {report["node_beats"]}')
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--demo', type=Path, default=Path('demo_output'),
                        help='a finished `xdrcdepth demo` folder (default %(default)s)')
    parser.add_argument('--card-json', type=Path,
                        default=Path('models/model_card_metrics.json'),
                        help='holds row_median_profile_m (default %(default)s)')
    parser.add_argument('--camera-width', type=int, default=1600)
    parser.add_argument('--camera-height', type=int, default=900)
    parser.add_argument('--work', type=Path, default=Path('/tmp/demo_baselines'),
                        help='folder for the predictor bags (default %(default)s)')
    parser.add_argument('--json', type=Path, default=None, help='write the report here')
    args = parser.parse_args(argv)
    report = run(args)
    write_report(args.json, report)
    if args.json:
        print(f'report: {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
