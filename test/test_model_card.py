"""The shipped model's card numbers are reproduced by the code the card lists."""
import json
from pathlib import Path

import numpy as np
import pytest

from xdrcdepth_ros.train import model_card

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / 'models' / 'xdrcdepth_student.onnx'
METRICS = ROOT / 'models' / 'model_card_metrics.json'


@pytest.fixture(scope='module')
def recorded():
    if not MODEL.exists():
        pytest.skip('models/xdrcdepth_student.onnx is not present')
    return json.loads(METRICS.read_text())


def test_small_synthetic_split_reproduces_card(recorded):
    from xdrcdepth_ros.core.engine import Engine

    small = recorded['synthetic_test_small']
    with Engine(MODEL, providers=['cpu'], intra_op_threads=1) as engine:
        h, w = engine.metadata.input_height, engine.metadata.input_width
        # Rendered afresh (no cache): sample i depends only on (split, i, seed).
        samples = model_card.synthetic_samples(small['n_samples'], h, w)
        profile = np.asarray(recorded['row_median_profile_m'], np.float32)
        again = model_card.score_all(samples, engine, profile)
    for key in ('model', 'baseline_constant_median', 'baseline_radar_nearest',
                'baseline_row_median'):
        for metric in ('mae_m', 'rmse_m'):
            assert again[key][metric] == pytest.approx(small[key][metric], rel=1e-3), (key, metric)


def test_card_is_rendered_from_its_json(recorded):
    """MODEL_CARD.md is exactly the template filled from model_card_metrics.json, so no number
    in it can go stale; the file size it quotes is the shipped file's."""
    template = (ROOT / 'models' / 'MODEL_CARD.template.md').read_text()
    card = (ROOT / 'models' / 'MODEL_CARD.md').read_text()
    assert card == model_card.render_card(template, recorded), \
        'MODEL_CARD.md is stale: python -m xdrcdepth_ros.train.model_card --render'
    assert recorded['file_bytes'] == MODEL.stat().st_size
    assert f"{recorded['nuscenes_bundled']['model']['mae_m']:.3f}" in card
    with pytest.raises(KeyError, match='nope.mae_m'):
        model_card.render_card('{{nope.mae_m:.3f}}', recorded)


def test_row_median_baseline_by_hand():
    """The row predictor is each row's median valid depth over the fitting maps; rows without
    any depth take the nearest fitted row's value."""
    from xdrcdepth_ros.train.baselines import fit_row_median, row_median_depth

    a = np.array([[0, 0, 0], [4, 6, 0], [0, 9, 1]], np.float32)
    b = np.array([[0, 0, 0], [8, 0, 0], [3, 0, 0]], np.float32)
    profile = fit_row_median([a, b])
    np.testing.assert_array_equal(profile, [6.0, 6.0, 3.0])
    np.testing.assert_array_equal(row_median_depth(profile, (3, 2)), [[6, 6], [6, 6], [3, 3]])
    with pytest.raises(ValueError, match='different heights'):
        fit_row_median([a, b[:2]])
    with pytest.raises(ValueError, match='no valid depth'):
        fit_row_median([np.zeros((2, 2), np.float32)])


def test_experiment_page_quotes_the_experiment_data():
    """docs/experiments.md reports what docs/experiments.json holds: every group of runs (one
    initialisation, one schedule) has the four variants over at least two seeds, and the page
    quotes each variant's mean MAE over its seeds. The outcome itself is not asserted: whether
    distillation helps is what the experiment measures."""
    rows = json.loads((ROOT / 'docs' / 'experiments.json').read_text())
    page = (ROOT / 'docs' / 'experiments.md').read_text()
    groups = {(r.get('init', 'none'), r['steps']) for r in rows}
    for init, steps in groups:
        group = [r for r in rows if r.get('init', 'none') == init and r['steps'] == steps]
        variants = {r['variant'] for r in group}
        assert {'direct', 'both_kd'} <= variants, (init, steps)
        for variant in variants:
            maes = [r['mae_m'] for r in group if r['variant'] == variant]
            assert len(maes) >= 2, (init, steps, variant)
            assert f'| {variant} | {len(maes)} | {sum(maes) / len(maes):.3f} |' in page, \
                (init, steps, variant)


def test_radar_nearest_baseline_by_hand():
    import numpy as np

    from xdrcdepth_ros.train.baselines import radar_nearest

    radar = np.zeros((3, 5), np.float32)
    radar[0, 0], radar[2, 4] = 3.0, 9.0
    filled = radar_nearest(radar, fallback_m=10.0)
    assert filled[0, 1] == 3.0 and filled[2, 3] == 9.0 and filled[1, 0] == 3.0
    assert np.all(radar_nearest(np.zeros((2, 2), np.float32), 7.0) == 7.0)


def test_evaluate_model_command_on_bundled_frames(nuscenes_root, capsys):
    from xdrcdepth_ros.cli import main

    args = ['evaluate-model', '--dataset', 'nuscenes', '--root', str(nuscenes_root),
            '--height', '96', '--width', '192', '--json']
    assert main(args + ['--baseline', 'radar-nn']) == 0
    radar = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert radar['n_samples'] == 8 and radar['metrics']['80']['n_images'] == 8
    assert main(args + ['--baseline', 'median']) == 0
    median = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert median['metrics']['80']['mae_m'] != radar['metrics']['80']['mae_m']
    assert main(['evaluate-model', '--checkpoint', '/nonexistent.pt', '--dataset', 'nuscenes',
                 '--root', str(nuscenes_root), '--height', '96', '--width', '192']) == 1


def test_selection_rows_read_the_runs_validation_log(tmp_path):
    """The card's candidate table comes from each run's resolved config and val_log.csv: last
    and best validation MAE, and the settings that were compared."""
    from xdrcdepth_ros.train.config import config_from_dict, save_config

    run = tmp_path / 'cand'
    run.mkdir()
    save_config(config_from_dict({'model': {'pretrained': 'imagenet', 'encoder_bn_eval': True},
                                  'optim': {'encoder_lr_ratio': 0.1}, 'data': {'zoom_max': 1.5}}),
                run / 'config.yaml')
    (run / 'val_log.csv').write_text('step,cap80/mae_m,cap80/rmse_m,cap80/delta1\n'
                                     '100,6.0,9.0,0.4\n200,5.0,8.0,0.5\n300,5.5,8.5,0.45\n')
    (row,) = model_card.selection_runs([run])
    assert (row['pretrained'], row['encoder_lr_ratio'], row['encoder_bn_eval'],
            row['zoom_max']) == ('imagenet', 0.1, True, 1.5)
    assert (row['last_step'], row['val_mae_m'], row['best_step'], row['best_val_mae_m']) == (
        300, 5.5, 200, 5.0)
    assert row['train_time_s'] is None
    assert row['val_sky_far_fraction'] is None  # not logged, and no best.pt to measure
    assert '| cand | imagenet |' in model_card.selection_table([row])
    (run / 'val_log.csv').write_text('step,cap80/mae_m,cap80/rmse_m,cap80/delta1,sky/far_fraction\n'
                                     '100,6.0,9.0,0.4,0.5\n200,5.0,8.0,0.5,0.9\n')
    (row,) = model_card.selection_runs([run])
    assert row['val_sky_far_fraction'] == 0.9  # of the best step
    assert '| 90% |' in model_card.selection_table([row])


def test_card_file_size_and_latency_come_from_the_data(recorded):
    """The size the card quotes is the file's, and its latency section is the one rendered from
    model_card_metrics.json (refreshed by ``model_card --refresh-timing``), not prose."""
    assert recorded['file_bytes'] == MODEL.stat().st_size
    card = (ROOT / 'models' / 'MODEL_CARD.md').read_text()
    assert model_card.file_text(recorded) in card
    assert model_card.timing_markdown(recorded) in card
    assert recorded['machine']['cpu'] and recorded['machine']['cpu_count'] >= 1


def test_evaluate_model_and_the_card_score_alike(nuscenes_root, capsys):
    """One scoring API: evaluate-model's baseline numbers are the model card's on the same
    samples (both go through train.scoring)."""
    from xdrcdepth_ros.cli import main
    from xdrcdepth_ros.train import scoring

    assert main(['evaluate-model', '--dataset', 'nuscenes', '--root', str(nuscenes_root),
                 '--height', '96', '--width', '192', '--baseline', 'radar-nn', '--json']) == 0
    command = json.loads(capsys.readouterr().out.strip().splitlines()[-1])['metrics']['80']
    samples = scoring.load_samples(dataset='nuscenes', split='all', height=96, width=192,
                                   root=str(nuscenes_root))
    median = scoring.median_gt_depth(samples)
    card = model_card.score(samples, scoring.baseline_predictor('radar-nn', median))
    for key in ('mae_m', 'rmse_m', 'abs_rel', 'delta1'):
        assert card[key] == pytest.approx(command[key], rel=1e-9), key


def test_scoring_without_ground_truth_is_one_clear_error():
    import numpy as np

    from xdrcdepth_ros.train import scoring

    empty = [{'gt_sparse': np.zeros((4, 4), np.float32)}]
    with pytest.raises(ValueError, match='no valid gt_sparse pixel in 1 samples'):
        scoring.median_gt_depth(empty)
    with pytest.raises(ValueError, match="baseline must be one of"):
        scoring.baseline_predictor('mean', 1.0)
