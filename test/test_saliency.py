"""Grad-CAM for depth: autograd on any layer, the analytic head form, differentiability."""
from __future__ import annotations

import pytest

torch = pytest.importorskip('torch')

from torch import nn  # noqa: E402

from xdrcdepth_ros.model import (  # noqa: E402
    closed_form_head_cam, create_model, FEATURE_KEYS, grad_cam, ModelOutput, normalize_cam)
from xdrcdepth_ros.model.blocks import DepthHead  # noqa: E402

HEIGHT, WIDTH = 64, 96


def _fresh_inputs(batch: int = 2):
    """New random inputs every run (the model weights are seeded, the data is not)."""
    gen = torch.Generator()
    gen.seed()
    image = torch.rand(batch, 3, HEIGHT, WIDTH, generator=gen)
    radar = torch.rand(batch, 4, HEIGHT, WIDTH, generator=gen) * 30.0
    radar = radar * (torch.rand(batch, 1, HEIGHT, WIDTH, generator=gen) < 0.05)
    return image, radar


def _trained_looking(name: str) -> nn.Module:
    """A seeded model whose BatchNorm statistics have moved off their initial values."""
    torch.manual_seed(0)
    model = create_model(name)
    with torch.no_grad():
        model.train()
        model(*_fresh_inputs(2))
        # Half the head's input channels count as positive evidence, so no seed can give an
        # all-zero CAM (which would make the comparisons vacuous).
        model.head.conv.weight[:, ::2].abs_()
    return model.eval()


@pytest.fixture(scope='module')
def models():
    return {name: _trained_looking(name)
            for name in ('xdrcdepth_tiny', 'lircdepth', 'cafnet_teacher_small')}


def _assert_relative_close(actual, expected, rtol):
    scale = float(expected.detach().abs().max())
    assert scale > 0.0, 'degenerate all-zero CAM: the comparison would prove nothing'
    err = float((actual - expected).detach().abs().max())
    assert err <= rtol * scale, f'max error {err:.3g} > {rtol} x {scale:.3g}'


@pytest.mark.parametrize('name', ['xdrcdepth_tiny', 'lircdepth', 'cafnet_teacher_small'])
def test_closed_form_equals_autograd_at_the_head_input(models, name):
    """The analytic head Grad-CAM is Grad-CAM, for each model's head (bias or not)."""
    model = models[name]
    image, radar = _fresh_inputs()
    out = model(image, radar)
    closed = closed_form_head_cam(model.head, out.head_input)
    auto = grad_cam(model, image, radar, 'head_input', output=out)
    assert closed.shape == auto.shape == (2, 1, HEIGHT, WIDTH)
    _assert_relative_close(closed, auto, 1e-5)


def test_closed_form_equals_autograd_with_a_mask(models):
    """Masked target (e.g. only LiDAR-covered pixels): both forms use the same mean."""
    model = models['xdrcdepth_tiny']
    image, radar = _fresh_inputs()
    mask = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
    mask[0, 40:, :50] = True
    mask[1, :10, 60:] = True
    out = model(image, radar)
    closed = closed_form_head_cam(model.head, out.head_input, mask)
    auto = grad_cam(model, image, radar, 'head_input', mask=mask, output=out)
    _assert_relative_close(closed, auto, 1e-5)
    unmasked = grad_cam(model, image, radar, 'head_input', output=out)
    assert not torch.allclose(auto, unmasked)


def test_scale_free_closed_form_normalises_to_the_same_map(models):
    """The O(1)-valued variant used for export differs only by a per-image constant."""
    model = models['xdrcdepth_tiny']
    image, radar = _fresh_inputs()
    with torch.no_grad():
        out = model(image, radar)
        exact = closed_form_head_cam(model.head, out.head_input)
        scaled = closed_form_head_cam(model.head, out.head_input, scale_free=True)
    assert float(scaled.max()) > 1e3 * float(exact.max())
    _assert_relative_close(normalize_cam(scaled), normalize_cam(exact), 1e-5)


def test_forward_with_saliency_is_normalised_head_grad_cam(models):
    """What the node publishes equals normalised autograd Grad-CAM at the head input."""
    model = models['xdrcdepth_tiny']
    image, radar = _fresh_inputs()
    with torch.no_grad():
        _, saliency = model.forward_with_saliency(image, radar)
    expected = normalize_cam(grad_cam(model, image, radar, 'head_input'))
    _assert_relative_close(saliency, expected, 1e-4)
    assert float(saliency.max()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize('name', ['xdrcdepth_tiny', 'lircdepth', 'cafnet_teacher_small'])
def test_grad_cam_works_on_every_named_layer(models, name):
    """Every feature key gives a non-negative map at that layer's resolution."""
    model = models[name]
    image, radar = _fresh_inputs(1)
    out = model(image, radar)
    for key, stride in zip(FEATURE_KEYS, (16, 8, 4, 2, 1)):
        cam = grad_cam(model, image, radar, key, output=out)
        assert cam.shape == (1, 1, HEIGHT // stride, WIDTH // stride), key
        assert float(cam.min()) >= 0.0
        assert torch.isfinite(cam).all()


def test_grad_cam_matches_a_hand_computed_example():
    """Tiny model with a 1x1 head: α_c = w_c · mean(d_max σ'(z)) / (H·W)."""
    class Toy(nn.Module):
        max_depth, radar_channels = 10.0, 1

        def __init__(self):
            super().__init__()
            self.head = DepthHead(2, self.max_depth, kernel_size=1)

        def forward(self, image, radar):
            feat = torch.cat([image[:, :1], radar], dim=1)
            depth = self.head(feat)
            return ModelOutput(depth, [depth] * 3, {'1': feat}, feat)

    toy = Toy()
    with torch.no_grad():
        toy.head.conv.weight.copy_(torch.tensor([1.0, -2.0]).view(1, 2, 1, 1))
        toy.head.conv.bias.fill_(0.5)
    image = torch.rand(1, 3, 4, 4)
    radar = torch.rand(1, 1, 4, 4)
    z = image[:, :1] - 2.0 * radar + 0.5
    g = 10.0 * torch.sigmoid(z) * (1 - torch.sigmoid(z)) / 16.0
    alpha = torch.tensor([1.0, -2.0]) * g.mean()
    expected = torch.relu(alpha[0] * image[:, :1] + alpha[1] * radar)
    torch.testing.assert_close(grad_cam(toy, image, radar, '1'), expected)
    torch.testing.assert_close(closed_form_head_cam(toy.head, torch.cat(
        [image[:, :1], radar], dim=1)), expected)


def test_create_graph_makes_the_cam_differentiable():
    """With create_graph the CAM has a correct gradient w.r.t. weights (double backprop)."""
    class Small(nn.Module):
        max_depth, radar_channels = 20.0, 1

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 3, 3, padding=1)
            self.head = DepthHead(3, self.max_depth)

        def forward(self, image, radar):
            feat = torch.tanh(self.conv(torch.cat([image, radar], dim=1)))
            depth = self.head(feat)
            return ModelOutput(depth, [depth] * 3, {'1': feat}, feat)

    torch.manual_seed(3)
    model = Small().double()
    image = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    radar = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    weight = model.conv.weight

    def cam_of(w):
        with torch.no_grad():
            weight.copy_(w)
        return grad_cam(model, image, radar, '1', create_graph=True)

    w0 = weight.detach().clone()
    target = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    loss = (cam_of(w0) * target).sum()
    (grad,) = torch.autograd.grad(loss, weight)
    # Central finite difference along a random direction.
    direction = torch.randn_like(w0)
    eps = 1e-6
    with torch.no_grad():
        plus = float((cam_of(w0 + eps * direction) * target).sum())
        minus = float((cam_of(w0 - eps * direction) * target).sum())
    numeric = (plus - minus) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    assert abs(numeric) > 0


def test_kd_loss_gradient_reaches_the_student_encoder(models):
    """Saliency KD trains the whole student, not just the layers after the CAM layer."""
    model = create_model('xdrcdepth_tiny')
    image, radar = _fresh_inputs()
    cam = normalize_cam(grad_cam(model, image, radar, '1/8', create_graph=True))
    cam.mean().backward()
    first_conv = model.image_encoder.features[0][0].weight
    assert first_conv.grad is not None and float(first_conv.grad.abs().sum()) > 0


def test_frozen_teacher_still_gives_a_cam(models):
    """A teacher with requires_grad=False everywhere (as in KD) still yields its CAM."""
    model = models['cafnet_teacher_small']
    image, radar = _fresh_inputs(1)
    reference = grad_cam(model, image, radar, '1/8')
    model.requires_grad_(False)
    try:
        with torch.no_grad():
            frozen = grad_cam(model, image, radar, '1/8')
    finally:
        model.requires_grad_(True)
    torch.testing.assert_close(frozen, reference)
    assert not frozen.requires_grad


def test_bad_layer_and_graphless_output_are_clear_errors(models):
    """Unknown layer names list the valid ones; a no_grad output says how to fix it."""
    model = models['xdrcdepth_tiny']
    image, radar = _fresh_inputs(1)
    with pytest.raises(ValueError, match=r"unknown Grad-CAM layer '1/32'.*head_input"):
        grad_cam(model, image, radar, '1/32')
    with torch.no_grad():
        out = model(image, radar)
    with pytest.raises(ValueError, match='no autograd graph'):
        grad_cam(model, image, radar, '1/8', output=out)


def test_closed_form_rejects_a_strided_head():
    """The analytic gradient assumes a stride-1 'same' conv; anything else must fail loudly."""
    head = DepthHead(4, 100.0)
    head.conv.stride = (2, 2)
    with pytest.raises(ValueError, match='stride-1'):
        closed_form_head_cam(head, torch.rand(1, 4, 8, 8))


def test_normalize_cam_is_per_image_and_keeps_zero_maps():
    """Each image peaks at 1; an all-zero map stays zero instead of NaN."""
    cam = torch.zeros(2, 1, 3, 3)
    cam[0, 0, 1, 1] = 4e-7
    cam[0, 0, 0, 0] = 1e-7
    out = normalize_cam(cam)
    assert float(out[0].max()) == pytest.approx(1.0)
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.25)
    assert torch.equal(out[1], torch.zeros(1, 3, 3))


def test_closed_form_equals_autograd_with_a_row_prior():
    """The row prior shifts the head's logits, so the sigmoid's slope in the closed form must
    see it: with trained (non-zero) heads the two maps still agree."""
    torch.manual_seed(2)
    model = create_model('xdrcdepth_tiny', row_prior_rows=64).eval()
    model.row_prior.set_profile(torch.linspace(90.0, 2.0, 64))
    for head in (model.head8, model.head4, model.head2, model.head):
        torch.nn.init.normal_(head.conv.weight, std=0.05)
    image, radar = torch.rand(1, 3, 64, 96), torch.zeros(1, 4, 64, 96)
    _, saliency = model.forward_with_saliency(image, radar)
    expected = normalize_cam(grad_cam(model, image, radar, 'head_input'), eps=1e-6)
    torch.testing.assert_close(saliency, expected, rtol=1e-4, atol=1e-5)
