"""``xdrcdepth bench``: per-stage latency of the depth pipeline on the bundled real frames.

The benchmark itself is :func:`xdrcdepth_ros.benchmark.run_benchmark`; this module parses,
calls it, prints and writes the report.

Examples:
    xdrcdepth bench
    xdrcdepth bench --height 896 --width 1600 --iterations 10 --json
    xdrcdepth bench --model models/xdrcdepth_student.onnx --no-lircdepth
    nice -n 10 xdrcdepth bench --out docs/bench/pipeline_352x704.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        'bench', help='latency/FPS of the pipeline vs torch eager and LiRCDepth',
        description='Per-stage latency (median, p90, p99) and FPS of DepthPipeline on the bundled '
                    'real nuScenes frames, the same model in torch eager, and the LiRCDepth '
                    'reference through ORT, in one interleaved run. Without --model it uses '
                    'the shipped models/xdrcdepth_student.onnx if present, else exports a '
                    'randomly initialised student (random weights run exactly as fast as '
                    'trained ones).',
        epilog=__doc__.split('Examples:', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', help='exported .onnx (default: the shipped '
                        'models/xdrcdepth_student.onnx if present)')
    parser.add_argument('--height', type=int, help='input height, px (default: the model\'s, '
                        'else 352)')
    parser.add_argument('--width', type=int, help='input width, px (default: the model\'s, '
                        'else 704)')
    parser.add_argument('--dataroot', default=None,
                        help='nuScenes folder with samples/ and tables (default: bundled frames)')
    parser.add_argument('--iterations', type=int, default=20, help='timed frames (default 20)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed frames first (default 2)')
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU threads for ORT and torch (default: torch\'s default, i.e. '
                             'physical cores or OMP_NUM_THREADS)')
    parser.add_argument('--no-spinning', action='store_true',
                        help='ORT worker threads sleep instead of spinning (for CPUs shared with '
                             'other busy processes)')
    parser.add_argument('--providers', default=None,
                        help='comma-separated ORT providers (default tensorrt,cuda,openvino,cpu '
                             'as available)')
    parser.add_argument('--no-torch', action='store_true', help='skip the torch eager run')
    parser.add_argument('--no-lircdepth', action='store_true', help='skip the LiRCDepth run')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--out', type=Path, default=None, metavar='JSON',
                        help='also write the report there (docs/bench/*.json: the figures the '
                             'docs quote)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the report (table or JSON) and write it to ``--out``; returns 0."""
    from xdrcdepth_ros.benchmark import BenchOptions, run_benchmark

    report = run_benchmark(BenchOptions(
        model=args.model, height=args.height, width=args.width,
        **({'dataroot': args.dataroot} if args.dataroot else {}),
        iterations=args.iterations, warmup=args.warmup, threads=args.threads,
        no_spinning=args.no_spinning,
        providers=args.providers.split(',') if args.providers else None,
        no_torch=args.no_torch, no_lircdepth=args.no_lircdepth))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + '\n')
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def _print_table(report: dict[str, Any]) -> None:
    """The report as a short table."""
    print(f'xdrcdepth bench {report["height"]}x{report["width"]} on {report["provider"]}, '
          f'{report["threads"]} threads, {report["iterations"]} frames '
          f'({report["frames"]} real nuScenes keyframes)')
    print(f'model: {report["model"]["name"]} ({report["model"]["source"]})')
    print(f'{"stage":<14}{"median ms":>12}{"p90 ms":>10}{"p99 ms":>10}')
    rows = dict(report['stages_ms'], pipeline=report['pipeline_ms'])
    if report['torch_eager_ms']:
        rows['torch eager'] = report['torch_eager_ms']
    if report['lircdepth_ms']:
        rows['LiRCDepth'] = report['lircdepth_ms']
    for name, stats in rows.items():
        print(f'{name:<14}{stats["median"]:>12.1f}{stats["p90"]:>10.1f}{stats["p99"]:>10.1f}')
    print(f'FPS {report["fps"]:.2f}; pre+post {report["pre_post_fraction"] * 100:.1f} % of the '
          'frame')
    if report['speedup_vs_torch']:
        print(f'speed-up vs torch eager: {report["speedup_vs_torch"]:.2f}x')
    if report['speedup_vs_lircdepth']:
        print(f'speed-up vs LiRCDepth (ORT): {report["speedup_vs_lircdepth"]:.2f}x')
    for note in report['notes']:
        print(f'note: {note}')
