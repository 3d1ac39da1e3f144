"""Package layout rules from ARCHITECTURE.md: the core stays free of rclpy and torch."""
from __future__ import annotations

from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
CORE = ('geometry', 'conversions', 'sync', 'pipeline', 'engine', 'visualize', 'evaluate',
        'nuscenes_io', 'frame', 'cli', 'node_core', 'node_stats', 'node_params', 'model_metadata',
        'param_docs', 'onnx_passes')


def test_core_modules_import_neither_rclpy_nor_torch():
    """A vehicle must be able to run the core with numpy + OpenCV + onnxruntime alone."""
    code = ('import sys\n'
            + ''.join(f'import xdrcdepth_ros.{name}\n' for name in CORE)
            + 'print(sorted(m for m in ("torch", "rclpy") if m in sys.modules))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == '[]'


def test_ament_python_package_files_are_present():
    assert (ROOT / 'resource' / 'xdrcdepth_ros').is_file()
    package = ET.parse(ROOT / 'package.xml').getroot()
    assert package.get('format') == '3'
    assert package.findtext('name') == 'xdrcdepth_ros'
    assert package.find('export').findtext('build_type') == 'ament_python'
    setup_cfg = (ROOT / 'setup.cfg').read_text()
    assert 'script_dir=$base/lib/xdrcdepth_ros' in setup_cfg
    assert 'install_scripts=$base/lib/xdrcdepth_ros' in setup_cfg
    for folder in ('xdrcdepth_ros', 'launch', 'models', 'config', 'test'):
        assert (ROOT / folder).is_dir(), folder


def test_ci_runs_the_readme_test_command():
    assert 'make test' in (ROOT / 'README.md').read_text()
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
