"""The published LiRCDepth / CaFNet checkpoints on our modules: exact outputs, import, use.

The checkpoints are the deterministic ones of test/data/official_checkpoints (its README: the
official code's key lists, a fill rule and the official outputs for one input), saved in the
release format by ``official_fixture`` so the loader path a user hits is the one tested.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from official_fixture import official_state_dict, reference, release_payload, \
    write_official_checkpoint
from xdrcdepth_ros.cli import main
from xdrcdepth_ros.model.blocks import IMAGENET_MEAN, IMAGENET_STD
from xdrcdepth_ros.model.official import (load_any_checkpoint, load_official_checkpoint,
                                          OfficialCheckpointError, save_imported_checkpoint)

MAX_DEPTH = 100.0
TOLERANCE_M = 1e-3


@pytest.fixture(scope='module')
def lircdepth_file(tmp_path_factory) -> Path:
    return write_official_checkpoint('lircdepth',
                                     tmp_path_factory.mktemp('official') / 'lircdepth.pth')


@pytest.fixture(scope='module')
def lircdepth(lircdepth_file):
    return load_official_checkpoint(lircdepth_file, 'lircdepth')


@pytest.fixture(scope='module')
def cafnet_file(tmp_path_factory) -> Path:
    return write_official_checkpoint('cafnet', tmp_path_factory.mktemp('official') / 'cafnet.pth')


@pytest.fixture(scope='module')
def cafnet(cafnet_file):
    return load_official_checkpoint(cafnet_file, 'cafnet')


def _fixture_inputs(arch: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """The fixture's input as our models take it (RGB in [0, 1] space) and the outputs."""
    inputs, outputs = reference(arch)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    image = torch.from_numpy(inputs['image']) * std + mean  # our models normalise inside
    return image, torch.from_numpy(inputs['radar']), outputs


def _max_error(ours: torch.Tensor, official: np.ndarray) -> float:
    return float(np.abs(ours.detach().numpy().astype(np.float64) - official).max())


@pytest.mark.slow
def test_lircdepth_matches_the_official_outputs(lircdepth):
    """Final depth within 1e-3 m of the official code. The intermediate maps: the official
    returns them in units of max_depth, ours in metres; they agree within 2e-5 of max_depth
    (2 mm), the float32 noise of the fixture itself (a float64 run of our model differs from
    it by 1.1 mm), while 1e-3 m in metres is below that noise."""
    image, radar, official = _fixture_inputs('lircdepth')
    with torch.no_grad():
        out = lircdepth(image, radar)
    assert _max_error(out.depth, official['out.4']) <= TOLERANCE_M
    for index, depth in enumerate(out.intermediate):
        assert _max_error(depth / MAX_DEPTH, official[f'out.3.{index}']) <= 2e-5, index
    # The maps depend on the weights: one changed tensor moves the depth well beyond 1e-3 m.
    changed = copy.deepcopy(lircdepth)
    with torch.no_grad():
        changed.head.conv.weight.mul_(1.5)
        assert _max_error(changed(image, radar).depth, official['out.4']) > 10 * TOLERANCE_M


@pytest.mark.slow
def test_cafnet_matches_the_official_outputs(cafnet):
    """Final and intermediate depths within 1e-3 m; the stage-1 confidence within 1e-4 and
    its radar depth within 1 cm (its own float32 noise in the fixture is 5 mm at 25 m)."""
    image, radar, official = _fixture_inputs('cafnet')
    with torch.no_grad():
        full = cafnet.forward_all(image, radar)
    assert _max_error(full.output.depth, official['out.4']) <= TOLERANCE_M
    for index, depth in enumerate(full.output.intermediate):
        # The official returns depth / max_depth; ours are metres.
        assert _max_error(depth, official[f'out.3.{index}'] * MAX_DEPTH) <= TOLERANCE_M, index
    assert _max_error(full.confidence, official['out.5']) <= 1e-4
    assert _max_error(full.radar_depth, official['out.6']) <= 1e-2
    assert sum(p.numel() for p in cafnet.parameters()) == 62_248_686 - 1_539_000  # no fc heads


def test_a_bare_state_dict_loads_like_the_release_file(tmp_path):
    """A plain ``DataParallel`` state dict (no release wrapper) gives the same network."""
    state = official_state_dict('lircdepth')
    torch.save(state, tmp_path / 'bare.pth')
    model = load_official_checkpoint(tmp_path / 'bare.pth', 'lircdepth')
    assert not model.training
    assert torch.equal(model.head.conv.weight, state['module.decoder.get_depth.0.weight'])
    assert torch.equal(model.up4[7][6].weight,
                       state['module.decoder.upconv4.7.pointwise_layer_transpose.0.weight'])
    # train --teacher's loader takes such a file too, by the arch it is told.
    assert isinstance(load_any_checkpoint(tmp_path / 'bare.pth', 'lircdepth'), type(model))


def _bad_files(directory: Path) -> dict[str, Path]:
    """One file per way a checkpoint can be wrong (all from the LiRCDepth key list)."""
    state = official_state_dict('lircdepth')
    files = {}

    def save(name: str, payload) -> None:
        files[name] = directory / f'{name}.pth'
        torch.save(payload, files[name])

    (directory / 'text.pth').write_text('model-1170000-best_mae_2.00887\n')
    files['not_a_checkpoint'] = directory / 'text.pth'
    save('whole', release_payload(state))
    truncated = directory / 'truncated.pth'
    truncated.write_bytes(files.pop('whole').read_bytes()[:1_000_000])
    files['truncated'] = truncated
    save('no_model', {'global_step': 3, 'optimizer': {}})
    missing = dict(state)
    del missing['module.decoder.get_depth.0.weight'], missing['module.decoder.scale8.0.weight']
    save('missing', release_payload(missing))
    save('unexpected', release_payload({**state, 'module.decoder.extra.weight': torch.ones(3)}))
    shaped = dict(state)
    shaped['module.decoder.conv1.0.weight'] = torch.zeros(32, 35, 3, 3)
    save('shape', release_payload(shaped))
    return files


BAD_CASES = {
    'not_a_checkpoint': ('lircdepth', r'text\.pth is not a readable torch checkpoint'),
    'truncated': ('lircdepth', r'truncated\.pth is not a readable torch checkpoint'),
    'no_model': ('lircdepth', r"no_model\.pth holds no network state dict .*global_step"),
    'missing': ('lircdepth', r'missing\.pth .*missing \(our names\): head8\.0\.weight '
                             r'\[1, 128, 1, 1\], head\.conv\.weight \[1, 32, 3, 3\]'),
    'unexpected': ('lircdepth',
                   r'unexpected\.pth .*unexpected keys: decoder\.extra\.weight \[3\]'),
    'shape': ('lircdepth', r'shape\.pth .*shape mismatch: decoder\.conv1\.0\.weight '
                           r'\[32, 35, 3, 3\] \(expected \[32, 36, 3, 3\]\)'),
    'wrong_arch': ('cafnet', r'missing\.pth is not an official cafnet checkpoint .*unexpected '
                             r'keys: encoder\.base_model\.0\.0\.weight \[32, 3, 3, 3\]'),
}


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return _bad_files(tmp_path_factory.mktemp('bad'))


@pytest.mark.parametrize('case', sorted(BAD_CASES))
def test_a_bad_checkpoint_is_one_clear_error_naming_file_and_keys(case, bad_files):
    """Each way of being wrong gives an OfficialCheckpointError with the file name and the
    first offending keys with their shapes."""
    arch, message = BAD_CASES[case]
    path = bad_files['missing' if case == 'wrong_arch' else case]
    with pytest.raises(OfficialCheckpointError, match=message):
        load_official_checkpoint(path, arch)


def test_import_checkpoint_fails_cleanly_and_leaves_no_file(bad_files, tmp_path, capsys):
    """The command prints one ERROR line naming the file and writes nothing at all."""
    out = tmp_path / 'out'
    out.mkdir()
    code = main(['import-checkpoint', '--arch', 'lircdepth', str(bad_files['shape']),
                 '--out', str(out / 'lircdepth'), '--height', '64', '--width', '96'])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith('ERROR: ') and 'shape.pth' in err and err.count('\n') == 1
    assert list(out.iterdir()) == []
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_official_checkpoint(tmp_path / 'nope.pth', 'lircdepth')
    with pytest.raises(ValueError, match="unknown arch 'bts'"):
        load_official_checkpoint(bad_files['shape'], 'bts')


@pytest.fixture(scope='module')
def imported(lircdepth_file, tmp_path_factory):
    """``xdrcdepth import-checkpoint`` of the LiRCDepth file at 96x160."""
    stem = tmp_path_factory.mktemp('imported') / 'lircdepth_nuscenes'
    code = main(['import-checkpoint', '--arch', 'lircdepth', str(lircdepth_file),
                 '--out', str(stem), '--height', '96', '--width', '160'])
    assert code == 0
    return stem


@pytest.mark.slow
def test_import_checkpoint_writes_onnx_sidecar_and_pt(imported, lircdepth):
    """OUT.onnx runs in our engine with the official contract in its metadata and gives the
    torch model's depth; OUT.pt is one of our checkpoints holding the same weights."""
    from xdrcdepth_ros.core.engine import Engine
    from xdrcdepth_ros.export import example_inputs
    from xdrcdepth_ros.model import load_checkpoint

    onnx_path, pt_path = imported.with_suffix('.onnx'), imported.with_suffix('.pt')
    assert sorted(p.name for p in imported.parent.iterdir()) == [
        'lircdepth_nuscenes.json', 'lircdepth_nuscenes.onnx', 'lircdepth_nuscenes.pt']
    engine = Engine(onnx_path, providers=['cpu'])
    meta = engine.metadata
    assert (meta.model_name, meta.input_height, meta.input_width) == ('lircdepth', 96, 160)
    assert meta.radar_channels == ('depth', 'rcs', 'vx', 'vy')
    assert meta.radar_fields == ('rcs', 'vx', 'vy') and meta.radar_sensors == ('RADAR_FRONT',)
    assert meta.vertical_crop == 'bottom' and meta.max_depth == MAX_DEPTH
    assert 'best_mae_2.00887' in meta.training_data and meta.outputs == ('depth',)

    model, payload = load_checkpoint(pt_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  lircdepth.state_dict().values()))
    assert payload['radar_fields'] == ['rcs', 'vx', 'vy']
    image, radar = example_inputs(96, 160, 4, seed=3)
    depth, _ = engine.run(image, radar)
    with torch.no_grad():
        rgb = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        expected = model(rgb, torch.from_numpy(radar)[None]).depth[0, 0].numpy()
    assert np.abs(depth - expected).max() <= TOLERANCE_M


@pytest.mark.slow
def test_replay_runs_the_imported_model_on_the_bundled_bag(imported, nuscenes_root, tmp_path):
    """config/lircdepth_nuscenes.yaml (RADAR_FRONT only, raw velocities, tf extrinsics) drives
    replay of the converter's bag with the imported model: finite depth on every frame."""
    from xdrcdepth_ros.bag.convert import convert_nuscenes
    from xdrcdepth_ros.bag.io import BagReader
    from xdrcdepth_ros.bag.replay import replay_bag
    from xdrcdepth_ros.core import conversions
    from xdrcdepth_ros.core.outputs import output_topic

    bag = tmp_path / 'nusc'
    convert_nuscenes(nuscenes_root, bag, progress=False)
    params = Path(__file__).resolve().parents[1] / 'config' / 'lircdepth_nuscenes.yaml'
    summary = replay_bag(bag, tmp_path / 'depth', model=imported.with_suffix('.onnx'),
                         params_file=params, providers=['cpu'], progress=False)
    assert (summary.frames_in, summary.frames_out) == (8, 8) and summary.drops == {}
    with BagReader(tmp_path / 'depth') as reader:
        depths = [np.asarray(conversions.image_to_array(reader.deserialize(m)))
                  for m in reader.messages([output_topic('depth')])]
    assert len(depths) == 8
    for depth in depths:
        assert depth.shape == (96, 160) and np.isfinite(depth).mean() > 0.99


@pytest.mark.slow
def test_train_distils_two_steps_from_the_imported_cafnet(cafnet_file, cafnet, nuscenes_root,
                                                          tmp_path):
    """``train --teacher`` takes the imported CaFNet .pt (the file import-checkpoint writes;
    its ONNX half is left out here, it costs a minute): two steps with saliency KD on '1/8'
    and '1/4' and distribution KD give finite losses. (The release file as downloaded goes
    through the same ``load_any_checkpoint``, tested on a bare LiRCDepth file above.)"""
    from xdrcdepth_ros.model.cafnet import CaFNet
    from xdrcdepth_ros.train.config import config_from_dict
    from xdrcdepth_ros.train.trainer import Trainer

    save_imported_checkpoint(cafnet, 'cafnet', tmp_path / 'cafnet.pt', cafnet_file)
    cfg = config_from_dict({
        'data': {'dataset': 'nuscenes', 'root': str(nuscenes_root), 'version': 'v1.0-mini',
                 'train_split': 'all', 'val_split': 'all', 'height': 64, 'width': 128,
                 'crop_height': 0, 'crop_width': 0, 'augment': False},
        'model': {'name': 'xdrcdepth_tiny'},
        'optim': {'lr': 1e-3, 'batch_size': 2, 'steps': 2},
        'kd': {'saliency_weight': 1.0, 'saliency_layers': ['1/8', '1/4'],
               'distribution_weight': 0.1},
        'run': {'out_dir': str(tmp_path / 'run'), 'seed': 0, 'num_threads': 1, 'val_every': 0,
                'ckpt_every': 0, 'log_every': 1},
    })
    trainer = Trainer(cfg, teacher=str(tmp_path / 'cafnet.pt'))
    assert isinstance(trainer.distiller.teacher, CaFNet)
    assert torch.equal(trainer.distiller.teacher.head.weight, cafnet.head.weight)
    trainer.fit()
    assert len(trainer.history) == 2
    for entry in trainer.history:
        assert entry['saliency_kd'] > 0 and np.isfinite(entry['distribution_kd'])
