"""Paper metrics against values worked out by hand (xdrcdepth_ros.core.evaluate)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xdrcdepth_ros.core.evaluate import (
    compute_metrics, format_table, MetricAccumulator, valid_mask)


def test_metrics_match_hand_computed_values():
    """Two valid pixels (gt 10, 20; pred 12, 15): every metric follows from the definitions."""
    gt = np.array([[10.0, 20.0], [0.0, 0.0]], dtype=np.float32)
    pred = np.array([[12.0, 15.0], [5.0, 7.0]], dtype=np.float32)
    m = compute_metrics(pred, gt, max_depth=80.0)
    assert m is not None
    assert m['n_pixels'] == 2
    assert m['mae_m'] == pytest.approx(3.5)
    assert m['rmse_m'] == pytest.approx(math.sqrt((2 ** 2 + 5 ** 2) / 2))
    # |1/12 - 1/10| = |1/15 - 1/20| = 1/60 per metre = 16.67 per km.
    assert m['imae_per_km'] == pytest.approx(1000 / 60)
    assert m['irmse_per_km'] == pytest.approx(1000 / 60)
    assert m['abs_rel'] == pytest.approx((2 / 10 + 5 / 20) / 2)
    assert m['sq_rel'] == pytest.approx((4 / 10 + 25 / 20) / 2)
    # Ratios 1.2 and 1.333: only the first is under 1.25, both under 1.5625.
    assert m['delta1'] == pytest.approx(0.5)
    assert m['delta2'] == pytest.approx(1.0)
    assert m['delta3'] == pytest.approx(1.0)


def test_cap_excludes_far_gt_and_clips_prediction():
    """At a 50 m cap GT of 60 m drops out; at 70 m it counts and a 75 m prediction clips to 70."""
    gt = np.array([[10.0, 60.0]])
    pred = np.array([[10.0, 75.0]])
    m50 = compute_metrics(pred, gt, max_depth=50.0)
    assert m50['n_pixels'] == 1 and m50['mae_m'] == pytest.approx(0.0)
    m70 = compute_metrics(pred, gt, max_depth=70.0)
    assert m70['n_pixels'] == 2
    assert m70['mae_m'] == pytest.approx((0 + 10) / 2)  # |70 - 60|, not |75 - 60|
    m80 = compute_metrics(pred, gt, max_depth=80.0)
    assert m80['mae_m'] == pytest.approx((0 + 15) / 2)


def test_gt_exactly_at_cap_is_excluded():
    """The reference protocol keeps gt < max_eval (strict), so 80.0 m GT is outside 0-80 m."""
    gt = np.array([[80.0, 40.0]])
    assert valid_mask(gt, 80.0).tolist() == [[False, True]]
    assert compute_metrics(np.array([[1.0, 40.0]]), gt, 80.0)['n_pixels'] == 1


def test_nan_prediction_at_gt_pixel_counts_as_min_depth():
    """A NaN prediction where GT exists is scored as 1e-3 m, not skipped."""
    gt = np.array([[10.0, 20.0]])
    pred = np.array([[np.nan, 20.0]])
    m = compute_metrics(pred, gt)
    assert m['n_pixels'] == 2
    assert m['mae_m'] == pytest.approx((10.0 - 1e-3) / 2)
    assert m['delta1'] == pytest.approx(0.5)
    # +inf clips to the cap, -inf to the floor.
    m_inf = compute_metrics(np.array([[np.inf, -np.inf]]), gt, max_depth=50.0)
    assert m_inf['mae_m'] == pytest.approx(((50 - 10) + (20 - 1e-3)) / 2)


def test_nan_prediction_without_gt_is_ignored():
    """NaN where there is no GT must not change anything."""
    gt = np.array([[10.0, 0.0]])
    a = compute_metrics(np.array([[11.0, np.nan]]), gt)
    b = compute_metrics(np.array([[11.0, 3.0]]), gt)
    assert a == b


def test_image_without_valid_gt_returns_none():
    """All-zero, NaN or beyond-cap GT gives None rather than NaN metrics."""
    pred = np.ones((3, 4))
    assert compute_metrics(pred, np.zeros((3, 4))) is None
    assert compute_metrics(pred, np.full((3, 4), np.nan)) is None
    assert compute_metrics(pred, np.full((3, 4), 90.0), max_depth=80.0) is None


def test_accumulator_averages_per_image_not_per_pixel():
    """Image A (1 pixel, error 4) and image B (3 pixels, error 0): mean MAE is 2, not 1."""
    acc = MetricAccumulator(caps=(80.0,))
    acc.add(np.array([[14.0, 0.0, 0.0, 0.0]]), np.array([[10.0, 0.0, 0.0, 0.0]]))
    acc.add(np.array([[5.0, 6.0, 7.0, 1.0]]), np.array([[5.0, 6.0, 7.0, 0.0]]))
    s = acc.summary()[80.0]
    assert s['mae_m'] == pytest.approx(2.0)
    assert s['n_images'] == 2 and s['n_pixels'] == 4 and s['n_skipped'] == 0


def test_accumulator_skips_and_counts_images_without_gt_per_cap():
    """An image whose GT lies between 50 and 70 m counts at 70/80 m and is skipped at 50 m."""
    acc = MetricAccumulator()
    acc.add(np.full((2, 2), 62.0), np.full((2, 2), 60.0))
    acc.add(np.full((2, 2), 9.0), np.full((2, 2), 10.0))
    acc.add(np.full((2, 2), 9.0), np.zeros((2, 2)))
    s = acc.summary()
    assert s[50]['n_images'] == 1 and s[50]['n_skipped'] == 2
    assert s[50]['mae_m'] == pytest.approx(1.0)
    assert s[70]['n_images'] == 2 and s[70]['n_skipped'] == 1
    assert s[70]['mae_m'] == pytest.approx(1.5)
    assert s[80]['rmse_m'] == pytest.approx(1.5)
    assert len(acc) == 3


def test_empty_accumulator_summary_is_nan_and_table_says_na():
    """No image evaluated: means are NaN and the table prints n/a instead of crashing."""
    s = MetricAccumulator().summary()
    assert math.isnan(s[80]['mae_m']) and s[80]['n_images'] == 0
    assert 'n/a' in format_table(s)


def test_table_reports_millimetres_and_inverse_kilometres():
    """MAE 3.5 m prints as 3500.0 mm; iMAE 16.67 /km prints as 16.67."""
    acc = MetricAccumulator(caps=(80.0,))
    acc.add(np.array([[12.0, 15.0]]), np.array([[10.0, 20.0]]))
    table = format_table(acc.summary())
    header, row = table.splitlines()
    assert 'MAE[mm]' in header and 'iMAE[1/km]' in header
    cells = row.split()
    assert cells[0] == '0-80m'
    assert cells[1] == '3500.0' and cells[3] == '16.67'


def test_shape_mismatch_and_bad_caps_raise():
    """Errors name the problem instead of broadcasting silently."""
    with pytest.raises(ValueError, match='same shape'):
        compute_metrics(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match='max_depth'):
        compute_metrics(np.ones((2, 2)), np.ones((2, 2)), max_depth=0.0)
    with pytest.raises(ValueError, match='caps'):
        MetricAccumulator(caps=())


def test_channel_first_maps_are_accepted():
    """(1, H, W) maps, as a model returns them, evaluate like (H, W)."""
    gt = np.array([[[10.0, 20.0]]])
    pred = np.array([[[12.0, 15.0]]])
    assert compute_metrics(pred, gt) == compute_metrics(pred[0], gt[0])
