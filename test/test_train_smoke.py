"""Training smoke test on the bundled real nuScenes frames: a few steps overfit (loss falls)."""
import numpy as np

from xdrcdepth_ros.train.config import config_from_dict
from xdrcdepth_ros.train.trainer import Trainer


def test_overfit_bundled_nuscenes_frames(nuscenes_root, tmp_path):
    cfg = config_from_dict({
        'data': {'dataset': 'nuscenes', 'root': str(nuscenes_root), 'version': 'v1.0-mini',
                 'train_split': 'all', 'val_split': 'all', 'height': 96, 'width': 192,
                 'crop_height': 0, 'crop_width': 0, 'augment': False},
        'model': {'name': 'xdrcdepth_tiny'},
        'optim': {'lr': 3e-3, 'eps': 1e-8, 'batch_size': 4, 'steps': 16, 'end_lr_ratio': 1.0},
        'run': {'out_dir': str(tmp_path / 'run'), 'seed': 0, 'num_threads': 1, 'val_every': 0,
                'ckpt_every': 0, 'log_every': 4},
    })
    trainer = Trainer(cfg)
    metrics = trainer.fit()
    depth = [h['depth'] for h in trainer.history]
    assert all(np.isfinite(depth))
    # Real single-scan LiDAR supervision: the depth loss of the last steps is well below the
    # first ones (the initial prediction is ~50 m, the frames' LiDAR mostly 5-40 m).
    assert np.mean(depth[-4:]) < 0.7 * np.mean(depth[:4]), depth
    assert metrics['cap80']['n_images'] == 8 and metrics['cap80']['n_skipped'] == 0
    assert (tmp_path / 'run' / 'last.pt').is_file()
