"""The "other rig" check (issue 14): the model on a camera and radar it was not trained on.

The bundled nuScenes frames (2 scenes x 4 keyframes) are re-recorded as if by another rig
(``xdrcdepth_ros.bag.rerig``): CAM_FRONT cropped to a centred 4:3 window and scaled to 960x720
(K and P adjusted exactly, JPEG re-encoded), RADAR_FRONT only with its fields renamed (the
model's radar_fields, e.g. rcs, vx, vy, as RCS, v_x, v_y: the same values under other names).
The real node then runs on that bag over DDS, as ``xdrcdepth demo`` runs it, told
``radar_fields:=[RCS, v_x, v_y]``; its depth is scored against LiDAR at 80 m, and on exactly
the same frames, output grid and GT the nearest-radar-point predictor (the RADAR_FRONT sweep
the node paired, projected into the output grid) and a constant (the median GT depth of these
frames, an oracle constant) are scored too.

Same scenes as the demo, re-recorded: not a truly different vehicle. Not part of CI.

    PYTHONPATH=$PWD python bench/other_rig.py --model models/xdrcdepth_student.onnx \\
        --out /tmp/other_rig --json docs/bench/other_rig_shipped.json
"""
from __future__ import annotations

import argparse
from pathlib import Path
import shutil
import sys
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import write_report  # noqa: E402 - bench/ helper

from xdrcdepth_ros.bag.convert import convert_nuscenes, RADAR_CHANNELS  # noqa: E402
from xdrcdepth_ros.bag.demo import BUNDLED, DEMO_OVERRIDES, node_backend  # noqa: E402
from xdrcdepth_ros.bag.predictors import score_node_and_predictors  # noqa: E402
from xdrcdepth_ros.bag.rerig import renamed_fields, rerig_bag, RigSpec  # noqa: E402
from xdrcdepth_ros.core.model_metadata import ModelMetadata, sidecar_path  # noqa: E402
from xdrcdepth_ros.core.sync import DEFAULT_SLOP_NS  # noqa: E402
from xdrcdepth_ros.train import baselines  # noqa: E402

CAP = 80.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole check; returns the report."""
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model).resolve()
    if not model.is_file():
        raise SystemExit(f'model {model} not found')
    meta = ModelMetadata.from_json(sidecar_path(model).read_text(), str(sidecar_path(model)))
    spec = RigSpec(width=args.width, height=args.height, crop_aspect=tuple(args.aspect),
                   radar_topic=f'/{args.radar}', field_map=renamed_fields(meta.radar_fields))
    progress = not args.no_progress
    print(f'[1/5] converting {args.dataroot} and re-rigging: {spec.width}x{spec.height} '
          f'({spec.crop_aspect[0]}:{spec.crop_aspect[1]} crop), /{args.radar} with fields '
          f'{dict(spec.field_map)}')
    convert_nuscenes(args.dataroot, out / 'source_bag', radars=RADAR_CHANNELS, overwrite=True,
                     progress=progress)
    rig = rerig_bag(out / 'source_bag', out / 'input_bag', spec, overwrite=True,
                    progress=progress)
    print('[2/5] running the node in-process over DDS on the re-rigged bag')
    overrides = {**DEMO_OVERRIDES, 'model_path': str(model), 'output_size': args.output_size,
                 'sync_slop': args.sync_slop_ms / 1e3}
    run_info = node_backend(out / 'input_bag', out / 'depth_bag', out / 'params', overrides)
    print(f'[3/5] scoring the node against LiDAR ({CAP:g} m) -> {out / "panels"}, then the '
          'nearest-radar-point and constant predictors on the same frames and grid')
    shutil.rmtree(out / 'panels', ignore_errors=True)
    scores = score_node_and_predictors(
        out / 'depth_bag', lambda constant_m: {
            'radar_nearest': lambda radar: baselines.radar_nearest(radar, constant_m),
            'constant_median': lambda radar: baselines.constant_depth(radar.shape, constant_m),
        }, out, cap=CAP, radar_topics=[spec.radar_topic], radar_slop_ms=args.sync_slop_ms,
        panels_dir=out / 'panels', progress=progress)
    results = scores.metrics
    results['constant_median']['constant_m'] = scores.gt_median_m
    node, radar = results['node'], results['radar_nearest']
    print('[5/5] report')
    report = {
        'what': 'other-rig check (issue 14): bundled nuScenes frames re-recorded by another '
                'camera and radar (bench/other_rig.py); same scenes, not another vehicle',
        'model': str(args.model), 'model_name': meta.model_name,
        'model_input': [meta.input_height, meta.input_width],
        'model_radar_fields': list(meta.radar_fields),
        'rig': {'image_size': [spec.width, spec.height],
                'crop': f'centred {spec.crop_aspect[0]}:{spec.crop_aspect[1]}, scale '
                        f'{rig.transform.scale:g}',
                'image_transport': f'compressed (JPEG quality {spec.jpeg_quality}, re-encoded)',
                'radar_topic': spec.radar_topic, 'radar_fields': list(spec.radar_fields),
                'field_map': dict(spec.field_map), 'dropped_topics': sorted(rig.dropped)},
        'node': {'output_size': args.output_size, 'radar_fields': list(spec.radar_fields),
                 **{k: run_info[k] for k in ('frames_in', 'frames_out', 'provider',
                                              'latency_ms', 'run_s')}},
        'frames_without_radar': scores.frames_without_radar,
        'cap_m': CAP, 'frames': len(scores.frames), 'frame_stamps_ns': scores.frames,
        'skipped': scores.node.skipped, 'metrics': results,
        'node_beats_radar_nearest': {'mae': node['mae_m'] < radar['mae_m'],
                                     'rmse': node['rmse_m'] < radar['rmse_m'],
                                     'delta1': node['delta1'] > radar['delta1']},
        'panels': str(out / 'panels'), 'wall_s': round(time.perf_counter() - started, 1),
    }
    print(f'{"predictor":16s} {"MAE m":>8s} {"RMSE m":>8s} {"delta1":>7s}   '
          f'({report["frames"]} frames, 0-{CAP:g} m, {spec.width}x{spec.height}, '
          f'output {args.output_size})')
    for name, values in results.items():
        print(f'{name:16s} {values["mae_m"]:8.3f} {values["rmse_m"]:8.3f} '
              f'{values["delta1"]:7.3f}')
    print(f'node beats radar_nearest: {report["node_beats_radar_nearest"]}')
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', type=Path, default=Path('models/xdrcdepth_student.onnx'),
                        help='exported ONNX model with its JSON sidecar (default %(default)s)')
    parser.add_argument('--out', type=Path, default=Path('/tmp/other_rig'),
                        help='work folder: bags, params, panels (default %(default)s)')
    parser.add_argument('--json', type=Path, default=None,
                        help='write the report (with the machine) here')
    parser.add_argument('--dataroot', type=Path, default=BUNDLED,
                        help='nuScenes folder (default: the bundled frames)')
    parser.add_argument('--width', type=int, default=960)
    parser.add_argument('--height', type=int, default=720)
    parser.add_argument('--aspect', type=int, nargs=2, default=(4, 3), metavar=('W', 'H'),
                        help='aspect of the centred crop (default 4 3)')
    parser.add_argument('--radar', default='RADAR_FRONT', help='the one radar kept')
    parser.add_argument('--output-size', choices=('camera', 'model'), default='camera',
                        help='node output grid: camera (960x720, default) or model input size')
    parser.add_argument('--sync-slop-ms', type=float, default=DEFAULT_SLOP_NS / 1e6,
                        help="the node's sync_slop and the predictors' sweep window, ms "
                             '(default the node default, %(default)g)')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    report = run(args)
    write_report(args.json, report)
    if args.json:
        print(f'report: {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
