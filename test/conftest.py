"""Shared fixtures. Tests read data only from test/data (never from ../shared)."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / 'data'
NUSCENES_DIR = DATA_DIR / 'nuscenes'


@pytest.fixture(scope='session')
def nuscenes_root() -> Path:
    """Folder with the 8 bundled real nuScenes keyframes (samples/ + v1.0-mini/)."""
    return NUSCENES_DIR


@pytest.fixture(scope='session')
def nuscenes_tables(nuscenes_root):
    """Parsed tables of the bundled frames."""
    from xdrcdepth_ros.core.nuscenes_io import NuScenesTables

    return NuScenesTables(nuscenes_root)


@pytest.fixture(scope='session')
def keyframes(nuscenes_tables):
    """The 8 bundled CAM_FRONT keyframes, sorted by scene and time."""
    return list(nuscenes_tables.keyframes())


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory) -> Path:
    """A seeded random 'xdrcdepth_tiny' exported at 96x192: tiny.onnx + tiny.json; the .onnx path.

    Exported once per session with xdrcdepth_ros.export (ORT-vs-torch parity checked there);
    random weights give meaningless depth but the real graph, inputs and outputs.
    """
    from xdrcdepth_ros.export import export_random

    out = tmp_path_factory.mktemp('tiny_model') / 'tiny.onnx'
    return export_random('xdrcdepth_tiny', out, height=96, width=192, seed=0).onnx_path
