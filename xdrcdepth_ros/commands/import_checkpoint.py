"""``xdrcdepth import-checkpoint``: a published LiRCDepth / CaFNet checkpoint → ONNX + .pt.

Examples:
    xdrcdepth import-checkpoint --arch lircdepth model-1170000-best_mae_2.00887 \\
        --out models/lircdepth_nuscenes
    xdrcdepth import-checkpoint --arch cafnet CaFNet_single/model-120000-best_mae_1.76278 \\
        --out models/cafnet_nuscenes --height 448 --width 800
    xdrcdepth node --params-file config/lircdepth_nuscenes.yaml
"""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-checkpoint`` subcommand."""
    parser = subparsers.add_parser(
        'import-checkpoint',
        help='import an official LiRCDepth or CaFNet checkpoint (OUT.onnx + OUT.json + OUT.pt)',
        description='Load a checkpoint released by the LiRCDepth or CaFNet authors onto this '
                    "package's own network, then write OUT.pt (this package's checkpoint "
                    'format, for --teacher / --checkpoint) and OUT.onnx + OUT.json (as '
                    '`xdrcdepth export` writes them, checked against torch) whose metadata '
                    'states the official input contract: radar [depth, RCS, vx, vy] from the '
                    'raw rcs/vx/vy fields of RADAR_FRONT, ImageNet-normalised image, top rows '
                    'cropped (900 -> 896), max depth 100 m. Nothing is written on failure.',
        epilog=__doc__.split('Examples:', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='the downloaded checkpoint file')
    parser.add_argument('--arch', required=True, choices=('lircdepth', 'cafnet'),
                        help='which network the checkpoint holds')
    parser.add_argument('--out', required=True,
                        help='output stem OUT (writes OUT.onnx, OUT.json, OUT.pt)')
    parser.add_argument('--height', type=int, default=896,
                        help='ONNX input height, px (x32; default 896, the official crop)')
    parser.add_argument('--width', type=int, default=1600,
                        help='ONNX input width, px (x32; default 1600)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 17; default 18)')
    parser.add_argument('--json', action='store_true', help='print the result as JSON')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import; returns 0 (errors are raised for the CLI to print)."""
    from xdrcdepth_ros.model.official import import_official_checkpoint

    result = import_official_checkpoint(args.checkpoint, args.arch, args.out,
                                        height=args.height, width=args.width, opset=args.opset)
    summary = {'onnx': str(result.onnx_path), 'metadata': str(result.json_path),
               'checkpoint': str(result.checkpoint_path), 'arch': args.arch,
               'input': [args.height, args.width], 'parameter_count': result.parameter_count,
               'max_rel_error': result.max_rel_error}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f'wrote {result.onnx_path}, {result.json_path} and {result.checkpoint_path}')
    errors = ', '.join(f'{name} {value:.2e}' for name, value in result.max_rel_error.items())
    print(f'  {args.arch} {args.height}x{args.width}, {result.parameter_count:,} parameters; '
          f'onnxruntime vs torch, max relative error: {errors}')
    return 0
