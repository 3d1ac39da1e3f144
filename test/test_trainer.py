"""Trainer: determinism, checkpoint + resume, KD terms, config errors, torchrun (gloo, CPU)."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from xdrcdepth_ros.train.batches import StepSampler
from xdrcdepth_ros.train.config import config_from_dict, load_config
from xdrcdepth_ros.train.trainer import poly_lr, Trainer

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, out: str, **sections) -> dict:
    values = {
        'data': {'height': 64, 'width': 96, 'crop_height': 64, 'crop_width': 64,
                 'train_size': 8, 'val_size': 2, 'test_size': 2,
                 'cache_dir': str(tmp_path / 'cache')},
        'model': {'name': 'xdrcdepth_tiny'},
        'optim': {'lr': 1e-3, 'eps': 1e-8, 'batch_size': 2, 'steps': 4},
        'run': {'out_dir': str(tmp_path / out), 'seed': 3, 'num_threads': 1,
                'val_every': 0, 'ckpt_every': 2, 'log_every': 1},
    }
    for key, value in sections.items():
        values.setdefault(key, {}).update(value)
    return values


@pytest.fixture(scope='module')
def cache_root(tmp_path_factory):
    """Synthetic samples rendered once for the module."""
    return tmp_path_factory.mktemp('trainer')


def test_same_seed_same_losses(cache_root):
    runs = []
    for out in ('a', 'b'):
        trainer = Trainer(config_from_dict(tiny_config(cache_root, out)))
        trainer.fit()
        runs.append([h['loss'] for h in trainer.history])
    assert len(runs[0]) == 4
    assert runs[0] == pytest.approx(runs[1], abs=1e-6)
    other = Trainer(config_from_dict(tiny_config(cache_root, 'c', run={'seed': 4})))
    other.fit()
    assert [h['loss'] for h in other.history] != pytest.approx(runs[0], abs=1e-6)


def test_resume_continues_exactly(cache_root):
    full = Trainer(config_from_dict(tiny_config(cache_root, 'full')))
    full.fit()
    first = Trainer(config_from_dict(tiny_config(cache_root, 'half')))
    first.fit(until=2)
    ckpt = cache_root / 'half' / 'last.pt'
    extra = torch.load(ckpt, weights_only=False)
    assert extra['step'] == 2 and 'optimizer' in extra and extra['config']['optim']['steps'] == 4
    resumed = Trainer(config_from_dict(tiny_config(cache_root, 'half')), resume=str(ckpt))
    assert resumed.step == 2
    resumed.fit()
    assert [h['loss'] for h in resumed.history] == pytest.approx(
        [h['loss'] for h in full.history[2:]], abs=1e-6)
    logs = (cache_root / 'half' / 'train_log.csv').read_text().splitlines()
    assert logs[0].startswith('step,') and len(logs) == 1 + 4
    metrics = json.loads((cache_root / 'half' / 'metrics.json').read_text())
    assert metrics['cap80']['n_images'] == 2 and metrics['cap80']['mae_m'] > 0
    saved = yaml.safe_load((cache_root / 'half' / 'config.yaml').read_text())
    assert saved['model']['name'] == 'xdrcdepth_tiny'


def test_kd_terms_need_teacher_and_train(cache_root):
    teacher = cache_root / 'full' / 'last.pt'
    if not teacher.exists():
        Trainer(config_from_dict(tiny_config(cache_root, 'full'))).fit()
    kd = {'saliency_weight': 1.0, 'distribution_weight': 1.0, 'saliency_layers': ['1/8', '1/4'],
          'num_bins': 16}
    with pytest.raises(ValueError, match='teacher'):
        Trainer(config_from_dict(tiny_config(cache_root, 'kd0', kd=kd)))
    trainer = Trainer(config_from_dict(tiny_config(cache_root, 'kd', kd=kd, optim={'steps': 2})),
                      teacher=str(teacher))
    before = [p.detach().clone() for p in trainer.distiller.teacher.parameters()]
    trainer.fit()
    last = trainer.history[-1]
    assert last['saliency_kd'] > 0 and last['distribution_kd'] > 0
    assert last['loss'] == pytest.approx(sum(v for k, v in last.items()
                                             if k not in ('loss', 'lr', 'elapsed_s')), rel=1e-5)
    after = list(trainer.distiller.teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # the teacher stays frozen


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match='unknown key'):
        config_from_dict({'optim': {'learning_rate': 1.0}})
    with pytest.raises(ValueError, match='multiple of 32'):
        config_from_dict({'data': {'height': 100}})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / 'missing.yaml')
    for name in ('teacher', 'student'):
        cfg = load_config(ROOT / 'config' / f'train_synthetic_{name}.yaml')
        assert cfg.data.height == 192 and cfg.data.width == 352
    prod = load_config(ROOT / 'config' / 'train_nuscenes_student.yaml')
    assert (prod.optim.lr, prod.optim.eps, prod.optim.batch_size) == (5e-5, 1e-2, 6)
    assert (prod.data.crop_height, prod.data.crop_width) == (352, 704)


def test_poly_lr_and_sampler_sharding():
    assert poly_lr(0, 100, 1.0, 0.9, 0.1) == pytest.approx(1.0)
    assert poly_lr(100, 100, 1.0, 0.9, 0.1) == pytest.approx(0.1)
    assert poly_lr(50, 100, 1.0, 1.0, 0.0) == pytest.approx(0.5)
    ranks = [StepSampler(12, 2, seed=0, rank=r, world=2) for r in range(2)]
    seen = [[next(it)[0] for _ in range(6)] for it in map(iter, ranks)]  # 3 steps = 1 epoch
    assert sorted(seen[0] + seen[1]) == list(range(12))
    fresh = iter(StepSampler(12, 2, seed=0, rank=0, world=2))
    expected = [next(fresh) for _ in range(8)][2:]  # crosses into the second epoch
    later = iter(StepSampler(12, 2, seed=0, rank=0, world=2, start_step=1))
    assert [next(later) for _ in range(6)] == expected
    with pytest.raises(ValueError, match='need >='):
        StepSampler(3, 2, seed=0, world=2)


def test_torchrun_two_processes_trains_and_resumes(cache_root):
    out = cache_root / 'ddp'
    cfg_path = cache_root / 'ddp.yaml'
    cfg_path.write_text(yaml.safe_dump(tiny_config(cache_root, 'ddp', optim={'steps': 2})))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    base = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
            '--standalone', '-m', 'xdrcdepth_ros', 'train', '--config', str(cfg_path)]
    proc = subprocess.run(base, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = torch.load(out / 'last.pt', weights_only=False)
    assert extra['step'] == 2
    # The resumed leg also distils (DDP + Grad-CAM + bin-KL), from a copy of the first leg.
    shutil.copy(out / 'last.pt', cache_root / 'ddp_teacher.pt')
    kd = ['--teacher', str(cache_root / 'ddp_teacher.pt'), '--set', 'kd.saliency_weight=1',
          '--set', 'kd.distribution_weight=1', '--set', 'kd.num_bins=16']
    proc = subprocess.run(base + ['--resume', str(out / 'last.pt'), '--steps', '3'] + kd,
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(out / 'last.pt', weights_only=False)['step'] == 3
    result = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith('{')][-1])
    assert result['step'] == 3
    with (out / 'train_log.csv').open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r['step']) for r in rows] == [1, 2, 3]
    assert rows[0]['distribution_kd'] == '' and float(rows[-1]['distribution_kd']) > 0
    assert float(rows[-1]['saliency_kd']) > 0


def test_frozen_blocks_held_batchnorm_and_encoder_lr(cache_root):
    """Pretrained-encoder options: frozen blocks and held BatchNorm statistics stay as they
    were through training and validation; the encoder learns at lr * encoder_lr_ratio."""
    cfg = tiny_config(cache_root, 'held', model={
        'name': 'xdrcdepth', 'freeze_image_blocks': 4, 'encoder_bn_eval': True},
        optim={'steps': 2, 'encoder_lr_ratio': 0.1}, run={'val_every': 1, 'ckpt_every': 0})
    trainer = Trainer(config_from_dict(cfg))
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(('image_encoder.features.0.',
                                                 'image_encoder.features.3.'))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before['image_encoder.features.4.conv.0.0.weight'],
                           after['image_encoder.features.4.conv.0.0.weight'])
    encoder_stats = [k for k in before if 'encoder' in k and k.endswith('running_mean')]
    assert encoder_stats and all(torch.equal(before[k], after[k]) for k in encoder_stats)
    assert not torch.equal(before['iconv1.1.running_mean'], after['iconv1.1.running_mean'])
    encoder_group, decoder_group = trainer.optimizer.param_groups
    assert encoder_group['lr'] == pytest.approx(0.1 * decoder_group['lr'])
    with pytest.raises(ValueError, match='need MobileNetV2 encoders'):
        config_from_dict(tiny_config(cache_root, 'x', model={'encoder_bn_eval': True}))


def test_row_prior_is_fitted_on_the_train_split(cache_root):
    """model.row_prior: train_split stores the row-median profile of the training split's
    sparse GT in the model (the model card's row-median predictor), so step 0 predicts it."""
    from xdrcdepth_ros.train.baselines import fit_row_median
    from xdrcdepth_ros.train.batches import sample_arrays

    cfg = tiny_config(cache_root, 'prior', model={'row_prior': 'train_split'},
                      data={'crop_height': 64}, optim={'steps': 1}, run={'ckpt_every': 0})
    trainer = Trainer(config_from_dict(cfg))
    expected = fit_row_median(sample_arrays(trainer.train_set[i])['gt_sparse']
                              for i in range(len(trainer.train_set)))
    np_profile = trainer.model.row_prior.depth.numpy()
    assert np_profile.shape == (64,)
    assert abs(np_profile - expected.clip(0.1, 99.9)).max() < 1e-4
    with pytest.raises(ValueError, match='full-height training crops'):
        config_from_dict(tiny_config(cache_root, 'x', model={'row_prior': 'train_split'},
                                     data={'crop_height': 32}))
    with pytest.raises(ValueError, match='row_prior must be one of'):
        config_from_dict(tiny_config(cache_root, 'x', model={'row_prior': 'lidar'}))
