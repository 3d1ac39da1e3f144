"""``python -m xdrcdepth_ros`` is the ``xdrcdepth`` command."""
import sys

from xdrcdepth_ros.cli import main

sys.exit(main())
