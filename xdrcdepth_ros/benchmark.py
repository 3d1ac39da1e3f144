"""Per-stage latency of the depth pipeline on the bundled real frames (``xdrcdepth bench``).

Runs, interleaved frame by frame so machine load hits all of them alike: the student through
``DepthPipeline`` (preprocess → onnxruntime → postprocess), the same model in torch eager
(``inference_mode``, same weights, same preprocessed inputs, same thread count), and the
LiRCDepth reference exported and run through ``DepthPipeline`` the same way at the same size.
The report (:func:`run_benchmark`) is a JSON-ready dict with the machine it ran on
(:func:`machine_info`: the CPU model as ``lscpu`` names it); the figures quoted in the docs are
such reports, committed under ``docs/bench/``. torch is imported only when a run needs it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import os
from pathlib import Path
import platform
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

from xdrcdepth_ros.core.pipeline import STAGES

DEFAULT_DATAROOT = Path(__file__).resolve().parents[1] / 'test' / 'data' / 'nuscenes'
RADARS = ('RADAR_FRONT', 'RADAR_FRONT_LEFT', 'RADAR_FRONT_RIGHT')


@dataclass(frozen=True)
class BenchOptions:
    """What :func:`run_benchmark` runs (the ``xdrcdepth bench`` options).

    Attributes:
        model: exported .onnx; None = the shipped model if present, else a random student.
        height, width: input size, px (both or neither; default the model's, else 352x704).
        dataroot: nuScenes folder with the frames.
        iterations: timed frames; warmup: untimed frames first.
        threads: CPU threads for ORT and torch (0: torch's default).
        no_spinning: ORT worker threads sleep instead of spinning.
        providers: ORT providers (None: the engine's default order).
        no_torch, no_lircdepth: skip the torch eager / LiRCDepth run.
    """

    model: str | None = None
    height: int | None = None
    width: int | None = None
    dataroot: str = str(DEFAULT_DATAROOT)
    iterations: int = 20
    warmup: int = 2
    threads: int = 0
    no_spinning: bool = False
    providers: Sequence[str] | None = None
    no_torch: bool = False
    no_lircdepth: bool = False


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (``/proc/cpuinfo``), else the platform's."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: CPU model, logical CPUs, 1-minute load average (None off Unix)."""
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    return {'cpu': cpu_model(), 'cpu_count': os.cpu_count(), 'load_average_1min': load}


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


def bench_frames(dataroot: Path, radar_fields: tuple[str, ...]) -> list[Any]:
    """The keyframes as pipeline Frames: CAM_FRONT + the three front radars."""
    from xdrcdepth_ros.core.frame import Frame, RadarSweep
    from xdrcdepth_ros.core.nuscenes_io import NuScenesTables, radar_xyz

    if not dataroot.is_dir():
        raise FileNotFoundError(f'no nuScenes frames at {dataroot}')
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


def _size(options: BenchOptions, model: Path | None) -> tuple[int, int]:
    if (options.height is None) != (options.width is None):
        raise ValueError('give both height and width, or neither')
    if options.height is not None and options.width is not None:
        from xdrcdepth_ros.core.geometry import check_model_size

        check_model_size(options.height, options.width)
        return options.height, options.width
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


def run_benchmark(options: BenchOptions) -> dict[str, Any]:
    """Benchmark as :class:`BenchOptions` say; returns the report (see the module docstring).

    Raises:
        FileNotFoundError: the model or the frames are missing.
        ValueError: bad options, or torch is needed (another size, no model) and missing.
    """
    from tqdm import tqdm

    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.core.pipeline import DepthPipeline

    if options.iterations < 1 or options.warmup < 0 or options.threads < 0:
        raise ValueError('iterations must be >= 1, warmup and threads >= 0')
    from xdrcdepth_ros.core.config import default_model_path

    shipped = default_model_path()
    model_path = Path(options.model) if options.model else (shipped if shipped.is_file() else None)
    if model_path is not None and not model_path.is_file():
        raise FileNotFoundError(f'model file not found: {model_path}')
    height, width = _size(options, model_path)
    want_torch, want_lirc = not options.no_torch, not options.no_lircdepth
    torch_available = True
    try:
        import torch
        threads = options.threads or torch.get_num_threads()
    except ImportError:
        torch_available, want_torch, threads = False, False, options.threads or os.cpu_count() or 1
    providers = list(options.providers) if options.providers else None
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
                origin = options.model or shipped
                source = (f're-exported at {height}x{width} from the checkpoint of {origin}'
                          if student_torch is None else
                          f'random init of {meta.model_name} at {height}x{width} ({origin}\'s '
                          'checkpoint is missing; random weights have the same speed)')
        else:
            if not torch_available:
                raise ValueError('no model given and torch is missing to export one')
            model_path, student_torch = _export_random('xdrcdepth', tmp, height, width)
            source = 'random init (no trained model found; random weights have the same speed)'
        engine_options = dict(providers=providers, intra_op_threads=threads, warmup=2,
                              cpu_spinning=not options.no_spinning)
        engine = stack.enter_context(Engine(model_path, **engine_options))
        meta = engine.metadata
        pipeline = DepthPipeline(engine)
        frames = bench_frames(Path(options.dataroot), meta.radar_fields)
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
        steps = range(options.warmup + options.iterations)
        counters = _cpu_counters()
        for step in tqdm(steps, desc=f'bench {height}x{width}', unit='frame', disable=None):
            frame = frames[step % len(frames)]
            result = pipeline.run(frame)
            eager_time = eager(result.image, result.radar_map) if eager else None
            lirc = lirc_pipeline.run(frame) if lirc_pipeline else None
            if step < options.warmup:
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

    return _report(height, width, engine, meta, model_path, source, threads, frames, options,
                   stages, totals, eager_ms, lirc_stages, lirc_totals, notes, other_load)


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
    """The model at another size: from its checkpoint (torch model None), else a random init
    of the same variant (and that torch model)."""
    from xdrcdepth_ros.export import export_checkpoint

    if meta.checkpoint and Path(meta.checkpoint).is_file():
        out = folder / f'{meta.model_name}_{height}x{width}.onnx'
        export_checkpoint(meta.checkpoint, out, height=height, width=width)
        return out, None
    return _export_random(meta.model_name, folder, height, width)


def _report(height: int, width: int, engine: Any, meta: Any, model_path: Path, source: str,
            threads: int, frames: list[Any], options: BenchOptions,
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
        'threads': threads, 'cpu_spinning': not options.no_spinning,
        'iterations': options.iterations, 'warmup': options.warmup,
        'frames': len(frames), 'radars': list(RADARS),
        'onnxruntime': onnxruntime.__version__, 'torch': torch_version,
        **machine_info(), 'other_load_cores': other_load,
        'notes': notes,
    }
