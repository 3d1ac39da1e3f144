r"""``xdrcdepth evaluate-model``: paper metrics of a checkpoint, an exported ONNX or a baseline.

The scoring is :mod:`xdrcdepth_ros.train.scoring` (shared with the model card).

Examples:
    xdrcdepth evaluate-model --checkpoint runs/experiment/both_kd_s0/best.pt --split test
    xdrcdepth evaluate-model --onnx models/xdrcdepth_student.onnx --dataset nuscenes \
        --root test/data/nuscenes --version v1.0-mini --json
    xdrcdepth evaluate-model --baseline radar-nn --dataset nuscenes --root test/data/nuscenes
"""
from __future__ import annotations

import argparse
import json

from xdrcdepth_ros.train.scoring import BASELINES, GT_KEYS  # numpy only at import


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate-model`` subcommand."""
    parser = subparsers.add_parser(
        'evaluate-model', help='evaluate a checkpoint, ONNX model or baseline on a dataset split',
        description='Per-image paper metrics (MAE, RMSE, iMAE, iRMSE, AbsRel, delta) at the '
                    '50/70/80 m caps, averaged over images, against single-scan LiDAR GT.')
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--checkpoint', help='torch checkpoint (.pt) from xdrcdepth train')
    what.add_argument('--onnx', help='exported model (.onnx with its .json metadata)')
    what.add_argument('--baseline', choices=BASELINES,
                      help='median: one constant, the median GT depth of the evaluated split; '
                           'radar-nn: nearest radar point in the image plane')
    parser.add_argument('--dataset', default='synthetic', choices=('synthetic', 'nuscenes', 'zju'))
    parser.add_argument('--root', default='', help='dataset folder (nuscenes, zju)')
    parser.add_argument('--version', default='v1.0-mini', help='nuScenes table version')
    parser.add_argument('--split', default='',
                        help='split name (default: test; nuscenes: all keyframes of the tables)')
    parser.add_argument('--size', type=int, default=64, help='synthetic: samples in the split')
    parser.add_argument('--height', type=int, default=192, help='model input height (px)')
    parser.add_argument('--width', type=int, default=352, help='model input width (px)')
    parser.add_argument('--limit', type=int, default=0, help='evaluate only the first N samples')
    parser.add_argument('--cache-dir', default='', help='synthetic sample cache folder')
    parser.add_argument('--gt', default='sparse', choices=tuple(GT_KEYS),
                        help='ground truth to score against')
    parser.add_argument('--device', default='cpu', help='torch device for --checkpoint')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metric table (or JSON). Returns the exit code."""
    from xdrcdepth_ros.core.evaluate import format_table
    from xdrcdepth_ros.train import scoring

    split = args.split or ('all' if args.dataset == 'nuscenes' else 'test')
    gt_key = GT_KEYS[args.gt]
    samples = scoring.load_samples(
        dataset=args.dataset, split=split, height=int(args.height), width=int(args.width),
        root=args.root, version=args.version, size=int(args.size), cache_dir=args.cache_dir,
        limit=int(args.limit))
    if args.baseline:
        predict = scoring.baseline_predictor(args.baseline,
                                             scoring.median_gt_depth(samples, gt_key))
    elif args.onnx:
        from xdrcdepth_ros.core.engine import Engine

        predict = scoring.engine_predictor(Engine(args.onnx, providers=['cpu']))
    else:
        predict = scoring.checkpoint_predictor(args.checkpoint, args.device)
    summary = scoring.score_samples(samples, predict, gt_key=gt_key, progress=True)
    what = args.checkpoint or args.onnx or f'baseline:{args.baseline}'
    if args.json:
        print(json.dumps({'model': what, 'dataset': args.dataset, 'split': split,
                          'n_samples': len(samples),
                          'metrics': {f'{c:g}': m for c, m in summary.items()}}, default=float))
    else:
        print(f'{what} on {args.dataset}/{split} ({len(samples)} samples)')
        print(format_table(summary))
    return 0
