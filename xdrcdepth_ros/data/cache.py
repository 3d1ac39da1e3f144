"""Store samples as ``.npz`` files, written atomically (numpy only).

Arrays of :class:`Sample` (and numpy arrays inside ``meta``, nested dicts included) are stored
as arrays; other ``meta`` values go through JSON (tuples come back as lists).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import tempfile
import zipfile

import numpy as np

from xdrcdepth_ros.data.sample import Sample
from xdrcdepth_ros.core.errors import DatasetError

_FIELDS = ('image', 'radar', 'gt_sparse', 'gt_dense', 'K')
_META_PREFIX = 'meta/'


def _flatten(meta: dict, prefix: str, arrays: dict, plain: dict) -> None:
    for key, value in meta.items():
        if '/' in str(key):
            raise ValueError(f'meta key {key!r} must not contain "/"')
        name = f'{prefix}{key}'
        if isinstance(value, np.ndarray):
            arrays[_META_PREFIX + name] = value
        elif isinstance(value, dict) and value and all(
                isinstance(v, np.ndarray) for v in value.values()):
            _flatten(value, name + '/', arrays, plain)
        else:
            plain[name] = value


def save_sample(path: str | Path, sample: Sample) -> Path:
    """Write ``sample`` to ``path`` (.npz). A crash never leaves a half-written file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(getattr(sample, name)) for name in _FIELDS}
    plain: dict = {}
    _flatten(sample.meta, '', arrays, plain)
    arrays['radar_channels'] = np.array(sample.radar_channels)
    arrays['meta_json'] = np.array(json.dumps(plain, default=_json_default))
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    try:
        with os.fdopen(handle, 'wb') as stream:
            np.savez(stream, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'meta value of type {type(value).__name__} cannot be cached')


def load_sample(path: str | Path) -> Sample:
    """Read a sample written by :func:`save_sample`.

    Raises:
        DatasetError: the file is missing, truncated or not a cached sample.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {name: data[name] for name in _FIELDS}
            meta = json.loads(str(data['meta_json']))
            channels = tuple(str(c) for c in data['radar_channels'])
            for key in data.files:
                if key.startswith(_META_PREFIX):
                    *parents, leaf = key[len(_META_PREFIX):].split('/')
                    node = meta
                    for parent in parents:
                        node = node.setdefault(parent, {})
                    node[leaf] = data[key]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(f'cannot read cached sample {path}: {err}') from err
    return Sample(meta=meta, radar_channels=channels, **fields)
