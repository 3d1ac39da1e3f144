"""Exact ONNX graph rewrites that let onnxruntime's CPU provider run more of the model fast.

onnx + numpy only (no torch): ``export.py`` applies them before its ORT-vs-torch parity check.

onnxruntime runs a Conv in its fast blocked layout (NCHWc) only when the input channel count is a
multiple of the SIMD block (16 floats on AVX-512, 8 on AVX2) or below 8. A decoder conv over
``concat(upsampled features, skip, 1-channel depth)`` has, e.g., 64 + 48 + 1 = 113 input
channels and falls back to the plain NCHW kernel at about half the speed, with layout reorders
around it. Since convolution is linear in its input channels,

    BN(Conv_W(concat(a, b, d))) = Conv_{W'[:, :Ca+Cb]}(concat(a, b)) + Conv_{W'[:, Ca+Cb:]}(d)

with the BatchNormalization folded into ``W'`` and the bias, so the big part runs in NCHWc and
the few leftover channels in a small conv. Outputs agree to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CHANNEL_BLOCK = 16
"""Input channel multiple that keeps a conv in onnxruntime's NCHWc layout on every x86 CPU
(AVX-512 blocks of 16; AVX2's blocks of 8 divide it)."""


@dataclass(frozen=True)
class SplitConv:
    """One rewritten conv: its name and the input channels before and after the split."""

    name: str
    parts: tuple[int, ...]
    aligned: int
    rest: int


def split_unaligned_concat_convs(model: Any, block: int = CHANNEL_BLOCK) -> list[SplitConv]:
    """Rewrite ``model`` (an ``onnx.ModelProto``, in place) as described in the module notes.

    A Conv qualifies when its data input is a channel Concat used by nothing else, its input
    channel count is not a multiple of ``block``, a leading run of the Concat's inputs adds up
    to a multiple of ``block``, and its weights (and any BatchNormalization that is its sole
    consumer) are initializers. The caller validates the result (``export`` runs
    ``onnx.checker`` and the ORT-vs-torch parity check on it).

    Returns:
        What was rewritten (empty when nothing qualified).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    channels = _channel_counts(model)
    inits = {tensor.name: tensor for tensor in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for output in graph.output:  # a graph output is a use that must survive
        consumers.setdefault(output.name, []).append(output)

    replaced: dict[int, list[Any]] = {}  # id(Concat) -> nodes that take its place
    dropped: set[int] = set()
    done: list[SplitConv] = []
    for conv in graph.node:
        if conv.op_type != 'Conv':
            continue
        concat = producer.get(conv.input[0])
        if (concat is None or concat.op_type != 'Concat'
                or _attr(concat, 'axis') != 1 or len(consumers[concat.output[0]]) != 1
                or conv.input[1] not in inits or _attr(conv, 'group', 1) != 1):
            continue
        parts = [channels.get(name) for name in concat.input]
        if None in parts or sum(parts) % block == 0:
            continue
        cut = max((k + 1 for k in range(len(parts)) if sum(parts[:k + 1]) % block == 0),
                  default=0)
        if cut == 0:  # cut < len(parts): the whole sum is unaligned
            continue
        bias_name = conv.input[2] if len(conv.input) > 2 else ''
        if bias_name and bias_name not in inits:
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        bias = (numpy_helper.to_array(inits[bias_name]).astype(np.float64) if bias_name
                else np.zeros(weight.shape[0]))
        output = conv.output[0]
        norm = consumers.get(output, [])
        if (len(norm) == 1 and getattr(norm[0], 'op_type', '') == 'BatchNormalization'
                and all(name in inits for name in norm[0].input[1:5])
                and len(norm[0].output) == 1):
            weight, bias = _fold_batch_norm(weight, bias, norm[0], inits)
            output = norm[0].output[0]
            dropped.add(id(norm[0]))
        aligned = sum(parts[:cut])
        prefix = f'{conv.name or output}_split'
        names = {key: f'{prefix}_{key}' for key in ('wa', 'ba', 'wr', 'xa', 'xr', 'ya', 'yr')}
        graph.initializer.extend([
            numpy_helper.from_array(weight[:, :aligned].astype(np.float32), names['wa']),
            numpy_helper.from_array(bias.astype(np.float32), names['ba']),
            numpy_helper.from_array(weight[:, aligned:].astype(np.float32), names['wr'])])
        nodes = []
        head, tail = list(concat.input[:cut]), list(concat.input[cut:])
        xa = head[0] if len(head) == 1 else names['xa']
        xr = tail[0] if len(tail) == 1 else names['xr']
        if len(head) > 1:
            nodes.append(helper.make_node('Concat', head, [xa], name=f'{prefix}_cat_a', axis=1))
        if len(tail) > 1:
            nodes.append(helper.make_node('Concat', tail, [xr], name=f'{prefix}_cat_r', axis=1))
        conv_a = helper.make_node('Conv', [xa, names['wa'], names['ba']], [names['ya']],
                                  name=f'{prefix}_a')
        conv_r = helper.make_node('Conv', [xr, names['wr']], [names['yr']], name=f'{prefix}_r')
        for node in (conv_a, conv_r):
            node.attribute.extend(conv.attribute)
        nodes += [conv_a, conv_r,
                  helper.make_node('Add', [names['ya'], names['yr']], [output],
                                   name=f'{prefix}_add')]
        replaced[id(concat)] = nodes
        dropped.add(id(conv))
        done.append(SplitConv(conv.name, tuple(parts), aligned, sum(parts) - aligned))

    if not done:
        return done
    rebuilt = []
    for node in graph.node:
        if id(node) in replaced:
            rebuilt.extend(replaced[id(node)])
        elif id(node) not in dropped:
            rebuilt.append(node)
    del graph.node[:]
    graph.node.extend(rebuilt)
    used = {name for node in graph.node for name in node.input}
    keep = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return done


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _channel_counts(model: Any) -> dict[str, int]:
    """Channel dimension of every 4-D tensor whose shape inference knows it."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    counts = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField('dim_value'):
            counts[info.name] = int(dims[1].dim_value)
    return counts


def _fold_batch_norm(weight: np.ndarray, bias: np.ndarray, norm: Any,
                     inits: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with an inference-mode BatchNormalization folded in (float64)."""
    from onnx import numpy_helper

    gamma, beta, mean, var = (numpy_helper.to_array(inits[name]).astype(np.float64)
                              for name in norm.input[1:5])
    scale = gamma / np.sqrt(var + _attr(norm, 'epsilon', 1e-5))
    return weight * scale[:, None, None, None], (bias - mean) * scale + beta
