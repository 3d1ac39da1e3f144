"""package.xml: every ROS package the code imports is a dependency rosdep can install, and the
ONNX Runtime build is the user's pick (CPU by default, GPU on request)."""
from __future__ import annotations

import ast
from pathlib import Path
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
# Python module -> package.xml key, where they differ.
ROS_KEYS = {'tf2_ros': 'tf2_ros_py'}
ROS_MODULES = {'rclpy', 'rcl_interfaces', 'lifecycle_msgs', 'sensor_msgs', 'std_msgs',
               'geometry_msgs', 'diagnostic_msgs', 'ament_index_python', 'tf2_ros', 'launch',
               'launch_ros'}


def dependencies(tag):
    root = ET.parse(ROOT / 'package.xml').getroot()
    return {(element.text, element.get('condition')) for element in root.iter(tag)}


def imported_ros_modules():
    files = [*(ROOT / 'xdrcdepth_ros').rglob('*.py'), *(ROOT / 'launch').glob('*.py')]
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            found.update(name.split('.')[0] for name in names)
    return found & ROS_MODULES


def test_every_imported_ros_package_is_an_exec_dependency():
    keys = {name for name, _ in dependencies('exec_depend')}
    missing = {ROS_KEYS.get(m, m) for m in imported_ros_modules()} - keys
    assert not missing, f'package.xml lacks exec_depend {sorted(missing)}'
    assert {'rcl_interfaces', 'lifecycle_msgs', 'rviz2'} <= keys


def test_onnxruntime_cpu_and_gpu_are_alternatives_chosen_by_one_variable():
    runtimes = {name: condition for name, condition in dependencies('exec_depend')
                if name.startswith('python3-onnxruntime')}
    assert runtimes == {'python3-onnxruntime-gpu-pip': '$XDRCDEPTH_ONNXRUNTIME == gpu',
                        'python3-onnxruntime-pip': '$XDRCDEPTH_ONNXRUNTIME != gpu'}


def test_test_only_imports_are_test_dependencies():
    keys = {name for name, _ in dependencies('test_depend')}
    assert {'python3-pytest', 'python3-hypothesis', 'python3-torch',
            'python3-torchvision'} <= keys
