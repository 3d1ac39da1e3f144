"""ament_python package setup for xdrcdepth_ros (also a plain pip-installable package)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'xdrcdepth_ros'

ROS_WHEELS = [
    'ros-jazzy-rclpy[fastrtps]',
    'ros-jazzy-sensor-msgs',
    'ros-jazzy-std-msgs',
    'ros-jazzy-geometry-msgs',
    'ros-jazzy-diagnostic-msgs',
    'ros-jazzy-lifecycle-msgs',
    'ros-jazzy-rcl-interfaces',
]
# One onnxruntime build per environment: they all install the same `onnxruntime` module.
ORT_CPU = 'onnxruntime>=1.18'
ORT_OPENVINO = 'onnxruntime-openvino>=1.18'  # ORT with Intel's OpenVINO provider; x86-64 wheels
EXTRAS = {
    'cpu': [ORT_CPU],
    'openvino': [ORT_OPENVINO],
    'gpu': ['onnxruntime-gpu>=1.18'],
    'train': ['torch>=2.2', 'torchvision>=0.17', 'onnx>=1.16', 'onnxscript', 'tensorboard', 'tqdm',
              'scipy'],
    'bag': ['rosbags>=0.10', 'tqdm'],
    # nuscenes-devkit pins numpy<2; the Makefile installs it without dependencies for tests.
    'nuscenes': ['nuscenes-devkit>=1.1'],
    'ros': ROS_WHEELS,
    # scikit-learn and cachetools are what nuscenes-devkit's point-cloud readers import.
    'test': ['pytest>=7', 'hypothesis', 'pyquaternion', 'matplotlib', 'scikit-learn', 'cachetools'],
    'viz': ['matplotlib'],
}
# 'all' (development, CI, CPU-only machines): the OpenVINO build on x86-64, the fastest CPU path
# measured (docs/performance.md); the plain build elsewhere.
EXTRAS['all'] = sorted({req for name, reqs in EXTRAS.items()
                        if name not in ('cpu', 'openvino', 'gpu', 'nuscenes') for req in reqs}) + [
    f"{ORT_OPENVINO}; platform_machine == 'x86_64'",
    f"{ORT_CPU}; platform_machine != 'x86_64'"]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.json')
         + glob('config/*.xml')),
        ('share/' + PACKAGE + '/models', glob('models/*.onnx') + glob('models/*.json')
         + glob('models/*.md')),
        ('share/' + PACKAGE + '/rviz', glob('rviz/*.rviz')),
    ],
    install_requires=['numpy>=1.22', 'opencv-python-headless>=4.6', 'pyyaml>=5.4'],
    extras_require=EXTRAS,
    python_requires='>=3.10',
    zip_safe=True,
    maintainer='xdrcdepth_ros maintainers',
    maintainer_email='maintainers@xdrcdepth.invalid',
    description='Real-time camera + radar dense depth (XD-RCDepth) for ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'xdrcdepth = xdrcdepth_ros.cli:main',
            'xdrcdepth_node = xdrcdepth_ros.ros.node:main',
            'xdrcdepth_lifecycle_node = xdrcdepth_ros.ros.lifecycle_node:main',
        ],
    },
)
