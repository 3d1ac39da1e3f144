"""``xdrcdepth export``: checkpoint → ONNX + metadata, checked against torch.

Examples:
    xdrcdepth export --checkpoint runs/student/best.pt --height 352 --width 704 \\
        --out models/xdrcdepth_student.onnx
    xdrcdepth export --checkpoint runs/student/best.pt --height 896 --width 1600 \\
        --out models/student_896x1600.onnx --target gpu --fp16
    xdrcdepth export --random xdrcdepth_tiny --height 96 --width 192 --out /tmp/tiny.onnx
"""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        'export', help='export a checkpoint to ONNX (+ metadata JSON), checked against torch',
        description='Export a trained model at a fixed input size to ONNX (opset >= 17). The '
                    'graph takes image (1,H,W,3) uint8 RGB and radar (1,C,H,W) float32 and '
                    'returns depth (m) and, for the student, the Grad-CAM saliency [0,1]. '
                    'Metadata goes into the ONNX metadata_props and into NAME.json. The export '
                    'runs onnx.checker and compares onnxruntime with torch; if they differ by '
                    'more than --rtol nothing is written.',
        epilog=__doc__.split('Examples:', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', help='checkpoint written by training (save_checkpoint)')
    source.add_argument('--random', metavar='MODEL_NAME',
                        help='export a seeded random initialisation of this model variant '
                             '(for tests and speed measurements; depth is meaningless)')
    parser.add_argument('--height', type=int, required=True, help='input height, px (x32)')
    parser.add_argument('--width', type=int, required=True, help='input width, px (x32)')
    parser.add_argument('--out', required=True, help='output .onnx path (NAME.json beside it)')
    parser.add_argument('--target', choices=('cpu', 'gpu'), default='cpu',
                        help='cpu: apply the exact CPU graph rewrites (onnxruntime CPU kernels, '
                             'OpenVINO); gpu: the graph as torch exports it, for CUDA/TensorRT '
                             '(default %(default)s; the metadata records the passes applied)')
    parser.add_argument('--fp16', action='store_true',
                        help='also write NAME.fp16.onnx (FP16 weights, same interface) for GPUs')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 17; default 18)')
    parser.add_argument('--rtol', type=float, default=1e-4,
                        help='tolerated ORT-vs-torch relative error (default 1e-4)')
    parser.add_argument('--seed', type=int, default=0, help='seed for --random (default 0)')
    parser.add_argument('--json', action='store_true', help='print the result as JSON')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export; returns 0 (errors are raised for the CLI to print)."""
    from xdrcdepth_ros.export import export_checkpoint, export_random

    common = dict(height=args.height, width=args.width, fp16=args.fp16, opset=args.opset,
                  rtol=args.rtol, target=args.target)
    if args.checkpoint:
        result = export_checkpoint(args.checkpoint, args.out, **common)
    else:
        result = export_random(args.random, args.out, seed=args.seed, **common)
    meta = result.metadata
    summary = {
        'onnx': str(result.onnx_path), 'metadata': str(result.json_path),
        'fp16': str(result.fp16_path) if result.fp16_path else None,
        'model_name': meta.model_name, 'input': [meta.input_height, meta.input_width],
        'outputs': list(meta.outputs), 'parameter_count': meta.parameter_count,
        'target': meta.export_target, 'graph_passes': dict(meta.graph_passes),
        'max_rel_error': result.max_rel_error,
        'fp16_max_rel_error': result.fp16_max_rel_error or None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f'wrote {result.onnx_path} and {result.json_path}'
          + (f' (+ {result.fp16_path})' if result.fp16_path else ''))
    print(f'  {meta.model_name} {meta.input_height}x{meta.input_width}, outputs '
          f'{", ".join(meta.outputs)}, {meta.parameter_count:,} parameters, '
          f'git {meta.git_revision}')
    passes = ', '.join(f'{name} {count}' for name, count in meta.graph_passes.items())
    print(f'  target {meta.export_target}: graph passes {passes or "none"}')
    errors = ', '.join(f'{name} {value:.2e}' for name, value in result.max_rel_error.items())
    print(f'  onnxruntime vs torch, max relative error: {errors} (limit {args.rtol:g})')
    for name in result.zero_outputs:
        print(f'  note: torch gave {name} = 0 everywhere on the synthetic parity input, so its '
              'comparison checks little; compare on real frames (docs/models.md)')
    if result.fp16_max_rel_error:
        errors = ', '.join(f'{k} {v:.2e}' for k, v in result.fp16_max_rel_error.items())
        print(f'  FP16 copy on CPU vs torch FP32: {errors}')
    return 0
