"""The one-command demo: bundled nuScenes frames → bag → node (or replay) → depth bag → metrics.

Writes into one folder::

    input_bag/       the converted frames (rosbag2, sqlite3) + params/ per scene
    depth_bag/       the node's outputs recorded from DDS (or written by replay) + input topics
    params/          the parameter files the node ran with (node backend)
    panels/          one PNG per frame: image | radar | depth | saliency | error
    projection.png   LiDAR and radar projected into the camera (geometry check)
    summary.json     frames, backend, model, metrics (MAE/RMSE at 80 m, all caps), latency
    report.txt       the same as a short text report
"""
from __future__ import annotations

import json
from pathlib import Path
import shutil
import time
from typing import Any

from xdrcdepth_ros.bag.convert import convert_nuscenes
from xdrcdepth_ros.bag.evaluate import evaluate_bag
from xdrcdepth_ros.bag.io import BagReader, BagWriter
from xdrcdepth_ros.bag.replay import bag_scenes, replay_bag
from xdrcdepth_ros.core.errors import XdrcDepthError

BUNDLED = Path(__file__).resolve().parents[2] / 'test' / 'data' / 'nuscenes'
BACKENDS = ('auto', 'node', 'replay')
# The demo wants every output: colour depth for RViz, saliency for the panels. The node waits
# for radar in wall time; a longer wait than on a vehicle keeps a busy machine (the demo runs
# beside installs and tests) from releasing a frame before its sweeps were delivered, so the
# node and replay backends give the same depth.
DEMO_OVERRIDES = {'publish_color': True, 'publish_saliency': True, 'sync_wait_s': 0.5,
                  'output_size': 'camera'}  # the camera's full 1600x900, as a user sees it


def resolve_model(model: str | Path | None, out: Path, log: Any) -> tuple[Path, str]:
    """The model to run and a note on where it came from.

    Without ``model`` the shipped ``models/xdrcdepth_student.onnx`` is used; if that is missing a
    randomly initialised tiny student is exported (needs torch) and the note says the depth is
    meaningless.
    """
    from xdrcdepth_ros.core.config import default_model_path

    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f'model file {str(path)!r} not found')
        return path, 'given with --model'
    shipped = default_model_path()
    if shipped.is_file():
        return shipped, 'the shipped model'
    log(f'WARNING: no trained model at {shipped}; exporting a RANDOM tiny model instead. '
        'Its depth is meaningless: the demo then only shows that the chain runs.')
    try:
        from xdrcdepth_ros.export import export_random
    except ImportError as err:
        raise XdrcDepthError(f'no model at {shipped} and torch is not installed to export a '
                             f'stand-in ({err}); pass --model PATH') from err
    result = export_random('xdrcdepth_tiny', out / 'model' / 'xdrcdepth_tiny_random.onnx',
                           height=192, width=352, seed=0)
    return result.onnx_path, 'RANDOM weights (no trained model shipped): depth is meaningless'


def _copy_inputs(source: Path, writer: BagWriter) -> None:
    with BagReader(source) as reader:
        for message in reader.messages():
            writer.write_raw(message.topic, message.msgtype, message.stamp_ns, message.raw,
                             qos=message.qos)


def run_demo(out: str | Path = 'demo_output', *, model: str | Path | None = None,
             backend: str = 'auto', dataroot: str | Path = BUNDLED, progress: bool = True,
             log: Any = print) -> dict[str, Any]:
    """Run the whole chain on the bundled frames; returns the summary (also in summary.json).

    Args:
        out: output folder (the demo's files in it are replaced).
        model: ONNX model; default the shipped one (see :func:`resolve_model`).
        backend: ``node`` (rclpy over DDS), ``replay`` (no ROS), or ``auto`` (node if rclpy
            imports).
        dataroot: nuScenes folder to convert.
        progress: progress bars.
        log: where progress lines go.

    Raises:
        ValueError: unknown backend; XdrcDepthError: node requested but rclpy is missing.
    """
    from xdrcdepth_ros.bag.node_run import rclpy_available
    from xdrcdepth_ros.bag.projection import write_projection_panel

    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_path, model_note = resolve_model(model, out, log)
    overrides = {**DEMO_OVERRIDES, 'model_path': str(model_path.resolve())}
    log(f'[1/4] converting {dataroot} -> {out / "input_bag"}')
    converted = convert_nuscenes(dataroot, out / 'input_bag', overwrite=True, progress=progress)
    use_node = backend == 'node' or (backend == 'auto' and rclpy_available())
    if backend == 'node' and not rclpy_available():
        raise XdrcDepthError('backend node needs rclpy and the ROS message packages '
                             "(pip install -e '.[ros]'); use --backend replay")
    depth_bag = out / 'depth_bag'
    frames: dict[str, Any] = {}
    if use_node:
        log('[2/4] running the xdrcdepth node in-process, fed by the bag player over DDS '
            '(localhost, private ROS domain)')
        try:
            frames = node_backend(out / 'input_bag', depth_bag, out / 'params', overrides)
        except Exception as err:  # noqa: BLE001 - auto falls back; an explicit node re-raises
            if backend == 'node':
                raise
            log(f'WARNING: the node run failed ({type(err).__name__}: {err}); falling back to '
                'offline replay')
            frames = {'node_error': f'{type(err).__name__}: {err}'}
            use_node = False
    if not use_node:
        log('[2/4] offline replay (the node\'s sync + pipeline, no ROS runtime)')
        summary = replay_bag(out / 'input_bag', depth_bag, overrides=overrides, overwrite=True,
                             progress=progress)
        frames.update({'frames_in': summary.frames_in, 'frames_out': summary.frames_out,
                       'provider': summary.provider, 'drops': summary.drops,
                       'latency_ms': summary.latency_ms, 'run_s': round(summary.wall_s, 2)})
    log(f'[3/4] evaluating {depth_bag} against LiDAR -> {out / "panels"}')
    shutil.rmtree(out / 'panels', ignore_errors=True)
    evaluation = evaluate_bag(depth_bag, panels_dir=out / 'panels', progress=progress)
    log('[4/4] projection check -> projection.png')
    write_projection_panel(dataroot, out / 'projection.png')
    result = evaluation.to_dict()
    at_80 = result['mean']['80']
    summary_data = {
        'backend': 'node' if use_node else 'replay', **frames,
        'model': str(model_path), 'model_note': model_note,
        'scenes': list(converted.scenes),
        'metrics': {'cap_m': 80.0, 'mae_m': at_80['mae_m'], 'rmse_m': at_80['rmse_m'],
                    'n_frames': len(result['frames']), 'by_cap': result['mean']},
        'per_frame': result['frames'],
        'paths': {'input_bag': str(out / 'input_bag'), 'depth_bag': str(depth_bag),
                  'panels': str(out / 'panels'), 'projection': str(out / 'projection.png'),
                  'summary': str(out / 'summary.json'), 'report': str(out / 'report.txt')},
        'wall_s': round(time.perf_counter() - started, 2),
    }
    (out / 'summary.json').write_text(json.dumps(summary_data, indent=2, allow_nan=False))
    (out / 'report.txt').write_text(report_text(summary_data, evaluation.mean))
    return summary_data


def node_backend(input_bag: Path, depth_bag: Path, params_dir: Path,
                 overrides: dict[str, Any]) -> dict[str, Any]:
    """Run the node (rclpy over DDS) on a converter bag scene by scene, record its outputs and
    the bag's inputs into ``depth_bag`` (replaced); returns the frame summary.

    Raises:
        XdrcDepthError: the node published no depth.
    """
    from xdrcdepth_ros.bag.node_run import run_node_on_bag

    with BagWriter(depth_bag, overwrite=True) as writer:
        run = run_node_on_bag(input_bag, writer, bag_scenes(input_bag), params_dir, overrides)
        if run.frames_out == 0:
            raise XdrcDepthError(f'the node published no depth for {run.frames_in} images '
                                 f'(diagnostics: {run.diagnostics})')
        _copy_inputs(input_bag, writer)
    return {'frames_in': run.frames_in, 'frames_out': run.frames_out, 'provider': run.provider,
            'latency_ms': run.latency_ms, 'node_diagnostics': run.diagnostics,
            'run_s': round(run.wall_s, 2)}


def report_text(summary: dict[str, Any], mean: dict[float, dict[str, float]]) -> str:
    """The short text report (report.txt and the end of the demo's output)."""
    from xdrcdepth_ros.core.evaluate import format_table

    metrics = summary['metrics']

    def metres(value: float | None) -> str:
        return 'n/a' if value is None else f'{value:.3f} m'

    lines = [
        'xdrcdepth demo: bundled nuScenes frames (CC BY-NC-SA 4.0, nuScenes by Motional)',
        f'backend: {summary["backend"]}   frames in/out: {summary["frames_in"]}/'
        f'{summary["frames_out"]}   provider: {summary.get("provider", "?")}',
        f'model: {summary["model"]} ({summary["model_note"]})',
        f'depth vs LiDAR, 0-80 m: MAE {metres(metrics["mae_m"])}, RMSE '
        f'{metres(metrics["rmse_m"])} over {metrics["n_frames"]} frames',
        '', format_table(mean), '',
    ]
    lines += [f'{name:12s} {path}' for name, path in summary['paths'].items()]
    return '\n'.join(lines) + '\n'
