"""Documents rendered from the node's tables: the JSON Schema and ``docs/node.md``.

``config/xdrcdepth.schema.json`` and ``docs/node.md`` are generated from
:data:`xdrcdepth_ros.core.config.PARAMETERS` (``docs/node.md`` also from the output and launch
argument tables); ``test/test_params.py`` keeps them equal.
Regenerate with ``python -m xdrcdepth_ros.ros.param_docs``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xdrcdepth_ros.core.config import PARAMETER_NAMES, PARAMETERS, ParamSpec, ParamType
from xdrcdepth_ros.core.outputs import OUTPUT_TYPES
from xdrcdepth_ros.ros.launch_setup import LAUNCH_ARGUMENTS

_JSON_TYPES = {
    ParamType.BOOL: 'boolean', ParamType.INTEGER: 'integer', ParamType.DOUBLE: 'number',
    ParamType.STRING: 'string', ParamType.STRING_ARRAY: 'array', ParamType.DOUBLE_ARRAY: 'array',
}


def _schema_property(param: ParamSpec) -> dict[str, Any]:
    prop: dict[str, Any] = {'type': _JSON_TYPES[param.type], 'description': param.description,
                            'default': param.default}
    bounds = {}
    if param.minimum is not None:
        bounds['minimum'] = param.minimum
    if param.maximum is not None:
        bounds['maximum'] = param.maximum
    if param.type is ParamType.STRING_ARRAY:
        items: dict[str, Any] = {'type': 'string'}
        if param.choices:
            items['enum'] = list(param.choices)
        prop['items'] = items
        prop['uniqueItems'] = True
    elif param.type is ParamType.DOUBLE_ARRAY:
        prop['items'] = {'type': 'number', **bounds}
    else:
        prop.update(bounds)
        if param.choices:
            prop['enum'] = list(param.choices)
    return prop


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft-07) of ``config/xdrcdepth.yaml``, rendered from :data:`PARAMETERS`."""
    parameters = {
        'type': 'object',
        'properties': {param.name: _schema_property(param) for param in PARAMETERS},
        'required': list(PARAMETER_NAMES),
        'additionalProperties': False,
    }
    node = {'type': 'object',
            'properties': {'ros__parameters': {'$ref': '#/definitions/xdrcdepth'}},
            'required': ['ros__parameters'], 'additionalProperties': False}
    return {
        '$schema': 'http://json-schema.org/draft-07/schema#',
        'title': 'Parameters of the xdrcdepth node',
        'type': 'object',
        'definitions': {'xdrcdepth': parameters},
        'properties': {'/**': node},
        'required': ['/**'],
        'additionalProperties': False,
    }


def markdown_table() -> str:
    """The parameter table as Markdown (name, type, default, range/choices, description)."""
    rows = ['| parameter | type | default | range / choices | read-only | description |',
            '|---|---|---|---|---|---|']
    for param in PARAMETERS:
        limits = ', '.join(param.choices)
        if param.minimum is not None or param.maximum is not None:
            low = '' if param.minimum is None else param.minimum
            high = '' if param.maximum is None else param.maximum
            limits = f'[{low}, {high}]'
        default = json.dumps(param.default)
        rows.append(f'| `{param.name}` | {param.type.value} | `{default}` | {limits} | '
                    f'{"yes" if param.read_only else "no"} | {param.description} |')
    return '\n'.join(rows) + '\n'


NODE_DOC_HEADER = """# The xdrcdepth node

Generated from `xdrcdepth_ros/core/config.py` (parameters), `xdrcdepth_ros/core/frame_step.py`
(outputs) and `xdrcdepth_ros/ros/launch_setup.py` (launch arguments) by
`python -m xdrcdepth_ros.ros.param_docs`; the same table renders `config/xdrcdepth.schema.json`,
and `test/test_params.py` keeps YAML, schema, declarations and this page equal.

## Executables

- `xdrcdepth_node` (`ros2 run xdrcdepth_ros xdrcdepth_node`, also `xdrcdepth node`): starts
  working at once.
- `xdrcdepth_lifecycle_node`: the managed variant, same parameters and topics. `configure` reads
  the parameters, loads the model and builds the engine (TensorRT builds or loads its engine
  cache in `trt_cache_dir` here); `activate` subscribes and publishes; `deactivate` stops both;
  `cleanup` frees the engine; `shutdown` from any state. A failed configure is logged with its
  reason and leaves the node unconfigured. Driven through `/<node>/change_state` and
  `/<node>/get_state` (`ros2 lifecycle set /xdrcdepth configure`).

## Names

Inputs are relative names resolved in the node's namespace and remappable, as image_pipeline
nodes' are: `image` (`sensor_msgs/Image`; with `image_transport: compressed` the node subscribes
`<image>/compressed` after remapping, so `image:=/cam/image_raw` moves both), `camera_info`, and
the `radar_topics` list (default `radar_0`; `camera_only: true` subscribes to none). Absolute
names in the parameters are used as they are. Inputs use the sensor-data QoS (best effort, keep
last 5), changeable with `qos_overrides.<resolved topic>.subscription.*`. Outputs are private
(`<namespace>/<node>/...`, reliable):

"""

NODE_DOC_PARAMETERS = """
## Parameters

Read-only parameters are used at start-up (or at configure) only; the others can be changed at run
time with `ros2 param set /xdrcdepth NAME VALUE` (invalid values are rejected with a reason).

"""

NODE_DOC_LAUNCH = """
## Launch arguments (`ros2 launch xdrcdepth_ros xdrcdepth.launch.py ...`)

Empty means "keep the params file's value". `radar_topics:="[]"` sets `camera_only: true`;
`image_topic` and `camera_info_topic` are remappings of `image` and `camera_info`;
`cameras:="[A, B]"` starts one node per camera in `<namespace>/<camera>` with `{camera}` in
`params_file`, `image_topic` and `camera_info_topic` replaced by its name; `rviz:=true` writes the
RViz layout with the first node's namespace and inputs filled in.

"""

_OUTPUT_NOTES = {
    'depth': 'REP 118: 32FC1 metres, NaN invalid, or 16UC1 millimetres, 0 invalid (also beyond '
             '65.535 m); the image stamp and frame_id',
    'camera_info': 'matches the published depth size (K and P scaled/cropped like the depth)',
    'depth_color': 'rgb8 colour map over a fixed metric range (`publish_color`)',
    'saliency_overlay': 'rgb8 Grad-CAM overlay (`publish_saliency`)',
    'points': 'x, y, z float32 in the camera optical frame (`publish_points`); organised '
              'height x width with NaN points where depth is invalid (`points_organized`)',
    'depth/compressedDepth': "16-bit PNG after compressed_depth_image_transport's 12-byte "
                             'header, format `<encoding>; compressedDepth png` '
                             '(`publish_compressed`); 32FC1 goes as quantised inverse depth',
    'depth_color/compressed': 'JPEG of `depth_color`, format `rgb8; jpeg compressed bgr8` '
                              '(`publish_compressed` and `publish_color`)',
}


def outputs_table() -> str:
    """The node's outputs (``~/<suffix>``) with their types and what they carry."""
    rows = ['| topic | type | notes |', '|---|---|---|']
    rows += [f'| `~/{suffix}` | `{msgtype}` | {_OUTPUT_NOTES[suffix]} |'
             for suffix, msgtype in OUTPUT_TYPES.items()]
    rows.append('| `/diagnostics` | `diagnostic_msgs/msg/DiagnosticArray` | every '
                '`diagnostics_period_s`; `hardware_id` = the camera frame id, the inference '
                'provider is the value `provider` |')
    return '\n'.join(rows) + '\n'


def launch_table() -> str:
    """The launch file's arguments with their defaults."""
    rows = ['| argument | default | description |', '|---|---|---|']
    rows += [f'| `{a.name}` | `{a.default!r}` | {a.description} |' for a in LAUNCH_ARGUMENTS]
    return '\n'.join(rows) + '\n'


def node_doc() -> str:
    """The whole of ``docs/node.md``."""
    return (NODE_DOC_HEADER + outputs_table() + NODE_DOC_PARAMETERS + markdown_table()
            + NODE_DOC_LAUNCH + launch_table())


def write_docs(root: Path) -> None:
    """Write the schema and ``docs/node.md`` under the repository ``root``."""
    (root / 'config' / 'xdrcdepth.schema.json').write_text(json.dumps(json_schema(), indent=2) + '\n')
    (root / 'docs' / 'node.md').write_text(node_doc())


if __name__ == '__main__':
    write_docs(Path(__file__).resolve().parents[2])
