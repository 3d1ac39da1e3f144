"""Load the published LiRCDepth and CaFNet checkpoints onto this package's own modules.

The releases (``harborsarah/LiRCDepth``, ``harborsarah/CaFNet``; weights by their authors) are
``torch.save({'global_step', 'model', 'optimizer', 'best_eval_*', ...})`` with ``model`` the
state dict of ``torch.nn.DataParallel(net)`` (keys start with ``module.``). The file is read with
``weights_only=True``; the three numpy globals the ``best_eval_steps`` array needs are
allow-listed, nothing else. Each official key is renamed by a short ordered rule table onto
``lircdepth.LiRCDepth`` (same 935 tensors, other names) or ``cafnet.CaFNet``; the unused ResNet
``fc`` heads of CaFNet are dropped. Anything else missing, unexpected or of another shape is one
:class:`OfficialCheckpointError` naming the file and the first offending keys.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
import os
from pathlib import Path
import re
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from xdrcdepth_ros.core.errors import XdrcDepthError
from xdrcdepth_ros.model.registry import create_model

#: ``--arch`` → registry model name.
ARCHITECTURES = {'lircdepth': 'lircdepth', 'cafnet': 'cafnet'}
#: What the releases were trained on and how they score (from the checkpoint names/READMEs).
RELEASES = {
    'lircdepth': 'nuScenes (LiRCDepth release model-1170000-best_mae_2.00887: MAE 2.009 m, '
                 '0-80 m, nuScenes test split)',
    'cafnet': 'nuScenes (CaFNet release: MAE 2.091 m, 0-80 m, nuScenes test split)',
}
_SHOWN = 5  # offending keys quoted per category in an error

Rule = tuple[str, str | Callable[[re.Match[str]], str] | None]


class OfficialCheckpointError(XdrcDepthError, ValueError):
    """A file is not a loadable official checkpoint of the requested architecture."""


def _ir_block(match: re.Match[str]) -> str:
    """LiRCDepth IRT block part → our flat nn.Sequential index (conv, BN, act per part)."""
    part = {'expansion_layer': 0, 'depthwise_layer_transpose': 3,
            'pointwise_layer_transpose': 6}[match[3]]
    return f'up{match[1]}.{match[2]}.{part + int(match[4])}.'


_LIRCDEPTH_RULES: list[Rule] = [
    (r'encoder\.base_model\.', 'image_encoder.features.'),
    (r'encoder\.conv_image\.(\d)\.conv\.0\.', r'image_proj.\1.0.'),
    (r'encoder_radar\.conv\.0\.', 'radar_encoder.stem.0.'),
    (r'encoder_radar\.base_model\.', 'radar_encoder.features.'),
    (r'encoder_radar\.conv_radar\.(\d)\.conv\.0\.', r'radar_proj.\1.0.'),
    (r'decoder\.conv_radar\.(\d)\.conv\.0\.', r'radar_align.\1.0.'),
    (r'decoder\.upconv([2-5])\.(\d+)\.(expansion_layer|depthwise_layer_transpose|'
     r'pointwise_layer_transpose)\.([01])\.', _ir_block),
    (r'decoder\.upconv1\.0\.', 'up1.'),
    (r'decoder\.scale(\d)\.0\.', r'head\1.0.'),
    (r'decoder\.conv1\.0\.', 'refine.0.'),
    (r'decoder\.get_depth\.0\.', 'head.conv.'),
]

# BTS decoder level n (upconv5 … upconv1) → the scale its output has in ours (1/16 … 1).
_BTS_SCALE = {'5': '16', '4': '8', '3': '4', '2': '2', '1': '1'}


def _bts(kind: str) -> Callable[[re.Match[str]], str]:
    return lambda m: f'{kind}{_BTS_SCALE[m[1]]}.'


def _stage1(kind: str) -> Callable[[re.Match[str]], str]:
    return lambda m: f'confidence_decoder.stages.{5 - int(m[1])}.{kind}.'


def _reduction(match: re.Match[str]) -> str:
    head = 'head1' if match[1] == '1' else f'plane{match[1]}'
    return f'{head}.reduce.c{match[2]}.' if match[2] else f'{head}.params.'


_CAFNET_RULES: list[Rule] = [
    (r'(encoder\.base_model|encoder_radar[12]\.base_model_radar)\.fc\.', None),
    (r'encoder\.base_model\.', 'image_encoder.'),
    (r'encoder_radar1\.sparse_conv(\d)\.sparsity\.',
     lambda m: f'sparse.{int(m[1]) - 1}.count.'),
    (r'encoder_radar1\.sparse_conv(\d)\.', lambda m: f'sparse.{int(m[1]) - 1}.'),
    (r'encoder_radar1\.base_model_radar\.', 'stage1_encoder.'),
    (r'decoder_radar\.upconv(\d)\.', _stage1('up')),
    (r'decoder_radar\.bn(\d)\.', _stage1('norm')),
    (r'decoder_radar\.conv(\d)\.0\.', _stage1('conv.0')),
    (r'decoder_radar\.get_depth\.0\.', 'confidence_decoder.head.'),
    (r'encoder_radar2\.conv\.0\.', 'stage2_stem.0.'),
    (r'encoder_radar2\.base_model_radar\.', 'radar_encoder.'),
    (r'decoder\.weight(\d)\.0\.', lambda m: f'gates.{int(m[1]) - 1}.gate.'),
    (r'decoder\.project(\d)\.0\.', lambda m: f'gates.{int(m[1]) - 1}.proj.'),
    (r'decoder\.bn4_2\.', 'fuse8_norm.'),
    (r'decoder\.upconv(\d)\.', _bts('up')),
    (r'decoder\.bn(\d)\.', _bts('norm')),
    (r'decoder\.conv(\d)\.0\.', lambda m: f'fuse{_BTS_SCALE[m[1]]}.0.'),
    (r'decoder\.daspp_(\d+)\.atrous_conv\.first_bn\.',
     lambda m: f'daspp.{_DASPP_INDEX[m[1]]}.norm_in.'),
    (r'decoder\.daspp_(\d+)\.atrous_conv\.aconv_sequence\.([124])\.',
     lambda m: f'daspp.{_DASPP_INDEX[m[1]]}.{ {"1": "reduce", "2": "norm", "4": "conv"}[m[2]]}.'),
    (r'decoder\.daspp_conv\.0\.', 'daspp_fuse.0.'),
    (r'decoder\.reduc(\d)x\d\.reduc\.(?:inter_\d+_(\d+)\.0|plane_params|final\.0)\.', _reduction),
    (r'decoder\.get_depth\.0\.', 'head.'),
]
_DASPP_INDEX = {'3': 0, '6': 1, '12': 2, '18': 3, '24': 4}
_RULES = {'lircdepth': _LIRCDEPTH_RULES, 'cafnet': _CAFNET_RULES}


def official_key_to_ours(key: str, arch: str) -> str | None:
    """Our state-dict key for an official key (without ``module.``); None = dropped on purpose.

    Raises:
        KeyError: no rule covers ``key`` (an unexpected key).
    """
    for pattern, replacement in _RULES[arch]:
        match = re.match(pattern, key)
        if match is None:
            continue
        if replacement is None:
            return None
        head = replacement(match) if callable(replacement) else match.expand(replacement)
        return head + key[match.end():]
    raise KeyError(key)


def _numpy_globals() -> list[Any]:
    """The numpy objects a pickled ndarray needs (``best_eval_steps``), for ``safe_globals``."""
    core = getattr(np, '_core', None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype,
            *(type(np.dtype(t)) for t in ('int32', 'int64', 'float32', 'float64'))]


def read_payload(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` a checkpoint safely: weights only, plus the numpy array type, on CPU.

    Raises:
        FileNotFoundError: no such file.
        OfficialCheckpointError: not a torch checkpoint, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises several types for foreign or truncated files
        raise OfficialCheckpointError(
            f'{path} is not a readable torch checkpoint (truncated, or not made by '
            f'torch.save?): {type(err).__name__}: {str(err).splitlines()[0][:200]}') from err


def read_official_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The network weights of a release checkpoint (or a bare state dict), ``module.`` stripped.

    Raises:
        FileNotFoundError: no such file.
        OfficialCheckpointError: not a torch checkpoint, truncated, or holds no state dict.
    """
    payload = read_payload(path)
    state = payload.get('model', payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        found = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) \
            else type(payload).__name__
        raise OfficialCheckpointError(f"{path} holds no network state dict (expected a dict "
                                      f"with 'model', or a bare state dict; found {found})")
    return {key.removeprefix('module.'): value for key, value in state.items()}


def _describe(items: Sequence[str]) -> str:
    """The first few offending entries, and how many more there are."""
    more = f' and {len(items) - _SHOWN} more' if len(items) > _SHOWN else ''
    return ', '.join(items[:_SHOWN]) + more


def map_official_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module, arch: str,
                            source: str = 'checkpoint') -> dict[str, torch.Tensor]:
    """Rename an official state dict onto ``model`` and check every key and shape.

    Args:
        state: official keys (``module.`` already stripped) → tensors.
        model: the target network (``LiRCDepth`` or ``CaFNet``), used for names and shapes.
        arch: ``'lircdepth'`` or ``'cafnet'``.
        source: the file name quoted in errors.

    Raises:
        OfficialCheckpointError: unexpected, missing or mis-shaped keys (first few quoted).
    """
    if arch not in _RULES:
        raise ValueError(f'unknown arch {arch!r}; choose one of {sorted(_RULES)}')
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    covered: set[str] = set()
    for key, value in state.items():
        try:
            ours = official_key_to_ours(key, arch)
        except KeyError:
            ours = ''
        if ours is None:
            continue
        if ours not in target:
            unexpected.append(f'{key} {list(value.shape)}')
        elif target[ours].shape != value.shape:
            mismatched.append(f'{key} {list(value.shape)} (expected {list(target[ours].shape)})')
            covered.add(ours)
        else:
            mapped[ours] = value
            covered.add(ours)
    missing = [f'{key} {list(target[key].shape)}' for key in target if key not in covered]
    problems = [f'{label}: {_describe(items)}' for label, items in (
        ('shape mismatch', mismatched), ('unexpected keys', unexpected),
        ('missing (our names)', missing)) if items]
    if problems:
        raise OfficialCheckpointError(
            f'{source} is not an official {arch} checkpoint ({len(state)} tensors): '
            + '; '.join(problems) + f' (is it really a {arch} release?)')
    return mapped


def load_official_checkpoint(path: str | os.PathLike[str], arch: str) -> nn.Module:
    """Build our ``arch`` network from an official checkpoint, in eval mode on CPU.

    ``forward(image, radar)`` then takes RGB in [0, 1] (normalised inside) and the raw radar map
    [depth m, RCS dBsm, vx, vy m/s], and returns ``ModelOutput`` with depth in metres.

    Args:
        path: the release file (``torch.save`` dict with ``model``) or a bare state dict.
        arch: ``'lircdepth'`` or ``'cafnet'``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown ``arch``.
        OfficialCheckpointError: unreadable file, or keys/shapes that do not fit ``arch``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f'unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}')
    state = read_official_state_dict(path)
    model = create_model(ARCHITECTURES[arch])
    model.load_state_dict(map_official_state_dict(state, model, arch, str(path)), strict=True)
    return model.eval()


#: What the released networks expect, written into the imported checkpoint and ONNX metadata.
OFFICIAL_INPUT_CONTRACT: dict[str, Any] = {
    'radar_channels': ['depth', 'rcs', 'vx', 'vy'],
    'radar_fields': ['rcs', 'vx', 'vy'],   # raw velocities, not ego-motion compensated
    'radar_sensors': ['RADAR_FRONT'],      # one sweep of the front radar only
    'vertical_crop': 'bottom',             # 900 rows → 896 by dropping the top 4 (test protocol)
}


class ImportResult(NamedTuple):
    """What :func:`import_official_checkpoint` wrote.

    Attributes:
        onnx_path: ``OUT.onnx`` (metadata embedded).
        json_path: ``OUT.json``, the sidecar.
        checkpoint_path: ``OUT.pt`` in this package's checkpoint format.
        max_rel_error: ORT-vs-torch error of the export, per output.
        parameter_count: parameters of the imported network.
    """

    onnx_path: Path
    json_path: Path
    checkpoint_path: Path
    max_rel_error: dict[str, float]
    parameter_count: int


def load_any_checkpoint(path: str | os.PathLike[str], official_arch: str = 'cafnet') -> nn.Module:
    """A checkpoint of this package (``save_checkpoint``) or an official ``official_arch`` one.

    Used where a teacher is taken: ``xdrcdepth train --teacher`` accepts the released CaFNet
    file as downloaded as well as its ``import-checkpoint`` ``.pt``. Returns eval mode, CPU.

    Raises:
        FileNotFoundError: no such file.
        OfficialCheckpointError: neither format fits.
    """
    from xdrcdepth_ros.model.registry import CHECKPOINT_KEYS, load_checkpoint

    payload = read_payload(path)
    ours = isinstance(payload, Mapping) and all(key in payload for key in CHECKPOINT_KEYS)
    del payload  # a CaFNet file is 250 MB: free the probe before the real load reads it again
    return load_checkpoint(path)[0] if ours else load_official_checkpoint(path, official_arch)


def save_imported_checkpoint(model: nn.Module, arch: str, path: str | os.PathLike[str],
                             source: str | os.PathLike[str]) -> None:
    """Write an imported network as ``OUT.pt`` (``save_checkpoint``), contract as extra keys.

    ``xdrcdepth export --checkpoint OUT.pt`` then writes the same metadata as the import.
    """
    from xdrcdepth_ros.model.registry import save_checkpoint

    save_checkpoint(path, model, extra={**OFFICIAL_INPUT_CONTRACT, 'training_data': RELEASES[arch],
                                        'source_checkpoint': str(source)})


def output_stem(out: str | os.PathLike[str]) -> Path:
    """``OUT`` of ``--out``: a trailing ``.onnx`` / ``.pt`` / ``.json`` is dropped."""
    path = Path(out)
    return path.with_suffix('') if path.suffix in ('.onnx', '.pt', '.json') else path


def import_official_checkpoint(checkpoint: str | os.PathLike[str], arch: str,
                               out: str | os.PathLike[str], *, height: int = 896,
                               width: int = 1600, opset: int = 18,
                               rtol: float = 1e-4) -> ImportResult:
    """Official checkpoint → ``OUT.pt`` (our format) + ``OUT.onnx`` + ``OUT.json``.

    The ONNX metadata states the official input contract (:data:`OFFICIAL_INPUT_CONTRACT`,
    ImageNet normalisation, max depth 100 m), so the node and replay feed it as the authors
    did. Everything is written in a temporary folder beside ``OUT`` and moved into place at
    the end: a failure leaves no output file.

    Raises:
        FileNotFoundError: no such checkpoint.
        OfficialCheckpointError: unreadable, or not ``arch``.
        ExportError: the ONNX export failed its checks.
        ValueError: bad size or arch.
    """
    import shutil
    import tempfile

    from xdrcdepth_ros.export import export_model

    model = load_official_checkpoint(checkpoint, arch)
    stem = output_stem(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    contract = OFFICIAL_INPUT_CONTRACT
    staging = Path(tempfile.mkdtemp(prefix=f'.{stem.name}.import-', dir=stem.parent))
    try:
        save_imported_checkpoint(model, arch, staging / 'model.pt', checkpoint)
        result = export_model(
            model, staging / 'model.onnx', height=height, width=width, model_name=arch,
            radar_channels=contract['radar_channels'], radar_fields=contract['radar_fields'],
            radar_sensors=contract['radar_sensors'], vertical_crop=contract['vertical_crop'],
            training_data=RELEASES[arch], checkpoint=str(checkpoint), opset=opset, rtol=rtol)
        final = {suffix: stem.with_name(stem.name + suffix) for suffix in ('.pt', '.json',
                                                                           '.onnx')}
        for suffix, target in final.items():  # the .onnx last: it is what consumers look for
            os.replace(staging / f'model{suffix}', target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(final['.onnx'], final['.json'], final['.pt'], result.max_rel_error,
                        result.metadata.parameter_count)
