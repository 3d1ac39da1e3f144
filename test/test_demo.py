"""`xdrcdepth demo` end to end on the bundled frames with the tiny model (node and replay)."""
from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from xdrcdepth_ros.bag.io import BagReader
from xdrcdepth_ros.bag.node_run import rclpy_available
from xdrcdepth_ros.cli import main

BACKENDS = ['replay', pytest.param('node', marks=pytest.mark.skipif(
    not rclpy_available(), reason='needs rclpy (pip install -e .[ros])'))]
_RUNS: dict[str, tuple] = {}


def _run_demo(backend: str, model, tmp_path_factory) -> tuple[str, object, str]:
    """Run the demo command once per backend per session (cached); (backend, out, stdout)."""
    if backend not in _RUNS:
        out = tmp_path_factory.mktemp(f'demo_{backend}') / 'demo_output'
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(['demo', '--out', str(out), '--model', str(model), '--backend', backend,
                         '--no-progress'])
        assert code == 0
        _RUNS[backend] = (backend, out, stdout.getvalue())
    return _RUNS[backend]


@pytest.fixture(scope='module', params=BACKENDS)
def demo(request, tiny_model, tmp_path_factory):
    """The demo's result for one backend: (backend, out folder, stdout)."""
    return _run_demo(request.param, tiny_model, tmp_path_factory)


def test_summary_has_the_promised_fields(demo, tiny_model):
    """summary.json: frames in/out, backend, model, MAE/RMSE at 80 m (finite metres)."""
    backend, out, _ = demo
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['backend'] == backend
    assert summary['frames_in'] == summary['frames_out'] == 8, summary.get('node_diagnostics')
    assert summary['model'] == str(tiny_model)
    metrics = summary['metrics']
    assert metrics['cap_m'] == 80.0 and metrics['n_frames'] == 8
    for key in ('mae_m', 'rmse_m'):
        assert math.isfinite(metrics[key]) and metrics[key] > 0
    assert metrics['rmse_m'] >= metrics['mae_m']
    assert set(metrics['by_cap']) == {'50', '70', '80'}


def test_outputs_are_where_the_summary_says(demo):
    """Output bag with 8 depth images (+ inputs), 8 panels, report, projection; printed paths."""
    _, out, stdout = demo
    summary = json.loads((out / 'summary.json').read_text())
    paths = summary['paths']
    with BagReader(paths['depth_bag']) as reader:
        assert reader.topic_count('/xdrcdepth/depth') == 8
        assert reader.topic_count('/xdrcdepth/saliency_overlay') == 8
        assert reader.topic_count('/LIDAR_TOP') == 8
    assert len(list((out / 'panels').glob('*.png'))) == 8
    assert (out / 'projection.png').stat().st_size > 0
    report = (out / 'report.txt').read_text()
    assert 'MAE' in report and '0-80m' in report
    for path in paths.values():
        assert path in stdout
    assert f'MAE {summary["metrics"]["mae_m"]:.3f} m' in stdout


@pytest.mark.skipif(not rclpy_available(), reason='needs rclpy (pip install -e .[ros])')
def test_backends_agree(tiny_model, tmp_path_factory):
    """Node (over DDS) and replay produced the same metrics, i.e. the same depth."""
    summaries = {backend: json.loads((_run_demo(backend, tiny_model, tmp_path_factory)[1]
                                      / 'summary.json').read_text())
                 for backend in ('node', 'replay')}
    assert summaries['node']['metrics'] == summaries['replay']['metrics']
    assert summaries['node']['frames_out'] == summaries['replay']['frames_out'] == 8
