r"""The training loop: AdamW + poly decay, KD, AMP (CUDA), checkpoint/resume, logs, validation, DDP.

Single process: ``xdrcdepth train --config config/train_synthetic_student.yaml``.
Data parallel (one process per GPU or CPU slot, gloo on CPU, nccl on GPU)::

    torchrun --standalone --nproc_per_node 8 -m xdrcdepth_ros train \
        --config config/train_nuscenes_student.yaml

``torchrun`` sets RANK/WORLD_SIZE/LOCAL_RANK; each rank sees a disjoint stride of every epoch's
permutation (``batches.StepSampler``); rank 0 alone writes logs and checkpoints.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from xdrcdepth_ros.core.evaluate import MetricAccumulator
from xdrcdepth_ros.train import losses
from xdrcdepth_ros.train.batches import (build_dataset, CropDataset, fit_row_median_on,
                                         StepSampler)
from xdrcdepth_ros.train.config import ModelConfig, model_kwargs, TrainConfig, save_config
from xdrcdepth_ros.train.distill import Distiller


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; on request make torch kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def poly_lr(step: int, total: int, lr: float, power: float, end_ratio: float) -> float:
    """Per-step polynomial decay: ``(lr - lr_end) (1 - step/total)^power + lr_end``."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    end = lr * end_ratio
    return (lr - end) * (1.0 - frac) ** power + end


def _init_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    """(rank, world, device); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    use_cuda = torch.cuda.is_available() and device_pref != 'cpu'
    if device_pref == 'cuda' and not torch.cuda.is_available():
        raise ValueError('run.device is cuda but CUDA is not available')
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
    rank = dist.get_rank() if world > 1 else 0
    if use_cuda:
        local = int(os.environ.get('LOCAL_RANK', '0'))
        torch.cuda.set_device(local)
        return rank, world, torch.device('cuda', local)
    return rank, world, torch.device('cpu')


def _param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Encoder weights get ``weight_decay_encoder`` and ``lr_scale = encoder_lr_ratio``, the
    rest ``weight_decay_decoder`` and the full lr; frozen weights are left out."""
    enc, dec = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (enc if 'encoder' in name else dec).append(param)
    return [{'params': enc, 'weight_decay': cfg.optim.weight_decay_encoder,
             'lr_scale': cfg.optim.encoder_lr_ratio},
            {'params': dec, 'weight_decay': cfg.optim.weight_decay_decoder, 'lr_scale': 1.0}]


def hold_encoders(model: torch.nn.Module, cfg: ModelConfig) -> list[torch.nn.Module]:
    """Freeze the image encoder's first blocks as ``cfg`` says; return the encoder BatchNorm
    layers that must stay in eval mode while training (all with ``encoder_bn_eval``, else
    those of frozen blocks)."""
    if not (cfg.freeze_image_blocks or cfg.encoder_bn_eval):
        return []
    model.image_encoder.freeze_blocks(cfg.freeze_image_blocks)
    return [norm for encoder in (model.image_encoder, model.radar_encoder)
            for norm in encoder.frozen_batchnorms(all_layers=cfg.encoder_bn_eval)]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, dataset: Any, device: torch.device, *,
                   batch_size: int = 4, max_items: int | None = None,
                   caps: tuple[float, ...] = (50.0, 70.0, 80.0),
                   gt_key: str = 'gt_sparse', progress: bool = False,
                   sky_far_m: float | None = None) -> dict[float, dict]:
    """Paper metrics of ``model`` on a dataset of samples at full size (no crop, no augment).

    Metrics are per image against ``gt_key`` (single-scan LiDAR by default), then averaged, at
    each depth cap, by ``evaluate.MetricAccumulator``. Returns its ``summary()``; with
    ``sky_far_m`` (synthetic data: the sky is where the dense GT is 0) also ``'sky'``:
    ``far_fraction``, the share of sky pixels predicted at least that far.
    """
    was_training = model.training
    model.eval()
    items = CropDataset(dataset, crop=None, augment=False)
    count = len(items) if max_items is None else min(max_items, len(items))
    acc = MetricAccumulator(caps=caps)
    sky_far, sky_all = 0, 0
    for start in tqdm(range(0, count, batch_size), desc='eval', leave=False,
                      disable=not progress):
        batch = [items[i] for i in range(start, min(start + batch_size, count))]
        image = torch.stack([b['image'] for b in batch]).to(device)
        radar = torch.stack([b['radar'] for b in batch]).to(device)
        depth = model(image, radar).depth.float().cpu().numpy()
        for pred, item in zip(depth, batch):
            acc.add(pred[0], item[gt_key][0].numpy())
            if sky_far_m is not None:
                sky = item['gt_dense'][0].numpy() <= losses.VALID_DEPTH_M
                sky_all += int(sky.sum())
                sky_far += int((pred[0][sky] >= sky_far_m).sum())
    model.train(was_training)
    summary = acc.summary()
    if sky_far_m is not None:
        summary['sky'] = {'far_fraction': sky_far / sky_all if sky_all else float('nan'),
                          'far_m': sky_far_m, 'n_pixels': sky_all}
    return summary


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data``; distils from a teacher when KD weights are > 0."""

    def __init__(self, cfg: TrainConfig, *, teacher: str | None = None,
                 resume: str | None = None) -> None:
        from xdrcdepth_ros.model import create_model, load_checkpoint
        from xdrcdepth_ros.model.official import load_any_checkpoint

        self.cfg = cfg
        if teacher:
            cfg.kd.teacher = str(teacher)
        self.rank, self.world, self.device = _init_distributed(cfg.run.device)
        if cfg.run.num_threads > 0:
            torch.set_num_threads(cfg.run.num_threads)
        seed_everything(cfg.run.seed, cfg.run.deterministic and self.device.type == 'cpu')
        self.out_dir = Path(cfg.run.out_dir)
        self.is_main = self.rank == 0
        self.step = 0
        self.best_mae = math.inf
        self.history: list[dict] = []

        self.train_set = build_dataset(cfg.data, cfg.data.train_split)
        self.val_set = build_dataset(cfg.data, cfg.data.val_split) if self.is_main else None
        self.model = self._build_model(create_model).to(self.device)
        self.held_norms = hold_encoders(self.model, cfg.model)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg), lr=cfg.optim.lr,
                                           eps=cfg.optim.eps)
        self.use_amp = cfg.optim.amp and self.device.type == 'cuda'
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.use_amp)
        if resume:
            self._resume(resume, load_checkpoint)
        self.distiller = None
        if cfg.uses_teacher:
            if not cfg.kd.teacher:
                raise ValueError('KD weights are > 0 but no teacher checkpoint was given '
                                 '(kd.teacher or --teacher)')
            # Ours (.pt) or the official CaFNet release file as downloaded.
            t_model = load_any_checkpoint(cfg.kd.teacher)
            self.distiller = Distiller(t_model.to(self.device), cfg.kd)
        self.net = self.model
        if self.world > 1:
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None)

    def _build_model(self, create_model) -> nn.Module:
        """The student of ``cfg.model``; with ``row_prior: train_split`` its row profile is the
        per-row median of the training split's sparse GT (the row-median baseline's)."""
        kwargs = model_kwargs(self.cfg.model)
        if self.cfg.model.row_prior == 'none':
            return create_model(self.cfg.model.name, **kwargs)
        profile = fit_row_median_on(self.train_set)
        model = create_model(self.cfg.model.name, row_prior_rows=len(profile), **kwargs)
        model.row_prior.set_profile(profile)
        return model

    def _resume(self, path: str, load_checkpoint) -> None:
        model, extra = load_checkpoint(path)
        self.model.load_state_dict(model.state_dict())
        if 'optimizer' in extra:
            self.optimizer.load_state_dict(extra['optimizer'])
        if 'scaler' in extra and self.use_amp:
            self.scaler.load_state_dict(extra['scaler'])
        self.step = int(extra.get('step', 0))
        self.best_mae = float(extra.get('best_mae', math.inf))
        if 'torch_rng' in extra:
            torch.set_rng_state(extra['torch_rng'])

    # -- one step -----------------------------------------------------------------------------
    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Forward the student and return every weighted loss term (sum = total)."""
        cfg = self.cfg
        with torch.autocast('cuda', enabled=self.use_amp):
            out = self.net(batch['image'], batch['radar'])
        depth = out.depth.float()
        has_dense = cfg.loss.dense_weight > 0 and bool((batch['gt_dense'] > 0).any())
        terms = {'depth': losses.depth_loss(
            depth, batch['gt_dense'] if has_dense else None, batch['gt_sparse'],
            rectified=cfg.loss.rectified, dense_weight=cfg.loss.dense_weight,
            sparse_weight=cfg.loss.sparse_weight)}
        if cfg.loss.sky_weight > 0:
            terms['sky'] = cfg.loss.sky_weight * losses.sky_loss(depth, batch['gt_dense'],
                                                                 cfg.loss.sky_far_m)
        if cfg.loss.smooth_weight > 0:
            terms['smooth'] = cfg.loss.smooth_weight * losses.smoothness_loss(depth,
                                                                              batch['image'])
        if cfg.loss.intermediate_weight > 0 and out.intermediate:
            gt = batch['gt_dense'] if has_dense else batch['gt_sparse']
            terms['intermediate'] = cfg.loss.intermediate_weight * sum(
                losses.masked_l1(d.float(), gt) for d in out.intermediate) / len(out.intermediate)
        if self.distiller is not None:
            terms.update(self.distiller(out, batch, self.step))
        return terms

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step; returns the float value of each term, 'loss' and 'lr'."""
        o = self.cfg.optim
        lr = poly_lr(self.step, o.steps, o.lr, o.poly_power, o.end_lr_ratio)
        for group in self.optimizer.param_groups:
            group['lr'] = lr * group.get('lr_scale', 1.0)
        terms = self.loss_terms(batch)
        total = sum(terms.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f'non-finite loss at step {self.step}: '
                                     f'{ {k: float(v) for k, v in terms.items()} }')
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if o.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        values = {k: float(v.detach()) for k, v in terms.items()}
        if self.cfg.kd.saliency_weight > 0 and self.distiller is not None:
            # Keep the CSV columns fixed on steps where saliency KD is skipped (saliency_every).
            values.setdefault('saliency_kd', float('nan'))
        values.update(loss=float(total.detach()), lr=lr)
        return values

    # -- bookkeeping --------------------------------------------------------------------------
    def save(self, name: str, metrics: dict | None = None) -> Path:
        """Write ``out_dir/name`` atomically with everything needed to resume or export."""
        from xdrcdepth_ros.model import save_checkpoint

        path = self.out_dir / name
        tmp = path.with_name(f'.{name}.tmp')
        extra = {'optimizer': self.optimizer.state_dict(), 'step': self.step,
                 'epoch': self.step // max(1, len(self.train_set) // (
                     self.cfg.optim.batch_size * self.world)),
                 'config': self.cfg.to_dict(), 'best_mae': self.best_mae,
                 'train_data': _describe_data(self.cfg), 'torch_rng': torch.get_rng_state(),
                 # Flat numbers for the export metadata; the full per-cap table beside them.
                 'metrics': _flat_metrics(metrics or {}), 'val_metrics': metrics or {}}
        fields = getattr(self.train_set, 'radar_fields', None)
        if fields is None and self.cfg.data.dataset == 'synthetic':
            fields = ('rcs', 'vx', 'vy')  # SyntheticDataset's default channels after depth
        if fields is not None:
            extra['radar_fields'] = list(fields)
        if self.use_amp:
            extra['scaler'] = self.scaler.state_dict()
        save_checkpoint(tmp, self.model, extra=extra)
        os.replace(tmp, path)
        return path

    def validate(self) -> dict:
        """Paper metrics on the validation split (rank 0); returns the 80 m cap summary."""
        synthetic = self.cfg.data.dataset == 'synthetic'
        summary = evaluate_model(self.model, self.val_set, self.device,
                                 caps=(50.0, 70.0, self.cfg.run.val_max_depth),
                                 sky_far_m=self.cfg.loss.sky_far_m if synthetic else None)
        self._train_mode()
        return {(c if isinstance(c, str) else f'cap{int(c)}'): v for c, v in summary.items()}

    def _train_mode(self) -> None:
        """Train mode, except the encoder BatchNorm layers ``hold_encoders`` chose."""
        self.net.train()
        for norm in self.held_norms:
            norm.eval()

    def fit(self, until: int | None = None) -> dict:
        """Train to ``optim.steps`` (or stop early at step ``until``, e.g. to test resuming;
        the lr schedule still spans ``optim.steps``). Returns the final validation metrics
        (rank 0) or {}."""
        cfg = self.cfg
        stop = cfg.optim.steps if until is None else min(int(until), cfg.optim.steps)
        crop = (cfg.data.crop_height, cfg.data.crop_width)
        sampler = StepSampler(len(self.train_set), cfg.optim.batch_size, seed=cfg.run.seed,
                              rank=self.rank, world=self.world, start_step=self.step)
        loader = DataLoader(CropDataset(self.train_set, crop, cfg.data.augment,
                                        zoom_max=cfg.data.zoom_max),
                            batch_size=cfg.optim.batch_size, sampler=sampler,
                            num_workers=cfg.data.num_workers,
                            pin_memory=self.device.type == 'cuda')
        logger = _Logs(self.out_dir) if self.is_main else None
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / 'config.yaml')
        self._train_mode()
        metrics: dict = {}
        start = time.perf_counter()
        bar = tqdm(total=cfg.optim.steps, initial=self.step, desc='train',
                   disable=not self.is_main, dynamic_ncols=True)
        batches = iter(loader)
        while self.step < stop:
            values = self.train_step(_to(next(batches), self.device))
            bar.update(1)
            if self.is_main:
                self.history.append(values)
                if self.step % cfg.run.log_every == 0 or self.step == stop:
                    values['elapsed_s'] = time.perf_counter() - start
                    logger.train(self.step, values)
                    bar.set_postfix(loss=f"{values['loss']:.3f}")
                last = self.step == stop
                if (cfg.run.val_every and self.step % cfg.run.val_every == 0) or last:
                    metrics = self.validate()
                    logger.val(self.step, metrics)
                    mae = metrics[f'cap{int(cfg.run.val_max_depth)}']['mae_m']
                    if mae < self.best_mae:
                        self.best_mae = mae
                        self.save('best.pt', metrics)
                if (cfg.run.ckpt_every and self.step % cfg.run.ckpt_every == 0) or last:
                    self.save('last.pt', metrics)
        bar.close()
        if self.is_main:
            metrics['train_time_s'] = time.perf_counter() - start
            (self.out_dir / 'metrics.json').write_text(json.dumps(metrics, indent=2))
            logger.close()
        if self.world > 1:
            dist.barrier()
        return metrics


def _flat_metrics(metrics: dict) -> dict[str, float]:
    """``{'cap80': {'mae_m': x}}`` -> ``{'val_mae_m_cap80': x}`` (numbers only)."""
    return {f'val_{key}_{cap}': float(value) for cap, table in metrics.items()
            if isinstance(table, dict) for key, value in table.items()
            if isinstance(value, (int, float))}


def _describe_data(cfg: TrainConfig) -> str:
    d = cfg.data
    if d.dataset == 'synthetic':
        return (f'synthetic generator, {d.train_size} train scenes at {d.height}x{d.width}, '
                f'random {d.crop_height}x{d.crop_width} crops')
    return f'{d.dataset} {d.root} split {d.train_split} at {d.height}x{d.width}'


class _Logs:
    """CSV files (train_log.csv, val_log.csv) and TensorBoard scalars under ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / 'tb'))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def _row(self, name: str, row: dict) -> None:
        path = self.out_dir / name
        header: list[str] = []
        if path.exists():
            with path.open(newline='') as fh:
                header = next(csv.reader(fh), [])
        if header and set(row) - set(header):
            # New columns (e.g. a resumed run that adds KD): rewrite with the union of columns.
            with path.open(newline='') as fh:
                old = list(csv.DictReader(fh))
            header += [k for k in row if k not in header]
            tmp = path.with_suffix('.tmp')
            with tmp.open('w', newline='') as fh:
                writer = csv.DictWriter(fh, fieldnames=header)
                writer.writeheader()
                writer.writerows(old)
            os.replace(tmp, path)
        with path.open('a', newline='') as fh:
            writer = csv.DictWriter(fh, fieldnames=header or list(row))
            if not header:
                writer.writeheader()
            writer.writerow(row)

    def train(self, step: int, values: dict) -> None:
        self._row('train_log.csv', {'step': step, **values})
        if self.tb:
            for key, value in values.items():
                self.tb.add_scalar(f'train/{key}', value, step)

    def val(self, step: int, metrics: dict) -> None:
        flat = {f'{cap}/{k}': v for cap, m in metrics.items() if isinstance(m, dict)
                for k, v in m.items()}
        self._row('val_log.csv', {'step': step, **flat})
        if self.tb:
            for key, value in flat.items():
                self.tb.add_scalar(f'val/{key}', value, step)

    def close(self) -> None:
        if self.tb:
            self.tb.close()
