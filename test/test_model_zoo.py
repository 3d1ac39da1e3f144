"""All model families: parameter budgets, output shapes at the paper sizes, model-info."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip('torch')

from xdrcdepth_ros.cli import main as cli_main  # noqa: E402
from xdrcdepth_ros.model import create_model, FEATURE_KEYS, MODEL_NAMES  # noqa: E402

LIRCDEPTH_PARAMS = 12_645_228
PAPER_SIZES = [(352, 704), (896, 1600)]
FAMILIES = ['xdrcdepth', 'lircdepth', 'cafnet_teacher']


def _params(name: str, **kwargs) -> int:
    with torch.device('meta'):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope='module')
def param_counts():
    return {name: _params(name) for name in MODEL_NAMES}


def test_lircdepth_has_exactly_the_released_parameter_count(param_counts):
    """The clean-room LiRCDepth must match the released model to the parameter."""
    assert param_counts['lircdepth'] == LIRCDEPTH_PARAMS


def test_released_cafnet_has_the_official_parameter_count(param_counts):
    """The released CaFNet holds 62,248,686 parameters, 1,539,000 of them in three unused
    ResNet fc heads that ours leaves out."""
    assert param_counts['cafnet'] == 62_248_686 - 1_539_000


def test_student_is_29_7_percent_smaller_than_lircdepth(param_counts):
    """Paper: −29.7 % parameters vs the lightweight baseline (±1.5 points allowed)."""
    ratio = param_counts['xdrcdepth'] / LIRCDEPTH_PARAMS
    assert 0.69 <= ratio <= 0.72


def test_teachers_are_larger_than_the_students(param_counts):
    """KD only makes sense from a bigger model; the full teacher is CaFNet-sized (~60 M)."""
    assert 55e6 < param_counts['cafnet_teacher'] < 65e6
    assert param_counts['cafnet_teacher'] > param_counts['lircdepth'] > param_counts['xdrcdepth']
    assert param_counts['cafnet_teacher_small'] > 2 * param_counts['xdrcdepth']
    assert param_counts['cafnet_teacher_small'] < param_counts['cafnet_teacher'] / 2
    assert param_counts['xdrcdepth_tiny'] < 1e6


def test_radar_channels_change_only_the_first_radar_layer():
    """A 6-channel radar map (e.g. + height, + time) costs a few weights, nothing else."""
    assert _params('xdrcdepth', radar_channels=6) - _params('xdrcdepth') == 2 * 3 * 9


@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('size', PAPER_SIZES, ids=['352x704', '896x1600'])
@pytest.mark.parametrize('batch', [1, 2])
def test_documented_shapes_at_paper_sizes(name, size, batch):
    """Shapes of every output at both paper sizes and batch 1/2 (meta device: no arithmetic).

    The real-number forwards below run the same code on CPU.
    """
    height, width = size
    with torch.device('meta'):
        model = create_model(name).eval()
        image = torch.empty(batch, 3, height, width)
        radar = torch.empty(batch, 4, height, width)
        out = model(image, radar)
    assert out.depth.shape == (batch, 1, height, width)
    assert [tuple(d.shape) for d in out.intermediate] == [(batch, 1, height, width)] * 3
    assert tuple(out.features) == FEATURE_KEYS
    for key, stride in zip(FEATURE_KEYS, (16, 8, 4, 2, 1)):
        feat = out.features[key]
        assert (feat.shape[0], *feat.shape[2:]) == (batch, height // stride, width // stride)
    assert out.head_input.shape[2:] == (height, width)


@pytest.mark.parametrize('name', FAMILIES)
def test_900_rows_is_rejected_with_a_hint(name):
    """nuScenes' raw 900x1600 does not fit five stride-2 stages; the message says 896."""
    with torch.device('meta'):
        model = create_model(name)
        image, radar = torch.empty(1, 3, 900, 1600), torch.empty(1, 4, 900, 1600)
    with pytest.raises(ValueError, match='900x1600.*multiple of 32.*896x1600'):
        model(image, radar)


def _check_real_output(out, batch, height, width, max_depth=100.0):
    assert out.depth.shape == (batch, 1, height, width)
    assert torch.isfinite(out.depth).all()
    assert float(out.depth.min()) > 0.0 and float(out.depth.max()) <= max_depth
    for inter in out.intermediate:
        assert inter.shape == (batch, 1, height, width) and torch.isfinite(inter).all()


def _real_inputs(batch, height, width):
    image = torch.rand(batch, 3, height, width)
    radar = torch.rand(batch, 4, height, width) * 40.0
    radar = radar * (torch.rand(batch, 1, height, width) < 0.01)
    return image, radar


def test_real_forward_of_lircdepth_at_352x704():
    """Real CPU forward at the training crop (the student and teacher run at 896x1600 below)."""
    torch.manual_seed(0)
    model = create_model('lircdepth').eval()
    with torch.inference_mode():
        _check_real_output(model(*_real_inputs(1, 352, 704)), 1, 352, 704)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['xdrcdepth', 'cafnet_teacher'])
def test_real_forward_at_896x1600(name):
    """Real CPU forward at the nuScenes test size (896x1600), batch 1.

    Batch 2 and LiRCDepth at this size are covered by the shape tests above; a real forward
    of every combination would cost minutes of CPU per test run.
    """
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.inference_mode():
        _check_real_output(model(*_real_inputs(1, 896, 1600)), 1, 896, 1600)


def test_model_info_json_reports_params_macs_and_ratio(capsys, param_counts):
    """`xdrcdepth model-info --json` prints the documented document with real numbers."""
    assert cli_main(['model-info', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    models = report['models']
    assert set(models) == {'student', 'lircdepth', 'teacher'}
    assert models['lircdepth']['params'] == LIRCDEPTH_PARAMS
    assert models['student']['params'] == param_counts['xdrcdepth']
    assert models['teacher']['params'] == param_counts['cafnet_teacher']
    assert report['student_to_lircdepth_params'] == pytest.approx(
        param_counts['xdrcdepth'] / LIRCDEPTH_PARAMS)
    for entry in models.values():
        assert set(entry['macs']) == {'352x704', '896x1600'}
        # MACs grow with the pixel count (1433600 / 247808 ≈ 5.79) for a fully-conv net.
        growth = entry['macs']['896x1600'] / entry['macs']['352x704']
        assert 5.5 < growth < 6.0
    # LiRCDepth at 896x1600 is ~119 GMAC (research note: 118.9 GMAC with flop_counter).
    assert models['lircdepth']['macs']['896x1600'] == pytest.approx(118.9e9, rel=0.01)
    assert models['student']['macs']['896x1600'] < models['lircdepth']['macs']['896x1600']


def test_model_info_extra_size_and_table(capsys):
    """--height/--width add a column; a bad size is a clear CLI error."""
    assert cli_main(['model-info', '--height', '64', '--width', '96']) == 0
    text = capsys.readouterr().out
    assert 'GMAC@64x96' in text and '12,645,228' in text and 'student / LiRCDepth' in text
    assert cli_main(['model-info', '--height', '60', '--width', '96']) == 1
    assert 'multiples of 32' in capsys.readouterr().err
