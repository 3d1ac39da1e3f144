"""Typed training configuration, loaded from YAML and saved (resolved) beside each checkpoint.

A YAML file has the sections ``data``, ``model``, ``optim``, ``loss``, ``kd`` and ``run`` whose
keys are the fields below; unknown keys are errors (a typo must not silently train the wrong
thing). ``overrides`` such as ``['optim.lr=1e-4', 'kd.saliency_weight=0']`` patch the file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    """Which dataset, at what size. Sizes are model-input pixels (multiples of 32)."""

    dataset: str = 'synthetic'          # synthetic | nuscenes | zju
    root: str = ''                      # dataset folder (nuscenes/zju)
    version: str = 'v1.0-trainval'      # nuScenes table version
    train_split: str = 'train'
    val_split: str = 'val'
    height: int = 192                   # full (evaluation) input size
    width: int = 352
    crop_height: int = 128              # random training crop; 0 = no crop
    crop_width: int = 256
    train_size: int = 512               # synthetic only: number of scenes per split
    val_size: int = 64
    test_size: int = 64
    cache_dir: str = ''                 # synthetic: rendered-sample cache; nuscenes: prepared GT
    lidar_scans: int = 0                # nuscenes: LiDAR sweeps accumulated each side (gt_dense)
    densify: bool = False               # nuscenes: interpolate the accumulated gt_dense
    augment: bool = True                # flip + colour jitter (+ zoom)
    zoom_max: float = 1.0               # scale aug: crop windows up to this much smaller, enlarged
    num_workers: int = 0


# Models whose two encoders are torchvision MobileNetV2 at width 1.0 (ImageNet weights fit).
IMAGENET_MODELS = ('xdrcdepth', 'lircdepth')
ROW_PRIORS = ('none', 'train_split')
ROW_PRIOR_MODELS = ('xdrcdepth', 'xdrcdepth_tiny')


@dataclass
class ModelConfig:
    """The network to train: a ``create_model`` name, keyword arguments, encoder start.

    ``pretrained`` is ``imagenet`` (torchvision's MobileNetV2 ImageNet file, found offline by
    ``model.pretrained.resolve_weights``), ``none`` (random weights) or the path of that file.
    """

    name: str = 'xdrcdepth'
    kwargs: dict = field(default_factory=dict)
    pretrained: str = 'none'            # imagenet | none | path to mobilenet_v2-b0353104.pth
    freeze_image_blocks: int = 0        # first N of the image encoder's 19 blocks not trained
    encoder_bn_eval: bool = False       # encoders' BatchNorm keeps its (ImageNet) statistics
    # none | train_split: depth heads refine a per-row median depth fitted on the train split
    row_prior: str = 'none'


@dataclass
class OptimConfig:
    """AdamW with per-step polynomial decay to ``end_lr_ratio * lr``."""

    lr: float = 5e-5
    encoder_lr_ratio: float = 1.0       # encoder lr = lr * ratio (lower keeps ImageNet features)
    eps: float = 1e-2
    weight_decay_encoder: float = 1e-4
    weight_decay_decoder: float = 0.0
    poly_power: float = 0.9
    end_lr_ratio: float = 0.1
    batch_size: int = 6                 # per process
    steps: int = 1000                   # total optimiser steps
    grad_clip: float = 0.0              # 0 = off
    amp: bool = True                    # CUDA only; ignored on CPU


@dataclass
class LossConfig:
    """Supervised terms."""

    rectified: bool = True              # relative-error weighted L1 (LiRCDepth)
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    smooth_weight: float = 1e-3
    intermediate_weight: float = 0.0    # L1 on the intermediate depths (1/8, 1/4, 1/2)
    sky_weight: float = 0.0             # synthetic only: hinge pushing sky pixels to sky_far_m
    sky_far_m: float = 80.0


@dataclass
class KDConfig:
    """Teacher distillation; every weight 0 = direct training (no teacher is loaded)."""

    teacher: str = ''                   # teacher checkpoint; --teacher overrides
    saliency_weight: float = 0.0
    saliency_layers: list = field(default_factory=lambda: ['1/8', '1/4'])
    saliency_mode: str = 'l1'           # l1 | cosine
    saliency_every: int = 1             # apply saliency KD every N steps
    saliency_second_order: bool = False  # True: create_graph through alpha (exact, ~2x cost)
    distribution_weight: float = 0.0
    num_bins: int = 64
    bin_spacing: str = 'uniform'        # uniform | sid
    min_depth: float = 0.5
    max_depth: float = 80.0
    tau: float = 1.0
    tau_squared: bool = True
    distribution_mask: str = 'all'      # all | teacher (teacher > 0.01 m) | no_gt
    intermediate_distribution: bool = False


@dataclass
class RunConfig:
    """Where outputs go and how often things happen."""

    out_dir: str = 'runs/train'
    seed: int = 0
    deterministic: bool = True
    device: str = 'auto'                # auto | cpu | cuda
    num_threads: int = 0                # torch CPU threads; 0 = leave as is
    log_every: int = 10
    val_every: int = 200                # 0 = only at the end
    ckpt_every: int = 200
    val_max_depth: float = 80.0


@dataclass
class TrainConfig:
    """The whole training configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON/checkpoint friendly)."""
        return dataclasses.asdict(self)

    @property
    def uses_teacher(self) -> bool:
        """True when any distillation term is on."""
        return self.kd.saliency_weight > 0 or self.kd.distribution_weight > 0


_SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _build(cls: type, values: dict, where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f'config section {where!r} must be a mapping, got '
                         f'{type(values).__name__}')
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f'unknown key(s) {unknown} in config section {where!r}; '
                         f'known: {sorted(names)}')
    default = cls()
    kwargs = {}
    for key, value in values.items():
        current = getattr(default, key)
        if isinstance(current, bool) and not isinstance(value, bool):
            raise ValueError(f'{where}.{key} must be true/false, got {value!r}')
        if isinstance(current, float) and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, int) and not isinstance(current, bool) \
                and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f'{where}.{key} must be an integer, got {value!r}')
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(values: dict) -> TrainConfig:
    """Build a checked ``TrainConfig`` from a nested dict (missing keys keep their defaults)."""
    values = values or {}
    unknown = sorted(set(values) - set(_SECTIONS))
    if unknown:
        raise ValueError(f'unknown config section(s) {unknown}; known: {sorted(_SECTIONS)}')
    sections = {f.name: _build(type(getattr(TrainConfig(), f.name)), values.get(f.name, {}),
                               f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**sections)
    validate(cfg)
    return cfg


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Patch a nested dict with ``section.key=value`` strings (values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition('=')
        parts = key.strip().split('.')
        if not sep or len(parts) != 2:
            raise ValueError(f'override {item!r} must look like section.key=value')
        values.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(raw)
    return values


def model_kwargs(model: ModelConfig) -> dict[str, Any]:
    """``create_model`` kwargs for ``model``: its kwargs plus the resolved ImageNet file.

    Raises:
        PretrainedWeightsError: ``pretrained`` asks for a file that is missing or wrong.
    """
    kwargs = dict(model.kwargs)
    if model.pretrained != 'none':
        from xdrcdepth_ros.model.pretrained import resolve_weights

        explicit = None if model.pretrained == 'imagenet' else model.pretrained
        kwargs['pretrained_path'] = str(resolve_weights(explicit))
    return kwargs


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config, apply overrides, check it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'training config not found: {path}')
    with path.open() as fh:
        values = yaml.safe_load(fh) or {}
    return config_from_dict(apply_overrides(values, overrides or []))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def validate(cfg: TrainConfig) -> None:
    """Raise ValueError naming the first impossible setting."""
    d, o, k = cfg.data, cfg.optim, cfg.kd
    if d.dataset not in ('synthetic', 'nuscenes', 'zju'):
        raise ValueError(f"data.dataset must be synthetic, nuscenes or zju, got {d.dataset!r}")
    for name in ('height', 'width'):
        if getattr(d, name) <= 0 or getattr(d, name) % 32:
            raise ValueError(f'data.{name} must be a positive multiple of 32, got '
                             f'{getattr(d, name)}')
    for name, full in (('crop_height', d.height), ('crop_width', d.width)):
        value = getattr(d, name)
        if value and (value % 32 or value > full):
            raise ValueError(f'data.{name} must be 0 or a multiple of 32 <= {full}, got {value}')
    if d.zoom_max < 1.0:
        raise ValueError(f'data.zoom_max must be >= 1 (1 = off), got {d.zoom_max}')
    if o.lr <= 0 or o.steps <= 0 or o.batch_size <= 0 or o.encoder_lr_ratio < 0:
        raise ValueError('optim.lr, optim.steps and optim.batch_size must be > 0, '
                         'optim.encoder_lr_ratio >= 0')
    if cfg.loss.sky_weight < 0 or cfg.loss.sky_far_m <= 0:
        raise ValueError('loss.sky_weight must be >= 0 and loss.sky_far_m > 0')
    if cfg.loss.sky_weight > 0 and d.dataset != 'synthetic':
        # Only a renderer's dense GT covers every surface, so that its zeros are the sky.
        raise ValueError(f'loss.sky_weight needs data.dataset synthetic (its dense GT marks '
                         f'the sky), not {d.dataset!r}')
    m = cfg.model
    if not isinstance(m.pretrained, str) or not m.pretrained:
        raise ValueError(f'model.pretrained must be imagenet, none or a file path, got '
                         f'{m.pretrained!r}')
    if m.pretrained != 'none' and m.name not in IMAGENET_MODELS:
        raise ValueError(f'model.pretrained {m.pretrained!r} needs MobileNetV2 width-1.0 '
                         f'encoders ({", ".join(IMAGENET_MODELS)}), not {m.name!r}; '
                         'use model.pretrained: none')
    if 'pretrained_path' in m.kwargs:
        raise ValueError('give ImageNet weights as model.pretrained, not model.kwargs.'
                         'pretrained_path')
    if (m.freeze_image_blocks or m.encoder_bn_eval) and m.name not in IMAGENET_MODELS:
        raise ValueError('model.freeze_image_blocks and model.encoder_bn_eval need MobileNetV2 '
                         f'encoders ({", ".join(IMAGENET_MODELS)}), not {m.name!r}')
    if m.row_prior not in ROW_PRIORS:
        raise ValueError(f'model.row_prior must be one of {", ".join(ROW_PRIORS)}, got '
                         f'{m.row_prior!r}')
    if m.row_prior != 'none':
        if m.name not in ROW_PRIOR_MODELS:
            raise ValueError(f'model.row_prior needs a model with a row prior '
                             f'({", ".join(ROW_PRIOR_MODELS)}), not {m.name!r}')
        # The prior is indexed by the row of the full frame: crops must keep every row.
        if d.crop_height not in (0, d.height) or d.zoom_max != 1.0:
            raise ValueError('model.row_prior needs full-height training crops '
                             f'(data.crop_height 0 or {d.height}) and data.zoom_max 1, got '
                             f'crop_height {d.crop_height}, zoom_max {d.zoom_max}')
    if not 0 <= m.freeze_image_blocks <= 19:
        raise ValueError(f'model.freeze_image_blocks must be 0..19 (MobileNetV2 blocks), got '
                         f'{m.freeze_image_blocks}')
    if k.saliency_mode not in ('l1', 'cosine'):
        raise ValueError(f"kd.saliency_mode must be l1 or cosine, got {k.saliency_mode!r}")
    if k.bin_spacing not in ('uniform', 'sid'):
        raise ValueError(f"kd.bin_spacing must be uniform or sid, got {k.bin_spacing!r}")
    if k.distribution_mask not in ('all', 'teacher', 'no_gt'):
        raise ValueError(f'kd.distribution_mask must be all, teacher or no_gt, got '
                         f'{k.distribution_mask!r}')
    if k.tau <= 0 or k.saliency_every < 1:
        raise ValueError('kd.tau must be > 0 and kd.saliency_every >= 1')
    if cfg.run.device not in ('auto', 'cpu', 'cuda'):
        raise ValueError(f"run.device must be auto, cpu or cuda, got {cfg.run.device!r}")
