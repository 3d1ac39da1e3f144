"""The node's parameters: one table, and the YAML, the JSON schema and the ROS declarations that
must agree with it; value checks with reasons; run-time changes through real rclpy."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros_helpers import node_model
from xdrcdepth_ros.core import config as node_params
from xdrcdepth_ros.ros import param_docs
from xdrcdepth_ros.core.geometry import extrinsics_from_transform, transform_from_xyzw
from xdrcdepth_ros.core.config import (check_value, engine_providers,
                                       NodeConfig, PARAMETER_NAMES, PARAMETERS, PROVIDERS,
                                       ParamType)

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / 'config' / 'xdrcdepth.yaml'
SCHEMA_PATH = ROOT / 'config' / 'xdrcdepth.schema.json'
IDENTITY = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
__all__ = ['node_model']  # fixture, used by name


def yaml_parameters():
    return yaml.safe_load(YAML_PATH.read_text())['/**']['ros__parameters']


def validate(instance, schema, root=None, path='$'):
    """The draft-07 subset our schema uses, checked by hand (jsonschema is not a dependency).

    Returns a list of problems; empty when ``instance`` is valid.
    """
    root = root or schema
    if '$ref' in schema:
        target = root
        for part in schema['$ref'].lstrip('#/').split('/'):
            target = target[part]
        return validate(instance, target, root, path)
    kinds = {'object': dict, 'array': list, 'string': str, 'boolean': bool,
             'integer': int, 'number': (int, float)}
    kind = schema.get('type')
    if kind and (not isinstance(instance, kinds[kind])
                 or (kind in ('integer', 'number') and isinstance(instance, bool))):
        return [f'{path}: expected {kind}, got {instance!r}']
    problems = []
    if 'enum' in schema and instance not in schema['enum']:
        problems.append(f'{path}: {instance!r} not in {schema["enum"]}')
    if 'minimum' in schema and instance < schema['minimum']:
        problems.append(f'{path}: {instance} < minimum {schema["minimum"]}')
    if 'maximum' in schema and instance > schema['maximum']:
        problems.append(f'{path}: {instance} > maximum {schema["maximum"]}')
    if kind == 'array':
        if schema.get('uniqueItems') and len(set(map(repr, instance))) != len(instance):
            problems.append(f'{path}: items are not unique')
        for index, item in enumerate(instance):
            problems += validate(item, schema.get('items', {}), root, f'{path}[{index}]')
    if kind == 'object':
        properties = schema.get('properties', {})
        problems += [f'{path}: missing {key}' for key in schema.get('required', [])
                     if key not in instance]
        if schema.get('additionalProperties') is False:
            problems += [f'{path}: unexpected {key}' for key in instance if key not in properties]
        for key, value in instance.items():
            if key in properties:
                problems += validate(value, properties[key], root, f'{path}.{key}')
    return problems


def test_yaml_lists_every_parameter_with_its_table_default():
    """config/xdrcdepth.yaml is what users copy: it must hold exactly the table's defaults."""
    values = yaml_parameters()
    assert list(values) == list(PARAMETER_NAMES)
    for spec in PARAMETERS:
        assert values[spec.name] == spec.default, spec.name
        if spec.type is ParamType.DOUBLE:  # ROS rejects 1 for a double: keep the decimal point
            assert isinstance(values[spec.name], float), spec.name


def test_schema_file_is_the_schema_rendered_from_the_table():
    assert json.loads(SCHEMA_PATH.read_text()) == param_docs.json_schema()


def test_docs_table_is_rendered_from_the_parameter_table():
    """docs/node.md is generated; a parameter added to the table must show up there."""
    assert (ROOT / 'docs' / 'node.md').read_text() == param_docs.node_doc()
    assert param_docs.markdown_table() in param_docs.node_doc()


def test_schema_is_strict_draft07_with_enums_and_bounds():
    """additionalProperties false at every level, an enum for every choice, bounds for ranges."""
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema['$schema'] == 'http://json-schema.org/draft-07/schema#'
    assert schema['additionalProperties'] is False
    assert schema['properties']['/**']['additionalProperties'] is False
    parameters = schema['definitions']['xdrcdepth']
    assert parameters['additionalProperties'] is False
    assert parameters['required'] == list(PARAMETER_NAMES)
    for spec in PARAMETERS:
        prop = parameters['properties'][spec.name]
        assert prop['description'] == spec.description
        assert prop['default'] == spec.default
        holder = prop['items'] if spec.type.value.endswith('array') else prop
        if spec.choices:
            assert holder['enum'] == list(spec.choices)
        if spec.minimum is not None:
            assert (holder['minimum'], holder['maximum']) == (spec.minimum, spec.maximum)


def test_yaml_validates_against_the_schema():
    document = yaml.safe_load(YAML_PATH.read_text())
    assert validate(document, json.loads(SCHEMA_PATH.read_text())) == []


@pytest.mark.parametrize('change, problem', [
    ({'depth_encoding': '8UC1'}, "not in ['32FC1', '16UC1']"),
    ({'sync_slop': -0.1}, 'minimum'),
    ({'points_stride': 1.5}, 'expected integer'),
    ({'providers': ['cpu', 'cpu']}, 'not unique'),
    ({'typo_parameter': 1}, 'unexpected typo_parameter'),
])
def test_schema_rejects_bad_documents(change, problem):
    """The validator above is not vacuous: each kind of mistake is reported."""
    document = yaml.safe_load(YAML_PATH.read_text())
    document['/**']['ros__parameters'].update(change)
    problems = validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert any(problem in text for text in problems), problems


def test_defaults_make_a_valid_configuration():
    config = NodeConfig.from_values({})
    assert config.sync_config().slop_ns == 50_000_000
    assert config.subscribed_image_topic == 'image'
    assert config.radar_offsets_ns() == (0,)


def test_inputs_default_to_relative_names_resolved_in_the_namespace():
    """image, camera_info and radar_0 move with the node's namespace, as image_pipeline's do;
    absolute names stay put."""
    config = NodeConfig.from_values({'image_transport': 'compressed'})
    assert (config.image_topic, config.camera_info_topic, config.radar_topics) == (
        'image', 'camera_info', ('radar_0',))
    front = config.with_absolute_topics('/front')
    assert front.subscribed_image_topic == '/front/image/compressed'
    assert (front.camera_info_topic, front.radar_topics) == ('/front/camera_info',
                                                             ('/front/radar_0',))
    assert config.with_absolute_topics().radar_topics == ('/radar_0',)
    absolute = NodeConfig.from_values({'radar_topics': ['/RADAR_FRONT', 'radar_1']})
    assert absolute.with_absolute_topics('/front').radar_topics == ('/RADAR_FRONT',
                                                                    '/front/radar_1')


def test_camera_only_subscribes_no_radar_and_ignores_its_radar_parameters():
    """rcl drops an empty radar_topics list from YAML and -p, so camera_only says "no radar";
    the radar parameters a params file may still carry are then not used."""
    config = NodeConfig.from_values({'camera_only': True, 'extrinsics_source': 'parameters',
                                     'radar_extrinsics': [0.5] * 7,
                                     'radar_time_offsets_s': [0.1]})
    assert config.radar_topics == config.radar_extrinsics == config.radar_time_offsets_s == ()
    assert config.sync_config().radar_offsets_ns == ()
    with pytest.raises(ValueError, match='no radar is subscribed'):
        NodeConfig.from_values({'camera_only': True, 'require_radar': True})


@pytest.mark.parametrize('name, value, reason', [
    ('depth_encoding', 'mono8', "depth_encoding must be one of ['32FC1', '16UC1']"),
    ('sync_slop', 2.0, 'sync_slop must be <= 1.0'),
    ('sync_slop', math.nan, 'sync_slop must be finite'),
    ('points_stride', 0, 'points_stride must be >= 1'),
    ('points_stride', True, 'points_stride must be of type integer'),
    ('providers', ['cpu', 'vulkan'], "providers must be one of ['tensorrt', 'cuda', 'openvino', 'cpu']"),
    ('radar_topics', ['/a', '/a'], 'radar_topics must not repeat items'),
    ('publish_color', 'yes', 'publish_color must be of type bool'),
    ('radar_time_offsets_s', [0.0, 5.0], 'radar_time_offsets_s must be <= 1.0'),
])
def test_bad_values_are_rejected_with_the_reason(name, value, reason):
    assert reason in check_value(name, value)
    with pytest.raises(ValueError, match='invalid node parameters'):
        NodeConfig.from_values({name: value})


@pytest.mark.parametrize('values, reason', [
    ({'extrinsics_source': 'parameters'}, 'needs 7 (x, y, z, qx, qy, qz, qw) per radar topic'),
    ({'extrinsics_source': 'parameters', 'radar_extrinsics': [0, 0, 0, 0, 0, 0, 2.0]},
     'expected a unit quaternion'),
    ({'radar_time_offsets_s': [0.0, 0.0]}, 'has 2 values for 1 radar topics'),
    ({'sync_slop': 0.5, 'sync_max_age_s': 0.2}, 'must be >= sync_slop'),
    ({'radar_topics': [], 'require_radar': True}, 'no radar is subscribed'),
    ({'nonsense': 1}, "unknown parameter 'nonsense'"),
])
def test_inconsistent_combinations_are_rejected(values, reason):
    with pytest.raises(ValueError, match='invalid node parameters') as info:
        NodeConfig.from_values(values)
    assert reason in str(info.value)


def test_extrinsics_round_trip_the_real_nuscenes_calibration(keyframes):
    """radar_extrinsics written from nuScenes T_cam<-radar rebuild the same matrix."""
    for keyframe in keyframes:
        for channel in ('RADAR_FRONT', 'RADAR_BACK_LEFT', 'RADAR_BACK_RIGHT'):
            transform = keyframe.T_cam_from(channel)
            values = extrinsics_from_transform(transform)
            config = NodeConfig.from_values({'extrinsics_source': 'parameters',
                                             'radar_extrinsics': values})
            np.testing.assert_allclose(config.radar_transforms()[0], transform, atol=1e-12)
            assert values[6] >= 0


def test_extrinsics_round_trip_every_rotation_branch():
    """Rotations by ~180 degrees take the non-trace branches of the matrix -> quaternion step."""
    rng = np.random.default_rng(7)
    quaternions = [rng.normal(size=4) for _ in range(200)]
    quaternions += [np.array(q, dtype=float) for q in
                    ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.7, 0.7, 0.1, 0.0])]
    for quaternion in quaternions:
        transform = transform_from_xyzw(rng.normal(size=3), quaternion)
        values = extrinsics_from_transform(transform)
        np.testing.assert_allclose(transform_from_xyzw(values[:3], values[3:]), transform,
                                   atol=1e-12)


def test_missing_model_message_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / 'nope.onnx'
    with pytest.raises(FileNotFoundError, match='nope.onnx') as info:
        node_params.resolve_model_path(str(missing))
    assert 'xdrcdepth export' in str(info.value)
    assert node_params.default_model_path().name == 'xdrcdepth_student.onnx'


# ----------------------------------------------------------------------------- real rclpy


@pytest.fixture
def running_node(node_model):
    """A node on its own context with static extrinsics (no tf2 here)."""
    pytest.importorskip('rclpy', reason='needs rclpy (pip install -e .[ros] or a ROS install)')
    from rclpy.parameter import Parameter

    from ros_helpers import Harness
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    with Harness() as harness:
        overrides = [Parameter('model_path', value=str(node_model)),
                     Parameter('extrinsics_source', value='parameters'),
                     Parameter('radar_extrinsics', value=IDENTITY)]
        yield harness.add(XdrcDepthNode(context=harness.context,
                                        parameter_overrides=overrides))


@pytest.mark.ros
def test_declared_descriptors_match_the_table(running_node):
    from rcl_interfaces.msg import ParameterType

    descriptors = running_node.describe_parameters(list(PARAMETER_NAMES))
    for spec, descriptor in zip(PARAMETERS, descriptors):
        assert descriptor.name == spec.name
        assert descriptor.description == spec.description
        assert descriptor.read_only == spec.read_only
        expected_type = getattr(ParameterType, f'PARAMETER_{spec.type.name}')
        assert descriptor.type == expected_type, spec.name
        if spec.type is ParamType.DOUBLE and spec.minimum is not None:
            bounds = descriptor.floating_point_range[0]
            assert (bounds.from_value, bounds.to_value) == (spec.minimum, spec.maximum)
        if spec.type is ParamType.INTEGER and spec.minimum is not None:
            bounds = descriptor.integer_range[0]
            assert (bounds.from_value, bounds.to_value) == (spec.minimum, spec.maximum)
        if spec.choices:
            assert descriptor.additional_constraints == 'one of: ' + ', '.join(spec.choices)


@pytest.mark.ros
def test_run_time_changes_are_checked_and_applied(running_node):
    """Dynamic parameters change the running node; bad values and read-only ones are refused
    with a reason, and leave the configuration as it was."""
    from rclpy.parameter import Parameter

    node = running_node
    ok = node.set_parameters([Parameter('sync_slop', value=0.2),
                              Parameter('depth_encoding', value='16UC1')])
    assert all(result.successful for result in ok)
    assert node.config.sync_slop == 0.2 and node.config.depth_encoding == '16UC1'
    assert node.frames.assembler.config.slop_ns == 200_000_000

    refused = {
        'depth_encoding': Parameter('depth_encoding', value='mono8'),
        'sync_slop': Parameter('sync_slop', value=5.0),
        'sync_max_age_s': Parameter('sync_max_age_s', value=0.1),  # below the slop
        'model_path': Parameter('model_path', value='/elsewhere.onnx'),
        'points_stride': Parameter('points_stride', value='four'),
    }
    for name, parameter in refused.items():
        result = node.set_parameters([parameter])[0]
        assert not result.successful, name
        assert result.reason, name
    assert node.config.sync_slop == 0.2 and node.config.depth_encoding == '16UC1'
    assert node.get_parameter('model_path').value == str(node.config.model_path)


@pytest.mark.ros
def test_the_shipped_yaml_loads_through_rcl(node_model):
    """rcl's own YAML parser accepts config/xdrcdepth.yaml and the node gets its values."""
    pytest.importorskip('rclpy', reason='needs rclpy')
    import rclpy
    from rclpy.context import Context

    from ros_helpers import isolate_ros
    from xdrcdepth_ros.ros.node import XdrcDepthNode

    isolate_ros()
    context = Context()
    rclpy.init(context=context, args=[
        'xdrcdepth_node', '--ros-args', '--params-file', str(YAML_PATH),
        '-p', 'extrinsics_source:=parameters', '-p', f'model_path:={node_model}',
        '-p', 'radar_extrinsics:=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]'])
    try:
        node = XdrcDepthNode(context=context)
        try:
            expected = dict(yaml_parameters(), extrinsics_source='parameters',
                            model_path=str(node_model), radar_extrinsics=IDENTITY)
            for name, value in expected.items():
                got = node.get_parameter(name).value if value != [] else \
                    getattr(node.config, name)
                assert list(got) == value if isinstance(value, list) else got == value, name
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_default_provider_list_lets_the_engine_choose_silently():
    """The node and replay hand the engine None for the default list (no warning about missing
    GPU providers on a CPU machine) and an explicit list as it was given."""
    assert engine_providers(PROVIDERS) is None
    assert engine_providers(list(PROVIDERS)) is None
    assert engine_providers(['cuda', 'cpu']) == ['cuda', 'cpu']
