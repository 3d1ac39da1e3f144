"""Former home of the node's ROS-free steps, kept so existing imports keep working.

The message → frame and result → message steps now live in :mod:`xdrcdepth_ros.node_core`,
which the node itself runs, and :func:`load_params_file` in :mod:`xdrcdepth_ros.node_params`.
Import from those modules; this one only re-exports their names.
"""
from __future__ import annotations

from xdrcdepth_ros.node_core import (MessageClasses, NODE_NAME, OUTPUT_SUFFIXES, OUTPUT_TYPES,
                                     output_messages, output_topic, radar_field_map)
from xdrcdepth_ros.node_params import load_params_file

__all__ = ['MessageClasses', 'NODE_NAME', 'OUTPUT_SUFFIXES', 'OUTPUT_TYPES', 'load_params_file',
           'output_messages', 'output_topic', 'radar_field_map']
