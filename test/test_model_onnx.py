"""The student exports to ONNX with depth + saliency in one graph; ORT matches torch."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip('torch')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

import numpy as np  # noqa: E402

from xdrcdepth_ros.model import create_model  # noqa: E402

OPSET = 17


class _DepthAndSaliency(torch.nn.Module):
    """What an export wraps: (image, radar) → (depth, saliency)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image, radar):
        return self.model.forward_with_saliency(image, radar)


def _fresh_inputs(batch, height, width):
    """New random inputs every run (never zeros): image in [0,1], sparse radar returns."""
    gen = torch.Generator()
    seed = gen.seed()
    image = torch.rand(batch, 3, height, width, generator=gen)
    radar = torch.rand(batch, 4, height, width, generator=gen) * torch.tensor(
        [80.0, 30.0, 20.0, 20.0]).view(1, 4, 1, 1)
    radar = radar * (torch.rand(batch, 1, height, width, generator=gen) < 0.03)
    return image, radar, seed


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model('xdrcdepth')
    with torch.no_grad():  # move BatchNorm statistics off their defaults
        model.train()
        model(*_fresh_inputs(2, 64, 96)[:2])
        model.head.conv.weight[:, ::2].abs_()  # some positive evidence: non-trivial saliency
    model.eval()
    wrapper = _DepthAndSaliency(model).eval()  # eval: export restores the wrapper's mode
    path = tmp_path_factory.mktemp('onnx') / 'student.onnx'
    image, radar, _ = _fresh_inputs(1, 64, 96)
    dynamic = {0: 'batch', 2: 'height', 3: 'width'}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(
            wrapper, (image, radar), str(path), dynamo=False, opset_version=OPSET,
            input_names=['image', 'radar'], output_names=['depth', 'saliency'],
            dynamic_axes={'image': dynamic, 'radar': dynamic, 'depth': dynamic,
                          'saliency': dynamic})
    return model, path


def test_export_is_a_valid_opset_17_graph_with_named_outputs(exported):
    """The node looks outputs up by name: 'depth' and 'saliency'."""
    _, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert [o.name for o in graph.graph.output] == ['depth', 'saliency']
    assert [i.name for i in graph.graph.input] == ['image', 'radar']
    assert max(op.version for op in graph.opset_import if op.domain in ('', 'ai.onnx')) >= 17


@pytest.mark.parametrize('batch,height,width', [(1, 64, 96), (2, 96, 128)])
def test_onnxruntime_matches_torch(exported, batch, height, width):
    """ORT CPU equals torch within 1e-4 relative, also at a batch/size other than the export's."""
    model, path = exported
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    image, radar, seed = _fresh_inputs(batch, height, width)
    depth, saliency = session.run(['depth', 'saliency'],
                                  {'image': image.numpy(), 'radar': radar.numpy()})
    with torch.no_grad():
        ref_depth, ref_saliency = (t.numpy() for t in model.forward_with_saliency(image, radar))
    assert depth.shape == saliency.shape == (batch, 1, height, width)
    context = f'input seed {seed}'
    np.testing.assert_allclose(depth, ref_depth, rtol=1e-4, atol=1e-4 * np.abs(ref_depth).max(),
                               err_msg=context)
    assert ref_saliency.max() > 0.5, context  # a real map, not all zeros
    np.testing.assert_allclose(saliency, ref_saliency, rtol=1e-4, atol=1e-4, err_msg=context)
