"""Training losses against values computed by hand (scalar math, not the code under test)."""
import math

import pytest
import torch

from xdrcdepth_ros.train import losses


def t(rows):
    """(1, 1, H, W) float tensor from nested lists."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def test_masked_l1_per_image_and_empty_image():
    pred = t([[1.0, 2.0], [3.0, 4.0]])
    gt = t([[2.0, 0.0], [3.0, 8.0]])
    assert losses.masked_l1(pred, gt).item() == pytest.approx(5.0 / 3.0)
    # A second image without any GT changes nothing (averaged over images with GT only).
    both = losses.masked_l1(torch.cat([pred, pred]), torch.cat([gt, torch.zeros_like(gt)]))
    assert both.item() == pytest.approx(5.0 / 3.0)
    # Per image, not per pixel: image A (1 px, err 1) and image B (3 px, err 3 each) -> 2, not 2.5.
    pa, ga = t([[1.0, 1.0], [1.0, 1.0]]), t([[2.0, 0.0], [0.0, 0.0]])
    pb, gb = t([[1.0, 1.0], [1.0, 1.0]]), t([[4.0, 4.0], [4.0, 0.0]])
    mixed = losses.masked_l1(torch.cat([pa, pb]), torch.cat([ga, gb]))
    assert mixed.item() == pytest.approx(2.0)


def test_masked_l1_no_gt_anywhere_is_zero_with_graph():
    pred = t([[1.0, 2.0]]).requires_grad_()
    loss = losses.masked_l1(pred, torch.zeros_like(pred))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(pred.grad == 0)


def test_depth_loss_rectified_weights_by_relative_error():
    pred = t([[1.0, 5.0]])
    gt_s = t([[2.0, 2.0]])
    loss = losses.depth_loss(pred, None, gt_s, rectified=True)
    # u_s = 1 - exp(-5 rel), u_d = 1 (no dense GT); w_s = softmax([u_d, u_s])[1].
    u0, u1 = 1 - math.exp(-5 / 3), 1 - math.exp(-5 * 3 / 7)
    w0, w1 = (math.exp(u) / (math.e + math.exp(u)) for u in (u0, u1))
    expected = (w0 * 1.0 + w1 * 3.0) / (w0 + w1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected > 2.0  # the larger relative error weighs more than in a plain mean
    assert losses.depth_loss(pred, None, gt_s, rectified=False).item() == pytest.approx(2.0)


def test_depth_loss_dense_excludes_sparse_pixels():
    pred = t([[2.0, 4.0, 9.0]])
    gt_s = t([[2.0, 0.0, 0.0]])
    gt_d = t([[7.0, 2.0, 0.0]])  # pixel 0 is sparse-supervised, so the dense 7 m is ignored
    loss = losses.depth_loss(pred, gt_d, gt_s, rectified=True)
    assert loss.item() == pytest.approx(0.0 + 2.0)
    with pytest.raises(ValueError, match='at least one'):
        losses.depth_loss(pred, None, None)


def test_smoothness_hand_computed():
    depth = t([[0.0, 1.0], [2.0, 4.0]])
    flat = torch.zeros(1, 3, 2, 2)
    assert losses.smoothness_loss(depth, flat).item() == pytest.approx(1.5 + 2.5)
    edge = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).expand(1, 3, 2, 2)
    assert losses.smoothness_loss(depth, edge).item() == pytest.approx(1.5 * math.exp(-1) + 2.5)


def test_saliency_l1_and_cosine():
    s = t([[0.0, 1.0], [2.0, 3.0]]).requires_grad_()
    teacher = t([[0.0, 0.0], [0.0, 5.0]]).requires_grad_()
    l1 = losses.saliency_distillation_loss(s, teacher, mode='l1')
    assert l1.item() == pytest.approx((1 / 3 + 2 / 3) / 4, rel=1e-5)
    cos = losses.saliency_distillation_loss([s], [teacher], mode='cosine')
    assert cos.item() == pytest.approx(1 - 3 / math.sqrt(14), rel=1e-5)
    l1.backward()
    assert s.grad is not None and teacher.grad is None  # the teacher map is a fixed target
    # Different sizes: the student map is resized to the teacher's.
    big = torch.ones(1, 1, 4, 4)
    assert losses.saliency_distillation_loss(big, torch.ones(1, 1, 2, 2)).item() == 0.0
    with pytest.raises(ValueError, match="'l1' or 'cosine'"):
        losses.saliency_distillation_loss(s, teacher, mode='l2')


def test_bin_centers():
    uniform = losses.depth_bin_centers(4, 1.0, 5.0)
    assert uniform.tolist() == pytest.approx([1.5, 2.5, 3.5, 4.5])
    sid = losses.depth_bin_centers(2, 1.0, 4.0, spacing='sid')
    assert sid.tolist() == pytest.approx([1.5, 3.0])
    with pytest.raises(ValueError):
        losses.depth_bin_centers(4, 0.0, 5.0)


def test_distribution_kd_hand_computed():
    centers = torch.tensor([1.0, 3.0])
    teacher, student = t([[1.0]]), t([[3.0]]).requires_grad_()
    # p_t = softmax([0, -2]), p_s = softmax([-2, 0]) -> KL = 2 (p_t0 - p_t1) = 2 tanh(1).
    kl = losses.distribution_distillation_loss(student, teacher, centers, tau=1.0)
    assert kl.item() == pytest.approx(2 * math.tanh(1.0), rel=1e-5)
    kl.backward()
    assert student.grad.item() > 0  # lowering the student toward 1 m lowers the loss
    # tau = 2 halves the logits (KL = tanh(0.5)); tau**2 scaling multiplies by 4.
    kl2 = losses.distribution_distillation_loss(t([[3.0]]), teacher, centers, tau=2.0)
    assert kl2.item() == pytest.approx(4 * math.tanh(0.5), rel=1e-5)
    raw = losses.distribution_distillation_loss(t([[3.0]]), teacher, centers, tau=2.0,
                                                tau_squared=False)
    assert raw.item() == pytest.approx(math.tanh(0.5), rel=1e-5)
    assert losses.distribution_distillation_loss(teacher, teacher, centers).item() == \
        pytest.approx(0.0, abs=1e-7)


def test_distribution_kd_mask_and_intermediate():
    centers = torch.tensor([1.0, 3.0])
    teacher = t([[1.0, 1.0]])
    student = t([[3.0, 1.0]])
    full = losses.distribution_distillation_loss(student, teacher, centers)
    assert full.item() == pytest.approx(math.tanh(1.0), rel=1e-5)  # (2 tanh 1 + 0) / 2
    only_first = losses.distribution_distillation_loss(
        student, teacher, centers, mask=torch.tensor([[[[True, False]]]]))
    assert only_first.item() == pytest.approx(2 * math.tanh(1.0), rel=1e-5)
    inter = losses.intermediate_distribution_loss([student, teacher], [teacher, teacher], centers)
    assert inter.item() == pytest.approx(math.tanh(1.0) / 2, rel=1e-5)


def test_sky_loss_pushes_only_sky_pixels_and_only_when_near():
    """Sky = dense GT 0. A sky pixel predicted at 30 m costs far_m - 30; one beyond far_m and
    every surface pixel cost nothing; images without sky do not dilute the mean."""
    from xdrcdepth_ros.train.losses import sky_loss

    pred = torch.full((2, 1, 2, 2), 30.0, requires_grad=True)
    gt = torch.tensor([[[[0.0, 0.0], [5.0, 5.0]]], [[[7.0, 7.0], [7.0, 7.0]]]])
    with torch.no_grad():
        pred[0, 0, 0, 1] = 95.0   # sky, already far: no cost
    loss = sky_loss(pred, gt, far_m=80.0)
    assert loss.item() == pytest.approx((80.0 - 30.0) / 2)
    loss.backward()
    assert pred.grad[0, 0, 0, 0] < 0 and pred.grad[0, 0, 0, 1] == 0
    assert not pred.grad[0, 0, 1].any() and not pred.grad[1].any()
    with pytest.raises(ValueError, match='gt_dense shape'):
        sky_loss(pred, gt[:1], far_m=80.0)


def test_sky_weight_needs_synthetic_data():
    from xdrcdepth_ros.train.config import config_from_dict

    with pytest.raises(ValueError, match='sky_weight needs data.dataset synthetic'):
        config_from_dict({'data': {'dataset': 'nuscenes'}, 'loss': {'sky_weight': 0.1}})
