"""The exact graph rewrites of ``onnx_passes`` on hand-built graphs and the exported student."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import onnxruntime as ort
import pytest

from xdrcdepth_ros.onnx_passes import split_unaligned_concat_convs

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
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])


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
