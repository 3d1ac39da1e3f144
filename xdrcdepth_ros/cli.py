"""The ``xdrcdepth`` command: one argparse subcommand per module in ``xdrcdepth_ros.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=run`` where ``run(args) -> int`` returns the exit code. Heavy imports (torch, rclpy)
happen inside ``run`` so ``--help`` stays fast and works without them.

Examples:
    xdrcdepth project --out demo_output/projection.png
    xdrcdepth model-info --json
    xdrcdepth export --checkpoint runs/student/last.pt --height 192 --width 352 --out models/s.onnx
    xdrcdepth import-checkpoint --arch lircdepth model-1170000-best_mae_2.00887 --out models/lirc
    xdrcdepth bench --json
    xdrcdepth nuscenes-to-bag --dataroot test/data/nuscenes --out /tmp/nusc_bag
    xdrcdepth replay /tmp/nusc_bag --out /tmp/depth_bag
    xdrcdepth evaluate /tmp/depth_bag --json
    xdrcdepth demo
"""
from __future__ import annotations

import argparse
import importlib
import sys

from xdrcdepth_ros.core.errors import XdrcDepthError

# Order is the order shown in --help.
COMMAND_MODULES = (
    'demo', 'project', 'node', 'nuscenes_to_bag', 'replay', 'evaluate', 'bench', 'export',
    'model_info', 'train', 'evaluate_model', 'import_checkpoint',
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand of :data:`COMMAND_MODULES` registered.

    Raises:
        ImportError: a command module is missing or fails to import (named).
    """
    parser = argparse.ArgumentParser(
        prog='xdrcdepth', description='Camera + radar dense depth (XD-RCDepth) tools.',
        epilog=__doc__.split('Examples:', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in COMMAND_MODULES:
        module_name = f'xdrcdepth_ros.commands.{name}'
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            # A listed command that does not import is a broken install, never "not yet there".
            raise ImportError(f'xdrcdepth command module {module_name} cannot be imported: '
                              f'{type(err).__name__}: {err}') from err
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, 'accepts_extra', False):
        parser.error('unrecognized arguments: ' + ' '.join(extra))
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except (XdrcDepthError, OSError, ValueError) as err:  # OSError: full disk, read-only...
        print(f'ERROR: {err}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
