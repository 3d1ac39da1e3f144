"""``xdrcdepth node``: run the ROS 2 node, like ``ros2 run xdrcdepth_ros xdrcdepth_node``."""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  xdrcdepth node --params-file config/xdrcdepth.yaml
  xdrcdepth node --params-file config/xdrcdepth.yaml --ros-args -p image_transport:=compressed \\
      -r __ns:=/front
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``node`` subcommand; arguments after ``--ros-args`` go to ROS unchanged."""
    parser = subparsers.add_parser(
        'node', help='run the ROS 2 depth node (needs rclpy)',
        description='Start the xdrcdepth ROS 2 node: camera + radar in, dense depth out. '
                    'Remaining arguments (e.g. --ros-args -p name:=value) are passed to ROS.',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--params-file', type=Path, default=None, metavar='YAML',
                        help='ROS parameter file, e.g. config/xdrcdepth.yaml')
    parser.set_defaults(func=run, accepts_extra=True)


def ros_arguments(params_file: Path | None, extra: list[str]) -> list[str]:
    """The argv handed to ``rclpy.init``: program name, then the ROS arguments.

    Raises:
        FileNotFoundError: ``params_file`` does not exist.
    """
    argv = ['xdrcdepth_node']
    ros_args: list[str] = []
    if params_file is not None:
        if not params_file.is_file():
            raise FileNotFoundError(f'parameter file {str(params_file)!r} not found')
        ros_args += ['--params-file', str(params_file)]
    rest = list(extra)
    if rest and rest[0] == '--ros-args':
        rest = rest[1:]
    elif rest:
        raise ValueError(f'unexpected arguments {rest!r}; put ROS arguments after --ros-args')
    if ros_args or rest:
        argv += ['--ros-args'] + ros_args + rest
    return argv


def run(args: argparse.Namespace) -> int:
    """Start the node and spin until Ctrl-C; returns its exit code."""
    argv = ros_arguments(args.params_file, list(getattr(args, 'extra', [])))
    try:
        from xdrcdepth_ros.ros.node import main
    except ImportError as err:
        from xdrcdepth_ros.core.errors import XdrcDepthError

        raise XdrcDepthError(f'the node needs rclpy and the ROS 2 message packages ({err}); '
                             "install them with pip install -e '.[ros]' or source a ROS 2 "
                             'install') from err
    return main(argv)
