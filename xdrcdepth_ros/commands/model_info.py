"""``xdrcdepth model-info``: parameters and MACs of the student, LiRCDepth and the teacher.

Examples:
    xdrcdepth model-info
    xdrcdepth model-info --json
    xdrcdepth model-info --height 192 --width 352 --all
"""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``model-info`` subcommand."""
    parser = subparsers.add_parser(
        'model-info', help='parameter and MAC counts of the model variants',
        description='Parameters and multiply-accumulates (torch.utils.flop_counter, batch 1) of '
                    'the XD-RCDepth student, the LiRCDepth reference and the CaFNet-style '
                    'teacher at 352x704 and 896x1600 (plus --height x --width if given), and '
                    'the student/LiRCDepth parameter ratio (paper: 1 - 0.297).',
        epilog=__doc__.split('Examples:', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--height', type=int, help='extra input height in px (multiple of 32)')
    parser.add_argument('--width', type=int, help='extra input width in px (multiple of 32)')
    parser.add_argument('--all', action='store_true',
                        help='also report xdrcdepth_tiny and cafnet_teacher_small')
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    parser.set_defaults(func=run)


def _sizes(args: argparse.Namespace) -> list[tuple[int, int]]:
    from xdrcdepth_ros.model.profile import DEFAULT_SIZES

    sizes = list(DEFAULT_SIZES)
    if (args.height is None) != (args.width is None):
        raise ValueError('give both --height and --width, or neither')
    if args.height is not None:
        if args.height <= 0 or args.width <= 0 or args.height % 32 or args.width % 32:
            raise ValueError(f'--height/--width must be positive multiples of 32, got '
                             f'{args.height}x{args.width}')
        if (args.height, args.width) not in sizes:
            sizes.append((args.height, args.width))
    return sizes


def run(args: argparse.Namespace) -> int:
    """Print the report; returns 0."""
    sizes = _sizes(args)
    from xdrcdepth_ros.model.profile import model_report, size_key

    report = model_report(sizes, include_extra=args.all)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    keys = [size_key(h, w) for h, w in sizes]
    header = f'{"model":<14} {"variant":<22} {"params":>12}' + ''.join(
        f' {"GMAC@" + k:>16}' for k in keys)
    print(header)
    print('-' * len(header))
    for name, entry in report['models'].items():
        macs = ''.join(f' {entry["macs"][k] / 1e9:>16.2f}' for k in keys)
        print(f'{name:<14} {entry["variant"]:<22} {entry["params"]:>12,}{macs}')
    ratio = report['student_to_lircdepth_params']
    print(f'\nstudent / LiRCDepth parameters: {ratio:.4f} ({(1 - ratio) * 100:.1f} % fewer; '
          'paper: 29.7 %)')
    return 0
