"""Package layout rules of docs/architecture.md, enforced by package rather than by a file list.

- ``xdrcdepth_ros.core`` (and ``xdrcdepth_ros.ros`` apart from its node) imports neither rclpy
  nor torch: a vehicle runs the core with numpy + OpenCV + onnxruntime alone.
- rclpy is imported only in ``ros/`` and in ``bag/`` (the DDS player/recorder of the demo).
- torch is imported only in ``model/``, ``train/``, ``data/``, ``export.py``, ``benchmark.py``
  and the commands that need it (lazily, inside ``run``).
- the core imports nothing from the layers above it; only the CLI imports the commands.
"""
from __future__ import annotations

import ast
from pathlib import Path
import pkgutil
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'xdrcdepth_ros'
RCLPY_LAYERS = ('ros', 'bag')
RCLPY_NODES = ('node.py', 'lifecycle_node.py')  # the plain node and its lifecycle variant
TORCH_LAYERS = ('model', 'train', 'data', 'export', 'benchmark', 'commands')
CORE_MAY_IMPORT = ('xdrcdepth_ros.core',)


def _modules(subpackage: str) -> list[str]:
    """Every module of ``xdrcdepth_ros.<subpackage>``, found on disk (new files included)."""
    prefix = f'xdrcdepth_ros.{subpackage}.'
    found = [f'xdrcdepth_ros.{subpackage}']
    found += [info.name for info in pkgutil.walk_packages([str(PACKAGE / subpackage)], prefix)]
    return found


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports, at any depth (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _layer(path: Path) -> str:
    """First path component under the package: 'core', 'ros', ..., or a top-level module stem."""
    return path.relative_to(PACKAGE).parts[0].removesuffix('.py')


def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob('*.py'))


def test_core_and_ros_support_import_neither_rclpy_nor_torch():
    """Importing every core module (and the ROS-free support of the node) loads neither."""
    names = _modules('core') + [name for name in _modules('ros') if name.rsplit('.', 1)[-1]
                                not in ('node', 'lifecycle_node')]
    assert len(names) > 15  # the walk found the package, not an empty folder
    code = ('import sys\n' + ''.join(f'import {name}\n' for name in names)
            + 'import xdrcdepth_ros.cli\n'
            + 'print(sorted(m for m in ("torch", "rclpy") if m in sys.modules))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == '[]'


def test_rclpy_and_torch_are_imported_only_in_their_layers():
    offenders = []
    for path in _python_files():
        layer, imports = _layer(path), _imports(path)
        roots = {name.split('.')[0] for name in imports}
        if 'rclpy' in roots and layer not in RCLPY_LAYERS:
            offenders.append(f'{path.relative_to(ROOT)} imports rclpy')
        if 'torch' in roots and layer not in TORCH_LAYERS:
            offenders.append(f'{path.relative_to(ROOT)} imports torch')
        if layer == 'ros' and path.name not in RCLPY_NODES and 'rclpy' in roots:
            offenders.append(f'{path.relative_to(ROOT)} imports rclpy outside the ros/ nodes')
    assert offenders == []


def test_core_imports_nothing_above_it():
    offenders = [f'{path.relative_to(ROOT)} imports {name}'
                 for path in sorted((PACKAGE / 'core').rglob('*.py'))
                 for name in sorted(_imports(path))
                 if name.startswith('xdrcdepth_ros') and not name.startswith(CORE_MAY_IMPORT)]
    assert offenders == []


def test_only_the_cli_imports_the_commands():
    """commands/ is the top layer (argparse shims): library code never imports it (the demo once
    built an argparse object to call `project`)."""
    offenders = [f'{path.relative_to(ROOT)} imports {name}'
                 for path in _python_files() if _layer(path) not in ('commands', 'cli')
                 for name in sorted(_imports(path)) if name.startswith('xdrcdepth_ros.commands')]
    assert offenders == []


def test_architecture_doc_names_every_subpackage():
    """docs/architecture.md is the map: every subpackage and top-level module is on it."""
    doc = (ROOT / 'docs' / 'architecture.md').read_text()
    names = sorted({_layer(path) for path in _python_files()} - {'__init__', '__main__'})
    missing = [name for name in names if f'`{name}' not in doc]
    assert missing == []


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
