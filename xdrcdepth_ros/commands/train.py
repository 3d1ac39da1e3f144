"""``xdrcdepth train``: train a model from a YAML config (single process or under torchrun)."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        'train', help='train a student or teacher from a YAML config',
        description='Train from config/train_*.yaml. KD terms are on when kd.*_weight > 0 and '
                    'need a teacher checkpoint (kd.teacher or --teacher). For data parallel '
                    'training run it under torchrun: torchrun --nproc_per_node N -m '
                    'xdrcdepth_ros train --config ...')
    parser.add_argument('--config', required=True, help='training YAML (config/train_*.yaml)')
    parser.add_argument('--teacher', default=None,
                        help='teacher checkpoint for distillation: one of ours (.pt, e.g. from '
                             'import-checkpoint) or the official CaFNet release file')
    parser.add_argument('--resume', default=None, help='checkpoint to resume from (last.pt)')
    parser.add_argument('--out', default=None, help='output folder (overrides run.out_dir)')
    parser.add_argument('--seed', type=int, default=None, help='overrides run.seed')
    parser.add_argument('--steps', type=int, default=None, help='overrides optim.steps')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='SECTION.KEY=VALUE', help='override one config value (repeatable)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; prints the final validation metrics as JSON. Returns the exit code."""
    from xdrcdepth_ros.train.config import load_config
    from xdrcdepth_ros.train.trainer import Trainer

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f'run.out_dir={args.out}')
    if args.seed is not None:
        overrides.append(f'run.seed={args.seed}')
    if args.steps is not None:
        overrides.append(f'optim.steps={args.steps}')
    cfg = load_config(args.config, overrides)
    trainer = Trainer(cfg, teacher=args.teacher, resume=args.resume)
    metrics = trainer.fit()
    if trainer.is_main:
        print(json.dumps({'out_dir': cfg.run.out_dir, 'step': trainer.step,
                          'metrics': metrics}, default=float))
    return 0
