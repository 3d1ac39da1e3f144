"""Export a trained model to ONNX with metadata, and prove the export matches torch.

The exported graph takes what the node has at hand: ``image`` (1, H, W, 3) uint8 RGB pixels
(cast, /255 and NHWC→NCHW happen inside the graph; ImageNet normalisation is inside the model) and
``radar`` (1, C, H, W) float32, the raw radar map from :func:`geometry.radar_map`. It returns
``depth`` (1, 1, H, W) metres and, for the student, ``saliency`` (1, 1, H, W) in [0, 1] (the
closed-form Grad-CAM). Every export is checked with ``onnx.checker`` and run through onnxruntime
on CPU against torch; a relative error above ``rtol`` fails the export and nothing is written.

Output files (written atomically): ``NAME.onnx`` with the metadata JSON under metadata_props key
``xdrcdepth``, the same JSON in ``NAME.json``, and optionally ``NAME.fp16.onnx`` + ``.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import datetime
import os
from pathlib import Path
import subprocess
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from xdrcdepth_ros.core.engine import (DEFAULT_RADAR_FIELDS, IMAGENET_MEAN, IMAGENET_STD,
                                       METADATA_KEY, ModelMetadata, RADAR_UNITS, sidecar_path)
from xdrcdepth_ros.core.geometry import DEFAULT_RADAR_CHANNELS
from xdrcdepth_ros.core.errors import XdrcDepthError
from xdrcdepth_ros.core.geometry import check_model_size, RadarChannel
from xdrcdepth_ros.core.model_metadata import ExportTarget
from xdrcdepth_ros.core.onnx_passes import optimize_for_cpu

DEFAULT_OPSET = 18
DEFAULT_RTOL = 1e-4
#: Errors are relative to max(|reference|, floor): 1 m for depth, full scale for saliency.
_ERROR_FLOOR = {'depth': 1.0, 'saliency': 1.0}


class ExportError(XdrcDepthError):
    """The export failed a check (checker, or ORT disagrees with torch); nothing was written."""


class ExportWrapper(nn.Module):
    """Wraps a model so its graph takes raw camera pixels: (1, H, W, 3) uint8 RGB + radar map.

    Args:
        model: a model following the package contract (``forward(image, radar) ->
            ModelOutput``; the student also has ``forward_with_saliency``).
        with_saliency: also output the Grad-CAM saliency (needs ``forward_with_saliency``).
    """

    def __init__(self, model: nn.Module, *, with_saliency: bool) -> None:
        super().__init__()
        if with_saliency and not hasattr(model, 'forward_with_saliency'):
            raise ValueError(f'{type(model).__name__} has no forward_with_saliency(); export it '
                             'with depth only')
        self.model = model
        self.with_saliency = with_saliency

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> Any:
        """(1, H, W, 3) uint8/float 0..255 + (1, C, H, W) → depth (1, 1, H, W) [, saliency]."""
        rgb = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        if self.with_saliency:
            depth, saliency = self.model.forward_with_saliency(rgb, radar)
            return depth, saliency
        output = self.model(rgb, radar)
        return getattr(output, 'depth', output)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how closely ORT matched torch.

    Attributes:
        onnx_path: the FP32 model.
        json_path: its sidecar metadata.
        metadata: the metadata written to both places.
        max_rel_error: per output, max |ORT − torch| / max(|torch|, 1 unit).
        fp16_path: the FP16 copy for GPUs, or None.
        fp16_max_rel_error: the same comparison for the FP16 copy run on CPU (informative:
            FP16 numerics differ by device), empty without a copy.
        zero_outputs: outputs that torch gave as all zeros on the parity input, so their
            comparison proves little (a trained model's saliency often is, on the synthetic
            input; compare on real frames then).
    """

    onnx_path: Path
    json_path: Path
    metadata: ModelMetadata
    max_rel_error: dict[str, float]
    fp16_path: Path | None = None
    fp16_max_rel_error: dict[str, float] = field(default_factory=dict)
    zero_outputs: tuple[str, ...] = ()


def git_revision(cwd: str | Path | None = None) -> str:
    """Return ``git describe --always --dirty`` of the source tree, or 'unknown'."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        result = subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=12'],
                                cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return result.stdout.strip() or 'unknown'


def example_inputs(height: int, width: int, channels: int, *,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic parity inputs: a random RGB image and a sparse radar map (~0.5 % filled).

    Returns:
        (H, W, 3) uint8 and (C, H, W) float32 (depth 2..80 m, features roughly RCS/velocity).
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    radar = np.zeros((channels, height, width), dtype=np.float32)
    count = max(1, height * width // 200)
    rows = rng.integers(0, height, count)
    cols = rng.integers(0, width, count)
    radar[0, rows, cols] = rng.uniform(2.0, 80.0, count)
    for channel in range(1, channels):
        radar[channel, rows, cols] = rng.normal(0.0, 5.0, count)
    return image, radar


def _torch_reference(wrapper: ExportWrapper, image: np.ndarray,
                     radar: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        outputs = wrapper(torch.from_numpy(image[None].copy()), torch.from_numpy(radar[None]))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    names = ('depth', 'saliency')[:len(outputs)]
    return {name: value.detach().numpy() for name, value in zip(names, outputs)}


def compare_outputs(ort_outputs: Mapping[str, np.ndarray],
                    reference: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per output, max |a − b| / max(|b|, floor) (floor 1 m for depth, 1 for saliency)."""
    errors = {}
    for name, ref in reference.items():
        got = np.asarray(ort_outputs[name], dtype=np.float64).reshape(ref.shape)
        ref = np.asarray(ref, dtype=np.float64)
        if not np.all(np.isfinite(got)) or not np.all(np.isfinite(ref)):
            errors[name] = float('inf')
            continue
        scale = np.maximum(np.abs(ref), _ERROR_FLOOR.get(name, 1.0))
        errors[name] = float(np.max(np.abs(got - ref) / scale))
    return errors


def _radar_channels(model: nn.Module,
                    names: Sequence[RadarChannel | str] | None) -> tuple[RadarChannel, ...]:
    count = getattr(model, 'radar_channels', None)
    count = len(count) if isinstance(count, (tuple, list)) else count
    if names is None:
        names = DEFAULT_RADAR_CHANNELS[:count] if count else DEFAULT_RADAR_CHANNELS
    try:
        channels = tuple(RadarChannel(getattr(name, 'value', name)) for name in names)
    except ValueError as err:
        raise ValueError(f'unknown radar channel in {list(names)}: {err}') from err
    if count is not None and len(channels) != count:
        raise ValueError(f'the model takes {count} radar channels but {len(channels)} names '
                         f'were given: {[c.value for c in channels]}')
    return channels


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary sibling and rename, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _with_metadata(model_proto: Any, metadata: ModelMetadata) -> bytes:
    del model_proto.metadata_props[:]
    entry = model_proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    model_proto.producer_name = 'xdrcdepth_ros'
    return model_proto.SerializeToString()


def _to_fp16(model_proto: Any) -> Any:
    """FP16 weights and compute, FP32/uint8 inputs and outputs (same interface as FP32)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model_proto, keep_io_types=True, disable_shape_infer=False)


def _run_ort(onnx_bytes: bytes, image: np.ndarray, radar: np.ndarray,
             outputs: Sequence[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, sess_options=options,
                                   providers=['CPUExecutionProvider'])
    values = session.run(list(outputs), {'image': image[None], 'radar': radar[None]})
    return dict(zip(outputs, values))


def export_model(model: nn.Module, out: str | Path, *, height: int, width: int,
                 model_name: str, with_saliency: bool | None = None,
                 radar_channels: Sequence[RadarChannel | str] | None = None,
                 radar_fields: Sequence[str] = DEFAULT_RADAR_FIELDS,
                 radar_sensors: Sequence[str] = (), vertical_crop: str = 'bottom',
                 training_data: str = '', metrics: Mapping[str, float] | None = None,
                 checkpoint: str = '', model_kwargs: Mapping[str, Any] | None = None,
                 opset: int = DEFAULT_OPSET, rtol: float = DEFAULT_RTOL,
                 fp16: bool = False, target: ExportTarget | str = ExportTarget.CPU
                 ) -> ExportResult:
    """Export ``model`` at a fixed ``height`` x ``width`` to ``out`` (+ sidecar JSON).

    Args:
        model: a model following the package contract; put in eval mode here.
        out: destination ``.onnx`` path.
        height: input height, pixels (multiple of 32).
        width: input width, pixels (multiple of 32).
        model_name: recorded in the metadata (e.g. ``xdrcdepth``).
        with_saliency: export the saliency output; default: if the model has
            ``forward_with_saliency``.
        radar_channels: radar map channel names; default depth/rcs/vx/vy (checked against the
            model's ``radar_channels`` count).
        radar_fields: PointCloud2 fields feeding the channels after depth.
        radar_sensors: radars the model was trained with (metadata, informative).
        vertical_crop: rows the pipeline keeps of a taller camera image (metadata).
        training_data: description recorded in the metadata.
        metrics: evaluation metrics recorded in the metadata.
        checkpoint: source checkpoint path recorded in the metadata ('' = random init).
        model_kwargs: constructor kwargs recorded in the metadata.
        opset: ONNX opset (>= 17).
        rtol: tolerated relative error of ORT against torch (see :func:`compare_outputs`).
        fp16: also write ``NAME.fp16.onnx`` (FP16 weights, same inputs/outputs) for GPUs.
        target: ``cpu`` applies the exact CPU rewrites of ``core.onnx_passes`` (measured on
            onnxruntime's CPU kernels and OpenVINO); ``gpu`` leaves the graph as torch
            exported it. The metadata records the target and the passes applied.

    Raises:
        ExportError: the checker or the ORT-vs-torch comparison failed; nothing is written.
        ValueError: bad size, opset, output path or target.
    """
    import onnx
    import onnxscript.optimizer as onnx_optimizer

    out = Path(out)
    if out.suffix != '.onnx':
        raise ValueError(f'output path must end in .onnx, got {out}')
    check_model_size(height, width)
    if opset < 17:
        raise ValueError(f'opset must be >= 17, got {opset}')
    try:
        target = ExportTarget(target)
    except ValueError as err:
        raise ValueError(f'target must be one of {[t.value for t in ExportTarget]}, got '
                         f'{target!r}') from err
    model = model.eval()
    if with_saliency is None:
        with_saliency = hasattr(model, 'forward_with_saliency')
    channels = _radar_channels(model, radar_channels)
    wrapper = ExportWrapper(model, with_saliency=with_saliency).eval()
    metadata = ModelMetadata(
        model_name=model_name, input_height=height, input_width=width,
        radar_channels=tuple(c.value for c in channels),
        radar_units=tuple(RADAR_UNITS[c] for c in channels), radar_fields=tuple(radar_fields),
        radar_sensors=tuple(radar_sensors), vertical_crop=vertical_crop,
        max_depth=float(getattr(model, 'max_depth', 80.0)),
        normalization_mean=IMAGENET_MEAN, normalization_std=IMAGENET_STD,
        outputs=('depth', 'saliency') if with_saliency else ('depth',),
        training_data=training_data, git_revision=git_revision(),
        parameter_count=sum(p.numel() for p in model.parameters()),
        metrics=dict(metrics or {}), checkpoint=checkpoint, model_kwargs=dict(model_kwargs or {}),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))

    image, radar = example_inputs(height, width, len(channels))
    # optimize=False: onnxscript 0.7's no-op rewrite treats `x + 1e-8` as `x + 0` (its constant
    # matcher uses abs_tol=1e-8) and drops the epsilon of the saliency normalisation. We fold
    # constants only; ORT fuses Conv+BN and the rest when it loads the model.
    with tempfile.TemporaryDirectory(prefix='xdrcdepth_export_') as tmp, torch.no_grad():
        raw_path = Path(tmp) / 'raw.onnx'
        torch.onnx.export(wrapper, (torch.from_numpy(image[None].copy()),
                                    torch.from_numpy(radar[None])), raw_path,
                          input_names=['image', 'radar'], output_names=list(metadata.outputs),
                          opset_version=opset, dynamo=True, optimize=False, verbose=False,
                          external_data=False)
        proto = onnx.load(raw_path)
    onnx_optimizer.fold_constants(proto)
    onnx_optimizer.remove_unused_nodes(proto)
    passes = optimize_for_cpu(proto).counts() if target is ExportTarget.CPU else {}
    # exact rewrites; the parity run below checks them
    metadata = replace(metadata, export_target=target.value, graph_passes=passes)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f'onnx.checker rejected the exported graph: {err}') from err
    data = _with_metadata(proto, metadata)

    reference = _torch_reference(wrapper, image, radar)
    errors = compare_outputs(_run_ort(data, image, radar, metadata.outputs), reference)
    bad = {name: error for name, error in errors.items() if not error <= rtol}
    if bad:
        raise ExportError(f'onnxruntime disagrees with torch beyond rtol={rtol:g}: ' + ', '.join(
            f'{name} {error:.3g}' for name, error in bad.items()))

    json_path = sidecar_path(out)
    _atomic_write(json_path, (metadata.to_json() + '\n').encode())
    _atomic_write(out, data)
    fp16_path, fp16_errors = None, {}
    if fp16:
        fp16_path = write_fp16_copy(out)
        fp16_errors = compare_outputs(
            _run_ort(fp16_path.read_bytes(), image, radar, metadata.outputs), reference)
    zero = tuple(name for name, value in reference.items() if not np.any(value))
    return ExportResult(out, json_path, metadata, errors, fp16_path, fp16_errors, zero)


def write_fp16_copy(onnx_path: str | Path) -> Path:
    """Write ``NAME.fp16.onnx`` + ``NAME.fp16.json`` next to an exported FP32 model.

    Weights and compute become FP16 (for CUDA / TensorRT); the inputs and outputs keep their
    types, so the engine feeds both copies the same way. Returns the FP16 model path.

    Raises:
        FileNotFoundError: no such model.
        MetadataError: the model has no valid embedded metadata.
    """
    import onnx

    from xdrcdepth_ros.core.engine import read_metadata

    onnx_path = Path(onnx_path)
    metadata = replace(read_metadata(onnx_path), precision='fp16')
    data = _with_metadata(_to_fp16(onnx.load(onnx_path)), metadata)
    fp16_path = onnx_path.with_name(onnx_path.stem + '.fp16.onnx')
    _atomic_write(sidecar_path(fp16_path), (metadata.to_json() + '\n').encode())
    _atomic_write(fp16_path, data)
    return fp16_path


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, height: int, width: int,
                      fp16: bool = False, opset: int = DEFAULT_OPSET,
                      rtol: float = DEFAULT_RTOL,
                      target: ExportTarget | str = ExportTarget.CPU) -> ExportResult:
    """Export a checkpoint written by ``model.save_checkpoint`` (see :func:`export_model`).

    The metadata takes ``train_data``/``training_data``, ``metrics``, ``radar_channels``,
    ``radar_fields``, ``radar_sensors`` and ``vertical_crop`` from the checkpoint's extra keys
    when present.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: not a checkpoint of this package.
        ExportError: the export failed its checks.
    """
    from xdrcdepth_ros.model import load_checkpoint

    model, payload = load_checkpoint(checkpoint)
    training = payload.get('train_data', payload.get('training_data', ''))
    metrics = payload.get('metrics') or {}
    return export_model(
        model, out, height=height, width=width, model_name=payload['model_name'],
        radar_channels=payload.get('radar_channels'),
        radar_fields=payload.get('radar_fields', DEFAULT_RADAR_FIELDS),
        radar_sensors=payload.get('radar_sensors', ()),
        vertical_crop=payload.get('vertical_crop', 'bottom'),
        training_data=training if isinstance(training, str) else json_text(training),
        metrics={str(k): float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float))},
        checkpoint=str(checkpoint), model_kwargs=payload.get('model_kwargs') or {},
        opset=opset, rtol=rtol, fp16=fp16, target=target)


def export_random(model_name: str, out: str | Path, *, height: int, width: int, seed: int = 0,
                  model_kwargs: Mapping[str, Any] | None = None, fp16: bool = False,
                  opset: int = DEFAULT_OPSET, rtol: float = DEFAULT_RTOL,
                  target: ExportTarget | str = ExportTarget.CPU) -> ExportResult:
    """Export a randomly initialised (seeded) model: same graph and speed, meaningless depth.

    Used by tests and by ``xdrcdepth bench`` when no trained model is at hand.
    """
    from xdrcdepth_ros.model import create_model

    torch.manual_seed(seed)
    model = create_model(model_name, **dict(model_kwargs or {}))
    return export_model(model, out, height=height, width=width, model_name=model_name,
                        training_data=f'none: random initialisation (seed {seed})',
                        model_kwargs=model_kwargs, opset=opset, rtol=rtol, fp16=fp16,
                        target=target)


def json_text(value: Any) -> str:
    """Compact JSON for free-text metadata fields (non-JSON values via ``str``)."""
    import json

    return json.dumps(value, sort_keys=True, default=str)
