"""Model building blocks: FiLM, dense ASPP receptive fields, depth head, encoders."""
from __future__ import annotations

import pytest

torch = pytest.importorskip('torch')

from xdrcdepth_ros.model.blocks import (  # noqa: E402
    DenseASPP, DepthHead, FiLM, PointwiseDASPP, UpConv)
from xdrcdepth_ros.model.encoders import MobileNetV2Encoder, ResNetEncoder  # noqa: E402


@pytest.mark.parametrize('mode', ['channel', 'spatial'])
def test_film_starts_as_identity(mode):
    """Zero-initialised γ/β convs: an untrained FiLM passes the image features through."""
    film = FiLM(8, 6, mode)
    image, radar = torch.randn(2, 8, 5, 7), torch.randn(2, 6, 5, 7)
    out = film(image, radar)
    assert out.shape == image.shape
    torch.testing.assert_close(out, image)


@pytest.mark.parametrize('mode', ['channel', 'spatial'])
def test_film_applies_gamma_and_beta(mode):
    """With constant γ, β (bias only) the output is exactly (1 + γ)·f + β per channel."""
    film = FiLM(3, 4, mode)
    gamma, beta = torch.tensor([0.5, -0.25, 2.0]), torch.tensor([1.0, 0.0, -3.0])
    with torch.no_grad():
        film.gamma.bias.copy_(gamma)
        film.beta.bias.copy_(beta)
    image, radar = torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4)
    expected = (1 + gamma.view(1, 3, 1, 1)) * image + beta.view(1, 3, 1, 1)
    torch.testing.assert_close(film(image, radar), expected)


def test_channel_film_is_spatially_constant_and_spatial_film_is_not():
    """The paper's FiLM pools radar to C×1×1; the spatial option keeps radar positions."""
    torch.manual_seed(0)
    image = torch.ones(1, 4, 6, 6)
    radar = torch.zeros(1, 2, 6, 6)
    radar[0, :, 1, 4] = 10.0  # one radar return
    outputs = {}
    for mode in ('channel', 'spatial'):
        film = FiLM(4, 2, mode)
        with torch.no_grad():
            film.gamma.weight.normal_()
            film.beta.weight.normal_()
        outputs[mode] = film(image, radar)
    flat = outputs['channel'].flatten(2)
    assert torch.allclose(flat, flat[..., :1].expand_as(flat))
    assert not torch.allclose(outputs['channel'], image)
    spatial = outputs['spatial']
    torch.testing.assert_close(spatial[..., 0, 0], image[..., 0, 0])  # no radar here
    assert not torch.allclose(spatial[..., 1, 4], image[..., 1, 4])


def test_film_rejects_unknown_mode():
    """A typo in the mode must not silently pick one."""
    with pytest.raises(ValueError, match=r"unknown FiLM mode 'pixel'.*channel"):
        FiLM(4, 4, 'pixel')


def _receptive_radius(block: torch.nn.Module, channels: int, size: int) -> int:
    """Largest row offset at which the centre output pixel depends on the input."""
    block.eval()
    with torch.no_grad():
        for param in block.parameters():
            param.copy_(param.abs() + 1e-3)  # all-positive: no cancellations, ReLUs pass
    x = (torch.rand(1, channels, size, size) + 0.1).requires_grad_(True)
    centre = size // 2
    block(x)[0, :, centre, centre].sum().backward()
    row = x.grad[0].abs().sum(0)[centre]
    nonzero = torch.nonzero(row > 0).flatten()
    return int((nonzero - centre).abs().max())


@pytest.mark.parametrize('rates,radius', [((3,), 3), ((3, 6), 9), ((3, 6, 12, 18, 24), 63)])
def test_pointwise_daspp_receptive_field_grows_with_dense_rates(rates, radius):
    """Dense connections chain the dilations: the reach is the sum of the rates."""
    block = PointwiseDASPP(4, 4, 4, rates)
    assert _receptive_radius(block, 4, 2 * 63 + 9) == radius


def test_dense_aspp_receptive_field_matches_its_rates():
    """The teacher's full-conv dense ASPP reaches the sum of its rates plus its 3x3 fuse."""
    block = DenseASPP(4, 4, 4, (3, 6))
    assert _receptive_radius(block, 4, 41) == 3 + 6 + 1


def test_pointwise_daspp_is_lighter_than_full_dense_aspp():
    """The point of 'point-wise': far fewer parameters than the full 3x3 dense ASPP."""
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(PointwiseDASPP(128, 96, 128)) * 5 < count(DenseASPP(128, 96, 128))


def test_daspp_keeps_the_spatial_size():
    """Dilated convs are padded: output size equals input size."""
    out = PointwiseDASPP(16, 8, 12)(torch.randn(2, 16, 11, 13))
    assert out.shape == (2, 12, 11, 13)


def test_depth_head_is_bounded_by_max_depth():
    """max_depth · sigmoid: even huge activations stay within (0, max_depth]."""
    head = DepthHead(4, max_depth=80.0)
    with torch.no_grad():
        out = head(torch.randn(1, 4, 8, 8) * 1e3)
        at_zero = head(torch.zeros(1, 4, 2, 2))
        expected = 80.0 * torch.sigmoid(head.conv.bias).expand(1, 1, 2, 2)
    assert out.shape == (1, 1, 8, 8)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 80.0
    torch.testing.assert_close(at_zero, expected)


@pytest.mark.parametrize('kwargs,match', [({'kernel_size': 2}, 'odd'),
                                          ({'max_depth': 0.0}, 'positive')])
def test_depth_head_rejects_bad_arguments(kwargs, match):
    """Even kernels break the 'same' padding the closed-form CAM relies on."""
    params = {'in_channels': 4, 'max_depth': 100.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        DepthHead(**params)


def test_upconv_doubles_the_size():
    """Each decoder stage goes up exactly one octave."""
    assert UpConv(8, 4)(torch.randn(1, 8, 3, 5)).shape == (1, 4, 6, 10)


def test_mobilenet_encoder_taps_five_strides():
    """Taps at 1/2 … 1/32 with MobileNetV2's channels; a radar stem accepts C channels."""
    enc = MobileNetV2Encoder(4)
    assert enc.channels == [16, 24, 32, 64, 1280]
    feats = enc(torch.randn(1, 4, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (16, 32, 48), (24, 16, 24), (32, 8, 12), (64, 4, 6), (1280, 2, 3)]


def test_resnet_encoder_taps_five_strides():
    """ResNet taps: stem ReLU, layer1..4 at 1/2 … 1/32."""
    enc = ResNetEncoder(5, (1, 1, 1, 1))
    feats = enc(torch.randn(1, 5, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_encoder_rejects_a_mismatched_weight_file(tmp_path):
    """A ResNet file given as MobileNetV2 weights fails with a clear message."""
    path = tmp_path / 'resnet.pth'
    torch.save(ResNetEncoder(3, (1, 1, 1, 1)).state_dict(), path)
    with pytest.raises(ValueError, match='does not match MobileNetV2'):
        MobileNetV2Encoder(3, pretrained_path=path)
