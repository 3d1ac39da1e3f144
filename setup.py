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
]
EXTRAS = {
    'cpu': ['onnxruntime>=1.18'],
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
EXTRAS['all'] = sorted({req for name, reqs in EXTRAS.items()
                        if name not in ('gpu', 'nuscenes') for req in reqs})

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.json')),
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
            'xdrcdepth_node = xdrcdepth_ros.node:main',
        ],
    },
)
