"""The XD-RCDepth student (tiny variant for speed): output contract, sizes, checkpoints."""
from __future__ import annotations

import pytest

torch = pytest.importorskip('torch')

from xdrcdepth_ros.model import (  # noqa: E402
    create_model, FEATURE_KEYS, load_checkpoint, MODEL_NAMES, ModelOutput, save_checkpoint)


def _inputs(batch: int, height: int, width: int, channels: int = 4, seed: int | None = None):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    image = torch.rand(batch, 3, height, width, generator=gen)
    radar = torch.zeros(batch, channels, height, width)
    # Sparse radar: a few pixels with depth/RCS/velocity, zeros elsewhere (as the node builds it).
    mask = torch.rand(batch, 1, height, width, generator=gen) < 0.02
    values = torch.rand(batch, channels, height, width, generator=gen) * 50.0
    radar = torch.where(mask, values, radar)
    return image, radar


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return create_model('xdrcdepth_tiny').eval()


def test_variant_names_are_the_contract():
    """Trainer, export and tests refer to these names; renaming one breaks them."""
    assert set(MODEL_NAMES) == {'xdrcdepth', 'xdrcdepth_tiny', 'lircdepth', 'cafnet',
                                'cafnet_teacher', 'cafnet_teacher_small'}


def test_unknown_model_name_is_rejected():
    """A typo in a config must fail with the list of valid names, not a KeyError."""
    with pytest.raises(ValueError, match='unknown model .*xdrcdepth_tiny'):
        create_model('xdrcdepth_tinyy')


def test_tiny_is_small():
    """The CI variant must stay under 1 M parameters so CPU tests stay fast."""
    model = create_model('xdrcdepth_tiny')
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.max_depth == 100.0 and model.radar_channels == 4


@pytest.mark.parametrize('batch', [1, 2])
def test_output_shapes_follow_the_contract(tiny, batch):
    """depth, 3 full-res intermediates (1/8, 1/4, 1/2) and features at the documented strides."""
    image, radar = _inputs(batch, 64, 96)
    with torch.no_grad():
        out = tiny(image, radar)
    assert isinstance(out, ModelOutput)
    assert out.depth.shape == (batch, 1, 64, 96)
    assert len(out.intermediate) == 3
    assert all(d.shape == (batch, 1, 64, 96) for d in out.intermediate)
    assert tuple(out.features) == FEATURE_KEYS
    for key, stride in zip(FEATURE_KEYS, (16, 8, 4, 2, 1)):
        assert out.features[key].shape[0] == batch
        assert out.features[key].shape[2:] == (64 // stride, 96 // stride), key
    assert out.head_input is out.features['1']
    assert float(out.depth.min()) > 0.0 and float(out.depth.max()) <= 100.0
    if batch == 2:  # eval mode: each image's depth must not depend on its batch neighbour
        with torch.no_grad():
            single = tiny(image[1:], radar[1:]).depth
        torch.testing.assert_close(single, out.depth[1:], rtol=1e-5, atol=1e-4)


def test_max_depth_bounds_the_output():
    """max_depth scales the sigmoid head: outputs stay in (0, max_depth]."""
    model = create_model('xdrcdepth_tiny', max_depth=7.5).eval()
    image, radar = _inputs(1, 32, 64)
    with torch.no_grad():
        out = model(image, radar)
    assert float(out.depth.max()) <= 7.5
    assert all(float(d.max()) <= 7.5 for d in out.intermediate)


@pytest.mark.parametrize('size', [(60, 96), (64, 100), (0, 64)])
def test_size_not_multiple_of_32_is_a_clear_error(tiny, size):
    """900x1600 is the classic mistake: the message must say what to do."""
    image, radar = torch.rand(1, 3, *size), torch.zeros(1, 4, *size)
    with pytest.raises(ValueError, match='multiple of 32'):
        tiny(image, radar)


def test_wrong_radar_channels_is_a_clear_error(tiny):
    """A 3-channel radar map for a 4-channel model must name both shapes."""
    with pytest.raises(ValueError, match=r'radar must be \(B, 4, H, W\)'):
        tiny(torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))


def test_mismatched_image_and_radar_sizes_are_rejected(tiny):
    """Image and radar must be rasterised at the same model size."""
    with pytest.raises(ValueError, match='differ'):
        tiny(torch.rand(1, 3, 64, 64), torch.zeros(1, 4, 64, 96))


def test_forward_with_saliency_gives_depth_and_unit_saliency(tiny):
    """The export path returns the same depth as forward plus a [0, 1] saliency map."""
    image, radar = _inputs(2, 64, 96)
    with torch.no_grad():
        depth, saliency = tiny.forward_with_saliency(image, radar)
        ref = tiny(image, radar).depth
    assert saliency.shape == depth.shape == (2, 1, 64, 96)
    torch.testing.assert_close(depth, ref)
    assert float(saliency.min()) >= 0.0 and float(saliency.max()) <= 1.0


def test_image_normalisation_is_inside_and_not_saved(tiny):
    """Raw [0,1] pixels go in; the ImageNet mean/std are buffers kept out of checkpoints."""
    keys = tiny.state_dict().keys()
    assert not any(k.startswith('normalize.') for k in keys)
    assert torch.allclose(tiny.normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    """load_checkpoint rebuilds from name + kwargs and gives identical outputs."""
    torch.manual_seed(1)
    model = create_model('xdrcdepth_tiny', max_depth=80.0, film_mode='spatial')
    image, radar = _inputs(1, 64, 64)
    model.train()
    model(image, radar)  # move BatchNorm running stats away from their initial values
    model.eval()
    path = tmp_path / 'ckpt' / 'student.pt'
    save_checkpoint(path, model, extra={'epoch': 3, 'metrics': {'mae': 1.5}})
    loaded, payload = load_checkpoint(path)
    assert payload['model_name'] == 'xdrcdepth_tiny'
    assert payload['model_kwargs'] == {'max_depth': 80.0, 'film_mode': 'spatial'}
    assert payload['epoch'] == 3 and payload['metrics'] == {'mae': 1.5}
    assert not loaded.training and loaded.max_depth == 80.0
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, radar).depth, model(image, radar).depth)
    assert [p.name for p in path.parent.iterdir()] == ['student.pt']


def test_checkpoint_rejects_reserved_extra_keys(tmp_path):
    """extra must not silently overwrite the state dict."""
    model = create_model('xdrcdepth_tiny')
    with pytest.raises(ValueError, match='reserved'):
        save_checkpoint(tmp_path / 'x.pt', model, extra={'state_dict': {}})
    assert not (tmp_path / 'x.pt').exists()


def test_load_checkpoint_errors_are_clear(tmp_path):
    """A missing file and a foreign file fail with messages that name the path."""
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        load_checkpoint(tmp_path / 'nope.pt')
    foreign = tmp_path / 'foreign.pt'
    torch.save({'weights': torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match='not an xdrcdepth checkpoint'):
        load_checkpoint(foreign)


def test_pretrained_path_loads_local_imagenet_weights(tmp_path):
    """ImageNet weights come from a local torchvision MobileNetV2 file into both encoders."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(2)
    reference = mobilenet_v2(weights=None)
    path = tmp_path / 'mobilenet_v2_imagenet.pth'
    torch.save(reference.state_dict(), path)
    model = create_model('xdrcdepth', pretrained_path=str(path))
    for encoder in (model.image_encoder, model.radar_encoder):
        torch.testing.assert_close(encoder.features[0][0].weight, reference.features[0][0].weight)
        torch.testing.assert_close(encoder.features[18][0].weight,
                                   reference.features[18][0].weight)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        create_model('xdrcdepth_tiny', pretrained_path=str(tmp_path / 'missing.pth'))


def test_row_prior_model_starts_at_its_profile_and_survives_a_checkpoint(tmp_path):
    """With a row prior the untrained student outputs the profile in every row (all four
    heads), resampled for another input height; the profile travels in the checkpoint."""
    model = create_model('xdrcdepth_tiny', row_prior_rows=64).eval()
    profile = torch.linspace(70.0, 3.0, 64)
    model.row_prior.set_profile(profile)
    image, radar = _inputs(1, 64, 96, seed=1)
    with torch.no_grad():
        out = model(image, radar)
    torch.testing.assert_close(out.depth[0, 0], profile[:, None].expand(64, 96),
                               rtol=1e-4, atol=1e-3)
    # The 1/8 head sees 8 rows: the profile averaged down, not a copy of its first rows.
    assert out.intermediate[0][0, 0, 0, 0] < 70.0 and out.intermediate[0][0, 0, -1, 0] > 3.0
    with torch.no_grad():
        taller = model(*_inputs(1, 128, 96, seed=1)).depth[0, 0, :, 0]
    assert taller[0] == pytest.approx(70.0, rel=0.02) and taller[-1] == pytest.approx(3.0, rel=0.05)
    assert bool((taller[1:] <= taller[:-1] + 1e-4).all())  # still decreasing down the image
    save_checkpoint(tmp_path / 'prior.pt', model)
    loaded, payload = load_checkpoint(tmp_path / 'prior.pt')
    assert payload['model_kwargs'] == {'row_prior_rows': 64}
    torch.testing.assert_close(loaded.row_prior.depth, profile)


def test_row_prior_rejects_a_profile_of_another_length_or_with_nan():
    model = create_model('xdrcdepth_tiny', row_prior_rows=16)
    with pytest.raises(ValueError, match='16 rows, got a profile of 8'):
        model.row_prior.set_profile(torch.ones(8))
    with pytest.raises(ValueError, match='non-finite'):
        model.row_prior.set_profile(torch.full((16,), float('nan')))
    assert create_model('xdrcdepth_tiny').row_prior is None  # the paper's model has none
