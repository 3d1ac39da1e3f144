"""``xdrcdepth bench``: per-stage latency of the depth pipeline on the bundled real frames.

Runs, interleaved frame by frame so machine load hits all of them alike: the student through
``DepthPipeline`` (preprocess → onnxruntime → postprocess), the same model in torch eager
(``inference_mode``, same weights, same preprocessed inputs, same thread count), and the
LiRCDepth reference exported and run through ``DepthPipeline`` the same way at the same size.

Examples:
    xdrcdepth bench
    xdrcdepth bench --height 896 --width 1600 --iterations 10 --json
    xdrcdepth bench --model models/xdrcdepth_student.onnx --no-lircdepth
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
import platform
import tempfile
import time
from typing import Any, Callable

import numpy as np

from xdrcdepth_ros.core.pipeline import STAGES

DEFAULT_DATAROOT = Path(__file__).resolve().parents[2] / 'test' / 'data' / 'nuscenes'
RADARS = ('RADAR_FRONT', 'RADAR_FRONT_LEFT', 'RADAR_FRONT_RIGHT')


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
    parser.add_argument('--dataroot', default=str(DEFAULT_DATAROOT),
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
                        help='comma-separated ORT providers (default tensorrt,cuda,openvino,cpu as '
                             'available)')
    parser.add_argument('--no-torch', action='store_true', help='skip the torch eager run')
    parser.add_argument('--no-lircdepth', action='store_true', help='skip the LiRCDepth run')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.set_defaults(func=run)


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {'median': float(np.median(array)), 'p90': float(np.percentile(array, 90)),
            'p99': float(np.percentile(array, 99))}


def _cpu_counters() -> tuple[float, float, float] | None:
    """(wall s, whole-machine busy CPU s, this process's CPU s), or None off Linux."""
    import resource

    try:
        fields = Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:9]
    except OSError:
        return None
    ticks = [int(value) for value in fields]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK')  # minus idle, iowait
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.monotonic(), busy, usage.ru_utime + usage.ru_stime


def _other_load(start: tuple[float, float, float] | None) -> float | None:
    """Mean number of cores other processes kept busy since ``start`` (shared machines)."""
    end = _cpu_counters()
    if start is None or end is None or end[0] <= start[0]:
        return None
    return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]))


def _frames(dataroot: Path, radar_fields: tuple[str, ...]) -> list[Any]:
    """The keyframes as pipeline Frames: CAM_FRONT + the three front radars."""
    from xdrcdepth_ros.core.frame import Frame, RadarSweep
    from xdrcdepth_ros.core.nuscenes_io import NuScenesTables, radar_xyz

    if not dataroot.is_dir():
        raise FileNotFoundError(f'no nuScenes frames at {dataroot}; pass --dataroot')
    frames = []
    for keyframe in NuScenesTables(dataroot).keyframes():
        sweeps = []
        for channel in RADARS:
            cloud = keyframe.read_radar(channel)
            missing = [name for name in radar_fields if name not in cloud.dtype.names]
            if missing:
                raise ValueError(f'{channel} has no fields {missing} (model radar_fields '
                                 f'{list(radar_fields)})')
            features = np.stack([cloud[name] for name in radar_fields], axis=1)
            sweeps.append(RadarSweep(radar_xyz(cloud), features.astype(np.float32),
                                     keyframe.T_cam_from(channel), frame_id=channel.lower()))
        frames.append(Frame(keyframe.read_image(), keyframe.K, tuple(sweeps),
                            keyframe.camera.timestamp_us * 1000, 'cam_front'))
    if not frames:
        raise ValueError(f'{dataroot} holds no CAM_FRONT keyframes')
    return frames


def _size(args: argparse.Namespace, model: Path | None) -> tuple[int, int]:
    if (args.height is None) != (args.width is None):
        raise ValueError('give both --height and --width, or neither')
    if args.height is not None:
        from xdrcdepth_ros.core.geometry import check_model_size

        check_model_size(args.height, args.width)
        return args.height, args.width
    if model is not None:
        from xdrcdepth_ros.core.engine import read_metadata

        meta = read_metadata(model)
        return meta.input_height, meta.input_width
    return 352, 704


def _torch_model(meta: Any, student: Any) -> tuple[Any, str]:
    """The eager model: the exported one, its checkpoint, or a random init of the same variant."""
    import torch

    from xdrcdepth_ros.model import create_model, load_checkpoint

    if student is not None:
        return student, 'same weights as the exported model'
    if meta.checkpoint and Path(meta.checkpoint).is_file():
        return load_checkpoint(meta.checkpoint)[0], f'checkpoint {meta.checkpoint}'
    torch.manual_seed(0)
    model = create_model(meta.model_name, **dict(meta.model_kwargs)).eval()
    return model, 'random init of the same variant (same speed, different weights)'


def _eager_runner(model: Any, with_saliency: bool, threads: int,
                  use_cuda: bool) -> Callable[[np.ndarray, np.ndarray], float]:
    import torch

    from xdrcdepth_ros.export import ExportWrapper

    torch.set_num_threads(threads)
    device = torch.device('cuda' if use_cuda else 'cpu')
    wrapper = ExportWrapper(model.eval(), with_saliency=with_saliency).to(device).eval()

    def run_once(image: np.ndarray, radar: np.ndarray) -> float:
        start = time.perf_counter_ns()
        with torch.inference_mode():
            wrapper(torch.from_numpy(image[None]).to(device),
                    torch.from_numpy(radar[None]).to(device))
            if use_cuda:
                torch.cuda.synchronize()
        return (time.perf_counter_ns() - start) / 1e6
    return run_once


def run(args: argparse.Namespace) -> int:
    """Benchmark and print the report; returns 0."""
    from tqdm import tqdm

    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    if args.iterations < 1 or args.warmup < 0 or args.threads < 0:
        raise ValueError('--iterations must be >= 1, --warmup and --threads >= 0')
    from xdrcdepth_ros.core.config import default_model_path

    shipped = default_model_path()
    model_path = Path(args.model) if args.model else (shipped if shipped.is_file() else None)
    if model_path is not None and not model_path.is_file():
        raise FileNotFoundError(f'model file not found: {model_path}')
    height, width = _size(args, model_path)
    want_torch, want_lirc = not args.no_torch, not args.no_lircdepth
    torch_available = True
    try:
        import torch
        threads = args.threads or torch.get_num_threads()
    except ImportError:
        torch_available, want_torch, threads = False, False, args.threads or os.cpu_count() or 1
    providers = args.providers.split(',') if args.providers else None
    notes: list[str] = []

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='xdrcdepth_bench_')))
        student_torch, source = None, 'file'
        if model_path is not None:
            from xdrcdepth_ros.core.engine import read_metadata

            meta = read_metadata(model_path)
            if (meta.input_height, meta.input_width) != (height, width):
                if not torch_available:
                    raise ValueError(f'{model_path} is {meta.input_height}x{meta.input_width}; '
                                     'exporting another size needs torch')
                model_path, student_torch = _reexport(meta, tmp, height, width)
                source = f're-exported at {height}x{width} from {args.model or shipped}'
        else:
            if not torch_available:
                raise ValueError('no model given and torch is missing to export one')
            model_path, student_torch = _export_random('xdrcdepth', tmp, height, width)
            source = 'random init (no trained model found; random weights have the same speed)'
        engine_options = dict(providers=providers, intra_op_threads=threads, warmup=2,
                              cpu_spinning=not args.no_spinning)
        engine = stack.enter_context(Engine(model_path, **engine_options))
        meta = engine.metadata
        pipeline = DepthPipeline(engine)
        frames = _frames(Path(args.dataroot), meta.radar_fields)
        eager = None
        if want_torch:
            model, eager_source = _torch_model(meta, student_torch)
            notes.append(f'torch eager: {eager_source}')
            eager = _eager_runner(model, meta.has_saliency, threads,
                                  engine.provider.is_gpu and torch.cuda.is_available())
        lirc_pipeline = None
        if want_lirc and torch_available:
            lirc_path, _ = _export_random('lircdepth', tmp, height, width)
            lirc_engine = stack.enter_context(Engine(lirc_path, **engine_options))
            lirc_pipeline = DepthPipeline(lirc_engine)
        elif want_lirc:
            notes.append('LiRCDepth skipped: exporting it needs torch')

        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        totals, eager_ms, lirc_totals = [], [], []
        lirc_stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        steps = range(args.warmup + args.iterations)
        counters = _cpu_counters()
        for step in tqdm(steps, desc=f'bench {height}x{width}', unit='frame', disable=None):
            frame = frames[step % len(frames)]
            result = pipeline.run(frame)
            eager_time = eager(result.image, result.radar_map) if eager else None
            lirc = lirc_pipeline.run(frame) if lirc_pipeline else None
            if step < args.warmup:
                continue
            for stage in STAGES:
                stages[stage].append(result.timings_ms[stage])
            totals.append(sum(result.timings_ms.values()))
            if eager_time is not None:
                eager_ms.append(eager_time)
            if lirc is not None:
                for stage in STAGES:
                    lirc_stages[stage].append(lirc.timings_ms[stage])
                lirc_totals.append(sum(lirc.timings_ms.values()))
        other_load = _other_load(counters)
        if other_load is not None and other_load > 0.25:
            notes.append(f'other processes kept {other_load:.2f} cores busy during the run; '
                         'timings (torch eager most of all) are inflated')

    report = _report(height, width, engine, meta, model_path, source, threads, frames, args,
                     stages, totals, eager_ms, lirc_stages, lirc_totals, notes, other_load)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def _export_random(name: str, folder: Path, height: int, width: int) -> tuple[Path, Any]:
    import torch

    from xdrcdepth_ros.export import export_model
    from xdrcdepth_ros.model import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    out = folder / f'{name}_{height}x{width}.onnx'
    export_model(model, out, height=height, width=width, model_name=name,
                 training_data='none: random initialisation (seed 0)')
    return out, model


def _reexport(meta: Any, folder: Path, height: int, width: int) -> tuple[Path, Any]:
    from xdrcdepth_ros.export import export_checkpoint

    if meta.checkpoint and Path(meta.checkpoint).is_file():
        out = folder / f'{meta.model_name}_{height}x{width}.onnx'
        export_checkpoint(meta.checkpoint, out, height=height, width=width)
        return out, None
    return _export_random(meta.model_name, folder, height, width)


def _report(height: int, width: int, engine: Any, meta: Any, model_path: Path, source: str,
            threads: int, frames: list[Any], args: argparse.Namespace,
            stages: dict[str, list[float]], totals: list[float], eager_ms: list[float],
            lirc_stages: dict[str, list[float]], lirc_totals: list[float],
            notes: list[str], other_load: float | None) -> dict[str, Any]:
    import onnxruntime

    pipeline_median = float(np.median(totals))
    stage_stats = {stage: _stats(values) for stage, values in stages.items()}
    eager_median = float(np.median(eager_ms)) if eager_ms else None
    lirc_median = float(np.median(lirc_totals)) if lirc_totals else None
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        'height': height, 'width': width, 'provider': engine.provider.value,
        'stages_ms': stage_stats,
        'pipeline_ms': _stats(totals),
        'pipeline_ms_median': pipeline_median,
        'fps': 1000.0 / pipeline_median,
        'torch_eager_ms': _stats(eager_ms) if eager_ms else None,
        'torch_eager_ms_median': eager_median,
        'speedup_vs_torch': eager_median / pipeline_median if eager_median else None,
        'pre_post_fraction': (pipeline_median - stage_stats['engine']['median'])
        / pipeline_median,
        'lircdepth_ms': _stats(lirc_totals) if lirc_totals else None,
        'lircdepth_stages_ms': ({stage: _stats(v) for stage, v in lirc_stages.items()}
                                if lirc_totals else None),
        'lircdepth_ms_median': lirc_median,
        'speedup_vs_lircdepth': lirc_median / pipeline_median if lirc_median else None,
        'model': {'path': str(model_path), 'name': meta.model_name, 'source': source,
                  'parameter_count': meta.parameter_count, 'outputs': list(meta.outputs)},
        'threads': threads, 'cpu_spinning': not args.no_spinning,
        'iterations': args.iterations, 'warmup': args.warmup,
        'frames': len(frames), 'radars': list(RADARS),
        'onnxruntime': onnxruntime.__version__, 'torch': torch_version,
        'cpu': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
        'other_load_cores': other_load,
        'notes': notes,
    }


def _print_table(report: dict[str, Any]) -> None:
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
