"""Model variants by name, one factory, and weights-only checkpoints that rebuild the model."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
import tempfile
from typing import Any

import torch
from torch import nn

# name → (module, class, variant kwargs). Variants are data; ``create_model`` is the one factory.
_VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    'xdrcdepth': ('student', 'XDRCDepth', {}),
    'xdrcdepth_tiny': ('student', 'XDRCDepth', {
        'width_mult': 0.25, 'last_channels': 96, 'fused_channels': (8, 16, 16, 32, 48),
        'decoder_channels': (48, 32, 16, 16, 16), 'daspp_branch': 8}),
    'lircdepth': ('lircdepth', 'LiRCDepth', {}),
    'cafnet': ('cafnet', 'CaFNet', {}),
    'cafnet_teacher': ('teacher', 'CaFNetTeacher', {}),
    'cafnet_teacher_small': ('teacher', 'CaFNetTeacher', {
        'image_layers': (2, 2, 2, 2), 'radar_layers': (1, 1, 1, 1), 'num_features': 256}),
}
MODEL_NAMES: tuple[str, ...] = tuple(_VARIANTS)
CHECKPOINT_KEYS = ('model_name', 'model_kwargs', 'state_dict')


def variant_kwargs(name: str) -> dict[str, Any]:
    """The constructor kwargs that define variant ``name`` (a copy)."""
    if name not in _VARIANTS:
        raise ValueError(f'unknown model {name!r}; choose one of {list(MODEL_NAMES)}')
    return dict(_VARIANTS[name][2])


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model variant ``name`` (see ``MODEL_NAMES``); ``kwargs`` override the variant's.

    Common kwargs: ``max_depth`` (metres, default 100), ``radar_channels`` (default 4); student
    and LiRCDepth also take ``pretrained_path`` (a local ImageNet MobileNetV2 state_dict file).
    The model is returned in train mode with random (or ImageNet encoder) weights; it records
    ``model_name`` and ``model_kwargs`` (the overrides) for ``save_checkpoint``.
    """
    params = variant_kwargs(name)
    module_name, class_name, _ = _VARIANTS[name]
    module = importlib.import_module(f'xdrcdepth_ros.model.{module_name}')
    params.update(kwargs)
    try:
        model = getattr(module, class_name)(**params)
    except TypeError as err:
        raise ValueError(f'bad arguments for model {name!r}: {err}') from err
    # Recorded so save_checkpoint can store how to rebuild it.
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def _plain(value: Any) -> Any:
    """Make kwargs loadable with weights_only=True (tuples → lists, paths → str)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, *,
                    extra: dict[str, Any] | None = None) -> None:
    """Write ``{'model_name', 'model_kwargs', 'state_dict', **extra}`` atomically to ``path``.

    ``model`` must come from ``create_model`` (it carries ``model_name``/``model_kwargs``).
    ``pretrained_path`` is not stored: the state dict already holds those weights.
    """
    name = getattr(model, 'model_name', None)
    if name not in _VARIANTS:
        raise ValueError('save_checkpoint needs a model built by create_model '
                         f'(model_name attribute missing or unknown: {name!r})')
    kwargs = {k: v for k, v in getattr(model, 'model_kwargs', {}).items()
              if k != 'pretrained_path'}
    extra = dict(extra or {})
    clash = set(extra) & set(CHECKPOINT_KEYS)
    if clash:
        raise ValueError(f'extra must not use reserved checkpoint keys {sorted(clash)}')
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {'model_name': name, 'model_kwargs': _plain(kwargs), 'state_dict': state, **extra}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str],
                    map_location: str | torch.device = 'cpu') -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by ``save_checkpoint``; returns (model in eval mode, the dict)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f'cannot read checkpoint {path}: {err}') from err
    if not isinstance(payload, dict) or any(k not in payload for k in CHECKPOINT_KEYS):
        raise ValueError(f'{path} is not an xdrcdepth checkpoint (needs keys {CHECKPOINT_KEYS})')
    model = create_model(payload['model_name'], **payload['model_kwargs'])
    try:
        model.load_state_dict(payload['state_dict'], strict=True)
    except RuntimeError as err:
        raise ValueError(f'checkpoint {path} does not match model '
                         f'{payload["model_name"]!r}: {err}') from err
    model.to(map_location)
    model.eval()
    return model, payload
