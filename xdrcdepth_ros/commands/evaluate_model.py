r"""``xdrcdepth evaluate-model``: paper metrics of a checkpoint, an exported ONNX or a baseline.

Examples:
    xdrcdepth evaluate-model --checkpoint runs/experiment/both_kd_s0/best.pt --split test
    xdrcdepth evaluate-model --onnx models/xdrcdepth_student.onnx --dataset nuscenes \
        --root test/data/nuscenes --version v1.0-mini --json
    xdrcdepth evaluate-model --baseline radar-nn --dataset nuscenes --root test/data/nuscenes
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Iterable

import numpy as np

BASELINES = ('median', 'radar-nn')


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
    parser.add_argument('--gt', default='sparse', choices=('sparse', 'dense'),
                        help='ground truth to score against')
    parser.add_argument('--device', default='cpu', help='torch device for --checkpoint')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    parser.set_defaults(func=run)


def load_split(args: argparse.Namespace) -> Any:
    """The dataset named by the arguments, at ``--height x --width``."""
    from xdrcdepth_ros.train.batches import build_dataset
    from xdrcdepth_ros.train.config import DataConfig

    size = int(args.size)
    cfg = DataConfig(dataset=args.dataset, root=args.root, version=args.version,
                     height=int(args.height), width=int(args.width), train_size=size,
                     val_size=size, test_size=size, cache_dir=args.cache_dir)
    return build_dataset(cfg, args.split)


def _predictor(args: argparse.Namespace, samples: list[dict]) -> Callable[[dict], np.ndarray]:
    """A function sample arrays -> (H, W) depth in metres."""
    from xdrcdepth_ros.train import baselines

    if args.baseline:
        gt_key = 'gt_sparse' if args.gt == 'sparse' else 'gt_dense'
        valid = np.concatenate([s[gt_key][s[gt_key] > 0] for s in samples] or [np.zeros(0)])
        median = float(np.median(valid)) if valid.size else 10.0
        if args.baseline == 'median':
            return lambda s: baselines.constant_depth(s['image'].shape[:2], median)
        return lambda s: baselines.radar_nearest(s['radar'][0], median)
    if args.onnx:
        from xdrcdepth_ros.core.engine import Engine

        engine = Engine(args.onnx, providers=['cpu'])
        return lambda s: engine.run(s['image'], s['radar'])[0]
    import torch

    from xdrcdepth_ros.model import load_checkpoint

    model, _ = load_checkpoint(args.checkpoint)
    model = model.to(args.device).eval()

    def torch_predict(s: dict) -> np.ndarray:
        image = torch.from_numpy(s['image'].transpose(2, 0, 1).astype(np.float32) / 255.0)
        radar = torch.from_numpy(s['radar'])
        with torch.no_grad():
            out = model(image[None].to(args.device), radar[None].to(args.device))
        return out.depth[0, 0].float().cpu().numpy()

    return torch_predict


def evaluate_samples(samples: Iterable[dict], predict: Callable[[dict], np.ndarray],
                     gt_key: str = 'gt_sparse') -> dict[float, dict]:
    """``MetricAccumulator.summary()`` of ``predict`` over sample arrays."""
    from tqdm import tqdm

    from xdrcdepth_ros.core.evaluate import MetricAccumulator

    acc = MetricAccumulator()
    for sample in tqdm(list(samples), desc='evaluate', leave=False):
        acc.add(predict(sample), sample[gt_key])
    return acc.summary()


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metric table (or JSON). Returns the exit code."""
    from xdrcdepth_ros.core.evaluate import format_table
    from xdrcdepth_ros.train.batches import sample_arrays

    if not args.split:
        args.split = 'all' if args.dataset == 'nuscenes' else 'test'
    dataset = load_split(args)
    count = len(dataset) if not args.limit else min(int(args.limit), len(dataset))
    if count == 0:
        raise ValueError(f'split {args.split!r} of {args.dataset} has no samples')
    samples = [sample_arrays(dataset[i]) for i in range(count)]
    predict = _predictor(args, samples)
    summary = evaluate_samples(samples, predict,
                               'gt_sparse' if args.gt == 'sparse' else 'gt_dense')
    what = args.checkpoint or args.onnx or f'baseline:{args.baseline}'
    if args.json:
        print(json.dumps({'model': what, 'dataset': args.dataset, 'split': args.split,
                          'n_samples': count,
                          'metrics': {f'{c:g}': m for c, m in summary.items()}}, default=float))
    else:
        print(f'{what} on {args.dataset}/{args.split} ({count} samples)')
        print(format_table(summary))
    return 0
