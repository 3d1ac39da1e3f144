"""Documents rendered from the node's parameter table: the JSON Schema and the README table.

``config/xdrcdepth.schema.json`` and ``docs/node.md`` are generated from
:data:`xdrcdepth_ros.core.config.PARAMETERS`; ``test/test_params.py`` keeps them equal.
Regenerate with ``python -m xdrcdepth_ros.ros.param_docs``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xdrcdepth_ros.core.config import PARAMETER_NAMES, PARAMETERS, ParamSpec, ParamType

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


NODE_DOC_HEADER = """# The xdrcdepth node: parameters

Generated from `xdrcdepth_ros/core/config.py` by `python -m xdrcdepth_ros.ros.param_docs`; the same
table renders `config/xdrcdepth.schema.json`, and `test/test_params.py` keeps YAML, schema,
declarations and this page equal. Read-only parameters are used at start-up only; the others can be
changed at run time with `ros2 param set /xdrcdepth NAME VALUE` (invalid values are rejected with
a reason).

"""


def write_docs(root: Path) -> None:
    """Write the schema and ``docs/node.md`` under the repository ``root``."""
    (root / 'config' / 'xdrcdepth.schema.json').write_text(json.dumps(json_schema(), indent=2) + '\n')
    (root / 'docs' / 'node.md').write_text(NODE_DOC_HEADER + markdown_table())


if __name__ == '__main__':
    write_docs(Path(__file__).resolve().parents[2])
