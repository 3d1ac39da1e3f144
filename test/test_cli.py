"""The `xdrcdepth` command line: every subcommand's --help, the documented bag workflow, errors."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from xdrcdepth_ros import cli


def _subcommands() -> dict[str, object]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == 'command')
    return dict(action.choices)


def test_every_command_module_is_registered():
    """Each module named in COMMAND_MODULES registers its subcommand under its dashed name."""
    assert set(_subcommands()) == {name.replace('_', '-') for name in cli.COMMAND_MODULES}


def test_a_missing_command_module_fails_loudly(monkeypatch):
    """A listed command that cannot be imported stops the CLI with its name, not a silently
    shorter --help."""
    monkeypatch.setattr(cli, 'COMMAND_MODULES', (*cli.COMMAND_MODULES, 'no_such_command'))
    with pytest.raises(ImportError, match='xdrcdepth_ros.commands.no_such_command'):
        cli.build_parser()


def test_a_command_module_that_breaks_on_import_fails_loudly(monkeypatch, tmp_path):
    """An error inside a command module (here a missing dependency) is not swallowed."""
    package = tmp_path / 'xdrcdepth_ros' / 'commands'
    package.mkdir(parents=True)
    (package / 'broken_command.py').write_text('import a_dependency_that_is_not_installed\n')
    import xdrcdepth_ros.commands

    monkeypatch.setattr(xdrcdepth_ros.commands, '__path__',
                        [*xdrcdepth_ros.commands.__path__, str(package)])
    monkeypatch.setattr(cli, 'COMMAND_MODULES', (*cli.COMMAND_MODULES, 'broken_command'))
    with pytest.raises(ImportError, match='broken_command.*a_dependency_that_is_not_installed'):
        cli.build_parser()


@pytest.mark.parametrize('name', sorted(_subcommands()))
def test_help_of_every_subcommand(name, capsys):
    """--help prints usage and exits 0, without loading torch or rclpy."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, '--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f'usage: xdrcdepth {name}' in out


def test_building_the_parser_loads_no_heavy_module():
    """--help must work fast and without torch/rclpy: commands import them inside run()."""
    code = ('import sys; from xdrcdepth_ros import cli; cli.build_parser(); '
            'print(sorted(m for m in ("torch", "rclpy", "onnxruntime") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_top_level_help_as_a_module():
    """`python -m xdrcdepth_ros --help` lists the bag commands and exits 0."""
    result = subprocess.run([sys.executable, '-m', 'xdrcdepth_ros', '--help'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ('demo', 'project', 'nuscenes-to-bag', 'replay', 'evaluate'):
        assert name in result.stdout


def test_documented_bag_workflow(nuscenes_root, tiny_model, tmp_path, capsys):
    """nuscenes-to-bag → replay → evaluate --json, as the --help examples show them."""
    bag, depth = tmp_path / 'nusc_bag', tmp_path / 'depth_bag'
    assert cli.main(['nuscenes-to-bag', '--dataroot', str(nuscenes_root), '--out', str(bag),
                     '--scene', 'scene-0916', '--storage', 'mcap', '--no-progress']) == 0
    out = capsys.readouterr().out
    assert 'params/scene-0916.CAM_FRONT.yaml' in out and '/LIDAR_TOP' in out
    assert cli.main(['replay', str(bag), '--out', str(depth), '--model', str(tiny_model),
                     '--no-progress']) == 0
    out = capsys.readouterr().out
    assert '4 depth frames from 4 images' in out and 'latency per frame' in out
    assert cli.main(['evaluate', str(depth), '--json', '--panels', str(tmp_path / 'panels')]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result['frames']) == 4
    assert result['mean']['80']['n_images'] == 4
    assert len(list((tmp_path / 'panels').glob('*.png'))) == 4


def test_project_writes_the_projection_panel(nuscenes_root, tmp_path, capsys):
    """`xdrcdepth project` draws one tile per keyframe into a PNG."""
    out = tmp_path / 'projection.png'
    assert cli.main(['project', '--dataroot', str(nuscenes_root), '--max-frames', '2',
                     '--out', str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] == 1600  # two 800 px tiles side by side
    assert '2 keyframes' in capsys.readouterr().out


@pytest.mark.parametrize('argv, message', [
    (['nuscenes-to-bag', '--dataroot', '{tmp}/missing', '--out', '{tmp}/bag'],
     'missing nuScenes table'),
    (['replay', '{tmp}/no_bag', '--out', '{tmp}/out'], 'no_bag does not exist'),
    (['evaluate', '{tmp}/no_bag'], 'no_bag does not exist'),
    (['project', '--dataroot', '{tmp}/missing'], 'missing nuScenes table'),
])
def test_bad_input_gives_one_error_line_and_exit_1(argv, message, tmp_path, capsys):
    """Errors reach the user as `ERROR: ...` naming the problem, exit code 1."""
    code = cli.main([arg.replace('{tmp}', str(tmp_path)) for arg in argv])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith('ERROR: ') and message in err
    assert not (tmp_path / 'bag').exists() and not (tmp_path / 'out').exists()
