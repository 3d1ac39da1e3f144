"""The exact graph rewrites of ``onnx_passes`` on hand-built graphs and the exported student."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import onnxruntime as ort
import pytest

from xdrcdepth_ros.core.onnx_passes import (
    depthwise_single_output_convs, optimize_for_cpu, split_concat_pointwise_convs,
    split_unaligned_concat_convs, subpixel_phase_kernels, subpixel_upsample_convs)

RNG = np.random.default_rng(0)


def _decoder_like(parts=(16, 32, 1), out_channels=16, batch_norm=True, extra_use=False):
    """concat(parts) -> 3x3 Conv -> [BatchNormalization] -> Relu, on 12x20 inputs."""
    inputs = [helper.make_tensor_value_info(f'x{k}', TensorProto.FLOAT, [1, c, 12, 20])
              for k, c in enumerate(parts)]
    cin = sum(parts)
    inits = [numpy_helper.from_array(RNG.normal(size=(out_channels, cin, 3, 3))
                                     .astype(np.float32), 'w'),
             numpy_helper.from_array(RNG.normal(size=out_channels).astype(np.float32), 'b')]
    nodes = [helper.make_node('Concat', [i.name for i in inputs], ['cat'], axis=1),
             helper.make_node('Conv', ['cat', 'w', 'b'], ['conv'], name='iconv',
                              pads=[1, 1, 1, 1], kernel_shape=[3, 3])]
    last = 'conv'
    if batch_norm:
        stats = {'gamma': RNG.uniform(0.5, 2, out_channels), 'beta': RNG.normal(size=out_channels),
                 'mean': RNG.normal(size=out_channels), 'var': RNG.uniform(0.1, 3, out_channels)}
        inits += [numpy_helper.from_array(v.astype(np.float32), k) for k, v in stats.items()]
        nodes.append(helper.make_node('BatchNormalization', ['conv', 'gamma', 'beta', 'mean',
                                                             'var'], ['bn'], epsilon=1e-5))
        last = 'bn'
    nodes.append(helper.make_node('Relu', [last], ['y']))
    outputs = [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, out_channels, 12, 20])]
    if extra_use:
        outputs.append(helper.make_tensor_value_info('cat', TensorProto.FLOAT, [1, cin, 12, 20]))
    graph = helper.make_graph(nodes, 'decoder', inputs, outputs, inits)
    # IR 10: what every onnxruntime this package supports (>= 1.18) reads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=10)


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    return session.run(None, feeds)


def _feeds(model):
    return {i.name: RNG.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim])
            .astype(np.float32) for i in model.graph.input}


@pytest.mark.parametrize('parts, aligned, rest', [((16, 32, 1), 48, 1), ((64, 48, 1), 112, 1),
                                                  ((16, 1, 1, 1), 16, 3)])
@pytest.mark.parametrize('batch_norm', [True, False])
def test_split_conv_equals_the_original(parts, aligned, rest, batch_norm):
    """The aligned channels and the leftover ones go to two convs (BN folded) whose sum is the
    original output to float rounding; the unaligned conv and the BN are gone."""
    model = _decoder_like(parts, batch_norm=batch_norm)
    feeds = _feeds(model)
    [expected] = _run(model, feeds)
    done = split_unaligned_concat_convs(model)
    assert [(d.parts, d.aligned, d.rest) for d in done] == [(parts, aligned, rest)]
    [got] = _run(model, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    weights = {t.name: t for t in model.graph.initializer}
    conv_inputs = sorted(weights[n.input[1]].dims[1] for n in model.graph.node
                         if n.op_type == 'Conv')
    assert conv_inputs == sorted([aligned, rest])
    assert not any(n.op_type == 'BatchNormalization' for n in model.graph.node)
    assert 'w' not in weights  # the original weights are not left behind
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize('model', [
    pytest.param(_decoder_like((16, 32)), id='already aligned'),
    pytest.param(_decoder_like((3, 5, 1)), id='no aligned prefix'),
    pytest.param(_decoder_like((16, 32, 1), extra_use=True), id='concat used elsewhere'),
])
def test_graphs_that_do_not_qualify_are_left_alone(model):
    before = model.SerializeToString()
    assert split_unaligned_concat_convs(model) == []
    assert model.SerializeToString() == before


def test_the_exported_student_has_no_unaligned_decoder_conv(tiny_model):
    """export applies the pass: a Conv fed by a Concat has a multiple of 16 input channels
    unless it is the small leftover half of a split."""
    model = onnx.load(tiny_model)
    weights = {t.name: t for t in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    fed_by_concat = {n.name: weights[n.input[1]].dims[1] for n in model.graph.node
                     if n.op_type == 'Conv' and n.input[0] in producer
                     and producer[n.input[0]].op_type == 'Concat'}
    assert fed_by_concat
    unaligned = [name for name, c in fed_by_concat.items() if c % 16]
    assert all(name.endswith('_split_r') for name in unaligned), fed_by_concat
    assert any(n.name.endswith('_split_add') for n in model.graph.node)


def _model(nodes, inputs, output, output_shape, inits):
    graph = helper.make_graph(nodes, 'g', inputs, [helper.make_tensor_value_info(
        output, TensorProto.FLOAT, output_shape)], [numpy_helper.from_array(v.astype(np.float32)
                                            if v.dtype.kind == 'f' else v, k)
                                            for k, v in inits.items()])
    # IR 10: what every onnxruntime this package supports (>= 1.18) reads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=10)


def _upconv(channels=64, out_channels=32, coordinates='asymmetric', rounding='floor',
            scales=(1, 1, 2, 2), stride=1, batch_norm=True, constant_node=False):
    """x (1, C, 6, 10) -> Resize(nearest) -> 3x3 Conv -> [BatchNormalization] -> Relu.

    The scales are an initializer, or a Constant node as torch's exporter writes them."""
    inits = {'w': RNG.normal(size=(out_channels, channels, 3, 3)) / channels,
             'b': RNG.normal(size=out_channels)}
    nodes = []
    if constant_node:
        nodes.append(helper.make_node('Constant', [], ['scales'],
                                      value_floats=[float(v) for v in scales]))
    else:
        inits['scales'] = np.array(scales, np.float32)
    nodes += [helper.make_node('Resize', ['x', '', 'scales'], ['up'], mode='nearest',
                              coordinate_transformation_mode=coordinates, nearest_mode=rounding),
              helper.make_node('Conv', ['up', 'w', 'b'], ['conv'], name='up_conv',
                               pads=[1, 1, 1, 1], strides=[stride, stride])]
    last = 'conv'
    if batch_norm:
        inits.update(gamma=RNG.uniform(0.5, 2, out_channels), beta=RNG.normal(size=out_channels),
                     mean=RNG.normal(size=out_channels), var=RNG.uniform(0.1, 3, out_channels))
        nodes.append(helper.make_node('BatchNormalization', ['conv', 'gamma', 'beta', 'mean',
                                                             'var'], ['bn']))
        last = 'bn'
    nodes.append(helper.make_node('Relu', [last], ['y']))
    inputs = [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, channels, 6, 10])]
    return _model(nodes, inputs, 'y', [1, out_channels, 12, 20], inits)


def test_phase_kernels_reproduce_upsample_then_conv():
    """Each 2x2 phase kernel applied at its offsets equals the 3x3 kernel on the upsampled map
    (checked with plain numpy on one channel)."""
    weight = RNG.normal(size=(1, 1, 3, 3))
    x = RNG.normal(size=(5, 7))
    up = np.pad(x.repeat(2, 0).repeat(2, 1), 1)
    direct = np.array([[np.sum(up[r:r + 3, c:c + 3] * weight[0, 0]) for c in range(14)]
                       for r in range(10)])
    for index, kernel in enumerate(subpixel_phase_kernels(weight)):
        a, b = divmod(index, 2)
        padded = np.pad(x, ((1 - a, a), (1 - b, b)))
        phase = np.array([[np.sum(padded[r:r + 2, c:c + 2] * kernel[0, 0]) for c in range(7)]
                          for r in range(5)])
        np.testing.assert_allclose(phase, direct[a::2, b::2], atol=1e-12)


@pytest.mark.parametrize('coordinates, rounding', [('asymmetric', 'floor'),
                                                   ('half_pixel', 'round_prefer_floor')])
@pytest.mark.parametrize('batch_norm, constant_node', [(True, False), (False, True)])
def test_subpixel_rewrite_equals_the_original(coordinates, rounding, batch_norm, constant_node):
    """Upsample + 3x3 conv becomes four 2x2 phase convs interleaved by DepthToSpace on the
    low-resolution input: same output, no Resize, no BN, no conv on the upsampled map."""
    model = _upconv(coordinates=coordinates, rounding=rounding, batch_norm=batch_norm,
                    constant_node=constant_node)
    feeds = _feeds(model)
    [expected] = _run(model, feeds)
    assert subpixel_upsample_convs(model) == ['up_conv']
    [got] = _run(model, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    ops = [n.op_type for n in model.graph.node]
    assert not {'Resize', 'BatchNormalization', 'Constant'} & set(ops)  # nothing left unused
    assert 'scales' not in {t.name for t in model.graph.initializer}
    assert ops.count('Relu') == 4 and ops[-1] == 'DepthToSpace'  # ReLU moved before the interleave
    weights = {t.name: t for t in model.graph.initializer}
    assert sorted(tuple(weights[n.input[1]].dims) for n in model.graph.node
                  if n.op_type == 'Conv') == [(32, 64, 2, 2)] * 4
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize('model', [
    pytest.param(_upconv(channels=16), id='too few input channels'),
    pytest.param(_upconv(channels=160), id='too many input channels'),
    pytest.param(_upconv(scales=(1, 1, 3, 3)), id='x3'),
    pytest.param(_upconv(rounding='ceil'), id='other nearest rounding'),
    pytest.param(_upconv(stride=2), id='strided conv'),
])
def test_upsample_convs_that_do_not_qualify_are_left_alone(model):
    before = model.SerializeToString()
    assert subpixel_upsample_convs(model) == []
    assert model.SerializeToString() == before


@pytest.mark.parametrize('pieces, expected', [((32, 16, 16), ['fuse']), ((32, 8), [])])
def test_pointwise_conv_over_a_concat_becomes_a_sum_of_partial_convs(pieces, expected):
    """A dense block's 1x1 fuse conv (BN folded): one partial conv per aligned piece, summed;
    same output. A piece that is not a multiple of 16 channels leaves the conv alone."""
    inputs = [helper.make_tensor_value_info(f'x{k}', TensorProto.FLOAT, [1, c, 7, 9])
              for k, c in enumerate(pieces)]
    total = sum(pieces)
    inits = {'w': RNG.normal(size=(24, total, 1, 1)), 'gamma': RNG.uniform(0.5, 2, 24),
             'beta': RNG.normal(size=24), 'mean': RNG.normal(size=24),
             'var': RNG.uniform(0.1, 3, 24)}
    nodes = [helper.make_node('Concat', [i.name for i in inputs], ['cat'], axis=1),
             helper.make_node('Conv', ['cat', 'w'], ['conv'], name='fuse'),
             helper.make_node('BatchNormalization', ['conv', 'gamma', 'beta', 'mean', 'var'],
                              ['bn']),
             helper.make_node('Relu', ['bn'], ['y'])]
    model = _model(nodes, inputs, 'y', [1, 24, 7, 9], inits)
    feeds = _feeds(model)
    [expected_out] = _run(model, feeds)
    assert split_concat_pointwise_convs(model) == expected
    [got] = _run(model, feeds)
    np.testing.assert_allclose(got, expected_out, rtol=1e-5, atol=1e-5)
    ops = [n.op_type for n in model.graph.node]
    if expected:
        assert ops == ['Conv', 'Conv', 'Add', 'Conv', 'Add', 'Relu']
        onnx.checker.check_model(model, full_check=True)
    else:
        assert 'Concat' in ops


def test_single_output_conv_becomes_depthwise_plus_sum_and_stays_shared():
    """A 3x3 conv to one channel (a depth head), used twice with the same weights as the
    exported student's head and saliency do: same outputs; both copies get the same new nodes
    so onnxruntime can still merge them."""
    inits = {'w': RNG.normal(size=(1, 16, 3, 3)), 'b': RNG.normal(size=1)}
    nodes = [helper.make_node('Conv', ['x', 'w', 'b'], ['z1'], name='head', pads=[1, 1, 1, 1]),
             helper.make_node('Conv', ['x', 'w', 'b'], ['z2'], name='head_copy',
                              pads=[1, 1, 1, 1]),
             helper.make_node('Sigmoid', ['z1'], ['s']),
             helper.make_node('Add', ['s', 'z2'], ['y'])]
    inputs = [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 16, 9, 13])]
    model = _model(nodes, inputs, 'y', [1, 1, 9, 13], inits)
    feeds = _feeds(model)
    [expected] = _run(model, feeds)
    assert depthwise_single_output_convs(model) == ['head', 'head_copy']
    [got] = _run(model, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    convs = [n for n in model.graph.node if n.op_type == 'Conv']
    assert sorted(len(n.input) for n in convs) == [2, 2, 3, 3]
    assert len({tuple(n.input[1:]) for n in convs}) == 2  # two weight sets, each shared
    assert len(model.graph.initializer) == 3
    onnx.checker.check_model(model, full_check=True)


@pytest.fixture(scope='module')
def unrewritten_tiny(tmp_path_factory):
    """The tiny student exported for ``--target gpu``: the graph as torch wrote it, no pass."""
    from xdrcdepth_ros.export import export_random

    out = tmp_path_factory.mktemp('tiny_gpu') / 'tiny_gpu.onnx'
    return export_random('xdrcdepth_tiny', out, height=96, width=192, seed=0,
                         target='gpu').onnx_path


def test_all_rewrites_on_a_real_exported_graph(unrewritten_tiny):
    """optimize_for_cpu on the unrewritten export of the tiny student (sub-pixel threshold
    lowered to its narrow decoder): onnxruntime gives the same depth and saliency as the graph
    torch exported; the split and depthwise passes found something to rewrite (the tiny decoder
    has no dense block for the pointwise pass)."""
    import xdrcdepth_ros.core.onnx_passes as passes

    original = onnx.load(unrewritten_tiny)
    model = onnx.load(unrewritten_tiny)
    assert passes.subpixel_upsample_convs(model, min_in_channels=16)
    report = optimize_for_cpu(model)
    assert report.split and report.depthwise, report
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1, 96, 192, 3), dtype=np.uint8)
    radar = np.zeros((1, 4, 96, 192), np.float32)
    radar[0, 0, rng.integers(0, 96, 40), rng.integers(0, 192, 40)] = rng.uniform(2, 60, 40)
    feeds = {'image': image, 'radar': radar}
    for got, expected in zip(_run(model, feeds), _run(original, feeds)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert not any(n.op_type == 'Resize' and any(c.op_type == 'Conv' for c in model.graph.node
                                                 if n.output[0] in c.input)
                   for n in model.graph.node)


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_export_targets_record_the_passes_they_applied(tiny_model, unrewritten_tiny):
    """--target cpu rewrites the graph and lists each pass with its node count; --target gpu
    leaves the graph as torch exported it and lists none."""
    from xdrcdepth_ros.core.engine import read_metadata

    cpu, gpu = read_metadata(tiny_model), read_metadata(unrewritten_tiny)
    assert (cpu.export_target, gpu.export_target) == ('cpu', 'gpu')
    assert gpu.graph_passes == {}
    assert set(cpu.graph_passes) == {'subpixel_upsample_convs', 'split_concat_pointwise_convs',
                                     'split_unaligned_concat_convs',
                                     'depthwise_single_output_convs'}
    rewritten = onnx.load(tiny_model)
    split_adds = sum(n.name.endswith('_split_add') for n in rewritten.graph.node)
    assert split_adds == cpu.graph_passes['split_unaligned_concat_convs'] > 0
    again = onnx.load(unrewritten_tiny)
    assert optimize_for_cpu(again).counts() == cpu.graph_passes
    assert _op_counts(again) == _op_counts(rewritten)
    assert _op_counts(onnx.load(unrewritten_tiny)) != _op_counts(rewritten)


def test_an_unknown_export_target_is_refused_before_any_work(tmp_path):
    """A typo in --target is one clear error naming the choices; nothing is written."""
    from xdrcdepth_ros.export import export_random

    with pytest.raises(ValueError, match=r"target must be one of \['cpu', 'gpu'\], got 'tpu'"):
        export_random('xdrcdepth_tiny', tmp_path / 'm.onnx', height=96, width=192,
                      target='tpu')
    assert list(tmp_path.iterdir()) == []


def test_metadata_written_before_targets_existed_stays_readable():
    """Metadata written before --target existed (the shipped model's JSON without
    export_target / graph_passes) reads as unrecorded; a bad recorded target is a
    MetadataError naming it."""
    import json
    from pathlib import Path

    from xdrcdepth_ros.core.errors import MetadataError
    from xdrcdepth_ros.core.model_metadata import ModelMetadata

    path = Path(__file__).resolve().parents[1] / 'models' / 'xdrcdepth_student.json'
    data = json.loads(path.read_text())
    assert data['export_target'] == 'cpu' and data['graph_passes']  # today's file records them
    data = {k: v for k, v in data.items() if k not in ('export_target', 'graph_passes')}
    meta = ModelMetadata.from_dict(data)
    assert (meta.export_target, meta.graph_passes) == ('', {})
    with pytest.raises(MetadataError, match="export_target must be one of.*got 'tpu'"):
        ModelMetadata.from_dict({**data, 'export_target': 'tpu'})
