"""Deterministic official checkpoints, built from the key lists in test/data/official_checkpoints.

The fill rule is the one its README states; the file is saved in the release format (a dict with
``global_step``, ``model`` holding DataParallel keys, ``optimizer`` and the ``best_eval_*``
entries, one of them a numpy int32 array), so tests exercise the loader path a user hits.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FIXTURE_DIR = Path(__file__).resolve().parent / 'data' / 'official_checkpoints'
#: Gain of the fill rule for multi-dimensional tensors, per architecture.
GAINS = {'lircdepth': 0.9, 'cafnet': 1.2}


def key_list(arch: str) -> list[dict]:
    """The ordered ``{name, shape, dtype}`` entries of the official state dict."""
    return json.loads((FIXTURE_DIR / f'{arch}_state_dict.json').read_text())


def fill(index: int, name: str, shape: list[int], dtype: str, gain: float) -> torch.Tensor:
    """Entry ``index`` of the state dict filled by the README's rule (float64, then cast)."""
    numel = int(np.prod(shape)) if shape else 1
    phi = 0.37 * np.arange(numel, dtype=np.float64) + 0.11 * index
    if not dtype.startswith('float'):
        values = np.zeros(numel)
    elif name.endswith('running_var'):
        values = 1 + 0.25 * (1 + np.sin(phi))
    elif name.endswith('running_mean'):
        values = 0.1 * np.sin(phi)
    elif len(shape) >= 2:
        values = gain / np.sqrt(numel / shape[0]) * np.sin(phi)
    elif name.endswith('weight'):
        values = 1 + 0.1 * np.sin(phi)
    else:
        values = 0.05 * np.sin(phi)
    return torch.from_numpy(values.reshape(shape)).to(getattr(torch, dtype))


def official_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The deterministic DataParallel state dict of ``arch`` ('lircdepth' or 'cafnet')."""
    return {entry['name']: fill(i, entry['name'], entry['shape'], entry['dtype'], GAINS[arch])
            for i, entry in enumerate(key_list(arch))}


def release_payload(state: dict[str, torch.Tensor]) -> dict:
    """Wrap a state dict as the released 'best' checkpoints are saved."""
    return {'global_step': 1170000, 'model': state,
            'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4, 'params': []}]},
            'best_eval_measures_higher_better': torch.zeros(3),
            'best_eval_measures_lower_better': torch.tensor([2.00887, 0, 0, 0, 0, 0, 0.0]),
            'best_eval_steps': np.arange(10, dtype=np.int32)}


def write_official_checkpoint(arch: str, path: Path) -> Path:
    """Save the deterministic ``arch`` checkpoint in the release format to ``path``."""
    torch.save(release_payload(official_state_dict(arch)), path)
    return path


def reference(arch: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, official outputs) of the fixture."""
    inputs = dict(np.load(FIXTURE_DIR / 'inputs.npz'))
    outputs = dict(np.load(FIXTURE_DIR / f'{arch}_outputs.npz'))
    return inputs, outputs
