"""visualize.py: fixed metric colour scale, overlays, panels, PNG writing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from xdrcdepth_ros.core.visualize import (colorize_depth, Colormap, error_map, make_panel,
                                          radar_overlay, saliency_overlay, save_png)


def test_depth_colours_use_a_fixed_metric_range_not_per_frame_min_max():
    """The same distance must get the same colour in every frame, whatever else is in view."""
    near_scene = np.array([[5.0, 10.0]], np.float32)
    far_scene = np.array([[10.0, 60.0]], np.float32)
    a = colorize_depth(near_scene, 80.0)
    b = colorize_depth(far_scene, 80.0)
    np.testing.assert_array_equal(a[0, 1], b[0, 0])
    assert not np.array_equal(a[0, 0], a[0, 1])


def test_invalid_depth_is_black_and_valid_depth_is_not():
    depth = np.array([[np.nan, 0.0, -1.0, np.inf, 1.0, 80.0, 200.0]], np.float32)
    rgb = colorize_depth(depth, 80.0)
    assert rgb.shape == (1, 7, 3) and rgb.dtype == np.uint8
    assert not rgb[0, :4].any()
    assert rgb[0, 4:].any(axis=1).all()
    # Beyond max_depth saturates to the far colour.
    np.testing.assert_array_equal(rgb[0, 5], rgb[0, 6])


def test_near_is_the_warm_end_of_turbo():
    rgb = colorize_depth(np.array([[1.0, 79.0]], np.float32), 80.0, Colormap.TURBO)
    near, far = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert near[0] > near[2] and far[2] > far[0]


def test_saliency_overlay_blends_and_resizes():
    image = np.full((40, 60, 3), 100, np.uint8)
    saliency = np.zeros((20, 30), np.float32)
    saliency[10:, 15:] = 1.0
    out = saliency_overlay(image, saliency, alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[-1, -1])
    np.testing.assert_array_equal(saliency_overlay(image, saliency, alpha=0.0), image)


def test_radar_overlay_draws_dots_only_where_the_map_has_points():
    image = np.zeros((50, 80, 3), np.uint8)
    radar = np.zeros((4, 50, 80), np.float32)
    radar[0, 10, 20] = 5.0
    radar[0, 40, 70] = 70.0
    out = radar_overlay(image, radar, 80.0, radius=2)
    assert out[10, 20].any() and out[40, 70].any()
    assert not out[25, 45].any()
    # Dots take the depth colour scale.
    np.testing.assert_array_equal(out[10, 20], colorize_depth(np.array([[5.0]]), 80.0)[0, 0])
    assert not image.any(), 'the input image must not be modified'


def test_error_map_is_black_without_ground_truth():
    pred = np.array([[10.0, 10.0, np.nan, 10.0]], np.float32)
    gt = np.array([[10.0, 15.0, 10.0, 0.0]], np.float32)
    out = error_map(pred, gt, max_error=5.0, colormap=Colormap.MAGMA)
    assert out[0, 1].sum() > out[0, 0].sum()
    assert not out[0, 2].any() and not out[0, 3].any()


def test_panel_has_titles_and_resizes_tiles():
    a = np.full((30, 40, 3), 255, np.uint8)
    b = np.full((60, 80, 3), 128, np.uint8)
    panel = make_panel([('camera', a), ('depth', b)], title_height=20)
    assert panel.shape == (50, 80, 3)
    assert (panel[20:, 40:] == 128).all() and (panel[20:, :40] == 255).all()
    assert panel[:20, :40].any() and panel[:20, 40:].any(), 'each title is drawn in its bar'


def test_panel_grid_leaves_empty_cells_black():
    tile = np.full((10, 10, 3), 200, np.uint8)
    panel = make_panel([(str(i), tile) for i in range(5)], columns=3, title_height=12)
    assert panel.shape == (2 * 22, 30, 3)
    assert not panel[22:, 20:].any()


def test_save_png_round_trips_rgb(tmp_path):
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 255
    path = save_png(tmp_path / 'sub' / 'red.png', rgb)
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(back, rgb)
    assert [p.name for p in path.parent.iterdir()] == ['red.png']


@pytest.mark.parametrize('call, match', [
    (lambda: colorize_depth(np.zeros((2, 2, 1)), 80.0), r'\(H, W\)'),
    (lambda: colorize_depth(np.zeros((2, 2)), 0.0), 'max_depth'),
    (lambda: saliency_overlay(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2))), 'uint8'),
    (lambda: radar_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 5))), 'radar map'),
    (lambda: error_map(np.zeros((2, 2)), np.zeros((3, 3))), 'differ'),
    (lambda: make_panel([]), 'at least one'),
    (lambda: save_png('x.jpg', np.zeros((2, 2, 3), np.uint8)), '.png'),
])
def test_bad_arguments_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_empty_inputs_give_empty_images():
    """A frame without radar points colours an empty array; OpenCV must not be handed it."""
    from xdrcdepth_ros.core import visualize

    assert visualize.colorize_depth(np.zeros((1, 0), np.float32), 80.0).shape == (1, 0, 3)
    assert visualize.colorize_values(np.zeros((0, 5), np.float32), 0, 1).shape == (0, 5, 3)
    image = np.zeros((4, 6, 3), np.uint8)
    assert (visualize.radar_overlay(image, np.zeros((4, 6), np.float32)) == 0).all()
