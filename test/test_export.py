"""export.py, `xdrcdepth export` and `xdrcdepth bench`: real torch → ONNX → onnxruntime."""
from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from xdrcdepth_ros.cli import main
from xdrcdepth_ros.core.engine import (Engine, METADATA_KEY, read_metadata, select_providers,
                                       sidecar_path)
from xdrcdepth_ros.export import (compare_outputs, example_inputs, export_model, ExportError,
                                  ExportWrapper)

CPU_ONLY = ['CPUExecutionProvider']


class _DepthOnly(nn.Module):
    """A small depth-only model with the package's forward contract (like LiRCDepth)."""

    max_depth = 60.0
    radar_channels = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(7, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> torch.Tensor:
        return self.max_depth * torch.sigmoid(self.net(torch.cat([image, radar], dim=1)))


class _Drifting(_DepthOnly):
    """Python-side state the graph cannot capture: eager output changes after tracing."""

    calls = 0

    def forward(self, image: torch.Tensor, radar: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return super().forward(image, radar) + float(type(self).calls)


def _seeded_tiny() -> nn.Module:
    from xdrcdepth_ros.model import create_model

    torch.manual_seed(0)
    return create_model('xdrcdepth_tiny').eval()


def test_exported_student_matches_torch_within_1e4_relative(tiny_model):
    """The conftest model (seed 0) through the Engine vs the same weights in torch."""
    model = _seeded_tiny()
    image, radar = example_inputs(96, 192, 4, seed=7)
    with torch.inference_mode():
        depth, saliency = ExportWrapper(model, with_saliency=True)(
            torch.from_numpy(image[None].copy()), torch.from_numpy(radar[None]))
    with Engine(tiny_model, available_providers=CPU_ONLY, warmup=0) as engine:
        ort_depth, ort_saliency = engine.run(image, radar)
    errors = compare_outputs({'depth': ort_depth, 'saliency': ort_saliency},
                             {'depth': depth.numpy(), 'saliency': saliency.numpy()})
    assert errors['depth'] <= 1e-4 and errors['saliency'] <= 1e-4, errors
    assert saliency.max() > 0.99, 'saliency is normalised to a peak of 1'


def test_metadata_is_embedded_and_in_the_sidecar(tiny_model):
    proto = onnx.load(tiny_model)
    props = {prop.key: prop.value for prop in proto.metadata_props}
    embedded = json.loads(props[METADATA_KEY])
    sidecar = json.loads(sidecar_path(tiny_model).read_text())
    assert embedded == sidecar
    model = _seeded_tiny()
    assert embedded['parameter_count'] == sum(p.numel() for p in model.parameters())
    assert embedded['max_depth'] == model.max_depth
    assert embedded['input_height'] == 96 and embedded['input_width'] == 192
    assert embedded['radar_channels'] == ['depth', 'rcs', 'vx', 'vy']
    assert embedded['radar_units'] == ['m', 'dBsm', 'm/s', 'm/s']
    assert embedded['normalization_mean'] == [0.485, 0.456, 0.406]
    assert 'random initialisation' in embedded['training_data']
    assert embedded['git_revision'] and embedded['created']
    assert embedded['outputs'] == ['depth', 'saliency']


def test_exported_graph_passes_the_checker_with_a_recent_opset(tiny_model):
    proto = onnx.load(tiny_model)
    onnx.checker.check_model(proto, full_check=True)
    opset = {entry.domain: entry.version for entry in proto.opset_import}
    assert opset.get('', opset.get('ai.onnx')) >= 17
    inputs = {value.name: value.type.tensor_type for value in proto.graph.input}
    assert inputs['image'].elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inputs['image'].shape.dim] == [1, 96, 192, 3]


class _TinyPeakSaliency(_DepthOnly):
    """Saliency normalised as cam / (peak + 1e-8) with a peak ~1e-7, so the epsilon matters."""

    def forward_with_saliency(self, image: torch.Tensor,
                              radar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = self.forward(image, radar)
        cam = depth * 1e-9
        return depth, cam / (cam.amax(dim=(1, 2, 3), keepdim=True) + 1e-8)


def test_small_epsilons_survive_export(tmp_path):
    """onnxscript 0.7's optimiser rewrites `x + 1e-8` to `x` (its zero test has abs_tol=1e-8).

    Here that would turn a peak of ~0.86 into 1.0; the export must keep torch's result.
    """
    torch.manual_seed(2)
    result = export_model(_TinyPeakSaliency(), tmp_path / 's.onnx', height=32, width=64,
                          model_name='eps')
    assert result.max_rel_error['saliency'] <= 1e-4
    with Engine(result.onnx_path, available_providers=CPU_ONLY, warmup=0) as engine:
        saliency = engine.run(*example_inputs(32, 64, 4))[1]
    assert 0.0 < saliency.max() < 0.99


def test_outputs_that_are_zero_on_the_parity_input_are_reported(tmp_path):
    """A zero saliency matches trivially, so the export says which outputs were all zero: none
    for a live map, the saliency once the head's weights are zeroed (every Grad-CAM α is 0)."""
    torch.manual_seed(2)
    live = export_model(_TinyPeakSaliency(), tmp_path / 'live.onnx', height=32, width=64,
                        model_name='live')
    assert live.zero_outputs == ()
    model = _seeded_tiny()
    with torch.no_grad():
        model.head.conv.weight.zero_()
    dead = export_model(model, tmp_path / 'dead.onnx', height=64, width=96, model_name='dead')
    assert dead.zero_outputs == ('saliency',)


def test_depth_only_model_exports_without_saliency(tmp_path):
    torch.manual_seed(1)
    result = export_model(_DepthOnly(), tmp_path / 'd.onnx', height=32, width=64,
                          model_name='depth_only')
    assert result.metadata.outputs == ('depth',) and result.metadata.max_depth == 60.0
    assert result.max_rel_error['depth'] <= 1e-4
    with Engine(result.onnx_path, available_providers=CPU_ONLY) as engine:
        depth, saliency = engine.run(*example_inputs(32, 64, 4))
    assert saliency is None and depth.shape == (32, 64)


def test_export_that_torch_and_ort_disagree_on_writes_nothing(tmp_path):
    with pytest.raises(ExportError, match='onnxruntime disagrees with torch'):
        export_model(_Drifting(), tmp_path / 'drift.onnx', height=32, width=64,
                     model_name='drift')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('kwargs, match', [
    ({'height': 100}, 'multiple of 32'),
    ({'opset': 16}, 'opset must be >= 17'),
    ({'radar_channels': ['depth', 'rcs']}, 'takes 4 radar channels'),
    ({'with_saliency': True}, 'no forward_with_saliency'),
])
def test_bad_export_arguments_are_refused(tmp_path, kwargs, match):
    args = dict(height=32, width=64, model_name='m')
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        export_model(_DepthOnly(), tmp_path / 'm.onnx', **args)


def test_output_path_must_be_onnx(tmp_path):
    with pytest.raises(ValueError, match='must end in .onnx'):
        export_model(_DepthOnly(), tmp_path / 'm.pt', height=32, width=64, model_name='m')


def test_cli_exports_a_checkpoint_with_its_metadata(tmp_path, capsys):
    """`xdrcdepth export --checkpoint` carries metrics and training data into the metadata."""
    from xdrcdepth_ros.model import save_checkpoint

    ckpt = tmp_path / 'student.pt'
    save_checkpoint(ckpt, _seeded_tiny(), extra={
        'metrics': {'mae_80': 2.5, 'rmse_80': 4.0}, 'train_data': 'nuScenes v1.0-mini, 8 frames'})
    out = tmp_path / 'models' / 'student.onnx'
    code = main(['export', '--checkpoint', str(ckpt), '--height', '64', '--width', '96',
                 '--out', str(out), '--json'])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['max_rel_error']['depth'] <= 1e-4
    meta = read_metadata(out)
    assert meta == read_metadata(sidecar_path(out))
    assert meta.metrics == {'mae_80': 2.5, 'rmse_80': 4.0}
    assert meta.training_data == 'nuScenes v1.0-mini, 8 frames'
    assert meta.checkpoint == str(ckpt) and meta.model_name == 'xdrcdepth_tiny'
    assert (meta.input_height, meta.input_width) == (64, 96)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    code = main(['export', '--checkpoint', str(tmp_path / 'missing.pt'), '--height', '64',
                 '--width', '96', '--out', str(tmp_path / 'x.onnx')])
    assert code == 1
    assert 'ERROR: checkpoint not found' in capsys.readouterr().err


def test_bench_json_reports_pipeline_torch_and_lircdepth(tiny_model, nuscenes_root, capsys):
    """One run on the bundled frames: every key the docs table needs, and consistent ratios."""
    code = main(['bench', '--model', str(tiny_model), '--iterations', '2', '--warmup', '1',
                 '--threads', '1', '--dataroot', str(nuscenes_root), '--json'])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['height'], report['width']) == (96, 192)
    # The best CPU provider installed (OpenVINO where the onnxruntime-openvino build is in).
    assert report['provider'] == select_providers(None, ort.get_available_providers())[0].value
    assert set(report['stages_ms']) == {'preprocess', 'engine', 'postprocess'}
    for stats in report['stages_ms'].values():
        assert 0 <= stats['median'] <= stats['p90'] <= stats['p99']
    assert report['fps'] == pytest.approx(1000 / report['pipeline_ms_median'])
    assert report['speedup_vs_torch'] == pytest.approx(
        report['torch_eager_ms_median'] / report['pipeline_ms_median'])
    assert report['speedup_vs_lircdepth'] == pytest.approx(
        report['lircdepth_ms_median'] / report['pipeline_ms_median'])
    assert 0 < report['pre_post_fraction'] < 1
    assert report['frames'] == 8 and report['iterations'] == 2
    assert report['other_load_cores'] is None or report['other_load_cores'] >= 0
