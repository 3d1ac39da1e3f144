"""The offline tools fail with one ``ERROR:`` line, exit 1 and leave nothing half-written
(issue 16, finding 8): garbage metadata, a full disk, an unwritable panels folder, and an mcap
whose middle was overwritten (``rosbags`` skips such a chunk without a word).

The commands run as processes (``python -m xdrcdepth_ros ...``) on real bags made from the
bundled frames. A full disk is a file-size limit (``RLIMIT_FSIZE``) on the process: writes
beyond it fail with EFBIG, as they would with ENOSPC.
"""
from __future__ import annotations

import os
from pathlib import Path
import resource
import shutil
import signal
import subprocess
import sys

import pytest

from xdrcdepth_ros.bag.convert import convert_nuscenes
from xdrcdepth_ros.bag.io import BagReader, Storage
from xdrcdepth_ros.bag.replay import replay_bag
from xdrcdepth_ros.core.errors import BagError

pytestmark = pytest.mark.slow  # each case starts the command line (about 2 minutes in all)
ROOT = Path(__file__).resolve().parents[1]
GARBAGE = bytes(range(256)) * 256  # 64 KiB


def xdrcdepth(*args: str | Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    """Run the command line in a fresh process, optionally under a file-size limit (bytes)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = dict(os.environ, PYTHONPATH=f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    return subprocess.run([sys.executable, '-m', 'xdrcdepth_ros', *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if file_limit else None)


def assert_one_error(run: subprocess.CompletedProcess, *words: str) -> None:
    """rc 1, no traceback, exactly one ERROR: line on stderr, naming ``words``."""
    assert run.returncode == 1, run.stderr
    assert 'Traceback' not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith('ERROR:')]
    assert len(errors) == 1, run.stderr
    for word in words:
        assert word in errors[0], errors[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope='module')
def sqlite_bag(nuscenes_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('faults_in') / 'nusc'
    convert_nuscenes(nuscenes_root, out, progress=False)
    return out


@pytest.fixture(scope='module')
def mcap_bag(nuscenes_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('faults_mcap') / 'nusc'
    convert_nuscenes(nuscenes_root, out, storage=Storage.MCAP, lidar=False,
                     radars=['RADAR_FRONT'], progress=False)
    return out


@pytest.fixture(scope='module')
def depth_bag(sqlite_bag, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp('faults_depth') / 'depth'
    replay_bag(sqlite_bag, out, model=tiny_model, providers=['cpu'], progress=False)
    return out


def test_garbage_metadata_is_one_error(sqlite_bag, tiny_model, tmp_path):
    bag = tmp_path / 'bad'
    shutil.copytree(sqlite_bag, bag)
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: [unclosed\n  : - :')
    run = xdrcdepth('replay', bag, '--out', tmp_path / 'out', '--model', tiny_model,
                    '--no-progress')
    assert_one_error(run, 'metadata.yaml', 'not valid YAML')
    assert_one_error(xdrcdepth('evaluate', bag, '--no-panels'), 'metadata.yaml')
    assert leftovers(tmp_path) == ['bad']


def test_replay_on_a_full_disk_is_one_error_and_leaves_no_bag(sqlite_bag, tiny_model, tmp_path):
    run = xdrcdepth('replay', sqlite_bag, '--out', tmp_path / 'out', '--model', tiny_model,
                    '--no-progress', file_limit=200_000)
    assert_one_error(run, 'cannot write output bag', str(tmp_path / 'out'))
    assert leftovers(tmp_path) == []


def test_convert_on_a_full_disk_is_one_error_and_leaves_no_bag(nuscenes_root, tmp_path):
    run = xdrcdepth('nuscenes-to-bag', '--dataroot', nuscenes_root, '--out', tmp_path / 'out',
                    '--no-progress', file_limit=200_000)
    assert_one_error(run, 'cannot write output bag')
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize('case', ['full_disk', 'not_a_folder'])
def test_panels_that_cannot_be_written_are_one_error_and_none_is_left(depth_bag, tmp_path,
                                                                       case):
    """Panels used to traceback and leave 3 of 8 PNGs behind."""
    if case == 'full_disk':
        panels, limit = tmp_path / 'panels', 60_000  # the first panels fit, the rest not
    else:
        (tmp_path / 'file').write_text('a file, not a folder')
        panels, limit = tmp_path / 'file' / 'panels', None
    run = xdrcdepth('evaluate', depth_bag, '--panels', panels, '--no-progress',
                    file_limit=limit)
    assert_one_error(run, 'cannot write panels', str(panels))
    assert leftovers(tmp_path) == ([] if case == 'full_disk' else ['file'])


@pytest.fixture
def corrupt_mcap(mcap_bag, tmp_path):
    """The mcap bag with 64 KiB of garbage in the middle of its storage file."""
    bag = tmp_path / 'corrupt'
    shutil.copytree(mcap_bag, bag)
    storage = next(bag.glob('*.mcap'))
    data = bytearray(storage.read_bytes())
    middle = len(data) // 2
    data[middle:middle + len(GARBAGE)] = GARBAGE
    storage.write_bytes(bytes(data))
    return bag


def test_a_corrupt_mcap_chunk_is_detected(corrupt_mcap, tiny_model, tmp_path):
    """It used to replay with rc 0 and 'drops/skips: none'."""
    out = tmp_path / 'out'
    run = xdrcdepth('replay', corrupt_mcap, '--out', out, '--model', tiny_model, '--no-progress')
    assert_one_error(run, 'is corrupt', 'could not be read', '--skip-corrupt')
    assert not out.exists()
    with BagReader(corrupt_mcap) as reader, pytest.raises(BagError, match='is corrupt'):
        for _ in reader.messages():
            pass
    lost = sum(reader.lost.values())
    assert lost > 0
    run = xdrcdepth('replay', corrupt_mcap, '--out', out, '--model', tiny_model, '--no-progress',
                    '--skip-corrupt')
    assert run.returncode == 0, run.stderr
    assert f'corrupt_messages_lost {lost}' in run.stdout
    assert out.is_dir()


def test_a_corrupt_sqlite_file_is_one_error(sqlite_bag, tiny_model, tmp_path):
    bag = tmp_path / 'corrupt'
    shutil.copytree(sqlite_bag, bag)
    storage = next(bag.glob('*.db3'))
    data = bytearray(storage.read_bytes())
    data[len(data) // 2:len(data) // 2 + len(GARBAGE)] = GARBAGE
    storage.write_bytes(bytes(data))
    run = xdrcdepth('replay', bag, '--out', tmp_path / 'out', '--model', tiny_model,
                    '--no-progress', '--skip-corrupt')
    assert_one_error(run, str(bag), 'malformed')
    assert leftovers(tmp_path) == ['corrupt']
